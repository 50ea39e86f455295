// The vault-benchmark-style run: `clients` workers read creds from one role
// whose creation statements grant a group role, without revoking anything,
// until `live` users exist. Every request must succeed: with a grant on a
// table to each user instead, PostgreSQL refuses at ~2,440 live users (the
// table's ACL no longer fits its pg_class row, SQLSTATE 54000).

import type { BenchBroker } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import { loadNow } from './stats.ts';
import type { BenchTarget } from './targets/target.ts';

export interface LiveUsersOptions {
  live: number;
  clients: number;
  /** Prefix of this engine run's users; this part uses `<run>v…`. */
  run: string;
  statements: string[];
  progress: (message: string) => void;
}

export interface LiveUsersFigures {
  run: RunResult;
  /** Users of the role in the database at the end (should be `live`). */
  usersInDb: number;
  /** Leases of the role in the broker at the end. */
  leases: number;
  /** creds/s over the first and the last tenth of the successful requests. */
  firstTenthRate: number;
  lastTenthRate: number;
  load: number;
}

const ROLE = 'live';

export async function benchLiveUsers(bench: BenchBroker, target: BenchTarget, opts: LiveUsersOptions): Promise<LiveUsersFigures> {
  const prefix = `${opts.run}v`;
  await bench.writeRole(ROLE, { statements: opts.statements, usernamePrefix: prefix, defaultTtl: 3600, maxTtl: 7200 });
  const client = bench.client(opts.clients);
  // Completion times (ms since start) of successful requests, for the rate at the start and at the end.
  const done: number[] = [];
  const started = performance.now();
  let ok = 0;
  let pending = 0;
  // Give up after as many failures as a tenth of the goal (the run has then failed anyway).
  let failed = 0;
  const maxFailures = Math.max(100, Math.ceil(opts.live / 10));
  try {
    let lastReport = Date.now();
    const run = await runConcurrent({ workers: opts.clients, total: Infinity, stop: () => ok + pending >= opts.live || failed >= maxFailures }, async () => {
      pending++;
      try {
        await bench.issue(client, ROLE);
        ok++;
        done.push(performance.now() - started);
      } catch (err) {
        failed++;
        throw err;
      } finally {
        pending--;
        if (Date.now() - lastReport > 10_000) {
          lastReport = Date.now();
          opts.progress(`${ok} live users, ${failed} failed`);
        }
      }
    });
    const tenth = Math.max(1, Math.floor(done.length / 10));
    const rateOf = (from: number, to: number): number => (to > from ? ((tenth - 1) * 1000) / (to - from) : NaN);
    return {
      run,
      usersInDb: await target.countUsers(prefix),
      leases: await bench.leaseCount(`database/creds/${ROLE}/`),
      firstTenthRate: rateOf(done[0] ?? 0, done[tenth - 1] ?? 0),
      lastTenthRate: rateOf(done[done.length - tenth] ?? 0, done[done.length - 1] ?? 0),
      load: loadNow(),
    };
  } finally {
    client.close();
  }
}
