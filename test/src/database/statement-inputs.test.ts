// Statements and other strings that reach the database, over HTTP against a
// real broker and real servers (PostgreSQL, MariaDB, FerretDB/MongoDB):
//   - issue 8 item 4: Vault's string-slice encodings (base64 statements,
//     JSON-array strings, comma lists) are decoded at write, so the creds
//     that follow work (they used to fail with 500);
//   - issue 8 item 3: what no database accepts (NUL, unpaired surrogates,
//     control characters outside quotes) is a 400 naming the field at write,
//     on every statement field and engine, and nothing is written (it used
//     to be a 204, then a 502 at every creds).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'mysql2/promise';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { dropRolesWithPrefix, roleExists, rolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { adminConnection, dropLeftovers, mysqlConnectionFields, userHosts } from '../../support/mariadb.ts';
import { assertDone, canLogin as mongoCanLogin, dropUsersWithPrefix, mongoConfig, mongoTarget, userDatabases, type MongoTarget } from '../../plugins/mongodb/helpers.ts';
import type { ApiResponse } from '../../support/broker.ts';

const run = tag();
const PG_PREFIX = `si${run}`;
const MY_PREFIX = `dbt_si${run.slice(0, 4)}`;
const MONGO_PREFIX = `si-${run}-`;
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const pgTemplate = `{{ printf "${PG_PREFIX}%s" (random 20) }}`;
const myTemplate = `{{ printf "${MY_PREFIX}%s" (random 20) }}`;
const mongoTemplate = `{{ printf "${MONGO_PREFIX}%s" (random 20) }}`;

