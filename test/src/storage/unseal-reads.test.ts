// The unseal path reads nothing in proportion to the lease count (issue 11),
// on both stores, with many leases in them:
// - SQLite: an in-process broker on a real store file; every statement the
//   unseal (and the background work it starts) prepares is recorded, and
//   each one that touches the leases table must reach it by an index search,
//   never a scan.
// - PostgreSQL: a real broker process; the server's own counters of rows
//   read from the leases table (pg_stat_user_tables) from the broker's start
//   to its first served credential stay far below the lease count.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import pino from 'pino';
import { Broker } from '../../../src/broker.ts';
import { loadConfig } from '../../../src/config.ts';
import type { Reply } from '../../../src/http/route.ts';
import { SqliteStorage } from '../../../src/storage/sqlite-storage.ts';
import { eventually, initAndUnseal, pgStoreConfig, startBroker, unseal } from '../../support/broker.ts';
import { createStoreDatabase } from '../../support/pg-store.ts';
import { adminQuery, trustPostgres } from '../../support/scram-postgres.ts';

const LEASES = 20_000;
const YEAR_AHEAD = Date.now() + 365 * 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'dbroker-unseal-reads-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function request(broker: Broker, method: 'PUT' | 'GET', path: string, body: Record<string, unknown> = {}): Promise<Reply | undefined> {
  return broker.dispatch({ method, path, body, query: {}, requestId: `test-${path}` }, undefined);
}

/** Bind every parameter of `sql` (positional `?` and named `@name`) to null, for EXPLAIN. */
function nullParams(sql: string): unknown[] {
  const named = [...sql.matchAll(/@(\w+)/g)].map((m) => m[1]!);
  const positional = (sql.match(/\?/g) ?? []).length;
  return [...(named.length > 0 ? [Object.fromEntries(named.map((n) => [n, null]))] : []), ...Array.from({ length: positional }, () => null)];
}

test('SQLite store: with 20,000 leases, every statement of the unseal and the work it starts reaches the leases by an index search', async () => {
  const path = join(dir, 'unseal.db');
  const config = loadConfig(undefined, { DBROKER_STORAGE_PATH: path });
  const logger = pino({ level: 'silent' });
  let broker = new Broker(config, new SqliteStorage(path), logger);
  await broker.start();
  const init = await request(broker, 'PUT', 'sys/init', { secret_shares: 1, secret_threshold: 1 });
  const key = (init?.raw as { keys: string[] }).keys[0]!;
  await broker.stop();

  // Active leases not due for a year, and two whose revocation was under way (unseal must find those).
  const db = new Database(path);
  const insert = db.prepare(
    `INSERT INTO leases (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, due_at, sealed)
     VALUES (?, 'database/', 'app', 'main', ?, 0, ?, ?, ?, x'00')`,
  );
  db.transaction(() => {
    for (let i = 0; i < LEASES; i++) insert.run(`database/creds/app/${String(i).padStart(8, '0')}`, 'active', YEAR_AHEAD, YEAR_AHEAD, YEAR_AHEAD);
    for (const id of ['database/creds/app/interrupted-1', 'database/creds/app/interrupted-2']) insert.run(id, 'revoking', YEAR_AHEAD, YEAR_AHEAD, YEAR_AHEAD);
  })();
  db.exec('ANALYZE');
  db.close();

  const storage = new SqliteStorage(path);
  const inner = (storage as unknown as { db: Database.Database }).db;
  const prepared: string[] = [];
  const prepare = inner.prepare.bind(inner);
  inner.prepare = ((sql: string) => {
    prepared.push(sql);
    return prepare(sql);
  }) as typeof inner.prepare;
  broker = new Broker(config, storage, logger);
  try {
    await broker.start();
    await request(broker, 'PUT', 'sys/unseal', { key });
    assert.equal(broker.seal.sealed, false);
    // The revocation loop's and token expiry's first passes run right after; they are on the unseal path too.
    await eventually(async () => prepared.some((sql) => /FROM leases WHERE due_at <= \?/.test(sql)), 10_000, 'the revocation loop claims');
    const interrupted = await storage.getLease('database/creds/app/interrupted-1');
    assert.ok(interrupted && interrupted.dueAt < YEAR_AHEAD, 'unseal made the interrupted revocation due');
    assert.ok((await storage.getLease('database/creds/app/00000000'))?.dueAt === YEAR_AHEAD, 'an active lease is left alone');
  } finally {
    await broker.stop();
  }

  const touching = [...new Set(prepared)].filter((sql) => /\bleases\b/.test(sql) && !/^\s*INSERT/i.test(sql));
  assert.ok(touching.some((sql) => /state IN \('pending', 'revoking'\)/.test(sql)), `the search for interrupted work is among them: ${touching.join(' | ')}`);
  const check = new Database(path, { readonly: true });
  try {
    for (const sql of touching) {
      const plan = check.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...nullParams(sql)) as Array<{ detail: string }>;
      const onLeases = plan.filter((p) => /\bleases\b/.test(p.detail));
      assert.ok(onLeases.length > 0, `${sql}: ${JSON.stringify(plan)}`);
      for (const p of onLeases) assert.match(p.detail, /^SEARCH leases USING (INDEX|COVERING INDEX|INTEGER PRIMARY KEY)/, `${sql}: ${p.detail}`);
    }
  } finally {
    check.close();
  }
});

