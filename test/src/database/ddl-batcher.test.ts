// The DDL batcher (src/database/ddl-batcher.ts) in process, against a real
// PostgreSQL through the real PostgreSQL engine wrapped to count its calls
// (test/support/batch-counting-engine.ts; until the PostgreSQL engine has its
// own newUsers/deleteUsers the wrapper loops over newUser/deleteUser, so
// these tests then prove the batcher's bookkeeping, not batching in the
// database): concurrent requests are coalesced into batches, a slot covers
// a request until its caller settled it, one bad user
// in a batch fails alone with a clear, secret-free error and leaves nothing
// behind, engines without batch methods get one call per request with
// bounded concurrency, a database that cannot be reached fails each
// request with a coded error, and revocations give way to creations (small
// drop batches on fewer slots while creations are about, no new drop call
// while a creation is in flight, never starved) where the engine asks for it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mapEngineError } from '../../../src/database/connections.ts';
import {
  CREATE_RECENT_MS,
  DdlBatcher,
  DROP_DEFER_MAX_MS,
  slotsFor,
  slotsPerKind,
  unwrap,
  type BatcherConnection,
  type ConnectionShape,
} from '../../../src/database/ddl-batcher.ts';
import { BATCH_LIMIT, type Engine, type NewUserRequest } from '../../../src/engine/engine.ts';
import { BrokerError, errors } from '../../../src/errors.ts';
import { BatchCountingEngine } from '../../support/batch-counting-engine.ts';
import { eventually } from '../../support/broker.ts';
import { dropRolesWithPrefix, LOGIN_ROLE, rolesWithPrefix, tag, templatedUrl } from '../../support/pg-broker.ts';
import { freePort, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const run = tag();
const prefix = `tb${run}`;
const MISSING_TABLE = `dbroker_missing_${run}`;
let server: TestPostgres;
let engine: BatchCountingEngine;

/** What Connections gives a batcher, minus the broker: the engine call with its errors mapped. */
function connectionOf(e: Engine, shape: ConnectionShape, mayAct = () => true): BatcherConnection {
  return {
    name: 'main',
    run: async (secrets, op) => {
      try {
        return await op(e);
      } catch (err) {
        throw mapEngineError('main', err, secrets);
      }
    },
    mapError: (err, secrets) => mapEngineError('main', err, secrets),
    shape: () => shape,
    mayAct,
  };
}

const batching: ConnectionShape = { maxOpen: 4, newUsers: true, deleteUsers: true };

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Past the window in which a creation holds drops to small batches (CREATE_RECENT_MS). */
const quiet = (): Promise<void> => pause(CREATE_RECENT_MS + 50);

let serial = 0;
function request(kind: string, statements = [LOGIN_ROLE]): NewUserRequest {
  return {
    username: `${prefix}${kind}${serial++}`,
    password: `pw-${randomBytes(12).toString('hex')}`,
    expiration: new Date(Date.now() + 3_600_000),
    creationStatements: statements,
    rollbackStatements: [],
  };
}

before(async () => {
  server = await trustPostgres();
  engine = new BatchCountingEngine();
  await engine.initialize(
    { connectionUrl: templatedUrl(server), username: server.adminUser, password: server.adminPassword, maxOpenConnections: 4, options: {} },
    { verify: true },
  );
});

after(async () => {
  await engine?.close();
  if (server) await dropRolesWithPrefix(server, prefix).catch(() => undefined);
  await server?.stop();
});

test('concurrent creations and drops are coalesced: the first requests go at once, the rest in batches; every user is created, then dropped', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, batching));
  engine.calls.length = 0;
  const reqs = Array.from({ length: 40 }, () => request('c'));
  await Promise.all(reqs.map((r) => batcher.create(r, unwrap)));
  const creates = engine.calls.filter((c) => c.kind === 'create');
  // Three slots (a pool of 4 less one for revocations): the first three requests went alone, the 37 that waited in one batch.
  assert.equal(slotsPerKind(batching.maxOpen), 3);
  assert.deepEqual(
    creates.map((c) => c.usernames.length),
    [1, 1, 1, 37],
  );
  assert.deepEqual(creates.flatMap((c) => c.usernames).sort(), reqs.map((r) => r.username).sort());
  assert.ok(engine.maxRunning <= 3);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}c`), reqs.map((r) => r.username).sort());

  engine.calls.length = 0;
  const results = await Promise.all(reqs.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.equal(results.length, 40);
  const drops = engine.calls.filter((c) => c.kind === 'drop');
  assert.deepEqual(
    drops.map((c) => c.usernames.length),
    [1, 1, 1, 37],
  );
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}c`), []);
});

