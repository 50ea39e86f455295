// A role's statements are tried on its database when the role is written
// (Engine.tryStatements), and so are a static role's rotation statements, over HTTP against a real broker and real
// servers: what the database refuses is a 400 naming the field at write, and
// nothing is saved, rather than a 500 at every creds request (Vault saves any
// text and fails at creds). PostgreSQL tries creation, renewal and revocation
// for a throwaway user in a transaction that is rolled back (nothing is kept:
// no role, no ACL entry); MariaDB prepares each statement, and only a parse
// error refuses one (other PREPARE errors may depend on the statements before
// it, which were not run). A database that
// cannot be reached, or statements that end the transaction themselves, leave
// the role saved with a warning.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Connection } from 'mysql2/promise';
import { adminQuery, freePort, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { configureConnection, dropRolesWithPrefix, LOGIN_ROLE, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { adminConnection, dropLeftovers, mysqlConnectionFields } from '../../support/mariadb.ts';
import type { ApiResponse } from '../../support/broker.ts';

const run = tag();
const PG_PREFIX = `st${run}`;
const MY_PREFIX = `dbt_st${run.slice(0, 4)}`;
const TABLE = `st_t_${run}`;
const GROUP = `st_g_${run}`;
const MY_CREATE = `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`;
const PG_STATIC = `st_s_${run}`;
const MY_STATIC = `dbt_st${run.slice(0, 4)}_s`;
const MY_GROUP = `dbt_st${run.slice(0, 4)}_g`;

let server: TestPostgres;
let pb: PgBroker;
let my: Connection;

function refused(r: ApiResponse, field: string, problem: RegExp, what: string): void {
  assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
  assert.match(r.body.errors[0], new RegExp(`^invalid field "${field}": the database refused `), what);
  assert.match(r.body.errors[0], problem, what);
}

async function notSaved(role: string): Promise<void> {
  assert.equal((await pb.api('GET', `database/roles/${role}`)).status, 404, `${role} must not be saved`);
}

/** Roles the tries made (none may be left: each ran in a rolled-back transaction). */
async function throwawayRoles(): Promise<string[]> {
  const rows = await adminQuery<{ rolname: string }>(server, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'dbroker\\_try\\_%'");
  return rows.map((r) => r.rolname);
}

before(async () => {
  [server, pb, my] = await Promise.all([trustPostgres(), startPgBroker(), adminConnection()]);
  await dropLeftovers(my, MY_PREFIX);
  await adminQuery(server, `CREATE TABLE ${TABLE} (v int); CREATE ROLE ${GROUP} NOLOGIN; GRANT SELECT ON ${TABLE} TO ${GROUP}; CREATE ROLE ${PG_STATIC} LOGIN PASSWORD 'static-initial-1'`);
  await my.query(`CREATE USER '${MY_STATIC}'@'%' IDENTIFIED BY 'static-initial-1'`);
  await configureConnection(pb, server, 'pg', { username_template: `{{ printf "${PG_PREFIX}%s" (random 20) }}` });
  const myConn = await pb.api('PUT', 'database/config/my', {
    ...mysqlConnectionFields(),
    allowed_roles: '*',
    username_template: `{{ printf "${MY_PREFIX}%s" (random 20) }}`,
  });
  assert.equal(myConn.status, 204, myConn.text);
});

after(async () => {
  await pb?.close();
  if (server) {
    await dropRolesWithPrefix(server, PG_PREFIX);
    await adminQuery(server, `DROP TABLE IF EXISTS ${TABLE}; DROP ROLE IF EXISTS ${GROUP}; DROP ROLE IF EXISTS ${PG_STATIC}`);
    await server.stop();
  }
  if (my) {
    await dropLeftovers(my, MY_PREFIX);
    await my.query(`DROP USER IF EXISTS '${MY_STATIC}'@'%'`);
    await my.query(`DROP ROLE IF EXISTS ${MY_GROUP}`);
    await my.end();
  }
});

test('PostgreSQL: creation statements the database refuses are a 400 naming the field and the template; nothing is saved or kept', async () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['missing table', [LOGIN_ROLE, 'GRANT SELECT ON no_such_table_st TO "{{name}}"'], /"GRANT SELECT ON no_such_table_st TO \\"\{\{name\}\}\\"": relation "no_such_table_st" does not exist \(SQLSTATE 42P01\)/],
    ['missing group role', [LOGIN_ROLE, 'GRANT no_such_group_st TO "{{name}}"'], /role "no_such_group_st" does not exist \(SQLSTATE 42704\)/],
    ['syntax error', [LOGIN_ROLE, 'GRNT SELECT ON x TO "{{name}}"'], /syntax error at or near "GRNT" \(SQLSTATE 42601\)/],
    ['not in a transaction block', [LOGIN_ROLE, 'VACUUM'], /VACUUM cannot run inside a transaction block \(SQLSTATE 25001\)/],
  ];
  for (const [what, creation, problem] of cases) {
    const r = await pb.api('PUT', `database/roles/pg-bad`, { db_name: 'pg', creation_statements: creation });
    refused(r, 'creation_statements', problem, what);
    assert.doesNotMatch(r.text, /dbroker_try_/, `${what}: the throwaway name is shown as {{name}}`);
    if (server.adminPassword) assert.ok(!r.text.includes(server.adminPassword), `${what}: no admin password`);
    await notSaved('pg-bad');
  }
  assert.deepEqual(await throwawayRoles(), []);
});

test('PostgreSQL: renewal and revocation statements are tried too, after the creation, each named', async () => {
  const renew = await pb.api('PUT', 'database/roles/pg-renew', {
    db_name: 'pg',
    creation_statements: [LOGIN_ROLE],
    renew_statements: [`ALTER ROLE "{{name}}" VALID UNTIL 'not a date'`],
  });
  refused(renew, 'renew_statements', /invalid input syntax for type timestamp with time zone/, 'renew');
  await notSaved('pg-renew');
  const revoke = await pb.api('PUT', 'database/roles/pg-revoke', {
    db_name: 'pg',
    creation_statements: [LOGIN_ROLE],
    revocation_statements: ['REVOKE ALL ON no_such_table_st FROM "{{name}}"', 'DROP ROLE "{{name}}"'],
  });
  refused(revoke, 'revocation_statements', /relation "no_such_table_st" does not exist/, 'revocation');
  await notSaved('pg-revoke');
  assert.deepEqual(await throwawayRoles(), []);
});

test('PostgreSQL: valid statements are saved without a warning, the try leaves no ACL entry, and creds work', async () => {
  const aclBefore = (await adminQuery<{ acl: string }>(server, `SELECT relacl::text AS acl FROM pg_class WHERE relname = '${TABLE}'`))[0]?.acl;
  const r = await pb.api('PUT', 'database/roles/pg-good', {
    db_name: 'pg',
    creation_statements: [LOGIN_ROLE, `GRANT ${GROUP} TO "{{name}}"`],
    revocation_statements: [`REVOKE ${GROUP} FROM "{{name}}"`, 'DROP ROLE IF EXISTS "{{name}}"'],
    renew_statements: [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`],
  });
  assert.equal(r.status, 204, r.text);
  // A direct table grant (needs the user-change lock) is tried and rolled back: the table's ACL is as before.
  const direct = await pb.api('PUT', 'database/roles/pg-direct', { db_name: 'pg', creation_statements: [LOGIN_ROLE, `GRANT SELECT ON ${TABLE} TO "{{name}}"`] });
  assert.equal(direct.status, 200, direct.text);
  assert.ok(direct.body.warnings.every((w: string) => !/not tried/.test(w)), direct.text);
  const aclAfter = (await adminQuery<{ acl: string }>(server, `SELECT relacl::text AS acl FROM pg_class WHERE relname = '${TABLE}'`))[0]?.acl;
  assert.equal(aclAfter, aclBefore);
  const creds = await pb.api('GET', 'database/creds/pg-good');
  assert.equal(creds.status, 200, creds.text);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  assert.deepEqual(await throwawayRoles(), []);
});

test('PostgreSQL: statements that end the transaction themselves are saved untried, with a warning', async () => {
  const r = await pb.api('PUT', 'database/roles/pg-commit', { db_name: 'pg', creation_statements: [LOGIN_ROLE, 'COMMIT', `GRANT ${GROUP} TO "{{name}}"`] });
  assert.equal(r.status, 200, r.text);
  assert.match(r.body.warnings.join('\n'), /not tried on the database \(a statement ends or starts the transaction itself/);
  assert.equal((await pb.api('GET', 'database/roles/pg-commit')).status, 200);
  assert.deepEqual(await throwawayRoles(), []);
});

test('a database that cannot be reached: the role is saved at once, with a warning that says why', async () => {
  const port = await freePort();
  const conn = await pb.api('PUT', 'database/config/down', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@127.0.0.1:${port}/postgres`,
    username: 'nobody',
    password: 'secret-admin-pw',
    verify_connection: false,
    allowed_roles: '*',
  });
  assert.equal(conn.status, 204, conn.text);
  const started = Date.now();
  const r = await pb.api('PUT', 'database/roles/down-role', { db_name: 'down', creation_statements: [LOGIN_ROLE] });
  assert.equal(r.status, 200, r.text);
  assert.ok(Date.now() - started < 6_000, 'bounded by TRY_STATEMENTS_MS');
  assert.match(r.body.warnings.join('\n'), /the statements were not tried on the database \(.*\): a statement it refuses fails when it is used instead/);
  assert.doesNotMatch(r.text, /secret-admin-pw/);
  assert.equal((await pb.api('GET', 'database/roles/down-role')).status, 200);
});

test('MariaDB: statements the server refuses to prepare are a 400 naming the field; nothing is created or saved', async () => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['creation syntax', { creation_statements: [MY_CREATE, "GRNT SELECT ON test.* TO '{{name}}'@'%'"] }, 'creation_statements', /You have an error in your SQL syntax/],
    ['revocation syntax', { creation_statements: [MY_CREATE], revocation_statements: ["DROP USR '{{name}}'@'%'"] }, 'revocation_statements', /SQL syntax/],
    ['renewal syntax', { creation_statements: [MY_CREATE], renew_statements: ["ALTER USR '{{name}}'@'%' ACCOUNT UNLOCK"] }, 'renew_statements', /SQL syntax/],
  ];
  for (const [what, fields, field, problem] of cases) {
    const r = await pb.api('PUT', 'database/roles/my-bad', { db_name: 'my', ...fields });
    refused(r, field, problem, what);
    assert.doesNotMatch(r.text, /dbroker_try_/, what);
    await notSaved('my-bad');
  }
  const [rows] = await my.query("SELECT user FROM mysql.user WHERE user LIKE 'dbroker\\_try\\_%'");
  assert.deepEqual(rows, [], 'preparing creates nobody');
});

