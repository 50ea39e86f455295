// The SQLite store's lease table: group commit of concurrent writes, and
// finding due leases through the index without reading the rest.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStorage } from '../../../src/storage/sqlite-storage.ts';
import type { LeaseRow } from '../../../src/storage/storage.ts';

const dir = mkdtempSync(join(tmpdir(), 'dbroker-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

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

test('concurrent lease writes share a commit; one failing write rejects alone', async () => {
  const path = join(dir, 'group.db');
  const store = new SqliteStorage(path);
  await store.insertLease(lease('database/creds/r/dup', 10));
  const results = await Promise.allSettled([
    store.insertLease(lease('database/creds/r/a', 1)),
    store.insertLease(lease('database/creds/r/dup', 2)), // primary key clash
    store.insertLease(lease('database/creds/r/b', 3)),
    store.updateLease('database/creds/r/dup', { attempts: 7 }),
    store.deleteLease('database/creds/r/missing'),
  ]);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
  assert.match(String((results[1] as PromiseRejectedResult).reason), /UNIQUE/);
  // Every fulfilled write is on disk once its promise settled: read through another connection.
  const other = new Database(path, { readonly: true });
  try {
    const rows = other.prepare('SELECT id, due_at, attempts FROM leases ORDER BY id').all();
    assert.deepEqual(rows, [
      { id: 'database/creds/r/a', due_at: 1, attempts: 0 },
      { id: 'database/creds/r/b', due_at: 3, attempts: 0 },
      { id: 'database/creds/r/dup', due_at: 10, attempts: 7 },
    ]);
  } finally {
    other.close();
  }
  await store.close();
});

test('writes queued when the store closes are committed, later ones fail', async () => {
  const store = new SqliteStorage(join(dir, 'close.db'));
  const queued = store.insertLease(lease('database/creds/r/q', 1));
  await store.close();
  await queued;
  await assert.rejects(store.insertLease(lease('database/creds/r/late', 1)));
  const reopened = new SqliteStorage(join(dir, 'close.db'));
  assert.equal((await reopened.getLease('database/creds/r/q'))?.dueAt, 1);
  await reopened.close();
});

test('due leases are claimed in due order through the index, a batch at a time', async () => {
  const path = join(dir, 'due.db');
  const store = new SqliteStorage(path);
  await Promise.all(Array.from({ length: 50 }, (_, i) => store.insertLease(lease(`database/creds/r/${String(i).padStart(3, '0')}`, i < 10 ? 100 + i : 10_000 + i))));
  const claimed = await store.claimDueLeases(1_000, 5_000, 4);
  assert.deepEqual(claimed.map((l) => l.dueAt), [100, 101, 102, 103]);
  assert.ok(claimed.every((l) => l.state === 'revoking'));
  const again = await store.claimDueLeases(1_000, 5_000, 100);
  assert.equal(again.length, 6, 'claimed leases are pushed out and not claimed twice');
  await store.close();
  const db = new Database(path, { readonly: true });
  try {
    const plan = db.prepare('EXPLAIN QUERY PLAN SELECT * FROM leases WHERE due_at <= ? ORDER BY due_at LIMIT ?').all(1, 1) as Array<{ detail: string }>;
    assert.ok(plan.some((p) => /USING INDEX/.test(p.detail)), JSON.stringify(plan));
    assert.ok(!plan.some((p) => /SCAN leases$/.test(p.detail)), 'never a full table scan');
    // Unseal's search for interrupted work reads only unsettled leases (the partial index), never the active ones.
    const recover = db.prepare("EXPLAIN QUERY PLAN UPDATE leases SET due_at = ? WHERE state IN ('pending', 'revoking') AND due_at > ?").all(1, 1) as Array<{ detail: string }>;
    assert.ok(recover.some((p) => /leases_unsettled/.test(p.detail)), JSON.stringify(recover));
  } finally {
    db.close();
  }
});

test('storage prefix queries are literal string prefixes: "%", "_" and "\\" are no wildcards (the "<prefix>/" rule is the lease manager\'s)', async () => {
  const store = new SqliteStorage(join(dir, 'prefix.db'));
  const ids = ['db/creds/a_b/1', 'db/creds/axb/1', 'db/creds/a%b/1', 'db/creds/a%bc/1', 'db/creds/a\\b/1', 'db/creds/app/1', 'db/creds/app-admin/1', 'db/creds/app/2'];
  await Promise.all(ids.map((id) => store.insertLease(lease(id, 10_000))));
  assert.deepEqual(await store.listLeaseIds('db/creds/a_b/', 100), ['db/creds/a_b/1']);
  assert.deepEqual(await store.listLeaseIds('db/creds/a%b/', 100), ['db/creds/a%b/1']);
  assert.deepEqual(await store.listLeaseIds('db/creds/a\\b/', 100), ['db/creds/a\\b/1']);
  assert.deepEqual(await store.listLeaseIds('db/creds/app/', 100), ['db/creds/app/1', 'db/creds/app/2']);
  // Paging resumes after `after`, still within the prefix.
  assert.deepEqual(await store.listLeaseIds('db/creds/app/', 1, 'db/creds/app/1'), ['db/creds/app/2']);
  assert.equal(await store.countLeases({ prefix: 'db/creds/a_' }), 1);
  assert.equal(await store.countLeases({ prefix: 'db/creds/a%' }), 2);
  assert.equal(await store.expediteLeases({ prefix: 'db/creds/a_b/' }, 5), 1);
  assert.equal((await store.getLease('db/creds/axb/1'))?.dueAt, 10_000);
  assert.equal(await store.deleteLeases('db/creds/app/'), 2);
  assert.deepEqual(await store.listLeaseIds('db/creds/app', 100), ['db/creds/app-admin/1']);
  await store.close();
});

test('group commit: concurrent writes of every kind are each on disk when they settle; a failing one fails alone', async () => {
  const path = join(dir, 'mixed.db');
  const store = new SqliteStorage(path);
  const token = (i: number) => ({ idHash: `t${i}`, accessorHash: `a${i}`, parentHash: null, expiresAt: null, usesLeft: 3, sealed: Buffer.from('s') });
  await store.insertToken(token(0));
  const other = new Database(path, { readonly: true });
  try {
    const seen: string[] = [];
    // Each write, once settled, is read back through another connection at once.
    const check = (what: string, sql: string, ...args: unknown[]) => () => {
      assert.ok(other.prepare(sql).get(...args), `${what} visible when its promise settled`);
      seen.push(what);
    };
    const writes: Array<Promise<unknown>> = [];
    for (let i = 1; i <= 40; i++) {
      writes.push(store.insertToken(token(i)).then(check(`token ${i}`, 'SELECT 1 FROM tokens WHERE id_hash = ?', `t${i}`)));
      writes.push(store.putEntry(`core/e${i}`, Buffer.from('x')).then(check(`entry ${i}`, 'SELECT 1 FROM entries WHERE path = ?', `core/e${i}`)));
      writes.push(store.insertLease(lease(`database/creds/r/${i}`, i)).then(check(`lease ${i}`, 'SELECT 1 FROM leases WHERE id = ?', `database/creds/r/${i}`)));
    }
    const used = store.useToken('t0');
    const duplicate = store.insertToken(token(0));
    const results = await Promise.allSettled([...writes, used, duplicate]);
    assert.equal(results.filter((r) => r.status === 'rejected').length, 1, 'only the duplicate fails');
    assert.match(String((results.at(-1) as PromiseRejectedResult).reason), /UNIQUE/);
    assert.deepEqual(await used, { ok: true, left: 2 });
    assert.equal((other.prepare('SELECT uses_left FROM tokens WHERE id_hash = ?').get('t0') as { uses_left: number }).uses_left, 2);
    assert.equal(seen.length, 120);
  } finally {
    other.close();
  }
  await store.close();
});

test('a write that settled survives a crash of the process right after', async () => {
  const path = join(dir, 'crash.db');
  const script = `
    import { SqliteStorage } from ${JSON.stringify(join(import.meta.dirname, '../../../src/storage/sqlite-storage.ts'))};
    const store = new SqliteStorage(${JSON.stringify(path)});
    await Promise.all(Array.from({ length: 25 }, (_, i) => store.putEntry('core/k' + i, Buffer.from('v' + i))));
    process.kill(process.pid, 'SIGKILL');
  `;
  const { spawnSync } = await import('node:child_process');
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.signal, 'SIGKILL', run.stderr);
  const store = new SqliteStorage(path);
  assert.equal((await store.listEntries('core/')).length, 25);
  assert.equal((await store.getEntry('core/k24'))?.toString(), 'v24');
  await store.close();
});

test('insertLeaseWriteAhead: a row committed but not yet fsynced survives a crash of the process (only a power loss could take it)', async () => {
  const path = join(dir, 'write-ahead-crash.db');
  const script = `
    import { SqliteStorage } from ${JSON.stringify(join(import.meta.dirname, '../../../src/storage/sqlite-storage.ts'))};
    const store = new SqliteStorage(${JSON.stringify(path)});
    const row = (i) => ({ id: 'database/creds/r/' + i, mount: 'database/', role: 'r', connection: 'c', state: 'pending', issueTime: 1, expireTime: 2,
      maxExpireTime: 3, lastRenewal: null, dueAt: 4, attempts: 0, lastError: null, tokenHash: null, sealed: Buffer.from('s') });
    const written = await Promise.all(Array.from({ length: 25 }, (_, i) => store.insertLeaseWriteAhead(row(i))));
    // Killed before awaiting any durable promise.
    process.kill(process.pid, 'SIGKILL');
  `;
  const { spawnSync } = await import('node:child_process');
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.signal, 'SIGKILL', run.stderr);
  const store = new SqliteStorage(path);
  assert.equal(await store.countLeases({}), 25);
  assert.equal((await store.getLease('database/creds/r/24'))?.state, 'pending');
  await store.close();
});
