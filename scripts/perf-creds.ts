// CPU time the broker spends per credential, in process (fastify inject, no
// sockets): `clients` loops issue creds for `seconds` against the local
// PostgreSQL (ENGINE=mysql: the local MariaDB, test/support/mariadb.ts);
// prints the rate, the broker process's CPU per credential (every thread: the
// event loop, libuv's pool, GC) and, with --profile, a CPU profile of the
// measured part. The issued users are dropped at the end.
//
//   node --import tsx scripts/perf-creds.ts [seconds=8] [clients=8] [--profile=<file.cpuprofile>]

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { startInProcessBroker, type Inject } from './in-process-broker.ts';

const args = process.argv.slice(2);
const nums = args.filter((a) => !a.startsWith('--')).map(Number);
const seconds = nums[0] ?? 8;
const clients = nums[1] ?? 8;
const profileFile = args.find((a) => a.startsWith('--profile='))?.slice('--profile='.length);
const PG = process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const broker = await startInProcessBroker();
const { call } = broker;
const root = { ...broker.root, 'content-type': 'application/json' };
const prefix = `perfc${process.pid}`;
if (process.env.ENGINE === 'mysql') {
  const { target } = await import('../test/support/mariadb.ts');
  await call({
    method: 'PUT', url: '/v1/database/config/pg', headers: root,
    payload: JSON.stringify({ plugin_name: 'mysql-database-plugin', connection_url: `{{username}}:{{password}}@tcp(${target.host}:${target.port})/`, username: target.user, password: target.password, allowed_roles: '*', max_open_connections: 8 }),
  });
  await call({ method: 'PUT', url: '/v1/database/roles/r', headers: root, payload: JSON.stringify({
    db_name: 'pg', default_ttl: 3600, max_ttl: 7200, username_template: `${prefix}{{random 12}}`,
    creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", `GRANT SELECT ON \`${target.database}\`.* TO '{{name}}'@'%'`],
  }) });
} else {
  const url = new URL(PG);
  const user = decodeURIComponent(url.username) || 'postgres';
  url.username = '';
  url.password = '';
  await call({
    method: 'PUT', url: '/v1/database/config/pg', headers: root,
    payload: JSON.stringify({ plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://{{username}}:{{password}}@${url.toString().replace(/^postgres(ql)?:\/\//, '')}`, username: user, allowed_roles: '*', max_open_connections: 8 }),
  });
  await call({ method: 'PUT', url: '/v1/database/roles/r', headers: root, payload: JSON.stringify({
    db_name: 'pg', default_ttl: 3600, max_ttl: 7200, username_template: `${prefix}{{random 12}}`,
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, 'GRANT pg_read_all_data TO "{{name}}"'],
  }) });
}
const creds: Inject = { method: 'GET', url: '/v1/database/creds/r', headers: broker.root };

async function load(ms: number): Promise<{ n: number; wallMs: number; cpuUs: number }> {
  const end = performance.now() + ms;
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (performance.now() < end) {
      await call(creds);
      n++;
    }
  }));
  const c = process.cpuUsage(c0);
  return { n, wallMs: performance.now() - t0, cpuUs: c.user + c.system };
}

await load(2000); // warm-up (JIT, pool)
const session = new Session();
if (profileFile) {
  session.connect();
  await new Promise((ok) => session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start', ok))));
}
const r = await load(seconds * 1000);
if (profileFile) {
  await new Promise<void>((ok) => session.post('Profiler.stop', (err, res) => { if (!err) writeFileSync(profileFile, JSON.stringify(res.profile)); ok(); }));
}
console.log(`${clients} clients: ${r.n} creds in ${(r.wallMs / 1000).toFixed(1)} s = ${((r.n / r.wallMs) * 1000).toFixed(0)}/s; broker CPU ${(r.cpuUs / r.n / 1000).toFixed(3)} ms per credential; load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`);
await call({ method: 'PUT', url: '/v1/sys/leases/revoke-prefix/database/creds/r', headers: root, payload: '{}' });
await broker.close();
