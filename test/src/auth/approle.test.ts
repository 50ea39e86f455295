// AppRole and sys/auth over real HTTP against a real broker process and the
// shared PostgreSQL: enabling mounts, roles, secret IDs (generate, lookup,
// LIST, destroy, accessors), logins with Vault's auth block, use counts under
// 20 concurrent logins, TTL expiry, CIDR bindings from 127.0.0.2 vs
// 127.0.0.1, end to end to database/creds, audit hashing, restart, and
// disabling the mount (tokens and database users gone).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../../support/broker.ts';
import { apiFrom, assertCredsByPolicy, setupDatabase } from '../../support/auth.ts';
import { dropRolesWithPrefix, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

let pb: PgBroker;
let server: TestPostgres;
const prefix = `ar${tag()}`;
const auditDir = mkdtempSync(join(tmpdir(), 'dbroker-approle-audit-'));
const auditFile = join(auditDir, 'audit.log');

before(async () => {
  server = await trustPostgres();
  pb = await startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } });
  assert.equal((await pb.api('PUT', 'sys/audit/file', { type: 'file', options: { file_path: auditFile } })).status, 204);
  await setupDatabase(pb, server, prefix);
  const r = await pb.api('PUT', 'sys/auth/approle', { type: 'approle', description: 'services' });
  assert.equal(r.status, 204, r.text);
});

after(async () => {
  await pb?.close();
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
});

async function role(name: string, body: Record<string, unknown>, mount = 'approle'): Promise<{ roleId: string }> {
  const w = await pb.api('PUT', `auth/${mount}/role/${name}`, body);
  assert.equal(w.status, 204, w.text);
  const r = await pb.api('GET', `auth/${mount}/role/${name}/role-id`);
  assert.equal(r.status, 200, r.text);
  return { roleId: r.body.data.role_id };
}

async function secretId(name: string, body: Record<string, unknown> = {}, mount = 'approle'): Promise<{ secretId: string; accessor: string; body: any }> {
  const r = await pb.api('PUT', `auth/${mount}/role/${name}/secret-id`, body);
  assert.equal(r.status, 200, r.text);
  return { secretId: r.body.data.secret_id, accessor: r.body.data.secret_id_accessor, body: r.body };
}

const login = (roleId: string, secret?: string, mount = 'approle') =>
  pb.broker.api('PUT', `auth/${mount}/login`, { body: { role_id: roleId, ...(secret !== undefined ? { secret_id: secret } : {}) } });