test('an engine that caps its creation calls (Engine.createSlots, MySQL: 2) gets that many at once and larger batches; drops keep all but one connection', async () => {
  const shape: ConnectionShape = { ...batching, createSlots: 2 };
  assert.equal(slotsFor('create', shape), 2);
  assert.equal(slotsFor('drop', shape), 3);
  assert.equal(slotsFor('create', { ...batching, createSlots: 9 }), 3, 'never more than the pool allows');
  const batcher = new DdlBatcher(connectionOf(engine, shape));
  engine.calls.length = 0;
  engine.maxRunning = 0;
  const reqs = Array.from({ length: 40 }, () => request('s'));
  await Promise.all(reqs.map((r) => batcher.create(r, unwrap)));
  assert.deepEqual(
    engine.calls.filter((c) => c.kind === 'create').map((c) => c.usernames.length),
    [1, 1, 38],
  );
  assert.ok(engine.maxRunning <= 2, `at most 2 at once, saw ${engine.maxRunning}`);
  engine.calls.length = 0;
  await Promise.all(reqs.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(
    engine.calls.filter((c) => c.kind === 'drop').map((c) => c.usernames.length),
    [1, 1, 1, 37],
  );
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}s`), []);
});

test('revocations in flight leave a connection for creations: a creation goes at once while drops wait; the pool is never oversubscribed', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, batching));
  const users = Array.from({ length: 10 }, () => request('r'));
  await Promise.all(users.map((r) => batcher.create(r, unwrap)));
  // The last batch frees its slot just after its callers' promises settle.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(batcher.load, { waiting: 0, inFlight: 0 });
  engine.calls.length = 0;
  // Engine calls start synchronously: right after the calls below, `calls` shows what went out.
  const drops = users.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap));
  assert.deepEqual(engine.calls.map((c) => `${c.kind}:${c.usernames.length}`), ['drop:1', 'drop:1', 'drop:1']);
  const fresh = [request('r'), request('r')];
  const creates = fresh.map((r) => batcher.create(r, unwrap));
  // One creation goes on the fourth connection; the second waits, as do seven drops.
  assert.deepEqual(engine.calls.map((c) => `${c.kind}:${c.usernames.length}`), ['drop:1', 'drop:1', 'drop:1', 'create:1']);
  assert.deepEqual(batcher.load, { waiting: 8, inFlight: 4 });
  await Promise.all([...drops, ...creates]);
  await Promise.all(fresh.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}r`), []);
});

test('a slot is held until the caller settled its request (the lease written): the next request waits for that, not only for the database', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, { maxOpen: 2, newUsers: true, deleteUsers: true }));
  engine.calls.length = 0;
  const [first, second] = [request('w'), request('w')];
  let settling = false;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const a = batcher.create(first, async (outcome) => {
    settling = true;
    await gate;
    return unwrap(outcome);
  });
  const b = batcher.create(second, unwrap);
  await eventually(async () => settling, 15_000, 'the first creation to be settled');
  // The first user exists, its settle step has not finished: the second request still waits.
  assert.deepEqual(engine.calls.map((c) => c.usernames), [[first.username]]);
  assert.deepEqual(batcher.load, { waiting: 1, inFlight: 1 });
  release();
  await Promise.all([a, b]);
  assert.deepEqual(engine.calls.map((c) => c.usernames), [[first.username], [second.username]]);
  await Promise.all([first, second].map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}w`), []);
});

test('more waiting requests than BATCH_LIMIT go in batches of at most BATCH_LIMIT', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, batching));
  engine.calls.length = 0;
  const n = BATCH_LIMIT + 20;
  const reqs = Array.from({ length: n }, () => request('l'));
  await Promise.all(reqs.map((r) => batcher.create(r, unwrap)));
  const sizes = engine.calls.map((c) => c.usernames.length);
  assert.ok(Math.max(...sizes) <= BATCH_LIMIT, `batch sizes ${sizes.join(',')}`);
  assert.equal(sizes.reduce((a, b) => a + b, 0), n);
  assert.ok(engine.calls.length < n / 4, `${engine.calls.length} calls for ${n} users`);
  await Promise.all(reqs.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}l`), []);
});

