// The PostgreSQL engine's batch methods (newUsers, deleteUsers) against a
// real server with scram-sha-256 auth: partial failure in a batch, existing
// names, owned objects, sessions that cannot be ended, and concurrent batches
// of group-role grants that run without the user-change lock.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { EngineConnectionError, EngineInputError, WriteAheadFailed, type Engine, type NewUserRequest } from '../../../src/engine/engine.ts';
import { needsUserChangeLock } from '../../../plugins/postgres/lock-scope.ts';
import { pipeline, USER_CHANGE_LOCK } from '../../../plugins/postgres/sql.ts';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import postgresEngine from '../../../plugins/postgres/index.ts';
import { LOGIN, brokerPassword, connectionFor, engineFor, inAnHour, tag } from './helpers.ts';

let server: TestPostgres;
let engine: Engine;
const run = tag();
const granted = `batch_granted_${run}`;
const group = `batch_group_${run}`;
let n = 0;
const nextUser = (): string => `v-batch-${run}-${++n}`;

before(async () => {
  server = await startScramPostgres();
  engine = await engineFor(server, { maxOpenConnections: 8 });
  await adminQuery(server, `CREATE TABLE ${granted} (v int); INSERT INTO ${granted} VALUES (42); CREATE ROLE ${group} NOLOGIN; GRANT SELECT ON ${granted} TO ${group}`);
});

after(async () => {
  await engine?.close();
  await server?.stop();
});

const exists = async (username: string): Promise<boolean> =>
  (await adminQuery(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username])).length === 1;

async function readsGranted(username: string, password: string): Promise<boolean> {
  const client = await loginAs(server, username, password);
  try {
    return (await client.query(`SELECT v FROM ${granted}`)).rows[0]?.v === 42;
  } finally {
    await client.end();
  }
}

function request(creationStatements: string[], rollbackStatements: string[] = []): NewUserRequest {
  return { username: nextUser(), password: brokerPassword(), expiration: inAnHour(), creationStatements, rollbackStatements };
}

const TABLE_GRANT = [...LOGIN, `GRANT SELECT ON ${granted} TO "{{name}}"`];
const GROUP_GRANT = [...LOGIN, `GRANT ${group} TO "{{name}}"`];

test('newUsers: a user whose grant fails does not exist; the others of the batch exist and log in', async () => {
  for (const good of [TABLE_GRANT, GROUP_GRANT]) {
    const requests = [request(good), request(good), request([...LOGIN, `GRANT SELECT ON no_such_table_${run} TO "{{name}}"`]), request(good), request(good)];
    const outcomes = await engine.newUsers!(requests);
    assert.equal(outcomes.length, 5);
    for (const i of [0, 1, 3, 4]) {
      assert.equal(outcomes[i], undefined, String(outcomes[i]));
      assert.equal(await readsGranted(requests[i]!.username, requests[i]!.password), true);
    }
    const bad = outcomes[2];
    assert.ok(bad instanceof Error && !(bad instanceof EngineInputError), String(bad));
    assert.match(bad.message, /no_such_table/);
    assert.ok(!bad.message.includes(requests[2]!.password), 'no password in the error');
    assert.equal(await exists(requests[2]!.username), false);
    const deleted = await engine.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })));
    assert.deepEqual(deleted, [{}, {}, {}, {}, {}]);
  }
});

test('newUsers: failures in both parts of several users (before and after the lock) fail only those users; 20 others are committed', async () => {
  // The first pass runs without savepoints; each failure there is found, and the rest run again in savepoints.
  const badRole = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' CONNECTION LIMIT -7`];
  const badGrant = [...LOGIN, `GRANT SELECT ON no_such_table_${run} TO "{{name}}"`];
  const requests = Array.from({ length: 24 }, (_, i) => request(i === 3 || i === 17 ? badRole : i === 9 || i === 22 ? badGrant : i % 2 ? GROUP_GRANT : TABLE_GRANT));
  const outcomes = await engine.newUsers!(requests);
  for (const [i, r] of requests.entries()) {
    if ([3, 17, 9, 22].includes(i)) {
      assert.ok(outcomes[i] instanceof Error, `user ${i}: ${String(outcomes[i])}`);
      assert.match(outcomes[i]!.message, i === 9 || i === 22 ? /no_such_table/ : /CONNECTION LIMIT|connection limit|-7/i);
      assert.ok(!outcomes[i]!.message.includes(r.password), 'no password in the error');
      assert.equal(await exists(r.username), false, `user ${i} left nothing`);
    } else {
      assert.equal(outcomes[i], undefined, `user ${i}: ${String(outcomes[i])}`);
      assert.equal(await readsGranted(r.username, r.password), true, `user ${i}`);
    }
  }
  assert.ok((await engine.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })))).every((o) => !(o instanceof Error)));
});

