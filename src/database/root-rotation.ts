// Root credential rotation that never locks anyone out.
//
// Order of a rotation, each step durable before the next:
//   1. the new password is stored (sealed) as `pendingPassword`;
//   2. the database is told the new password (engine.updateUser);
//   3. a fresh engine proves the new login works;
//   4. the new password becomes current and pending is cleared.
// After a crash or a failed step, `reconcile` tries the current and then the
// pending password and settles on whichever logs in, so a working root
// credential is always known. Rotations of one connection are serialised.

import cron from 'node-cron';
import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import { fault } from '../util/faults.ts';
import { generatePassword } from '../util/random.ts';
import { durationField } from '../http/schema.ts';
import type { ConnectionRecord, RootRotationState } from './connections.ts';
import type { DatabaseBackend } from './database-backend.ts';

const MAX_TIMER_MS = 2 ** 31 - 1;
const RETRY_BASE_MS = 5_000;
const RETRY_CAP_MS = 3_600_000;

export function nextCronRun(expression: string, after: number): number | undefined {
  const task = cron.createTask(expression, () => undefined, { timezone: 'UTC' });
  try {
    const next = task.getNextRun();
    return next && next.getTime() > after ? next.getTime() : next?.getTime();
  } finally {
    void task.destroy();
  }
}

