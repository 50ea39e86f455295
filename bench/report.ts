// The report printed at the end of a bench run: markdown tables, ready to
// paste into a note. Rates are per second, latencies in milliseconds, "load"
// is the 1-minute load average when the phase (or the row's last phase) ended.

import type { ApiRound } from './api-bench.ts';
import type { RunResult } from './concurrent.ts';
import type { DrainFigures } from './drain-bench.ts';
import type { IssueRound } from './issue-rounds.ts';
import type { LiveUsersFigures } from './live-users-bench.ts';
import { fmt, median, percentile, perSecond } from './stats.ts';

export interface EngineResult {
  label: string;
  /** What the roles' creation statements do. */
  describe?: string;
  skipped?: string;
  failed?: string;
  issue?: IssueRound[];
  api?: ApiRound[];
  /** One per drain round, in order. */
  drain?: DrainFigures[];
  live?: LiveUsersFigures;
  leftoversDropped?: number;
  /** 1/5/15-minute load averages when the engine's part started and ended. */
  loadStart?: string;
  loadEnd?: string;
}

export interface ReportSettings {
  clients: number;
  rounds: number;
  seconds: number;
  loadStart: string;
  loadEnd: string;
  header: string;
}

/** A markdown table; numbers are right-aligned. */
export function markdownTable(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i === 0 || rows.every((r) => !/^[-\d.]/.test(r[i] ?? '')) ? '---' : '---:'));
  const line = (cells: string[]): string => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(header), `|${align.join('|')}|`, ...rows.map(line)].join('\n');
}

const rate = (r: RunResult): number => perSecond(r.completed, r.elapsedMs);
const p50 = (r: RunResult): number => percentile(r.latenciesMs, 50);
const p99 = (r: RunResult): number => percentile(r.latenciesMs, 99);
const x = (v: number): string => `${fmt(v, 2)}×`;

function issueCells(i: IssueRound): { cells: string[]; values: number[] } {
  const failed = i.broker1.failed + i.brokerN.failed + i.rawSerial.failed + i.rawN.failed;
  const values = [rate(i.rawSerial), p50(i.rawSerial), rate(i.rawN), rate(i.broker1), p50(i.broker1), p99(i.broker1), rate(i.brokerN), p50(i.brokerN), p99(i.brokerN), failed,
    rate(i.brokerN) / rate(i.rawSerial), rate(i.brokerN) / rate(i.rawN), p50(i.broker1) - p50(i.rawSerial), Math.max(...i.load)];
  return { values, cells: issueRowCells(values) };
}

function issueRowCells(v: number[]): string[] {
  const [rs, rsP50, rn, b1, b1P50, b1P99, bn, bnP50, bnP99, failed, r1, r2, overhead, load] = v as [number, number, number, number, number, number, number, number, number, number, number, number, number, number];
  return [`${fmt(rs)} (${fmt(rsP50, 1)})`, fmt(rn), `${fmt(b1)} (${fmt(b1P50, 1)} / ${fmt(b1P99, 1)})`, `${fmt(bn)} (${fmt(bnP50, 1)} / ${fmt(bnP99, 1)})`, fmt(failed), x(r1), x(r2), fmt(overhead, 1), fmt(load, 2)];
}

function issueTable(results: EngineResult[], s: ReportSettings): string {
  const rows: string[][] = [];
  for (const r of results) {
    if (!r.issue?.length) continue;
    const per = r.issue.map(issueCells);
    per.forEach((p, n) => rows.push([r.label, String(n + 1), ...p.cells]));
    if (per.length > 1) {
      const medians = per[0]!.values.map((_, k) => (k === 9 ? per.reduce((a, p) => a + p.values[k]!, 0) : median(per.map((p) => p.values[k]!))));
      rows.push([`**${r.label}**`, '**median**', ...issueRowCells(medians).map((c) => `**${c}**`)]);
    }
  }
  const n = s.clients;
  return markdownTable(
    ['engine', 'round', 'raw serial/s (p50 ms)', `raw ${n}/s`, 'broker 1/s (p50 / p99 ms)', `broker ${n}/s (p50 / p99 ms)`, 'failed', `broker ${n} ÷ raw serial`, `broker ${n} ÷ raw ${n}`, 'broker 1 p50 − raw p50 (ms)', 'load'],
    rows,
  );
}