// An engine whose drops give way to creations (Engine.dropsNearCreates; the MySQL engine's own figures differ).
const DROP_BATCH_NEAR_CREATES = 8;
const DROP_SLOTS_NEAR_CREATES = 2;
const wide: ConnectionShape = { maxOpen: 8, newUsers: true, deleteUsers: true, dropsNearCreates: { batch: DROP_BATCH_NEAR_CREATES, slots: DROP_SLOTS_NEAR_CREATES } };
const shapes = (kind: 'create' | 'drop'): number[] => engine.calls.filter((c) => c.kind === kind).map((c) => c.usernames.length);

test('an engine whose drops give way to creations (Engine.dropsNearCreates): while creations are about, drops go in its small batches, few calls at once; once creations have been quiet for CREATE_RECENT_MS, in full batches on every drop slot', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, wide));
  const reqs = Array.from({ length: 60 }, () => request('n'));
  await Promise.all(reqs.map((r) => batcher.create(r, unwrap)));
  assert.ok(DROP_SLOTS_NEAR_CREATES < slotsPerKind(wide.maxOpen) && DROP_BATCH_NEAR_CREATES < BATCH_LIMIT);
  // The last batch frees its slot just after its callers' promises settle (a creation in flight would hold every drop back).
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(batcher.load, { waiting: 0, inFlight: 0 });

  // Creations finished just now: the first drops go alone on DROP_SLOTS_NEAR_CREATES calls, the rest wait.
  engine.calls.length = 0;
  engine.maxRunning = 0;
  const near = reqs.slice(0, 30);
  const nearDrops = Promise.all(near.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(shapes('drop'), Array<number>(DROP_SLOTS_NEAR_CREATES).fill(1));
  assert.deepEqual(batcher.load, { waiting: 30 - DROP_SLOTS_NEAR_CREATES, inFlight: DROP_SLOTS_NEAR_CREATES });
  await nearDrops;
  const nearSizes = shapes('drop');
  assert.equal(nearSizes.reduce((a, b) => a + b, 0), 30);
  // Each freed slot takes DROP_BATCH_NEAR_CREATES of the waiting drops (the window outlasts these few calls).
  assert.deepEqual(nearSizes.slice(DROP_SLOTS_NEAR_CREATES, DROP_SLOTS_NEAR_CREATES + 2), [DROP_BATCH_NEAR_CREATES, DROP_BATCH_NEAR_CREATES], `batch sizes ${nearSizes.join(',')}`);
  assert.ok(engine.maxRunning <= DROP_SLOTS_NEAR_CREATES, `${engine.maxRunning} drop calls at once`);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}n`), reqs.slice(30).map((r) => r.username).sort());

  // Quiet: every drop slot, then one batch of the rest.
  await quiet();
  engine.calls.length = 0;
  const far = reqs.slice(30);
  const farDrops = Promise.all(far.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  const slots = slotsPerKind(wide.maxOpen);
  assert.deepEqual(shapes('drop'), Array<number>(slots).fill(1));
  await farDrops;
  assert.deepEqual(shapes('drop'), [...Array<number>(slots).fill(1), 30 - slots]);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}n`), []);
});

