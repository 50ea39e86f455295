// Dynamic PostgreSQL credentials over HTTP, against a real broker process and
// a PostgreSQL that checks passwords (scram-sha-256): the response shape,
// what the user can and cannot do, TTL rules and VALID UNTIL, connection
// config (verify, secrets, allowed_roles) and deleting what leases still use.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import {
  configureConnection,
  createRole,
  dropRolesWithPrefix,
  issueCreds,
  prefixTemplate,
  roleExists,
  rolesWithPrefix,
  startPgBroker,
  tag,
  templatedUrl,
  type PgBroker,
} from '../../support/pg-broker.ts';

const run = tag();
const granted = `creds_granted_${run}`;
const hidden = `creds_hidden_${run}`;
const userPrefix = `tc${run}`;
let server: TestPostgres;
let pb: PgBroker;

const sqlStateOf = (err: unknown): string | undefined => (err as { code?: string }).code;

before(async () => {
  [server, pb] = await Promise.all([startScramPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '2h' } })]);
  await adminQuery(server, `CREATE TABLE ${granted} (v int); INSERT INTO ${granted} VALUES (42); CREATE TABLE ${hidden} (v int)`);
  await configureConnection(pb, server, 'main');
  await createRole(pb, 'reader', {
    db_name: 'main',
    creation_statements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ${granted} TO "{{name}}"`,
    ],
    default_ttl: '10m',
    max_ttl: '1h',
    username_template: prefixTemplate(`${userPrefix}r`),
  });
});

after(async () => {
  await pb?.close();
  await server?.stop();
});

test('creds: Vault response shape, login over scram, granted table only, no CREATE ROLE, wrong password refused', async () => {
  const creds = await issueCreds(pb, 'reader');
  const body = creds.body;
  assert.match(creds.leaseId, /^database\/creds\/reader\/[A-Za-z0-9]{24,}$/);
  assert.equal(body.lease_duration, 600);
  assert.equal(body.renewable, true);
  assert.equal(typeof body.request_id, 'string');
  assert.equal(body.wrap_info, null);
  assert.deepEqual(Object.keys(body.data).sort(), ['password', 'username']);
  assert.ok(creds.username.startsWith(`${userPrefix}r`));
  assert.ok(creds.password.length >= 20 && /[A-Z]/.test(creds.password) && /[a-z]/.test(creds.password) && /[0-9]/.test(creds.password));

  const client = await loginAs(server, creds.username, creds.password);
  try {
    assert.deepEqual((await client.query('SELECT current_user AS u')).rows, [{ u: creds.username }]);
    assert.deepEqual((await client.query(`SELECT v FROM ${granted}`)).rows, [{ v: 42 }]);
    await assert.rejects(client.query(`SELECT v FROM ${hidden}`), (err) => sqlStateOf(err) === '42501');
    await assert.rejects(client.query(`CREATE ROLE "x${run}"`), (err) => sqlStateOf(err) === '42501');
  } finally {
    await client.end();
  }
  await assert.rejects(loginAs(server, creds.username, `${creds.password}x`), (err) => sqlStateOf(err) === '28P01');
  await assert.rejects(loginAs(server, creds.username, ''), () => true);

  // In-database expiry: the lease end plus a few seconds.
  const [row] = await adminQuery<{ until: Date }>(server, 'SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [creds.username]);
  const expected = Date.now() + 600_000;
  assert.ok(Math.abs(row!.until.getTime() - expected) < 15_000, `VALID UNTIL ${row!.until.toISOString()} is not ~10 minutes ahead`);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
});

test('concurrent creds of one role (all granted on one table) are distinct users; concurrent revocation works', async () => {
  // GRANT and DROP OWNED on one table update the same catalog row; PostgreSQL
  // fails concurrent updates ("tuple concurrently updated") unless serialised.
  const all = await Promise.all(Array.from({ length: 12 }, () => issueCreds(pb, 'reader')));
  assert.equal(new Set(all.map((c) => c.username)).size, all.length);
  assert.equal(new Set(all.map((c) => c.password)).size, all.length);
  assert.equal(new Set(all.map((c) => c.leaseId)).size, all.length);
  const [a, b] = all as [(typeof all)[0], (typeof all)[0]];
  await assert.rejects(loginAs(server, a.username, b.password), (err) => sqlStateOf(err) === '28P01');
  const rp = await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/reader/');
  assert.equal(rp.status, 204, rp.text);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}r`), []);
});

