// Issue 11: the MySQL/MariaDB engine's batch forms, newUsers and deleteUsers,
// against the real server: one bad user of a batch fails alone, the others
// are made (or dropped) and their outcomes say so, in order. And through the
// broker's DDL batcher, its drops give way to creations (dropsNearCreates).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'mysql2/promise';
import mysql from '../../../plugins/mysql/index.ts';
import { mapEngineError } from '../../../src/database/connections.ts';
import { DdlBatcher, unwrap } from '../../../src/database/ddl-batcher.ts';
import { EngineInputError, type DeleteUserResult, type Engine, type NewUserRequest } from '../../../src/engine/engine.ts';
import { adminConnection, canLogin, connectAs, createLimitedAdmin, dropLeftovers, mysqlConfig, sessionsOf, target, userHosts } from '../../support/mariadb.ts';

const P = 'dbt_eb_';
const DB = target.database;
const PASSWORD = 'Aa1-batch-test-password-0001';
const TABLE = `${DB}.${P}t1`;
const CREATE = [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`, `GRANT SELECT ON ${TABLE} TO '{{name}}'@'%'`];

let admin: Connection;
let engine: Engine;
const engines: Engine[] = [];

async function newEngine(config = mysqlConfig()): Promise<Engine> {
  const e = mysql.create();
  engines.push(e);
  await e.initialize(config, { verify: true });
  return e;
}

function request(username: string, creationStatements = CREATE, password = PASSWORD): NewUserRequest {
  return { username, password, expiration: new Date(Date.now() + 3600_000), creationStatements, rollbackStatements: [] };
}

function isResult(outcome: DeleteUserResult | Error | undefined): boolean {
  return outcome !== undefined && !(outcome instanceof Error);
}

before(async () => {
  admin = await adminConnection();
  await dropLeftovers(admin, P);
  await admin.query(`CREATE TABLE ${TABLE} (id INT PRIMARY KEY)`);
  await admin.query(`INSERT INTO ${TABLE} VALUES (1)`);
  engine = await newEngine();
});

after(async () => {
  for (const e of engines) await e.close();
  await admin.query(`DROP ROLE IF EXISTS ${P}role`).catch(() => undefined);
  await dropLeftovers(admin, P);
  await admin.end();
});

test('newUsers: a user whose GRANT fails is rolled back alone; the others exist and log in', async () => {
  const names = [0, 1, 2, 3, 4].map((i) => `${P}mid${i}`);
  const secret = 'Aa1-bad-user-secret-password-9';
  const requests = names.map((n) => request(n));
  requests[2] = request(names[2]!, [CREATE[0]!, `GRANT SELECT ON ${DB}.${P}missing TO '{{name}}'@'%'`], secret);
  const outcomes = await engine.newUsers!(requests);

  assert.equal(outcomes.length, 5);
  for (const i of [0, 1, 3, 4]) {
    assert.equal(outcomes[i], undefined, `user ${i}: ${outcomes[i]?.message}`);
    assert.deepEqual(await userHosts(admin, names[i]!), ['%']);
    const conn = await connectAs(names[i]!, PASSWORD);
    await conn.query(`SELECT id FROM ${TABLE}`);
    await conn.end();
  }
  const bad = outcomes[2];
  assert.ok(bad instanceof Error && !(bad instanceof EngineInputError), String(bad));
  assert.match(bad.message, /creation statement 2 failed/);
  assert.ok(!bad.message.includes(secret.slice(0, 10)), bad.message);
  assert.deepEqual(await userHosts(admin, names[2]!), [], 'the half-made user was dropped');
  assert.equal(await canLogin(names[2]!, secret), false);

  const deleted = await engine.deleteUsers!(names.map((username) => ({ username, statements: [] })));
  assert.ok(deleted.every(isResult), String(deleted));
  for (const n of names) assert.deepEqual(await userHosts(admin, n), []);
});

test('newUsers: a taken name, a name twice and bad statements are input errors of those requests only', async () => {
  const taken = `${P}taken`;
  const theirs = 'Aa1-pre-existing-password-01';
  await admin.query(`CREATE USER ?@'localhost' IDENTIFIED BY ?`, [taken, theirs]);
  const fine = [`${P}in0`, `${P}in1`, `${P}in2`];
  const outcomes = await engine.newUsers!([
    request(fine[0]!),
    request(taken),
    request(fine[1]!),
    request(fine[1]!),
    request(`${P}badtpl`, [`CREATE USER '{{nope}}'@'%'`]),
    request(fine[2]!),
  ]);
  assert.deepEqual(outcomes.map((o) => (o === undefined ? 'ok' : o instanceof EngineInputError ? 'input' : 'error')), ['ok', 'input', 'ok', 'input', 'input', 'ok']);
  assert.match(outcomes[1]!.message, /already exists/);
  assert.match(outcomes[3]!.message, /twice/);
  assert.match(outcomes[4]!.message, /\{\{nope\}\}/);
  assert.deepEqual(await userHosts(admin, taken), ['localhost'], 'the existing account is untouched');
  assert.deepEqual(await userHosts(admin, `${P}badtpl`), []);
  for (const n of fine) assert.equal(await canLogin(n, PASSWORD), true, n);

  const deleted = await engine.deleteUsers!(fine.map((username) => ({ username, statements: [] })));
  assert.ok(deleted.every(isResult));
});

test('deleteUsers of 50 users, some already gone, one with an open session, one with custom statements: all gone', async () => {
  const names = Array.from({ length: 50 }, (_, i) => `${P}d${String(i).padStart(2, '0')}`);
  const made = names.filter((_, i) => i % 7 !== 3); // the others never existed
  assert.ok((await engine.newUsers!(made.map((n) => request(n)))).every((o) => o === undefined));
  // Another host for one of them.
  await admin.query(`CREATE USER ?@'localhost' IDENTIFIED BY ?`, [names[0], PASSWORD]);
  const session = await connectAs(names[1]!, PASSWORD);
  await session.query('SELECT 1');
  assert.equal((await sessionsOf(admin, names[1]!)).length, 1);

  const outcomes = await engine.deleteUsers!(
    names.map((username, i) => ({ username, statements: i === 2 ? [`DROP USER '{{name}}'@'%'`] : [] })),
  );
  assert.equal(outcomes.length, 50);
  outcomes.forEach((o, i) => assert.deepEqual(o, {}, `${names[i]}: ${String(o)}`));
  for (const n of names) assert.deepEqual(await userHosts(admin, n), [], n);
  await assert.rejects(session.query('SELECT 1'), 'the open session was ended');
  await session.end().catch(() => undefined);
  assert.deepEqual(await sessionsOf(admin, names[1]!), []);

  // Idempotent.
  assert.ok((await engine.deleteUsers!(names.map((username) => ({ username, statements: [] })))).every(isResult));
});

test('deleteUsers: a name the one-statement DROP USER cannot drop (a role) fails alone; the others are dropped', async () => {
  const role = `${P}role`;
  await admin.query(`CREATE ROLE ${role}`);
  const names = [`${P}r0`, `${P}r1`];
  const kept = `${P}exact`;
  assert.ok((await engine.newUsers!([...names, kept].map((n) => request(n)))).every((o) => o === undefined));
  const outcomes = await engine.deleteUsers!([names[0]!, role, names[1]!, `${kept} `].map((username) => ({ username, statements: [] })));
  assert.ok(isResult(outcomes[0]) && isResult(outcomes[2]) && isResult(outcomes[3]), String(outcomes));
  assert.ok(outcomes[1] instanceof Error, 'the role is not reported dropped');
  assert.match(outcomes[1].message, new RegExp(`cannot revoke the privileges of '${role}'@''`));
  for (const n of names) assert.deepEqual(await userHosts(admin, n), []);
  assert.deepEqual(await userHosts(admin, role), [''], 'the role is still there, as reported');
  assert.deepEqual(await userHosts(admin, kept), ['%'], 'a name with a trailing space touches nobody');
  await admin.query(`DROP ROLE ${role}`);
  assert.ok((await engine.deleteUsers!([{ username: kept, statements: [] }])).every(isResult));
});

test('deleteUsers with an admin that cannot end sessions: the user with an open session fails alone, locked and kept', async () => {
  const user = `${P}nokill`;
  const password = 'Aa1-nokill-admin-password-01';
  await createLimitedAdmin(admin, user, password, TABLE, ['PROCESS']);
  const restricted = await newEngine(mysqlConfig({ username: user, password }));

  const names = [0, 1, 2, 3].map((i) => `${P}nk${i}`);
  assert.ok((await restricted.newUsers!(names.map((n) => request(n)))).every((o) => o === undefined));
  const session = await connectAs(names[1]!, PASSWORD, null);
  try {
    const outcomes = await restricted.deleteUsers!(names.map((username) => ({ username, statements: [] })));
    const failed = outcomes[1];
    assert.ok(failed instanceof Error, String(failed));
    assert.match(failed.message, new RegExp(`1 open session\\(s\\) of "${names[1]}" could not be ended .*GRANT CONNECTION ADMIN ON \\*\\.\\* TO '${user}'@'%'`));
    for (const i of [0, 2, 3]) {
      assert.deepEqual(outcomes[i], {}, String(outcomes[i]));
      assert.deepEqual(await userHosts(admin, names[i]!), []);
    }
    assert.deepEqual(await userHosts(admin, names[1]!), ['%'], 'kept while its session is open');
    assert.equal(await canLogin(names[1]!, PASSWORD), false, 'locked: no new session');
    await session.query('SELECT 1'); // really still open, as reported
  } finally {
    await session.end().catch(() => undefined);
  }
  for (let i = 0; i < 20 && (await sessionsOf(admin, names[1]!)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  const again = await restricted.deleteUsers!([{ username: names[1]!, statements: [] }]);
  assert.deepEqual(again, [{}]);
  assert.deepEqual(await userHosts(admin, names[1]!), []);
});

test('newUsers: one role\'s batch shares each CREATE USER and GRANT; every user logs in with its own password only and has the grant', async () => {
  const names = Array.from({ length: 20 }, (_, i) => `${P}m${String(i).padStart(2, '0')}`);
  const passwords = names.map((_, i) => `Aa1-merged-'"\\-${i}-password`); // quotes and a backslash: escaped per account
  const outcomes = await engine.newUsers!(names.map((n, i) => request(n, CREATE, passwords[i])));
  assert.deepEqual(outcomes, names.map(() => undefined));
  for (const [i, n] of names.entries()) {
    assert.deepEqual(await userHosts(admin, n), ['%']);
    const conn = await connectAs(n, passwords[i]!);
    const [rows] = await conn.query(`SELECT id FROM ${TABLE}`);
    assert.deepEqual(rows, [{ id: 1 }]);
    await assert.rejects(conn.query(`CREATE TABLE ${DB}.${P}nope (id INT)`), /denied/);
    await conn.end();
    assert.equal(await canLogin(n, passwords[(i + 1) % names.length]!), false, 'another user\'s password does not open it');
  }
  assert.ok((await engine.deleteUsers!(names.map((username) => ({ username, statements: [] })))).every(isResult));
});