test('a creation in flight holds new drop calls back and goes before drops that waited longer; drops still go, one call at a time, after DROP_DEFER_MAX_MS', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, wide));
  const users = Array.from({ length: 24 }, () => request('q'));
  await Promise.all(users.map((r) => batcher.create(r, unwrap)));
  await quiet();
  engine.calls.length = 0;
  const calls = (): string[] => engine.calls.map((c) => `${c.kind}:${c.usernames.length}`);

  // A creation whose settle step (the lease write) is held: it stays in flight.
  let settling = false;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = request('q');
  const held = batcher.create(slow, async (outcome) => {
    settling = true;
    await gate;
    return unwrap(outcome);
  });
  assert.deepEqual(calls(), ['create:1']);
  const queuedAt = Date.now();
  const drops = users.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap));
  // Free drop slots, but a creation is in flight: no drop call starts yet.
  assert.deepEqual(calls(), ['create:1']);
  assert.deepEqual(batcher.load, { waiting: 24, inFlight: 1 });
  // A creation asked for now goes at once, ahead of the drops that waited longer.
  const next = request('q');
  const quick = batcher.create(next, unwrap);
  assert.deepEqual(calls(), ['create:1', 'create:1']);
  await quick;

  // Its engine call is over once it settles: from then on only drop calls run.
  while (!settling) await pause(2);
  engine.maxRunning = engine.running;
  // Held back, not stopped: after DROP_DEFER_MAX_MS one small drop call at a time.
  await eventually(async () => shapes('drop').length >= 3, 15_000, 'drops to go while the creation is held');
  const firstDrop = engine.calls.findIndex((c) => c.kind === 'drop');
  assert.ok(Date.now() - queuedAt >= DROP_DEFER_MAX_MS);
  assert.ok(firstDrop > 1, 'a drop went before the creations');
  assert.ok(engine.maxRunning <= 1, `${engine.maxRunning} drop calls at once while a creation was in flight`);
  assert.ok(shapes('drop').every((n) => n <= DROP_BATCH_NEAR_CREATES), `drop batch sizes ${shapes('drop').join(',')}`);
  assert.equal(settling, true);

  release();
  await Promise.all([held, ...drops]);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}q`), [slow.username, next.username].sort());
  await Promise.all([slow, next].map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}q`), []);
});

test('one user whose creation fails at runtime fails alone in its batch: the others are created, it gets a clear error and leaves no role', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, batching));
  engine.calls.length = 0;
  const bad = [LOGIN_ROLE, `GRANT SELECT ON ${MISSING_TABLE} TO "{{name}}"`];
  // The first three go at once; the other six, good and bad mixed, wait and go together.
  const reqs = [request('g'), request('g'), request('g'), request('g'), request('b', bad), request('g'), request('b', bad), request('g'), request('b', bad), request('g')];
  const outcomes = await Promise.allSettled(reqs.map((r) => batcher.create(r, unwrap)));
  const mixed = engine.calls.find((c) => c.usernames.length > 1);
  assert.ok(mixed, 'no batch');
  assert.ok(mixed.usernames.some((u) => u.startsWith(`${prefix}b`)) && mixed.usernames.some((u) => u.startsWith(`${prefix}g`)), 'good and bad users in one batch');
  reqs.forEach((r, i) => {
    const outcome = outcomes[i]!;
    if (r.username.startsWith(`${prefix}g`)) {
      assert.equal(outcome.status, 'fulfilled', `${r.username}: ${outcome.status === 'rejected' ? String(outcome.reason) : ''}`);
      return;
    }
    assert.equal(outcome.status, 'rejected');
    const err = (outcome as PromiseRejectedResult).reason as BrokerError;
    assert.ok(err instanceof BrokerError, String(err));
    assert.match(err.message, new RegExp(`${MISSING_TABLE}.*does not exist`));
    assert.ok(!err.message.includes(r.password), 'the password is in the error');
    assert.ok([400, 500].includes(err.statusCode), `status ${err.statusCode}`);
  });
  const good = reqs.filter((r) => r.username.startsWith(`${prefix}g`)).map((r) => r.username);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}g`), good.sort());
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}b`), [], 'a role of a failed creation was left');
  await Promise.all(good.map((username) => batcher.drop({ username, statements: [] }, unwrap)));
});

