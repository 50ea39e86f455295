// Root credential rotation against real servers: a manual rotation per
// engine, serialised concurrent rotations, a crash at every step of a
// rotation (zero lockouts), schedules (repeated, missed while stopped,
// database down), and the engine error mapping.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Connection } from 'mysql2/promise';
import { pino } from 'pino';
import type { Broker } from '../../../src/broker.ts';
import { Connections, mapEngineError, type ConnectionRecord } from '../../../src/database/connections.ts';
import type { Engine } from '../../../src/engine/engine.ts';
import { EngineRegistry } from '../../../src/engine/registry.ts';
import { errors, type BrokerError } from '../../../src/errors.ts';
import { Barrier } from '../../../src/seal/barrier.ts';
import { readSealedEntry, writeSealedEntry } from '../../../src/storage/sealed-entry.ts';
import { SqliteStorage } from '../../../src/storage/sqlite-storage.ts';
import { eventually, initAndUnseal, startBroker, unseal, type ApiResponse, type BrokerProcess } from '../../support/broker.ts';
import { adminConnection, canLogin, createAdminUser, dropLeftovers, goDsn } from '../../support/mariadb.ts';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { TcpProxy } from '../../support/tcp-proxy.ts';
import { assertDone, canLogin as mongoCanLogin, dropUsersWithPrefix, mongoTarget, PASSWORD, type MongoTarget } from '../../plugins/mongodb/helpers.ts';

const REQUIRE_ALL = process.env.DBROKER_TEST_REQUIRE_ALL === '1';
const tag = (): string => randomBytes(4).toString('hex');
// Per run: other checkouts or helpers may run this same file against the same servers at once.
const RUN = randomBytes(2).toString('hex');
const MY_PREFIX = `dbt_rrb_${RUN}_`;

/** One database engine as these tests drive it. */
interface TestEngine {
  label: string;
  /** A dedicated admin user (never the server's real root) with a known password. */
  newAdmin(): Promise<{ user: string; password: string }>;
  connection(admin: { user: string; password: string }): Record<string, unknown>;
  creationStatements: string[];
  canLogin(user: string, password: string): Promise<boolean>;
  /** Checks a connection write's answer (default: 204). */
  written?(res: { status: number; text: string; body?: unknown }): void;
}

let pgServer: TestPostgres;
let mysqlRoot: Connection | undefined;
let mongo: MongoTarget | undefined;
const MONGO_PREFIX = `rrm_${RUN}_`;
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

function pgEngine(server: TestPostgres, port = server.port): TestEngine {
  return {
    label: 'postgres',
    async newAdmin() {
      const user = `rr_admin_${tag()}`;
      const password = `Aa1-${randomBytes(12).toString('hex')}`;
      await adminQuery(server, `CREATE ROLE "${user}" WITH LOGIN SUPERUSER PASSWORD '${password}'`);
      return { user, password };
    },
    connection: (admin) => ({
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgres://{{username}}:{{password}}@127.0.0.1:${port}/postgres`,
      username: admin.user,
      password: admin.password,
      allowed_roles: '*',
      username_template: '{{ printf "rr_v_%s" (random 16) }}',
    }),
    creationStatements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
    canLogin: pgCanLogin,
  };
}

