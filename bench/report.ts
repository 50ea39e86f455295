// The compact tables printed at the end of a bench run.

import type { ExpiryFigures } from './expiry-bench.ts';
import type { IssueFigures } from './issue-bench.ts';
import { fmt, percentile, perSecond } from './stats.ts';

export interface EngineResult {
  label: string;
  skipped?: string;
  failed?: string;
  issue?: IssueFigures;
  expiry?: ExpiryFigures;
  leftoversDropped?: number;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function issueRow(label: string, f: IssueFigures): string[] {
  const brokerRate = perSecond(f.broker.completed, f.broker.elapsedMs);
  const directRate = perSecond(f.direct.completed, f.direct.elapsedMs);
  return [
    label,
    `${f.broker.completed}${f.broker.failed ? ` (${f.broker.failed} failed)` : ''}`,
    fmt(brokerRate, 1),
    fmt(percentile(f.broker.latenciesMs, 50), 1),
    fmt(percentile(f.broker.latenciesMs, 99), 1),
    fmt(directRate, 1),
    fmt(percentile(f.direct.latenciesMs, 50), 1),
    fmt(percentile(f.direct.latenciesMs, 99), 1),
    `${fmt(brokerRate / directRate, 2)}x`,
    fmt(perSecond(f.directDrop.completed, f.directDrop.elapsedMs), 1),
    fmt(perSecond(f.broker.completed, f.brokerRevokeMs), 1),
  ];
}

function expiryRow(label: string, f: ExpiryFigures): string[] {
  const n = f.issue.completed;
  return [
    label,
    `${n}${f.renewOverran ? ' (renewals overran)' : ''}`,
    fmt(perSecond(n, f.issue.elapsedMs), 1),
    fmt(f.firstGoneMs / 1000, 2),
    fmt(f.allGoneMs / 1000, 2),
    fmt(perSecond(n, f.allGoneMs), 1),
    `${fmt(f.rssBefore)}/${fmt(f.rssLoaded)}/${fmt(f.rssPeak)}/${fmt(f.rssAfter)}`,
    String(f.usersLeft),
  ];
}

export function printReport(results: EngineResult[], settings: { clients: number; revocationInterval: number }): void {
  const issued = results.filter((r) => r.issue);
  const expired = results.filter((r) => r.expiry);
  console.log(`\n1. Credential issuance, ${settings.clients} concurrent clients (latencies in ms; "direct" = the same creation statements on the database, one session per client)`);
  if (issued.length > 0) {
    console.log(
      table(
        ['engine', 'creds', 'broker/s', 'p50', 'p99', 'direct/s', 'p50', 'p99', 'ratio', 'direct drop/s', 'revoke-prefix/s'],
        issued.map((r) => issueRow(r.label, r.issue!)),
      ),
    );
  }
  console.log(`\n2. ${expired[0]?.expiry?.issue.completed ?? ''} leases expiring at the same second (revocation_interval ${settings.revocationInterval} s; times from the expiry, broker RSS in MiB: before issuing / after issuing / max while revoking / after)`);
  if (expired.length > 0) {
    console.log(
      table(
        ['engine', 'leases', 'issued/s', 'first gone s', 'all gone s', 'revoked/s', 'broker RSS', 'users left'],
        expired.map((r) => expiryRow(r.label, r.expiry!)),
      ),
    );
  }
  for (const r of results) {
    if (r.skipped) console.log(`\n${r.label}: skipped: ${r.skipped}`);
    if (r.failed) console.log(`\n${r.label}: FAILED: ${r.failed}`);
    const errs = [...(r.issue?.broker.errors ?? []), ...(r.issue?.direct.errors ?? []), ...(r.expiry?.issue.errors ?? []), ...(r.expiry?.renew.errors ?? [])];
    if (errs.length > 0) console.log(`\n${r.label}: errors seen: ${errs.join(' | ')}`);
    if (r.leftoversDropped) console.log(`\n${r.label}: cleanup dropped ${r.leftoversDropped} leftover users`);
  }
}
