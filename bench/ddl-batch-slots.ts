// Raw throughput of batched user DDL with K batch transactions in flight at
// once (no broker): the measurement behind slotsPerKind in
// src/database/ddl-batcher.ts. Batches of 64 users: PostgreSQL CREATE ROLE +
// GRANT of a group role, each in a savepoint, in one transaction, then
// DROP OWNED / DROP ROLE of 64 in one transaction; MariaDB CREATE USER + GRANT
// as one multi-statement round trip, then one DROP USER of 64. Interleaved
// rounds of K = 1, 2, 4; prints the medians. Every user made is dropped.
//
//   node --import tsx bench/ddl-batch-slots.ts   (SECS=3 ROUNDS=4 by default;
//   DBROKER_TEST_PG_URL / DBROKER_TEST_MYSQL_URL name the servers)
import pg from 'pg';
import { createPool } from 'mysql2/promise';
import { randomBytes } from 'node:crypto';

const N = 64;
const SECONDS = Number(process.env.SECS ?? 3);
const ROUNDS = Number(process.env.ROUNDS ?? 4);
const P = 'ks' + randomBytes(3).toString('hex');
let seq = 0;
const name = () => `${P}_${seq++}`;

async function pgRound(k: number, pool: pg.Pool): Promise<[number, number]> {
  const made: string[] = [];
  const end = Date.now() + SECONDS * 1000;
  let created = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: k }, async () => {
    while (Date.now() < end) {
      const users = Array.from({ length: N }, name);
      const sql = ['BEGIN', ...users.flatMap((u) => [`SAVEPOINT s`, `CREATE ROLE "${u}" LOGIN PASSWORD 'x${u}' VALID UNTIL '2030-01-01'`, `GRANT ${P}_grp TO "${u}"`, `RELEASE SAVEPOINT s`]), 'COMMIT'].join(';');
      await pool.query(sql);
      created += N; made.push(...users);
    }
  }));
  const cRate = created / ((Date.now() - t0) / 1000);
  const t1 = Date.now();
  let dropped = 0;
  let next = 0;
  await Promise.all(Array.from({ length: k }, async () => {
    while (next < made.length) {
      const users = made.slice(next, next + N); next += N;
      const list = users.map((u) => `"${u}"`).join(', ');
      await pool.query(`BEGIN; DROP OWNED BY ${list}; DROP ROLE ${list}; COMMIT`);
      dropped += users.length;
    }
  }));
  return [cRate, dropped / ((Date.now() - t1) / 1000)];
}

async function myRound(k: number, pool: ReturnType<typeof createPool>): Promise<[number, number]> {
  const made: string[] = [];
  const end = Date.now() + SECONDS * 1000;
  let created = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: k }, async () => {
    while (Date.now() < end) {
      const users = Array.from({ length: N }, name);
      const sql = users.flatMap((u) => [`CREATE USER '${u}'@'%' IDENTIFIED BY 'x${u}'`, `GRANT SELECT ON test.* TO '${u}'@'%'`]).join(';');
      await pool.query(sql);
      created += N; made.push(...users);
    }
  }));
  const cRate = created / ((Date.now() - t0) / 1000);
  const t1 = Date.now();
  let dropped = 0; let next = 0;
  await Promise.all(Array.from({ length: k }, async () => {
    while (next < made.length) {
      const users = made.slice(next, next + N); next += N;
      await pool.query(`DROP USER ${users.map((u) => `'${u}'@'%'`).join(', ')}`);
      dropped += users.length;
    }
  }));
  return [cRate, dropped / ((Date.now() - t1) / 1000)];
}

const pgPool = new pg.Pool({ connectionString: process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres', max: 4 });
await pgPool.query(`CREATE ROLE ${P}_grp`);
const myPool = createPool({ uri: process.env.DBROKER_TEST_MYSQL_URL || 'mysql://root@127.0.0.1:3306/test', connectionLimit: 4, multipleStatements: true });
const res: Record<string, number[][]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const k of [1, 2, 4]) {
    (res[`pg K=${k}`] ??= []).push(await pgRound(k, pgPool));
    (res[`my K=${k}`] ??= []).push(await myRound(k, myPool));
  }
}
const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [key, rows] of Object.entries(res)) console.log(key, 'create/s median', Math.round(med(rows.map((r) => r[0]!))), 'drop/s median', Math.round(med(rows.map((r) => r[1]!))), 'all', rows.map((r) => r.map(Math.round).join('/')).join(' '));
await pgPool.query(`DROP ROLE ${P}_grp`);
await pgPool.end(); await myPool.end();
