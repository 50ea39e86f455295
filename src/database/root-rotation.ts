// Root credential rotation that never locks anyone out.
//
// Order of a rotation, each step durable before the next, all under the
// connection's lock (`Connections.exclusive`):
//   0. a fresh engine proves the current root login works;
//   1. the new password is stored (sealed) as `pendingPassword`;
//   2. the database is told the new password (engine.updateUser, with the
//      connection's root_rotation_statements or the engine's default);
//   3. another fresh engine proves the new login works;
//   4. the new password becomes current, pending is cleared, and the live
//      engine (its pool, with sessions on the old password) is replaced.
// After a crash or a failed step, `Connections.settle` tries the current and
// then the pending password and keeps whichever logs in; if neither does
// (database down) both stay stored and a later attempt settles first.

import type { Broker } from '../broker.ts';
import type { Engine } from '../engine/engine.ts';
import { errors, messageOf } from '../errors.ts';
import { durationField } from '../http/schema.ts';
import { fault } from '../util/faults.ts';
import { generatePassword } from '../util/random.ts';
import type { ConnectionRecord, RootRotationState } from './connections.ts';
import type { DatabaseBackend } from './database-backend.ts';
import { checkCron, checkPeriod, nextRotationAt, retryDelayMs, RotationTimers } from './rotation-schedule.ts';

export type RotationTrigger = 'manual' | 'scheduled';

export class RootRotation {
  private readonly timers = new RotationTimers((name) => this.fire(name));

  constructor(
    private readonly broker: Broker,
    private readonly backend: DatabaseBackend,
  ) {}

  private get connections() {
    return this.backend.connections;
  }

  /** The schedule part of a config write: validates the fields and keeps or recomputes the next run. */
  planFor(previous: RootRotationState | undefined, body: Record<string, unknown>): RootRotationState {
    const state: RootRotationState = { ...(previous ?? {}) };
    const schedule = body.root_rotation_schedule as string | undefined;
    const period = durationField(body, 'root_rotation_period');
    if (schedule && period) throw errors.BAD_FIELD('root_rotation_schedule', 'set either root_rotation_schedule or root_rotation_period, not both');
    if (schedule !== undefined) {
      if (schedule) checkCron('root_rotation_schedule', schedule);
      state.schedule = schedule || undefined;
      if (schedule) delete state.period;
    }
    if (period !== undefined) {
      checkPeriod('root_rotation_period', period);
      state.period = period || undefined;
      if (period) delete state.schedule;
    }
    if (!state.schedule) delete state.schedule;
    if (!state.period) delete state.period;
    const unchanged = state.schedule === previous?.schedule && state.period === previous?.period;
    if (!unchanged || state.nextRotation === undefined) {
      const next = nextRotationAt(state, Date.now());
      if (next === undefined) delete state.nextRotation;
      else state.nextRotation = next;
      delete state.failures;
    }
    return state;
  }

  /** Arm the timer of one connection from its stored next rotation time. */
  schedule(rec: ConnectionRecord): void {
    this.timers.arm(rec.name, rec.rotation?.nextRotation);
  }

  unschedule(name: string): void {
    this.timers.disarm(name);
  }

  start(): void {
    this.timers.start();
  }

  stop(): void {
    this.timers.stop();
  }

  /**
   * At unseal: settle interrupted root rotations and arm the schedules (a
   * time missed while down fires at once, once); then the static roles,
   * which need a settled root credential.
   */
  async resume(): Promise<void> {
    for (const name of await this.connections.names()) {
      try {
        const rec = await this.connections.read(name);
        if (!rec) continue;
        if (rec.pendingPassword) await this.connections.reconcile(name);
        this.schedule((await this.connections.read(name)) ?? rec);
      } catch (err) {
        this.broker.logger.error({ mount: this.backend.mount, connection: name, error: messageOf(err) }, 'resuming root rotation failed');
      }
    }
    await this.backend.staticRoles.resume();
  }

  private async fire(name: string): Promise<void> {
    try {
      await this.rotate(name, 'scheduled');
    } catch {
      // rotate() logged and recorded the error and armed the retry.
    }
  }

  /** Rotate now; rotations (and other root credential changes) of one connection run one at a time. */
  rotate(name: string, trigger: RotationTrigger): Promise<void> {
    return this.connections.exclusive(name, () => this.rotateLocked(name, trigger));
  }

  private async rotateLocked(name: string, trigger: RotationTrigger): Promise<void> {
    const connections = this.connections;
    const started = Date.now();
    const log = { mount: this.backend.mount, connection: name, trigger };
    let rec = await connections.mustRead(name);
    if (!rec.username) throw errors.BAD_REQUEST(`connection "${name}" has no username to rotate`);
    try {
      if (rec.pendingPassword) {
        // Never replace a pending password the database may already have.
        if ((await connections.settle(rec)) === 'none') throw errors.ENGINE_CONNECTION(name, 'an earlier rotation is unsettled and neither root password logs in');
        rec = await connections.mustRead(name);
      }
      const current = await connections.open(rec, rec.password, true);
      let fresh: Engine;
      const password = generatePassword();
      try {
        await connections.write({ ...rec, pendingPassword: password });
        fault('rotate.after_pending');
        const change = current.updateUser({ username: rec.username, password: { value: password, statements: rec.rootRotationStatements } });
        await connections.bounded(name, [rec.password, password], change);
        fault('rotate.after_db_change');
        fresh = await connections.open(rec, password, true);
      } finally {
        await current.close().catch(() => undefined);
      }
      fault('rotate.before_commit');
      const now = Date.now();
      const rotation: RootRotationState = { ...(rec.rotation ?? {}), lastRotation: now };
      delete rotation.lastError;
      delete rotation.failures;
      const next = nextRotationAt(rotation, now);
      if (next === undefined) delete rotation.nextRotation;
      else rotation.nextRotation = next;
      const committed: ConnectionRecord = { ...rec, password, rotation };
      delete committed.pendingPassword;
      try {
        await connections.write(committed);
      } catch (err) {
        await fresh.close().catch(() => undefined);
        throw err;
      }
      await connections.replace(name, fresh, password);
      this.broker.logger.info({ ...log, outcome: 'success', durationMs: Date.now() - started }, 'root credential rotated');
      this.broker.metrics.rootRotation({ mount: this.backend.mount, connection: name }, true);
      this.schedule(committed);
    } catch (err) {
      this.broker.metrics.rootRotation({ mount: this.backend.mount, connection: name }, false);
      const message = messageOf(err);
      // A working root credential is known again (or both are kept) before we report.
      const after = await connections
        .mustRead(name)
        .then((latest) => connections.settle(latest))
        .then(() => connections.read(name))
        .catch(() => undefined);
      let retryAt: number | undefined;
      let failures = 1;
      if (after) {
        failures = (after.rotation?.failures ?? 0) + 1;
        const rotation: RootRotationState = { ...(after.rotation ?? {}), lastError: message, failures };
        if (rotation.schedule || rotation.period) retryAt = rotation.nextRotation = Date.now() + retryDelayMs(failures);
        await connections.write({ ...after, rotation }).catch(() => undefined);
        this.schedule({ ...after, rotation });
      }
      this.broker.logger.warn(
        { ...log, outcome: 'failure', durationMs: Date.now() - started, failures, error: message, ...(retryAt ? { retryAt: new Date(retryAt).toISOString() } : {}) },
        'root credential rotation failed',
      );
      throw err;
    }
  }
}
