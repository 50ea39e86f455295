// Per-request overhead, measured (issue 11 item 1): req/s of
// sys/leases/lookup, auth/token/lookup-self and database/creds (MariaDB)
// against a fastify hello-world on the same machine, driven by the same
// keep-alive load loop. Not a test: figures depend on the machine's load.
//
//   node --import tsx scripts/perf-overhead.ts [seconds=5] [concurrency=16] [--audit] [--creds] [--once] [--only=<name prefix>]
//
// The broker runs as its own process (test/support/broker.ts), with a file
// audit device when --audit is given; PERF_BROKER_NODE_OPTIONS is the broker
// process's NODE_OPTIONS (e.g. "--import ./profiler.mjs" to profile it).

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { freePort, initAndUnseal, startBroker } from '../test/support/broker.ts';
import { mysqlTarget } from '../bench/targets/mysql.ts';

const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith('--')));
const [seconds = 5, concurrency = 16] = args.filter((a) => !a.startsWith('--')).map(Number);

interface Shot {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** Keep-alive loop: `concurrency` requests in flight for `seconds`; returns req/s, p50 ms and the non-2xx count. */
async function load(port: number, shot: Shot, secs: number, conc: number): Promise<{ rps: number; p50: number; errors: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: conc });
  const end = Date.now() + secs * 1000;
  let done = 0;
  let errors = 0;
  const lat: number[] = [];
  const one = (): Promise<void> =>
    new Promise((ok, fail) => {
      const t0 = performance.now();
      const req = request({ host: '127.0.0.1', port, method: shot.method, path: shot.path, headers: shot.headers, agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 300) errors++;
          lat.push(performance.now() - t0);
          done++;
          ok();
        });
      });
      req.on('error', fail);
      req.end(shot.body);
    });
  const started = Date.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (Date.now() < end) await one();
    }),
  );
  const elapsed = (Date.now() - started) / 1000;
  agent.destroy();
  lat.sort((a, b) => a - b);
  return { rps: done / elapsed, p50: lat[Math.floor(lat.length / 2)] ?? 0, errors };
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

/** `load`, plus the server process's CPU time per request (µs). */
async function measure(pid: number | undefined, port: number, shot: Shot, secs: number, conc: number): Promise<{ rps: number; p50: number; errors: number; cpuUs: number }> {
  const cpu0 = cpuMs(pid);
  const r = await load(port, shot, secs, conc);
  return { ...r, cpuUs: ((cpuMs(pid) - cpu0) * 1000) / (r.rps * secs) };
}

async function fastifyHello(): Promise<{ port: number; pid: number | undefined; stop: () => void }> {
  const port = await freePort();
  const code = `import Fastify from 'fastify'; const app = Fastify(); app.get('/', async () => ({ hello: 'world' })); await app.listen({ port: ${port}, host: '127.0.0.1' }); console.log('up');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((ok) => child.stdout!.once('data', () => ok()));
  return { port, pid: child.pid, stop: () => child.kill('SIGTERM') };
}

const hello = await fastifyHello();
const broker = await startBroker({ env: process.env['PERF_BROKER_NODE_OPTIONS'] ? { NODE_OPTIONS: process.env['PERF_BROKER_NODE_OPTIONS'] } : {} }).catch((err: unknown) => {
  hello.stop();
  throw err;
});
// The role's objects on the server (bench/targets: group role, grants), dropped at the end.
const group = `dbrperf${process.pid}`;
try {
  const { rootToken } = await initAndUnseal(broker);
  const api = async (method: string, path: string, body?: unknown, token = rootToken) => {
    const r = await broker.api(method, path, { token, ...(body !== undefined ? { body } : {}) });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return r.body;
  };
  if (flags.has('--audit')) await api('PUT', 'sys/audit/file', { type: 'file', options: { file_path: join(tmpdir(), `perf-audit-${process.pid}.log`) } });
  await api('PUT', 'database/config/bench', await mysqlTarget.connectionConfig());
  const setup = await mysqlTarget.prepare(group);
  await api('PUT', 'database/roles/r', { db_name: 'bench', creation_statements: setup.creationStatements, default_ttl: 600, username_template: 'perf{{random 12}}' });
  const child = await api('PUT', 'auth/token/create', { policies: ['default', 'creds'] });
  await api('PUT', 'sys/policies/acl/creds', { policy: 'path "database/creds/r" { capabilities = ["read"] }' });
  const token: string = child.auth.client_token;
  const lease = await api('GET', 'database/creds/r', undefined, token);
  const leaseBody = JSON.stringify({ lease_id: lease.lease_id });
  const auth = { 'x-vault-token': token };
  const shots: Array<[string, Shot]> = [
    ['sys/leases/lookup', { method: 'PUT', path: '/v1/sys/leases/lookup', headers: { ...auth, 'content-type': 'application/json' }, body: leaseBody }],
    ['auth/token/lookup-self', { method: 'GET', path: '/v1/auth/token/lookup-self', headers: auth }],
  ];
  if (flags.has('--creds')) shots.push(['database/creds (MariaDB)', { method: 'GET', path: '/v1/database/creds/r', headers: auth }]);
  const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  if (only !== undefined) shots.splice(0, shots.length, ...shots.filter(([name]) => name.startsWith(only)));
  const rounds = flags.has('--once') ? 1 : 2;
  for (let round = 0; round < rounds; round++) {
    const h = await measure(hello.pid, hello.port, { method: 'GET', path: '/', headers: {} }, seconds, concurrency);
    console.log(`hello-world              ${h.rps.toFixed(0).padStart(7)} req/s  p50 ${h.p50.toFixed(2)} ms  cpu ${h.cpuUs.toFixed(0)} µs/req`);
    for (const [name, shot] of shots) {
      const conc = name.startsWith('database/creds') ? Math.min(8, concurrency) : concurrency;
      const r = await measure(broker.pid, broker.port, shot, seconds, conc);
      console.log(`${name.padEnd(24)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  cpu ${r.cpuUs.toFixed(0)} µs/req  ${(r.rps / h.rps).toFixed(2)}x  errors ${r.errors}`);
    }
  }
  await api('PUT', 'sys/leases/revoke-prefix/database/creds/r?sync=true', {});
} finally {
  await mysqlTarget.teardown(group).catch(() => undefined);
  await broker.stop();
  broker.remove();
  hello.stop();
}
