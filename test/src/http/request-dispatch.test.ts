// How a request reaches a handler, against a real broker and the local
// PostgreSQL (issue 8, items 1, 2, 5 and the header half of 14):
// - HEAD is GET without a body: it runs the read branch, never a write, never
//   issues a credential (405 where GET is absent or changes state);
// - absurdly nested JSON is a 400 naming max_json_depth, and anything nested
//   below the limit never breaks the audit device;
// - unknown body fields are accepted with Vault's warning (a 204 becomes a
//   200 carrying it); wrong types of known fields stay 400;
// - Vault headers dbroker does not apply (X-Vault-Wrap-TTL, a non-root
//   X-Vault-Namespace) are refused, never silently ignored.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker, type BrokerProcess } from '../../support/broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { configureConnection, createRole, dropRolesWithPrefix, prefixTemplate, rolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';

const run = tag();
const userPrefix = `hd${run}`;
let server: TestPostgres;
let pb: PgBroker;
let reader: string;
const auditDir = mkdtempSync(join(tmpdir(), 'dbroker-dispatch-audit-'));
const auditFile = join(auditDir, 'audit.log');

const leaseCount = async (): Promise<number> => {
  const r = await pb.api('GET', 'sys/leases/count?type=all');
  assert.equal(r.status, 200, r.text);
  return r.body.data.lease_count as number;
};
/** The ids of the role `app`'s leases. */
const allLeases = async (): Promise<string[]> => {
  const r = await pb.api('GET', 'sys/leases/lookup/database/creds/app/?list=true');
  return r.status === 200 ? (r.body.data.keys as string[]).map((k) => `database/creds/app/${k}`).sort() : [];
};

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await configureConnection(pb, server, 'main');
  await createRole(pb, 'app', { db_name: 'main', username_template: prefixTemplate(`${userPrefix}-`), default_ttl: '10m' });
  assert.equal((await pb.api('PUT', 'sys/audit/file', { type: 'file', options: { file_path: auditFile } })).status, 204);
  const policy = 'path "sys/policies/acl/*" { capabilities = ["read"] }\npath "database/static-roles/*" { capabilities = ["read"] }\npath "database/creds/*" { capabilities = ["read"] }';
  assert.equal((await pb.api('PUT', 'sys/policies/acl/reader', { policy })).status, 204);
  const t = await pb.api('PUT', 'auth/token/create', { policies: ['reader'], ttl: '1h' });
  assert.equal(t.status, 200, t.text);
  reader = t.body.auth.client_token;
});

after(async () => {
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  rmSync(auditDir, { recursive: true, force: true });
});

const head = (broker: BrokerProcess, path: string, token?: string) =>
  fetch(`${broker.url}/v1/${path}`, { method: 'HEAD', headers: token ? { 'x-vault-token': token } : {} });

test('HEAD sys/init on an uninitialised broker answers like GET, without a body, and initialises nothing', async () => {
  const fresh = await startBroker();
  try {
    const r = await head(fresh, 'sys/init');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), '');
    const get = await fresh.api('GET', 'sys/init');
    assert.deepEqual(get.body, { initialized: false }, 'HEAD did not run the init branch');
    // POST/PUT sys/init still initialises.
    assert.equal((await fresh.api('PUT', 'sys/init', { body: { secret_shares: 1, secret_threshold: 1 } })).status, 200);
  } finally {
    await fresh.stop();
    fresh.remove();
  }
});

test('HEAD on a policy runs the read branch: 200 for a reader and for root, no write', async () => {
  assert.equal((await pb.api('PUT', 'sys/policies/acl/target', { policy: 'path "x" { capabilities = ["read"] }' })).status, 204);
  for (const token of [reader, pb.root]) {
    const r = await head(pb.broker, 'sys/policies/acl/target', token);
    assert.equal(r.status, 200, `HEAD with ${token === reader ? 'reader' : 'root'}`);
    assert.equal(await r.text(), '');
  }
  const missing = await head(pb.broker, 'sys/policies/acl/no-such-policy', pb.root);
  assert.equal(missing.status, 404, 'HEAD of a missing policy is the GET status');
  assert.equal((await head(pb.broker, 'sys/policies/acl/target')).status, 403, 'no token');
  const read = await pb.api('GET', 'sys/policies/acl/target');
  assert.equal(read.body.data.policy, 'path "x" { capabilities = ["read"] }', 'the policy is unchanged');
});

