// Updating a database connection the way Vault does (its
// builtin/logical/database/path_config_connection.go), against a real broker,
// the shared PostgreSQL and MariaDB (found by a new-user trial: an update
// without plugin_name was a 400):
//   - plugin_name is required to create a connection, not to update one: an
//     update keeps the stored plugin and every other field it leaves out
//     (connection_url, username, the root password, verify_connection,
//     allowed_roles, root_rotation_statements, pool settings,
//     username_template) and changes the fields it sends;
//   - the stored root password is the one an update logs in with (proved on
//     MariaDB, which checks passwords) and no response shows it;
//   - a different plugin_name switches the connection's engine, as Vault
//     allows, with a warning.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'mysql2/promise';
import type { ApiResponse } from '../../support/broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { dropRolesWithPrefix, roleExists, startPgBroker, tag, templatedUrl, type PgBroker } from '../../support/pg-broker.ts';
import { adminConnection, canLogin, createAdminUser, dropLeftovers, mysqlConfig } from '../../support/mariadb.ts';

const run = tag();
const PG_PREFIX = `cu${run}`;
const MY_PREFIX = `dbt_cu${run.slice(0, 4)}`;
const MY_ADMIN = `${MY_PREFIX}adm`;
const MY_ADMIN_PASSWORD = `Aa1-${run}-admin`;
const PG_CREATE = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`;
const MY_CREATE = `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`;
const PG_ROTATE = `ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}'`;

let server: TestPostgres;
let pb: PgBroker;
let my: Connection;

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
  await server?.stop();
});

async function config(name: string): Promise<ApiResponse['body']> {
  const r = await pb.api('GET', `database/config/${name}`);
  assert.equal(r.status, 200, r.text);
  return r.body.data;
}

async function creds(role: string): Promise<{ username: string; password: string }> {
  const r = await pb.api('GET', `database/creds/${role}`);
  assert.equal(r.status, 200, `creds/${role}: ${r.text}`);
  return r.body.data;
}

function mysqlConnection(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    plugin_name: 'mysql-database-plugin',
    connection_url: mysqlConfig().connectionUrl,
    username: MY_ADMIN,
    password: MY_ADMIN_PASSWORD,
    allowed_roles: '*',
    username_template: `{{ printf "${MY_PREFIX}%s" (random 16) }}`,
    ...extra,
  };
}

test('an update without plugin_name keeps the plugin and every field it leaves out, and changes the ones it sends', async () => {
  const url = `${templatedUrl(server)}?application_name=cua${run}`;
  const created = await pb.api('PUT', 'database/config/pg-upd', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: url,
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: 'ro',
    verify_connection: false,
    max_open_connections: 3,
    max_idle_connections: 2,
    max_connection_lifetime: '5m',
    root_rotation_statements: [PG_ROTATE],
    username_template: `{{ printf "${PG_PREFIX}%s" (random 16) }}`,
  });
  assert.equal(created.status, 204, created.text);
  const before = await config('pg-upd');

  // PUT with one field: that field changes, nothing else does.
  const w = await pb.api('PUT', 'database/config/pg-upd', { allowed_roles: 'ro,rw' });
  assert.equal(w.status, 204, w.text);
  const after1 = await config('pg-upd');
  assert.equal(after1.plugin_name, 'postgresql-database-plugin');
  assert.deepEqual(after1.allowed_roles, ['ro', 'rw']);
  assert.equal(after1.connection_details.connection_url, url);
  assert.equal(after1.connection_details.username, server.adminUser);
  assert.equal(after1.connection_details.max_open_connections, 3);
  assert.equal(after1.connection_details.max_idle_connections, 2);
  assert.equal(after1.connection_details.max_connection_lifetime, '300s');
  assert.equal(after1.verify_connection, false, 'verify_connection is kept, not reset to its default');
  assert.deepEqual(after1.root_credentials_rotate_statements, [PG_ROTATE]);
  assert.equal(after1.username_template, before.username_template);
  assert.deepEqual({ ...after1, allowed_roles: before.allowed_roles }, before, 'only allowed_roles changed');

  // POST (what the Vault CLI sends) with another field: the first change stays.
  const url2 = `${templatedUrl(server)}?application_name=cub${run}`;
  const p = await pb.api('POST', 'database/config/pg-upd', { connection_url: url2, verify_connection: true });
  assert.equal(p.status, 204, p.text);
  const after2 = await config('pg-upd');
  assert.equal(after2.plugin_name, 'postgresql-database-plugin');
  assert.equal(after2.connection_details.connection_url, url2);
  assert.equal(after2.verify_connection, true);
  assert.deepEqual(after2.allowed_roles, ['ro', 'rw']);
  assert.equal(after2.connection_details.max_open_connections, 3);

  // The updated connection issues creds for the newly allowed role.
  const role = await pb.api('PUT', 'database/roles/rw', { db_name: 'pg-upd', creation_statements: PG_CREATE });
  assert.equal(role.status, 204, role.text);
  const c = await creds('rw');
  assert.ok(c.username.startsWith(PG_PREFIX), c.username);
  assert.ok(await roleExists(server, c.username));
});