function drainTable(results: EngineResult[]): string {
  const rows: string[][] = [];
  for (const r of results) {
    const rounds = r.drain ?? [];
    const ratios: Array<{ rate: number; p99: number }> = [];
    for (const [k, d] of rounds.entries()) {
      const n = d.issue.completed;
      const brokerRate = perSecond(n, d.allGoneMs);
      const rawRate = rate(d.rawDrop);
      const failed = d.issue.failed + (d.renew?.failed ?? 0) + d.sideUnloaded.failed + d.sideDuring.failed + d.sideDuringRaw.failed + d.rawCreate.failed + d.rawDrop.failed;
      ratios.push({ rate: brokerRate / rawRate, p99: p99(d.sideDuring) / p99(d.sideUnloaded) });
      rows.push([
        rounds.length > 1 ? `${r.label} ${k + 1}/${rounds.length}` : r.label,
        `${n}${d.renew ? ` (${d.renew.completed} renewed to re-aim)` : ''}${d.issueOverran ? ' (issuing overran the expiry)' : ''}`,
        `${fmt(d.firstGoneMs / 1000, 1)} / ${fmt(d.allGoneMs / 1000, 1)}`,
        fmt(brokerRate),
        fmt(rawRate),
        x(brokerRate / rawRate),
        `${fmt(p99(d.sideUnloaded), 1)} (${d.sideUnloaded.completed})`,
        `${fmt(p99(d.sideDuring), 1)} (${d.sideDuring.completed})`,
        x(p99(d.sideDuring) / p99(d.sideUnloaded)),
        `${fmt(p99(d.sideDuringRaw), 1)} (${d.sideDuringRaw.completed}): ${x(p99(d.sideDuringRaw) / p99(d.sideUnloaded))}`,
        [d.lag.unloaded, d.lag.drain, d.lag.rawDrop].map((l) => `${fmt(l.p99, 1)}/${fmt(l.max, 0)}`).join(' · '),
        String(failed),
        String(d.usersLeft),
        `${fmt(d.rss.before)} / ${fmt(d.rss.loaded)} / ${fmt(d.rss.peak)} / ${fmt(d.rss.after)}`,
        `${fmt(d.load.drain, 2)} / ${fmt(d.load.rawDrop, 2)}`,
      ]);
    }
    if (rounds.length > 1) {
      const dash = '';
      rows.push([`${r.label} median`, dash, dash, dash, dash, x(median(ratios.map((q) => q.rate))), dash, dash, x(median(ratios.map((q) => q.p99))), dash, dash, dash, dash, dash, dash]);
      // One round's p99 rests on a few hundred samples; all rounds' samples together give a steadier one.
      const pool = (part: (d: DrainFigures) => RunResult): number[] => rounds.flatMap((d) => part(d).latenciesMs);
      const [unloaded, during, duringRaw] = [pool((d) => d.sideUnloaded), pool((d) => d.sideDuring), pool((d) => d.sideDuringRaw)];
      const base = percentile(unloaded, 99);
      rows.push([
        `${r.label} pooled`,
        dash,
        dash,
        dash,
        dash,
        dash,
        `${fmt(base, 1)} (${unloaded.length})`,
        `${fmt(percentile(during, 99), 1)} (${during.length})`,
        x(percentile(during, 99) / base),
        `${fmt(percentile(duringRaw, 99), 1)} (${duringRaw.length}): ${x(percentile(duringRaw, 99) / base)}`,
        dash,
        dash,
        dash,
        dash,
        dash,
      ]);
    }
  }
  return markdownTable(
    ['engine', 'leases due at once', 'first / all revoked after (s)', 'broker users/s', 'raw serial DROP/s', 'broker ÷ raw', 'creds p99 unloaded (ms, n)', 'creds p99 during drain (ms, n)', 'during ÷ unloaded', 'creds p99 during the raw drop (ms, n): ÷ unloaded', 'broker event-loop delay p99/max (ms): unloaded · drain · raw drop', 'failed', 'users left', 'broker RSS MiB before / loaded / peak / after', 'load drain / raw'],
    rows,
  );
}

function apiTable(results: EngineResult[]): string {
  const rows: string[][] = [];
  for (const r of results) {
    if (!r.api?.length) continue;
    const values = r.api.map((a) => [rate(a.hello), rate(a.leaseLookup), rate(a.leaseLookup) / rate(a.hello), rate(a.lookupSelf), rate(a.lookupSelf) / rate(a.hello), a.hello.failed + a.leaseLookup.failed + a.lookupSelf.failed, Math.max(...a.load)]);
    const cells = (v: number[]): string[] => [fmt(v[0]), fmt(v[1]), x(v[2]!), fmt(v[3]), x(v[4]!), fmt(v[5]), fmt(v[6], 2)];
    values.forEach((v, n) => rows.push([String(n + 1), ...cells(v)]));
    if (values.length > 1) {
      const m = values[0]!.map((_, k) => (k === 5 ? values.reduce((a, v) => a + v[k]!, 0) : median(values.map((v) => v[k]!))));
      rows.push(['**median**', ...cells(m).map((c) => `**${c}**`)]);
    }
  }
  return markdownTable(['round', 'fastify hello-world req/s', 'sys/leases/lookup req/s', '÷ hello', 'auth/token/lookup-self req/s', '÷ hello', 'failed', 'load'], rows);
}

