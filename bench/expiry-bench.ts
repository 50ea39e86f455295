// Figure 2: how fast the revocation loop clears N leases that expire at the
// same moment.
//
// Issuing N credentials takes a while, so a plain short TTL would spread the
// expiries over the issuing window. Instead the leases are issued with a long
// TTL and then each is renewed with an increment that ends it at one shared
// instant (to the second: renew increments are whole seconds). The clock runs
// from that instant until `sys/leases/count` reaches zero.

import { pause } from './abort.ts';
import type { BenchBroker } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import type { BenchTarget } from './targets/target.ts';

export interface ExpiryOptions {
  workers: number;
  leases: number;
  runPrefix: string;
}

export interface ExpiryFigures {
  issue: RunResult;
  renew: RunResult;
  /** Renewals were still running at the shared expiry (the figure is then pessimistic). */
  renewOverran: boolean;
  /** From the shared expiry to the first lease gone, and to the last. */
  firstGoneMs: number;
  allGoneMs: number;
  rssBefore: number;
  rssLoaded: number;
  rssPeak: number;
  rssAfter: number;
  /** Users of this role still in the database afterwards (should be 0). */
  usersLeft: number;
}

const ROLE = 'expire';

export async function benchExpiry(bench: BenchBroker, target: BenchTarget, opts: ExpiryOptions): Promise<ExpiryFigures> {
  const prefix = `${opts.runPrefix}e`;
  await bench.writeRole(ROLE, target, { usernamePrefix: prefix, defaultTtl: 3600, maxTtl: 7200 });
  const rssBefore = bench.rss();

  const leaseIds: string[] = [];
  const issue = await runConcurrent({ workers: opts.workers, total: opts.leases }, async () => {
    leaseIds.push(await bench.issue(ROLE));
  });

  // Renewals cost about what issuing did; leave room for them, plus a margin.
  const expiresAt = Date.now() + Math.max(10_000, issue.elapsedMs * 1.5 + 5_000);
  const renew = await runConcurrent({ workers: opts.workers, total: leaseIds.length }, async (i) => {
    // Late (overran) renewals still end within a second, so no lease is left out of the burst.
    const increment = Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000));
    await bench.expect(200, 'PUT', 'sys/leases/renew', { lease_id: leaseIds[i], increment });
  });
  const renewOverran = Date.now() >= expiresAt;
  const rssLoaded = bench.rss();

  await pause(expiresAt - Date.now());
  let firstGoneMs = NaN;
  let rssPeak = bench.rss();
  const deadline = Date.now() + 600_000;
  for (;;) {
    const n = await bench.leaseCount();
    const sinceExpiry = Date.now() - expiresAt;
    rssPeak = Math.max(rssPeak, bench.rss());
    if (n < leaseIds.length && Number.isNaN(firstGoneMs)) firstGoneMs = sinceExpiry;
    if (n === 0) {
      const usersLeft = await target.countUsers(prefix);
      return { issue, renew, renewOverran, firstGoneMs, allGoneMs: sinceExpiry, rssBefore, rssLoaded, rssPeak, rssAfter: bench.rss(), usersLeft };
    }
    if (Date.now() > deadline) throw new Error(`${n} leases still present 10 minutes after their expiry`);
    await pause(50);
  }
}
