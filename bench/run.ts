// dbroker benchmarks: `npm run bench -- [engine...]` (see options.ts).
// For each engine: a real broker process with its own store, then
//   1. credentials issued per second by concurrent clients, against the same
//      statements run directly on the database;
//   2. how fast N leases that expire together are revoked, and broker RSS.
// Prints figures; never a test, never gates CI. Every database user the bench
// creates is dropped at the end (the broker revokes its own; a final sweep by
// name prefix catches anything left by a failure).

import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { interrupt } from './abort.ts';
import { BenchBroker } from './bench-broker.ts';
import { benchExpiry } from './expiry-bench.ts';
import { benchIssue } from './issue-bench.ts';
import { parseOptions, USAGE, type BenchOptions } from './options.ts';
import { printReport, type EngineResult } from './report.ts';
import { fmt, percentile, perSecond } from './stats.ts';
import type { BenchTarget } from './targets/target.ts';

/** The test harness configures the broker's revocation loop to wake every second. */
const REVOCATION_INTERVAL_S = 1;

const progress = (message: string): void => void process.stderr.write(`bench: ${message}\n`);
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

async function benchEngine(target: BenchTarget, opts: BenchOptions): Promise<EngineResult> {
  const skipped = await target.unavailable();
  if (skipped) return { label: target.label, skipped };
  const result: EngineResult = { label: target.label };
  const runPrefix = `dbrb${randomBytes(3).toString('hex')}`;
  let bench: BenchBroker | undefined;
  const cleanup = async (): Promise<void> => {
    await bench?.close().catch(() => undefined);
    bench = undefined;
    result.leftoversDropped = await target.dropUsers(runPrefix);
  };
  try {
    bench = await BenchBroker.start(target);
    progress(`${target.label}: issuing up to ${opts.creds} credentials with ${opts.clients} clients (at most ${opts.seconds} s), then the direct baseline`);
    result.issue = await benchIssue(bench, target, { workers: opts.clients, total: opts.creds, maxMs: opts.seconds * 1000, runPrefix });
    const b = result.issue.broker;
    progress(`${target.label}: broker ${fmt(perSecond(b.completed, b.elapsedMs), 1)} creds/s (p50 ${fmt(percentile(b.latenciesMs, 50), 1)} ms), direct ${fmt(perSecond(result.issue.direct.completed, result.issue.direct.elapsedMs), 1)}/s; load ${load()}`);
    progress(`${target.label}: issuing ${opts.leases} leases, aligning their expiry, waiting for the revocation loop`);
    result.expiry = await benchExpiry(bench, target, { workers: opts.clients, leases: opts.leases, runPrefix });
    progress(`${target.label}: all ${result.expiry.issue.completed} revoked ${fmt(result.expiry.allGoneMs / 1000, 2)} s after expiry; load ${load()}`);
  } catch (err) {
    result.failed = err instanceof Error ? err.message : String(err);
    if (bench && !interrupt.signal.aborted) progress(`${target.label}: broker log tail:\n${bench.process.logs.split('\n').slice(-15).join('\n')}`);
  } finally {
    await cleanup().catch((err: unknown) => (result.failed = `${result.failed ?? ''} cleanup failed: ${(err as Error).message}`.trim()));
  }
  return result;
}

async function main(): Promise<void> {
  let opts: BenchOptions;
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
  console.log(`dbroker bench: ${cpus().length} CPUs, node ${process.version}, load average at start ${load()}`);
  const results: EngineResult[] = [];
  for (const target of opts.targets) {
    results.push(await benchEngine(target, opts));
    if (interrupt.signal.aborted) {
      const dropped = results.at(-1)?.leftoversDropped ?? 0;
      progress(`stopped; cleanup dropped ${dropped} users`);
      process.exit(130);
    }
  }
  printReport(results, { clients: opts.clients, revocationInterval: REVOCATION_INTERVAL_S });
  console.log(`\nload average at end ${load()}`);
}

await main();
