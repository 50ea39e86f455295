// The PostgreSQL engine against a real server with scram-sha-256 auth, so
// that passwords, VALID UNTIL and NOLOGIN are really enforced.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineConnectionError, EngineInputError, type Engine } from '../../../src/engine/engine.ts';
import postgresEngine from '../../../plugins/postgres/index.ts';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { LOGIN, brokerPassword, connectionFor, engineFor, inAnHour, sqlStateOf, tag } from './helpers.ts';

let server: TestPostgres;
let engine: Engine;
const run = tag();
const granted = `dbroker_granted_${run}`;
const secret = `dbroker_secret_${run}`;
let n = 0;
const nextUser = (): string => `v-test-${run}-${++n}`;

before(async () => {
  server = await startScramPostgres();
  engine = await engineFor(server);
  await adminQuery(server, `CREATE TABLE ${granted} (v int); INSERT INTO ${granted} VALUES (42); CREATE TABLE ${secret} (v int)`);
});

after(async () => {
  await engine?.close();
  await server?.stop(); // a private server in a temp dir: stopping it removes everything
});

test('creds log in with the right password; a wrong password is refused', async () => {
  const username = nextUser();
  const password = brokerPassword();
  await engine.newUser({ username, password, expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
  const client = await loginAs(server, username, password);
  assert.deepEqual((await client.query('SELECT current_user AS u')).rows, [{ u: username }]);
  await client.end();
  await assert.rejects(loginAs(server, username, `${password}x`), (err) => sqlStateOf(err) === '28P01');
  await engine.deleteUser({ username, statements: [] });
});

test('the user reads what it was granted, nothing else, and cannot create roles', async () => {
  const username = nextUser();
  const password = brokerPassword();
  await engine.newUser({
    username,
    password,
    expiration: inAnHour(),
    creationStatements: [...LOGIN, `GRANT SELECT ON ${granted} TO "{{name}}"`],
    rollbackStatements: [],
  });
  const client = await loginAs(server, username, password);
  try {
    assert.deepEqual((await client.query(`SELECT v FROM ${granted}`)).rows, [{ v: 42 }]);
    await assert.rejects(client.query(`SELECT v FROM ${secret}`), (err) => sqlStateOf(err) === '42501');
    await assert.rejects(client.query(`CREATE ROLE "x-${run}"`), (err) => sqlStateOf(err) === '42501');
  } finally {
    await client.end();
  }
  await engine.deleteUser({ username, statements: [] });
  assert.deepEqual(await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]), []);
});

