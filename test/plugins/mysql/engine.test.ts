import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import mysql, { mysqlLegacy } from '../../../plugins/mysql/index.ts';
import { EngineConnectionError, EngineInputError, type Engine } from '../../../src/engine/engine.ts';
import {
  adminConnection,
  canLogin,
  connectAs,
  createAdminUser,
  createLimitedAdmin,
  dropLeftovers,
  goDsn,
  mysqlConfig,
  sessionsOf,
  target,
  userHosts,
} from '../../support/mariadb.ts';

const P = 'dbt_en_';
const DB = target.database;
const PASSWORD = 'Aa1-engine-test-password-0001';
const CREATE = [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`, `GRANT SELECT ON ${DB}.${P}t1 TO '{{name}}'@'%'`];

let admin: Connection;
let engine: Engine;
const engines: Engine[] = [];

async function newEngine(config = mysqlConfig()): Promise<Engine> {
  const e = mysql.create();
  engines.push(e);
  await e.initialize(config, { verify: true });
  return e;
}

function create(e: Engine, username: string, password = PASSWORD, creationStatements = CREATE, rollbackStatements: string[] = []) {
  return e.newUser({ username, password, expiration: new Date(Date.now() + 3600_000), creationStatements, rollbackStatements });
}

before(async () => {
  admin = await adminConnection();
  await dropLeftovers(admin, P);
  await admin.query(`CREATE TABLE ${DB}.${P}t1 (id INT PRIMARY KEY)`);
  await admin.query(`CREATE TABLE ${DB}.${P}t2 (id INT PRIMARY KEY)`);
  await admin.query(`CREATE TABLE ${DB}.${P}renew (name VARCHAR(64), expiration DATETIME)`);
  await admin.query(`INSERT INTO ${DB}.${P}t1 VALUES (1), (2)`);
  engine = await newEngine();
});

after(async () => {
  for (const e of engines) await e.close();
  await dropLeftovers(admin, P);
  await admin.end();
});

test('factories expose the Vault plugin names and username limits', () => {
  assert.equal(mysql.type, 'mysql-database-plugin');
  assert.equal(mysql.maxUsernameLength, 32);
  assert.equal(mysqlLegacy.type, 'mysql-legacy-database-plugin');
  assert.equal(mysqlLegacy.maxUsernameLength, 16);
  assert.equal(mysql.create().type, 'mysql-database-plugin');
  assert.equal(mysqlLegacy.create().type, 'mysql-legacy-database-plugin');
  assert.deepEqual(mysql.defaultRootRotationStatements, ["ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'"]);
});

test('creds log in with their password only, with least privilege', async () => {
  const user = `${P}lp`;
  await create(engine, user);
  assert.equal(await canLogin(user, PASSWORD), true);
  assert.equal(await canLogin(user, 'Aa1-wrong-password-000000000'), false);
  assert.equal(await canLogin(user, ''), false);

  const conn = await connectAs(user, PASSWORD);
  try {
    const [rows] = await conn.query<RowDataPacket[]>(`SELECT id FROM ${DB}.${P}t1 ORDER BY id`);
    assert.deepEqual(rows.map((r) => r['id']), [1, 2]);
    await assert.rejects(conn.query(`SELECT id FROM ${DB}.${P}t2`), /denied/i);
    await assert.rejects(conn.query(`INSERT INTO ${DB}.${P}t1 VALUES (3)`), /denied/i);
    await assert.rejects(conn.query(`CREATE USER '${P}evil'@'%' IDENTIFIED BY 'x'`), /denied|privilege/i);
  } finally {
    await conn.end();
  }
  assert.deepEqual(await userHosts(admin, `${P}evil`), []);
  await engine.deleteUser({ username: user, statements: [] });
});

test('deleteUser locks out the user, kills its open session, and is idempotent', async () => {
  const user = `${P}del`;
  await create(engine, user);
  const open = await connectAs(user, PASSWORD);
  await open.query('SELECT 1');
  assert.equal((await sessionsOf(admin, user)).length, 1);

  await engine.deleteUser({ username: user, statements: [] });

  await assert.rejects(open.query('SELECT 1'));
  await open.end().catch(() => undefined);
  assert.equal(await canLogin(user, PASSWORD), false);
  assert.deepEqual(await userHosts(admin, user), []);
  assert.deepEqual(await sessionsOf(admin, user), []);

  await engine.deleteUser({ username: user, statements: [] });
  await engine.deleteUser({ username: `${P}never_created`, statements: [] });
});

test('deleteUser drops the user at every host it exists at, concurrently too', async () => {
  const user = `${P}hosts`;
  await create(engine, user, PASSWORD, [
    `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`,
    `CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'`,
  ]);
  assert.deepEqual(await userHosts(admin, user), ['%', 'localhost']);
  await Promise.all([1, 2, 3].map(() => engine.deleteUser({ username: user, statements: [] })));
  assert.deepEqual(await userHosts(admin, user), []);
});

