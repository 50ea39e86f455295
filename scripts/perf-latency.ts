// One client's latency (issue 11: "1 client, p50 overhead ≤ 1 ms over the raw
// statements"), in process: each step runs the role's creation statements on
// a direct session of the bench target (raw), then asks each broker for one
// credential through fastify's inject() (no sockets, no load generator), in
// turn, so every side sees the same load and the same number of accounts on
// the server. Prints the p50 of each side and each broker's p50 minus raw's.
//
//   node --import tsx scripts/perf-latency.ts [pg|mysql] [steps=400] [<checkout B> ...]
//
// With other checkouts (git worktrees with node_modules), each is one more
// broker measured in the same steps (A/B). Users are dropped at the end.

import { loadavg } from 'node:os';
import { mysqlTarget } from '../bench/targets/mysql.ts';
import { postgresTarget } from '../bench/targets/postgres.ts';
import { generatePassword } from '../src/util/random.ts';
import { startInProcessBroker, type InProcessBroker } from './in-process-broker.ts';

const [engine = 'pg', stepsArg = '400', ...others] = process.argv.slice(2);
const steps = Number(stepsArg);
const WARM_UP = 50;
const target = engine === 'mysql' ? mysqlTarget : postgresTarget;
const prefix = `perfl${process.pid}`;
const group = `${prefix}g`;
const setup = await target.prepare(group);
const config = await target.connectionConfig();
const sides: Array<{ label: string; broker: InProcessBroker; times: number[] }> = [];
for (const [i, checkout] of [undefined, ...others].entries()) {
  const broker = await startInProcessBroker(checkout);
  const headers = { ...broker.root, 'content-type': 'application/json' };
  await broker.call({ method: 'PUT', url: '/v1/database/config/c', headers, payload: JSON.stringify({ ...config, allowed_roles: '*' }) });
  await broker.call({ method: 'PUT', url: '/v1/database/roles/r', headers, payload: JSON.stringify({
    db_name: 'c', default_ttl: 3600, max_ttl: 7200, username_template: `${prefix}b${i}{{random 12}}`, creation_statements: setup.creationStatements,
  }) });
  sides.push({ label: checkout ?? 'this checkout', broker, times: [] });
}
const direct = await target.openDirect();
const raw: number[] = [];
try {
  for (let step = 0; step < WARM_UP + steps; step++) {
    let t = performance.now();
    await direct.createUser(`${prefix}r${step}`, generatePassword(), setup.creationStatements);
    if (step >= WARM_UP) raw.push(performance.now() - t);
    // Alternate the brokers' order, so none always runs right after raw.
    const order = step % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      t = performance.now();
      await side.broker.call({ method: 'GET', url: '/v1/database/creds/r', headers: side.broker.root });
      if (step >= WARM_UP) side.times.push(performance.now() - t);
    }
  }
} finally {
  await direct.close();
  for (const side of sides) await side.broker.close();
  await target.dropUsers(prefix);
  await target.teardown(group);
}
const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
console.log(`${target.label}, ${steps} steps, load ${loadavg().map((l) => l.toFixed(2)).join(' / ')}: raw p50 ${p50(raw).toFixed(2)} ms`);
for (const side of sides) console.log(`  ${side.label}: p50 ${p50(side.times).toFixed(2)} ms, overhead ${(p50(side.times) - p50(raw)).toFixed(2)} ms`);