test('newUsers: a shared GRANT that fails fails each user alone, and each is rolled back', async () => {
  const names = [0, 1, 2, 3].map((i) => `${P}g${i}`);
  const outcomes = await engine.newUsers!(names.map((n) => request(n, [CREATE[0]!, `GRANT SELECT ON ${DB}.${P}missing TO '{{name}}'@'%'`])));
  for (const [i, n] of names.entries()) {
    const outcome = outcomes[i];
    assert.ok(outcome instanceof Error && !(outcome instanceof EngineInputError), String(outcome));
    assert.match(outcome.message, /creation statement 2 failed/);
    assert.ok(!outcome.message.includes(PASSWORD), outcome.message);
    assert.deepEqual(await userHosts(admin, n), [], `${n} was rolled back`);
  }
});

test('newUsers: shared statements around one that runs per user (GRANT role, SET DEFAULT ROLE … FOR) in order', async () => {
  const role = `${P}grp`;
  await admin.query(`CREATE ROLE IF NOT EXISTS ${role}`);
  await admin.query(`GRANT SELECT ON ${TABLE} TO ${role}`);
  try {
    const statements = [CREATE[0]!, `GRANT ${role} TO '{{name}}'@'%'`, `SET DEFAULT ROLE ${role} FOR '{{name}}'@'%'`];
    const names = [0, 1, 2, 3, 4, 5].map((i) => `${P}r${i}`);
    assert.deepEqual(await engine.newUsers!(names.map((n) => request(n, statements))), names.map(() => undefined));
    for (const n of names) {
      const conn = await connectAs(n, PASSWORD);
      const [rows] = await conn.query(`SELECT id FROM ${TABLE}`); // through the default role, without SET ROLE
      assert.deepEqual(rows, [{ id: 1 }]);
      await conn.end();
    }
    assert.ok((await engine.deleteUsers!(names.map((username) => ({ username, statements: [] })))).every(isResult));
  } finally {
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
  }
});

