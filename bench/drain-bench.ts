// The revocation drain: N leases due at the same moment, cleared by the
// broker's revocation loop, against the same server dropping N users one
// after another from one session; and how creds requests fare meanwhile.
//
// Issuing N credentials takes a while, so a plain short TTL would spread the
// expiries over the issuing window. Instead the leases are issued with a long
// TTL and then each is renewed with an increment that ends it at one shared
// instant (to the second: renew increments are whole seconds). The clock runs
// from that instant until `sys/leases/count` under the role's prefix reaches
// zero. A side client (1 connection, its own role) reads creds in a loop
// before the drain (unloaded) and during it.

import { generatePassword } from '../src/util/random.ts';
import { pause } from './abort.ts';
import type { BenchBroker } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import { loadNow } from './stats.ts';
import type { BenchTarget, DirectSession } from './targets/target.ts';

export interface DrainOptions {
  leases: number;
  clients: number;
  /** Length of the unloaded side-client measurement, in seconds. */
  seconds: number;
  /** Prefix of this engine run's users; this part uses `<run>d…`. */
  run: string;
  statements: string[];
  progress: (message: string) => void;
}

export interface DrainFigures {
  issue: RunResult;
  renew: RunResult;
  /** Renewals were still running at the shared expiry (the figure is then pessimistic). */
  renewOverran: boolean;
  /** From the shared expiry to the first lease gone, and to the last. */
  firstGoneMs: number;
  allGoneMs: number;
  /** Users of the drained role still in the database afterwards (should be 0). */
  usersLeft: number;
  sideUnloaded: RunResult;
  sideDuring: RunResult;
  /** The baseline: N users made by `clients` sessions, then dropped by one session, one after another. */
  rawCreate: RunResult;
  rawDrop: RunResult;
  rss: { before: number; loaded: number; peak: number; after: number };
  /** 1-minute load average at the end of the broker drain and of the raw drop. */
  load: { drain: number; rawDrop: number };
}

const ROLE = 'drain';
const SIDE = 'side';

export async function benchDrain(bench: BenchBroker, target: BenchTarget, opts: DrainOptions): Promise<DrainFigures> {
  const prefix = `${opts.run}dd`;
  await bench.writeRole(ROLE, { statements: opts.statements, usernamePrefix: prefix, defaultTtl: 3600, maxTtl: 7200 });
  await bench.writeRole(SIDE, { statements: opts.statements, usernamePrefix: `${opts.run}dc`, defaultTtl: 3600, maxTtl: 7200 });
  const side = bench.client(1);
  const workers = bench.client(opts.clients);
  try {
    const rssBefore = bench.rss();
    opts.progress(`side client, unloaded, ${opts.seconds} s`);
    const sideUnloaded = await runConcurrent({ workers: 1, total: Infinity, maxMs: opts.seconds * 1000 }, async () => {
      await bench.issue(side, SIDE);
    });

    opts.progress(`issuing ${opts.leases} leases with ${opts.clients} clients`);
    const leaseIds: string[] = [];
    const issue = await runConcurrent({ workers: opts.clients, total: opts.leases }, async () => {
      leaseIds.push(await bench.issue(workers, ROLE));
    });
    // Renewals cost about what issuing did; leave room for them, plus a margin.
    const expiresAt = Date.now() + Math.max(10_000, issue.elapsedMs * 1.5 + 5_000);
    opts.progress(`renewing them all to expire at ${new Date(expiresAt).toISOString()}`);
    const renew = await runConcurrent({ workers: opts.clients, total: leaseIds.length }, async (i) => {
      // Late (overran) renewals still end within a second, so no lease is left out of the burst.
      const increment = Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000));
      await workers.expect(200, 'PUT', '/v1/sys/leases/renew', { token: bench.token, body: { lease_id: leaseIds[i], increment } });
    });
    const renewOverran = Date.now() >= expiresAt;
    const rssLoaded = bench.rss();
    await pause(expiresAt - Date.now());

    // The drain; the side client runs until it ends.
    let drained = false;
    const during = runConcurrent({ workers: 1, total: Infinity, stop: () => drained }, async () => {
      await bench.issue(side, SIDE);
    });
    let firstGoneMs = NaN;
    let allGoneMs = NaN;
    let rssPeak = bench.rss();
    const deadline = Date.now() + 900_000;
    try {
      for (;;) {
        const n = await bench.leaseCount(`database/creds/${ROLE}/`);
        const sinceExpiry = Date.now() - expiresAt;
        rssPeak = Math.max(rssPeak, bench.rss());
        if (n < leaseIds.length && Number.isNaN(firstGoneMs)) firstGoneMs = sinceExpiry;
        if (n === 0) {
          allGoneMs = sinceExpiry;
          break;
        }
        if (Date.now() > deadline) throw new Error(`${n} leases still present 15 minutes after their expiry`);
        await pause(50);
      }
    } finally {
      drained = true;
    }
    const sideDuring = await during;
    const drainLoad = loadNow();
    const usersLeft = await target.countUsers(prefix);
    const rssAfter = bench.rss();
    await bench.revokeRole(SIDE);

    opts.progress(`raw baseline: ${leaseIds.length} users made by ${opts.clients} sessions, then dropped by 1 session`);
    const raw = await rawCreateThenDrop(target, opts, leaseIds.length);
    return {
      issue,
      renew,
      renewOverran,
      firstGoneMs,
      allGoneMs,
      usersLeft,
      sideUnloaded,
      sideDuring,
      ...raw,
      rss: { before: rssBefore, loaded: rssLoaded, peak: rssPeak, after: rssAfter },
      load: { drain: drainLoad, rawDrop: raw.rawDropLoad },
    };
  } finally {
    side.close();
    workers.close();
  }
}

async function rawCreateThenDrop(target: BenchTarget, opts: DrainOptions, n: number): Promise<{ rawCreate: RunResult; rawDrop: RunResult; rawDropLoad: number }> {
  const sessions: DirectSession[] = [];
  try {
    for (let w = 0; w < opts.clients; w++) sessions.push(await target.openDirect());
    const names: string[] = [];
    const rawCreate = await runConcurrent({ workers: opts.clients, total: n }, async (i, w) => {
      const name = `${opts.run}dr${i}`;
      await sessions[w]!.createUser(name, generatePassword(), opts.statements);
      names.push(name);
    });
    const rawDrop = await runConcurrent({ workers: 1, total: names.length }, async (i) => {
      await sessions[0]!.dropUser(names[i]!);
    });
    return { rawCreate, rawDrop, rawDropLoad: loadNow() };
  } finally {
    for (const s of sessions) await s.close().catch(() => undefined);
  }
}