test('deleteUser runs custom revocation statements after ending sessions', async () => {
  const user = `${P}custom`;
  await create(engine, user);
  const open = await connectAs(user, PASSWORD);
  await engine.deleteUser({ username: user, statements: [`DROP USER '{{name}}'@'%'`] });
  await assert.rejects(open.query('SELECT 1'));
  await open.end().catch(() => undefined);
  assert.deepEqual(await userHosts(admin, user), []);
});

test('a 32-character username works', async () => {
  const user = `${P}${'x'.repeat(32 - P.length)}`;
  assert.equal(user.length, 32);
  await create(engine, user);
  assert.equal(await canLogin(user, PASSWORD), true);
  await engine.deleteUser({ username: user, statements: [] });
  assert.equal(await canLogin(user, PASSWORD), false);
});

test('a failing creation rolls back and the error carries no password', async () => {
  const user = `${P}rb`;
  const secret = 'Aa1-rollback-secret-value-77';
  const err = await create(engine, user, secret, [
    `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`,
    `ALTER USER '{{name}}'@'%' IDENTIFIEDX BY '{{password}}'`,
  ]).then(
    () => assert.fail('newUser should fail'),
    (e: unknown) => e as Error,
  );
  assert.ok(!(err instanceof EngineInputError));
  assert.match(err.message, /creation statement 2 failed/);
  assert.ok(!err.message.includes(secret.slice(0, 8)), err.message);
  assert.deepEqual(await userHosts(admin, user), []);

  // Custom rollback statements run instead of the default drop.
  await assert.rejects(create(engine, user, secret, [CREATE[0]!, `GRANT SELECT ON ${DB}.${P}missing TO '{{name}}'@'%'`], [
    `DROP USER '{{name}}'@'%'`,
  ]));
  assert.deepEqual(await userHosts(admin, user), []);
});