test('sys/auth: enable several mounts, list, read, tune; bad input is a 400 naming the field', async () => {
  assert.equal((await pb.api('PUT', 'sys/auth/ci/approle', { type: 'approle', config: { default_lease_ttl: '10m', max_lease_ttl: '1h' } })).status, 204);
  const list = await pb.api('GET', 'sys/auth');
  assert.equal(list.status, 200);
  assert.deepEqual(Object.keys(list.body.data).sort(), ['approle/', 'ci/approle/', 'token/']);
  assert.equal(list.body.data['approle/'].type, 'approle');
  assert.equal(list.body.data['approle/'].description, 'services');
  assert.match(list.body.data['approle/'].accessor, /^auth_approle_[0-9a-f]{8}$/);
  assert.equal(list.body.data['token/'].type, 'token');
  assert.equal(list.body['ci/approle/'].config.default_lease_ttl, 600, 'also at the top level, as Vault answers');

  const one = await pb.api('GET', 'sys/auth/ci/approle');
  assert.equal(one.status, 200);
  assert.equal(one.body.data.config.max_lease_ttl, 3600);

  const tune = await pb.api('GET', 'sys/auth/approle/tune');
  assert.equal(tune.status, 200);
  assert.equal(tune.body.data.default_lease_ttl, 3600, 'the broker default when the mount sets none');
  assert.equal(tune.body.data.max_lease_ttl, 14400);
  assert.equal((await pb.api('PUT', 'sys/auth/ci/approle/tune', { default_lease_ttl: '20m' })).status, 204);
  assert.equal((await pb.api('GET', 'sys/auth/ci/approle/tune')).body.data.default_lease_ttl, 1200);
  const tooLong = await pb.api('PUT', 'sys/auth/ci/approle/tune', { max_lease_ttl: '100h' });
  assert.equal(tooLong.status, 400);
  assert.match(tooLong.body.errors[0], /max_lease_ttl/);

  const cases: Array<[Record<string, unknown>, RegExp, string]> = [
    [{ type: 'ldap' }, /unsupported auth method type "ldap"/, 'unknown type'],
    [{}, /"type"/, 'missing type'],
    [{ type: 'approle', seal_wrap: true }, /field "seal_wrap" is not supported/, 'seal_wrap'],
    [{ type: 'approle', local: true }, /field "local" is not supported/, 'local'],
    [{ type: 'approle', config: { audit_non_hmac_request_keys: ['secret_id'] } }, /audit_non_hmac_request_keys/, 'unhashed audit keys'],
    [{ type: 'approle', config: { default_lease_ttl: 'soon' } }, /default_lease_ttl/, 'bad duration'],
  ];
  for (const [body, message, what] of cases) {
    const r = await pb.api('PUT', 'sys/auth/other', body);
    assert.equal(r.status, 400, `${what}: ${r.text}`);
    assert.match(r.body.errors[0], message, what);
  }
  const taken = await pb.api('PUT', 'sys/auth/approle', { type: 'userpass' });
  assert.equal(taken.status, 400);
  assert.match(taken.body.errors[0], /already in use/);
  const token = await pb.api('PUT', 'sys/auth/token', { type: 'approle' });
  assert.equal(token.status, 400);
  assert.equal((await pb.api('GET', 'sys/auth')).body.data['other/'], undefined, 'nothing half-enabled');

  // Exactly what Vault's Go client (api v1.23 EnableAuthWithOptions, TuneMount) and CLI send: every field, most empty.
  const goEnable = {
    type: 'userpass',
    description: '',
    config: { options: null, default_lease_ttl: '', max_lease_ttl: '', force_no_cache: false },
    local: false,
    seal_wrap: false,
    external_entropy_access: false,
    options: null,
  };
  const enabled = await pb.api('PUT', 'sys/auth/go-client', goEnable);
  assert.equal(enabled.status, 204, enabled.text);
  const goTune = { options: null, default_lease_ttl: '15m', max_lease_ttl: '', force_no_cache: false };
  const tuned = await pb.api('PUT', 'sys/auth/go-client/tune', goTune);
  assert.equal(tuned.status, 204, tuned.text);
  assert.equal((await pb.api('GET', 'sys/auth/go-client/tune')).body.data.default_lease_ttl, 900);
  const withOptions = await pb.api('PUT', 'sys/auth/go-client/tune', { options: { version: '2' } });
  assert.equal(withOptions.status, 400);
  assert.match(withOptions.body.errors[0], /field "options" is not supported/);
  // Parameters Vault does not know are answered with a warning, not refused.
  // (Unknown top-level fields follow the shared schema helper's rule; these are the ones this route reads itself.)
  const unknownKey = await pb.api('PUT', 'sys/auth/go-client/tune', { default_lease_ttl: '16m', type: 'approle' });
  assert.equal(unknownKey.status, 200, unknownKey.text);
  assert.ok(unknownKey.body.warnings.some((w: string) => w.includes('"type"')));
  assert.equal((await pb.api('GET', 'sys/auth/go-client/tune')).body.data.default_lease_ttl, 960, 'the known part applied');
  const unknownConfig = await pb.api('PUT', 'sys/auth/go-client-2', { type: 'approle', config: { colour: 'blue' } });
  assert.equal(unknownConfig.status, 200, unknownConfig.text);
  assert.ok(unknownConfig.body.warnings.some((w: string) => w.includes('"config.colour"')));
  assert.equal((await pb.api('DELETE', 'sys/auth/go-client-2')).status, 204);
  assert.equal((await pb.api('DELETE', 'sys/auth/go-client')).status, 204);

  // Unknown auth paths are 404s; a non-root token may not enable methods (sudo path).
  assert.equal((await pb.api('PUT', 'auth/nothing/login', {})).status, 404);
  const plain = await pb.api('PUT', 'auth/token/create', { policies: ['dbuser'] });
  const denied = await pb.broker.api('PUT', 'sys/auth/mine', { token: plain.body.auth.client_token, body: { type: 'approle' } });
  assert.equal(denied.status, 403);
  assert.equal((await pb.api('DELETE', 'sys/auth/ci/approle')).status, 204);
  assert.equal((await pb.api('GET', 'sys/auth/ci/approle')).status, 400);
});