test('newUsers: two batches racing for one name: one gets it, the other an input error for that name only; nothing is dropped or orphaned', async () => {
  // Both lookups may pass before either CREATE USER runs; then the shared
  // CREATE USER of the later batch fails for that name (ER_CANNOT_USER) while
  // MariaDB makes the others, which must go on (not be left untracked).
  for (let round = 0; round < 5; round++) {
    const shared = `${P}race${round}`;
    const a = [0, 1, 2].map((i) => `${P}ra${round}_${i}`);
    const b = [0, 1, 2].map((i) => `${P}rb${round}_${i}`);
    const pa = 'Aa1-race-password-of-batch-a';
    const pb = 'Aa1-race-password-of-batch-b';
    const [oa, ob] = await Promise.all([
      engine.newUsers!([shared, ...a].map((n) => request(n, CREATE, pa))),
      engine.newUsers!([...b.slice(0, 1), shared, ...b.slice(1)].map((n) => request(n, CREATE, pb))),
    ]);
    const sharedA = oa[0];
    const sharedB = ob[1];
    assert.ok((sharedA === undefined) !== (sharedB === undefined), `exactly one batch gets ${shared}: ${sharedA?.message} / ${sharedB?.message}`);
    const loser = sharedA === undefined ? sharedB : sharedA;
    assert.ok(loser instanceof EngineInputError && /already exists/.test(loser.message), String(loser));
    assert.equal(await canLogin(shared, sharedA === undefined ? pa : pb), true, 'the winner\'s user is intact');
    assert.deepEqual([...oa.slice(1), ob[0], ...ob.slice(2)], [undefined, undefined, undefined, undefined, undefined, undefined]);
    for (const n of a) assert.equal(await canLogin(n, pa), true, n);
    for (const n of b) assert.equal(await canLogin(n, pb), true, n);
    assert.ok((await engine.deleteUsers!([shared, ...a, ...b].map((username) => ({ username, statements: [] })))).every(isResult));
  }
});

