// The bench's report (bench/report.ts): markdown tables whose ratios come
// from the phases' own counts and times, and a note for every failure.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunResult } from '../../bench/concurrent.ts';
import type { DrainFigures } from '../../bench/drain-bench.ts';
import { formatReport, markdownTable, type EngineResult } from '../../bench/report.ts';

/** `completed` operations in `seconds`, each taking `latencyMs`. */
function run(completed: number, seconds: number, latencyMs: number, failed = 0, errors: string[] = []): RunResult {
  return { completed, failed, errors, latenciesMs: Array.from({ length: completed }, () => latencyMs), elapsedMs: seconds * 1000 };
}

const settings = { clients: 8, rounds: 1, seconds: 2, loadStart: '1.00 / 1.00 / 1.00', loadEnd: '2.00 / 1.50 / 1.00', header: 'dbroker bench test' };

/** The cells of the first table row whose first cell is `first`, under the heading that contains `heading`. */
function rowOf(report: string, heading: string, first: string): string[] {
  const section = report.slice(report.indexOf(heading));
  const line = section.split('\n').find((l) => l.startsWith(`| ${first} |`));
  assert.ok(line, `a row for ${first} under "${heading}" in:\n${report}`);
  return line.slice(2, -2).split(' | ');
}

test('markdownTable: header, alignment row, one line per row, pipes escaped', () => {
  assert.equal(markdownTable(['a', 'n'], [['x|y', '12']]), '| a | n |\n|---|---:|\n| x\\|y | 12 |');
});

test('issuance ratios and the per-credential overhead come from the rates and p50s', () => {
  const result: EngineResult = {
    label: 'PostgreSQL',
    issue: [{ rawSerial: run(200, 2, 5), broker1: run(100, 2, 9), rawN: run(400, 2, 20), brokerN: run(300, 2, 50), load: [1, 2, 3, 1.5] }],
  };
  const cells = rowOf(formatReport([result], settings), '### Issuance', 'PostgreSQL');
  // raw serial 100/s p50 5; raw 8 200/s; broker 1 50/s; broker 8 150/s.
  assert.deepEqual(cells.slice(1), ['1', '100 (5.0)', '200', '50 (9.0 / 9.0)', '150 (50.0 / 50.0)', '0', '1.50×', '0.75×', '4.0', '3.00']);
});

/** One drain round: 1000 leases gone 4 s after their expiry; raw drop 500/s; side p99 10 ms unloaded, 15 ms during the raw drop. */
function drainRound(sideDuring: RunResult): DrainFigures {
  return {
    issue: run(1000, 10, 10),
    renew: undefined,
    issueOverran: false,
    firstGoneMs: 500,
    allGoneMs: 4000,
    usersLeft: 0,
    sideUnloaded: run(100, 2, 10),
    sideDuring,
    sideDuringRaw: run(60, 4, 15),
    rawCreate: run(1000, 5, 8),
    rawDrop: run(1000, 2, 2),
    lag: { unloaded: { p99: 11, max: 12 }, drain: { p99: 25.5, max: 40 }, rawDrop: { p99: 12, max: 20 } },
    rss: { before: 100, loaded: 120, peak: 130, after: 110 },
    load: { drain: 1.5, rawDrop: 1.25 },
  };
}

test('drain: broker users/s from the time to the last lease gone, against raw serial DROP, and p99 during vs unloaded', () => {
  const result: EngineResult = { label: 'MariaDB', drain: [drainRound(run(50, 4, 25))] };
  const cells = rowOf(formatReport([result], settings), '### Drain', 'MariaDB');
  assert.deepEqual(cells.slice(1, 13), ['1000', '0.5 / 4.0', '250', '500', '0.50×', '10.0 (100)', '25.0 (50)', '2.50×', '15.0 (60): 1.50×', '11.0/12 · 25.5/40 · 12.0/20', '0', '0']);
});

test('drain rounds: a row for each, then the medians of their ratios', () => {
  const result: EngineResult = { label: 'PostgreSQL', drain: [drainRound(run(50, 4, 25)), drainRound(run(50, 4, 12)), drainRound(run(50, 4, 40))] };
  const report = formatReport([result], settings);
  assert.equal(rowOf(report, '### Drain', 'PostgreSQL 2/3')[7], '12.0 (50)');
  const median = rowOf(report, '### Drain', 'PostgreSQL median');
  assert.equal(median[5], '0.50×');
  assert.equal(median[8], '2.50×', 'the median of 2.50×, 1.20× and 4.00×');
  // The p99 of every round's samples together: 150 during (50 each at 25, 12 and 40 ms), 300 unloaded.
  const pooled = rowOf(report, '### Drain', 'PostgreSQL pooled');
  assert.deepEqual(pooled.slice(6, 10), ['10.0 (300)', '40.0 (150)', '4.00×', '15.0 (180): 1.50×']);
});

test('every failure is counted and its messages are listed in the notes', () => {
  const result: EngineResult = {
    label: 'PostgreSQL',
    live: { run: run(9990, 100, 40, 10, ['GET /v1/database/creds/live answered 500: row is too big']), usersInDb: 9990, leases: 9990, firstTenthRate: 110, lastTenthRate: 90, load: 2 },
  };
  const report = formatReport([result], settings);
  const cells = rowOf(report, '### vault-benchmark style', 'PostgreSQL');
  assert.deepEqual(cells.slice(2, 5), ['9990', '10', '99.90 %']);
  assert.match(report, /- PostgreSQL: live users: 10 failed: GET \/v1\/database\/creds\/live answered 500: row is too big/);
  assert.match(report, /load average \(1\/5\/15 min\) at start 1\.00 \/ 1\.00 \/ 1\.00, at end 2\.00 \/ 1\.50 \/ 1\.00/);
});