test('HEAD database/creds/<role> is 405 and issues no credential; GET still does', async () => {
  const before = await rolesWithPrefix(server, userPrefix);
  const leasesBefore = await allLeases();
  for (const token of [pb.root, reader]) {
    const r = await head(pb.broker, 'database/creds/app', token);
    assert.equal(r.status, 405);
  }
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), before, 'no database user was created');
  assert.deepEqual(await allLeases(), leasesBefore, 'no lease was created');
  const get = await pb.broker.api('GET', 'database/creds/app', { token: reader });
  assert.equal(get.status, 200, get.text);
  assert.ok((await allLeases()).includes(get.body.lease_id));
});

test('HEAD database/static-roles/<name> with a read-only token reads; it never reaches the write path', async () => {
  const miss = await head(pb.broker, 'database/static-roles/nobody', reader);
  assert.equal(miss.status, 404, 'the GET status for a missing static role, not a 204 from the write branch');
  assert.equal((await pb.api('GET', 'database/static-roles/nobody')).status, 404, 'nothing was written');
});

test('HEAD does not use up a token with num_uses', async () => {
  const t = await pb.api('PUT', 'auth/token/create', { policies: ['reader'], num_uses: 1 });
  const once = t.body.auth.client_token as string;
  for (let i = 0; i < 3; i++) assert.equal((await head(pb.broker, 'sys/policies/acl/reader', once)).status, 200);
  const get = await pb.broker.api('GET', 'sys/policies/acl/reader', { token: once });
  assert.equal(get.status, 200, 'the one use is still there');
  assert.equal((await pb.broker.api('GET', 'sys/policies/acl/reader', { token: once })).status, 403, 'and now it is spent');
});

function nested(depth: number): string {
  return `{"x":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
}

test('deeply nested JSON is a 400 naming the limit, with an audit device on, no token needed', async () => {
  for (const token of [undefined, pb.root]) {
    const r = await pb.broker.api('PUT', 'sys/leases/lookup', { rawBody: nested(1700), headers: { 'content-type': 'application/json' }, ...(token ? { token } : {}) });
    assert.equal(r.status, 400, r.text);
    assert.match(r.body.errors[0], /nested deeper than 300 levels \(max_json_depth\)/);
  }
  // Nesting inside strings does not count.
  const inString = await pb.broker.api('PUT', 'sys/leases/lookup', { token: pb.root, body: { lease_id: '['.repeat(5000) } });
  assert.equal(inString.status, 400);
  assert.match(inString.body.errors[0], /lease/);
  // Just under the limit: parsed, audited (hashing walks it without recursion) and refused by the handler, never a 500.
  const deep = await pb.broker.api('PUT', 'sys/leases/lookup', { token: pb.root, rawBody: nested(300), headers: { 'content-type': 'application/json' } });
  assert.equal(deep.status, 400, deep.text);
  assert.match(deep.body.errors[0], /missing required field "lease_id"/);
  const log = readFileSync(auditFile, 'utf8');
  assert.ok(log.includes('[[[[[[[[[['), 'the deep request was recorded by the audit device');
});

test('unknown fields: accepted with Vault\'s warning, a 204 becomes 200; wrong types stay 400', async () => {
  // node-vault's mount() sends mount_point in the body.
  const mount = await pb.api('PUT', `sys/mounts/nv${run}`, { type: 'database', mount_point: `nv${run}` });
  assert.equal(mount.status, 200, mount.text);
  assert.deepEqual(mount.body.warnings, ['Endpoint ignored these unrecognized parameters: [mount_point]']);
  assert.equal(mount.body.data, null);
  assert.equal((await pb.api('GET', `sys/mounts/nv${run}`)).status, 200, 'the mount exists');

  const role = await pb.api('PUT', 'database/roles/warned', {
    db_name: 'main',
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`],
    bogus: 1,
    other: 'x',
  });
  assert.equal(role.status, 200, role.text);
  assert.deepEqual(role.body.warnings, ['Endpoint ignored these unrecognized parameters: [bogus other]']);
  assert.equal((await pb.api('GET', 'database/roles/warned')).body.data.db_name, 'main');

  const token = await pb.api('PUT', 'auth/token/create', { policies: ['reader'], polices: ['typo'] });
  assert.equal(token.status, 200);
  assert.deepEqual(token.body.warnings, ['Endpoint ignored these unrecognized parameters: [polices]']);
  assert.deepEqual(token.body.auth.policies, ['default', 'reader']);

  // A route without body fields (creds) warns too, and still answers.
  const creds = await pb.api('PUT', 'database/creds/app', { ttl: '5m' });
  assert.equal(creds.status, 200, creds.text);
  assert.deepEqual(creds.body.warnings, ['Endpoint ignored these unrecognized parameters: [ttl]']);
  assert.ok(creds.body.data.password);

  // Known fields with the wrong type are still refused, even next to unknown ones.
  const typed = await pb.api('PUT', `sys/mounts/nv2${run}`, { type: 5, mount_point: 'x' });
  assert.equal(typed.status, 400);
  assert.match(typed.body.errors[0], /invalid field "type"/);
  assert.equal((await pb.api('GET', `sys/mounts/nv2${run}`)).status, 400, 'nothing was mounted');
});