test('an admin that may read mysql.user but not mysql.global_priv: names are still looked up (a name taken at another host is refused)', async () => {
  const user = `${P}viewonly`;
  const password = 'Aa1-viewonly-admin-password-1';
  await createLimitedAdmin(admin, user, password, TABLE);
  const restricted = await newEngine(mysqlConfig({ username: user, password }));
  const taken = `${P}vtaken`;
  await admin.query(`CREATE USER ?@'localhost' IDENTIFIED BY 'Aa1-theirs-password-000001'`, [taken]);
  const fresh = [`${P}v0`, `${P}v1`];
  const outcomes = await restricted.newUsers!([request(fresh[0]!), request(taken), request(fresh[1]!)]);
  assert.equal(outcomes[0], undefined, String(outcomes[0]));
  assert.ok(outcomes[1] instanceof EngineInputError && /already exists/.test(outcomes[1].message), String(outcomes[1]));
  assert.equal(outcomes[2], undefined, String(outcomes[2]));
  assert.deepEqual(await userHosts(admin, taken), ['localhost']);
  for (const n of fresh) assert.equal(await canLogin(n, PASSWORD), true, n);
  assert.ok((await restricted.deleteUsers!(fresh.map((username) => ({ username, statements: [] })))).every(isResult));
  await admin.query(`DROP USER ?@'localhost'`, [taken]);
});