test('newUsers: a failing CREATE ROLE, a bad template and custom rollback statements fail only their own request', async () => {
  const marker = `batch_rollback_${run}`;
  const requests = [
    request(TABLE_GRANT),
    request([`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' CONNECTION LIMIT -5`]),
    request([`CREATE ROLE "{{nme}}"`]),
    request([...TABLE_GRANT, 'SELECT 1/0'], [`CREATE TABLE ${marker} (note text)`]),
    request(GROUP_GRANT),
  ];
  const outcomes = await engine.newUsers!(requests);
  assert.equal(outcomes[0], undefined);
  assert.equal(outcomes[4], undefined);
  assert.ok(outcomes[1] instanceof Error && /CONNECTION LIMIT|invalid/i.test(outcomes[1].message), String(outcomes[1]));
  assert.ok(outcomes[2] instanceof EngineInputError && /creation_statements.*\{\{nme\}\}/.test(outcomes[2].message), String(outcomes[2]));
  assert.ok(outcomes[3] instanceof Error && /division by zero/.test(outcomes[3].message), String(outcomes[3]));
  assert.equal((await adminQuery(server, 'SELECT 1 FROM pg_tables WHERE tablename = $1', [marker])).length, 1, 'its rollback statements ran');
  for (const i of [1, 2, 3]) assert.equal(await exists(requests[i]!.username), false);
  assert.equal(await readsGranted(requests[0]!.username, requests[0]!.password), true);
  assert.equal(await readsGranted(requests[4]!.username, requests[4]!.password), true);
  await adminQuery(server, `DROP TABLE ${marker}`);
  await engine.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })));
});

test('newUsers: a name that exists, or comes twice in the batch, is an EngineInputError for that request only', async () => {
  const existing = `batch_existing_${run}`;
  await adminQuery(server, `CREATE ROLE "${existing}"`);
  const first = request(TABLE_GRANT);
  const requests = [first, { ...request(TABLE_GRANT), username: existing }, request(TABLE_GRANT), { ...request(TABLE_GRANT), username: first.username }];
  const outcomes = await engine.newUsers!(requests);
  assert.equal(outcomes[0], undefined);
  assert.equal(outcomes[2], undefined);
  for (const i of [1, 3]) assert.ok(outcomes[i] instanceof EngineInputError && /already exists/.test(outcomes[i].message), String(outcomes[i]));
  assert.equal(await exists(existing), true, 'the existing role is not touched');
  assert.equal(await readsGranted(first.username, first.password), true, 'the first of the duplicates keeps its own password');
  await adminQuery(server, `DROP ROLE "${existing}"`);
  await engine.deleteUsers!([first, requests[2]!].map((r) => ({ username: r.username, statements: [] })));
});

test('newUsers with password_authentication=scram-sha-256: every user logs in', async () => {
  const scram = await engineFor(server, { options: { password_authentication: 'scram-sha-256' } });
  try {
    const requests = Array.from({ length: 6 }, () => request(GROUP_GRANT));
    assert.deepEqual(await scram.newUsers!(requests), requests.map(() => undefined));
    for (const r of requests) assert.equal(await readsGranted(r.username, r.password), true);
    const [row] = await adminQuery<{ p: string }>(server, 'SELECT rolpassword AS p FROM pg_authid WHERE rolname = $1', [requests[0]!.username]);
    assert.match(row?.p ?? '', /^SCRAM-SHA-256\$4096:/);
    await scram.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })));
  } finally {
    await scram.close();
  }
});

