// Issue 8 item 11: a revocation never claims sessions ended that it could not
// end. Real broker, real servers, admins made in the test with less than
// superuser power:
//   - PostgreSQL (scram): a CREATEROLE admin without superuser or
//     pg_signal_backend ends the sessions anyway (it takes membership of the
//     role, which pg_terminate_backend accepts); a NOINHERIT one cannot, is
//     warned at config write, and its revocation fails (lease kept, error on
//     the lease, user NOLOGIN) until the session ends.
//   - MariaDB: an admin without CONNECTION ADMIN is warned and its revocation
//     fails while a session is open (account locked); one without PROCESS
//     cannot even see sessions: the user is dropped and the answer says so.
//   - MongoDB: FerretDB has no killAllSessionsByPattern (and enforces no
//     privileges, so the "unauthorized" case needs a real mongod); its
//     warnings are asserted in test/plugins/mongodb/broker.test.ts.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'mysql2/promise';
import type pg from 'pg';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { createRole, issueCreds, startPgBroker, tag, templatedUrl, type PgBroker } from '../../support/pg-broker.ts';
import { adminConnection, canLogin, connectAs, createLimitedAdmin, dropLeftovers, goDsn, target as mysqlTarget, userHosts } from '../../support/mariadb.ts';

const run = tag();
const userPrefix = `rs${run}`;
const granted = `rs_granted_${run}`;
const MY_PREFIX = `dbt_rs${run}_`;
let server: TestPostgres;
let pb: PgBroker;
let mysqlRoot: Connection;

// Open at all, whatever it may still read (the issue: it kept reading after a "clean" revoke).
const alive = (client: pg.Client): Promise<boolean> => client.query('SELECT 1').then(() => true, () => false);

async function pgRole(username: string): Promise<{ canLogin: boolean } | undefined> {
  const rows = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [username]);
  return rows[0] ? { canLogin: rows[0].rolcanlogin } : undefined;
}

async function pgLogin(username: string, password: string): Promise<boolean> {
  try {
    const c = await loginAs(server, username, password);
    await c.end();
    return true;
  } catch {
    return false;
  }
}

async function writePgConnection(name: string, admin: string, password: string) {
  return pb.api('PUT', `database/config/${name}`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: admin,
    password,
    allowed_roles: '*',
  });
}

before(async () => {
  [server, pb, mysqlRoot] = await Promise.all([startScramPostgres(), startPgBroker(), adminConnection()]);
  await adminQuery(server, `CREATE TABLE ${granted} (v int); INSERT INTO ${granted} VALUES (42)`);
  await dropLeftovers(mysqlRoot, MY_PREFIX);
  await mysqlRoot.query(`CREATE TABLE ${mysqlRoot.escapeId(mysqlTarget.database)}.${mysqlRoot.escapeId(`${MY_PREFIX}granted`)} (v INT)`);
});

after(async () => {
  await pb?.api('PUT', 'sys/leases/revoke-force/database/creds/').catch(() => undefined);
  await pb?.close();
  await server?.stop();
  if (mysqlRoot) {
    await dropLeftovers(mysqlRoot, MY_PREFIX);
    await mysqlRoot.end();
  }
});

test('PostgreSQL: a CREATEROLE admin without superuser or pg_signal_backend ends the open session of a revoked user', async () => {
  const admin = `adm_cr_${run}`;
  const password = `A-${run}-createrole-admin`;
  await adminQuery(server, `CREATE ROLE ${admin} LOGIN CREATEROLE PASSWORD '${password}'; GRANT SELECT ON ${granted} TO ${admin} WITH GRANT OPTION`);
  const conf = await writePgConnection('pg-cr', admin, password);
  assert.equal(conf.status, 204, `no warning: it can end sessions through membership of the role: ${conf.text}`);
  await createRole(pb, 'pg-cr', {
    db_name: 'pg-cr',
    creation_statements: [`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON ${granted} TO "{{name}}"`],
    username_template: `{{ printf "${userPrefix}cr%s" (random 12) }}`,
  });
  const c = await issueCreds(pb, 'pg-cr');
  const session = await loginAs(server, c.username, c.password);
  session.on('error', () => undefined);
  try {
    assert.equal(await alive(session), true);
    const revoke = await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId });
    assert.equal(revoke.status, 204, revoke.text);
    assert.equal(await alive(session), false, 'the open session was ended');
    assert.equal(await pgRole(c.username), undefined, 'the role is dropped');
  } finally {
    await session.end().catch(() => undefined);
  }
});

