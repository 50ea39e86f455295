// Static roles against real servers: import rotation, stable reads between
// rotations, rotate-role for the "single" and "alternating" strategies,
// validation, schedules that survive a restart, a crash at each step of a
// rotation, and the database being down at rotation time.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Connection } from 'mysql2/promise';
import { eventually, initAndUnseal, startBroker, unseal, type ApiResponse, type BrokerProcess } from '../../support/broker.ts';
import { adminConnection, canLogin, createAdminUser, dropLeftovers, goDsn } from '../../support/mariadb.ts';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { TcpProxy } from '../../support/tcp-proxy.ts';
import { assertDone, canLogin as mongoCanLogin, dropUsersWithPrefix, mongoTarget, type MongoTarget } from '../../plugins/mongodb/helpers.ts';

const REQUIRE_ALL = process.env.DBROKER_TEST_REQUIRE_ALL === '1';
const tag = (): string => randomBytes(4).toString('hex');
// Per run: other checkouts or helpers may run this same file against the same servers at once.
const RUN = randomBytes(2).toString('hex');
const MY_PREFIX = `dbt_srs_${RUN}_`;

interface TestEngine {
  label: string;
  /** Connection name on the broker. */
  conn: string;
  /** Make database users (same grants) with `password`. */
  createUsers(names: string[], password: string): Promise<void>;
  canLogin(user: string, password: string): Promise<boolean>;
  userPrefix: string;
}

let pgServer: TestPostgres;
let mysqlRoot: Connection | undefined;
let mongo: MongoTarget | undefined;
const MONGO_PREFIX = `srm_${RUN}_`;
let broker: BrokerProcess;
let rootToken = '';
let keys: string[] = [];
const engines: TestEngine[] = [];

const api = (method: string, path: string, body?: unknown): Promise<ApiResponse> =>
  broker.api(method, path, { token: rootToken, ...(body !== undefined ? { body } : {}) });

async function pgCanLogin(user: string, password: string): Promise<boolean> {
  try {
    const client = await loginAs(pgServer, user, password);
    await client.end();
    return true;
  } catch {
    return false;
  }
}