test('VALID UNTIL is enforced, and updateUser moves it', async () => {
  const username = nextUser();
  const password = brokerPassword();
  await engine.newUser({
    username,
    password,
    expiration: new Date(Date.now() - 60_000),
    creationStatements: LOGIN,
    rollbackStatements: [],
  });
  await assert.rejects(loginAs(server, username, password), (err) => sqlStateOf(err) === '28P01');

  const later = new Date(Date.now() + 2 * 3600_000);
  later.setUTCMilliseconds(0);
  await engine.updateUser({ username, expiration: { value: later, statements: [] } });
  const [row] = await adminQuery<{ until: Date }>(server, 'SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [username]);
  assert.equal(row?.until.getTime(), later.getTime());
  const client = await loginAs(server, username, password);
  await client.end();

  // Custom renew statements get {{expiration}} too.
  const sooner = new Date(Date.now() - 1000);
  sooner.setUTCMilliseconds(0);
  await engine.updateUser({
    username,
    expiration: { value: sooner, statements: [`ALTER ROLE {{name}} VALID UNTIL {{expiration}}`] },
  });
  const [moved] = await adminQuery<{ until: Date }>(server, 'SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [username]);
  assert.equal(moved?.until.getTime(), sooner.getTime());
  await assert.rejects(loginAs(server, username, password), (err) => sqlStateOf(err) === '28P01');
  await engine.deleteUser({ username, statements: [] });
});

test('updateUser sets a new password (static role rotation)', async () => {
  const username = nextUser();
  const first = brokerPassword();
  const second = brokerPassword();
  await engine.newUser({ username, password: first, expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
  await engine.updateUser({ username, password: { value: second, statements: [] } });
  await assert.rejects(loginAs(server, username, first), (err) => sqlStateOf(err) === '28P01');
  (await loginAs(server, username, second)).end();
  await engine.deleteUser({ username, statements: [] });
});

test('deleteUser: login fails, role gone, an open session is terminated', async () => {
  const username = nextUser();
  const password = brokerPassword();
  await engine.newUser({ username, password, expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
  const open = await loginAs(server, username, password);
  assert.deepEqual((await open.query('SELECT 1 AS one')).rows, [{ one: 1 }]);

  await engine.deleteUser({ username, statements: [] });

  await assert.rejects(open.query('SELECT 1'));
  await open.end().catch(() => undefined);
  await assert.rejects(loginAs(server, username, password), (err) => sqlStateOf(err) === '28P01');
  assert.deepEqual(await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]), []);
  assert.deepEqual(await adminQuery(server, 'SELECT pid FROM pg_stat_activity WHERE usename = $1', [username]), []);
});

test('deleteUser of a user owning a table reassigns it to the admin (or revocation_owner)', async () => {
  const owner = `dbroker_owner_${run}`;
  await adminQuery(server, `CREATE ROLE ${owner} NOLOGIN`);
  const withOwner = await engineFor(server, { options: { revocation_owner: owner } });
  const creation = [...LOGIN, `GRANT CREATE ON SCHEMA public TO "{{name}}"`];
  try {
    for (const [eng, expected] of [
      [engine, server.adminUser],
      [withOwner, owner],
    ] as const) {
      const username = nextUser();
      const password = brokerPassword();
      const table = `owned_${run}_${n}`;
      await eng.newUser({ username, password, expiration: inAnHour(), creationStatements: creation, rollbackStatements: [] });
      const client = await loginAs(server, username, password);
      await client.query(`CREATE TABLE ${table} (v int); INSERT INTO ${table} VALUES (1)`);
      await client.end();

      await eng.deleteUser({ username, statements: [] });

      assert.deepEqual(await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]), []);
      const rows = await adminQuery<{ tableowner: string }>(server, 'SELECT tableowner FROM pg_tables WHERE tablename = $1', [table]);
      assert.deepEqual(rows, [{ tableowner: expected }]);
      assert.deepEqual(await adminQuery(server, `SELECT v FROM ${table}`), [{ v: 1 }]);
      await adminQuery(server, `DROP TABLE ${table}`);
    }
  } finally {
    await withOwner.close();
    await adminQuery(server, `DROP ROLE IF EXISTS ${owner}`);
  }
});

test('deleteUser is idempotent: twice, concurrently, and for a user never created', async () => {
  const username = nextUser();
  await engine.newUser({ username, password: brokerPassword(), expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
  await Promise.all([
    engine.deleteUser({ username, statements: [] }),
    engine.deleteUser({ username, statements: [] }),
  ]);
  await engine.deleteUser({ username, statements: [] });
  await engine.deleteUser({ username: `never-${run}`, statements: [] });
  await engine.deleteUser({ username: `never-${run}`, statements: [`DROP ROLE "{{name}}"`] });
  assert.deepEqual(await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]), []);
});

test('custom revocation statements still run after NOLOGIN and session termination', async () => {
  const username = nextUser();
  const password = brokerPassword();
  await engine.newUser({
    username,
    password,
    expiration: inAnHour(),
    creationStatements: [...LOGIN, `GRANT SELECT ON ${granted} TO "{{name}}"`],
    rollbackStatements: [],
  });
  const open = await loginAs(server, username, password);
  await engine.deleteUser({
    username,
    statements: [`REVOKE ALL ON ${granted} FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}"`],
  });
  await assert.rejects(open.query('SELECT 1'));
  await open.end().catch(() => undefined);
  assert.deepEqual(await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]), []);

  // Statements that keep the role (audit trail): it stays, but cannot log in.
  const kept = nextUser();
  await engine.newUser({ username: kept, password, expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
  await engine.deleteUser({ username: kept, statements: [`COMMENT ON ROLE "{{name}}" IS 'revoked'`] });
  const [row] = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [kept]);
  assert.equal(row?.rolcanlogin, false);
  await assert.rejects(loginAs(server, kept, password));
  await engine.deleteUser({ username: kept, statements: [] });
});

test('a failing creation leaves nothing behind and does not leak the password', async () => {
  const username = nextUser();
  const password = brokerPassword();
  const err = await engine
    .newUser({
      username,
      password,
      expiration: inAnHour(),
      creationStatements: [...LOGIN, `SELECT * FROM no_such_table_${run}`],
      rollbackStatements: [],
    })
    .then(() => null, (e: unknown) => e);
  assert.ok(err instanceof Error && !(err instanceof EngineInputError));
  assert.match(err.message, /no_such_table/);
  assert.ok(!err.message.includes(password));
  assert.deepEqual(await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]), []);

  // Custom rollback statements run.
  const marker = `rollback_marker_${run}`;
  await assert.rejects(
    engine.newUser({
      username,
      password,
      expiration: inAnHour(),
      creationStatements: [...LOGIN, 'SELECT 1/0'],
      rollbackStatements: [`CREATE TABLE ${marker} (note text)`],
    }),
  );
  assert.equal((await adminQuery(server, 'SELECT 1 FROM pg_tables WHERE tablename = $1', [marker])).length, 1);
  await adminQuery(server, `DROP TABLE ${marker}`);

  // A name that already exists: creation fails, and the existing role is not dropped.
  const existing = `dbroker_existing_${run}`;
  await adminQuery(server, `CREATE ROLE "${existing}"`);
  await assert.rejects(
    engine.newUser({ username: existing, password, expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] }),
    /already exists/,
  );
  assert.equal((await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [existing])).length, 1);
  await adminQuery(server, `DROP ROLE "${existing}"`);
});