test('PostgreSQL: an admin that cannot end sessions is warned at config write; the revocation fails, visibly, until the session ends', async () => {
  const admin = `adm_ni_${run}`;
  const password = `A-${run}-noinherit-admin`;
  // NOINHERIT: a membership it takes gives it no privileges of the role, so pg_terminate_backend refuses.
  await adminQuery(server, `CREATE ROLE ${admin} LOGIN CREATEROLE NOINHERIT PASSWORD '${password}'; GRANT SELECT ON ${granted} TO ${admin} WITH GRANT OPTION`);
  const conf = await writePgConnection('pg-ni', admin, password);
  assert.equal(conf.status, 200, conf.text);
  assert.equal(conf.body.warnings.length, 1, conf.text);
  assert.match(conf.body.warnings[0], new RegExp(`cannot end the open sessions of revoked users.*ALTER ROLE "${admin}" INHERIT; GRANT pg_signal_backend TO "${admin}"`));
  assert.equal((await pb.api('GET', 'database/config/pg-ni')).status, 200, 'the connection is written');

  await createRole(pb, 'pg-ni', {
    db_name: 'pg-ni',
    creation_statements: [`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON ${granted} TO "{{name}}"`],
    // REASSIGN OWNED (the default) needs the role's privileges too; these need only CREATEROLE and the grant it made.
    revocation_statements: [`REVOKE ALL ON ${granted} FROM "{{name}}"; DROP ROLE "{{name}}"`],
    username_template: `{{ printf "${userPrefix}ni%s" (random 12) }}`,
  });
  const c = await issueCreds(pb, 'pg-ni');
  const session = await loginAs(server, c.username, c.password);
  session.on('error', () => undefined);
  try {
    const revoke = await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId });
    assert.equal(revoke.status, 500, revoke.text);
    assert.match(revoke.body.errors[0], /revocation failed and will be retried: .*1 open session\(s\) of role ".*" could not be ended/);
    assert.match(revoke.body.errors[0], new RegExp(`GRANT pg_signal_backend TO "${admin}"`));

    const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: c.leaseId });
    assert.equal(lookup.status, 200, 'the lease is kept');
    assert.equal(lookup.body.data.revocation_attempts, 1);
    assert.match(lookup.body.data.last_revocation_error, /could not be ended/);
    assert.ok(pb.broker.logs.includes('lease revocation failed; will retry'), 'logged');

    assert.deepEqual(await pgRole(c.username), { canLogin: false }, 'the role is kept, NOLOGIN');
    assert.equal(await pgLogin(c.username, c.password), false, 'no new session');
    assert.equal(await alive(session), true, 'the session is really still open (and the lease says so)');
  } finally {
    await session.end().catch(() => undefined);
  }
  // Once the session is gone the revocation completes.
  const again = await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId });
  assert.equal(again.status, 204, again.text);
  assert.equal(await pgRole(c.username), undefined);
  assert.equal((await pb.api('PUT', 'sys/leases/lookup', { lease_id: c.leaseId })).status, 400);
});

/** A MariaDB admin able to make and drop users granted one table, with some of PROCESS / CONNECTION ADMIN. */
async function mysqlAdmin(name: string, extra: string[]): Promise<{ user: string; password: string }> {
  const user = `${MY_PREFIX}${name}`;
  const password = `Aa1-${run}-${name}`;
  const db = mysqlRoot.escapeId(mysqlTarget.database);
  await createLimitedAdmin(mysqlRoot, user, password, `${db}.${mysqlRoot.escapeId(`${MY_PREFIX}granted`)}`, extra);
  return { user, password };
}