async function configurePg(conn: string, port: number): Promise<void> {
  const r = await api('PUT', `database/config/${conn}`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@127.0.0.1:${port}/postgres`,
    username: pgServer.adminUser,
    password: pgServer.adminPassword,
    allowed_roles: '*',
  });
  assert.equal(r.status, 204, r.text);
}

const pgCreateUsers = async (names: string[], password: string): Promise<void> => {
  for (const n of names) await adminQuery(pgServer, `CREATE ROLE "${n}" WITH LOGIN PASSWORD '${password}'`);
};

async function creds(role: string): Promise<{ username: string; password: string; body: Record<string, unknown> }> {
  const r = await api('GET', `database/static-creds/${role}`);
  assert.equal(r.status, 200, r.text);
  return { username: r.body.data.username, password: r.body.data.password, body: r.body.data };
}

async function createRole(role: string, fields: Record<string, unknown>): Promise<void> {
  const r = await api('PUT', `database/static-roles/${role}`, fields);
  assert.equal(r.status, 204, r.text);
}

const newUser = (engine: TestEngine): string => `${engine.userPrefix}${tag()}`;
const initialPassword = (): string => `Aa1-${randomBytes(10).toString('hex')}`;

function logLines(): Array<Record<string, unknown>> {
  return broker.logs
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

before(async () => {
  pgServer = await startScramPostgres();
  broker = await startBroker();
  ({ rootToken, keys } = await initAndUnseal(broker));
  await configurePg('sr-pg', pgServer.port);
  engines.push({ label: 'postgres', conn: 'sr-pg', createUsers: pgCreateUsers, canLogin: pgCanLogin, userPrefix: 'sr_u_' });
  try {
    mysqlRoot = await adminConnection();
  } catch (err) {
    if (REQUIRE_ALL) throw err;
    console.warn(`MariaDB not reachable, its static role tests are left out: ${String(err)}`);
  }
  if (mysqlRoot) {
    const root = mysqlRoot;
    await dropLeftovers(root, MY_PREFIX);
    const admin = `${MY_PREFIX}admin`;
    const adminPassword = initialPassword();
    await createAdminUser(root, admin, adminPassword, ['%', 'localhost']);
    const r = await api('PUT', 'database/config/sr-my', { plugin_name: 'mysql-database-plugin', connection_url: goDsn(), username: admin, password: adminPassword, allowed_roles: '*' });
    assert.equal(r.status, 204, r.text);
    engines.push({
      label: 'mysql',
      conn: 'sr-my',
      async createUsers(names, password) {
        for (const n of names) {
          await root.query('CREATE USER ?@? IDENTIFIED BY ?', [n, '%', password]);
          await root.query('GRANT SELECT ON test.* TO ?@?', [n, '%']);
        }
      },
      canLogin,
      userPrefix: `${MY_PREFIX}u`,
    });
  }
  const target = await mongoTarget();
  if (typeof target === 'string') console.warn(`MongoDB left out of the static role tests: ${target}`);
  else {
    mongo = target;
    await dropUsersWithPrefix(target, MONGO_PREFIX, ['admin']);
    const r = await api('PUT', 'database/config/sr-mongo', {
      plugin_name: 'mongodb-database-plugin',
      connection_url: target.templateUrl,
      username: target.username,
      password: target.password,
      allowed_roles: '*',
    });
    assertDone(target, r, 'config sr-mongo');
    engines.push({
      label: 'mongodb',
      conn: 'sr-mongo',
      async createUsers(names, password) {
        // FerretDB 1.x has no roles (and no authorization).
        const roles = target.ferretdb ? [] : [{ role: 'read', db: 'admin' }];
        for (const n of names) await target.admin.db('admin').command({ createUser: n, pwd: password, roles });
      },
      canLogin: (user, password) => mongoCanLogin(target, user, password),
      userPrefix: `${MONGO_PREFIX}u`,
    });
  }
  if (REQUIRE_ALL) assert.deepEqual(engines.map((e) => e.label), ['postgres', 'mysql', 'mongodb']);
});

after(async () => {
  if (broker) {
    await broker.stop();
    broker.remove();
  }
  if (mysqlRoot) {
    await dropLeftovers(mysqlRoot, MY_PREFIX);
    await mysqlRoot.end();
  }
  if (mongo) {
    await dropUsersWithPrefix(mongo, MONGO_PREFIX, ['admin']);
    await mongo.admin.close();
  }
  await pgServer?.stop();
});

async function restart(env: Record<string, string> = {}): Promise<void> {
  await broker.stop();
  await broker.start(env);
  await unseal(broker, keys);
}

describe('single strategy', () => {
  test('every engine: import rotation, stable reads, rotate-role retires the old password', async () => {
    for (const engine of engines) {
      const user = newUser(engine);
      const initial = initialPassword();
      await engine.createUsers([user], initial);
      const role = `single-${engine.label}-${tag()}`;
      await createRole(role, { db_name: engine.conn, username: user, rotation_period: '1h' });
      assert.equal(await engine.canLogin(user, initial), false, `${engine.label}: rotated on create`);

      const a = await creds(role);
      const b = await creds(role);
      assert.equal(a.username, user);
      assert.deepEqual([b.username, b.password], [a.username, a.password], 'two reads between rotations agree');
      assert.ok(await engine.canLogin(a.username, a.password), `${engine.label}: static creds log in`);
      assert.equal(a.body.rotation_period, 3600);
      assert.ok(Number(a.body.ttl) > 3500 && Number(a.body.ttl) <= 3600, JSON.stringify(a.body));
      assert.ok(Date.parse(String(a.body.last_vault_rotation)) > Date.now() - 60_000);

      const rotated = await api('PUT', `database/rotate-role/${role}`);
      assert.equal(rotated.status, 204, rotated.text);
      const c = await creds(role);
      assert.equal(c.username, user);
      assert.notEqual(c.password, a.password);
      assert.equal(await engine.canLogin(user, a.password), false, `${engine.label}: the old password fails after rotate-role`);
      assert.ok(await engine.canLogin(user, c.password));

      const got = await api('GET', `database/static-roles/${role}`);
      assert.equal(got.status, 200, got.text);
      assert.equal(got.body.data.db_name, engine.conn);
      assert.equal(got.body.data.username, user);
      assert.equal(got.body.data.rotation_period, 3600);
      assert.equal(got.body.data.credential_type, 'password');
      assert.equal(got.body.data.rotation_strategy, 'single');
      assert.equal(got.body.data.skip_import_rotation, false);
      assert.equal(got.body.data.last_rotation_error, null);
      assert.ok(!got.text.includes(c.password), 'GET never shows the password');

      const list = await api('LIST', 'database/static-roles');
      assert.ok(list.body.data.keys.includes(role), list.text);

      assert.equal((await api('DELETE', `database/static-roles/${role}`)).status, 204);
      assert.equal((await api('GET', `database/static-roles/${role}`)).status, 404);
      assert.equal((await api('GET', `database/static-creds/${role}`)).status, 400);
      assert.ok(await engine.canLogin(user, c.password), 'deleting the role leaves the database user as it is');
      assert.ok(!broker.logs.includes(a.password) && !broker.logs.includes(c.password) && !broker.logs.includes(initial), 'no password in the logs');
    }
    for (const l of logLines().filter((l) => l.msg === 'static role password rotated')) {
      assert.ok(l.outcome === 'success' && typeof l.durationMs === 'number' && l.staticRole && l.connection, JSON.stringify(l));
    }
  });

  test('skip_import_rotation keeps the given password until the first rotation', async () => {
    const engine = engines[0]!;
    const user = newUser(engine);
    const initial = initialPassword();
    await engine.createUsers([user], initial);
    const role = `skip-${tag()}`;
    await createRole(role, { db_name: engine.conn, username: user, rotation_period: 3600, skip_import_rotation: true, password: initial });
    const a = await creds(role);
    assert.equal(a.password, initial);
    assert.equal(a.body.last_vault_rotation, null);
    assert.ok(await engine.canLogin(user, initial));

    const blind = `skip-blind-${tag()}`;
    const user2 = newUser(engine);
    await engine.createUsers([user2], initial);
    await createRole(blind, { db_name: engine.conn, username: user2, rotation_period: 3600, skip_import_rotation: true });
    const unknown = await api('GET', `database/static-creds/${blind}`);
    assert.equal(unknown.status, 400, unknown.text);
    assert.match(unknown.body.errors[0], /rotate-role/);
    assert.equal((await api('PUT', `database/rotate-role/${blind}`)).status, 204);
    const b = await creds(blind);
    assert.ok(await engine.canLogin(user2, b.password));
    assert.equal(await engine.canLogin(user2, initial), false);
  });
});

describe('alternating strategy', () => {
  test('every engine: creds read before a rotation keep working until the next one', async () => {
    for (const engine of engines) {
      const user = newUser(engine);
      await engine.createUsers([user, `${user}_b`], initialPassword());
      const role = `alt-${engine.label}-${tag()}`;
      await createRole(role, { db_name: engine.conn, username: user, rotation_period: '1h', rotation_strategy: 'alternating' });
      const c1 = await creds(role);
      assert.equal(c1.username, user, 'the first user is active after import');
      const again = await creds(role);
      assert.deepEqual([again.username, again.password], [c1.username, c1.password], 'two reads between rotations agree');
      assert.ok(await engine.canLogin(c1.username, c1.password));

      assert.equal((await api('PUT', `database/rotate-role/${role}`)).status, 204);
      const c2 = await creds(role);
      assert.equal(c2.username, `${user}_b`);
      assert.ok(await engine.canLogin(c2.username, c2.password), `${engine.label}: new creds log in`);
      assert.ok(await engine.canLogin(c1.username, c1.password), `${engine.label}: creds read before the rotation still work`);

      assert.equal((await api('PUT', `database/rotate-role/${role}`)).status, 204);
      const c3 = await creds(role);
      assert.equal(c3.username, user);
      assert.notEqual(c3.password, c1.password);
      assert.equal(await engine.canLogin(c1.username, c1.password), false, `${engine.label}: two rotations later the first creds fail`);
      assert.ok(await engine.canLogin(c2.username, c2.password), `${engine.label}: the previous creds still work`);
      assert.ok(await engine.canLogin(c3.username, c3.password));

      const got = await api('GET', `database/static-roles/${role}`);
      assert.equal(got.body.data.rotation_strategy, 'alternating');
      assert.equal(got.body.data.alternate_username, `${user}_b`);
      assert.equal(got.body.data.active_username, user);
    }
  });
});

describe('validation', () => {
  test('bad input is a 400 naming the field, and nothing is stored', async () => {
    const engine = engines[0]!;
    const user = newUser(engine);
    await engine.createUsers([user], initialPassword());
    const ok = { db_name: engine.conn, username: user, rotation_period: '1h' };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ username: user, rotation_period: '1h' }, /db_name/],
      [{ db_name: engine.conn, rotation_period: '1h' }, /username/],
      [{ db_name: 'nope', username: user, rotation_period: '1h' }, /db_name/],
      [{ db_name: engine.conn, username: user }, /rotation_period/],
      [{ ...ok, rotation_schedule: '0 * * * *' }, /rotation_schedule/],
      [{ ...ok, rotation_period: '2s' }, /rotation_period/],
      [{ db_name: engine.conn, username: user, rotation_schedule: 'every day' }, /rotation_schedule/],
      [{ ...ok, rotation_window: '2h' }, /rotation_window/],
      [{ ...ok, username: pgServer.adminUser }, /username/],
      [{ ...ok, rotation_statements: [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}`] }, /rotation_statements/],
      [{ ...ok, rotation_statements: [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`] }, /rotation_statements/],
      [{ ...ok, password: 'Aa1-something-long-enough' }, /password/],
      [{ ...ok, credential_type: 'rsa_private_key' }, /credential_type/],
      [{ ...ok, rotation_strategy: 'sometimes' }, /rotation_strategy/],
      [{ ...ok, alternate_username: 'other' }, /alternate_username/],
      [{ ...ok, rotation_strategy: 'alternating', alternate_username: user }, /alternate_username/],
      // An unknown field is ignored with a warning (Vault); a bad known one beside it is still refused.
      [{ ...ok, surprise: 1, rotation_period: 'often' }, /rotation_period/],
    ];
    for (const [body, field] of cases) {
      const name = `bad-${tag()}`;
      const r = await api('PUT', `database/static-roles/${name}`, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.text}`);
      assert.match(r.body.errors[0], field, JSON.stringify(body));
      assert.equal((await api('GET', `database/static-roles/${name}`)).status, 404);
    }
    const bad = await api('PUT', 'database/static-roles/bad$name', ok);
    assert.equal(bad.status, 400, bad.text);

    // A user another static role manages; changing the username of a role.
    const role = `owner-${tag()}`;
    await createRole(role, ok);
    const twice = await api('PUT', `database/static-roles/other-${tag()}`, ok);
    assert.equal(twice.status, 400, twice.text);
    assert.match(twice.body.errors[0], /already managed/);
    const rename = await api('PUT', `database/static-roles/${role}`, { username: `${user}x` });
    assert.equal(rename.status, 400, rename.text);
    assert.match(rename.body.errors[0], /username/);
    // An update without rotation fields keeps them.
    assert.equal((await api('PUT', `database/static-roles/${role}`, { rotation_statements: [] })).status, 204);
    assert.equal((await api('GET', `database/static-roles/${role}`)).body.data.rotation_period, 3600);

    assert.equal((await api('GET', 'database/static-creds/unknown-role')).status, 400);
    assert.equal((await api('PUT', 'database/rotate-role/unknown-role')).status, 400);
  });

  test('a user that does not exist: the import rotation fails and no role is left', async () => {
    for (const engine of engines) {
      const role = `ghost-${engine.label}-${tag()}`;
      const r = await api('PUT', `database/static-roles/${role}`, { db_name: engine.conn, username: newUser(engine), rotation_period: '1h' });
      assert.ok(r.status >= 400 && r.status !== 503, r.text);
      assert.equal((await api('GET', `database/static-roles/${role}`)).status, 404, `${engine.label}: no half-made role`);
    }
  });
});