test('role CRUD in Vault shape; unsupported fields are 400s', async () => {
  const { roleId } = await role('web', { token_policies: 'dbuser', token_ttl: '20m', token_max_ttl: '1h', secret_id_ttl: '10m', secret_id_num_uses: 3 });
  assert.match(roleId, /^[0-9a-f-]{36}$/);
  const r = await pb.api('GET', 'auth/approle/role/web');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.data.token_policies, ['dbuser']);
  assert.equal(r.body.data.token_ttl, 1200);
  assert.equal(r.body.data.token_max_ttl, 3600);
  assert.equal(r.body.data.secret_id_ttl, 600);
  assert.equal(r.body.data.secret_id_num_uses, 3);
  assert.equal(r.body.data.bind_secret_id, true);
  // A partial update keeps the other fields.
  assert.equal((await pb.api('PUT', 'auth/approle/role/web', { token_num_uses: 0 })).status, 204);
  assert.equal((await pb.api('GET', 'auth/approle/role/web')).body.data.token_ttl, 1200);
  const list = await pb.list('auth/approle/role');
  assert.equal(list.status, 200);
  assert.ok(list.body.data.keys.includes('web'));

  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ token_type: 'batch' }, /field "token_type" is not supported/],
    [{ local_secret_ids: true }, /field "local_secret_ids" is not supported/],
    [{ token_bound_cidrs: ['10.0.0.0/99'] }, /token_bound_cidrs/],
    [{ token_ttl: '2h', token_max_ttl: '1h' }, /token_ttl/],
    [{ bind_secret_id: false }, /at least one constraint/],
    [{ token_policies: ['root'] }, /root/],
  ];
  for (const [body, message] of bad) {
    const w = await pb.api('PUT', 'auth/approle/role/broken', body);
    assert.equal(w.status, 400, w.text);
    assert.match(w.body.errors[0], message);
  }
  assert.equal((await pb.api('GET', 'auth/approle/role/broken')).status, 404, 'no role left behind');
  // A chosen role ID, then taken by another role: refused.
  assert.equal((await pb.api('PUT', 'auth/approle/role/web/role-id', { role_id: 'web-role-id' })).status, 204);
  assert.equal((await pb.api('GET', 'auth/approle/role/web/role-id')).body.data.role_id, 'web-role-id');
  const clash = await pb.api('PUT', 'auth/approle/role/other', { role_id: 'web-role-id' });
  assert.equal(clash.status, 400);
  assert.match(clash.body.errors[0], /role_id/);
});