async function mysqlSetup(conn: string, admin: { user: string; password: string }) {
  const conf = await pb.api('PUT', `database/config/${conn}`, {
    plugin_name: 'mysql-database-plugin',
    connection_url: goDsn(),
    username: admin.user,
    password: admin.password,
    allowed_roles: '*',
  });
  const table = `${mysqlRoot.escapeId(mysqlTarget.database)}.${mysqlRoot.escapeId(`${MY_PREFIX}granted`)}`;
  await createRole(pb, conn, {
    db_name: conn,
    creation_statements: [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON ${table} TO '{{name}}'@'%'`],
    username_template: `{{ printf "${MY_PREFIX}%s" (random 8) }}`,
  });
  return conf;
}

test('MariaDB: without CONNECTION ADMIN the config write warns; a revocation with a session open fails (account locked) until it ends', async () => {
  const admin = await mysqlAdmin('nokill', ['PROCESS']);
  const conf = await mysqlSetup('my-nokill', admin);
  assert.equal(conf.status, 200, conf.text);
  assert.equal(conf.body.warnings.length, 1, conf.text);
  assert.match(conf.body.warnings[0], new RegExp(`lacks CONNECTION ADMIN .*GRANT CONNECTION ADMIN ON \\*\\.\\* TO '${admin.user}'@'%'`));

  const c = await issueCreds(pb, 'my-nokill');
  const session = await connectAs(c.username, c.password, null);
  try {
    const revoke = await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId });
    assert.equal(revoke.status, 500, revoke.text);
    assert.match(revoke.body.errors[0], /1 open session\(s\) of ".*" could not be ended .*GRANT CONNECTION ADMIN ON \*\.\* TO/);
    const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: c.leaseId });
    assert.equal(lookup.status, 200, 'the lease is kept');
    assert.match(lookup.body.data.last_revocation_error, /could not be ended/);
    assert.deepEqual(await userHosts(mysqlRoot, c.username), ['%'], 'the account is kept');
    assert.equal(await canLogin(c.username, c.password), false, 'locked: no new session');
    await session.query('SELECT 1'); // really still open, as reported
  } finally {
    await session.end().catch(() => undefined);
  }
  await new Promise((r) => setTimeout(r, 200));
  const again = await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId });
  assert.equal(again.status, 204, again.text);
  assert.deepEqual(await userHosts(mysqlRoot, c.username), []);
});

test('MariaDB: without PROCESS the admin cannot see sessions: warned at config write, and each revocation says it could not check', async () => {
  const admin = await mysqlAdmin('blind', []);
  const conf = await mysqlSetup('my-blind', admin);
  assert.equal(conf.status, 200, conf.text);
  const warnings = conf.body.warnings as string[];
  assert.equal(warnings.length, 2, conf.text);
  assert.ok(warnings.some((w) => new RegExp(`lacks PROCESS.*GRANT PROCESS ON \\*\\.\\* TO '${admin.user}'@'%'`).test(w)), conf.text);
  assert.ok(warnings.some((w) => /lacks CONNECTION ADMIN/.test(w)), conf.text);

  const c = await issueCreds(pb, 'my-blind');
  const session = await connectAs(c.username, c.password, null);
  try {
    const revoke = await pb.api('PUT', 'sys/leases/revoke', { lease_id: c.leaseId });
    assert.equal(revoke.status, 200, `not a clean 204: ${revoke.text}`);
    assert.match(revoke.body.warnings[0], new RegExp(`could not check for open sessions of "${c.username}": .*lacks PROCESS`));
    assert.deepEqual(await userHosts(mysqlRoot, c.username), [], 'the user is dropped');
    assert.ok(pb.broker.logs.includes('lease revoked with warnings'), 'logged');
  } finally {
    await session.end().catch(() => undefined);
  }
});
