// Vault connection and role parameters are applied or refused, never stored
// and ignored (issue 8 item 14, database part), against a real broker and
// real PostgreSQL, MariaDB and FerretDB/MongoDB:
//   - max_connection_lifetime and max_idle_connections act on the engine's
//     pool (observed as sessions in the database) and show in GET config;
//     an engine whose driver has no such setting (MongoDB) refuses them;
//   - password_policy, plugin_version, role and static-role
//     credential_config and static-role self_managed_password are 400s
//     naming the parameter when set, accepted when empty.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'mysql2/promise';
import { eventually, type ApiResponse } from '../../support/broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { dropRolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { adminConnection, createAdminUser, dropLeftovers, mysqlConfig, sessionsOf } from '../../support/mariadb.ts';
import { assertDone, mongoConfig, mongoTarget, type MongoTarget } from '../../plugins/mongodb/helpers.ts';

const foundMongo = await mongoTarget();
const mongoSkip = typeof foundMongo === 'string' ? foundMongo : false;
const mongo = foundMongo as MongoTarget;

const run = tag();
const PG_PREFIX = `cp${run}`;
const MY_PREFIX = `dbt_cp${run.slice(0, 4)}`;
const MY_ADMIN = `${MY_PREFIX}adm`;
const MY_ADMIN_PASSWORD = `Aa1-${run}-admin`;
const PG_CREATE = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`;

let server: TestPostgres;
let pb: PgBroker;
let my: Connection;

function refused(r: ApiResponse, field: string, problem: RegExp, what: string): void {
  assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
  assert.match(r.body.errors[0], new RegExp(`^invalid field "${field.replace(/\./g, '\\.')}": `), what);
  assert.match(r.body.errors[0], problem, what);
}

/** A PostgreSQL connection whose sessions carry their own application_name. */
function pgConnection(app: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres?application_name=${app}`,
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: '*',
    username_template: `{{ printf "${PG_PREFIX}%s" (random 20) }}`,
    ...extra,
  };
}

