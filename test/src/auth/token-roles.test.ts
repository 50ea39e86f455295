// The token method's role side over real HTTP: auth/token/roles CRUD,
// create/:role (allowed/disallowed policies, orphan, renewable, period,
// explicit max TTL, bound CIDRs, path suffix), create-orphan, revoke-orphan,
// LIST accessors (sudo), lookup-accessor, renew-accessor.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';
import { apiFrom } from '../../support/auth.ts';

let broker: BrokerProcess;
let root: string;

before(async () => {
  broker = await startBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '2h' } });
  ({ rootToken: root } = await initAndUnseal(broker));
  const creator = 'path "auth/token/create/*" { capabilities = ["update"] }\npath "auth/token/create" { capabilities = ["update"] }';
  assert.equal((await broker.api('PUT', 'sys/policies/acl/creator', { token: root, body: { policy: creator } })).status, 204);
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

const api = (method: string, path: string, body?: unknown, token = root) => broker.api(method, path, { token, ...(body !== undefined ? { body } : {}) });

test('roles CRUD and LIST; bad fields are 400s', async () => {
  const w = await api('PUT', 'auth/token/roles/ci', { allowed_policies: 'app-read,app-write', disallowed_policies: ['admin'], orphan: true, renewable: false, token_period: '', token_explicit_max_ttl: '30m', path_suffix: 'v1', token_bound_cidrs: '127.0.0.1' });
  assert.equal(w.status, 204, w.text);
  const r = await api('GET', 'auth/token/roles/ci');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.data.allowed_policies, ['app-read', 'app-write']);
  assert.deepEqual(r.body.data.disallowed_policies, ['admin']);
  assert.equal(r.body.data.orphan, true);
  assert.equal(r.body.data.renewable, false);
  assert.equal(r.body.data.token_explicit_max_ttl, 1800);
  assert.deepEqual(r.body.data.token_bound_cidrs, ['127.0.0.1/32']);
  assert.equal(r.body.data.path_suffix, 'v1');
  assert.deepEqual((await api('GET', 'auth/token/roles?list=true')).body.data.keys, ['ci']);
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ allowed_policies: 'root' }, /root/],
    [{ token_type: 'batch' }, /token_type/],
    [{ allowed_entity_aliases: ['x'] }, /field "allowed_entity_aliases" is not supported/],
    [{ path_suffix: '../x' }, /path_suffix/],
    [{ token_bound_cidrs: 'nope' }, /token_bound_cidrs/],
  ];
  for (const [body, message] of bad) {
    const x = await api('PUT', 'auth/token/roles/bad', body);
    assert.equal(x.status, 400, x.text);
    assert.match(x.body.errors[0], message);
  }
  assert.equal((await api('GET', 'auth/token/roles/bad')).status, 404);
});

