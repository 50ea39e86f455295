// Figure 1: credentials issued per second through the broker with N
// concurrent clients, against the same creation statements run directly on
// the database by N clients of its own (create + grant; then drop).

import { generatePassword } from '../src/util/random.ts';
import { pause } from './abort.ts';
import type { BenchBroker } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import type { BenchTarget, DirectSession } from './targets/target.ts';

export interface IssueOptions {
  workers: number;
  total: number;
  maxMs: number;
  /** Prefix for this engine run's users (letters and digits). */
  runPrefix: string;
}

export interface IssueFigures {
  broker: RunResult;
  /** revoke-prefix of everything issued: from the call until the last lease is gone. */
  brokerRevokeMs: number;
  direct: RunResult;
  directDrop: RunResult;
}

const ROLE = 'issue';

async function waitForZeroLeases(bench: BenchBroker, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await bench.leaseCount()) > 0) {
    if (Date.now() > deadline) throw new Error(`leases still present after ${timeoutMs} ms`);
    await pause(100);
  }
}

export async function benchIssue(bench: BenchBroker, target: BenchTarget, opts: IssueOptions): Promise<IssueFigures> {
  await bench.writeRole(ROLE, target, { usernamePrefix: `${opts.runPrefix}i`, defaultTtl: 3600, maxTtl: 7200 });
  const broker = await runConcurrent({ workers: opts.workers, total: opts.total, maxMs: opts.maxMs }, async () => {
    await bench.issue(ROLE);
  });

  const revokeStart = performance.now();
  await bench.expect(204, 'PUT', `sys/leases/revoke-prefix/database/creds/${ROLE}`, undefined, 200);
  await waitForZeroLeases(bench, 300_000);
  const brokerRevokeMs = performance.now() - revokeStart;

  // The baseline does as many creations as the broker completed.
  const count = Math.max(1, broker.completed);
  const sessions: DirectSession[] = [];
  try {
    for (let w = 0; w < opts.workers; w++) sessions.push(await target.openDirect());
    const names: string[] = [];
    const direct = await runConcurrent({ workers: opts.workers, total: count }, async (i, w) => {
      const name = `${opts.runPrefix}d${i}`;
      await sessions[w]!.createUser(name, generatePassword());
      names.push(name);
    });
    const directDrop = await runConcurrent({ workers: opts.workers, total: names.length }, async (i, w) => {
      await sessions[w]!.dropUser(names[i]!);
    });
    return { broker, brokerRevokeMs, direct, directDrop };
  } finally {
    for (const s of sessions) await s.close().catch(() => undefined);
  }
}