function liveTable(results: EngineResult[], s: ReportSettings): string {
  const rows = results.filter((r) => r.live).map((r) => {
    const l = r.live!;
    const total = l.run.completed + l.run.failed;
    return [
      r.label,
      String(s.clients),
      String(l.run.completed),
      String(l.run.failed),
      `${fmt(total > 0 ? (100 * l.run.completed) / total : NaN, 2)} %`,
      `${fmt(rate(l.run))} (${fmt(l.firstTenthRate)} → ${fmt(l.lastTenthRate)})`,
      `${fmt(p50(l.run), 1)} / ${fmt(p99(l.run), 1)}`,
      String(l.usersInDb),
      String(l.leases),
      fmt(l.load, 2),
    ];
  });
  return markdownTable(['engine', 'workers', 'succeeded', 'failed', 'success', 'creds/s (first → last tenth)', 'p50 / p99 (ms)', 'users in the database', 'leases', 'load'], rows);
}

/** Distinct error messages of every phase of `r`, with the phase's failure count. */
export function failures(r: EngineResult): string[] {
  const out: string[] = [];
  const add = (what: string, run: RunResult | undefined): void => {
    if (run && run.failed > 0) out.push(`${what}: ${run.failed} failed: ${run.errors.join(' | ')}`);
  };
  r.issue?.forEach((i, n) => {
    add(`issuance round ${n + 1} raw serial`, i.rawSerial);
    add(`issuance round ${n + 1} broker 1`, i.broker1);
    add(`issuance round ${n + 1} raw N`, i.rawN);
    add(`issuance round ${n + 1} broker N`, i.brokerN);
  });
  r.api?.forEach((a, n) => {
    add(`api round ${n + 1} hello`, a.hello);
    add(`api round ${n + 1} sys/leases/lookup`, a.leaseLookup);
    add(`api round ${n + 1} lookup-self`, a.lookupSelf);
  });
  r.drain?.forEach((d, n) => {
    const round = r.drain!.length > 1 ? `drain round ${n + 1}` : 'drain';
    add(`${round} issue`, d.issue);
    add(`${round} renew (re-aimed expiry)`, d.renew);
    add(`${round} side client unloaded`, d.sideUnloaded);
    add(`${round} side client during`, d.sideDuring);
    add(`${round} raw create`, d.rawCreate);
    add(`${round} raw drop`, d.rawDrop);
    add(`${round} side client during the raw drop`, d.sideDuringRaw);
    if (d.usersLeft > 0) out.push(`${round}: ${d.usersLeft} users of revoked leases still in the database`);
  });
  if (r.live) {
    add('live users', r.live.run);
    if (r.live.usersInDb !== r.live.run.completed) out.push(`live users: ${r.live.run.completed} creds served but ${r.live.usersInDb} users in the database`);
  }
  return out;
}

/** The whole report as markdown. */
export function formatReport(results: EngineResult[], s: ReportSettings): string {
  const out: string[] = [s.header, ''];
  if (results.some((r) => r.issue?.length)) {
    out.push(`### Issuance: ${s.rounds} interleaved rounds of ${s.seconds} s per phase (raw serial, broker 1, raw ${s.clients}, broker ${s.clients})`, '', issueTable(results, s), '');
  }
  if (results.some((r) => r.api?.length)) {
    out.push(`### Non-database path: ${s.clients} keep-alive connections, ${s.seconds} s per phase, interleaved (same load generator for all)`, '', apiTable(results), '');
  }
  if (results.some((r) => r.drain?.length)) {
    out.push('### Drain: leases due at the same second, revoked by the broker; raw = the same server dropping as many users from 1 session', '', drainTable(results), '');
  }
  if (results.some((r) => r.live)) {
    out.push(`### vault-benchmark style: ${s.clients} workers, one role granting a group role, no revocation, up to the goal of live users`, '', liveTable(results, s), '');
  }
  out.push('### Notes', '');
  for (const r of results) {
    if (r.describe) out.push(`- ${r.label} role statements: ${r.describe}`);
    if (r.loadStart) out.push(`- ${r.label}: load average ${r.loadStart} at start, ${r.loadEnd ?? '-'} at end`);
    if (r.skipped) out.push(`- ${r.label}: skipped: ${r.skipped}`);
    if (r.failed) out.push(`- ${r.label}: **FAILED**: ${r.failed}`);
    for (const f of failures(r)) out.push(`- ${r.label}: ${f}`);
    if (r.leftoversDropped) out.push(`- ${r.label}: the final sweep dropped the ${r.leftoversDropped} users of this run still there (issuance, side client, live users; the broker had been stopped)`);
  }
  out.push(`- load average (1/5/15 min) at start ${s.loadStart}, at end ${s.loadEnd}`);
  return out.join('\n');
}