function mysqlEngine(root: Connection): TestEngine {
  return {
    label: 'mysql',
    async newAdmin() {
      const user = `${MY_PREFIX}a${tag()}`;
      const password = `Aa1-${randomBytes(12).toString('hex')}`;
      await createAdminUser(root, user, password, ['%', 'localhost']);
      return { user, password };
    },
    connection: (admin) => ({
      plugin_name: 'mysql-database-plugin',
      connection_url: goDsn(),
      username: admin.user,
      password: admin.password,
      allowed_roles: '*',
      username_template: `{{ printf "${MY_PREFIX}v%s" (random 12) }}`,
    }),
    creationStatements: [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`],
    canLogin,
  };
}

/** MongoDB (FerretDB locally): admins and users are made with createUser. */
function mongoEngine(target: MongoTarget): TestEngine {
  return {
    label: 'mongodb',
    async newAdmin() {
      const user = `${MONGO_PREFIX}admin_${tag()}`;
      const password = PASSWORD();
      // FerretDB 1.x has no roles (and no authorization); a real mongod needs root.
      const roles = target.ferretdb ? [] : ['root'];
      await target.admin.db('admin').command({ createUser: user, pwd: password, roles });
      return { user, password };
    },
    connection: (admin) => ({
      plugin_name: 'mongodb-database-plugin',
      connection_url: target.templateUrl,
      username: admin.user,
      password: admin.password,
      allowed_roles: '*',
      username_template: `{{ printf "${MONGO_PREFIX}v_%s" (random 16) }}`,
      ...(target.ferretdb ? { skip_unsupported_roles: true } : {}),
    }),
    creationStatements: ['{"db": "admin", "roles": [{"role": "read", "db": "admin"}]}'],
    canLogin: (user, password) => mongoCanLogin(target, user, password),
    written: (res) => assertDone(target, res, 'config'),
  };
}

/** A connection on its own new admin user, and a role on it. */
async function setup(engine: TestEngine, extra: Record<string, unknown> = {}): Promise<{ conn: string; role: string; admin: { user: string; password: string } }> {
  const admin = await engine.newAdmin();
  const conn = `rr-${engine.label}-${tag()}`;
  const w = await api('PUT', `database/config/${conn}`, { ...engine.connection(admin), ...extra });
  if (engine.written) engine.written(w);
  else assert.equal(w.status, 204, w.text);
  const role = `${conn}-role`;
  const r = await api('PUT', `database/roles/${role}`, { db_name: conn, creation_statements: engine.creationStatements, default_ttl: '10m' });
  assert.equal(r.status, 204, r.text);
  return { conn, role, admin };
}

/** The broker can still act on the database: issue creds and log in with them. */
async function assertIssues(engine: TestEngine, role: string): Promise<void> {
  const r = await api('GET', `database/creds/${role}`);
  assert.equal(r.status, 200, r.text);
  assert.ok(await engine.canLogin(r.body.data.username, r.body.data.password), `${engine.label}: issued creds must log in`);
}

async function config(conn: string): Promise<Record<string, unknown>> {
  const r = await api('GET', `database/config/${conn}`);
  assert.equal(r.status, 200, r.text);
  return r.body.data;
}

function logLines(from = 0): Array<Record<string, unknown>> {
  return broker.logs
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const rotationsOf = (conn: string, from = 0) => logLines(from).filter((l) => l.connection === conn && l.msg === 'root credential rotated');

before(async () => {
  pgServer = await startScramPostgres();
  engines.push(pgEngine(pgServer));
  try {
    mysqlRoot = await adminConnection();
    await dropLeftovers(mysqlRoot, MY_PREFIX);
    engines.push(mysqlEngine(mysqlRoot));
  } catch (err) {
    if (REQUIRE_ALL) throw err;
    console.warn(`MariaDB not reachable, its rotation tests are left out: ${String(err)}`);
  }
  const target = await mongoTarget();
  if (typeof target === 'string') console.warn(`MongoDB left out of the rotation tests: ${target}`);
  else {
    mongo = target;
    await dropUsersWithPrefix(mongo, MONGO_PREFIX, ['admin']);
    engines.push(mongoEngine(mongo));
  }
  broker = await startBroker();
  ({ rootToken, keys } = await initAndUnseal(broker));
});

after(async () => {
  if (broker) {
    await api('PUT', 'sys/leases/revoke-prefix/database/creds/').catch(() => undefined);
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

test('engine errors are recognised by name too (third-party engines carry their own classes)', () => {
  const foreign = (name: string, message: string): Error => Object.assign(new Error(message), { name });
  const conn = mapEngineError('c1', foreign('EngineConnectionError', 'login failed for s3cret-pass'), ['s3cret-pass']);
  assert.equal(conn.code, errors.ENGINE_CONNECTION.code);
  assert.equal(conn.statusCode, 502);
  assert.ok(!conn.message.includes('s3cret-pass'), conn.message);
  const input = mapEngineError('c1', foreign('EngineInputError', 'bad statement'), []);
  assert.equal(input.code, errors.ENGINE_INPUT.code);
  assert.equal(input.statusCode, 400);
  assert.equal(mapEngineError('c1', new Error('boom'), []).code, errors.ENGINE_FAILED.code);
});

test('Connections.run: a failed login settles an unsettled root credential and retries once', async () => {
  const engine = engines[0]!;
  const admin = await engine.newAdmin();
  const storage = new SqliteStorage(':memory:');
  // The broker parts Connections uses: real storage, barrier, engine registry and logger.
  const keys = Barrier.create();
  const parts = {
    storage,
    seal: { keys },
    engines: new EngineRegistry({}, process.cwd()),
    logger: pino({ level: 'silent' }),
    readEntry: (path: string) => readSealedEntry(storage, keys, path),
    writeEntry: (path: string, value: unknown) => writeSealedEntry(storage, keys, path, value),
  };
  const connections = new Connections(parts as unknown as Broker, 'database/');
  const rec: ConnectionRecord = {
    name: 'c1',
    pluginName: 'postgresql-database-plugin',
    connectionUrl: `postgres://{{username}}:{{password}}@127.0.0.1:${pgServer.port}/postgres`,
    username: admin.user,
    // As after a crash between the database change and the commit.
    password: 'Aa1-not-the-password-anymore',
    pendingPassword: admin.password,
    verifyConnection: true,
    allowedRoles: ['*'],
    rootRotationStatements: [],
    passwordPolicy: '',
    maxOpenConnections: 2,
    usernameTemplate: '',
    options: {},
  };
  const newUser = (username: string, password: string) => (e: Engine) =>
    e.newUser({ username, password, expiration: new Date(Date.now() + 60_000), creationStatements: engine.creationStatements, rollbackStatements: [] });
  try {
    await connections.write(rec);
    const user = `rr_run_${tag()}`;
    await connections.run('c1', [], newUser(user, 'Aa1-run-user-password-000'));
    assert.ok(await engine.canLogin(user, 'Aa1-run-user-password-000'));
    const settled = await connections.read('c1');
    assert.equal(settled?.password, admin.password);
    assert.equal(settled?.pendingPassword, undefined);

    // Neither password logs in: the call fails as a connection error and both stay stored.
    await connections.write({ ...settled!, password: 'Aa1-wrong-one-0000000', pendingPassword: 'Aa1-wrong-two-0000000' });
    await connections.drop('c1');
    await assert.rejects(connections.run('c1', [], newUser(`rr_run_${tag()}`, 'Aa1-run-user-password-001')), (err: BrokerError) => {
      assert.equal(err.code, errors.ENGINE_CONNECTION.code);
      assert.ok(!err.message.includes('Aa1-wrong'), err.message);
      return true;
    });
    assert.equal((await connections.read('c1'))?.pendingPassword, 'Aa1-wrong-two-0000000');
  } finally {
    await connections.close();
    await storage.close();
  }
});