test('bad statements and inputs are EngineInputError before anything runs', async () => {
  const base = { password: brokerPassword(), expiration: inAnHour(), rollbackStatements: [] };
  await assert.rejects(engine.newUser({ ...base, username: nextUser(), creationStatements: [] }), EngineInputError);
  await assert.rejects(
    engine.newUser({ ...base, username: nextUser(), creationStatements: [`CREATE ROLE "{{nme}}"`] }),
    (err) => err instanceof EngineInputError && /creation_statements.*\{\{nme\}\}/.test(err.message),
  );
  await assert.rejects(engine.newUser({ ...base, username: 'x'.repeat(64), creationStatements: LOGIN }), /63 bytes/);
  await assert.rejects(engine.newUser({ ...base, username: nextUser(), expiration: new Date(NaN), creationStatements: LOGIN }), EngineInputError);
  await assert.rejects(
    engine.deleteUser({ username: nextUser(), statements: [`ALTER ROLE "{{name}}" PASSWORD '{{password}}'`] }),
    (err) => err instanceof EngineInputError && /revocation_statements/.test(err.message),
  );
});

test('password_authentication=scram-sha-256 sends a verifier that the server accepts', async () => {
  const scramEngine = await engineFor(server, { options: { password_authentication: 'scram-sha-256' } });
  const username = nextUser();
  const password = brokerPassword();
  try {
    await scramEngine.newUser({ username, password, expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
    (await loginAs(server, username, password)).end();
    const [row] = await adminQuery<{ p: string }>(server, 'SELECT rolpassword AS p FROM pg_authid WHERE rolname = $1', [username]);
    assert.match(row?.p ?? '', /^SCRAM-SHA-256\$4096:/);
  } finally {
    await scramEngine.deleteUser({ username, statements: [] });
    await scramEngine.close();
  }
});

test('initialize with a wrong admin password: EngineConnectionError without the password', async () => {
  const wrong = `wrong-${run}-Secret-Value`;
  for (const connectionUrl of [
    `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    `postgres://${server.host}:${server.port}/postgres`,
  ]) {
    const eng = postgresEngine.create();
    const err = await eng
      .initialize(connectionFor(server, { connectionUrl, password: wrong }), { verify: true })
      .then(() => null, (e: unknown) => e);
    assert.ok(err instanceof EngineConnectionError, String(err));
    assert.match(err.message, /password authentication failed/);
    assert.ok(!err.message.includes(wrong) && !err.message.includes(encodeURIComponent(wrong)));
    await eng.close();
  }
  // Nothing listening: also a connection error.
  const eng = postgresEngine.create();
  await assert.rejects(
    eng.initialize(connectionFor(server, { connectionUrl: 'postgres://{{username}}:{{password}}@127.0.0.1:1/postgres' }), { verify: true }),
    EngineConnectionError,
  );
  // Without verify, initialize does not connect; the first operation reports it.
  await eng.initialize(connectionFor(server, { password: wrong }), { verify: false });
  await assert.rejects(eng.deleteUser({ username: nextUser(), statements: [] }), EngineConnectionError);
  await eng.close();
});

test('deleteUser and deleteUsers refuse the connection\'s own admin (EngineInputError); the admin can still log in', async () => {
  const admin = `dbroker_selfadm_${run}`;
  const password = brokerPassword();
  await adminQuery(server, `CREATE ROLE ${admin} WITH LOGIN CREATEROLE PASSWORD '${password}'`);
  const engine = postgresEngine.create();
  try {
    await engine.initialize(connectionFor(server, { username: admin, password, maxOpenConnections: 2 }), { verify: true });
    await assert.rejects(engine.deleteUser({ username: admin, statements: [] }), (err: unknown) => err instanceof EngineInputError && /admin user of this connection/.test(err.message));
    const [outcome] = await engine.deleteUsers!([{ username: admin, statements: [] }]);
    assert.ok(outcome instanceof EngineInputError, String(outcome));
    const [row] = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [admin]);
    assert.equal(row?.rolcanlogin, true, 'not made NOLOGIN');
    (await loginAs(server, admin, password)).end();
  } finally {
    await engine.close();
    await adminQuery(server, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [admin]);
    await adminQuery(server, `DROP ROLE IF EXISTS ${admin}`);
  }
});

test('root rotation on a dedicated admin role: the new password works, the old one not', async () => {
  const admin = `dbroker_admin_${run}`;
  const oldPassword = brokerPassword();
  await adminQuery(server, `CREATE ROLE ${admin} WITH LOGIN CREATEROLE PASSWORD '${oldPassword}'`);
  const config = connectionFor(server, { username: admin, password: oldPassword, maxOpenConnections: 1 });
  const first = postgresEngine.create();
  try {
    await first.initialize(config, { verify: true });
    const newPassword = brokerPassword();
    await first.updateUser({ username: admin, password: { value: newPassword, statements: [] } });

    const second = postgresEngine.create();
    await second.initialize({ ...config, password: newPassword }, { verify: true });
    const stale = postgresEngine.create();
    await assert.rejects(stale.initialize(config, { verify: true }), EngineConnectionError);
    await stale.close();

    // The old engine keeps working on fresh connections too: kill its session first.
    await adminQuery(server, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [admin]);
    await new Promise((r) => setTimeout(r, 200));
    const username = nextUser();
    await first.newUser({ username, password: brokerPassword(), expiration: inAnHour(), creationStatements: LOGIN, rollbackStatements: [] });
    await first.deleteUser({ username, statements: [] });

    // And again with the factory's documented default root rotation statements.
    const third = brokerPassword();
    await second.updateUser({ username: admin, password: { value: third, statements: postgresEngine.defaultRootRotationStatements } });
    (await loginAs(server, admin, third)).end();
    await second.close();
  } finally {
    await first.close();
    await adminQuery(server, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [admin]);
    await adminQuery(server, `DROP ROLE IF EXISTS ${admin}`);
  }
});
