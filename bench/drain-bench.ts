// The revocation drain: N leases due at the same moment, cleared by the
// broker's revocation loop, against the same server dropping N users one
// after another from one session; and how creds requests fare meanwhile.
//
// Issuing N credentials takes a while, so a fixed short TTL would spread the
// expiries over the issuing window. Instead the shared expiry instant T is
// chosen first (twice the issuing time expected from the broker's rate
// measured before, plus 5 s), and while the leases are issued the role's
// default_ttl is rewritten every 250 ms to the whole seconds left until T, so
// every lease ends within about a second of T. When a tenth of the leases is
// issued, the rate seen so far re-aims T if the guess was more than 10 s off
// (a machine shared with other work changes speed), and the leases issued
// before that are renewed to the new T at once, alongside the issuing (they
// would otherwise end at the old T, which may pass while the rest are being
// issued: MariaDB slows down as its accounts grow), and those issued just
// after it (before the role's TTL caught up) once all are issued. (Renewing every
// lease, as an earlier version did, costs a request per lease and a database
// statement on PostgreSQL.) The clock runs from T until `sys/leases/count`
// under the role's prefix reaches zero. A side client (1 connection, its own
// role) reads creds in a loop before the drain (unloaded), during it, and
// during the raw serial drop: so the raw rate is measured under the same side
// load as the broker's, and the side client's p99 during the raw drop shows
// what the database's own drop work does to a creation on this machine.
// Around each of the three windows the broker's event-loop delay is read
// from its sys/metrics (each scrape resets prom-client's histogram).

import { generatePassword } from '../src/util/random.ts';
import { pause } from './abort.ts';
import type { BenchBroker, EventLoopLag } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import { loadNow } from './stats.ts';
import type { BenchTarget, DirectSession } from './targets/target.ts';

export interface DrainOptions {
  leases: number;
  clients: number;
  /** Length of the unloaded side-client measurement, in seconds. */
  seconds: number;
  /** The broker's issuance rate with `clients` clients measured earlier (creds/s), or NaN to measure it here. */
  expectedRate: number;
  /** Prefix of this engine run's users; this part uses `<run>d…`. */
  run: string;
  statements: string[];
  progress: (message: string) => void;
}

export interface DrainFigures {
  issue: RunResult;
  /** The renewal of the leases issued before T was re-aimed (undefined when the first T held). */
  renew: RunResult | undefined;
  /** Issuing (or renewing) was still running at the shared expiry (the figures then mix issuing and draining). */
  issueOverran: boolean;
  /** From the shared expiry to the first lease gone, and to the last. */
  firstGoneMs: number;
  allGoneMs: number;
  /** Users of the drained role still in the database afterwards (should be 0). */
  usersLeft: number;
  sideUnloaded: RunResult;
  sideDuring: RunResult;
  /** The side client while the raw serial drop runs (the database's own drop work, no broker drain). */
  sideDuringRaw: RunResult;
  /** The baseline: N users made by `clients` sessions, then dropped by one session, one after another. */
  rawCreate: RunResult;
  rawDrop: RunResult;
  rss: { before: number; loaded: number; peak: number; after: number };
  /** The broker's event-loop delay while the side client ran unloaded, during the drain, and during the raw drop. */
  lag: { unloaded: EventLoopLag; drain: EventLoopLag; rawDrop: EventLoopLag };
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
    await bench.eventLoopLag();
    const sideUnloaded = await runConcurrent({ workers: 1, total: Infinity, maxMs: opts.seconds * 1000 }, async () => {
      await bench.issue(side, SIDE);
    });
    const lagUnloaded = await bench.eventLoopLag();