test('login returns Vault\'s auth block; the token carries the role\'s policies and reaches only allowed creds', async () => {
  const { roleId } = await role('app', { token_policies: ['dbuser'], token_ttl: '15m', token_max_ttl: '30m' });
  const s = await secretId('app', { metadata: JSON.stringify({ team: 'payments' }) });
  assert.match(s.secretId, /^[0-9a-f-]{36}$/);
  assert.equal(s.body.data.secret_id_ttl, 0);
  const r = await login(roleId, s.secretId);
  assert.equal(r.status, 200, r.text);
  const auth = r.body.auth;
  assert.match(auth.client_token, /^hvs\./);
  assert.equal(typeof auth.accessor, 'string');
  assert.deepEqual(auth.policies, ['dbuser', 'default']);
  assert.deepEqual(auth.token_policies, ['dbuser', 'default']);
  assert.deepEqual(auth.metadata, { role_name: 'app', team: 'payments' });
  assert.equal(auth.lease_duration, 900);
  assert.equal(auth.renewable, true);
  assert.equal(auth.entity_id, '');
  assert.equal(auth.orphan, true);
  assert.equal(r.body.data, null);

  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: auth.client_token });
  assert.equal(self.status, 200);
  assert.equal(self.body.data.display_name, 'approle');
  assert.equal(self.body.data.path, 'auth/approle/login');
  // Renewable up to token_max_ttl (30m) and no further.
  const renewed = await pb.broker.api('PUT', 'auth/token/renew-self', { token: auth.client_token, body: { increment: '2h' } });
  assert.equal(renewed.status, 200, renewed.text);
  assert.ok(renewed.body.auth.lease_duration <= 1800 && renewed.body.auth.lease_duration >= 1795, String(renewed.body.auth.lease_duration));

  await assertCredsByPolicy(pb, server, auth.client_token, prefix, 'approle');

  // Wrong secret, wrong role ID: 400, no token; the log says why, never the secret.
  const wrong = await login(roleId, '00000000-0000-0000-0000-000000000000');
  assert.equal(wrong.status, 400);
  assert.equal(wrong.body.auth, undefined);
  assert.match(wrong.body.errors[0], /invalid role ID or secret ID/);
  assert.equal((await login('no-such-role-id', s.secretId)).status, 400);
  assert.equal((await login(roleId)).status, 400, 'bind_secret_id: a secret is required');
  assert.match(pb.broker.logs, /"reason":"role \\"app\\": unknown, expired or destroyed secret_id".*"login failed"|login failed/);
  assert.ok(pb.broker.logs.includes('unknown, expired or destroyed secret_id'));
  assert.ok(!pb.broker.logs.includes(s.secretId), 'the secret ID is never logged');
});

test('secret_id_num_uses under 20 concurrent logins: exactly N succeed', async () => {
  const { roleId } = await role('limited', { token_policies: 'dbuser', secret_id_num_uses: 5 });
  const s = await secretId('limited');
  assert.equal(s.body.data.secret_id_num_uses, 5);
  const results = await Promise.all(Array.from({ length: 20 }, () => login(roleId, s.secretId)));
  const ok = results.filter((r) => r.status === 200);
  assert.equal(ok.length, 5, results.map((r) => r.status).join(','));
  assert.ok(results.every((r) => r.status === 200 || r.status === 400), 'the rest are refused with 400, never 500');
  assert.equal(new Set(ok.map((r) => r.body.auth.client_token)).size, 5);
  // The used-up secret ID is gone.
  assert.equal((await pb.api('PUT', 'auth/approle/role/limited/secret-id/lookup', { secret_id: s.secretId })).status, 204);
  // A narrower num_uses on one secret ID, but never wider than the role's.
  assert.equal((await pb.api('PUT', 'auth/approle/role/limited/secret-id', { num_uses: 9 })).status, 400);
  const two = await secretId('limited', { num_uses: 2 });
  assert.equal((await login(roleId, two.secretId)).status, 200);
  assert.equal((await login(roleId, two.secretId)).status, 200);
  assert.equal((await login(roleId, two.secretId)).status, 400);
});

test('secret_id_ttl: a secret ID expires', async () => {
  const { roleId } = await role('short', { token_policies: 'dbuser', secret_id_ttl: 2 });
  const s = await secretId('short');
  assert.equal(s.body.data.secret_id_ttl, 2);
  const look = await pb.api('PUT', 'auth/approle/role/short/secret-id/lookup', { secret_id: s.secretId });
  assert.equal(look.status, 200);
  assert.equal(look.body.data.secret_id_ttl, 2);
  assert.ok(Date.parse(look.body.data.expiration_time) > Date.now());
  await new Promise((r) => setTimeout(r, 2500));
  const r = await login(roleId, s.secretId);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.body.auth, undefined);
});