test('create/:role: role policies, orphan, non-renewable, explicit max TTL, path suffix, bound CIDRs', async () => {
  const parent = await api('PUT', 'auth/token/create', { policies: ['creator'] });
  const parentToken = parent.body.auth.client_token;
  // Allowed policies need not be the parent's (Vault's rule for roles with allowed_policies).
  const r = await api('PUT', 'auth/token/create/ci', { policies: ['app-read'] }, parentToken);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body.auth.policies, ['app-read', 'default']);
  assert.equal(r.body.auth.orphan, true);
  assert.equal(r.body.auth.renewable, false);
  assert.equal(r.body.auth.lease_duration, 1800, 'capped by the role\'s explicit max TTL');
  const look = await api('PUT', 'auth/token/lookup', { token: r.body.auth.client_token });
  assert.equal(look.body.data.path, 'auth/token/create/ci/v1');
  assert.equal(look.body.data.explicit_max_ttl, 1800);
  // No policies asked: the role's allowed policies.
  const all = await api('PUT', 'auth/token/create/ci', {}, parentToken);
  assert.deepEqual(all.body.auth.policies, ['app-read', 'app-write', 'default']);
  // Refused: outside allowed, disallowed.
  const outside = await api('PUT', 'auth/token/create/ci', { policies: ['other'] }, parentToken);
  assert.equal(outside.status, 400);
  assert.match(outside.body.errors[0], /"other" is not in the role's allowed_policies/);
  assert.equal((await api('PUT', 'auth/token/roles/open', { disallowed_policies_glob: 'admin*' })).status, 204);
  const dis = await api('PUT', 'auth/token/create/open', { policies: ['admin-x'] });
  assert.equal(dis.status, 400);
  assert.match(dis.body.errors[0], /disallowed_policies/);
  // Without allowed_policies the parent's policies limit the child.
  const notParents = await api('PUT', 'auth/token/create/open', { policies: ['app-read'] }, parentToken);
  assert.equal(notParents.status, 400);
  assert.equal((await api('PUT', 'auth/token/create/nope', {})).status, 400);
  // Renewing a non-renewable role token fails.
  assert.equal((await broker.api('PUT', 'auth/token/renew-self', { token: r.body.auth.client_token, body: {} })).status, 400);
  // Bound CIDRs from the role, enforced on use.
  const token = r.body.auth.client_token;
  assert.equal((await apiFrom(broker, '127.0.0.1', 'GET', 'auth/token/lookup-self', { token })).status, 200);
  assert.equal((await apiFrom(broker, '127.0.0.2', 'GET', 'auth/token/lookup-self', { token })).status, 403);
  // A periodic role.
  assert.equal((await api('PUT', 'auth/token/roles/periodic', { allowed_policies: 'app-read', token_period: '10m' })).status, 204);
  const p = await api('PUT', 'auth/token/create/periodic', {}, parentToken);
  assert.equal(p.body.auth.lease_duration, 600);
  assert.equal(p.body.auth.orphan, false);
  const renewed = await broker.api('PUT', 'auth/token/renew-self', { token: p.body.auth.client_token, body: { increment: '1h' } });
  assert.equal(renewed.body.auth.lease_duration, 600, 'a periodic token renews to its period');
});

test('create-orphan, revoke-orphan keeps the children, LIST accessors (sudo), lookup-accessor, renew-accessor', async () => {
  const orphan = await api('PUT', 'auth/token/create-orphan', { policies: ['creator'], ttl: '20m' });
  assert.equal(orphan.status, 200);
  assert.equal(orphan.body.auth.orphan, true);
  const parent = orphan.body.auth.client_token;
  const child = await api('PUT', 'auth/token/create', { policies: ['creator'] }, parent);
  assert.equal(child.status, 200);
  assert.equal(child.body.auth.orphan, false);
  // create-orphan is a sudo path.
  assert.equal((await api('PUT', 'auth/token/create-orphan', { policies: ['creator'] }, parent)).status, 403);

  const list = await api('GET', 'auth/token/accessors?list=true');
  assert.equal(list.status, 200, list.text);
  assert.ok(list.body.data.keys.includes(orphan.body.auth.accessor));
  assert.ok(list.body.data.keys.includes(child.body.auth.accessor));
  assert.ok(!list.text.includes(parent), 'accessors only, never tokens');
  assert.equal((await api('GET', 'auth/token/accessors?list=true', undefined, parent)).status, 403, 'LIST accessors needs sudo');

  const byAccessor = await api('PUT', 'auth/token/lookup-accessor', { accessor: orphan.body.auth.accessor });
  assert.equal(byAccessor.status, 200);
  assert.equal(byAccessor.body.data.id, '');
  const renewed = await api('PUT', 'auth/token/renew-accessor', { accessor: orphan.body.auth.accessor, increment: '10m' });
  assert.equal(renewed.status, 200);
  assert.equal(renewed.body.auth.lease_duration, 600);
  assert.equal(renewed.body.auth.client_token, '', 'renew-accessor never reveals the token');

  assert.equal((await api('PUT', 'auth/token/revoke-orphan', { token: parent }, parent)).status, 403, 'revoke-orphan needs sudo');
  assert.equal((await api('PUT', 'auth/token/revoke-orphan', { token: parent })).status, 204);
  assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: parent })).status, 403, 'the parent is revoked');
  const survivor = await broker.api('GET', 'auth/token/lookup-self', { token: child.body.auth.client_token });
  assert.equal(survivor.status, 200, 'its child lives on');
  assert.equal(survivor.body.data.orphan, true, 'as an orphan');
});
