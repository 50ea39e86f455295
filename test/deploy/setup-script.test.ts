// deploy/setup.sh, run as a user runs it, against a real broker process, the
// shared PostgreSQL, MariaDB and MongoDB/FerretDB (pointed at them with the
// script's own POSTGRES_ADDR, MYSQL_*, MONGO_* variables). It used to grant
// table privileges directly to "{{name}}", which stops at about 2,400 live
// users per table (SQLSTATE 54000; README "PostgreSQL: grant a group role,
// not each user"). Checked here: the PostgreSQL roles only grant a group
// role; the script creates the groups (idempotently, through the broker's
// admin login) with the privileges on existing and later tables; the users
// read and write through the membership, with no entry in any table's ACL;
// a second run succeeds, also after a root rotation (the admin password
// from the environment is stale then), and leaves no setup role behind.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import type { Connection } from 'mysql2/promise';
import { startBroker, type ApiResponse, type BrokerProcess } from '../support/broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../support/scram-postgres.ts';
import { tag } from '../support/pg-broker.ts';
import { adminConnection, canLogin, createAdminUser, dropLeftovers, target as mysqlTarget } from '../support/mariadb.ts';
import { mongoTarget, type MongoTarget } from '../plugins/mongodb/helpers.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const foundMongo = await mongoTarget();
const mongoSkip = typeof foundMongo === 'string' ? foundMongo : false;
const mongo = foundMongo as MongoTarget;

const run = tag();
const DB = `dbroker_setup_${run}`;
const READ_GROUP = `app_read_${run}`;
const WRITE_GROUP = `app_readwrite_${run}`;
const MY_PREFIX = `dbt_su${run.slice(0, 4)}`;
const MY_ADMIN = `${MY_PREFIX}adm`;
const MY_ADMIN_PASSWORD = `Aa1-${run}-admin`;

let server: TestPostgres;
let broker: BrokerProcess;
let my: Connection;
let dir: string;
const issued: string[] = [];

before(async () => {
  if (mongoSkip) return;
  dir = mkdtempSync(join(tmpdir(), 'dbroker-setup-'));
  [server, broker, my] = await Promise.all([trustPostgres(), startBroker(), adminConnection()]);
  await dropLeftovers(my, MY_PREFIX);
  await createAdminUser(my, MY_ADMIN, MY_ADMIN_PASSWORD);
  await adminQuery(server, `CREATE DATABASE ${DB}`);
});