test('CIDR bindings: secret_id_bound_cidrs and token_bound_cidrs, from 127.0.0.2 vs 127.0.0.1', async () => {
  const { roleId } = await role('local', { token_policies: 'dbuser', secret_id_bound_cidrs: '127.0.0.1/32' });
  const s = await secretId('local', { num_uses: 0 });
  const from2 = await apiFrom(pb.broker, '127.0.0.2', 'PUT', 'auth/approle/login', { body: { role_id: roleId, secret_id: s.secretId } });
  assert.equal(from2.status, 403, from2.text);
  assert.match(from2.body.errors[0], /CIDR/);
  const from1 = await apiFrom(pb.broker, '127.0.0.1', 'PUT', 'auth/approle/login', { body: { role_id: roleId, secret_id: s.secretId } });
  assert.equal(from1.status, 200, from1.text);
  // A secret ID's own cidr_list must lie within the role's.
  assert.equal((await pb.api('PUT', 'auth/approle/role/local/secret-id', { cidr_list: '10.0.0.0/8' })).status, 400);

  // token_bound_cidrs: the token works only from 127.0.0.1, on every use.
  const t = await role('pinned', { token_policies: 'dbuser', token_bound_cidrs: ['127.0.0.1'] });
  const ps = await secretId('pinned');
  const loginFrom2 = await apiFrom(pb.broker, '127.0.0.2', 'PUT', 'auth/approle/login', { body: { role_id: t.roleId, secret_id: ps.secretId } });
  assert.equal(loginFrom2.status, 403);
  const loginFrom1 = await apiFrom(pb.broker, '127.0.0.1', 'PUT', 'auth/approle/login', { body: { role_id: t.roleId, secret_id: ps.secretId } });
  assert.equal(loginFrom1.status, 200);
  const token = loginFrom1.body.auth.client_token;
  assert.equal((await apiFrom(pb.broker, '127.0.0.1', 'GET', 'auth/token/lookup-self', { token })).status, 200);
  assert.equal((await apiFrom(pb.broker, '127.0.0.2', 'GET', 'auth/token/lookup-self', { token })).status, 403);
  assert.equal((await apiFrom(pb.broker, '127.0.0.2', 'GET', 'database/creds/allowed', { token })).status, 403);
  const viaRoot = await pb.api('PUT', 'auth/token/lookup', { token });
  assert.deepEqual(viaRoot.body.data.meta, { role_name: 'pinned' });
});

test('secret IDs: LIST accessors, lookup, accessor lookup/destroy; a destroyed secret ID is refused', async () => {
  const { roleId } = await role('ops', { token_policies: 'dbuser' });
  const a = await secretId('ops', { metadata: '{"host":"a"}' });
  const b = await secretId('ops');
  const list = await pb.list('auth/approle/role/ops/secret-id');
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.data.keys, [a.accessor, b.accessor].sort());
  assert.ok(!list.text.includes(a.secretId) && !list.text.includes(b.secretId));
  const byAccessor = await pb.api('PUT', 'auth/approle/role/ops/secret-id-accessor/lookup', { secret_id_accessor: a.accessor });
  assert.equal(byAccessor.status, 200);
  assert.deepEqual(byAccessor.body.data.metadata, { host: 'a' });
  assert.equal(byAccessor.body.data.secret_id_accessor, a.accessor);
  assert.ok(!byAccessor.text.includes(a.secretId));

  assert.equal((await pb.api('PUT', 'auth/approle/role/ops/secret-id/destroy', { secret_id: a.secretId })).status, 204);
  const refused = await login(roleId, a.secretId);
  assert.equal(refused.status, 400);
  assert.equal((await pb.api('PUT', 'auth/approle/role/ops/secret-id-accessor/destroy', { secret_id_accessor: b.accessor })).status, 204);
  assert.equal((await login(roleId, b.secretId)).status, 400);
  assert.equal((await pb.list('auth/approle/role/ops/secret-id')).status, 404, 'none left');
  const unknown = await pb.api('PUT', 'auth/approle/role/ops/secret-id-accessor/lookup', { secret_id_accessor: 'nope' });
  assert.equal(unknown.status, 400);
  // custom-secret-id
  const custom = await pb.api('PUT', 'auth/approle/role/ops/custom-secret-id', { secret_id: 'my-chosen-secret-value-1234' });
  assert.equal(custom.status, 200);
  assert.equal(custom.body.data.secret_id, 'my-chosen-secret-value-1234');
  assert.equal((await login(roleId, 'my-chosen-secret-value-1234')).status, 200);
  // Deleting the role forgets its secret IDs.
  assert.equal((await pb.api('DELETE', 'auth/approle/role/ops')).status, 204);
  assert.equal((await login(roleId, 'my-chosen-secret-value-1234')).status, 400);
});