const pgSessions = async (app: string): Promise<number> =>
  Number((await adminQuery<{ n: string }>(server, 'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app]))[0]!.n);

async function creds(role: string): Promise<void> {
  const r = await pb.api('GET', `database/creds/${role}`);
  assert.equal(r.status, 200, `creds/${role}: ${r.text}`);
}

before(async () => {
  [server, pb, my] = await Promise.all([trustPostgres(), startPgBroker(), adminConnection()]);
  await dropLeftovers(my, MY_PREFIX);
  await createAdminUser(my, MY_ADMIN, MY_ADMIN_PASSWORD);
});

after(async () => {
  await pb?.api('PUT', 'sys/leases/revoke-prefix/database/creds/').catch(() => undefined);
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, PG_PREFIX);
  if (my) {
    await dropLeftovers(my, MY_PREFIX);
    await my.end();
  }
  if (!mongoSkip) await mongo.admin.close();
  await server?.stop();
});

test('GET config shows max_idle_connections and max_connection_lifetime (they were dropped)', async () => {
  const w = await pb.api('PUT', 'database/config/pg-show', pgConnection(`cps${run}`, { max_open_connections: 3, max_idle_connections: '2', max_connection_lifetime: '5m' }));
  assert.equal(w.status, 204, w.text);
  const details = (await pb.api('GET', 'database/config/pg-show')).body.data.connection_details;
  assert.equal(details.max_open_connections, 3);
  assert.equal(details.max_idle_connections, 2);
  assert.equal(details.max_connection_lifetime, '300s');
  // Kept when a later write leaves them out.
  assert.equal((await pb.api('PUT', 'database/config/pg-show', pgConnection(`cps${run}`))).status, 204);
  const again = (await pb.api('GET', 'database/config/pg-show')).body.data.connection_details;
  assert.equal(again.max_idle_connections, 2);
  assert.equal(again.max_connection_lifetime, '300s');
  refused(await pb.api('PUT', 'database/config/pg-show', pgConnection(`cps${run}`, { max_connection_lifetime: 'soon' })), 'max_connection_lifetime', /not a duration/, 'bad duration');
  assert.equal((await pb.api('DELETE', 'database/config/pg-show')).status, 204);
});

test('PostgreSQL: max_connection_lifetime closes pooled sessions after it; without it they stay', async () => {
  const [short, plain] = [`cpl${run}`, `cpp${run}`];
  assert.equal((await pb.api('PUT', 'database/config/pg-life', pgConnection(short, { max_connection_lifetime: '1s' }))).status, 204);
  assert.equal((await pb.api('PUT', 'database/config/pg-plain', pgConnection(plain))).status, 204);
  for (const db of ['pg-life', 'pg-plain']) assert.equal((await pb.api('PUT', `database/roles/${db}`, { db_name: db, creation_statements: PG_CREATE })).status, 204);
  await creds('pg-life');
  await creds('pg-plain');
  assert.ok((await pgSessions(short)) >= 1);
  await eventually(async () => (await pgSessions(short)) === 0, 8_000, 'the 1s-lifetime sessions are closed');
  assert.ok((await pgSessions(plain)) >= 1, 'without a lifetime the idle session stays (pg idle timeout is 10s)');
});

test('PostgreSQL: max_idle_connections caps the idle sessions; negative keeps none', async () => {
  const [none, one] = [`cpn${run}`, `cpo${run}`];
  assert.equal((await pb.api('PUT', 'database/config/pg-none', pgConnection(none, { max_idle_connections: -1 }))).status, 204);
  assert.equal((await pb.api('PUT', 'database/config/pg-one', pgConnection(one, { max_open_connections: 4, max_idle_connections: 1 }))).status, 204);
  for (const db of ['pg-none', 'pg-one']) assert.equal((await pb.api('PUT', `database/roles/${db}`, { db_name: db, creation_statements: PG_CREATE })).status, 204);
  await creds('pg-none');
  await eventually(async () => (await pgSessions(none)) === 0, 5_000, 'no idle session is kept');
  await Promise.all(Array.from({ length: 6 }, () => creds('pg-one')));
  await eventually(async () => (await pgSessions(one)) <= 1, 5_000, 'at most one idle session is kept');
});

test('MySQL: max_connection_lifetime replaces a pooled session once it is older; without it the session is reused', async () => {
  const c = mysqlConfig();
  const conn = (extra: Record<string, unknown>) => ({
    plugin_name: 'mysql-database-plugin',
    connection_url: c.connectionUrl,
    username: MY_ADMIN,
    password: MY_ADMIN_PASSWORD,
    allowed_roles: '*',
    username_template: `{{ printf "${MY_PREFIX}%s" (random 20) }}`,
    ...extra,
  });
  const role = { creation_statements: `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'` };
  assert.equal((await pb.api('PUT', 'database/config/my-life', conn({ max_connection_lifetime: '1s', max_idle_connections: 2 }))).status, 204);
  const details = (await pb.api('GET', 'database/config/my-life')).body.data.connection_details;
  assert.equal(details.max_connection_lifetime, '1s');
  assert.equal(details.max_idle_connections, 2);
  assert.equal((await pb.api('PUT', 'database/roles/my-life', { db_name: 'my-life', ...role })).status, 204);
  await creds('my-life');
  const first = await sessionsOf(my, MY_ADMIN);
  assert.ok(first.length >= 1);
  await new Promise((r) => setTimeout(r, 1500));
  await creds('my-life');
  await eventually(async () => (await sessionsOf(my, MY_ADMIN)).every((id) => !first.includes(id)), 5_000, 'the sessions older than 1s are closed');

  // Without a lifetime the same session serves the next creds.
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/my-life/')).status, 204);
  assert.equal((await pb.api('DELETE', 'database/roles/my-life')).status, 204);
  assert.equal((await pb.api('DELETE', 'database/config/my-life')).status, 204);
  await eventually(async () => (await sessionsOf(my, MY_ADMIN)).length === 0, 5_000, 'the deleted connection closed its pool');
  assert.equal((await pb.api('PUT', 'database/config/my-plain', conn({}))).status, 204);
  assert.equal((await pb.api('PUT', 'database/roles/my-plain', { db_name: 'my-plain', ...role })).status, 204);
  await creds('my-plain');
  const kept = await sessionsOf(my, MY_ADMIN);
  await new Promise((r) => setTimeout(r, 1500));
  await creds('my-plain');
  const later = await sessionsOf(my, MY_ADMIN);
  assert.ok(kept.some((id) => later.includes(id)), `a session is reused (${kept} then ${later})`);
});

test('MongoDB: its driver has no idle cap or lifetime, so non-default values are refused by name', { skip: mongoSkip }, async () => {
  const m = mongoConfig(mongo);
  const conn = (extra: Record<string, unknown>) => ({ plugin_name: 'mongodb-database-plugin', connection_url: m.connectionUrl, username: m.username, password: m.password, ...m.options, ...extra });
  refused(await pb.api('PUT', 'database/config/mongo', conn({ max_idle_connections: 3 })), 'max_idle_connections', /not applied by mongodb-database-plugin/, 'idle');
  refused(await pb.api('PUT', 'database/config/mongo', conn({ max_connection_lifetime: '1m' })), 'max_connection_lifetime', /not applied by mongodb-database-plugin/, 'lifetime');
  assert.equal((await pb.api('GET', 'database/config/mongo')).status, 404, 'nothing was written');
  assertDone(mongo, await pb.api('PUT', 'database/config/mongo', conn({ max_idle_connections: 0, max_connection_lifetime: '0s' })), 'config mongo');
});

test('password_policy and plugin_version: 400s naming them when set, accepted when empty', async () => {
  refused(await pb.api('PUT', 'database/config/pg-pp', pgConnection(`cpq${run}`, { password_policy: 'strong' })), 'password_policy', /no sys\/policies\/password endpoint/, 'password_policy');
  refused(await pb.api('PUT', 'database/config/pg-pp', pgConnection(`cpq${run}`, { plugin_version: 'v1.2.3' })), 'plugin_version', /no versions/, 'plugin_version');
  assert.equal((await pb.api('GET', 'database/config/pg-pp')).status, 404, 'nothing was written');
  const w = await pb.api('PUT', 'database/config/pg-pp', pgConnection(`cpq${run}`, { password_policy: '', plugin_version: '' }));
  assert.equal(w.status, 204, w.text);
  const data = (await pb.api('GET', 'database/config/pg-pp')).body.data;
  assert.equal(data.password_policy, '');
  assert.equal(data.plugin_version, '');
  // An update cannot slip one in either.
  refused(await pb.api('PUT', 'database/config/pg-pp', pgConnection(`cpq${run}`, { password_policy: 'p' })), 'password_policy', /not supported/, 'update');
});

test('Vault 1.19 automated root rotation fields: accepted at their defaults (as Terraform sends them), refused otherwise with a pointer', async () => {
  const defaults = { rotation_period: 0, rotation_schedule: '', rotation_window: 0, disable_automated_rotation: false };
  const ok = await pb.api('PUT', 'database/config/pg-auto', pgConnection(`cpa${run}`, defaults));
  assert.equal(ok.status, 204, ok.text);
  assert.equal((await pb.api('GET', 'database/config/pg-auto')).body.data.root_rotation_period, 0, 'nothing was scheduled');
  for (const [field, value, pointer] of [
    ['rotation_period', '24h', /root_rotation_period/],
    ['rotation_schedule', '0 * * * *', /root_rotation_schedule/],
    ['rotation_window', 3600, /no window/],
    ['disable_automated_rotation', true, /leave them unset/],
  ] as const) {
    refused(await pb.api('PUT', 'database/config/pg-auto', pgConnection(`cpa${run}`, { [field]: value })), field, pointer, field);
  }
  assert.equal((await pb.api('DELETE', 'database/config/pg-auto')).status, 204);
});

test('role and static-role credential_config, and self_managed_password: 400s naming them when set', async () => {
  const base = { db_name: 'pg-pp', creation_statements: PG_CREATE };
  for (const config of [{ password_policy: 'strong' }, 'password_policy=strong', ['password_policy=strong']]) {
    refused(await pb.api('PUT', 'database/roles/cc', { ...base, credential_config: config }), 'credential_config.password_policy', /no password policies/, JSON.stringify(config));
  }
  refused(await pb.api('PUT', 'database/roles/cc', { ...base, credential_config: { other: 'x' } }), 'credential_config.other', /takes no settings/, 'other key');
  assert.equal((await pb.api('GET', 'database/roles/cc')).status, 404);
  for (const empty of [{}, '', []]) assert.equal((await pb.api('PUT', 'database/roles/cc', { ...base, credential_config: empty })).status, 204, JSON.stringify(empty));

  const user = `${PG_PREFIX}st`;
  await adminQuery(server, `CREATE ROLE "${user}" LOGIN PASSWORD 'x'`);
  const staticRole = { db_name: 'pg-pp', username: user, rotation_period: '1h' };
  refused(await pb.api('PUT', 'database/static-roles/st', { ...staticRole, credential_config: { password_policy: 'p' } }), 'credential_config.password_policy', /not supported/, 'static credential_config');
  refused(await pb.api('PUT', 'database/static-roles/st', { ...staticRole, self_managed_password: 'current' }), 'self_managed_password', /not supported/, 'self_managed_password');
  assert.equal((await pb.api('GET', 'database/static-roles/st')).status, 404);
  const ok = await pb.api('PUT', 'database/static-roles/st', { ...staticRole, credential_config: {}, self_managed_password: '' });
  assert.equal(ok.status, 204, ok.text);
  assert.equal((await pb.api('DELETE', 'database/static-roles/st')).status, 204);
  await adminQuery(server, `DROP ROLE "${user}"`);
});