// A new-user trial got "database connection failed" (a 502, and the lease
// held 120 s as if the database had not answered) for a GRANT the admin may
// not give: MySQL's 1044 means "access denied to a database" both at login
// and for a statement. Only a failure to get a session is a connection error.
test('a statement the admin may not run (1044, 1142) is that statement\'s error, not a connection failure; the user is rolled back', async () => {
  const restrictedAdmin = `${P}ltd`;
  const adminPassword = 'Aa1-limited-admin-password-01';
  await createLimitedAdmin(admin, restrictedAdmin, adminPassword, `${DB}.${P}t1`);
  const limited = await newEngine(mysqlConfig({ username: restrictedAdmin, password: adminPassword }));
  const cases = [
    { user: `${P}nodb`, grant: `GRANT INSERT ON ${DB}.* TO '{{name}}'@'%'`, errno: /Access denied for user '[^']+'@'%' to database '[^']+'/ },
    { user: `${P}notbl`, grant: `GRANT INSERT ON ${DB}.${P}t2 TO '{{name}}'@'%'`, errno: /command denied to user/ },
  ];
  for (const c of cases) {
    const err = await create(limited, c.user, PASSWORD, [CREATE[0]!, c.grant]).then(
      () => assert.fail('newUser should fail'),
      (e: unknown) => e as Error,
    );
    assert.ok(!(err instanceof EngineConnectionError), `${c.user}: not a connection failure: ${err.name}: ${err.message}`);
    assert.ok(!(err instanceof EngineInputError), `${c.user}: the statements are valid`);
    assert.match(err.message, /creation statement 2 failed/);
    assert.match(err.message, c.errno);
    assert.ok(!err.message.includes(PASSWORD) && !err.message.includes(adminPassword), err.message);
    assert.deepEqual(await userHosts(admin, c.user), [], `${c.user} rolled back`);
  }
  // The same 1044 at login (a default database the admin may not use) stays a connection error.
  await admin.query(`CREATE DATABASE IF NOT EXISTS ${P}closed`);
  const noDb = mysql.create();
  engines.push(noDb);
  const loginErr = await noDb.initialize(mysqlConfig({ username: restrictedAdmin, password: adminPassword, connectionUrl: `mysql://{{username}}:{{password}}@${target.host}:${target.port}/${P}closed` }), { verify: true }).then(
    () => assert.fail('initialize should fail'),
    (e: unknown) => e as Error,
  );
  assert.ok(loginErr instanceof EngineConnectionError, String(loginErr));
  assert.match(loginErr.message, new RegExp(`Access denied .* to database '${P}closed'`));
  await noDb.initialize(mysqlConfig({ username: restrictedAdmin, password: adminPassword, connectionUrl: `mysql://{{username}}:{{password}}@${target.host}:${target.port}/${P}closed` }), { verify: false });
  await assert.rejects(create(noDb, `${P}never`), EngineConnectionError, 'no session: a connection error for any operation');
  await admin.query('DROP USER IF EXISTS ?@?', [restrictedAdmin, '%']);
  await admin.query(`DROP DATABASE IF EXISTS ${P}closed`);
});

test('a syntax error in a statement that holds the password: the text near it is not shown, the line number is', async () => {
  const secret = 'Aa1-syntax-secret-value-0099';
  const err = await create(engine, `${P}syn`, secret, [`CREAT USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`]).then(
    () => assert.fail('newUser should fail'),
    (e: unknown) => e as Error,
  );
  assert.ok(!(err instanceof EngineConnectionError));
  assert.match(err.message, /near \[the statement text is not shown: it holds a secret\] at line 1/);
  assert.ok(!err.message.includes(secret.slice(0, 8)), err.message);
});

