// The non-database path, in interleaved rounds: a fastify hello-world in a
// process of its own (the broker's HTTP framework, doing nothing else), then
// PUT sys/leases/lookup with a lease id, then GET auth/token/lookup-self,
// each for `seconds` from `clients` keep-alive connections of the same load
// generator (http-client.ts). Both broker calls use a non-root token whose
// policy allows the lookup, so policy evaluation is on the path.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import type { BenchBroker } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import { HttpClient } from './http-client.ts';
import { loadNow } from './stats.ts';

export interface ApiOptions {
  rounds: number;
  seconds: number;
  clients: number;
  /** A live lease of the broker to look up. */
  leaseId: string;
  progress: (message: string) => void;
}

export interface ApiRound {
  hello: RunResult;
  leaseLookup: RunResult;
  lookupSelf: RunResult;
  /** 1-minute load average at the end of each phase, in the order above. */
  load: number[];
}

const POLICY = 'path "sys/leases/lookup" { capabilities = ["update"] }';

/** The hello-world server in its own process; resolves with its port and a stop function. */
async function startHello(): Promise<{ port: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, 'hello-server.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('the fastify hello-world did not start within 30 s')), 30_000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      ok(Number(line));
    });
    child.once('exit', (code) => fail(new Error(`the fastify hello-world exited with ${code}`)));
  });
  return { port, stop };
}

async function load(opts: ApiOptions, call: () => Promise<unknown>): Promise<RunResult> {
  return runConcurrent({ workers: opts.clients, total: Infinity, maxMs: opts.seconds * 1000 }, async () => {
    await call();
  });
}

export async function benchApi(bench: BenchBroker, opts: ApiOptions): Promise<ApiRound[]> {
  await bench.expect(204, 'PUT', 'sys/policies/acl/bench-lookup', { policy: POLICY }, 200);
  const created = await bench.expect(200, 'PUT', 'auth/token/create', { policies: ['bench-lookup'], ttl: '1h' });
  const token = created.body.auth.client_token as string;
  const hello = await startHello();
  const helloClient = new HttpClient(`http://127.0.0.1:${hello.port}`, opts.clients);
  const brokerClient = bench.client(opts.clients);
  const rounds: ApiRound[] = [];
  try {
    for (let r = 0; r < opts.rounds; r++) {
      const loads: number[] = [];
      const helloRun = await load(opts, () => helloClient.expect(200, 'GET', '/'));
      loads.push(loadNow());
      const leaseLookup = await load(opts, () => brokerClient.expect(200, 'PUT', '/v1/sys/leases/lookup', { token, body: { lease_id: opts.leaseId } }));
      loads.push(loadNow());
      const lookupSelf = await load(opts, () => brokerClient.expect(200, 'GET', '/v1/auth/token/lookup-self', { token }));
      loads.push(loadNow());
      rounds.push({ hello: helloRun, leaseLookup, lookupSelf, load: loads });
      const rate = (x: RunResult): string => ((x.completed * 1000) / x.elapsedMs).toFixed(0);
      opts.progress(`round ${r + 1}/${opts.rounds}: fastify hello ${rate(helloRun)}/s, sys/leases/lookup ${rate(leaseLookup)}/s, lookup-self ${rate(lookupSelf)}/s`);
    }
    return rounds;
  } finally {
    helloClient.close();
    brokerClient.close();
    await hello.stop();
  }
}
