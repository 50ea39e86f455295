// Generated usernames stay unique on every engine and limit (issue 8 item 8),
// over HTTP against a real broker and real servers. The reported case:
// mysql-legacy-database-plugin (16 characters), role rdonly12: the default
// template was cut to `v-root-rdonly12-` with nothing random left, so the
// second creds failed with "already exists". Each engine now uses Vault's
// default template for it, and a template whose randomness a cut can remove
// is a 400 at role and connection write.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'mysql2/promise';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { roleExists, startPgBroker, type PgBroker } from '../../support/pg-broker.ts';
import { adminConnection, canLogin, mysqlConfig, userHosts } from '../../support/mariadb.ts';
import { assertDone, canLogin as mongoCanLogin, mongoConfig, mongoTarget, type MongoTarget } from '../../plugins/mongodb/helpers.ts';

const foundMongo = await mongoTarget();
const mongoSkip = typeof foundMongo === 'string' ? foundMongo : false;
const mongo = foundMongo as MongoTarget;

const MY_CREATE = `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`;
let server: TestPostgres;
let pb: PgBroker;
let my: Connection;

async function connection(name: string, plugin: string, extra: Record<string, unknown> = {}): Promise<{ status: number; text: string; body: { errors?: string[] } }> {
  if (plugin.startsWith('mysql')) {
    const c = mysqlConfig();
    return pb.api('PUT', `database/config/${name}`, { plugin_name: plugin, connection_url: c.connectionUrl, username: c.username, password: c.password, allowed_roles: '*', ...extra });
  }
  if (plugin.startsWith('mongodb')) {
    const m = mongoConfig(mongo);
    return pb.api('PUT', `database/config/${name}`, { plugin_name: plugin, connection_url: m.connectionUrl, username: m.username, password: m.password, allowed_roles: '*', ...m.options, ...extra });
  }
  return pb.api('PUT', `database/config/${name}`, {
    plugin_name: plugin,
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: '*',
    ...extra,
  });
}

async function twoCreds(role: string): Promise<Array<{ leaseId: string; username: string; password: string }>> {
  const out = [];
  for (let i = 0; i < 2; i++) {
    const r = await pb.api('GET', `database/creds/${role}`);
    assert.equal(r.status, 200, `creds ${i + 1} of ${role}: ${r.text}`);
    out.push({ leaseId: r.body.lease_id as string, username: r.body.data.username as string, password: r.body.data.password as string });
  }
  assert.notEqual(out[0]!.username, out[1]!.username);
  return out;
}

before(async () => {
  [server, pb, my] = await Promise.all([trustPostgres(), startPgBroker(), adminConnection()]);
});

after(async () => {
  // Revoking through the broker drops every user these tests made.
  if (pb) assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/')).status, 204);
  await pb?.close();
  await my?.end();
  if (!mongoSkip) await mongo.admin.close();
  await server?.stop();
});

test('the reported case: mysql-legacy-database-plugin, role rdonly12: two creds, two distinct working users (Vault\'s legacy default)', async () => {
  assert.equal((await connection('legacy', 'mysql-legacy-database-plugin')).status, 204);
  assert.equal((await pb.api('PUT', 'database/roles/rdonly12', { db_name: 'legacy', creation_statements: MY_CREATE })).status, 204);
  for (const c of await twoCreds('rdonly12')) {
    assert.match(c.username, /^v-rdon-[A-Za-z0-9]{9}$/);
    assert.deepEqual(await userHosts(my, c.username), ['%']);
    assert.equal(await canLogin(c.username, c.password), true);
  }
});