test('MariaDB: valid statements are saved without a warning and creds work, the group-role pattern too', async () => {
  const r = await pb.api('PUT', 'database/roles/my-good', {
    db_name: 'my',
    creation_statements: [MY_CREATE, "GRANT SELECT ON test.* TO '{{name}}'@'%'"],
    revocation_statements: ["DROP USER IF EXISTS '{{name}}'@'%'"],
  });
  assert.equal(r.status, 204, r.text);
  const creds = await pb.api('GET', 'database/creds/my-good');
  assert.equal(creds.status, 200, creds.text);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  // README "grant a group role": MariaDB checks SET DEFAULT ROLE against the grants of the moment when
  // preparing it ("has not been granted role", for the GRANT just before it, which is only prepared).
  await my.query(`CREATE ROLE IF NOT EXISTS ${MY_GROUP}`);
  const grouped = await pb.api('PUT', 'database/roles/my-group', {
    db_name: 'my',
    creation_statements: [MY_CREATE, `GRANT ${MY_GROUP} TO '{{name}}'@'%'`, `SET DEFAULT ROLE ${MY_GROUP} FOR '{{name}}'@'%'`],
  });
  assert.equal(grouped.status, 204, grouped.text);
  const member = await pb.api('GET', 'database/creds/my-group');
  assert.equal(member.status, 200, member.text);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: member.body.lease_id })).status, 204);
  const [rows] = await my.query("SELECT user FROM mysql.user WHERE user LIKE 'dbroker\\_try\\_%'");
  assert.deepEqual(rows, []);
});