test('TTL rules: role default_ttl and max_ttl, system defaults, and bad combinations are 400 naming the field', async () => {
  // No TTLs on the role: the system default (1h here).
  await createRole(pb, 'plain', { db_name: 'main', username_template: prefixTemplate(`${userPrefix}p`) });
  const plain = await issueCreds(pb, 'plain');
  assert.equal(plain.leaseDuration, 3600);
  // default_ttl above max_ttl is refused; only max_ttl: the lease gets max_ttl.
  const bad = await pb.api('PUT', 'database/roles/plain', { db_name: 'main', default_ttl: '2h', max_ttl: '1h' });
  assert.equal(bad.status, 400);
  assert.match(bad.body.errors[0], /default_ttl/);
  await createRole(pb, 'capped', { db_name: 'main', max_ttl: '90s', username_template: prefixTemplate(`${userPrefix}c`) });
  assert.equal((await issueCreds(pb, 'capped')).leaseDuration, 90);
  // Above the system max_lease_ttl (2h).
  const tooLong = await pb.api('PUT', 'database/roles/capped', { db_name: 'main', max_ttl: '3h' });
  assert.equal(tooLong.status, 400);
  assert.match(tooLong.body.errors[0], /max_ttl/);
  const notADuration = await pb.api('PUT', 'database/roles/capped', { db_name: 'main', default_ttl: 'soon' });
  assert.equal(notADuration.status, 400);
  assert.match(notADuration.body.errors[0], /default_ttl/);
  // A token with a shorter TTL caps the lease, with a warning.
  const child = await pb.api('PUT', 'auth/token/create', { policies: ['root'], ttl: '30s' });
  assert.equal(child.status, 200, child.text);
  const short = await issueCreds(pb, 'plain', child.body.auth.client_token);
  assert.ok(short.leaseDuration <= 30 && short.leaseDuration >= 25, `lease_duration ${short.leaseDuration}`);
  assert.ok(Array.isArray(short.body.warnings) && short.body.warnings.some((w: string) => /token/.test(w)));
  for (const role of ['plain', 'capped']) assert.equal((await pb.api('PUT', `sys/leases/revoke-prefix/database/creds/${role}/`)).status, 204);
});

test('config GET never returns the password, neither the field nor one inside connection_url', async () => {
  const got = await pb.api('GET', 'database/config/main');
  assert.equal(got.status, 200);
  assert.equal(got.body.data.plugin_name, 'postgresql-database-plugin');
  assert.equal(got.body.data.connection_details.connection_url, templatedUrl(server));
  assert.equal(got.body.data.connection_details.username, server.adminUser);
  assert.ok(!got.text.includes(server.adminPassword), 'GET config shows the admin password');
  assert.equal(got.body.data.password, undefined);

  // The password written into the URL itself (with an "@" in it, to test the masking's end).
  const url = new URL(server.url);
  const inline = `postgres://${url.username}:${encodeURIComponent(server.adminPassword)}@${server.host}:${server.port}/postgres`;
  const put = await pb.api('PUT', `database/config/inline`, { plugin_name: 'postgresql-database-plugin', connection_url: inline, allowed_roles: [] });
  assert.equal(put.status, 204, put.text);
  const shown = await pb.api('GET', 'database/config/inline');
  assert.ok(!shown.text.includes(server.adminPassword) && !shown.text.includes(encodeURIComponent(server.adminPassword)), shown.text);
  assert.match(shown.body.data.connection_details.connection_url, /^postgres:\/\/postgres:\*+@127\.0\.0\.1:\d+\/postgres$/);
  const withAt = await pb.api('PUT', `database/config/inline`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://someone:pa@ss-${run}@${server.host}:${server.port}/postgres`,
    verify_connection: false,
  });
  assert.equal(withAt.status, 204, withAt.text);
  const masked = await pb.api('GET', 'database/config/inline');
  assert.ok(!masked.text.includes(`ss-${run}`), masked.text);
  assert.equal((await pb.api('DELETE', 'database/config/inline')).status, 204);
});

