// CPU time per request inside one process (no sockets, no load generator):
// fastify's inject() against the broker and against a fastify hello-world,
// so the figures hold on a loaded machine. Optional CPU profile of the
// measured loop only.
//
//   node --import tsx scripts/perf-inprocess.ts [requests=4000] [--profile=<file.cpuprofile>] [--only=<label>]
//
// --only measures (and profiles) hello-world and the one case whose label
// contains <label>, e.g. --only=leases/lookup.

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import Fastify from 'fastify';
import { startInProcessBroker, type Inject } from './in-process-broker.ts';

const args = process.argv.slice(2);
const n = Number(args.find((a) => !a.startsWith('--')) ?? 4000);
const profileFile = args.find((a) => a.startsWith('--profile='))?.slice('--profile='.length);
const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);

const broker = await startInProcessBroker();
const { server, call, root, dir } = broker;
const app = server.app;
await call({ method: 'PUT', url: '/v1/sys/policies/acl/creds', headers: root, payload: JSON.stringify({ policy: 'path "database/creds/r" { capabilities = ["read"] }' }) });
const child = await call({ method: 'PUT', url: '/v1/auth/token/create', headers: root, payload: JSON.stringify({ policies: ['default', 'creds'] }) });
const auth = { 'x-vault-token': child.auth.client_token as string };
if (args.includes('--audit')) await call({ method: 'PUT', url: '/v1/sys/audit/file', headers: root, payload: JSON.stringify({ type: 'file', options: { file_path: join(dir, 'audit.log') } }) });

// A lease row as issuance leaves it (no database needed: lookup reads only the row).
const now = Date.now();
await server.broker.storage.insertLease({
  id: 'database/creds/r/perf', mount: 'database/', role: 'r', connection: 'c', state: 'active', issueTime: now, expireTime: now + 3600_000,
  maxExpireTime: now + 3600_000, lastRenewal: null, dueAt: now + 3600_000, attempts: 0, lastError: null, tokenHash: null, sealed: Buffer.from('x'),
});

const hello = Fastify();
hello.get('/', async () => ({ hello: 'world' }));
await hello.ready();

async function perRequest(target: typeof app | typeof hello, req: Inject, expect: number, count: number): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const r = await target.inject(req);
    if (r.statusCode !== expect) throw new Error(`${req.url}: ${r.statusCode} ${r.body}`);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / count;
}

const session = new Session();
if (profileFile) {
  session.connect();
  await new Promise((ok) => session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 100 }, () => session.post('Profiler.start', ok))));
}
const allCases: Array<[string, typeof app | typeof hello, Inject, number]> = [
  ['hello-world', hello, { method: 'GET', url: '/' }, 200],
  ['auth/token/lookup-self', app, { method: 'GET', url: '/v1/auth/token/lookup-self', headers: auth }, 200],
  ['sys/health', app, { method: 'GET', url: '/v1/sys/health' }, 200],
  ['sys/leases/lookup', app, { method: 'PUT', url: '/v1/sys/leases/lookup', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ lease_id: 'database/creds/r/perf' }) }, 200],
];
const cases = only ? allCases.filter(([label], i) => i === 0 || label.includes(only)) : allCases;
for (const [, target, req, status] of cases) await perRequest(target, req, status, 300); // warm-up (JIT)
// Interleaved rounds; the least CPU per request of the rounds (the machine is shared: others' load only adds).
const best = cases.map(() => Infinity);
for (let round = 0; round < 5; round++) {
  for (const [i, [, target, req, status]] of cases.entries()) best[i] = Math.min(best[i]!, await perRequest(target, req, status, Math.ceil(n / 5)));
}
for (const [i, [label]] of cases.entries()) console.log(`${label.padEnd(26)} ${best[i]!.toFixed(1).padStart(7)} µs CPU/request  hello/x ${(best[0]! / best[i]!).toFixed(2)}`);
if (profileFile) {
  await new Promise<void>((ok) =>
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(profileFile, JSON.stringify(res.profile));
      ok();
    }),
  );
}
await broker.close();