test('deleteUsers of 50 users, some owning tables, some with open sessions, some already gone: all gone', async () => {
  const creation = [...TABLE_GRANT, `GRANT CREATE ON SCHEMA public TO "{{name}}"`];
  const requests = Array.from({ length: 40 }, () => request(creation));
  assert.deepEqual(await engine.newUsers!(requests), requests.map(() => undefined));
  const tables: string[] = [];
  const sessions: pg.Client[] = [];
  for (const [i, r] of requests.entries()) {
    if (i % 5 !== 0 && i % 7 !== 0) continue;
    const client = await loginAs(server, r.username, r.password);
    if (i % 5 === 0) {
      const table = `batch_owned_${run}_${i}`;
      await client.query(`CREATE TABLE ${table} (v int); INSERT INTO ${table} VALUES (${i})`);
      tables.push(table);
    }
    if (i % 7 === 0) sessions.push(client);
    else await client.end();
  }
  const gone = Array.from({ length: 10 }, () => nextUser());
  const names = [...requests.map((r) => r.username), ...gone];
  names.sort(() => Math.random() - 0.5);

  const outcomes = await engine.deleteUsers!(names.map((username) => ({ username, statements: [] })));
  assert.deepEqual(outcomes, names.map(() => ({})));
  assert.deepEqual(await adminQuery(server, 'SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [names]), []);
  for (const table of tables) {
    assert.deepEqual(await adminQuery(server, 'SELECT tableowner FROM pg_tables WHERE tablename = $1', [table]), [{ tableowner: server.adminUser }]);
    await adminQuery(server, `DROP TABLE ${table}`);
  }
  for (const session of sessions) {
    await assert.rejects(session.query('SELECT 1'), 'the open session was ended');
    await session.end().catch(() => undefined);
  }
});

// Users without sessions are dropped without an ALTER ROLE … NOLOGIN first (it was most of a drain's
// catalog writes): one that logs in after the sessions were checked, before the DROP commits, must
// still lose that session. The batch is held at the user-change lock to log in right in that window.
test('deleteUsers: every user is NOLOGIN (committed) before the drop: a login while the batch waits for the lock is refused; the users are gone', async () => {
  const requests = Array.from({ length: 6 }, () => request(TABLE_GRANT));
  assert.deepEqual(await engine.newUsers!(requests), requests.map(() => undefined));
  const holder = new pg.Client({ connectionString: server.url });
  await holder.connect();
  try {
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [USER_CHANGE_LOCK]);
    const deleting = engine.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })));
    // The batch has made the users NOLOGIN and checked for sessions (there were none); it waits for the lock inside its transaction.
    for (let i = 0; ; i++) {
      const waiting = await adminQuery(server, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'");
      if (waiting.length > 0) break;
      assert.ok(i < 200, 'the batch never waited for the user-change lock');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    // Session 5 dropped users without NOLOGIN: this login then got in and was only ended by the check after the DROP,
    // which a CREATEROLE admin cannot do once the role is gone (a break-it trial found revocations reported done with it open).
    await assert.rejects(loginAs(server, requests[2]!.username, requests[2]!.password), /not permitted to log in/);
    await holder.query('SELECT pg_advisory_unlock($1::bigint)', [USER_CHANGE_LOCK]);
    assert.deepEqual(await deleting, requests.map(() => ({})));
    assert.deepEqual(await adminQuery(server, 'SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [requests.map((r) => r.username)]), []);
  } finally {
    await holder.end();
  }
});

test('deleteUsers: a user that cannot be dropped in the batch fails alone; the others are dropped', async () => {
  const db = `batch_other_db_${run}`;
  await adminQuery(server, `CREATE DATABASE ${db}`);
  const requests = Array.from({ length: 6 }, () => request(TABLE_GRANT));
  assert.deepEqual(await engine.newUsers!(requests), requests.map(() => undefined));
  const stuck = requests[3]!.username;
  // An object in another database: REASSIGN/DROP OWNED act on the admin's database only, so DROP ROLE refuses.
  const url = new URL(server.url);
  url.pathname = `/${db}`;
  const other = new pg.Client({ connectionString: url.toString() });
  await other.connect();
  try {
    await other.query(`CREATE TABLE kept (v int); ALTER TABLE kept OWNER TO "${stuck}"`);
    const outcomes = await engine.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })));
    for (const [i, r] of requests.entries()) {
      if (i === 3) {
        // The server's DETAIL says where to look: the object is in another database.
        assert.ok(outcomes[i] instanceof Error && /depend.*\(SQLSTATE 2BP01\)\. Detail: 1 object in database /.test(outcomes[i].message), String(outcomes[i]));
        assert.ok((outcomes[i] as Error).message.includes(db), String(outcomes[i]));
        const [row] = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [stuck]);
        assert.equal(row?.rolcanlogin, false, 'kept, NOLOGIN');
      } else {
        assert.deepEqual(outcomes[i], {});
        assert.equal(await exists(r.username), false);
      }
    }
    await other.query('DROP TABLE kept');
  } finally {
    await other.end();
  }
  assert.deepEqual(await engine.deleteUsers!([{ username: stuck, statements: [] }]), [{}]);
  assert.equal(await exists(stuck), false);
  await adminQuery(server, `DROP DATABASE ${db}`);
});