test('verify_connection: a bad admin login is a 400 and nothing is saved or changed', async () => {
  const bad = await pb.api('PUT', 'database/config/badlogin', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: 'not-the-password',
    allowed_roles: '*',
  });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.body.errors[0], /connection_url/);
  assert.ok(!bad.text.includes('not-the-password'));
  assert.equal((await pb.api('GET', 'database/config/badlogin')).status, 404);
  const list = await pb.list('database/config');
  assert.ok(!list.body.data.keys.includes('badlogin'));

  // A bad password on an existing connection leaves the working one in place.
  const update = await pb.api('PUT', 'database/config/main', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: 'not-the-password',
    allowed_roles: '*',
  });
  assert.equal(update.status, 400);
  const creds = await issueCreds(pb, 'reader');
  const client = await loginAs(server, creds.username, creds.password);
  await client.end();
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);

  // verify_connection=false saves a connection that does not work yet.
  const unverified = await pb.api('PUT', 'database/config/unverified', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: 'not-the-password',
    verify_connection: false,
  });
  assert.equal(unverified.status, 204, unverified.text);
  assert.equal((await pb.api('DELETE', 'database/config/unverified')).status, 204);
});

test('allowed_roles is enforced, and a refused request creates no database user', async () => {
  await configureConnection(pb, server, 'narrow', { allowed_roles: ['only-this'] });
  await createRole(pb, 'only-this', { db_name: 'narrow', default_ttl: '1m', username_template: prefixTemplate(`${userPrefix}o`) });
  await createRole(pb, 'not-this', { db_name: 'narrow', default_ttl: '1m', username_template: prefixTemplate(`${userPrefix}n`) });
  const refused = await pb.api('GET', 'database/creds/not-this');
  assert.equal(refused.status, 400);
  assert.match(refused.body.errors[0], /not-this.*not allowed|allowed_roles/);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}n`), []);
  const ok = await issueCreds(pb, 'only-this');
  assert.ok(await roleExists(server, ok.username));
  // An empty allowed_roles allows nothing (Vault's default).
  await configureConnection(pb, server, 'narrow', { allowed_roles: [] });
  assert.equal((await pb.api('GET', 'database/creds/only-this')).status, 400);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/only-this/')).status, 204);
  for (const role of ['only-this', 'not-this']) assert.equal((await pb.api('DELETE', `database/roles/${role}`)).status, 204);
  assert.equal((await pb.api('DELETE', 'database/config/narrow')).status, 204);
});

test('deleting a connection or role with active leases is a 409 naming how many; after revoke-prefix it succeeds', async () => {
  await configureConnection(pb, server, 'busy');
  await createRole(pb, 'busy-role', { db_name: 'busy', default_ttl: '5m', username_template: prefixTemplate(`${userPrefix}b`) });
  const leases = await Promise.all([issueCreds(pb, 'busy-role'), issueCreds(pb, 'busy-role')]);

  const delRole = await pb.api('DELETE', 'database/roles/busy-role');
  assert.equal(delRole.status, 409);
  assert.match(delRole.body.errors[0], /busy-role.*\b2 active lease/);
  const delConn = await pb.api('DELETE', 'database/config/busy');
  assert.equal(delConn.status, 409);
  assert.match(delConn.body.errors[0], /busy.*\b2 active lease/);
  // Nothing was deleted.
  assert.equal((await pb.api('GET', 'database/roles/busy-role')).status, 200);
  assert.equal((await pb.api('GET', 'database/config/busy')).status, 200);
  for (const l of leases) assert.ok(await roleExists(server, l.username));

  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/busy-role/')).status, 204);
  for (const l of leases) assert.equal(await roleExists(server, l.username), false);
  assert.equal((await pb.api('DELETE', 'database/roles/busy-role')).status, 204);
  assert.equal((await pb.api('DELETE', 'database/config/busy')).status, 204);
  assert.equal((await pb.api('GET', 'database/config/busy')).status, 404);
});

test('a user that created and owns a table is still revoked: objects go to the admin, the role is dropped', async () => {
  await createRole(pb, 'owner', {
    db_name: 'main',
    creation_statements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
      `GRANT CREATE ON SCHEMA public TO "{{name}}"`,
    ],
    default_ttl: '5m',
    username_template: prefixTemplate(`${userPrefix}w`),
  });
  const creds = await issueCreds(pb, 'owner');
  const table = `owned_${run}`;
  const client = await loginAs(server, creds.username, creds.password);
  try {
    await client.query(`CREATE TABLE ${table} (v int); INSERT INTO ${table} VALUES (7); CREATE SEQUENCE ${table}_seq`);
  } finally {
    await client.end();
  }
  const revoke = await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId });
  assert.equal(revoke.status, 204, revoke.text);
  assert.equal(await roleExists(server, creds.username), false);
  const [owned] = await adminQuery<{ owner: string }>(server, 'SELECT tableowner AS owner FROM pg_tables WHERE tablename = $1', [table]);
  assert.equal(owned?.owner, server.adminUser);
  assert.deepEqual(await adminQuery(server, `SELECT v FROM ${table}`), [{ v: 7 }]);
  assert.equal((await pb.list('sys/leases/lookup/database/creds/owner/')).status, 404);
});

// A rewrite or a delete of a role reaches the very next creds request (no stale copy anywhere).
test('a role rewritten between two creds requests is used at once (new TTL, new statements); a deleted role is a 400 at once', async () => {
  const write = (fields: Record<string, unknown>) => createRole(pb, 'rewritten', {
    db_name: 'main',
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
    default_ttl: '10m',
    max_ttl: '1h',
    username_template: prefixTemplate(`${userPrefix}w`),
    ...fields,
  });
  await write({});
  const first = await issueCreds(pb, 'rewritten');
  assert.equal(first.leaseDuration, 600);
  const canRead = async (c: { username: string; password: string }) => {
    const client = await loginAs(server, c.username, c.password);
    try {
      return (await client.query(`SELECT v FROM ${granted}`)).rows[0]?.v === 42;
    } catch {
      return false;
    } finally {
      await client.end();
    }
  };
  assert.equal(await canRead(first), false, 'the first version grants nothing');
  await write({ default_ttl: '20m', creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, `GRANT SELECT ON ${granted} TO "{{name}}"`] });
  const second = await issueCreds(pb, 'rewritten');
  assert.equal(second.leaseDuration, 1200, 'the new default_ttl');
  assert.equal(await canRead(second), true, 'the new creation statements');
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/rewritten')).status, 204);
  assert.equal((await pb.api('DELETE', 'database/roles/rewritten')).status, 204);
  const gone = await pb.api('GET', 'database/creds/rewritten');
  assert.equal(gone.status, 400, gone.text);
  assert.equal(gone.body.errors[0], "unknown role: rewritten");
});

// A new-user trial saw the field named twice: invalid field "creation_statements": creation_statements: must not be empty.
test('statements the engine refuses at write name their field once', async () => {
  const r = await pb.api('PUT', 'database/roles/empty', { db_name: 'main', creation_statements: [' ; '] });
  assert.equal(r.status, 400, r.text);
  assert.deepEqual(r.body.errors, ['invalid field "creation_statements": must not be empty']);
  assert.equal((await pb.api('GET', 'database/roles/empty')).status, 404, 'nothing was written');
});

test('cleanup check: no role of this file is left behind', async () => {
  await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/');
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
  await dropRolesWithPrefix(server, userPrefix);
});
