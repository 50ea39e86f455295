// dbroker benchmarks: `npm run bench -- [engine...] [options]` (options.ts).
// For each engine: a real broker process with its own store, then
//   issue: interleaved rounds of raw serial / broker 1 / raw N / broker N
//          issuance (issue-rounds.ts);
//   api:   (first engine only) sys/leases/lookup and auth/token/lookup-self
//          against a fastify hello-world (api-bench.ts);
//   drain: N leases due at once vs raw serial DROP (drain-bench.ts);
//   live:  vault-benchmark style up to N live users on a role granting a
//          group role (live-users-bench.ts), where the engine has roles.
// Prints markdown tables; never a test, never gates CI. Every database user
// the bench creates is dropped at the end (the broker revokes its own; a
// final sweep by the run's name prefix drops the rest and anything a failure
// left), and so is the group role.

import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { benchApi } from './api-bench.ts';
import { interrupt } from './abort.ts';
import { BenchBroker } from './bench-broker.ts';
import { benchDrain } from './drain-bench.ts';
import { benchIssueRounds } from './issue-rounds.ts';
import { benchLiveUsers } from './live-users-bench.ts';
import { HELP, parseOptions, USAGE, wantsHelp, type BenchOptions } from './options.ts';
import { formatReport, type EngineResult } from './report.ts';
import { median, perSecond } from './stats.ts';
import type { BenchTarget } from './targets/target.ts';

const progress = (message: string): void => void process.stderr.write(`bench ${new Date().toISOString().slice(11, 19)}: ${message}\n`);
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');

async function benchEngine(target: BenchTarget, opts: BenchOptions, withApi: boolean): Promise<EngineResult> {
  const skipped = await target.unavailable();
  if (skipped) return { label: target.label, skipped };
  const result: EngineResult = { label: target.label, loadStart: load() };
  const hex = randomBytes(3).toString('hex');
  // Users start with `run`; the group role's name does not (hex has no "g").
  const run = `dbrb${hex}`;
  const group = `dbrbg${hex}`;
  const say = (m: string): void => progress(`${target.label}: ${m}`);
  let bench: BenchBroker | undefined;
  try {
    const setup = await target.prepare(group);
    result.describe = setup.describe;
    bench = await BenchBroker.start(target);
    if (opts.parts.has('issue')) {
      say(`issuance, ${opts.rounds} rounds of 4 × ${opts.seconds} s; load ${load()}`);
      result.issue = await benchIssueRounds(bench, target, { rounds: opts.rounds, seconds: opts.seconds, clients: opts.clients, run, statements: setup.creationStatements, progress: say });
    }
    if (withApi) {
      say(`non-database path, ${opts.rounds} rounds of 3 × ${opts.seconds} s; load ${load()}`);
      const lease = bench.client(1);
      await bench.writeRole('lookup', { statements: setup.creationStatements, usernamePrefix: `${run}a`, defaultTtl: 3600, maxTtl: 7200 });
      const leaseId = await bench.issue(lease, 'lookup').finally(() => lease.close());
      result.api = await benchApi(bench, { rounds: opts.rounds, seconds: opts.seconds, clients: opts.clients, leaseId, progress: say });
    }
    if (opts.parts.has('drain')) {
      say(`drain of ${opts.leases} leases; load ${load()}`);
      let expectedRate = median((result.issue ?? []).map((i) => perSecond(i.brokerN.completed, i.brokerN.elapsedMs)));
      result.drain = [];
      for (let k = 1; k <= opts.drainRounds; k++) {
        if (opts.drainRounds > 1) say(`drain round ${k} of ${opts.drainRounds}; load ${load()}`);
        // Each round its own user names (letters and digits), all under the run's prefix for the final sweep.
        const round = await benchDrain(bench, target, { leases: opts.leases, clients: opts.clients, seconds: opts.seconds, expectedRate, run: `${run}r${k}`, statements: setup.creationStatements, progress: say });
        result.drain.push(round);
        // The next round aims its shared expiry with the rate this one issued 5,000 leases at (MariaDB slows as accounts grow).
        expectedRate = perSecond(round.issue.completed, round.issue.elapsedMs);
      }
    }
    if (opts.parts.has('live')) {
      if (setup.groupStatements) {
        say(`vault-benchmark style up to ${opts.live} live users; load ${load()}`);
        result.live = await benchLiveUsers(bench, target, { live: opts.live, clients: opts.clients, run, statements: setup.groupStatements, progress: say });
      } else {
        say('no group roles on this engine: no vault-benchmark-style run');
      }
    }
  } catch (err) {
    result.failed = err instanceof Error ? err.message : String(err);
    if (bench && !interrupt.signal.aborted) say(`failed: ${result.failed}\nbroker log tail:\n${bench.process.logs.split('\n').slice(-15).join('\n')}`);
  } finally {
    try {
      // The broker goes first (its store with it): nothing may revoke behind the sweep's back.
      await bench?.close().catch(() => undefined);
      say('sweeping this run\'s users');
      result.leftoversDropped = await target.dropUsers(run);
      await target.teardown(group);
    } catch (err) {
      result.failed = `${result.failed ?? ''} cleanup failed: ${(err as Error).message}`.trim();
    }
    result.loadEnd = load();
  }
  return result;
}

async function main(): Promise<void> {
  let opts: BenchOptions;
  if (wantsHelp(process.argv.slice(2))) {
    console.log(HELP);
    return;
  }
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  // A second Ctrl-C gets the default behaviour (exit at once).
  process.once('SIGINT', () => {
    progress('interrupted: finishing the requests in flight, then dropping this run\'s users (Ctrl-C again to quit at once)');
    interrupt.abort();
  });
  const loadStart = load();
  const started = Date.now();
  const header = `dbroker bench ${new Date().toISOString().slice(0, 16)}Z: ${cpus().length} CPUs, node ${process.version}, ${opts.clients} clients; command: npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  progress(`${header}; load ${loadStart}`);
  const results: EngineResult[] = [];
  let apiDone = !opts.parts.has('api');
  for (const target of opts.targets) {
    const r = await benchEngine(target, opts, !apiDone);
    apiDone ||= r.api !== undefined || r.skipped === undefined;
    results.push(r);
    if (interrupt.signal.aborted) {
      progress(`stopped; cleanup dropped ${r.leftoversDropped ?? 0} users; the report below has the parts that finished`);
      break;
    }
  }
  const took = `took ${((Date.now() - started) / 60_000).toFixed(1)} min${interrupt.signal.aborted ? ', INTERRUPTED' : ''}`;
  console.log(formatReport(results, { clients: opts.clients, rounds: opts.rounds, seconds: opts.seconds, loadStart, loadEnd: load(), header: `${header}; ${took}` }));
  if (interrupt.signal.aborted) process.exitCode = 130;
}

await main();
