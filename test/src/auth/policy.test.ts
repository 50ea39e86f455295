// ACL policies: parsing (HCL subset and JSON), Vault's matching and priority
// rules, and enforcement over HTTP for a non-root token.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { allows, capabilitiesOn, DEFAULT_POLICY, parsePolicy, type PathRule } from '../../../src/auth/policy.ts';
import { isBrokerError } from '../../../src/errors.ts';
import { initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';

const refused = (text: string, message: RegExp): void => {
  assert.throws(() => parsePolicy(text), (err: unknown) => isBrokerError(err) && err.statusCode === 400 && err.message.startsWith('invalid field "policy"') && message.test(err.message), text);
};

test('HCL: path blocks with comments, several capabilities, trailing commas', () => {
  const rules = parsePolicy(`
    # database creds
    path "database/creds/app" {
      capabilities = ["read", "list",]   # trailing comment
    }
    // another comment style
    path "sys/leases/*" { capabilities = ["update"] }
    /* block comment */
    path "secret/#not-a-comment" { capabilities = ["deny"] }
  `);
  assert.deepEqual(rules, [
    { path: 'database/creds/app', capabilities: ['read', 'list'] },
    { path: 'sys/leases/*', capabilities: ['update'] },
    { path: 'secret/#not-a-comment', capabilities: ['deny'] },
  ]);
  assert.ok(parsePolicy(DEFAULT_POLICY).length >= 5);
});

test('JSON policies parse to the same rules', () => {
  assert.deepEqual(parsePolicy('{"path": {"database/creds/app": {"capabilities": ["read"]}}}'), [{ path: 'database/creds/app', capabilities: ['read'] }]);
  assert.deepEqual(parsePolicy('{}'), []);
});

test('bad policies are refused with a message naming the problem', () => {
  refused('garbage', /cannot parse near "garbage"/);
  refused('path "x" { capabilities = ["reed"] }', /unknown capability "reed"/);
  refused('path "x" { capabilities = [read] }', /list of quoted names/);
  refused('path "x" { policy = "write" }', /cannot parse/);
  refused('path "x" { capabilities = ["read"] } extra', /cannot parse near "extra"/);
  refused('{"path": 5}', /"path" must be an object/);
  refused('{"path": {"x": 5}}', /path "x" must be an object/);
  refused('{"path": {"x": {}}}', /needs a capabilities list/);
  refused('{"path": {"x": {"capabilities": ["read"], "allowed_parameters": {"a": []}}}}', /"allowed_parameters" .* not supported/);
  refused('{"paths": {}}', /unknown key "paths"/);
  refused('{"path": ', /not valid JSON/);
  refused('[1]', /cannot parse/);
});

const rules = (text: string): PathRule[][] => [parsePolicy(text)];

test('matching: exact, glob prefix, + segments', () => {
  const p = rules(`
    path "a/exact" { capabilities = ["read"] }
    path "b/*" { capabilities = ["read"] }
    path "c/pre*" { capabilities = ["read"] }
    path "d/+/x" { capabilities = ["read"] }
  `);
  const can = (path: string): boolean => allows(p, path, 'GET', false);
  assert.equal(can('a/exact'), true);
  assert.equal(can('a/exact/more'), false);
  assert.equal(can('a/exac'), false);
  assert.equal(can('b/anything/deep'), true);
  assert.equal(can('b'), false);
  assert.equal(can('c/prefix/more'), true);
  assert.equal(can('c/other'), false);
  assert.equal(can('d/one/x'), true);
  assert.equal(can('d/one/two/x'), false);
  assert.equal(can('d/one/y'), false);
});

test('priority follows Vault: the most specific path wins, deny on it wins', () => {
  const p = rules(`
    path "secret/*" { capabilities = ["deny"] }
    path "secret/public" { capabilities = ["read"] }
    path "db/*" { capabilities = ["read"] }
    path "db/creds/*" { capabilities = ["deny"] }
    path "x/+/y" { capabilities = ["read"] }
    path "x/a/y" { capabilities = ["deny"] }
  `);
  assert.equal(allows(p, 'secret/public', 'GET', false), true, 'exact beats a glob deny');
  assert.equal(allows(p, 'secret/other', 'GET', false), false);
  assert.equal(allows(p, 'db/roles/r', 'GET', false), true);
  assert.equal(allows(p, 'db/creds/r', 'GET', false), false, 'longer glob wins');
  assert.equal(allows(p, 'x/b/y', 'GET', false), true);
  assert.equal(allows(p, 'x/a/y', 'GET', false), false, 'fewer wildcards win');
});

test('rules for the same path from several policies merge; deny there wins', () => {
  const a = parsePolicy('path "p" { capabilities = ["read"] }');
  const b = parsePolicy('path "p" { capabilities = ["update"] }');
  assert.deepEqual([...capabilitiesOn([a, b], 'p')].sort(), ['read', 'update']);
  const c = parsePolicy('path "p" { capabilities = ["deny"] }');
  assert.deepEqual([...capabilitiesOn([a, b, c], 'p')], ['deny']);
});

test('methods map to capabilities; create allows a write; sudo paths need sudo', () => {
  const p = rules(`
    path "w" { capabilities = ["create"] }
    path "s" { capabilities = ["update"] }
    path "s2" { capabilities = ["update", "sudo"] }
    path "l/*" { capabilities = ["list"] }
    path "d" { capabilities = ["delete"] }
  `);
  assert.equal(allows(p, 'w', 'PUT', false), true);
  assert.equal(allows(p, 'w', 'GET', false), false);
  assert.equal(allows(p, 's', 'PUT', true), false);
  assert.equal(allows(p, 's2', 'PUT', true), true);
  assert.equal(allows(p, 'l', 'LIST', false), true, 'a list checks the path with a trailing slash, as Vault does');
  assert.equal(allows(p, 'l', 'GET', false), false);
  assert.equal(allows(p, 'd', 'DELETE', false), true);
  assert.equal(allows(p, 'd', 'HEAD', false), false);
  const plain = rules('path "roles" { capabilities = ["list"] }');
  assert.equal(allows(plain, 'roles', 'LIST', false), true, 'and falls back to the path without it');
});

let broker: BrokerProcess;
let root: string;

before(async () => {
  broker = await startBroker();
  ({ rootToken: root } = await initAndUnseal(broker));
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

const putPolicy = async (name: string, policy: string): Promise<void> => {
  const r = await broker.api('PUT', `sys/policies/acl/${name}`, { token: root, body: { policy } });
  assert.equal(r.status, 204, r.text);
};

const tokenWith = async (policies: string[]): Promise<string> => {
  const r = await broker.api('PUT', 'auth/token/create', { token: root, body: { policies } });
  assert.equal(r.status, 200, r.text);
  return r.body.auth.client_token;
};

test('over HTTP: policy CRUD, list, HCL and JSON and base64', async () => {
  await putPolicy('reader', 'path "database/roles/*" { capabilities = ["read", "list"] }');
  await putPolicy('json-one', JSON.stringify({ path: { 'sys/mounts': { capabilities: ['read'] } } }));
  await putPolicy('b64', Buffer.from('path "sys/key-status" { capabilities = ["read"] }').toString('base64'));
  const list = await broker.api('LIST', 'sys/policies/acl', { token: root });
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.data.keys, ['b64', 'default', 'json-one', 'reader', 'root']);
  assert.deepEqual((await broker.api('GET', 'sys/policies/acl?list=true', { token: root })).body.data.keys, list.body.data.keys);
  const read = await broker.api('GET', 'sys/policies/acl/reader', { token: root });
  assert.deepEqual(read.body.data, { name: 'reader', policy: 'path "database/roles/*" { capabilities = ["read", "list"] }' });
  assert.match((await broker.api('GET', 'sys/policies/acl/b64', { token: root })).body.data.policy, /^path "sys\/key-status"/);
  assert.match((await broker.api('GET', 'sys/policies/acl/default', { token: root })).body.data.policy, /lookup-self/);
  // Names are case-insensitive, as in Vault.
  assert.equal((await broker.api('GET', 'sys/policies/acl/READER', { token: root })).status, 200);
  assert.equal((await broker.api('GET', 'sys/policies/acl/missing', { token: root })).status, 404);

  for (const name of ['root', 'default']) {
    const r = await broker.api('PUT', `sys/policies/acl/${name}`, { token: root, body: { policy: 'path "x" { capabilities = ["read"] }' } });
    assert.equal(r.status, 400);
    assert.match(r.body.errors[0], /"name"/);
  }
  const bad = await broker.api('PUT', 'sys/policies/acl/bad', { token: root, body: { policy: 'path "x" { capabilities = ["fly"] }' } });
  assert.equal(bad.status, 400);
  assert.match(bad.body.errors[0], /invalid field "policy": unknown capability "fly"/);
  assert.equal((await broker.api('GET', 'sys/policies/acl/bad', { token: root })).status, 404, 'a refused policy is not stored');

  assert.equal((await broker.api('DELETE', 'sys/policies/acl/json-one', { token: root })).status, 204);
  assert.equal((await broker.api('GET', 'sys/policies/acl/json-one', { token: root })).status, 404);
});

test('over HTTP: a non-root token reaches only what its policies allow', async () => {
  await putPolicy('app', `
    path "database/roles/*" { capabilities = ["read", "list"] }
    path "database/roles/secret-*" { capabilities = ["deny"] }
    path "sys/mounts" { capabilities = ["read"] }
  `);
  const app = await tokenWith(['app']);
  // Allowed: the request gets past the ACL (404 = no such role, 200 = mounts).
  assert.equal((await broker.api('GET', 'sys/mounts', { token: app })).status, 200);
  assert.equal((await broker.api('GET', 'database/roles/web', { token: app })).status, 404);
  assert.equal((await broker.api('LIST', 'database/roles', { token: app })).status, 404, 'empty list is a 404, past the ACL');
  // Denied: everything else, and the deny rule.
  const denied: Array<[string, string, unknown?]> = [
    ['GET', 'database/roles/secret-admin'],
    ['PUT', 'database/roles/web', { db_name: 'x' }],
    ['DELETE', 'database/roles/web'],
    ['GET', 'database/creds/web'],
    ['GET', 'sys/key-status'],
    ['PUT', 'sys/rotate'],
    ['PUT', 'sys/seal'],
    ['GET', 'sys/policies/acl/app'],
    ['PUT', 'sys/policies/acl/app', { policy: 'path "*" { capabilities = ["sudo", "read", "update"] }' }],
    ['PUT', 'sys/mounts/other', { type: 'database' }],
    ['GET', 'sys/leases/count?type=irrevocable'],
    ['PUT', 'auth/token/create', {}],
  ];
  for (const [method, path, body] of denied) {
    const r = await broker.api(method, path, { token: app, ...(body !== undefined ? { body } : {}) });
    assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
    assert.deepEqual(r.body, { errors: ['permission denied'] });
  }
  // The default policy: a token looks after itself.
  assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: app })).status, 200);
  assert.equal((await broker.api('PUT', 'auth/token/renew-self', { token: app })).status, 200);
});