describe('schedules, restarts and crashes', () => {
  test('a schedule rotates repeatedly and resumes after a restart', async () => {
    const engine = engines[0]!;
    const user = newUser(engine);
    await engine.createUsers([user], initialPassword());
    const role = `sched-${tag()}`;
    await createRole(role, { db_name: engine.conn, username: user, rotation_schedule: '*/3 * * * * *' });
    const lastRotation = async (): Promise<string> => String((await creds(role)).body.last_vault_rotation);
    const first = await lastRotation();
    await eventually(async () => (await lastRotation()) !== first, 20_000, 'a scheduled rotation');
    const got = await creds(role);
    assert.equal(got.body.rotation_schedule, '*/3 * * * * *');
    assert.ok(Number(got.body.ttl) <= 3, JSON.stringify(got.body));
    await restart();
    const afterRestart = await lastRotation();
    await eventually(async () => (await lastRotation()) !== afterRestart, 20_000, 'a scheduled rotation after the restart');
    const c = await creds(role);
    assert.ok(await engine.canLogin(c.username, c.password));
    assert.equal((await api('DELETE', `database/static-roles/${role}`)).status, 204);
  });

  for (const point of ['static.after_pending', 'static.after_db_change']) {
    test(`crash at ${point} during rotate-role and during import: the role works after restart`, async () => {
      const cases: Array<{ engine: TestEngine; role: string; user: string; old?: string }> = [];
      for (const engine of engines) {
        const user = newUser(engine);
        await engine.createUsers([user], initialPassword());
        const role = `crash-${engine.label}-${tag()}`;
        await createRole(role, { db_name: engine.conn, username: user, rotation_period: '1h' });
        cases.push({ engine, role, user, old: (await creds(role)).password });
      }
      // An import (create) interrupted after the database changed.
      const importing = { engine: engines[0]!, role: `crash-import-${tag()}`, user: newUser(engines[0]!) };
      await importing.engine.createUsers([importing.user], initialPassword());
      if (point === 'static.after_db_change') cases.push(importing);

      for (const c of cases) {
        await restart({ DBROKER_FAULTS: point });
        const request = c.old ? api('PUT', `database/rotate-role/${c.role}`) : api('PUT', `database/static-roles/${c.role}`, { db_name: c.engine.conn, username: c.user, rotation_period: '1h' });
        const outcome = await request.then((r) => `answered ${r.status} ${r.text}`, () => 'killed');
        assert.equal(outcome, 'killed', `${c.engine.label} ${c.role}: the fault point must be reached`);
        await broker.waitForExit();
        // Let this case's interrupted work finish with no fault armed (a read finishes it, under
        // the role's lock): otherwise the next armed restart resumes it at unseal and dies at the
        // same point before the next case's request gets there (a race that failed CI once).
        await restart();
        await creds(c.role);
      }
      await restart();
      for (const c of cases) {
        const now = await creds(c.role);
        assert.ok(await c.engine.canLogin(c.user, now.password), `${c.engine.label} ${c.role}: static creds work after the crash`);
        if (c.old) {
          assert.notEqual(now.password, c.old, 'the interrupted rotation was finished');
          assert.equal(await c.engine.canLogin(c.user, c.old), false);
        }
        assert.deepEqual(await creds(c.role).then((x) => x.password), now.password, 'stable afterwards');
      }
    });
  }

  test('database down at rotation time: retried and reported; creds work again when it is back', async () => {
    const proxy = new TcpProxy('127.0.0.1', pgServer.port);
    await proxy.up();
    try {
      await configurePg('sr-proxied', proxy.port);
      const engine = engines[0]!;
      const user = newUser(engine);
      await engine.createUsers([user], initialPassword());
      const role = `down-${tag()}`;
      await createRole(role, { db_name: 'sr-proxied', username: user, rotation_schedule: '*/3 * * * * *' });
      await proxy.down();
      await eventually(async () => (await api('GET', `database/static-roles/${role}`)).body.data.last_rotation_error !== null, 20_000, 'the failure reported');
      const failed = await api('GET', `database/static-roles/${role}`);
      assert.ok(Date.parse(failed.body.data.next_vault_rotation) > Date.now() - 1_000, failed.text);
      // While an unfinished rotation cannot be applied, no maybe-stale password is handed out.
      const during = await api('GET', `database/static-creds/${role}`);
      assert.equal(during.status, 502, during.text);
      await proxy.up();
      await eventually(async () => (await api('GET', `database/static-roles/${role}`)).body.data.last_rotation_error === null, 30_000, 'a successful retry');
      const c = await creds(role);
      assert.ok(await engine.canLogin(user, c.password));
      assert.equal((await api('DELETE', `database/static-roles/${role}`)).status, 204);
    } finally {
      await proxy.down();
    }
  });
});
