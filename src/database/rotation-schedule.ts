// When rotations happen: cron schedules (UTC, 5 fields or 6 with seconds) or
// fixed periods, the retry backoff after a failure, and the timers that fire
// them. Stored state keeps the next rotation time, so a schedule survives a
// restart and a time missed while the broker was down fires once at start.

import cron from 'node-cron';
import { errors } from '../errors.ts';

/** Shortest rotation period accepted (as Vault). */
export const MIN_PERIOD_SECONDS = 5;
const RETRY_BASE_MS = 5_000;
const RETRY_CAP_MS = 3_600_000;
/** setTimeout cannot wait longer; a longer wait re-arms when it ends. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RotationPlan {
  /** Cron expression, UTC. */
  schedule?: string | undefined;
  /** Seconds between rotations. */
  period?: number | undefined;
}

/** Throw a 400 naming `field` unless `expression` is a cron expression with a next run. */
export function checkCron(field: string, expression: string): void {
  if (!cron.validate(expression)) throw errors.BAD_FIELD(field, `"${expression.slice(0, 128)}" is not a valid cron expression`);
  try {
    nextCronRun(expression);
  } catch (err) {
    throw errors.BAD_FIELD(field, err instanceof Error ? err.message : 'has no next run time');
  }
}

export function checkPeriod(field: string, seconds: number): void {
  if (seconds > 0 && seconds < MIN_PERIOD_SECONDS) throw errors.BAD_FIELD(field, `must be at least ${MIN_PERIOD_SECONDS} seconds`);
}

/** The next time (epoch ms, after now) the cron expression matches. */
export function nextCronRun(expression: string): number {
  const task = cron.createTask(expression, () => undefined, { timezone: 'UTC' });
  try {
    // getNextRun() answers only for a started task; getNextRuns() does not need one.
    const [next] = task.getNextRuns(1);
    if (!next) throw new Error('the expression never matches');
    return next.getTime();
  } finally {
    void task.destroy();
  }
}

/** The next rotation of a plan counted from `now`, or undefined when it has none. */
export function nextRotationAt(plan: RotationPlan, now: number): number | undefined {
  if (plan.schedule) return nextCronRun(plan.schedule);
  if (plan.period) return now + plan.period * 1000;
  return undefined;
}

/** Wait before retrying after the `failures`-th failure in a row: 5 s doubling, capped at an hour. */
export function retryDelayMs(failures: number): number {
  return Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(20, Math.max(0, failures - 1)));
}

/** One timer per key, firing `onDue(key)` at a stored time (at once if it has passed). */
export class RotationTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly onDue: (key: string) => Promise<void>) {}

  arm(key: string, at: number | undefined): void {
    this.disarm(key);
    if (this.stopped || at === undefined) return;
    const delay = Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      if (this.stopped) return;
      if (at - Date.now() > 1_000) return this.arm(key, at); // woke early from a capped wait
      void this.onDue(key).catch(() => undefined);
    }, delay);
    timer.unref();
    this.timers.set(key, timer);
  }

  disarm(key: string): void {
    const timer = this.timers.get(key);
    if (timer) clearTimeout(timer);
    this.timers.delete(key);
  }

  start(): void {
    this.stopped = false;
  }

  stop(): void {
    this.stopped = true;
    for (const key of [...this.timers.keys()]) this.disarm(key);
  }
}
