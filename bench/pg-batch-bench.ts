// PostgreSQL batch DDL (a measurement, never a test): raw serial creation
// (one transaction per user: CREATE ROLE ... PASSWORD; GRANT SELECT ON ALL
// TABLES IN SCHEMA public) against the engine's newUsers in batches of 8, 32
// and 64, and raw serial DROP (DROP OWNED; DROP ROLE per transaction) against
// deleteUsers, in interleaved rounds on the server at DBROKER_TEST_PG_URL
// (default the local trust server), in a fresh database dropped at the end.
// Prints users/s, the ratios to raw serial, and `uptime`.
//
// --grant group: the creation grants a group role instead (no user-change
// lock); --scram: the engine sends SCRAM verifiers it computed
// (password_authentication=scram-sha-256) instead of the password, which the
// server would hash.
//
//   node --import tsx bench/pg-batch-bench.ts [--users 192] [--rounds 3] [--grant table|group] [--scram]

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import postgresEngine from '../plugins/postgres/index.ts';
import type { Engine, NewUserRequest } from '../src/engine/engine.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '192' },
    rounds: { type: 'string', default: '3' },
    grant: { type: 'string', default: 'table' },
    scram: { type: 'boolean', default: false },
  },
});
const USERS = Number(values.users);
const ROUNDS = Number(values.rounds);
const BATCHES = [8, 32, 64];
const progress = (m: string): void => void process.stderr.write(`pg-batch-bench: ${m}\n`);

const base = new URL(process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres');
const run = randomBytes(3).toString('hex');
const dbName = `dbroker_batchbench_${run}`;
const group = `bb_${run}_grp`;
const dbUrl = new URL(base);
dbUrl.pathname = `/${dbName}`;

const GRANT = values.grant === 'group' ? `GRANT ${group} TO "{{name}}"` : `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"`;
const CREATION = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, GRANT];
const password = (): string => `A-${randomBytes(16).toString('base64url').slice(0, 22)}`;
let seq = 0;
const nextName = (): string => `bb_${run}_${++seq}`;
const expiration = new Date(Date.now() + 3600_000);
const until = expiration.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '+00');

async function client(url: URL): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  return c;
}

async function rawCreate(c: pg.Client, names: string[]): Promise<number> {
  const start = performance.now();
  for (const name of names) {
    await c.query('BEGIN');
    await c.query(`CREATE ROLE "${name}" WITH LOGIN PASSWORD '${password()}' VALID UNTIL '${until}'`);
    await c.query(GRANT.replace('{{name}}', name));
    await c.query('COMMIT');
  }
  return names.length / ((performance.now() - start) / 1000);
}

async function rawDrop(c: pg.Client, names: string[]): Promise<number> {
  const start = performance.now();
  for (const name of names) {
    await c.query('BEGIN');
    await c.query(`DROP OWNED BY "${name}"`);
    await c.query(`DROP ROLE IF EXISTS "${name}"`);
    await c.query('COMMIT');
  }
  return names.length / ((performance.now() - start) / 1000);
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function engineCreate(engine: Engine, names: string[], batch: number): Promise<number> {
  const start = performance.now();
  for (const part of chunks(names, batch)) {
    const requests: NewUserRequest[] = part.map((username) => ({ username, password: password(), expiration, creationStatements: CREATION, rollbackStatements: [] }));
    const outcomes = await engine.newUsers!(requests);
    const failed = outcomes.filter((o) => o !== undefined);
    if (failed.length > 0) throw new Error(`newUsers: ${failed.length} failed: ${String(failed[0])}`);
  }
  return names.length / ((performance.now() - start) / 1000);
}

async function engineDrop(engine: Engine, names: string[], batch: number): Promise<number> {
  const start = performance.now();
  for (const part of chunks(names, batch)) {
    const outcomes = await engine.deleteUsers!(part.map((username) => ({ username, statements: [] })));
    const failed = outcomes.filter((o) => o instanceof Error);
    if (failed.length > 0) throw new Error(`deleteUsers: ${failed.length} failed: ${String(failed[0])}`);
  }
  return names.length / ((performance.now() - start) / 1000);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const admin = await client(base);
await admin.query(`CREATE DATABASE ${dbName}`);
await admin.query(`CREATE ROLE ${group} NOLOGIN`);
const db = await client(dbUrl);
await db.query(`CREATE TABLE bench_t (v int); GRANT SELECT ON bench_t TO ${group}`);
const engine = postgresEngine.create();
await engine.initialize(
  {
    connectionUrl: dbUrl.toString().replace(/\/\/[^@]*@/, '//'),
    username: decodeURIComponent(base.username) || 'postgres',
    password: decodeURIComponent(base.password),
    maxOpenConnections: 2,
    options: values.scram ? { password_authentication: 'scram-sha-256' } : {},
  },
  { verify: true },
);

const create: Record<string, number[]> = { raw: [] };
const drop: Record<string, number[]> = { raw: [] };
for (const b of BATCHES) {
  create[`batch ${b}`] = [];
  drop[`batch ${b}`] = [];
}
try {
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`round ${round}/${ROUNDS}`);
    // Interleaved, the order reversed every other round (load on a shared machine drifts): raw and each
    // batch size create fresh names, then drop them the matching way.
    const kinds: Array<'raw' | number> = ['raw', ...BATCHES];
    if (round % 2 === 0) kinds.reverse();
    const names = new Map(kinds.map((k) => [k, Array.from({ length: USERS }, nextName)]));
    for (const k of kinds) {
      if (k === 'raw') create.raw!.push(await rawCreate(db, names.get(k)!));
      else create[`batch ${k}`]!.push(await engineCreate(engine, names.get(k)!, k));
    }
    for (const k of kinds) {
      if (k === 'raw') drop.raw!.push(await rawDrop(db, names.get(k)!));
      else drop[`batch ${k}`]!.push(await engineDrop(engine, names.get(k)!, k));
    }
  }
} finally {
  await engine.close();
  await db.end();
  const { rows } = await admin.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1`, [`bb_${run}_%`]);
  for (const { rolname } of rows.filter((r) => r.rolname !== group)) await admin.query(`DROP ROLE IF EXISTS "${rolname}"`).catch(() => undefined);
  await admin.query(`DROP DATABASE IF EXISTS ${dbName}`);
  await admin.query(`DROP ROLE IF EXISTS ${group}`);
  await admin.end();
}

const report = (title: string, rates: Record<string, number[]>): void => {
  const raw = rates.raw!;
  console.log(`${title} (users/s: median of ${ROUNDS} rounds of ${USERS}; ratio: median of the per-round ratios to raw serial in the same round)`);
  for (const [label, xs] of Object.entries(rates)) {
    const ratios = xs.map((x, i) => x / raw[i]!);
    console.log(
      `  ${label.padEnd(9)} ${median(xs).toFixed(0).padStart(6)}/s  ${median(ratios).toFixed(2)}x raw serial  ` +
        `[per round: ${xs.map((x) => x.toFixed(0)).join(', ')} users/s; ${ratios.map((r) => r.toFixed(2)).join(', ')}x]`,
    );
  }
};
console.log(`creation statements: ${CREATION.join('; ')}${values.scram ? ' (engine: password_authentication=scram-sha-256)' : ''}`);
report('creation: raw serial (1 transaction per user) vs engine.newUsers', create);
report('revocation: raw serial DROP OWNED + DROP ROLE vs engine.deleteUsers (default revocation)', drop);
console.log(`uptime: ${execFileSync('uptime').toString().trim()}`);