const PG_CREATE = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`;
const PG_GRANT = 'GRANT SELECT, INSERT ON si_t TO "{{name}}"';
const REVOKE = 'REVOKE ALL ON si_t FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}"';
const MY_CREATE = `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`;
const MONGO_READ = JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: 'admin' }] });

const foundMongo = await mongoTarget();
const mongoSkip = typeof foundMongo === 'string' ? foundMongo : false;
const mongo = foundMongo as MongoTarget;

let server: TestPostgres;
let pb: PgBroker;
let my: Connection;

function refused(r: ApiResponse, field: string, problem: RegExp, what: string): void {
  assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
  assert.match(r.body.errors[0], new RegExp(`^invalid field "${field}": `), what);
  assert.match(r.body.errors[0], problem, what);
}

async function creds(role: string): Promise<{ leaseId: string; username: string; password: string }> {
  const r = await pb.api('GET', `database/creds/${role}`);
  assert.equal(r.status, 200, `creds/${role}: ${r.text}`);
  return { leaseId: r.body.lease_id, username: r.body.data.username, password: r.body.data.password };
}

const revoke = async (leaseId: string): Promise<void> => assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: leaseId })).status, 204);

before(async () => {
  [server, pb, my] = await Promise.all([trustPostgres(), startPgBroker(), adminConnection()]);
  await dropLeftovers(my, MY_PREFIX);
  await adminQuery(server, 'CREATE TABLE IF NOT EXISTS si_t (v int)');
  const pgConn = await pb.api('PUT', 'database/config/pg', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: server.adminUser,
    password: server.adminPassword,
    // A comma string with spaces (Vault's TypeCommaStringSlice).
    allowed_roles: 'pg-b64, pg-json,pg-rev , pg-bad',
    username_template: pgTemplate,
  });
  assert.equal(pgConn.status, 204, pgConn.text);
  const myConn = await pb.api('PUT', 'database/config/my', {
    ...mysqlConnectionFields(),
    // A JSON-array string.
    allowed_roles: '["my-b64", "my-json", "my-bad"]',
    username_template: myTemplate,
  });
  assert.equal(myConn.status, 204, myConn.text);
  if (!mongoSkip) {
    const m = mongoConfig(mongo);
    const mongoConn = await pb.api('PUT', 'database/config/mongo', {
      plugin_name: 'mongodb-database-plugin',
      connection_url: m.connectionUrl,
      username: m.username,
      password: m.password,
      allowed_roles: ['mongo-b64', 'mongo-json', 'mongo-bad'],
      username_template: mongoTemplate,
      ...m.options,
    });
    assertDone(mongo, mongoConn, 'config mongo');
  }
});

after(async () => {
  await pb?.api('PUT', 'sys/leases/revoke-prefix/database/creds/').catch(() => undefined);
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, PG_PREFIX);
  if (my) {
    await dropLeftovers(my, MY_PREFIX);
    await my.end();
  }
  if (!mongoSkip) {
    await dropUsersWithPrefix(mongo, MONGO_PREFIX, ['admin']);
    await mongo.admin.close();
  }
  await server?.stop();
});

test('GET config shows the decoded allowed_roles of a comma string and of a JSON-array string', async () => {
  assert.deepEqual((await pb.api('GET', 'database/config/pg')).body.data.allowed_roles, ['pg-b64', 'pg-json', 'pg-rev', 'pg-bad']);
  assert.deepEqual((await pb.api('GET', 'database/config/my')).body.data.allowed_roles, ['my-b64', 'my-json', 'my-bad']);
});

test('PostgreSQL: base64 and JSON-array-string statements are decoded at write; creds and revocation run them', async () => {
  const block = `${PG_CREATE}; ${PG_GRANT}`;
  let r = await pb.api('PUT', 'database/roles/pg-b64', { db_name: 'pg', creation_statements: b64(block), revocation_statements: b64(REVOKE) });
  // Saved with the ACL row limit warning about the direct grant (acl-limit.test.ts): it sees the decoded statements.
  assert.equal(r.status, 200, r.text);
  assert.ok(r.body.warnings[0].includes(PG_GRANT), r.text);
  const role = (await pb.api('GET', 'database/roles/pg-b64')).body.data;
  assert.deepEqual(role.creation_statements, [block]);
  assert.deepEqual(role.revocation_statements, [REVOKE]);
  const c = await creds('pg-b64');
  assert.ok(c.username.startsWith(PG_PREFIX));
  assert.ok(await roleExists(server, c.username));
  const grants = await adminQuery<{ p: string }>(server, "SELECT privilege_type AS p FROM information_schema.role_table_grants WHERE grantee = $1 AND table_name = 'si_t' ORDER BY 1", [c.username]);
  assert.deepEqual(grants.map((g) => g.p), ['INSERT', 'SELECT']);
  await revoke(c.leaseId);
  assert.equal(await roleExists(server, c.username), false);

  // A JSON-array string, given as the field and as one item of an array; also base64 of one.
  for (const creation of [JSON.stringify([PG_CREATE, PG_GRANT]), [JSON.stringify([PG_CREATE]), PG_GRANT], b64(JSON.stringify([PG_CREATE, PG_GRANT]))]) {
    r = await pb.api('PUT', 'database/roles/pg-json', { db_name: 'pg', creation_statements: creation });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.warnings[0].includes(PG_GRANT), r.text);
    assert.deepEqual((await pb.api('GET', 'database/roles/pg-json')).body.data.creation_statements, [PG_CREATE, PG_GRANT]);
    const j = await creds('pg-json');
    assert.ok(await roleExists(server, j.username));
    await revoke(j.leaseId);
  }
});

test('MySQL: base64 and JSON-array-string statements are decoded at write; creds work', async () => {
  const grant = `GRANT SELECT ON mysql.db TO '{{name}}'@'%'`;
  for (const [role, creation] of [['my-b64', b64(`${MY_CREATE}; ${grant}`)], ['my-json', JSON.stringify([MY_CREATE, grant])]] as const) {
    const r = await pb.api('PUT', `database/roles/${role}`, { db_name: 'my', creation_statements: creation });
    assert.equal(r.status, 204, r.text);
    const c = await creds(role);
    assert.ok(c.username.startsWith(MY_PREFIX));
    assert.deepEqual(await userHosts(my, c.username), ['%']);
    await revoke(c.leaseId);
    assert.deepEqual(await userHosts(my, c.username), []);
  }
});

test('MongoDB: a base64 or JSON-array-string JSON statement is decoded at write; creds work', { skip: mongoSkip }, async () => {
  for (const [role, creation] of [['mongo-b64', b64(MONGO_READ)], ['mongo-json', JSON.stringify([MONGO_READ])]] as const) {
    const r = await pb.api('PUT', `database/roles/${role}`, { db_name: 'mongo', creation_statements: creation });
    assert.equal(r.status, 204, r.text);
    assert.deepEqual((await pb.api('GET', `database/roles/${role}`)).body.data.creation_statements, [MONGO_READ]);
    const c = await creds(role);
    assert.equal(await mongoCanLogin(mongo, c.username, c.password), true);
    assertDone(mongo, await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId }), 'revoke');
    assert.deepEqual(await userDatabases(mongo, c.username, ['admin']), []);
  }
});

test('token policies: a JSON-array string and a comma string are lists', async () => {
  for (const policies of ['["si-a","si-b"]', 'si-a, si-b']) {
    const t = await pb.api('PUT', 'auth/token/create', { policies, ttl: '5m' });
    assert.equal(t.status, 200, t.text);
    assert.deepEqual([...t.body.auth.policies].sort(), ['default', 'si-a', 'si-b']);
  }
});

// Item 3: the reported case, then its neighbours on every statement field and engine.
const NUL = '\u0000';
const SURROGATE = '\ud800';

test('the reported case: a NUL in creation_statements is a 400 at role write, not a 204 then 502 at every creds', async () => {
  const before = await rolesWithPrefix(server, PG_PREFIX);
  const r = await pb.api('PUT', 'database/roles/pg-bad', { db_name: 'pg', creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' ${NUL}`] });
  refused(r, 'creation_statements', /NUL/, 'NUL');
  assert.equal((await pb.api('GET', 'database/roles/pg-bad')).status, 404, 'nothing was written');
  assert.equal((await pb.api('GET', 'database/creds/pg-bad')).status, 400, 'no role: creds is the unknown-role 400');
  assert.deepEqual(await rolesWithPrefix(server, PG_PREFIX), before);
});

