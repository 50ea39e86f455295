// Creations during a drain, in process (no broker, no HTTP, no lease store):
// the DdlBatcher of src/database/ddl-batcher.ts on a real engine, fed N due
// drops the way the revocation loop feeds it (256 held at a time), while one
// client creates users one after another through the same batcher (3 ms
// between requests, about what the broker's HTTP path adds). Prints the
// drain rate against the same server's raw serial DROP, and the creation
// latency during the drain against the same client's just before (unloaded).
// The measurement behind DROP_BATCH_NEAR_CREATES and its neighbours.
//
//   node --import tsx bench/drain-contention.ts
//   ENGINE=mysql|postgres (mysql), N=2000 drops, BATCHER=<path of another
//   ddl-batcher.ts to compare with, e.g. /work/main/src/database/ddl-batcher.ts>,
//   VERBOSE=1 prints MariaDB's process list when a creation takes over 40 ms,
//   DROPS=<batch>/<slots>[/alongside] or none: the engine's dropsNearCreates to use instead of its own.
//   PostgreSQL: postgres@127.0.0.1:5432 (trust); MariaDB: test/support/mariadb.ts.
//
// Every user made is dropped at the end. Keep it short on a shared machine:
// one run is about 20 s.

import { randomBytes } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import mysql from '../plugins/mysql/index.ts';
import postgres from '../plugins/postgres/index.ts';
import { mapEngineError } from '../src/database/connections.ts';
import type { BatcherConnection, DdlBatcher as Batcher, Outcome } from '../src/database/ddl-batcher.ts';
import type { Engine, NewUserRequest } from '../src/engine/engine.ts';
import { mysqlConfig, target } from '../test/support/mariadb.ts';
import { TARGETS } from './targets/index.ts';

const ENGINE = process.env['ENGINE'] ?? 'mysql';
const N = Number(process.env['N'] ?? 2000);
const { DdlBatcher } = (await import(process.env['BATCHER'] ?? '../src/database/ddl-batcher.ts')) as { DdlBatcher: typeof Batcher };
const P = 'kd' + randomBytes(3).toString('hex');
let seq = 0;

const engine: Engine = ENGINE === 'mysql' ? mysql.create() : postgres.create();
await engine.initialize(
  ENGINE === 'mysql'
    ? mysqlConfig({ maxOpenConnections: 8 })
    : { connectionUrl: 'postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres', username: 'postgres', password: 'unused', maxOpenConnections: 8, options: {} },
  { verify: true },
);
const statements =
  ENGINE === 'mysql'
    ? [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`, `GRANT SELECT ON ${target.database}.* TO '{{name}}'@'%'`]
    : [`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, 'GRANT pg_read_all_data TO "{{name}}"'];
const dropsEnv = process.env['DROPS'];
const dropsNear = dropsEnv === 'none' ? undefined : dropsEnv ? { batch: Number(dropsEnv.split('/')[0]), slots: Number(dropsEnv.split('/')[1]), alongside: dropsEnv.endsWith('/alongside') } : engine.dropsNearCreates;
const connection: BatcherConnection = {
  name: 'main',
  run: async (secrets, op) => {
    try {
      return await op(engine);
    } catch (err) {
      throw mapEngineError('main', err, secrets);
    }
  },
  mapError: (err, secrets) => mapEngineError('main', err, secrets),
  // The engine's own limits (Connections.shape), or DROPS=<batch>/<slots> to try others ("none": drops batch as creations do).
  shape: () => ({ maxOpen: 8, newUsers: true, deleteUsers: true, ...(engine.createSlots !== undefined ? { createSlots: engine.createSlots } : {}), ...(dropsNear ? { dropsNearCreates: dropsNear } : {}) }),
  mayAct: () => true,
};
const batcher = new DdlBatcher(connection);

const request = (): NewUserRequest => ({
  username: `${P}_${seq++}`,
  password: `Aa1-${randomBytes(8).toString('hex')}`,
  expiration: new Date(Date.now() + 3_600_000),
  creationStatements: statements,
  rollbackStatements: [],
});
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A lease write stands in for the caller's settle step: about a millisecond. */
async function settle<V>(outcome: Outcome<V>): Promise<V> {
  await pause(1);
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

const spy = ENGINE === 'mysql' && process.env['VERBOSE'] ? await createConnection({ host: target.host, port: target.port, user: target.user, password: target.password }) : undefined;
async function processList(): Promise<void> {
  const [rows] = await spy!.query("SELECT ID, TIME_MS, STATE, LEFT(INFO, 60) AS q FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Sleep' AND ID <> CONNECTION_ID()");
  console.log((rows as Array<Record<string, unknown>>).map((r) => `  ${String(r['ID'])} ${Number(r['TIME_MS']).toFixed(0)} ms ${String(r['STATE'])} | ${String(r['q'])}`).join('\n'));
}

async function make(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i += 64) {
    const batch = Array.from({ length: Math.min(64, n - i) }, request);
    const failed = (await engine.newUsers!(batch)).find((o) => o !== undefined);
    if (failed) throw failed;
    out.push(...batch.map((r) => r.username));
  }
  return out;
}

const made: string[] = [];
async function creator(stop: () => boolean): Promise<number[]> {
  const latencies: number[] = [];
  while (!stop()) {
    const r = request();
    const t = performance.now();
    const watch = spy ? setTimeout(() => void processList(), 40) : undefined;
    await batcher.create(r, settle);
    clearTimeout(watch);
    latencies.push(performance.now() - t);
    made.push(r.username);
    await pause(3);
  }
  return latencies;
}

try {
  // Raw serial DROP from one session, as bench/drain-bench.ts's baseline.
  const raw = await make(500);
  const direct = await (ENGINE === 'mysql' ? TARGETS['mysql']! : TARGETS['postgres']!).openDirect();
  const t = performance.now();
  for (const username of raw) await direct.dropUser(username);
  await direct.close();
  const rawRate = (raw.length / (performance.now() - t)) * 1000;

  const users = await make(N);
  const until = Date.now() + 2000;
  const unloaded = await creator(() => Date.now() > until);
  await pause(600);
  let drained = false;
  const during = creator(() => drained);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (next < users.length) await batcher.drop({ username: users[next++]!, statements: [] }, settle);
    }),
  );
  const rate = (N / (performance.now() - t0)) * 1000;
  drained = true;
  const loaded = await during;
  console.log(
    `${ENGINE} ${process.env['BATCHER'] ? 'BATCHER=' + process.env['BATCHER'] : 'this batcher'}: drain ${rate.toFixed(0)}/s, raw serial DROP ${rawRate.toFixed(0)}/s (${(rate / rawRate).toFixed(2)}×); ` +
      `creation p50 / p99 unloaded ${pct(unloaded, 0.5).toFixed(1)} / ${pct(unloaded, 0.99).toFixed(1)} ms (n ${unloaded.length}), ` +
      `during ${pct(loaded, 0.5).toFixed(1)} / ${pct(loaded, 0.99).toFixed(1)} ms (n ${loaded.length}): p99 ${(pct(loaded, 0.99) / pct(unloaded, 0.99)).toFixed(2)}×`,
  );
} finally {
  for (let i = 0; i < made.length; i += 64) await engine.deleteUsers!(made.slice(i, i + 64).map((username) => ({ username, statements: [] })));
  // Whatever an interrupted run left (the users made for the drain, the raw baseline's).
  const left = await (ENGINE === 'mysql' ? TARGETS['mysql']! : TARGETS['postgres']!).dropUsers(P);
  if (left > 0) console.error(`dropped ${left} leftover ${P}* users`);
  await engine.close();
  await spy?.end();
}
