// The PostgreSQL store's own behaviour (the Storage interface itself is in
// storage-conformance.test.ts): due-lease claims through the index with
// FOR UPDATE SKIP LOCKED (EXPLAIN), concurrent claimers get disjoint leases,
// replicas migrating at once, the store lock (single vs HA), and fencing.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Election } from '../../../src/ha/election.ts';
import { FencedError, PostgresStorage } from '../../../src/storage/postgres-storage.ts';
import { pgMigrations } from '../../../src/storage/pg-migrations.ts';
import type { LeaseRow } from '../../../src/storage/storage.ts';
import { createStoreDatabase, type StoreDatabase } from '../../support/pg-store.ts';

let db: StoreDatabase;
before(async () => {
  db = await createStoreDatabase('pgstore');
});
after(async () => {
  await db?.drop();
});

function lease(id: string, dueAt: number): LeaseRow {
  return {
    id,
    mount: 'database/',
    role: 'r',
    connection: 'c',
    state: 'active',
    issueTime: 0,
    expireTime: dueAt,
    maxExpireTime: dueAt,
    lastRenewal: null,
    dueAt,
    attempts: 0,
    lastError: null,
    tokenHash: null,
    sealed: Buffer.from('x'),
  };
}

test('claims go through the due_at index with FOR UPDATE SKIP LOCKED, never a sequential scan', async () => {
  const store = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'explain_', mode: 'tool' });
  try {
    // Enough rows that the planner's choice means something.
    await db.query(
      `INSERT INTO explain_leases (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, due_at, sealed)
       SELECT 'database/creds/r/' || lpad(i::text, 6, '0'), 'database/', 'r', 'c', 'active', 0, 1e9 + i, 1e9 + i, 1e9 + i, '\\x00'
       FROM generate_series(1, 20000) AS i`,
    );
    await db.query('ANALYZE explain_leases');
    const sql = store.claimSql(1);
    const plan = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, [5_000, 6_000, 256, 'database/', 'slow']);
    const text = JSON.stringify(plan[0]!['QUERY PLAN']);
    assert.match(sql, /FOR UPDATE SKIP LOCKED/);
    assert.match(text, /"Node Type":"LockRows"/);
    assert.match(text, /"Index Name":"explain_leases_due"/, text);
    assert.doesNotMatch(text, /"Node Type":"Seq Scan"/, 'never a full table scan');
    // Unseal's search for interrupted work goes through the partial index of unsettled leases, never the active ones.
    const recover = await db.query<{ 'QUERY PLAN': unknown }>(
      `EXPLAIN (FORMAT JSON) UPDATE explain_leases SET due_at = $1 WHERE state IN ('pending', 'revoking') AND due_at > $1`,
      [5_000],
    );
    const recoverText = JSON.stringify(recover[0]!['QUERY PLAN']);
    assert.match(recoverText, /"Index Name":"explain_leases_unsettled"/, recoverText);
    assert.doesNotMatch(recoverText, /"Node Type":"Seq Scan"/);
    // And it claims what is due, in due order.
    const claimed = await store.claimDueLeases(1e9 + 10, 2e9, 256);
    assert.deepEqual(claimed.map((l) => l.dueAt), Array.from({ length: 10 }, (_, i) => 1e9 + 1 + i));
  } finally {
    await store.close();
  }
});

test('concurrent claimers (two replicas) get disjoint leases, and all of them', async () => {
  const a = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'claims_', mode: 'tool' });
  const b = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'claims_', mode: 'tool' });
  try {
    await Promise.all(Array.from({ length: 400 }, (_, i) => a.insertLease(lease(`database/creds/r/${String(i).padStart(4, '0')}`, 100 + i))));
    const seen: string[] = [];
    await Promise.all(
      [a, b, a, b].map(async (store) => {
        for (;;) {
          const rows = await store.claimDueLeases(10_000, 50_000, 16);
          if (rows.length === 0) return;
          seen.push(...rows.map((r) => r.id));
        }
      }),
    );
    assert.equal(seen.length, 400, 'every due lease claimed');
    assert.equal(new Set(seen).size, 400, 'no lease claimed twice');
  } finally {
    await a.close();
    await b.close();
  }
});

