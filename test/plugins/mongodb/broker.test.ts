// The MongoDB engine end to end: a real broker process over HTTP, configured
// with mongodb-database-plugin against FerretDB (or MONGODB_URL): config,
// roles with JSON statements, creds that log in, revocation that locks them
// out, expiry, root rotation, and 400s for bad statements.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../../support/broker.ts';
import { startPgBroker, type PgBroker } from '../../support/pg-broker.ts';
import { PASSWORD, assertDone, canLogin, dropUsersWithPrefix, mongoConfig, mongoTarget, tag, userDatabases, type MongoTarget } from './helpers.ts';

const found = await mongoTarget();
const skip = typeof found === 'string' ? found : false;
const target = found as MongoTarget;

const run = tag();
const PREFIX = `dbt-mb-${run}-`;
const APP = `dbt_bapp_${run}`;
const DBS = ['admin', APP];
const template = (part: string): string => `{{ printf "${PREFIX}${part}-%s" (random 16) }}`;
const READ_APP = JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: APP }] });

let pb: PgBroker;

async function configure(name: string, fields: Record<string, unknown> = {}): Promise<{ status: number; text: string; body: unknown }> {
  const config = mongoConfig(target);
  return pb.api('PUT', `database/config/${name}`, {
    plugin_name: 'mongodb-database-plugin',
    connection_url: config.connectionUrl,
    username: config.username,
    password: config.password,
    allowed_roles: '*',
    ...config.options,
    ...fields,
  });
}

async function writeRole(name: string, fields: Record<string, unknown>): Promise<{ status: number; text: string; body: { errors?: string[] } }> {
  return pb.api('PUT', `database/roles/${name}`, { db_name: 'mongo', creation_statements: [READ_APP], default_ttl: '10m', ...fields });
}

async function creds(role: string): Promise<{ leaseId: string; username: string; password: string }> {
  const r = await pb.api('GET', `database/creds/${role}`);
  assert.equal(r.status, 200, r.text);
  return { leaseId: r.body.lease_id, username: r.body.data.username, password: r.body.data.password };
}

before(async () => {
  if (skip) return;
  pb = await startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '2h' } });
  await target.admin.db(APP).collection('things').insertOne({ v: 1 });
  assertDone(target, await configure('mongo'), 'config');
});

after(async () => {
  if (skip) return;
  await pb?.close();
  await dropUsersWithPrefix(target, PREFIX, DBS);
  await target.admin.db(APP).dropDatabase().catch(() => undefined);
  await target.admin.close();
});

test('config: the password never comes back; a wrong admin password is refused without echoing it', { skip }, async () => {
  const read = await pb.api('GET', 'database/config/mongo');
  assert.equal(read.status, 200, read.text);
  assert.equal(read.body.data.plugin_name, 'mongodb-database-plugin');
  assert.ok(!read.text.includes(target.password), 'the admin password is in the config read');
  const bad = `Wrong-${run}-admin-password`;
  const r = await configure(`mongo-bad-${run}`, { password: bad });
  // A refused verification is a client-side problem (400 naming connection_url) or a 502, never a 500.
  assert.ok([400, 502].includes(r.status), `${r.status} ${r.text}`);
  assert.match(r.text, /Authentication ?failed/i);
  assert.ok(!r.text.includes(bad));
  const badOption = await configure(`mongo-opt-${run}`, { write_concern: '{"w": ' });
  assert.equal(badOption.status, 400, badOption.text);
  assert.match(badOption.text, /write_concern/);
});