test('a failed creation never drops an account that existed before', async () => {
  const user = `${P}pre`;
  const theirs = 'Aa1-pre-existing-password-01';
  await admin.query(`CREATE USER ?@'%' IDENTIFIED BY ?`, [user, theirs]);
  // A taken name is refused as input (so the broker keeps no lease that would drop it later).
  await assert.rejects(create(engine, user, PASSWORD, [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`]), (err: Error) => err instanceof EngineInputError && /already exists/.test(err.message));
  assert.deepEqual(await userHosts(admin, user), ['%']);
  assert.equal(await canLogin(user, theirs), true);
  // Even when the creation would only add another host.
  await assert.rejects(create(engine, user, PASSWORD, [`CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'`]), EngineInputError);
  assert.deepEqual(await userHosts(admin, user), ['%']);
  await engine.deleteUser({ username: user, statements: [] });

  // A host made by a creation that fails half-way is dropped again.
  const fresh = `${P}half`;
  await assert.rejects(create(engine, fresh, PASSWORD, [
    `CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'`,
    `GRANT SELECT ON ${DB}.${P}missing TO '{{name}}'@'localhost'`,
  ]));
  assert.deepEqual(await userHosts(admin, fresh), []);
});

test('names are matched exactly: trailing spaces and empty names touch nobody', async () => {
  const user = `${P}exact`;
  await create(engine, user);
  const open = await connectAs(user, PASSWORD);
  await engine.deleteUser({ username: `${user} `, statements: [] });
  await open.query('SELECT 1');
  assert.deepEqual(await userHosts(admin, user), ['%']);
  await assert.rejects(engine.deleteUser({ username: '', statements: [] }), EngineInputError);
  await open.end();
  await engine.deleteUser({ username: user, statements: [] });
});

test('bad statements are input errors and run nothing', async () => {
  await assert.rejects(create(engine, `${P}bad`, PASSWORD, []), EngineInputError);
  await assert.rejects(create(engine, `${P}bad`, PASSWORD, [`CREATE USER '{{nope}}'@'%'`]), /\{\{nope\}\}/);
  await assert.rejects(create(engine, `${P}bad`, PASSWORD, [CREATE[0]!, `GRANT SELECT ON x.y TO '{{name}}`]), EngineInputError);
  assert.deepEqual(await userHosts(admin, `${P}bad`), []);
  await assert.rejects(engine.deleteUser({ username: `${P}bad`, statements: ['DROP USER {{password}}'] }), EngineInputError);
});

// Issue 8 item 10 (neighbour): a static role's default password change sets
// one account, '%' as in Vault; the same name at another host is another
// account and keeps its password.
test("updateUser changes the '%' account only (never the name's other hosts) and runs renew statements", async () => {
  const user = `${P}upd`;
  await create(engine, user, PASSWORD, [
    `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`,
    `CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'`,
  ]);
  const withPassword = async (password: string): Promise<Array<[unknown, number]>> => {
    const [rows] = await admin.query<RowDataPacket[]>(
      'SELECT Host AS host, authentication_string = PASSWORD(?) AS ok FROM mysql.user WHERE User = ? ORDER BY Host',
      [password, user],
    );
    return rows.map((r) => [r['host'], Number(r['ok'])]);
  };
  const next = 'Aa1-updated-password-0000002';
  await engine.updateUser({ username: user, password: { value: next, statements: [] } });
  assert.deepEqual(await withPassword(next), [['%', 1], ['localhost', 0]]);
  assert.deepEqual(await withPassword(PASSWORD), [['%', 0], ['localhost', 1]]);
  // TCP logins from 127.0.0.1 match the '%' account here (skip_name_resolve).
  assert.equal(await canLogin(user, next), true);
  assert.equal(await canLogin(user, PASSWORD), false);

  // Custom rotation statements (one template, two statements).
  const third = 'Aa1-updated-password-0000003';
  await engine.updateUser({
    username: user,
    password: {
      value: third,
      statements: [`ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; ALTER USER '{{name}}'@'localhost' IDENTIFIED BY {{password}}`],
    },
  });
  assert.equal(await canLogin(user, third), true);

  // Expiration: nothing to do without statements; renew statements get {{expiration}}.
  const when = new Date('2031-02-03T04:05:06Z');
  await engine.updateUser({ username: user, expiration: { value: when, statements: [] } });
  await engine.updateUser({
    username: user,
    expiration: { value: when, statements: [`INSERT INTO ${DB}.${P}renew VALUES ('{{name}}', '{{expiration}}')`] },
  });
  const [renew] = await admin.query<RowDataPacket[]>(
    `SELECT name, DATE_FORMAT(expiration, '%Y-%m-%d %H:%i:%s') AS e FROM ${DB}.${P}renew`,
  );
  assert.deepEqual(renew.map((r) => [r['name'], r['e']]), [[user, '2031-02-03 04:05:06']]);

  await assert.rejects(
    engine.updateUser({ username: `${P}ghost`, password: { value: next, statements: [] } }),
    /does not exist/,
  );
  await engine.deleteUser({ username: user, statements: [] });
});

test("updateUser of a name with no '%' account: its only account, or a clear refusal when there are several", async () => {
  const one = `${P}onehost`;
  await create(engine, one, PASSWORD, [`CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'`]);
  const next = 'Aa1-updated-password-0000004';
  await engine.updateUser({ username: one, password: { value: next, statements: [] } });
  const [rows] = await admin.query<RowDataPacket[]>('SELECT authentication_string = PASSWORD(?) AS ok FROM mysql.user WHERE User = ?', [next, one]);
  assert.deepEqual(rows.map((r) => Number(r['ok'])), [1]);
  await engine.deleteUser({ username: one, statements: [] });

  const two = `${P}twohosts`;
  await create(engine, two, PASSWORD, [
    `CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'`,
    `CREATE USER '{{name}}'@'10.0.0.%' IDENTIFIED BY '{{password}}'`,
  ]);
  await assert.rejects(
    engine.updateUser({ username: two, password: { value: next, statements: [] } }),
    (e: Error) => e instanceof EngineInputError && /several hosts \(10\.0\.0\.%, localhost\)/.test(e.message) && /rotation_statements/.test(e.message),
  );
  const [after] = await admin.query<RowDataPacket[]>('SELECT SUM(authentication_string = PASSWORD(?)) AS n FROM mysql.user WHERE User = ?', [PASSWORD, two]);
  assert.equal(Number(after[0]!['n']), 2, 'neither account was changed');
  await engine.deleteUser({ username: two, statements: [] });
  assert.deepEqual(await userHosts(admin, two), []);
});

test('initialize: Go DSN works; bad password and unreachable server are connection errors without secrets', async () => {
  const viaDsn = await newEngine(mysqlConfig({ connectionUrl: goDsn() }));
  await create(viaDsn, `${P}dsn`);
  assert.equal(await canLogin(`${P}dsn`, PASSWORD), true);
  await viaDsn.deleteUser({ username: `${P}dsn`, statements: [] });

  const badAdmin = `${P}badadm`;
  const realPassword = 'Aa1-real-admin-password-0004';
  await createAdminUser(admin, badAdmin, realPassword);
  const wrong = 'Aa1-wrong-admin-password-0005';
  const e = mysql.create();
  const err = await e.initialize(mysqlConfig({ username: badAdmin, password: wrong }), { verify: true }).then(
    () => assert.fail('initialize should fail'),
    (x: unknown) => x as Error,
  );
  assert.ok(err instanceof EngineConnectionError, String(err));
  assert.ok(!err.message.includes(wrong) && !err.message.includes(realPassword), err.message);
  assert.match(err.message, /denied/i);

  // Without verify, initialize succeeds and the first operation reports the connection error.
  await e.initialize(mysqlConfig({ username: badAdmin, password: wrong }), { verify: false });
  await assert.rejects(e.deleteUser({ username: `${P}x`, statements: [] }), EngineConnectionError);
  await e.close();
  await e.close();

  const down = mysql.create();
  await assert.rejects(
    down.initialize(mysqlConfig({ connectionUrl: 'mysql://{{username}}:{{password}}@127.0.0.1:1/test', password: wrong }), { verify: true }),
    (x: unknown) => x instanceof EngineConnectionError && !x.message.includes(wrong),
  );
});

test('the pool is bounded and survives its connections being killed', async () => {
  const poolAdmin = `${P}pooladm`;
  const pw = 'Aa1-pool-admin-password-0006';
  await createAdminUser(admin, poolAdmin, pw);
  const e = await newEngine(mysqlConfig({ username: poolAdmin, password: pw, maxOpenConnections: 2 }));

  const names = Array.from({ length: 8 }, (_, i) => `${P}pool${i}`);
  await Promise.all(names.map((n) => create(e, n)));
  assert.ok((await sessionsOf(admin, poolAdmin)).length <= 2);

  // Kill the engine's idle pooled connections behind its back.
  for (const id of await sessionsOf(admin, poolAdmin)) await admin.query(`KILL CONNECTION ${id}`);
  await new Promise((r) => setTimeout(r, 200));

  await Promise.all(names.map((n) => e.deleteUser({ username: n, statements: [] })));
  for (const n of names) assert.deepEqual(await userHosts(admin, n), []);
  assert.ok((await sessionsOf(admin, poolAdmin)).length <= 2);
});