test('over HTTP: policy changes apply at once, and a deleted policy grants nothing', async () => {
  await putPolicy('moving', 'path "sys/mounts" { capabilities = ["read"] }');
  const t = await tokenWith(['moving']);
  assert.equal((await broker.api('GET', 'sys/mounts', { token: t })).status, 200);
  assert.equal((await broker.api('GET', 'sys/key-status', { token: t })).status, 403);
  await putPolicy('moving', 'path "sys/key-status" { capabilities = ["read"] }');
  assert.equal((await broker.api('GET', 'sys/mounts', { token: t })).status, 403);
  assert.equal((await broker.api('GET', 'sys/key-status', { token: t })).status, 200);
  assert.equal((await broker.api('DELETE', 'sys/policies/acl/moving', { token: root })).status, 204);
  assert.equal((await broker.api('GET', 'sys/key-status', { token: t })).status, 403);
});

test('over HTTP: sudo paths need the sudo capability', async () => {
  await putPolicy('rotator', 'path "sys/rotate" { capabilities = ["update"] }');
  await putPolicy('rotator-sudo', 'path "sys/rotate" { capabilities = ["update", "sudo"] }');
  assert.equal((await broker.api('PUT', 'sys/rotate', { token: await tokenWith(['rotator']) })).status, 403);
  assert.equal((await broker.api('PUT', 'sys/rotate', { token: await tokenWith(['rotator-sudo']) })).status, 204);
});
