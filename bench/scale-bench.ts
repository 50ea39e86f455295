// The store with many leases (a measurement, never a test): a real broker on
// a fresh store (SQLite file or PostgreSQL database), filled with copies of a
// real lease row up to 1,000,000 (not due for a year, so the revocation loop
// leaves them alone); then for each size: restart, unseal, and time unseal →
// first served credential (median and spread of --rounds restarts), and the
// broker's RSS after it. Nothing on the unseal path may grow with the lease
// count. The store and the users made are dropped at the end.
//
//   node --import tsx bench/scale-bench.ts [--store sqlite|postgresql|both] [--max 1000000] [--rounds 5] [--compare ../other-checkout]

import Database from 'better-sqlite3';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { initAndUnseal, pgStoreConfig, startBroker, unseal, type ApiResponse, type BrokerProcess } from '../test/support/broker.ts';
import { createStoreDatabase, type StoreDatabase } from '../test/support/pg-store.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../test/support/scram-postgres.ts';
import { findPidByArgument, rssMiB } from './process-rss.ts';

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'both' },
    max: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '5' },
    /** Another checkout of dbroker (a path): its broker is measured too, round by round interleaved with this one, on its own store. */
    compare: { type: 'string' },
  },
});
const MAX = Number(values.max);
const ROUNDS = Number(values.rounds);
const stores = values.store === 'both' ? ['sqlite', 'postgresql'] : [values.store!];
const progress = (m: string): void => void process.stderr.write(`scale-bench: ${m}\n`);
const compareStart: typeof startBroker | undefined = values.compare
  ? ((await import(pathToFileURL(resolve(values.compare, 'test/support/broker.ts')).href)) as { startBroker: typeof startBroker }).startBroker
  : undefined;
const YEAR_AHEAD = Date.now() + 365 * 86_400_000;
/** Rows per transaction while filling. */
const FILL_BATCH = 50_000;

/** Fills the store with copies of the template lease up to a size; the broker is stopped meanwhile when the store needs it. */
interface Filler {
  fill(from: number, to: number): Promise<void>;
  /** The store needs the broker stopped (SQLite: one process per file). */
  exclusive: boolean;
  close(): Promise<void>;
}

const LEASE_COPY_COLUMNS = ['mount', 'role', 'connection', 'state', 'issue_time', 'last_renewal', 'attempts', 'last_error', 'token_hash', 'sealed'];

function sqliteFiller(path: string, templateId: string): Filler {
  return {
    exclusive: true,
    async fill(from, to) {
      const db = new Database(path);
      try {
        db.pragma('journal_mode = WAL');
        const cols = LEASE_COPY_COLUMNS.join(', ');
        // One statement per batch, the rows made inside SQLite (ids as the PostgreSQL filler makes them).
        const insert = db.prepare(
          `WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)
           INSERT INTO leases (id, ${cols}, expire_time, max_expire_time, due_at)
           SELECT 'database/creds/app/bench' || substr('0000000' || i, -8), ${cols}, ?, ?, ? FROM n, (SELECT * FROM leases WHERE id = ?)`,
        );
        for (let start = from; start <= to; start += FILL_BATCH) insert.run(start, Math.min(to, start + FILL_BATCH - 1), YEAR_AHEAD, YEAR_AHEAD, YEAR_AHEAD, templateId);
        db.exec('ANALYZE');
      } finally {
        db.close();
      }
    },
    async close() {},
  };
}

function pgFiller(db: StoreDatabase, templateId: string): Filler {
  return {
    exclusive: false,
    async fill(from, to) {
      const cols = LEASE_COPY_COLUMNS.join(', ');
      for (let start = from; start <= to; start += FILL_BATCH * 4) {
        await db.query(
          `INSERT INTO dbroker_leases (id, ${cols}, expire_time, max_expire_time, due_at)
           SELECT 'database/creds/app/bench' || lpad(i::text, 8, '0'), ${cols}, $1::bigint, $1::bigint, $1::bigint
           FROM dbroker_leases, generate_series($2::int, $3::int) AS i WHERE id = $4`,
          [YEAR_AHEAD, start, Math.min(to, start + FILL_BATCH * 4 - 1), templateId],
        );
      }
      // So that autovacuum has nothing left to do on the new rows while the unseals are timed.
      await db.query('VACUUM (ANALYZE) dbroker_leases');
    },
    async close() {
      await db.drop();
    },
  };
}