    let rate = opts.expectedRate;
    if (!(rate > 0)) {
      opts.progress(`measuring the issuance rate for ${opts.seconds} s`);
      const pilot = await runConcurrent({ workers: opts.clients, total: Infinity, maxMs: opts.seconds * 1000 }, async () => {
        await bench.issue(workers, SIDE);
      });
      rate = (pilot.completed * 1000) / pilot.elapsedMs;
    }
    let expiresAt = Date.now() + Math.min(3_600_000, Math.ceil((opts.leases / Math.max(rate, 1)) * 1000 * 2) + 5_000);
    const setTtl = (): Promise<void> =>
      bench.writeRole(ROLE, { statements: opts.statements, usernamePrefix: prefix, defaultTtl: Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000)), maxTtl: 7200 });
    await setTtl();
    opts.progress(`issuing ${opts.leases} leases with ${opts.clients} clients, all to expire at ${new Date(expiresAt).toISOString()} (expected ${rate.toFixed(0)}/s)`);
    // One update at a time; a tick that finds one still running is skipped.
    let ttlUpdate: Promise<void> | undefined;
    const ticker = setInterval(() => {
      ttlUpdate ??= setTtl()
        .catch((err: unknown) => opts.progress(`role TTL update failed: ${(err as Error).message}`))
        .finally(() => (ttlUpdate = undefined));
    }, 250);
    // Once a tenth is issued, the rate seen so far re-aims T if the first guess is more than 10 s off;
    // the leases issued before that (and those in flight then) are renewed to the new T afterwards.
    const issueStarted = Date.now();
    const issued: Array<{ id: string; at: number }> = [];
    let reaimedAt: number | undefined;
    let checked = false;
    const reaim = (): void => {
      if (checked || issued.length < Math.max(20, opts.leases / 10)) return;
      checked = true;
      const perMs = issued.length / Math.max(1, Date.now() - issueStarted);
      const remainingMs = (opts.leases - issued.length) / perMs;
      const renewMs = (issued.length + opts.clients) / perMs;
      const aim = Date.now() + Math.ceil((remainingMs + renewMs) * 1.5) + 5_000;
      if (Math.abs(aim - expiresAt) <= 10_000) return;
      opts.progress(`${issued.length} issued at ${(perMs * 1000).toFixed(0)}/s: re-aiming the expiry from ${new Date(expiresAt).toISOString()} to ${new Date(aim).toISOString()}`);
      expiresAt = aim;
      reaimedAt = Date.now();
      const early = issued.map((l) => l.id);
      early.forEach((id) => renewed.add(id));
      opts.progress(`renewing the ${early.length} leases issued before the re-aim, alongside the issuing`);
      renewing = renewLeases(early);
    };
    const renewed = new Set<string>();
    let renewing: Promise<RunResult> | undefined;
    const renewLeases = (ids: string[]): Promise<RunResult> =>
      runConcurrent({ workers: 2, total: ids.length }, async (i) => {
        const increment = Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000));
        await workers.expect(200, 'PUT', '/v1/sys/leases/renew', { token: bench.token, body: { lease_id: ids[i]!, increment } });
      });
    let issue: RunResult;
    try {
      issue = await runConcurrent({ workers: opts.clients, total: opts.leases }, async () => {
        issued.push({ id: await bench.issue(workers, ROLE), at: Date.now() });
        reaim();
      });
    } finally {
      clearInterval(ticker);
      await ttlUpdate;
    }
    let renew: RunResult | undefined;
    if (reaimedAt !== undefined) {
      const first = await renewing!;
      const late = issued.filter((l) => l.at < reaimedAt! + 1000 && !renewed.has(l.id)).map((l) => l.id);
      opts.progress(`renewing the ${late.length} leases issued just after the re-aim`);
      const second = await renewLeases(late);
      renew = {
        completed: first.completed + second.completed,
        failed: first.failed + second.failed,
        errors: [...new Set([...first.errors, ...second.errors])].slice(0, 5),
        latenciesMs: [...first.latenciesMs, ...second.latenciesMs],
        elapsedMs: first.elapsedMs + second.elapsedMs,
      };
    }
    const issueOverran = Date.now() >= expiresAt;
    const rssLoaded = bench.rss();
    opts.progress(`issued ${issue.completed} in ${(issue.elapsedMs / 1000).toFixed(1)} s; waiting ${Math.max(0, (expiresAt - Date.now()) / 1000).toFixed(1)} s for their expiry`);
    await pause(expiresAt - Date.now());

    // The drain; the side client runs until it ends.
    await bench.eventLoopLag();
    let drained = false;
    const during = runConcurrent({ workers: 1, total: Infinity, stop: () => drained }, async () => {
      await bench.issue(side, SIDE);
    });
    // Awaited below; if the wait for the drain throws first, this rejection must not go unhandled.
    during.catch(() => undefined);
    let firstGoneMs = NaN;
    let allGoneMs = NaN;
    let rssPeak = bench.rss();
    const deadline = Date.now() + 900_000;
    try {
      for (;;) {
        const n = await bench.leaseCount(`database/creds/${ROLE}/`);
        const sinceExpiry = Date.now() - expiresAt;
        rssPeak = Math.max(rssPeak, bench.rss());
        if (n < issue.completed && Number.isNaN(firstGoneMs)) firstGoneMs = sinceExpiry;
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
    const lagDrain = await bench.eventLoopLag();
    const drainLoad = loadNow();
    const usersLeft = await target.countUsers(prefix);
    const rssAfter = bench.rss();

    opts.progress(`raw baseline: ${issue.completed} users made by ${opts.clients} sessions, then dropped by 1 session`);
    const raw = await rawCreateThenDrop(target, opts, issue.completed, () => bench.issue(side, SIDE), () => bench.eventLoopLag());
    // Untimed: the side client's users go too, so they do not pile up round after
    // round (MariaDB's account changes slow down with every account the server holds).
    opts.progress('revoking the side client\'s leases (untimed)');
    await bench.expect(202, 'PUT', `sys/leases/revoke-prefix/database/creds/${SIDE}/`, { sync: false });
    for (const until = Date.now() + 600_000; (await bench.leaseCount(`database/creds/${SIDE}/`)) > 0; await pause(200)) {
      if (Date.now() > until) throw new Error('the side client\'s leases were still there 10 minutes after their revocation');
    }
    // The report counts failures; their first messages say which part failed and why.
    for (const [part, r] of Object.entries({ issue, renew, sideUnloaded, sideDuring, sideDuringRaw: raw.sideDuringRaw, rawCreate: raw.rawCreate, rawDrop: raw.rawDrop })) {
      if (r && r.failed > 0) opts.progress(`${part}: ${r.failed} failed, e.g. ${r.errors.join(' | ')}`);
    }
    return {
      issue,
      renew,
      issueOverran,
      firstGoneMs,
      allGoneMs,
      usersLeft,
      sideUnloaded,
      sideDuring,
      rawCreate: raw.rawCreate,
      rawDrop: raw.rawDrop,
      sideDuringRaw: raw.sideDuringRaw,
      lag: { unloaded: lagUnloaded, drain: lagDrain, rawDrop: raw.lagRawDrop },
      rss: { before: rssBefore, loaded: rssLoaded, peak: rssPeak, after: rssAfter },
      load: { drain: drainLoad, rawDrop: raw.rawDropLoad },
    };
  } finally {
    side.close();
    workers.close();
  }
}