test('X-Vault-Wrap-TTL and a non-root X-Vault-Namespace are refused, never ignored; no credential is issued', async () => {
  const leasesBefore = await allLeases();
  const countBefore = await leaseCount();
  const wrapped = await pb.broker.api('GET', 'database/creds/app', { token: pb.root, headers: { 'x-vault-wrap-ttl': '60s' } });
  assert.equal(wrapped.status, 400, wrapped.text);
  assert.match(wrapped.body.errors[0], /X-Vault-Wrap-TTL/);
  assert.equal(wrapped.text.includes('password'), false);
  assert.deepEqual(await allLeases(), leasesBefore, 'no lease was created');

  const ns = await pb.broker.api('GET', 'sys/policies/acl/reader', { token: pb.root, headers: { 'x-vault-namespace': 'team-a' } });
  assert.equal(ns.status, 400);
  assert.match(ns.body.errors[0], /X-Vault-Namespace/);
  for (const value of ['root', 'root/', '']) {
    const ok = await pb.broker.api('GET', 'sys/policies/acl/reader', { token: pb.root, headers: { 'x-vault-namespace': value } });
    assert.equal(ok.status, 200, `namespace "${value}"`);
  }
  assert.equal(await leaseCount(), countBefore, 'still no new lease');
});

test('Vault CLI string values (`vault write k=v` sends every value as a string) reach boolean and integer fields as Vault decodes them', async () => {
  // verify_connection=false max_open_connections=3, as `vault write database/config/cli ...` sends them.
  const conn = await pb.api('PUT', 'database/config/cli', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: server.adminUser,
    password: server.adminPassword,
    verify_connection: 'false',
    max_open_connections: '3',
    allowed_roles: 'app',
  });
  assert.ok(conn.status === 204 || conn.status === 200, conn.text);
  const read = (await pb.api('GET', 'database/config/cli')).body.data;
  assert.equal(read.verify_connection, false);
  assert.equal(read.connection_details.max_open_connections, 3);
  // Go's ParseBool spellings; num_uses as a string.
  for (const [renewable, expected] of [['t', true], ['FALSE', false], ['1', true], ['0', false]] as const) {
    const t = await pb.api('PUT', 'auth/token/create', { policies: 'reader', renewable, num_uses: '4', ttl: '10m' });
    assert.equal(t.status, 200, t.text);
    assert.equal(t.body.auth.renewable, expected, `renewable=${renewable}`);
    assert.equal(t.body.auth.num_uses, 4);
  }
  // What Vault would refuse stays a 400 naming the field.
  for (const [field, value] of [['renewable', 'yes'], ['num_uses', '4.5'], ['num_uses', 'four']] as const) {
    const r = await pb.api('PUT', 'auth/token/create', { [field]: value });
    assert.equal(r.status, 400, `${field}=${value}`);
    assert.match(r.body.errors[0], new RegExp(`"${field}"`));
  }
  assert.equal((await pb.api('DELETE', 'database/config/cli')).status, 204);
});
