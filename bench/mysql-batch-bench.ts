// Issue 11, MySQL/MariaDB engine share: the engine's batch forms against the
// raw statements, in one run with interleaved rounds (not a test).
//
//   node --import tsx bench/mysql-batch-bench.ts [users-per-round=256] [rounds=3]
//
// Per round, each on fresh names: raw serial CREATE USER + GRANT (one
// connection, one user after the other), engine newUser one at a time,
// engine newUsers in batches of 8, 32 and 64 (batches one after the other,
// pool of 8 as the bench target configures); then raw serial DROP USER,
// engine deleteUser one at a time, deleteUsers in batches of 64. Prints
// rates (users/s), p50 per user for the serial forms, this process's CPU
// per user (raw: mysql2 alone; engine: engine + mysql2), ratios against raw
// serial (each round against its own raw round), and `uptime`.

import { execFileSync } from 'node:child_process';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import mysql from '../plugins/mysql/index.ts';
import type { Engine, NewUserRequest } from '../src/engine/engine.ts';
import { generatePassword } from '../src/util/random.ts';
import { mysqlConfig, target } from '../test/support/mariadb.ts';
import { renderStatement } from './targets/render.ts';

const PREFIX = 'zbmb';
const CREATION = [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`, `GRANT SELECT ON \`${target.database}\`.* TO '{{name}}'@'%'`];
const PER_ROUND = Number(process.argv[2] ?? 256);
const ROUNDS = Number(process.argv[3] ?? 3);

interface Figure {
  rate: number;
  p50Ms?: number;
  cpuMsPerUser?: number;
}

const results = new Map<string, Figure[]>();
let serial = 0;

function names(tag: string): string[] {
  serial++;
  return Array.from({ length: PER_ROUND }, (_, i) => `${PREFIX}${tag}${serial}x${i}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function measure(label: string, count: number, work: (lap: (ms: number) => void) => Promise<void>): Promise<void> {
  const laps: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await work((ms) => laps.push(ms));
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const figure: Figure = { rate: (count / elapsed) * 1000, cpuMsPerUser: (cpu.user + cpu.system) / 1000 / count };
  if (laps.length > 0) figure.p50Ms = median(laps);
  results.set(label, [...(results.get(label) ?? []), figure]);
}

async function timed(lap: (ms: number) => void, fn: () => Promise<unknown>): Promise<void> {
  const t = performance.now();
  await fn();
  lap(performance.now() - t);
}

function requests(users: string[]): NewUserRequest[] {
  const expiration = new Date(Date.now() + 3600_000);
  return users.map((username) => ({ username, password: generatePassword(), expiration, creationStatements: CREATION, rollbackStatements: [] }));
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function cleanup(conn: Connection): Promise<void> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT User AS user, Host AS host FROM mysql.user WHERE User LIKE ?', [`${PREFIX}%`]);
  for (const r of rows) await conn.query('DROP USER IF EXISTS ?@?', [r['user'], r['host']]);
}

async function round(raw: Connection, engine: Engine): Promise<void> {
  const expiration = new Date(Date.now() + 3600_000);
  const rawUsers = names('r');
  await measure('create: raw serial', PER_ROUND, async (lap) => {
    for (const name of rawUsers) {
      const password = generatePassword();
      await timed(lap, async () => {
        for (const t of CREATION) await raw.query(renderStatement(t, { name, password, expiration }));
      });
    }
  });
  const oneUsers = names('o');
  await measure('create: engine newUser, serial', PER_ROUND, async (lap) => {
    for (const r of requests(oneUsers)) await timed(lap, () => engine.newUser(r));
  });
  const batchUsers: string[][] = [];
  for (const size of [8, 32, 64]) {
    const users = names(`b${size}`);
    batchUsers.push(users);
    await measure(`create: engine newUsers, batches of ${size}`, PER_ROUND, async () => {
      for (const batch of chunks(requests(users), size)) {
        const outcomes = await engine.newUsers!(batch);
        const failed = outcomes.find((o) => o !== undefined);
        if (failed) throw failed;
      }
    });
  }

  await measure('drop: raw serial', PER_ROUND, async (lap) => {
    for (const name of rawUsers) await timed(lap, () => raw.query(`DROP USER '${name}'@'%'`));
  });
  await measure('drop: engine deleteUser, serial', PER_ROUND, async (lap) => {
    for (const username of oneUsers) await timed(lap, () => engine.deleteUser({ username, statements: [] }));
  });
  await measure('drop: engine deleteUsers, batches of 64', PER_ROUND * batchUsers.length, async () => {
    for (const users of batchUsers) {
      for (const batch of chunks(users, 64)) {
        const outcomes = await engine.deleteUsers!(batch.map((username) => ({ username, statements: [] })));
        const failed = outcomes.find((o) => o instanceof Error);
        if (failed) throw failed;
      }
    }
  });
}

const raw = await createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
const engine = mysql.create();
await engine.initialize(mysqlConfig({ maxOpenConnections: 8 }), { verify: true });
try {
  await cleanup(raw);
  console.log(`uptime before: ${execFileSync('uptime').toString().trim()}`);
  for (let r = 0; r < ROUNDS; r++) await round(raw, engine);
  console.log(`uptime after:  ${execFileSync('uptime').toString().trim()}`);
  console.log(`${ROUNDS} rounds of ${PER_ROUND} users each (medians over rounds; p50 per user for the serial forms)`);
  for (const [label, figures] of results) {
    // Each round against the raw serial rate of the same round.
    const base = results.get(label.startsWith('create') ? 'create: raw serial' : 'drop: raw serial')!;
    const ratios = figures.map((f, i) => f.rate / base[i]!.rate);
    const rate = median(figures.map((f) => f.rate));
    const p50 = figures[0]?.p50Ms !== undefined ? ` p50 ${median(figures.map((f) => f.p50Ms!)).toFixed(2)} ms` : '';
    const cpu = ` cpu ${median(figures.map((f) => f.cpuMsPerUser!)).toFixed(3)} ms/user`;
    const perRound = ratios.map((r) => r.toFixed(2)).join(' ');
    console.log(`${label.padEnd(42)} ${rate.toFixed(0).padStart(6)}/s  ${median(ratios).toFixed(2)}x raw serial (rounds: ${perRound})${p50}${cpu}`);
  }
} finally {
  await cleanup(raw).catch(() => undefined);
  await engine.close();
  await raw.end();
}