test('one user whose drop fails fails alone in its batch; the others are dropped', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, batching));
  const reqs = Array.from({ length: 8 }, () => request('d'));
  await Promise.all(reqs.map((r) => batcher.create(r, unwrap)));
  engine.calls.length = 0;
  const stuck = reqs[5]!.username;
  const outcomes = await Promise.allSettled(
    reqs.map((r) =>
      batcher.drop({
        username: r.username,
        statements: r.username === stuck ? [`REVOKE ALL ON ${MISSING_TABLE} FROM "{{name}}"`, 'DROP ROLE "{{name}}"'] : [],
      }, unwrap),
    ),
  );
  const batch = engine.calls.find((c) => c.usernames.includes(stuck));
  assert.ok(batch && batch.usernames.length > 1, 'the stuck user went in a batch');
  outcomes.forEach((o, i) => assert.equal(o.status, reqs[i]!.username === stuck ? 'rejected' : 'fulfilled'));
  const err = (outcomes[5] as PromiseRejectedResult).reason as BrokerError;
  assert.match(err.message, /does not exist/);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}d`), [stuck]);
  await batcher.drop({ username: stuck, statements: [] }, unwrap);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}d`), []);
});

test('an engine without batch methods gets one call per request, at most max_open_connections less one at once', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, { maxOpen: 3, newUsers: false, deleteUsers: false }));
  engine.calls.length = 0;
  engine.maxRunning = 0;
  const reqs = Array.from({ length: 12 }, () => request('s'));
  await Promise.all(reqs.map((r) => batcher.create(r, unwrap)));
  await Promise.all(reqs.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.equal(engine.calls.length, 24);
  assert.ok(engine.calls.every((c) => c.single && c.usernames.length === 1));
  assert.ok(engine.maxRunning <= slotsPerKind(3), `${engine.maxRunning} calls at once`);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}s`), []);
});

test('a database that cannot be reached fails every request of a batch with a coded 502, without secrets', async () => {
  const down = new BatchCountingEngine();
  const url = `postgres://{{username}}:{{password}}@127.0.0.1:${await freePort()}/postgres`;
  await down.initialize({ connectionUrl: url, username: 'nobody', password: 'admin-secret-1234', maxOpenConnections: 2, options: {} }, { verify: false });
  try {
    const batcher = new DdlBatcher(connectionOf(down, batching));
    const reqs = Array.from({ length: 6 }, () => request('x'));
    const outcomes = await Promise.allSettled(reqs.map((r) => batcher.create(r, unwrap)));
    assert.ok(down.calls.some((c) => !c.single), 'a batch went out');
    for (const [i, o] of outcomes.entries()) {
      assert.equal(o.status, 'rejected');
      const err = (o as PromiseRejectedResult).reason as BrokerError;
      assert.equal(err.code, errors.ENGINE_CONNECTION.code, err.message);
      assert.equal(err.statusCode, 502);
      assert.ok(!err.message.includes(reqs[i]!.password) && !err.message.includes('admin-secret-1234'));
    }
  } finally {
    await down.close();
  }
});

test('a node that may no longer act (HA: deposed) sends nothing to the database: waiting requests fail with a 503', async () => {
  let active = true;
  const batcher = new DdlBatcher(connectionOf(engine, batching, () => active));
  engine.calls.length = 0;
  const reqs = Array.from({ length: 6 }, () => request('h'));
  const outcomes = Promise.allSettled(reqs.map((r) => batcher.create(r, unwrap)));
  // Three went out at once; the other three wait, and the node loses its leadership meanwhile.
  assert.equal(engine.calls.length, 3);
  active = false;
  const settled = await outcomes;
  assert.equal(engine.calls.length, 3, 'nothing went out after the node was deposed');
  settled.forEach((o, i) => {
    if (i < 3) return assert.equal(o.status, 'fulfilled');
    assert.equal(o.status, 'rejected');
    const err = (o as PromiseRejectedResult).reason as BrokerError;
    assert.equal(err.code, errors.NOT_ACTIVE.code);
    assert.equal(err.statusCode, 503);
  });
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}h`), reqs.slice(0, 3).map((r) => r.username).sort());
  active = true;
  await Promise.all(reqs.slice(0, 3).map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap)));
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}h`), []);
});