test('generated names (uniqueName) skip the lookup; a CREATE USER that still finds its name taken is an input error and drops nothing', async () => {
  const taken = `${P}utaken`;
  const theirs = 'Aa1-theirs-password-000002';
  await admin.query(`CREATE USER ?@'%' IDENTIFIED BY ?`, [taken, theirs]);
  for (const batch of [[taken], [`${P}u0`, taken, `${P}u1`]]) {
    const outcomes = await engine.newUsers!(batch.map((n) => ({ ...request(n), uniqueName: true })));
    for (const [i, n] of batch.entries()) {
      if (n === taken) {
        assert.ok(outcomes[i] instanceof EngineInputError && /already exists/.test(outcomes[i]!.message), String(outcomes[i]));
      } else {
        assert.equal(outcomes[i], undefined, String(outcomes[i]));
        assert.equal(await canLogin(n, PASSWORD), true, n);
      }
    }
    assert.equal(await canLogin(taken, theirs), true, 'their account is intact');
    const mine = batch.filter((n) => n !== taken);
    assert.ok((await engine.deleteUsers!(mine.map((username) => ({ username, statements: [] })))).every(isResult));
  }
  await admin.query(`DROP USER ?@'%'`, [taken]);
});

test('through the DDL batcher, drops asked for right after a creation go at most dropsNearCreates.batch per call, one call at a time (Engine.dropsNearCreates); every user is gone', async () => {
  const limits = engine.dropsNearCreates;
  assert.deepEqual(limits, { batch: 4, slots: 1 });
  const sizes: number[] = [];
  let running = 0;
  let most = 0;
  // The real engine; its deleteUsers calls are counted.
  const counted: Engine = Object.create(engine) as Engine;
  counted.deleteUsers = (requests) => {
    sizes.push(requests.length);
    return engine.deleteUsers!(requests);
  };
  const batcher = new DdlBatcher({
    name: 'main',
    run: async (secrets, op) => {
      most = Math.max(most, ++running);
      try {
        return await op(counted);
      } catch (err) {
        throw mapEngineError('main', err, secrets);
      } finally {
        running--;
      }
    },
    mapError: (err, secrets) => mapEngineError('main', err, secrets),
    shape: () => ({ maxOpen: 8, newUsers: true, deleteUsers: true, dropsNearCreates: engine.dropsNearCreates! }),
    mayAct: () => true,
  });
  const names = Array.from({ length: 40 }, (_, i) => `${P}yield${i}`);
  const made = await engine.newUsers!(names.map((n) => request(n)));
  assert.ok(made.every((o) => o === undefined), String(made));
  const fresh = `${P}yieldnew`;
  await batcher.create(request(fresh), unwrap);
  // Its slot frees just after the caller's promise settles.
  await new Promise((r) => setImmediate(r));
  most = 0;
  const results = await Promise.all(names.map((username) => batcher.drop({ username, statements: [] }, unwrap)));
  assert.equal(results.length, 40);
  assert.equal(sizes.reduce((a, b) => a + b, 0), 40);
  assert.ok(sizes.every((n) => n <= limits!.batch), `batch sizes ${sizes.join(',')}`);
  assert.ok(most <= limits!.slots, `${most} calls at once`);
  for (const n of names) assert.deepEqual(await userHosts(admin, n), [], n);
  assert.deepEqual(await userHosts(admin, fresh), ['%']);
  await engine.deleteUsers!([{ username: fresh, statements: [] }]);
});
