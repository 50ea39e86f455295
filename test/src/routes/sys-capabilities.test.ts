// sys/capabilities-self, sys/capabilities, sys/capabilities-accessor,
// sys/leader and sys/mounts/:path/tune over HTTP.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';

let broker: BrokerProcess;
let root: string;
let app: { token: string; accessor: string };

before(async () => {
  broker = await startBroker();
  ({ rootToken: root } = await initAndUnseal(broker));
  const policy = 'path "database/creds/app" { capabilities = ["read"] }\npath "database/*" { capabilities = ["list"] }\npath "database/config/*" { capabilities = ["deny"] }';
  assert.equal((await broker.api('PUT', 'sys/policies/acl/app', { token: root, body: { policy } })).status, 204);
  const created = await broker.api('PUT', 'auth/token/create', { token: root, body: { policies: ['app'], ttl: '10m' } });
  app = { token: created.body.auth.client_token, accessor: created.body.auth.accessor };
});

after(async () => {
  await broker.stop();
  broker.remove();
});

test('capabilities-self: per path, most specific rule wins, deny and unknown paths', async () => {
  const res = await broker.api('PUT', 'sys/capabilities-self', {
    token: app.token,
    body: { paths: ['database/creds/app', 'database/roles', 'database/config/x', 'sys/seal'] },
  });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.body.data['database/creds/app'], ['read']);
  assert.deepEqual(res.body.data['database/roles'], ['list']);
  assert.deepEqual(res.body.data['database/config/x'], ['deny']);
  assert.deepEqual(res.body.data['sys/seal'], ['deny']);
  assert.deepEqual(res.body.data.capabilities, ['list', 'read']);

  const single = await broker.api('PUT', 'sys/capabilities-self', { token: app.token, body: { path: '/database/creds/app' } });
  assert.deepEqual(single.body.data.capabilities, ['read']);

  const asRoot = await broker.api('PUT', 'sys/capabilities-self', { token: root, body: { paths: ['anything/at/all'] } });
  assert.deepEqual(asRoot.body.data.capabilities, ['root']);
});

test('capabilities of another token by token or accessor need a policy that allows it', async () => {
  const byToken = await broker.api('PUT', 'sys/capabilities', { token: root, body: { token: app.token, paths: ['database/creds/app'] } });
  assert.equal(byToken.status, 200, byToken.text);
  assert.deepEqual(byToken.body.data.capabilities, ['read']);
  const byAccessor = await broker.api('PUT', 'sys/capabilities-accessor', { token: root, body: { accessor: app.accessor, paths: ['database/creds/app'] } });
  assert.deepEqual(byAccessor.body.data.capabilities, ['read']);
  // The app token's own policy does not grant sys/capabilities.
  assert.equal((await broker.api('PUT', 'sys/capabilities', { token: app.token, body: { token: root, paths: ['x'] } })).status, 403);
  assert.ok(!byToken.text.includes(app.token), 'the token asked about is never echoed');
});

test('capabilities: bad input is a 400 naming the field', async () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['sys/capabilities-self', {}, /"paths"/],
    ['sys/capabilities-self', { paths: 5 }, /paths/],
    ['sys/capabilities-self', { paths: 5, extra: 1 }, /paths/],
    ['sys/capabilities', { paths: ['a'] }, /token/],
    ['sys/capabilities', { token: 'hvs.nope', paths: ['a'] }, /bad token/],
    ['sys/capabilities-accessor', { accessor: 'nope', paths: ['a'] }, /"accessor"/],
  ];
  for (const [path, body, message] of cases) {
    const res = await broker.api('PUT', path, { token: root, body });
    assert.ok(res.status === 400 || res.status === 403, `${path} ${JSON.stringify(body)} → ${res.status}`);
    assert.match(res.body.errors[0], message, res.text);
  }
});

test('sys/leader: a single broker is its own leader, no token needed', async () => {
  const res = await broker.api('GET', 'sys/leader');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.ha_enabled, false);
  assert.equal(res.body.is_self, true);
});

test('sys/mounts/:path/tune shows the effective lease TTLs and tunes the description (TTLs: test/src/routes/sys-mounts.test.ts)', async () => {
  const res = await broker.api('GET', 'sys/mounts/database/tune', { token: root });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.data.default_lease_ttl, 768 * 3600);
  assert.equal(res.body.data.max_lease_ttl, 768 * 3600);
  const put = await broker.api('PUT', 'sys/mounts/database/tune', { token: root, body: { description: 'x' } });
  assert.equal(put.status, 204, put.text);
  assert.equal((await broker.api('GET', 'sys/mounts/database/tune', { token: root })).body.data.description, 'x');
  assert.equal((await broker.api('GET', 'sys/mounts/nope/tune', { token: root })).status, 400);
  const noType = await broker.api('PUT', 'sys/mounts/other', { token: root, body: {} });
  assert.equal(noType.status, 400);
  assert.match(noType.body.errors[0], /"type"/);
});
