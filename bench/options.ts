// Command line of `npm run bench` (see USAGE). No engine = all of them; the
// default is the full run (about 10 minutes on 2 cores), --quick a short one
// for checking that everything works. Explicit options override --quick.

import { parseArgs } from 'node:util';
import { TARGETS, targetNamed } from './targets/index.ts';
import type { BenchTarget } from './targets/target.ts';

/** The parts of a run, in the order they run for each engine. */
export const PARTS = ['issue', 'api', 'drain', 'live'] as const;
export type Part = (typeof PARTS)[number];

export interface BenchOptions {
  targets: BenchTarget[];
  parts: Set<Part>;
  /** Interleaved rounds of the issuance and API parts. */
  rounds: number;
  /** Length of each timed phase, in seconds. */
  seconds: number;
  /** Concurrent clients (and raw sessions, and vault-benchmark-style workers). */
  clients: number;
  /** Leases due at once in the drain. */
  leases: number;
  /** Drains run one after another (the table has a row for each and their median). */
  drainRounds: number;
  /** Live users the vault-benchmark-style run goes up to. */
  live: number;
}

export const USAGE = `usage: npm run bench -- [postgres|mariadb|mongodb ...] [--engines pg,mariadb,mongo] [--only issue,api,drain,live]
                     [--quick] [--rounds 3] [--seconds 3] [--clients 8] [--leases 5000] [--drain-rounds 3]
                     [--live 10000] [--help]`;

const FULL = { rounds: 3, seconds: 3, clients: 8, leases: 5000, drainRounds: 3, live: 10_000 };
const QUICK = { rounds: 2, seconds: 2, clients: 8, leases: 300, drainRounds: 1, live: 500 };

/** What `--help` / `-h` prints (on stdout, exit 0): USAGE, then each option with its full and --quick value. */
export const HELP = `${USAGE}

Benchmarks dbroker against real database servers and prints markdown tables
(stdout; progress on stderr). It is a measurement, never a test. README
"Benchmarks" has the details.

  ENGINE ...          postgres, mysql, mongodb (aliases pg, postgresql, mariadb,
                      mongo, ferretdb); none = every engine
  --engines LIST      the same, comma-separated
  --only PARTS        some of: ${PARTS.join(', ')} (default: all)
  --quick             a short run, to check that everything works
  --rounds N          interleaved rounds of issue and api (${FULL.rounds}; quick ${QUICK.rounds})
  --seconds N         length of each timed phase, in seconds (${FULL.seconds}; quick ${QUICK.seconds})
  --clients N         concurrent clients and raw sessions (${FULL.clients}; quick ${QUICK.clients})
  --leases N          leases due at once in the drain (${FULL.leases}; quick ${QUICK.leases})
  --drain-rounds N    drains, one after another (${FULL.drainRounds}; quick ${QUICK.drainRounds}): a drain lasts
                      seconds, so one round's creds p99 rests on a few hundred samples
  --live N            live users the live part goes up to (${FULL.live}; quick ${QUICK.live})
  -h, --help          print this and exit`;

/**
 * Whether `argv` (without node and the script) asks for help: `--help` or
 * `-h` anywhere before a `--` terminator, whatever else it holds (so
 * `--help` next to a bad option still shows the usage).
 */
export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

/** Parse `argv` (without node and the script); throws with a message naming the bad option. */
export function parseOptions(argv: string[]): BenchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      engines: { type: 'string' },
      only: { type: 'string' },
      quick: { type: 'boolean' },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      clients: { type: 'string' },
      leases: { type: 'string' },
      'drain-rounds': { type: 'string' },
      live: { type: 'string' },
      // Handled before parsing (wantsHelp); declared so it is never an "unknown option".
      help: { type: 'boolean', short: 'h' },
    },
  });
  const names = [...positionals, ...list(values.engines)];
  const targets = names.length === 0 ? Object.values(TARGETS) : names.map((name) => {
    const target = targetNamed(name);
    if (!target) throw new Error(`unknown engine "${name}" (known: ${Object.keys(TARGETS).join(', ')}; aliases pg, mariadb, mongo, ferretdb)`);
    return target;
  });
  const only = list(values.only);
  for (const p of only) if (!(PARTS as readonly string[]).includes(p)) throw new Error(`--only: unknown part "${p}" (known: ${PARTS.join(', ')})`);
  const base = values.quick ? QUICK : FULL;
  return {
    targets: [...new Set(targets)],
    parts: new Set(only.length === 0 ? PARTS : (only as Part[])),
    rounds: positive('rounds', values.rounds, base.rounds),
    seconds: positive('seconds', values.seconds, base.seconds),
    clients: positive('clients', values.clients, base.clients),
    leases: positive('leases', values.leases, base.leases),
    drainRounds: positive('drain-rounds', values['drain-rounds'], base.drainRounds),
    live: positive('live', values.live, base.live),
  };
}