test('deleteUser (one user, the default revocation) of a user that cannot be dropped fails, kept NOLOGIN; dropped once it can be', async () => {
  const db = `batch_single_db_${run}`;
  await adminQuery(server, `CREATE DATABASE ${db}`);
  const [req] = [request(TABLE_GRANT)];
  assert.deepEqual(await engine.newUsers!([req!]), [undefined]);
  const url = new URL(server.url);
  url.pathname = `/${db}`;
  const other = new pg.Client({ connectionString: url.toString() });
  await other.connect();
  try {
    await other.query(`CREATE TABLE kept (v int); ALTER TABLE kept OWNER TO "${req!.username}"`);
    await assert.rejects(engine.deleteUser({ username: req!.username, statements: [] }), new RegExp(`depend.*Detail: 1 object in database ${db}`));
    const [row] = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [req!.username]);
    assert.equal(row?.rolcanlogin, false, 'kept, NOLOGIN');
    await other.query('DROP TABLE kept');
  } finally {
    await other.end();
  }
  await engine.deleteUser({ username: req!.username, statements: [] });
  assert.equal(await exists(req!.username), false);
  await adminQuery(server, `DROP DATABASE ${db}`);
});

test('deleteUsers with an admin that cannot end sessions: the user with a session fails (kept NOLOGIN), the rest are dropped', async () => {
  const admin = `batch_adm_${run}`;
  const password = brokerPassword();
  // NOINHERIT: the membership it takes gives it no privileges of the role, so pg_terminate_backend refuses.
  await adminQuery(server, `CREATE ROLE ${admin} LOGIN CREATEROLE NOINHERIT PASSWORD '${password}'`);
  const weak = await engineFor(server, { username: admin, password });
  const revocation = [`DROP ROLE IF EXISTS "{{name}}"`];
  try {
    const requests = Array.from({ length: 5 }, () => request(LOGIN));
    assert.deepEqual(await weak.newUsers!(requests), requests.map(() => undefined));
    const held = requests[2]!;
    const session = await loginAs(server, held.username, held.password);
    session.on('error', () => undefined);
    try {
      const outcomes = await weak.deleteUsers!(requests.map((r) => ({ username: r.username, statements: revocation })));
      for (const [i, r] of requests.entries()) {
        if (i === 2) continue;
        assert.deepEqual(outcomes[i], {});
        assert.equal(await exists(r.username), false);
      }
      assert.ok(outcomes[2] instanceof Error && /1 open session\(s\) of role ".*" could not be ended/.test(outcomes[2].message), String(outcomes[2]));
      const [row] = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [held.username]);
      assert.equal(row?.rolcanlogin, false, 'kept, NOLOGIN');
      await session.query('SELECT 1'); // really still open, as reported
    } finally {
      await session.end().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await weak.deleteUsers!([{ username: held.username, statements: revocation }]), [{}]);
    assert.equal(await exists(held.username), false);
  } finally {
    await weak.close();
    await adminQuery(server, `DROP ROLE IF EXISTS ${admin}`);
  }
});