test('replicas starting at once migrate once (advisory lock); schema version recorded', async () => {
  const stores = await Promise.all(Array.from({ length: 5 }, () => PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'race_', mode: 'tool' })));
  try {
    const version = await db.query<{ version: number }>('SELECT version FROM race_schema_version');
    assert.deepEqual(version, [{ version: pgMigrations.length }]);
    await stores[0]!.putEntry('x', Buffer.from('y'));
    assert.deepEqual(await stores[4]!.getEntry('x'), Buffer.from('y'));
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('store lock: one single-node broker per store; HA nodes share it but never with a single-node broker', async () => {
  const single = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock_', mode: 'single' });
  await assert.rejects(PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock_', mode: 'single' }), /in use by another dbroker/);
  await assert.rejects(PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock_', mode: 'ha' }), /without HA/);
  const other = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock2_', mode: 'single' });
  await other.close();
  await single.close();
  const ha1 = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock_', mode: 'ha' });
  const ha2 = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock_', mode: 'ha' });
  await assert.rejects(PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'lock_', mode: 'single' }), /in use by another dbroker/);
  await ha1.close();
  await ha2.close();
});

test('store lock: a closed store has let its lock go, so a broker started at once on it gets it (single or HA)', async () => {
  // pool.end() does not wait for the server to end the lock's session: close unlocks first.
  // Without that, the second open failed most times here ("in use by another dbroker").
  for (let i = 0; i < 20; i++) {
    const single = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'relock_', mode: 'single' });
    await single.close();
    const ha = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'relock_', mode: i % 2 === 0 ? 'ha' : 'single' });
    await ha.close();
  }
});

test('fencing: writes carry the fencing number; after a takeover the old leader commits nothing', async () => {
  const a = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'fence_', mode: 'ha' });
  const b = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'fence_', mode: 'ha' });
  try {
    const ea = new Election(a.queryable, 'fence_', 'node-a', 'http://a:1', 'http://a:2', 2);
    const eb = new Election(b.queryable, 'fence_', 'node-b', 'http://b:1', 'http://b:2', 2);
    const fa = await ea.tryAcquire();
    assert.equal(fa, 1);
    assert.equal(await eb.tryAcquire(), undefined, 'a live lease is not taken');
    a.setFence(fa!);
    await a.insertLease(lease('database/creds/r/a1', 10));
    await a.putEntry('core/x', Buffer.from('by a'));
    // b, a standby, may not write at all.
    b.setFence(0, () => false);
    await assert.rejects(b.putEntry('core/x', Buffer.from('by b')), FencedError);
    // a's lease runs out (it is "paused"); b takes over with a higher number.
    await db.query("UPDATE fence_ha_leader SET expires_at = clock_timestamp() - interval '1 second'");
    const fb = await eb.tryAcquire();
    assert.equal(fb, 2);
    b.setFence(fb!);
    // Every kind of write of the old leader is refused, in the store, not only by its own belief.
    for (const write of [
      () => a.updateLease('database/creds/r/a1', { state: 'revoking' }),
      () => a.deleteLease('database/creds/r/a1'),
      () => a.claimDueLeases(1_000, 2_000, 10),
      () => a.recoverInterrupted(5),
      () => a.expediteLeases({ prefix: '' }, 1),
      () => a.putEntry('core/x', Buffer.from('late a')),
      () => a.deleteEntry('core/x'),
      () => a.insertLease(lease('database/creds/r/a2', 10)),
    ]) {
      await assert.rejects(write(), (err: unknown) => err instanceof FencedError && /fencing number is 1, the store's is 2/.test(err.message));
    }
    assert.equal(await ea.renew(fa!), false, 'the old leader cannot renew either');
    assert.deepEqual(await b.getEntry('core/x'), Buffer.from('by a'));
    assert.equal((await b.getLease('database/creds/r/a1'))?.state, 'active');
    assert.equal(await b.getLease('database/creds/r/a2'), undefined);
    // The new leader writes; a local guard that says "my lease ran out" refuses without asking the store.
    await b.updateLease('database/creds/r/a1', { attempts: 1 });
    b.setFence(fb!, () => false);
    await assert.rejects(b.updateLease('database/creds/r/a1', { attempts: 2 }), FencedError);
    assert.equal((await a.getLease('database/creds/r/a1'))?.attempts, 1);
    // Release hands it over at once: the next one gets 3.
    await eb.release(fb!);
    assert.equal(await ea.tryAcquire(), 3);
    assert.equal((await ea.current()).holder, 'node-a');
  } finally {
    await a.close();
    await b.close();
  }
});

test('a takeover waits for a fenced write in flight, so that write is ordered before it', async () => {
  const a = await PostgresStorage.open({ connectionUrl: db.url, tablePrefix: 'order_', mode: 'ha' });
  try {
    const ea = new Election(a.queryable, 'order_', 'node-a', 'http://a:1', 'http://a:1', 2);
    a.setFence((await ea.tryAcquire())!);
    await db.query("UPDATE order_ha_leader SET expires_at = clock_timestamp() - interval '1 second'");
    // Hold the leadership row FOR SHARE in another session, as a fenced write in flight does.
    const pg = (await import('pg')).default;
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT fence FROM order_ha_leader WHERE id = 1 FOR SHARE');
    const eb = new Election(a.queryable, 'order_', 'node-b', 'http://b:1', 'http://b:1', 2);
    let taken = false;
    const takeover = eb.tryAcquire().then((f) => ((taken = true), f));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(taken, false, 'the takeover waits for the write in flight');
    await holder.query('COMMIT');
    await holder.end();
    assert.equal(await takeover, 2);
  } finally {
    await a.close();
  }
});