test('every statement field of every engine: NUL, an unpaired surrogate and (SQL) a control character outside quotes are 400s naming the field', async () => {
  const engines: Array<[string, string, string]> = [
    ['pg', 'pg-bad', `ALTER ROLE "{{name}}" CONNECTION LIMIT 5`],
    ['my', 'my-bad', `ALTER USER '{{name}}'@'%' ACCOUNT LOCK`],
  ];
  if (!mongoSkip) engines.push(['mongo', 'mongo-bad', JSON.stringify({ db: 'admin' })]);
  for (const [db, role, good] of engines) {
    const creation = db === 'pg' ? PG_CREATE : db === 'my' ? MY_CREATE : MONGO_READ;
    const fields = db === 'mongo' ? ['creation_statements', 'revocation_statements', 'rollback_statements'] : ['creation_statements', 'revocation_statements', 'rollback_statements', 'renew_statements'];
    for (const field of fields) {
      const base = field === 'creation_statements' ? creation : good;
      const bads: Array<[string, RegExp]> = [
        [`${base} ${NUL}`, /NUL/],
        [db === 'mongo' ? base.replace('"admin"', `"adm${SURROGATE}in"`) : `${base} -- ${SURROGATE}`, /not valid Unicode/],
        // JSON's escape form reaches MongoDB's role and database names.
        ...(db === 'mongo' ? [[base.replace('"admin"', '"adm\\ud800in"'), /not valid Unicode/] as [string, RegExp]] : [[`${base}\u0001`, /control character U\+0001/] as [string, RegExp]]),
      ];
      for (const [statement, problem] of bads) {
        const body: Record<string, unknown> = { db_name: db, creation_statements: [creation], [field]: [statement] };
        refused(await pb.api('PUT', `database/roles/${role}`, body), field, problem, `${db} ${field} ${JSON.stringify(statement)}`);
        // Also in its encoded forms: decoded first, then checked.
        refused(await pb.api('PUT', `database/roles/${role}`, { ...body, [field]: JSON.stringify([statement]) }), field, problem, `${db} ${field} as a JSON-array string`);
      }
      assert.equal((await pb.api('GET', `database/roles/${role}`)).status, 404, `${db} ${field}: nothing was written`);
    }
  }
});