test('a creation call run again after a connection failure (Connections.run retries once the root credential is settled) never loses a committed user: "already exists" on the second call is unknown, not an input error', async () => {
  // Connections.run's retry is reproduced here: the first call commits the
  // users and then "loses its answer" (the connection failure), the second
  // call finds them existing. The engine and database are real.
  const rerun: BatcherConnection = {
    ...connectionOf(engine, batching),
    run: async (secrets, op) => {
      await op(engine);
      return op(engine).catch((err: unknown) => {
        throw mapEngineError('main', err, secrets);
      });
    },
  };
  const batcher = new DdlBatcher(rerun);
  for (const size of [1, 3]) {
    const reqs = Array.from({ length: size }, () => request('r'));
    const settled = await Promise.all(reqs.map((r) => batcher.create(r, async (o) => o)));
    for (const o of settled) {
      assert.equal(o.ok, false);
      const code = (o as { error: BrokerError }).error.code;
      // Not ENGINE_INPUT (which makes the broker forget the lease and leave the user behind).
      assert.equal(code, errors.ENGINE_FAILED.code, `size ${size}: ${String((o as { error: Error }).error.message)}`);
    }
    // The users exist: the pending leases (kept on ENGINE_FAILED) revoke them.
    const existing = new Set(await rolesWithPrefix(server, `${prefix}r`));
    for (const r of reqs) assert.ok(existing.has(r.username), `${r.username} was committed by the first call`);
  }
});

test('write-ahead: an engine that does not wait for the lease rows itself is called only once they are durable; a row that cannot be made durable fails its request with nothing created', async () => {
  const batcher = new DdlBatcher(connectionOf(engine, batching));
  assert.equal((engine as Engine).awaitsWriteAhead, undefined, 'the counting wrapper leaves the waiting to the batcher');
  engine.calls.length = 0;
  let settle!: () => void;
  const held = new Promise<void>((ok) => (settle = ok));
  const req = { ...request('w'), writeAhead: held };
  const creating = batcher.create(req, unwrap);
  await pause(100);
  assert.deepEqual(engine.calls, [], 'no engine call while the lease row is not durable');
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}w`), []);
  settle();
  await creating;
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}w`), [req.username]);

  engine.calls.length = 0;
  const failing = Promise.reject(new Error('fsync: EIO'));
  failing.catch(() => undefined);
  const lost = { ...request('x'), writeAhead: failing };
  await assert.rejects(batcher.create(lost, unwrap), (err: BrokerError) => err.statusCode === 500 && /could not be stored durably: fsync: EIO/.test(err.message));
  assert.deepEqual(engine.calls, []);
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}x`), []);
  await batcher.drop({ username: req.username, statements: [] }, unwrap);
});

test('drops that give way "alongside" creations (PostgreSQL) start while a creation is in flight, in the small batches and on the few slots', async () => {
  const alongside: ConnectionShape = { ...wide, dropsNearCreates: { batch: DROP_BATCH_NEAR_CREATES, slots: 1, alongside: true } };
  const batcher = new DdlBatcher(connectionOf(engine, alongside));
  const users = Array.from({ length: 24 }, () => request('al'));
  await Promise.all(users.map((r) => batcher.create(r, unwrap)));
  engine.calls.length = 0;
  // A creation whose settle step is held: it stays in flight throughout.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = request('al');
  const held = batcher.create(slow, async (outcome) => {
    await gate;
    return unwrap(outcome);
  });
  const queuedAt = Date.now();
  const drops = users.map((r) => batcher.drop({ username: r.username, statements: [] }, unwrap));
  // A drop call starts at once, beside the creation (no DROP_DEFER_MAX_MS hold-back).
  assert.deepEqual(engine.calls.map((c) => c.kind), ['create', 'drop']);
  engine.maxRunning = engine.running;
  await Promise.all(drops);
  assert.ok(Date.now() - queuedAt < 20 * DROP_DEFER_MAX_MS);
  // The first drop went alone, at once; the rest in the small batches, one call after another.
  assert.deepEqual(shapes('drop'), [1, 8, 8, 7]);
  assert.ok(engine.maxRunning <= 2, `${engine.maxRunning} calls at once: the creation and one drop`);
  release();
  await held;
  assert.deepEqual(await rolesWithPrefix(server, `${prefix}al`), [slow.username]);
  await batcher.drop({ username: slow.username, statements: [] }, unwrap);
});
