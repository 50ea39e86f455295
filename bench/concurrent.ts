// Run `op` from N concurrent workers until `total` operations have been
// started or `maxMs` has passed, timing each operation. On interrupt no new
// operation starts; those in flight finish, then it throws.

import { interrupt, throwIfInterrupted } from './abort.ts';

export interface RunResult {
  completed: number;
  failed: number;
  /** The first few (at most 5) distinct error messages. */
  errors: string[];
  /** Latency of each successful operation, in milliseconds. */
  latenciesMs: number[];
  elapsedMs: number;
}

/** `total` may be Infinity (then `maxMs` bounds the run); `stop` ends it early when it returns true. */
export async function runConcurrent(
  opts: { workers: number; total: number; maxMs?: number; stop?: () => boolean },
  op: (index: number, worker: number) => Promise<void>,
): Promise<RunResult> {
  const result: RunResult = { completed: 0, failed: 0, errors: [], latenciesMs: [], elapsedMs: 0 };
  const started = performance.now();
  const deadline = opts.maxMs === undefined ? Infinity : started + opts.maxMs;
  let next = 0;
  const worker = async (w: number): Promise<void> => {
    while (next < opts.total && performance.now() < deadline && !interrupt.signal.aborted && !opts.stop?.()) {
      const index = next++;
      const t0 = performance.now();
      try {
        await op(index, w);
        result.latenciesMs.push(performance.now() - t0);
        result.completed++;
      } catch (err) {
        result.failed++;
        const message = err instanceof Error ? err.message : String(err);
        if (result.errors.length < 5 && !result.errors.includes(message)) result.errors.push(message);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.workers }, (_, w) => worker(w)));
  result.elapsedMs = performance.now() - started;
  throwIfInterrupted();
  return result;
}
