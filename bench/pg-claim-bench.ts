// PostgreSQL store at scale (a measurement, never a test): the time to claim
// 256 due leases (FOR UPDATE SKIP LOCKED through the due_at index) as the
// lease table grows to 1,000,000 rows; it should stay flat. A fresh database
// on the local server, dropped at the end.
//
//   node --import tsx bench/pg-claim-bench.ts [--max 1000000]

import { parseArgs } from 'node:util';
import { PostgresStorage } from '../src/storage/postgres-storage.ts';
import { createStoreDatabase } from '../test/support/pg-store.ts';
import { fmt, percentile } from './stats.ts';

const { values } = parseArgs({ options: { max: { type: 'string', default: '1000000' } } });
const MAX = Number(values.max);
const progress = (m: string): void => void process.stderr.write(`pg-claim-bench: ${m}\n`);

const db = await createStoreDatabase('claimbench');
const store = await PostgresStorage.open({ connectionUrl: db.url, mode: 'tool' });
try {
  const FUTURE = 4e12; // not due
  let rows = 0;
  console.log('leases in the table | claim of 256 due leases: p50 / p95 / max (ms)');
  for (const size of [10_000, 100_000, MAX].filter((s, i, a) => s <= MAX && a.indexOf(s) === i)) {
    progress(`filling to ${size} leases`);
    await db.query(
      `INSERT INTO dbroker_leases (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, due_at, sealed)
       SELECT 'database/creds/r/' || lpad(i::text, 8, '0'), 'database/', 'r', 'c', 'active', 0, $1::bigint + i, $1::bigint + i, $1::bigint + i, '\\x00'
       FROM generate_series($2::int, $3::int) AS i`,
      [FUTURE, rows + 1, size],
    );
    rows = size;
    await db.query('ANALYZE dbroker_leases');
    const samples: number[] = [];
    for (let round = 0; round < 20; round++) {
      // 256 leases become due now, then are claimed.
      await db.query(`UPDATE dbroker_leases SET due_at = 1000 + $1 WHERE id IN (SELECT id FROM dbroker_leases WHERE due_at >= $2::bigint ORDER BY id OFFSET $3 LIMIT 256)`, [
        round,
        FUTURE,
        round * 256,
      ]);
      const t = performance.now();
      const claimed = await store.claimDueLeases(100_000, FUTURE - 1, 256);
      samples.push(performance.now() - t);
      if (claimed.length !== 256) throw new Error(`claimed ${claimed.length}, expected 256`);
    }
    console.log(`${String(size).padStart(19)} | ${fmt(percentile(samples, 50), 1)} / ${fmt(percentile(samples, 95), 1)} / ${fmt(Math.max(...samples), 1)}`);
  }
} finally {
  await store.close();
  await db.drop();
}