interface LeaseStats {
  seq_tup_read: number;
  /** Index entries read by every kind of index scan of the table's indexes (index-only scans included). */
  idx_tup_read: number;
  n_tup_ins: number;
}

test('PostgreSQL store: with 20,000 leases, start → unseal → first served credential reads a few lease rows, not the table', async () => {
  const store = await createStoreDatabase('unsealreads');
  const target = await trustPostgres();
  const prefix = `ur${Date.now() % 100000}`;
  const broker = await startBroker({ config: pgStoreConfig(store.url) });
  const stats = async (): Promise<LeaseStats> => {
    const [row] = await store.query<LeaseStats>(
      `SELECT t.seq_tup_read::int, (SELECT coalesce(sum(i.idx_tup_read), 0) FROM pg_stat_user_indexes i WHERE i.relid = t.relid)::int AS idx_tup_read, t.n_tup_ins::int
       FROM pg_stat_user_tables t WHERE t.relname = 'dbroker_leases'`,
    );
    return row!;
  };
  /** The counters once every broker session has ended and reported (sessions report at exit). */
  const settled = async (atLeastInserts: number): Promise<LeaseStats> => {
    let last = await stats();
    await eventually(
      async () => {
        await new Promise((r) => setTimeout(r, 500));
        const now = await stats();
        const same = JSON.stringify(now) === JSON.stringify(last);
        last = now;
        return same && now.n_tup_ins >= atLeastInserts;
      },
      30_000,
      'the leases table counters to settle',
    );
    return last;
  };
  try {
    const { rootToken, keys } = await initAndUnseal(broker);
    const api = (method: string, path: string, body?: unknown) => broker.api(method, path, { token: rootToken, ...(body !== undefined ? { body } : {}) });
    const conn = await api('PUT', 'database/config/main', {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgres://{{username}}:{{password}}@${target.host}:${target.port}/postgres`,
      username: target.adminUser,
      password: target.adminPassword,
      allowed_roles: '*',
    });
    assert.ok(conn.status < 300, conn.text);
    const role = await api('PUT', 'database/roles/app', {
      db_name: 'main',
      creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
      username_template: `{{ printf "${prefix}%s" (random 20) }}`,
      default_ttl: '1h',
    });
    assert.ok(role.status < 300, role.text);
    const first = await api('GET', 'database/creds/app');
    assert.equal(first.status, 200, first.text);
    // Copies of that real lease row, not due for a year.
    await store.query(
      `INSERT INTO dbroker_leases (id, mount, role, connection, state, issue_time, last_renewal, attempts, last_error, token_hash, sealed, expire_time, max_expire_time, due_at)
       SELECT 'database/creds/app/copy' || lpad(i::text, 8, '0'), mount, role, connection, state, issue_time, last_renewal, attempts, last_error, token_hash, sealed, $1::bigint, $1::bigint, $1::bigint
       FROM dbroker_leases, generate_series(1, $2::int) AS i WHERE id = $3`,
      [YEAR_AHEAD, LEASES, first.body.lease_id],
    );
    await store.query('ALTER TABLE dbroker_leases SET (autovacuum_enabled = false)');
    await store.query('ANALYZE dbroker_leases');

    await broker.stop();
    const before = await settled(0);
    await broker.start();
    await unseal(broker, keys);
    const creds = await api('GET', 'database/creds/app');
    assert.equal(creds.status, 200, creds.text);
    // Let the background work of the unseal (first revocation pass, token expiry, engine warm-up) run, then end every session.
    await new Promise((r) => setTimeout(r, 1_500));
    await broker.stop();
    const afterwards = await settled(before.n_tup_ins + 1);

    const rowsRead = afterwards.seq_tup_read - before.seq_tup_read + (afterwards.idx_tup_read - before.idx_tup_read);
    assert.ok(rowsRead < 200, `rows of the leases table read from start to the first credential: ${rowsRead} (of ${LEASES + 1}); counters ${JSON.stringify({ before, afterwards })}`);
    assert.ok(afterwards.n_tup_ins > before.n_tup_ins, 'the counters include the credential issued after the unseal');
  } finally {
    await broker.stop();
    broker.remove();
    await store.drop();
    for (const r of await adminQuery<{ rolname: string }>(target, 'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix])) await adminQuery(target, `DROP ROLE IF EXISTS "${r.rolname}"`);
    await target.stop();
  }
});