test('deleteUsers with custom statements: each user in its own savepoint; statements that keep the role leave it NOLOGIN', async () => {
  const requests = Array.from({ length: 4 }, () => request(TABLE_GRANT));
  assert.deepEqual(await engine.newUsers!(requests), requests.map(() => undefined));
  const outcomes = await engine.deleteUsers!([
    { username: requests[0]!.username, statements: [`REVOKE ALL ON ${granted} FROM "{{name}}"; DROP ROLE "{{name}}"`] },
    { username: requests[1]!.username, statements: [`DROP ROLE "{{name}}"`] }, // still has a grant: refused
    { username: requests[2]!.username, statements: [`COMMENT ON ROLE "{{name}}" IS 'revoked'`] },
    { username: requests[3]!.username, statements: [] },
    { username: nextUser(), statements: [`ALTER ROLE "{{name}}" PASSWORD '{{password}}'`] },
  ]);
  assert.deepEqual(outcomes[0], {});
  // DETAIL names the privilege that holds it: "privileges for table …".
  assert.ok(outcomes[1] instanceof Error && /depend.*Detail: privileges for table /.test(outcomes[1].message), String(outcomes[1]));
  assert.deepEqual(outcomes[2], {});
  assert.deepEqual(outcomes[3], {});
  assert.ok(outcomes[4] instanceof EngineInputError && /revocation_statements/.test(outcomes[4].message), String(outcomes[4]));
  assert.equal(await exists(requests[0]!.username), false);
  assert.equal(await exists(requests[3]!.username), false);
  for (const i of [1, 2]) {
    const [row] = await adminQuery<{ rolcanlogin: boolean }>(server, 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [requests[i]!.username]);
    assert.equal(row?.rolcanlogin, false);
  }
  assert.deepEqual(await engine.deleteUsers!([1, 2].map((i) => ({ username: requests[i]!.username, statements: [] }))), [{}, {}]);
});

