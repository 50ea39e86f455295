// Command line: `npm run bench -- [engine...] [--creds N] [--seconds S]
// [--leases N] [--clients N]`. No engine = all of them.

import { parseArgs } from 'node:util';
import { TARGETS, targetNamed } from './targets/index.ts';
import type { BenchTarget } from './targets/target.ts';

export interface BenchOptions {
  targets: BenchTarget[];
  /** Concurrent clients for issuing (and for the direct baseline). */
  clients: number;
  /** Figure 1 stops after this many credentials... */
  creds: number;
  /** ...or after this many seconds. */
  seconds: number;
  /** Figure 2: leases that expire together. */
  leases: number;
}

export const USAGE = `usage: npm run bench -- [postgres|mysql|mongodb ...] [--creds 500] [--seconds 10] [--leases 1000] [--clients 8]`;

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

export function parseOptions(argv: string[]): BenchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      creds: { type: 'string' },
      seconds: { type: 'string' },
      leases: { type: 'string' },
      clients: { type: 'string' },
    },
  });
  const targets = positionals.length === 0 ? Object.values(TARGETS) : positionals.map((name) => {
    const target = targetNamed(name);
    if (!target) throw new Error(`unknown engine "${name}" (known: ${Object.keys(TARGETS).join(', ')})`);
    return target;
  });
  return {
    targets: [...new Set(targets)],
    clients: positive('clients', values.clients, 8),
    creds: positive('creds', values.creds, 500),
    seconds: positive('seconds', values.seconds, 10),
    leases: positive('leases', values.leases, 1000),
  };
}