test('the audit log has the login HMAC-hashed; the store and logs hold no secret ID', async () => {
  const { roleId } = await role('audited', { token_policies: 'dbuser' });
  const s = await secretId('audited');
  const r = await login(roleId, s.secretId);
  assert.equal(r.status, 200);
  const audit = readFileSync(auditFile, 'utf8');
  assert.ok(!audit.includes(s.secretId), 'no plaintext secret_id in the audit log');
  assert.ok(!audit.includes(r.body.auth.client_token), 'no plaintext token in the audit log');
  const hashed = await pb.api('PUT', 'sys/audit-hash/file', { input: s.secretId });
  assert.equal(hashed.status, 200);
  assert.ok(audit.includes(hashed.body.data.hash), 'the secret_id is there as its HMAC');
  const loginLines = audit.split('\n').filter((l) => l.includes('"auth/approle/login"'));
  assert.ok(loginLines.some((l) => JSON.parse(l).request.mount_type === 'approle'));
  const store = readFileSync(pb.broker.storagePath);
  let wal = Buffer.alloc(0);
  try {
    wal = readFileSync(pb.broker.storagePath + '-wal');
  } catch {
    // no WAL file right now
  }
  for (const blob of [store, wal, Buffer.from(pb.broker.logs)]) {
    assert.equal(blob.indexOf(Buffer.from(s.secretId)), -1, 'no secret ID at rest or in logs');
    assert.equal(blob.indexOf(Buffer.from(r.body.auth.client_token)), -1, 'no token at rest or in logs');
  }
});

test('mounts survive a restart; disabling the mount revokes its tokens and their database users', async () => {
  assert.equal((await pb.api('PUT', 'sys/policies/acl/creator', { policy: 'path "auth/token/create" { capabilities = ["update"] }' })).status, 204);
  const { roleId } = await role('gone', { token_policies: ['dbuser', 'creator'] });
  const s = await secretId('gone', { num_uses: 0 });
  await pb.restart();
  const r = await login(roleId, s.secretId);
  assert.equal(r.status, 200, r.text);
  const token = r.body.auth.client_token;
  const creds = await pb.broker.api('GET', 'database/creds/allowed', { token });
  assert.equal(creds.status, 200);
  const username = creds.body.data.username as string;
  assert.ok(await roleExists(server, username));
  // A child token of the login token is revoked with it.
  const child = await pb.broker.api('PUT', 'auth/token/create', { token, body: { policies: ['dbuser'] } });
  assert.equal(child.status, 200);

  assert.equal((await pb.api('DELETE', 'sys/auth/approle')).status, 204);
  assert.equal((await pb.broker.api('GET', 'auth/token/lookup-self', { token })).status, 403);
  assert.equal((await pb.broker.api('GET', 'auth/token/lookup-self', { token: child.body.auth.client_token })).status, 403);
  await eventually(async () => !(await roleExists(server, username)), 15_000, 'the database user of the disabled mount\'s token is dropped');
  assert.equal((await login(roleId, s.secretId)).status, 404, 'the login path is gone');
  assert.equal((await pb.api('GET', 'sys/auth')).body.data['approle/'], undefined);
  // Enabled again at the same path: nothing of the old mount comes back.
  assert.equal((await pb.api('PUT', 'sys/auth/approle', { type: 'approle' })).status, 204);
  assert.equal((await pb.api('GET', 'auth/approle/role/gone')).status, 404);
});
