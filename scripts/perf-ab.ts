// Paired A/B of two checkouts of the broker in one process (e.g. main and a
// branch's worktree): CPU time per request of one request type, through
// fastify's inject(). Each round runs A and B back to back, in alternating
// order (the later of a pair measured a few % cheaper in an A/A run); the
// result is the median of the per-round B/A ratios, with its quartiles. On a
// shared machine, a pair measured seconds apart sees the same load, which the
// best-of-rounds figures of perf-inprocess.ts do not guarantee across runs.
//
//   node --import tsx scripts/perf-ab.ts <dir A> <dir B> [lookup|self|health] [rounds=40] [requests per round=400]
//
// Both directories need src/ and node_modules/ (a git worktree with the
// node_modules symlink of /work/notes/guide.md). A/A (the same directory twice) shows the noise.

import type { InjectOptions } from 'fastify';
import { startInProcessBroker, type InProcessBroker } from './in-process-broker.ts';

const [dirA, dirB, which = 'lookup', roundsArg = '40', perArg = '400'] = process.argv.slice(2);
if (!dirA || !dirB || !['lookup', 'self', 'health'].includes(which)) {
  console.error('usage: perf-ab.ts <dir A> <dir B> [lookup|self|health] [rounds] [requests per round]');
  process.exit(2);
}
const rounds = Number(roundsArg);
const per = Number(perArg);

interface Side {
  broker: InProcessBroker;
  req: InjectOptions;
}

async function setup(checkout: string): Promise<Side> {
  const broker = await startInProcessBroker(checkout);
  const { server, call, root } = broker;
  await call({ method: 'PUT', url: '/v1/sys/policies/acl/creds', headers: root, payload: JSON.stringify({ policy: 'path "database/creds/r" { capabilities = ["read"] }' }) });
  const child = await call({ method: 'PUT', url: '/v1/auth/token/create', headers: root, payload: JSON.stringify({ policies: ['default', 'creds'] }) });
  const now = Date.now();
  await server.broker.storage.insertLease({
    id: 'database/creds/r/perf', mount: 'database/', role: 'r', connection: 'c', state: 'active', issueTime: now, expireTime: now + 3600_000,
    maxExpireTime: now + 3600_000, lastRenewal: null, dueAt: now + 3600_000, attempts: 0, lastError: null, tokenHash: null, sealed: Buffer.from('x'),
  });
  const auth = { 'x-vault-token': child.auth.client_token as string };
  const req: InjectOptions =
    which === 'self'
      ? { method: 'GET', url: '/v1/auth/token/lookup-self', headers: auth }
      : which === 'health'
        ? { method: 'GET', url: '/v1/sys/health' }
        : { method: 'PUT', url: '/v1/sys/leases/lookup', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ lease_id: 'database/creds/r/perf' }) };
  return { broker, req };
}

/** CPU µs per request over `count` requests. */
async function run(side: Side, count: number): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const r = await side.broker.server.app.inject(side.req);
    if (r.statusCode !== 200) throw new Error(`${r.statusCode} ${r.body}`);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / count;
}

const a = await setup(dirA);
const b = await setup(dirB);
for (let i = 0; i < 3; i++) {
  await run(a, 500); // warm-up (JIT)
  await run(b, 500);
}
const ratios: number[] = [];
const as: number[] = [];
const bs: number[] = [];
for (let round = 0; round < rounds; round++) {
  let ta: number;
  let tb: number;
  if (round % 2 === 0) {
    ta = await run(a, per);
    tb = await run(b, per);
  } else {
    tb = await run(b, per);
    ta = await run(a, per);
  }
  as.push(ta);
  bs.push(tb);
  ratios.push(tb / ta);
}
const at = (v: number[], q: number) => [...v].sort((x, y) => x - y)[Math.min(v.length - 1, Math.floor(v.length * q))]!;
console.log(
  `${which}: A ${at(as, 0.5).toFixed(1)} µs  B ${at(bs, 0.5).toFixed(1)} µs CPU/request (medians)  B/A ${at(ratios, 0.5).toFixed(3)} (quartiles ${at(ratios, 0.25).toFixed(3)}..${at(ratios, 0.75).toFixed(3)})`,
);
for (const side of [a, b]) await side.broker.close();