after(async () => {
  if (mongoSkip) return;
  const token = rootToken();
  if (broker && token) await broker.api('PUT', 'sys/leases/revoke-prefix/database/creds/', { token }).catch(() => undefined);
  await broker?.stop();
  broker?.remove();
  if (server) {
    await adminQuery(server, `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => undefined);
    for (const user of issued) await adminQuery(server, `DROP ROLE IF EXISTS "${user}"`).catch(() => undefined);
    // The groups' privileges and default privileges lived in the dropped database only.
    for (const group of [READ_GROUP, WRITE_GROUP]) await adminQuery(server, `DROP ROLE IF EXISTS ${group}`).catch(() => undefined);
    await server.stop();
  }
  if (my) {
    await dropLeftovers(my, MY_PREFIX);
    await my.end();
  }
  if (!mongoSkip) await mongo.admin.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function rootToken(): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(dir, 'init.json'), 'utf8')) as { root_token: string }).root_token;
  } catch {
    return undefined;
  }
}

/** Run deploy/setup.sh against the test broker and servers; resolves with its exit code and output. */
function setupScript(): Promise<{ code: number | null; output: string }> {
  const mongoUrl = new URL(mongo.adminUrl);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    DBROKER_ADDR: broker.url,
    INIT_FILE: join(dir, 'init.json'),
    POSTGRES_ADDR: `${server.host}:${server.port}`,
    POSTGRES_USER: server.adminUser,
    POSTGRES_PASSWORD: server.adminPassword || 'unused-on-a-trust-server',
    POSTGRES_DB: DB,
    MYSQL_ADDR: `${mysqlTarget.host}:${mysqlTarget.port}`,
    MYSQL_ADMIN_USER: MY_ADMIN,
    MYSQL_ROOT_PASSWORD: MY_ADMIN_PASSWORD,
    MONGO_ADDR: mongoUrl.host,
    MONGO_ROOT_USER: mongo.username,
    MONGO_ROOT_PASSWORD: mongo.password,
    PG_READ_GROUP: READ_GROUP,
    PG_READWRITE_GROUP: WRITE_GROUP,
  };
  return new Promise((ok) => {
    const child = spawn('bash', [join(ROOT, 'deploy/setup.sh')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('close', (code) => ok({ code, output }));
  });
}

async function api(method: string, path: string, body?: unknown): Promise<ApiResponse> {
  return broker.api(method, path, { token: rootToken()!, ...(body !== undefined ? { body } : {}) });
}

async function creds(role: string): Promise<{ username: string; password: string }> {
  const r = await api('GET', `database/creds/${role}`);
  assert.equal(r.status, 200, `creds/${role}: ${r.text}`);
  issued.push(r.body.data.username);
  return r.body.data;
}

/** Run `sql` in the test database as the server's superuser; the rows. */
async function inDb<R extends pg.QueryResultRow>(sql: string): Promise<R[]> {
  const client = new pg.Client({ host: server.host, port: server.port, database: DB, user: server.adminUser, password: server.adminPassword });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function loginAs(user: { username: string; password: string }): Promise<pg.Client> {
  const client = new pg.Client({ host: server.host, port: server.port, database: DB, user: user.username, password: user.password });
  await client.connect();
  return client;
}

test('setup.sh: PostgreSQL roles grant group roles it creates; users read and write through them, in no table ACL; a rerun works', { skip: mongoSkip }, async () => {
  // A table and a sequence that exist before the script runs.
  await inDb("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO items (name) VALUES ('apple')");

  const first = await setupScript();
  assert.equal(first.code, 0, first.output);
  assert.match(first.output, new RegExp(`group roles ${READ_GROUP} and ${WRITE_GROUP} ready`));
  assert.doesNotMatch(broker.logs, /role written with warnings/, 'no role was written with the ACL-limit warning');

  // The roles only grant memberships; the one-off setup role is gone and not allowed.
  for (const [role, group] of [['postgres-readonly', READ_GROUP], ['postgres-readwrite', WRITE_GROUP]] as const) {
    const statements = ((await api('GET', `database/roles/${role}`)).body.data.creation_statements as string[]).join('\n');
    assert.match(statements, new RegExp(`GRANT ${group} TO "\\{\\{name\\}\\}"`), role);
    assert.doesNotMatch(statements, /\bON\b/i, `${role} grants nothing ON an object directly`);
  }
  assert.equal((await api('GET', 'database/roles/postgres-setup')).status, 404);
  assert.deepEqual((await api('GET', 'database/config/postgres')).body.data.allowed_roles, ['postgres-readonly', 'postgres-readwrite']);

  // A table created after the script: the default privileges cover it.
  await inDb("CREATE TABLE later_items (name text); INSERT INTO later_items VALUES ('pear')");

  const reader = await creds('postgres-readonly');
  const writer = await creds('postgres-readwrite');
  const r = await loginAs(reader);
  try {
    assert.equal((await r.query('SELECT count(*)::int AS n FROM items')).rows[0].n, 1);
    assert.equal((await r.query('SELECT count(*)::int AS n FROM later_items')).rows[0].n, 1);
    await assert.rejects(r.query("INSERT INTO items (name) VALUES ('no')"), /permission denied/);
  } finally {
    await r.end();
  }
  const w = await loginAs(writer);
  try {
    await w.query("INSERT INTO items (name) VALUES ('banana')"); // uses the serial's sequence
    await w.query("INSERT INTO later_items VALUES ('plum')");
    assert.equal((await w.query('SELECT count(*)::int AS n FROM items')).rows[0].n, 2);
  } finally {
    await w.end();
  }
  // No table's or sequence's ACL names a dynamic user.
  const acls = (await inDb<{ acl: string }>("SELECT coalesce(relacl::text, '') AS acl FROM pg_class WHERE relnamespace = 'public'::regnamespace")).map((row) => row.acl);
  for (const acl of acls) {
    assert.ok(!acl.includes(reader.username) && !acl.includes(writer.username), acl);
  }
  assert.ok(acls.some((acl) => acl.includes(READ_GROUP)), 'the group holds the privileges');

  // Idempotent: the groups exist now, and a second run goes through the same steps. It also
  // works after a root rotation (ROTATE_ROOT=1 does this; here only for the MySQL connection,
  // whose admin is this test's own): an existing connection is updated without the password
  // from the environment, which no longer logs in, and keeps the one the broker has.
  assert.equal((await api('PUT', 'database/rotate-root/mysql')).status, 204);
  assert.equal(await canLogin(MY_ADMIN, MY_ADMIN_PASSWORD), false, 'the rotation changed the MySQL admin password');
  const second = await setupScript();
  assert.equal(second.code, 0, second.output);
  const mysqlUser = await api('GET', 'database/creds/mysql-readonly');
  assert.equal(mysqlUser.status, 200, mysqlUser.text);
  assert.equal(await canLogin(mysqlUser.body.data.username, mysqlUser.body.data.password), true);
  assert.equal((await api('GET', 'database/roles/postgres-setup')).status, 404);
  const again = await loginAs(await creds('postgres-readonly'));
  try {
    assert.equal((await again.query('SELECT count(*)::int AS n FROM items')).rows[0].n, 2);
  } finally {
    await again.end();
  }
});