test('mysql-database-plugin: Vault\'s default, 32 characters, the random part kept also for long names', async () => {
  assert.equal((await connection('mysql', 'mysql-database-plugin')).status, 204);
  const longRole = 'reporting-readonly-role';
  for (const role of ['my-rdonly12', longRole]) assert.equal((await pb.api('PUT', `database/roles/${role}`, { db_name: 'mysql', creation_statements: MY_CREATE })).status, 204);
  for (const c of await twoCreds('my-rdonly12')) {
    assert.match(c.username, /^v-root-my-rdonly1-[A-Za-z0-9]{14}$/);
    assert.equal(await canLogin(c.username, c.password), true);
  }
  const tok = await pb.api('PUT', 'auth/token/create', { policies: ['root'], display_name: 'a-very-long-display-name-indeed', ttl: '5m' });
  assert.equal(tok.status, 200, tok.text);
  const r = await pb.broker.api('GET', `database/creds/${longRole}`, { token: tok.body.auth.client_token });
  assert.equal(r.status, 200, r.text);
  assert.match(r.body.data.username, /^v-token-a-ve-reporting--[A-Za-z0-9]{8}$/);
});

test('postgresql-database-plugin and mongodb-database-plugin: their defaults keep the whole random part', async () => {
  assert.equal((await connection('pg', 'postgresql-database-plugin')).status, 204);
  assert.equal((await pb.api('PUT', 'database/roles/pg-rdonly12', { db_name: 'pg', creation_statements: `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'` })).status, 204);
  for (const c of await twoCreds('pg-rdonly12')) {
    assert.match(c.username, /^v-root-pg-rdonl-[A-Za-z0-9]{20}-\d{10}$/);
    assert.ok(await roleExists(server, c.username));
  }
  if (mongoSkip) return;
  assertDone(mongo, await connection('mongo', 'mongodb-database-plugin'), 'config mongo');
  const read = JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: 'admin' }] });
  assert.equal((await pb.api('PUT', 'database/roles/mongo.rdonly12', { db_name: 'mongo', creation_statements: [read] })).status, 204);
  for (const c of await twoCreds('mongo.rdonly12')) {
    // Vault's mongodb default also turns "." into "-".
    assert.match(c.username, /^v-root-mongo-rdonly12-[A-Za-z0-9]{20}-\d{10}$/);
    assert.equal(await mongoCanLogin(mongo, c.username, c.password), true);
  }
});

test('a template whose randomness the cut removes is a 400 naming username_template, at role and at connection write', async () => {
  // "v-rdonly12x-" leaves 4 of the 20 random characters within 16.
  const role = await pb.api('PUT', 'database/roles/rdonly12x', { db_name: 'legacy', creation_statements: MY_CREATE, username_template: '{{ printf "v-%s-%s" .RoleName (random 20) }}' });
  assert.equal(role.status, 400, role.text);
  assert.match(role.body.errors![0]!, /^invalid field "username_template": must make unique usernames, but its output keeps only about 4 random characters once cut to the 16-character limit/);
  assert.equal((await pb.api('GET', 'database/roles/rdonly12x')).status, 404);
  // On a connection the display name is unknown: the longest one a token can have must leave the random part.
  const conn = await connection('legacy-cut', 'mysql-legacy-database-plugin', { username_template: '{{ .DisplayName }}{{ random 20 }}' });
  assert.equal(conn.status, 400, conn.text);
  assert.match(conn.body.errors![0]!, /^invalid field "username_template": must make unique usernames/);
  assert.equal((await pb.api('GET', 'database/config/legacy-cut')).status, 404);
  // Truncating the names keeps it: accepted.
  assert.equal((await connection('legacy-cut', 'mysql-legacy-database-plugin', { username_template: '{{ .DisplayName | truncate 4 }}{{ random 20 }}' })).status, 204);
  assert.equal((await pb.api('DELETE', 'database/config/legacy-cut')).status, 204);
});

test('a cut never leaves a name ending in "-"', async () => {
  const w = await pb.api('PUT', 'database/roles/dash', { db_name: 'legacy', creation_statements: MY_CREATE, username_template: '{{ random 10 }}-{{ .RoleName | truncate 4 }}-x' });
  assert.equal(w.status, 204, w.text);
  for (const c of await twoCreds('dash')) {
    assert.match(c.username, /^[A-Za-z0-9]{10}-dash$/);
    assert.equal(await canLogin(c.username, c.password), true);
  }
});