test('concurrent batches granting a group role run without the lock, with no "tuple concurrently updated" failure', async () => {
  assert.equal(GROUP_GRANT.some((s) => needsUserChangeLock(s.replace('{{name}}', 'x').replace('{{password}}', 'p').replace('{{expiration}}', 'infinity'))), false);
  const batches = Array.from({ length: 6 }, () => Array.from({ length: 16 }, () => request(GROUP_GRANT)));
  // Another session holds the user-change lock all along: the batches complete only if none waits for it.
  const holder = new pg.Client({ connectionString: server.url });
  await holder.connect();
  let outcomes: Array<Array<Error | undefined>>;
  try {
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [USER_CHANGE_LOCK]);
    outcomes = await Promise.all(batches.map((b) => engine.newUsers!(b)));
  } finally {
    await holder.end();
  }
  assert.deepEqual(outcomes, batches.map((b) => b.map(() => undefined)));
  const names = batches.flat().map((r) => r.username);
  const [row] = await adminQuery<{ n: number }>(
    server,
    'SELECT count(*)::int AS n FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = $1 AND u.rolname = ANY($2)',
    [group, names],
  );
  assert.equal(row?.n, names.length);
  // Dropping them, concurrently too (DROP ROLE with the default revocation takes the lock; custom DROP ROLE does not).
  const dropped = await Promise.all(
    batches.map((b, i) => engine.deleteUsers!(b.map((r) => ({ username: r.username, statements: i % 2 === 0 ? [] : [`DROP ROLE "{{name}}"`] })))),
  );
  assert.deepEqual(dropped, batches.map((b) => b.map(() => ({}))));
  assert.deepEqual(await adminQuery(server, 'SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [names]), []);
});

test('a batch that loses its connection: newUsers throws and commits nothing; deleteUsers revokes the rest one at a time', async () => {
  const kill = 'SELECT pg_terminate_backend(pg_backend_pid())';
  const requests = [request(TABLE_GRANT), request(GROUP_GRANT), request([...LOGIN, kill]), request(TABLE_GRANT)];
  await assert.rejects(engine.newUsers!(requests), EngineConnectionError);
  for (const r of requests) assert.equal(await exists(r.username), false, 'nothing of the batch is committed');

  const users = Array.from({ length: 4 }, () => request(TABLE_GRANT));
  assert.deepEqual(await engine.newUsers!(users), users.map(() => undefined), 'the engine goes on with a new connection');
  const outcomes = await engine.deleteUsers!([
    ...users.slice(0, 3).map((r) => ({ username: r.username, statements: [] })),
    { username: users[3]!.username, statements: [kill] },
  ]);
  assert.deepEqual(outcomes.slice(0, 3), [{}, {}, {}]);
  assert.ok(outcomes[3] instanceof EngineConnectionError, String(outcomes[3]));
  for (const r of users.slice(0, 3)) assert.equal(await exists(r.username), false);
  assert.deepEqual(await engine.deleteUsers!([{ username: users[3]!.username, statements: [] }]), [{}]);
});

test('a server that cannot be reached: newUsers throws EngineConnectionError, deleteUsers answers it for every user', async () => {
  const eng = postgresEngine.create();
  await eng.initialize(connectionFor(server, { connectionUrl: 'postgres://{{username}}:{{password}}@127.0.0.1:1/postgres' }), { verify: false });
  try {
    await assert.rejects(eng.newUsers!([request(LOGIN), request(LOGIN)]), EngineConnectionError);
    const outcomes = await eng.deleteUsers!([nextUser(), nextUser(), nextUser()].map((username) => ({ username, statements: [] })));
    for (const o of outcomes) assert.ok(o instanceof EngineConnectionError, String(o));
  } finally {
    await eng.close();
  }
});

test('deleteUsers with a CREATEROLE admin (not superuser): it takes the memberships it needs, ends sessions, drops every user', async () => {
  const admin = `batch_cr_${run}`;
  const password = brokerPassword();
  await adminQuery(server, `CREATE ROLE ${admin} LOGIN CREATEROLE PASSWORD '${password}'; GRANT SELECT ON ${granted} TO ${admin} WITH GRANT OPTION`);
  const createrole = await engineFor(server, { username: admin, password });
  try {
    const requests = Array.from({ length: 8 }, () => request(TABLE_GRANT));
    assert.deepEqual(await createrole.newUsers!(requests), requests.map(() => undefined));
    const session = await loginAs(server, requests[5]!.username, requests[5]!.password);
    session.on('error', () => undefined);
    const outcomes = await createrole.deleteUsers!(requests.map((r) => ({ username: r.username, statements: [] })));
    assert.deepEqual(outcomes, requests.map(() => ({})));
    assert.deepEqual(await adminQuery(server, 'SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [requests.map((r) => r.username)]), []);
    await assert.rejects(session.query('SELECT 1'), 'the open session was ended');
    await session.end().catch(() => undefined);
  } finally {
    await createrole.close();
    await adminQuery(server, `DROP OWNED BY ${admin}; DROP ROLE IF EXISTS ${admin}`);
  }
});

test('generated names (uniqueName) are not looked up first; a CREATE ROLE that finds its name taken is an input error and leaves the role alone', async () => {
  const theirs = `v-batch-${run}-theirs`;
  await adminQuery(server, `CREATE ROLE "${theirs}" NOLOGIN`);
  await adminQuery(server, `COMMENT ON ROLE "${theirs}" IS 'not the broker''s'`);
  const unique = (r: NewUserRequest): NewUserRequest => ({ ...r, uniqueName: true });
  await assert.rejects(engine.newUser(unique({ ...request(GROUP_GRANT), username: theirs })), (err: Error) => err instanceof EngineInputError && /already exists/.test(err.message));
  const batch = [unique(request(GROUP_GRANT)), unique({ ...request(GROUP_GRANT), username: theirs }), unique(request(TABLE_GRANT))];
  const outcomes = await engine.newUsers!(batch);
  assert.equal(outcomes[0], undefined, String(outcomes[0]));
  assert.ok(outcomes[1] instanceof EngineInputError && /already exists/.test(outcomes[1].message), String(outcomes[1]));
  assert.equal(outcomes[2], undefined, String(outcomes[2]));
  assert.equal(await readsGranted(batch[0]!.username, batch[0]!.password), true);
  assert.equal(await readsGranted(batch[2]!.username, batch[2]!.password), true);
  const kept = await adminQuery(server, `SELECT pg_catalog.shobj_description(oid, 'pg_authid') AS note FROM pg_catalog.pg_roles WHERE rolname = $1`, [theirs]);
  assert.deepEqual(kept, [{ note: "not the broker's" }], 'their role is untouched');
  assert.deepEqual(await engine.deleteUsers!([batch[0]!, batch[2]!].map((r) => ({ username: r.username, statements: [] }))), [{}, {}]);
  await adminQuery(server, `DROP ROLE "${theirs}"`);
});

/** A write-ahead record the test settles by hand (NewUserRequest.writeAhead). */
function heldWriteAhead(): { promise: Promise<void>; settle: () => void; fail: (err: Error) => void } {
  let settle!: () => void;
  let fail!: (err: Error) => void;
  const promise = new Promise<void>((ok, no) => {
    settle = ok;
    fail = no;
  });
  promise.catch(() => undefined);
  return { promise, settle, fail };
}

/** Whether `username` is committed, seen from another session. */
const committed = exists;

/** Resolves once `username`'s CREATE ROLE ran in an open transaction: the admin session waits on the new role's name. */
async function statementsRan(username: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const rows = await adminQuery(server, "SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_type = 'client backend'");
    if (rows.length > 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`no transaction open for ${username}`);
}

test('write-ahead: newUser runs the statements while the lease row is not yet durable and commits only once it is', async () => {
  const gate = heldWriteAhead();
  const req = { ...request(GROUP_GRANT), uniqueName: true, writeAhead: gate.promise };
  const creating = engine.newUser(req);
  await statementsRan(req.username);
  assert.equal(await committed(req.username), false, 'nothing is committed before the write-ahead record is durable');
  gate.settle();
  await creating;
  assert.equal(await readsGranted(req.username, req.password), true);
  await engine.deleteUser({ username: req.username, statements: [] });
});

test('write-ahead: a lease row that cannot be made durable rolls the creation back (newUser and newUsers); nothing exists', async () => {
  const gate = heldWriteAhead();
  const one = { ...request(GROUP_GRANT), uniqueName: true, writeAhead: gate.promise };
  const creating = engine.newUser(one);
  await statementsRan(one.username);
  gate.fail(new Error('fsync: EIO'));
  await assert.rejects(creating, (err: Error) => err instanceof WriteAheadFailed && /stored durably: fsync: EIO/.test(err.message));
  assert.equal(await committed(one.username), false);

  // A batch: one held row fails the whole transaction (the store is broken for every later write too).
  const held = heldWriteAhead();
  const batch = [request(GROUP_GRANT), request(TABLE_GRANT), request(GROUP_GRANT)].map((r, i) => ({ ...r, uniqueName: true, writeAhead: i === 1 ? held.promise : Promise.resolve() }));
  const batchRun = engine.newUsers!(batch);
  await statementsRan(batch[2]!.username);
  for (const r of batch) assert.equal(await committed(r.username), false, `${r.username} waits for the write-ahead records`);
  held.fail(new Error('fsync: EIO'));
  await assert.rejects(batchRun, (err: Error) => err instanceof WriteAheadFailed);
  for (const r of batch) assert.equal(await committed(r.username), false, `${r.username} was rolled back`);

  // The engine goes on: a batch whose rows are durable commits every user.
  const gates = [heldWriteAhead(), heldWriteAhead()];
  const next = [request(GROUP_GRANT), request(GROUP_GRANT)].map((r, i) => ({ ...r, uniqueName: true, writeAhead: gates[i]!.promise }));
  const nextRun = engine.newUsers!(next);
  gates[1]!.settle();
  await statementsRan(next[1]!.username);
  assert.equal(await committed(next[0]!.username), false, 'COMMIT waits for every row of the batch');
  gates[0]!.settle();
  assert.deepEqual(await nextRun, [undefined, undefined]);
  for (const r of next) assert.equal(await readsGranted(r.username, r.password), true);
  assert.deepEqual(await engine.deleteUsers!(next.map((r) => ({ username: r.username, statements: [] }))), [{}, {}]);
});

test('pipeline(): statements sent together report the first failure in order, with its owner; the rest of the transaction is aborted, not run', async () => {
  const client = new pg.Client({ connectionString: server.url, pipeline: true });
  await client.connect();
  try {
    const name = `v-batch-${run}-piped`;
    const failed = await pipeline(client as unknown as pg.PoolClient, [
      { text: 'BEGIN' },
      { text: `CREATE ROLE "${name}"`, owner: 'a' },
      { text: `GRANT SELECT ON dbroker_missing_${run} TO "${name}"`, owner: 'b' },
      { text: `CREATE ROLE "${name}-2"`, owner: 'c' },
    ]);
    assert.equal(failed?.at.owner, 'b');
    assert.match(String((failed?.err as Error).message), /does not exist/);
    await client.query('ROLLBACK');
    assert.equal(await exists(name), false);
    assert.equal(await exists(`${name}-2`), false);
    assert.equal(await pipeline(client as unknown as pg.PoolClient, [{ text: 'SELECT 1' }, { text: 'SELECT $1::int', values: [2] }]), undefined);
  } finally {
    await client.end();
  }
});

test('templates that end the transaction themselves are sent one at a time: nothing after a failed statement runs, not even past their COMMIT', async () => {
  // Sent together, the COMMIT would end the aborted transaction and the last CREATE ROLE would run on its own.
  const statements = [...LOGIN, 'SELECT 1/0', 'COMMIT', 'CREATE ROLE "{{name}}-extra"'];
  const one = request(statements);
  await assert.rejects(engine.newUser(one), /division by zero/);
  const batch = [request(GROUP_GRANT), request(statements)];
  const outcomes = await engine.newUsers!(batch);
  assert.match(String(outcomes[1]), /division by zero/);
  for (const r of [one, batch[1]!]) {
    assert.equal(await exists(r.username), false);
    assert.equal(await exists(`${r.username}-extra`), false, 'nothing after the failure ran');
  }
  assert.equal(outcomes[0], undefined, String(outcomes[0]));
  assert.equal(await readsGranted(batch[0]!.username, batch[0]!.password), true);
  await engine.deleteUsers!([{ username: batch[0]!.username, statements: [] }]);
});

test('no part of a password reaches an error through the server DETAIL: "Failing row contains (…)" cuts each value, which no scrub of the whole secret finds', async () => {
  const audit = `batch_audit_${run}`;
  // Five wide columns first, so the password would also straddle a cut at 400 characters.
  const wide = Array.from({ length: 5 }, (_, i) => `f${i} text DEFAULT '${'x'.repeat(70)}'`).join(', ');
  await adminQuery(server, `CREATE TABLE ${audit} (${wide}, secret text, who text NOT NULL, CHECK (length(secret) < 5))`);
  try {
    // 23502 (who is NULL), then 23514 (the CHECK): each failing row holds the password.
    for (const insert of [`INSERT INTO ${audit} (secret) VALUES ('{{password}}')`, `INSERT INTO ${audit} (secret, who) VALUES ('{{password}}', 'x')`]) {
      const req = request([...LOGIN, insert]);
      const single = await engine.newUser(req).then(() => undefined, (err: unknown) => err as Error);
      const [batched] = await engine.newUsers!([{ ...request([...LOGIN, insert]), password: req.password }]);
      for (const err of [single, batched]) {
        assert.ok(err instanceof Error, 'the insert fails');
        assert.match(err.message, /\(SQLSTATE 23(502|514)\)$/, 'no Detail after the SQLSTATE');
        for (let i = 0; i + 8 <= req.password.length; i++) assert.ok(!err.message.includes(req.password.slice(i, i + 8)), `a part of the password in: ${err.message}`);
      }
    }
  } finally {
    await adminQuery(server, `DROP TABLE ${audit}`);
  }
});