test('a create without plugin_name is a 400 naming it; nothing is written', async () => {
  const r = await pb.api('PUT', 'database/config/pg-new', {
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: '*',
  });
  assert.equal(r.status, 400, r.text);
  assert.deepEqual(r.body.errors, ['missing required field "plugin_name"']);
  assert.equal((await pb.api('GET', 'database/config/pg-new')).status, 404, 'nothing was written');
  // An empty plugin_name is no way round it, on create or update.
  const empty = await pb.api('PUT', 'database/config/pg-new', { plugin_name: '', connection_url: templatedUrl(server) });
  assert.equal(empty.status, 400, empty.text);
  assert.match(empty.body.errors[0], /plugin_name/);
});

test('an update without password logs in with the stored root password (MariaDB checks it) and shows it nowhere', async () => {
  const created = await pb.api('PUT', 'database/config/my-upd', mysqlConnection({ allowed_roles: 'none-yet' }));
  assert.equal(created.status, 204, created.text);
  const role = await pb.api('PUT', 'database/roles/my-upd', { db_name: 'my-upd', creation_statements: MY_CREATE });
  assert.equal(role.status, 200, role.text);
  assert.match(role.body.warnings.join('\n'), /connection "my-upd" does not allow this role \(allowed_roles\)/);
  assert.equal((await pb.api('GET', 'database/creds/my-upd')).status, 400, 'not allowed yet');

  // verify_connection (default true) makes the update log in: with the stored password.
  const w = await pb.api('PUT', 'database/config/my-upd', { allowed_roles: 'my-upd', max_open_connections: 2 });
  assert.equal(w.status, 204, w.text);
  const data = await config('my-upd');
  assert.equal(data.plugin_name, 'mysql-database-plugin');
  assert.deepEqual(data.allowed_roles, ['my-upd']);
  assert.equal(data.connection_details.username, MY_ADMIN);
  assert.equal(data.connection_details.max_open_connections, 2);
  const c = await creds('my-upd');
  assert.ok(await canLogin(c.username, c.password), 'the creds work');

  // A wrong password is refused naming connection_url, without echoing it; the stored one still works.
  const wrong = `Wrong-${run}-pw`;
  const bad = await pb.api('PUT', 'database/config/my-upd', { password: wrong });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.body.errors[0], /connection_url/);
  assert.ok(!bad.text.includes(wrong), bad.text);
  assert.ok(!bad.text.includes(MY_ADMIN_PASSWORD), bad.text);
  const again = await creds('my-upd');
  assert.ok(await canLogin(again.username, again.password));
  const get = await pb.api('GET', 'database/config/my-upd');
  assert.ok(!get.text.includes(MY_ADMIN_PASSWORD), 'GET never shows the root password');
  assert.ok(!('password' in get.body.data.connection_details));
});

test('a different plugin_name switches the connection to that engine (Vault allows it), with a warning', async () => {
  const created = await pb.api('PUT', 'database/config/switch', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: 'switch',
    username_template: `{{ printf "${MY_PREFIX}%s" (random 16) }}`,
  });
  assert.equal(created.status, 204, created.text);
  const w = await pb.api('PUT', 'database/config/switch', {
    plugin_name: 'mysql-database-plugin',
    connection_url: mysqlConfig().connectionUrl,
    username: MY_ADMIN,
    password: MY_ADMIN_PASSWORD,
  });
  assert.equal(w.status, 200, w.text);
  assert.equal(w.body.warnings.length, 1, w.text);
  assert.match(w.body.warnings[0], /plugin_name changed from "postgresql-database-plugin" to "mysql-database-plugin"/);
  assert.match(w.body.warnings[0], /its 0 active lease\(s\) will be revoked through "mysql-database-plugin"/);
  assert.ok(!w.text.includes(MY_ADMIN_PASSWORD) && !w.text.includes(server.adminPassword || '\u0000'), w.text);
  const data = await config('switch');
  assert.equal(data.plugin_name, 'mysql-database-plugin');
  assert.equal(data.connection_details.username, MY_ADMIN);
  assert.deepEqual(data.allowed_roles, ['switch'], 'allowed_roles kept');
  assert.equal((await pb.api('PUT', 'database/roles/switch', { db_name: 'switch', creation_statements: MY_CREATE })).status, 204);
  const c = await creds('switch');
  assert.ok(await canLogin(c.username, c.password), 'creds come from MariaDB now');
});