async function rawCreateThenDrop(
  target: BenchTarget,
  opts: DrainOptions,
  n: number,
  sideIssue: () => Promise<unknown>,
  lag: () => Promise<EventLoopLag>,
): Promise<{ rawCreate: RunResult; rawDrop: RunResult; sideDuringRaw: RunResult; rawDropLoad: number; lagRawDrop: EventLoopLag }> {
  const sessions: DirectSession[] = [];
  try {
    for (let w = 0; w < opts.clients; w++) sessions.push(await target.openDirect());
    const names: string[] = [];
    const rawCreate = await runConcurrent({ workers: opts.clients, total: n }, async (i, w) => {
      const name = `${opts.run}dr${i}`;
      await sessions[w]!.createUser(name, generatePassword(), opts.statements);
      names.push(name);
    });
    await lag();
    let dropped = false;
    const side = runConcurrent({ workers: 1, total: Infinity, stop: () => dropped }, async () => {
      await sideIssue();
    });
    side.catch(() => undefined);
    let rawDrop: RunResult;
    try {
      rawDrop = await runConcurrent({ workers: 1, total: names.length }, async (i) => {
        await sessions[0]!.dropUser(names[i]!);
      });
    } finally {
      dropped = true;
    }
    const rawDropLoad = loadNow();
    const sideDuringRaw = await side;
    return { rawCreate, rawDrop, sideDuringRaw, rawDropLoad, lagRawDrop: await lag() };
  } finally {
    for (const s of sessions) await s.close().catch(() => undefined);
  }
}