export class RootRotation {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly broker: Broker,
    private readonly backend: DatabaseBackend,
  ) {}

  /** The schedule part of a config write: validates fields and computes the next run. */
  planFor(rec: ConnectionRecord, previous: RootRotationState | undefined, body: Record<string, unknown>): RootRotationState {
    const state: RootRotationState = { ...(previous ?? {}) };
    const schedule = body.root_rotation_schedule as string | undefined;
    const period = durationField(body, 'root_rotation_period');
    if (schedule !== undefined && period !== undefined && schedule !== '' && period > 0) {
      throw errors.BAD_FIELD('root_rotation_schedule', 'set either root_rotation_schedule or root_rotation_period, not both');
    }
    if (schedule !== undefined) {
      if (schedule !== '' && !cron.validate(schedule)) throw errors.BAD_FIELD('root_rotation_schedule', `"${schedule}" is not a valid cron expression`);
      state.schedule = schedule || undefined;
      if (schedule) delete state.period;
    }
    if (period !== undefined) {
      if (period > 0 && period < 5) throw errors.BAD_FIELD('root_rotation_period', 'must be at least 5 seconds');
      state.period = period || undefined;
      if (period > 0) delete state.schedule;
    }
    state.nextRotation = this.nextAfter(state, Date.now());
    if (!state.nextRotation) delete state.nextRotation;
    void rec;
    return state;
  }

  private nextAfter(state: RootRotationState, now: number): number | undefined {
    if (state.schedule) return nextCronRun(state.schedule, now);
    if (state.period) return now + state.period * 1000;
    return undefined;
  }

  /** Arm the timer of one connection from its stored next rotation time. */
  schedule(rec: ConnectionRecord): void {
    this.unschedule(rec.name);
    if (this.stopped) return;
    const next = rec.rotation?.nextRotation;
    if (!next) return;
    const delay = Math.min(Math.max(0, next - Date.now()), MAX_TIMER_MS);
    const timer = setTimeout(() => void this.fire(rec.name), delay);
    timer.unref();
    this.timers.set(rec.name, timer);
  }

  unschedule(name: string): void {
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }

  start(): void {
    this.stopped = false;
  }

  stop(): void {
    this.stopped = true;
    for (const name of [...this.timers.keys()]) this.unschedule(name);
  }

  /** At unseal: settle interrupted rotations, then arm schedules (a missed one runs now, once). */
  async resume(): Promise<void> {
    for (const name of await this.backend.connections.names()) {
      const rec = await this.backend.connections.read(name);
      if (!rec) continue;
      if (rec.pendingPassword) await this.reconcile(name).catch((err: unknown) => this.broker.logger.error({ connection: name, mount: this.backend.mount, err: String(err) }, 'root credential reconcile failed'));
      this.schedule((await this.backend.connections.read(name)) ?? rec);
    }
  }

  private async fire(name: string): Promise<void> {
    this.timers.delete(name);
    if (this.stopped) return;
    try {
      await this.rotate(name, 'scheduled');
    } catch {
      // rotate() recorded the error and armed the retry.
    }
  }

  /** Rotate now, serialised per connection. */
  rotate(name: string, trigger: 'manual' | 'scheduled'): Promise<void> {
    const previous = this.chains.get(name) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.rotateOnce(name, trigger));
    this.chains.set(name, run);
    void run.finally(() => {
      if (this.chains.get(name) === run) this.chains.delete(name);
    }).catch(() => undefined);
    return run;
  }

  private async rotateOnce(name: string, trigger: 'manual' | 'scheduled'): Promise<void> {
    const connections = this.backend.connections;
    const started = Date.now();
    const log = { connection: name, mount: this.backend.mount, trigger };
    let rec = await connections.mustRead(name);
    if (!rec.username) throw errors.BAD_REQUEST(`connection "${name}" has no username to rotate`);
    try {
      if (rec.pendingPassword) await this.reconcile(name);
      rec = await connections.mustRead(name);
      const password = generatePassword();
      rec.pendingPassword = password;
      await connections.write(rec);
      fault('rotate.after_pending');

      await connections.run(name, [rec.password, password], (engine) =>
        engine.updateUser({ username: rec.username, password: { value: password, statements: rec.rootRotationStatements } }),
      );
      fault('rotate.after_db_change');

      const fresh = await connections.open(rec, password, true);
      fault('rotate.before_commit');

      rec.password = password;
      delete rec.pendingPassword;
      rec.rotation = { ...(rec.rotation ?? {}), lastRotation: Date.now(), failures: 0 };
      delete rec.rotation.lastError;
      const next = this.nextAfter(rec.rotation, Date.now());
      if (next) rec.rotation.nextRotation = next;
      else delete rec.rotation.nextRotation;
      await connections.write(rec);
      await connections.replace(name, fresh);
      this.broker.logger.info({ ...log, outcome: 'success', durationMs: Date.now() - started }, 'root credential rotated');
      this.schedule(rec);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.broker.logger.warn({ ...log, outcome: 'failure', durationMs: Date.now() - started, error: message }, 'root credential rotation failed');
      await this.reconcile(name).catch(() => undefined);
      const after = await connections.read(name);
      if (after) {
        const failures = (after.rotation?.failures ?? 0) + 1;
        after.rotation = { ...(after.rotation ?? {}), lastError: message, failures };
        if (after.rotation.schedule || after.rotation.period) {
          const backoff = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (failures - 1));
          after.rotation.nextRotation = Date.now() + backoff;
        }
        await connections.write(after);
        this.schedule(after);
      }
      throw err;
    }
  }

  /**
   * Settle on a working root password: the current one if it logs in,
   * otherwise the pending one (then promoted). Leaves both when neither works.
   */
  async reconcile(name: string): Promise<'current' | 'pending' | 'none'> {
    const connections = this.backend.connections;
    const rec = await connections.mustRead(name);
    const pending = rec.pendingPassword;
    if (!pending) return 'current';
    for (const which of ['current', 'pending'] as const) {
      const password = which === 'current' ? rec.password : pending;
      try {
        const engine = await connections.open(rec, password, true);
        rec.password = password;
        delete rec.pendingPassword;
        await connections.write(rec);
        await connections.replace(name, engine);
        this.broker.logger.info({ connection: name, mount: this.backend.mount, settledOn: which }, 'root credential reconciled');
        return which;
      } catch {
        // try the next candidate
      }
    }
    this.broker.logger.error({ connection: name, mount: this.backend.mount }, 'neither the current nor the pending root password logs in');
    return 'none';
  }
}