/**
 * CPU time (ms) all threads of process `pid` have run so far, from
 * /proc/<pid>/task/<tid>/schedstat (ns, Linux): unlike the wall time it
 * hardly moves with the machine's load. NaN when unavailable.
 */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    return ns / 1e6;
  } catch {
    return NaN;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** One broker under test: this checkout's, or the --compare one's, each on its own store. */
interface Variant {
  label: string;
  broker: BrokerProcess;
  keys: string[];
  api: (method: string, path: string, body?: unknown) => Promise<ApiResponse>;
  filler: Filler;
  times: number[];
  cpu: number[];
  rss: number;
}

async function setUp(label: string, start: typeof startBroker, store: string, target: TestPostgres, prefix: string): Promise<Variant> {
  const pgDb = store === 'postgresql' ? await createStoreDatabase('scalebench') : undefined;
  const broker = await start(pgDb ? { config: pgStoreConfig(pgDb.url) } : {});
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
    if (conn.status >= 300) throw new Error(conn.text);
    const role = await api('PUT', 'database/roles/app', {
      db_name: 'main',
      creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
      username_template: `{{ printf "${prefix}%s" (random 20) }}`,
      default_ttl: '1h',
    });
    if (role.status >= 300) throw new Error(role.text);
    // A real lease row is the template of every copy (its sealed blob included); its own user stays until the end.
    const template = await api('GET', 'database/creds/app');
    if (template.status !== 200) throw new Error(template.text);
    const templateId = template.body.lease_id as string;
    const filler = pgDb ? pgFiller(pgDb, templateId) : sqliteFiller(broker.storagePath, templateId);
    return { label, broker, keys, api, filler, times: [], cpu: [], rss: NaN };
  } catch (err) {
    await broker.stop();
    broker.remove();
    await pgDb?.drop();
    throw err;
  }
}

/** Restart, then time unseal → first served credential. */
async function measure(v: Variant): Promise<void> {
  await v.broker.restart();
  const pid = findPidByArgument(v.broker.configPath);
  const cpuBefore = cpuMs(pid);
  const started = performance.now();
  await unseal(v.broker, v.keys);
  const creds = await v.api('GET', 'database/creds/app');
  v.times.push(performance.now() - started);
  v.cpu.push(cpuMs(pid) - cpuBefore);
  if (creds.status !== 200) throw new Error(creds.text);
  v.rss = rssMiB(pid);
  await v.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id });
}

async function runStore(store: string, target: TestPostgres, prefix: string): Promise<void> {
  const variants: Variant[] = [];
  try {
    variants.push(await setUp('this', startBroker, store, target, prefix));
    if (compareStart) variants.push(await setUp('compare', compareStart, store, target, prefix));
    console.log(`\n${store} store: ${ROUNDS} restarts per size${compareStart ? `, interleaved with ${values.compare}` : ''}`);
    console.log('leases in the store | broker  | unseal → first creds, median (min–max) ms | broker CPU in it, median ms | broker RSS after (MiB)');
    let rows = 1;
    for (const size of [1, 10_000, 100_000, MAX].filter((s, i, a) => s <= MAX && a.indexOf(s) === i)) {
      if (size > rows) {
        for (const v of variants) {
          progress(`${store} (${v.label}): adding leases up to ${size}`);
          const started = performance.now();
          if (v.filler.exclusive) await v.broker.stop();
          await v.filler.fill(rows, size - 1);
          if (v.filler.exclusive) await v.broker.start();
          progress(`${store} (${v.label}): filled in ${((performance.now() - started) / 1000).toFixed(1)} s`);
        }
        rows = size;
      }
      for (const v of variants) (v.times = []), (v.cpu = []);
      for (let round = 0; round < ROUNDS; round++) for (const v of variants) await measure(v);
      for (const v of variants) {
        const spread = `${median(v.times).toFixed(0)} (${Math.min(...v.times).toFixed(0)}–${Math.max(...v.times).toFixed(0)})`;
        console.log(`${String(size).padStart(19)} | ${v.label.padEnd(7)} | ${spread.padStart(41)} | ${median(v.cpu).toFixed(0).padStart(28)} | ${v.rss.toFixed(0).padStart(22)}`);
      }
    }
  } finally {
    for (const v of variants) {
      await v.broker.stop();
      v.broker.remove();
      await v.filler.close();
    }
  }
}

const target = await trustPostgres();
const prefix = `ssb${Date.now() % 100000}`;
try {
  for (const store of stores) await runStore(store, target, prefix);
} finally {
  const left = await adminQuery<{ rolname: string }>(target, 'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix]);
  for (const r of left) await adminQuery(target, `DROP ROLE IF EXISTS "${r.rolname}"`);
  await target.stop();
}