test('rotation schedule fields are validated with the field named', async () => {
  const [engine] = engines;
  const admin = await engine!.newAdmin();
  const base = engine!.connection(admin);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ root_rotation_schedule: 'not a cron' }, 'root_rotation_schedule'],
    [{ root_rotation_period: '2s' }, 'root_rotation_period'],
    [{ root_rotation_period: 'soon' }, 'root_rotation_period'],
    [{ root_rotation_schedule: '*/5 * * * *', root_rotation_period: '1h' }, 'root_rotation_schedule'],
  ];
  for (const [fields, field] of cases) {
    const r = await api('PUT', `database/config/rr-bad-${tag()}`, { ...base, ...fields });
    assert.equal(r.status, 400, r.text);
    assert.match(r.body.errors[0], new RegExp(field));
  }
});

describe('manual rotate-root', () => {
  test('every engine: the old admin password stops working, the broker keeps issuing, GET shows no password', async () => {
    if (REQUIRE_ALL) assert.deepEqual(engines.map((e) => e.label), ['postgres', 'mysql', 'mongodb']);
    for (const engine of engines) {
      const { conn, role, admin } = await setup(engine);
      assert.ok(await engine.canLogin(admin.user, admin.password));
      const r = await api('PUT', `database/rotate-root/${conn}`);
      assert.equal(r.status, 204, r.text);
      assert.equal(await engine.canLogin(admin.user, admin.password), false, `${engine.label}: old admin password must fail`);
      await assertIssues(engine, role);
      const got = await api('GET', `database/config/${conn}`);
      assert.ok(!('password' in got.body.data) && !('password' in got.body.data.connection_details), got.text);
      assert.ok(!got.text.includes(admin.password));
      assert.ok(got.body.data.last_root_rotation, got.text);
      assert.equal(got.body.data.last_root_rotation_error, null);
      // A second rotation works from the broker-only password.
      assert.equal((await api('PUT', `database/rotate-root/${conn}`)).status, 204);
      await assertIssues(engine, role);
      const logged = rotationsOf(conn);
      assert.equal(logged.length, 2);
      for (const l of logged) assert.ok(l.outcome === 'success' && typeof l.durationMs === 'number' && l.trigger === 'manual', JSON.stringify(l));
    }
    assert.ok(!broker.logs.includes('Aa1-'), 'no admin password in the logs');
  });

  test('concurrent rotations of one connection are serialised and all succeed', async () => {
    for (const engine of engines) {
      const { conn, role } = await setup(engine);
      const results = await Promise.all([1, 2, 3, 4].map(() => api('PUT', `database/rotate-root/${conn}`)));
      assert.deepEqual(results.map((r) => r.status), [204, 204, 204, 204], results.map((r) => r.text).join());
      await Promise.all([1, 2, 3].map(() => assertIssues(engine, role)));
      assert.equal(rotationsOf(conn).length, 4);
    }
  });

  test('a failing rotation leaves the working credential and reports the error', async () => {
    const engine = engines[0]!;
    const { conn, role, admin } = await setup(engine, { root_rotation_statements: [`ALTER ROLE "{{username}}_missing" WITH PASSWORD '{{password}}'`] });
    const r = await api('PUT', `database/rotate-root/${conn}`);
    assert.ok(r.status >= 400 && r.status < 600 && r.status !== 503, r.text);
    assert.ok(await engine.canLogin(admin.user, admin.password), 'the old password still works: nothing changed');
    assert.match(String((await config(conn)).last_root_rotation_error), /missing/);
    await assertIssues(engine, role);
  });

  // Issue 8 item 10: 'adm'@'%' and 'adm'@'localhost' with different
  // passwords; rotate-root changes only the account the broker logs in as
  // ('%': TCP from 127.0.0.1 matches it here), never the local login.
  test("MySQL: rotate-root changes only the admin's logged-in account; the same name at another host keeps its password", async (t) => {
    if (!mysqlRoot) {
      t.skip('MariaDB not reachable');
      return;
    }
    const root = mysqlRoot;
    const user = `${MY_PREFIX}h${tag()}`;
    const remote = `Aa1-${randomBytes(12).toString('hex')}`;
    const local = `Aa1-${randomBytes(12).toString('hex')}`;
    await createAdminUser(root, user, remote, ['%']);
    await createAdminUser(root, user, local, ['localhost']);
    const hasPassword = async (host: string, password: string): Promise<boolean> => {
      const [rows] = await root.query('SELECT authentication_string = PASSWORD(?) AS ok FROM mysql.user WHERE User = ? AND Host = ?', [password, user, host]);
      return Number((rows as Array<{ ok: number }>)[0]?.ok) === 1;
    };
    const conn = `rr-hosts-${tag()}`;
    const w = await api('PUT', `database/config/${conn}`, {
      plugin_name: 'mysql-database-plugin',
      connection_url: goDsn(),
      username: user,
      password: remote,
      allowed_roles: '*',
      username_template: `{{ printf "${MY_PREFIX}v%s" (random 12) }}`,
    });
    assert.equal(w.status, 204, w.text);
    const r = await api('PUT', `database/rotate-root/${conn}`);
    assert.equal(r.status, 204, r.text);
    assert.equal(await hasPassword('%', remote), false, "the '%' account got a new password");
    assert.equal(await hasPassword('localhost', local), true, "the 'localhost' account keeps its own password");
    assert.equal(await canLogin(user, remote), false);
    const role = `${conn}-role`;
    const wr = await api('PUT', `database/roles/${role}`, { db_name: conn, creation_statements: [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`], default_ttl: '10m' });
    assert.equal(wr.status, 204, wr.text);
    await assertIssues(engines.find((e) => e.label === 'mysql')!, role);
  });

  test('unknown connection: 400', async () => {
    const r = await api('PUT', 'database/rotate-root/does-not-exist');
    assert.equal(r.status, 400, r.text);
  });
});

describe('crash at each step of a rotation, then restart and unseal', () => {
  for (const point of ['rotate.after_pending', 'rotate.after_db_change', 'rotate.before_commit']) {
    test(`${point}: the broker logs in and issues creds afterwards`, async () => {
      const cases = [];
      for (const engine of engines) cases.push({ engine, ...(await setup(engine)) });
      for (const c of cases) {
        await restart({ DBROKER_FAULTS: point });
        const killed = await api('PUT', `database/rotate-root/${c.conn}`).then(
          (r) => `answered ${r.status} ${r.text}`,
          () => 'killed',
        );
        assert.equal(killed, 'killed', `${c.engine.label}: the fault point must be reached`);
        await broker.waitForExit();
        // Settling runs at unseal in the background (and on a failed login): wait for it here, with no
        // fault armed. Otherwise the next case's armed process could settle this one and be killed
        // before its log line was written, leaving nothing to see later (a race that failed CI once).
        await restart();
        const settledLogs = () => logLines().filter((l) => l.connection === c.conn && l.msg === 'root credential settled');
        await eventually(async () => settledLogs().length > 0, 20_000, `${c.engine.label}: the interrupted rotation settled`);
        assert.deepEqual(settledLogs().map((l) => l.settledOn), [point === 'rotate.after_pending' ? 'current' : 'pending'], `${c.engine.label}: settled once`);
      }
      await restart();
      for (const c of cases) {
        await assertIssues(c.engine, c.role);
        // The database changed only once the pending password was stored.
        assert.equal(await c.engine.canLogin(c.admin.user, c.admin.password), point === 'rotate.after_pending', `${c.engine.label}: old password`);
        // And rotation carries on from whichever password was settled on.
        assert.equal((await api('PUT', `database/rotate-root/${c.conn}`)).status, 204);
        await assertIssues(c.engine, c.role);
      }
    });
  }
});

describe('scheduled rotation', () => {
  test('a schedule every 3 seconds rotates repeatedly; last and next rotation show in the config', async () => {
    const engine = engines[0]!;
    const { conn, role } = await setup(engine, { root_rotation_schedule: '*/3 * * * * *' });
    const first = await config(conn);
    assert.equal(first.root_rotation_schedule, '*/3 * * * * *');
    assert.ok(first.next_root_rotation, JSON.stringify(first));
    const seen = new Set<string>();
    await eventually(
      async () => {
        const c = await config(conn);
        if (typeof c.last_root_rotation === 'string') seen.add(c.last_root_rotation);
        return seen.size >= 2;
      },
      30_000,
      'two scheduled rotations',
    );
    await assertIssues(engine, role);
    for (const l of rotationsOf(conn)) assert.equal(l.trigger, 'scheduled');
    // Turning the schedule off stops it.
    const off = await api('PUT', `database/config/${conn}`, { plugin_name: 'postgresql-database-plugin', root_rotation_schedule: '' });
    assert.equal(off.status, 204, off.text);
    assert.equal((await config(conn)).next_root_rotation, null);
  });

  test('a rotation missed while the broker was stopped runs once when it starts', async () => {
    const engine = engines[0]!;
    const { conn, role } = await setup(engine);
    // Once a minute, a few seconds from now; the broker is stopped before that time.
    // On a very slow machine the stop can come too late: then try again.
    let due = 0;
    for (let attempt = 0; ; attempt++) {
      const second = new Date(Date.now() + 4_000).getUTCSeconds();
      const w = await api('PUT', `database/config/${conn}`, { plugin_name: 'postgresql-database-plugin', root_rotation_schedule: `${second} * * * * *` });
      assert.equal(w.status, 204, w.text);
      due = Date.parse(String((await config(conn)).next_root_rotation));
      await broker.stop();
      if (rotationsOf(conn).length === 0 && Date.now() < due) break;
      assert.ok(attempt < 2, 'could not stop the broker before the scheduled time');
      await broker.start();
      await unseal(broker, keys);
      await api('PUT', `database/config/${conn}`, { plugin_name: 'postgresql-database-plugin', root_rotation_schedule: '' });
    }
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now()) + 1_000));
    const from = broker.logs.length;
    await broker.start();
    await unseal(broker, keys);
    await eventually(async () => rotationsOf(conn, from).length >= 1, 20_000, 'the missed rotation');
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(rotationsOf(conn, from).length, 1, 'exactly one catch-up rotation');
    const after = await config(conn);
    assert.ok(Date.parse(String(after.next_root_rotation)) > Date.now(), 'next rotation is in the future again');
    await assertIssues(engine, role);
    const off = await api('PUT', `database/config/${conn}`, { plugin_name: 'postgresql-database-plugin', root_rotation_schedule: '' });
    assert.equal(off.status, 204, off.text);
  });

  test('database down at the scheduled time: retried with backoff, reported, no lockout', async () => {
    const proxy = new TcpProxy('127.0.0.1', pgServer.port);
    await proxy.up();
    try {
      const engine = pgEngine(pgServer, proxy.port);
      const { conn, role } = await setup(engine, { root_rotation_schedule: '*/3 * * * * *' });
      await eventually(async () => (await config(conn)).last_root_rotation !== null, 20_000, 'a first scheduled rotation');
      await proxy.down();
      await eventually(async () => (await config(conn)).last_root_rotation_error !== null, 20_000, 'the failure reported');
      const failed = await config(conn);
      assert.ok(Date.parse(String(failed.next_root_rotation)) > Date.now() - 1_000, 'a retry is scheduled');
      assert.ok(!JSON.stringify(failed).includes('Aa1-'));
      // The log line may reach the broker's stdout after the stored error is visible.
      await eventually(async () => logLines().some((l) => l.connection === conn && l.msg === 'root credential rotation failed'), 10_000, 'the failure logged');
      const downFailures = logLines().filter((l) => l.connection === conn && l.msg === 'root credential rotation failed');
      assert.ok(downFailures.length >= 1 && typeof downFailures[0]!.retryAt === 'string', JSON.stringify(downFailures));
      const backAt = Date.now();
      await proxy.up();
      await eventually(
        async () => {
          const c = await config(conn);
          return c.last_root_rotation_error === null && Date.parse(String(c.last_root_rotation)) >= backAt;
        },
        30_000,
        'a successful rotation once the database is back',
      );
      await assertIssues(engine, role);
      const off = await api('PUT', `database/config/${conn}`, { plugin_name: 'postgresql-database-plugin', root_rotation_schedule: '' });
      assert.equal(off.status, 204, off.text);
    } finally {
      await proxy.down();
    }
  });
});