test('root_rotation_statements, static-role rotation_statements and usernames, and connection strings: the same 400s', async () => {
  const pgConn = {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: '*',
  };
  refused(await pb.api('PUT', 'database/config/pg-x', { ...pgConn, root_rotation_statements: [`ALTER ROLE "{{name}}" PASSWORD '{{password}}'${NUL}`] }), 'root_rotation_statements', /NUL/, 'root NUL');
  refused(await pb.api('PUT', 'database/config/pg-x', { ...pgConn, root_rotation_statements: `ALTER ROLE "{{name}}"\u0002 PASSWORD '{{password}}'` }), 'root_rotation_statements', /control character/, 'root control');
  refused(await pb.api('PUT', 'database/config/pg-x', { ...pgConn, password: `pw${NUL}` }), 'password', /NUL/, 'admin password');
  refused(await pb.api('PUT', 'database/config/pg-x', { ...pgConn, connection_url: `${pgConn.connection_url}?application_name=a${SURROGATE}` }), 'connection_url', /not valid Unicode/, 'url');
  refused(await pb.api('PUT', 'database/config/pg-x', { ...pgConn, revocation_owner: `own${NUL}er` }), 'revocation_owner', /NUL/, 'engine option');
  assert.equal((await pb.api('GET', 'database/config/pg-x')).status, 404);

  const user = `${PG_PREFIX}static`;
  await adminQuery(server, `CREATE ROLE "${user}" LOGIN PASSWORD 'x'`);
  const staticRole = { db_name: 'pg', username: user, rotation_period: '1h' };
  // allowed_roles of "pg" does not list it: use a connection that allows every role.
  assert.equal((await pb.api('PUT', 'database/config/pg-all', { ...pgConn })).status, 204);
  const onAll = { ...staticRole, db_name: 'pg-all' };
  refused(await pb.api('PUT', 'database/static-roles/st', { ...onAll, rotation_statements: [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'${NUL}`] }), 'rotation_statements', /NUL/, 'static NUL');
  refused(await pb.api('PUT', 'database/static-roles/st', { ...onAll, username: `${user}${NUL}` }), 'username', /NUL/, 'static username');
  refused(await pb.api('PUT', 'database/static-roles/st', { ...onAll, username: `${user}${SURROGATE}` }), 'username', /not valid Unicode/, 'static username surrogate');
  assert.equal((await pb.api('GET', 'database/static-roles/st')).status, 404);

  // The encodings work here too: base64 rotation statements, a JSON-array-string root rotation list.
  const rotation = `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`;
  const st = await pb.api('PUT', 'database/static-roles/st', { ...onAll, rotation_statements: b64(rotation) });
  assert.equal(st.status, 204, st.text);
  assert.deepEqual((await pb.api('GET', 'database/static-roles/st')).body.data.rotation_statements, [rotation]);
  const sc = await pb.api('GET', 'database/static-creds/st');
  assert.equal(sc.status, 200, sc.text);
  assert.equal(sc.body.data.username, user);
  const root = await pb.api('PUT', 'database/config/pg-all', { ...pgConn, root_rotation_statements: JSON.stringify([`ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}'`]) });
  assert.equal(root.status, 204, root.text);
  assert.deepEqual((await pb.api('GET', 'database/config/pg-all')).body.data.root_credentials_rotate_statements, [`ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}'`]);
  assert.equal((await pb.api('DELETE', 'database/static-roles/st')).status, 204);
  await adminQuery(server, `DROP ROLE "${user}"`);
});