test('creds log in; revoking the lease drops the user and the login fails', { skip }, async () => {
  assert.equal((await writeRole('reader', { username_template: template('r') })).status, 204);
  const c = await creds('reader');
  assert.ok(c.username.startsWith(`${PREFIX}r-`), c.username);
  assert.ok(c.password.length >= 20);
  assert.equal(await canLogin(target, c.username, c.password), true);
  assert.equal(await canLogin(target, c.username, `${c.password}x`), false);
  if (!target.ferretdb) {
    const info = await target.admin.db('admin').command({ usersInfo: { user: c.username, db: 'admin' } });
    assert.deepEqual(info['users'][0].roles, [{ role: 'read', db: APP }]);
  }
  assertDone(target, await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId }), 'revoke');
  assert.equal(await canLogin(target, c.username, c.password), false);
  assert.deepEqual(await userDatabases(target, c.username, DBS), []);
  assert.ok(!pb.broker.logs.includes(c.password), 'a creds password is in the broker log');
});

test('a user made in another database is dropped by the default revocation too', { skip }, async () => {
  const r = await writeRole('app-reader', { creation_statements: [JSON.stringify({ db: APP, roles: ['read'] })], username_template: template('a') });
  assert.equal(r.status, 204, r.text);
  const c = await creds('app-reader');
  assert.deepEqual(await userDatabases(target, c.username, DBS), [APP]);
  assert.equal(await canLogin(target, c.username, c.password, APP), true);
  assertDone(target, await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId }), 'revoke');
  assert.deepEqual(await userDatabases(target, c.username, DBS), []);
  assert.equal(await canLogin(target, c.username, c.password, APP), false);
});

test('an expired lease is revoked by the loop', { skip }, async () => {
  assert.equal((await writeRole('short', { default_ttl: '2s', max_ttl: '2s', username_template: template('s') })).status, 204);
  const c = await creds('short');
  assert.equal(await canLogin(target, c.username, c.password), true);
  await eventually(async () => (await userDatabases(target, c.username, DBS)).length === 0, 30_000, 'the expired user is dropped');
  assert.equal(await canLogin(target, c.username, c.password), false);
});

test('bad statements are a 400 naming the field and the problem, when the role is written', { skip }, async () => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ creation_statements: ['{"db": "admin", "roles": [{"role": "read"'] }, 'creation_statements', /not valid JSON/],
    [{ creation_statements: ['{"db": "admin", "roles": []}'] }, 'creation_statements', /"roles" must name at least one role/],
    [{ creation_statements: ['{"db": "admin"}'] }, 'creation_statements', /"roles" is required/],
    [{ revocation_statements: ['{"db": "admin", "roles": ["read"]}'] }, 'revocation_statements', /unknown field "roles"/],
    [{ renew_statements: ['{"db": "admin"}'] }, 'renew_statements', /no in-database expiry/],
  ];
  for (const [fields, field, problem] of cases) {
    const r = await writeRole(`bad-${run}`, fields);
    assert.equal(r.status, 400, `${JSON.stringify(fields)}: ${r.text}`);
    const message = (r.body.errors ?? []).join(' ');
    assert.ok(message.includes(field), `${field} not named in: ${message}`);
    assert.match(message, problem);
  }
  assert.equal((await pb.api('GET', `database/roles/bad-${run}`)).status, 404);
});

test('rotate-root: the dedicated admin gets a new password only the broker knows, and creds keep working', { skip }, async () => {
  const adminName = `${PREFIX}admin`;
  const adminPassword = PASSWORD();
  await target.admin.db('admin').command({ createUser: adminName, pwd: adminPassword, roles: target.ferretdb ? [] : ['root'] });
  assertDone(target, await configure('rotating', { username: adminName, password: adminPassword }), 'config rotating');
  assert.equal((await writeRole('rotating-reader', { db_name: 'rotating', username_template: template('o') })).status, 204);
  const rotate = await pb.api('PUT', 'database/rotate-root/rotating');
  assert.equal(rotate.status, 204, rotate.text);
  assert.equal(await canLogin(target, adminName, adminPassword), false);
  const c = await creds('rotating-reader');
  assert.equal(await canLogin(target, c.username, c.password), true);
  assertDone(target, await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId }), 'revoke');
  assert.equal(await canLogin(target, c.username, c.password), false);
  assert.ok(!pb.broker.logs.includes(adminPassword));
});