test('static roles: rotation statements are tried on the static user when written; a refused one is a 400 and the stored ones stay', async () => {
  for (const [conn, user, good, bad, problem] of [
    ['pg', PG_STATIC, [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`], [`ALTER ROLE "{{name}}" WITH PASWORD '{{password}}'`], /unrecognized role option "pasword" \(SQLSTATE 42601\)/],
    ['my', MY_STATIC, ["ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'"], ["ALTER USR '{{name}}'@'%' IDENTIFIED BY '{{password}}'"], /SQL syntax/],
  ] as const) {
    const role = `${conn}-static`;
    const base = { db_name: conn, username: user, rotation_period: 3600, skip_import_rotation: true, password: 'static-initial-1' };
    refused(await pb.api('PUT', `database/static-roles/${role}`, { ...base, rotation_statements: bad }), 'rotation_statements', problem, `${conn} create`);
    assert.equal((await pb.api('GET', `database/static-roles/${role}`)).status, 404);
    const created = await pb.api('PUT', `database/static-roles/${role}`, { ...base, rotation_statements: good });
    assert.equal(created.status, 204, created.text);
    refused(await pb.api('PUT', `database/static-roles/${role}`, { rotation_statements: bad }), 'rotation_statements', problem, `${conn} update`);
    const stored = await pb.api('GET', `database/static-roles/${role}`);
    assert.deepEqual(stored.body.data.rotation_statements, good, `${conn}: the refused update changed nothing`);
    // The stored statements rotate.
    assert.equal((await pb.api('PUT', `database/rotate-role/${role}`)).status, 204);
    assert.equal((await pb.api('DELETE', `database/static-roles/${role}`)).status, 204);
  }
});

test('PostgreSQL: a try that waits on a lock gives up by itself (4 s) and lets go of the user-change lock: creds of other roles go on', async () => {
  // Another session's open transaction changes the table's ACL row: a GRANT on that table waits for it.
  const blocker = new pg.Client({ connectionString: server.url });
  await blocker.connect();
  try {
    await blocker.query(`BEGIN; GRANT SELECT ON ${TABLE} TO ${GROUP}`);
    const started = Date.now();
    const r = await pb.api('PUT', 'database/roles/pg-waits', { db_name: 'pg', creation_statements: [LOGIN_ROLE, `GRANT SELECT ON ${TABLE} TO "{{name}}"`] });
    assert.equal(r.status, 200, r.text);
    assert.match(r.body.warnings.join('\n'), /not tried on the database \(the database did not finish trying them within 4s/);
    assert.ok(Date.now() - started < 6_000, `answered after ${Date.now() - started} ms`);
    // A role whose statements need the user-change lock (a grant ON an object): it is free again.
    const other = await pb.api('PUT', 'database/roles/pg-schema', { db_name: 'pg', creation_statements: [LOGIN_ROLE, 'GRANT USAGE ON SCHEMA public TO "{{name}}"'] });
    assert.equal(other.status, 200, other.text);
    assert.ok(other.body.warnings.every((w: string) => !/not tried/.test(w)), other.text);
    const t0 = Date.now();
    const creds = await pb.api('GET', 'database/creds/pg-schema');
    assert.equal(creds.status, 200, creds.text);
    assert.ok(Date.now() - t0 < 3_000, `creds took ${Date.now() - t0} ms while the blocker still holds its transaction`);
    assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    await blocker.end();
  }
  assert.deepEqual(await throwawayRoles(), []);
});

test('PostgreSQL: renewal and revocation are tried with the admin\'s own settings, not what creation SET LOCAL (as at creds time)', async () => {
  const owner = `st_o_${run}`;
  const owned = `st_ot_${run}`;
  await adminQuery(server, `CREATE ROLE ${owner} NOLOGIN; CREATE TABLE ${owned} (v int); ALTER TABLE ${owned} OWNER TO ${owner}`);
  try {
    const r = await pb.api('PUT', 'database/roles/pg-setrole', {
      db_name: 'pg',
      creation_statements: [`${LOGIN_ROLE}; SET LOCAL ROLE ${owner}; GRANT SELECT ON ${owned} TO "{{name}}"`],
      revocation_statements: ['DROP OWNED BY "{{name}}"; DROP ROLE "{{name}}"'],
    });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.warnings.every((w: string) => !/not tried|refused/.test(w)), r.text);
    const creds = await pb.api('GET', 'database/creds/pg-setrole');
    assert.equal(creds.status, 200, creds.text);
    assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  } finally {
    await adminQuery(server, `DROP TABLE IF EXISTS ${owned}; DROP ROLE IF EXISTS ${owner}`);
  }
});

test('static roles: rotation statements are tried on a throwaway user, so a user that does not exist yet (skip_import_rotation) does not matter', async () => {
  const base = { db_name: 'pg', username: `st_nouser_${run}`, rotation_period: 3600, skip_import_rotation: true };
  const good = await pb.api('PUT', 'database/static-roles/pg-later', { ...base, rotation_statements: [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`] });
  assert.equal(good.status, 204, good.text);
  refused(await pb.api('PUT', 'database/static-roles/pg-later', { rotation_statements: [`ALTER ROLE "{{name}}" WITH PASWORD '{{password}}'`] }), 'rotation_statements', /unrecognized role option "pasword"/, 'update');
  assert.equal((await pb.api('DELETE', 'database/static-roles/pg-later')).status, 204);
  assert.deepEqual(await throwawayRoles(), []);
});
