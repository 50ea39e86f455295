// Issuance, in interleaved rounds so a drift in machine load hits both
// sides: each round runs, for `seconds` each,
//   raw serial: the role's creation statements for one user after another,
//               from 1 database session of the bench's own (one transaction
//               on PostgreSQL; MySQL DDL commits statement by statement);
//   broker 1:   1 client reading database/creds/<role> in a loop;
//   raw 8:      the same statements from `clients` sessions at once;
//   broker 8:   `clients` clients reading creds at once.
// Each phase's users are dropped straight from the server after the phase
// (untimed; the broker's leases of them stay until the run ends), so every
// phase starts from the same catalog: MariaDB's account changes cost more
// with every account the server holds (raw serial CREATE USER + GRANT fell
// from 667/s to 178/s over three rounds when users were kept), which, with
// the phases always in the same order, penalised the broker's 8-client
// phase, the last of each round.

import { generatePassword } from '../src/util/random.ts';
import type { BenchBroker } from './bench-broker.ts';
import { runConcurrent, type RunResult } from './concurrent.ts';
import { loadNow } from './stats.ts';
import type { BenchTarget, DirectSession } from './targets/target.ts';

export interface IssueRoundOptions {
  rounds: number;
  /** Length of each phase, in seconds. */
  seconds: number;
  clients: number;
  /** Prefix of this engine run's users (letters and digits); this part uses `<run>i…`. */
  run: string;
  statements: string[];
  progress: (message: string) => void;
}

export interface IssueRound {
  rawSerial: RunResult;
  broker1: RunResult;
  rawN: RunResult;
  brokerN: RunResult;
  /** 1-minute load average at the end of each phase, in the order above. */
  load: number[];
}

const ROLE = 'issue';

async function rawPhase(target: BenchTarget, sessions: DirectSession[], workers: number, seconds: number, prefix: string, statements: string[]): Promise<RunResult> {
  return runConcurrent({ workers, total: Infinity, maxMs: seconds * 1000 }, async (i, w) => {
    await sessions[w]!.createUser(`${prefix}${i}`, generatePassword(), statements);
  });
}

async function brokerPhase(bench: BenchBroker, workers: number, seconds: number): Promise<RunResult> {
  const client = bench.client(workers);
  try {
    return await runConcurrent({ workers, total: Infinity, maxMs: seconds * 1000 }, async () => {
      await bench.issue(client, ROLE);
    });
  } finally {
    client.close();
  }
}

export async function benchIssueRounds(bench: BenchBroker, target: BenchTarget, opts: IssueRoundOptions): Promise<IssueRound[]> {
  await bench.writeRole(ROLE, { statements: opts.statements, usernamePrefix: `${opts.run}ib`, defaultTtl: 3600, maxTtl: 7200 });
  const sessions: DirectSession[] = [];
  const rounds: IssueRound[] = [];
  try {
    for (let w = 0; w < opts.clients; w++) sessions.push(await target.openDirect());
    for (let r = 0; r < opts.rounds; r++) {
      const load: number[] = [];
      const rawSerial = await rawPhase(target, sessions, 1, opts.seconds, `${opts.run}ir${r}s`, opts.statements);
      load.push(loadNow());
      await target.dropUsers(`${opts.run}ir${r}s`);
      const broker1 = await brokerPhase(bench, 1, opts.seconds);
      load.push(loadNow());
      await target.dropUsers(`${opts.run}ib`);
      const rawN = await rawPhase(target, sessions, opts.clients, opts.seconds, `${opts.run}ir${r}n`, opts.statements);
      load.push(loadNow());
      await target.dropUsers(`${opts.run}ir${r}n`);
      const brokerN = await brokerPhase(bench, opts.clients, opts.seconds);
      load.push(loadNow());
      await target.dropUsers(`${opts.run}ib`);
      rounds.push({ rawSerial, broker1, rawN, brokerN, load });
      opts.progress(
        `round ${r + 1}/${opts.rounds}: raw serial ${rate(rawSerial)}/s, broker 1 ${rate(broker1)}/s, raw ${opts.clients} ${rate(rawN)}/s, broker ${opts.clients} ${rate(brokerN)}/s`,
      );
    }
    return rounds;
  } finally {
    for (const s of sessions) await s.close().catch(() => undefined);
  }
}

const rate = (r: RunResult): string => ((r.completed * 1000) / r.elapsedMs).toFixed(0);
