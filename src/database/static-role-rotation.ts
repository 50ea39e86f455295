// Password rotation of static roles, crash-safe the same way as the root
// credential: the new credential is stored (sealed) as `pending` before the
// database changes, and committed after. A pending credential is never handed
// out; whatever interrupted it (crash, database down, a failed statement), the
// next attempt applies that same pending credential again (setting a password
// is idempotent) and commits it. The broker logs in as the connection's admin
// for this, so it never needs to know which password the static user had.
//
// Strategies:
// - "single": one database user; a rotation replaces its password, so
//   credentials read before it stop working.
// - "alternating": two database users that already exist with the same
//   grants (`username`, and `alternate_username`, default `<username>_b`; the
//   DBA creates both, as for any static role, so this works on every engine
//   through updateUser alone). A rotation gives the inactive user a new
//   password and makes it the active one, so credentials read before a
//   rotation keep working until the next rotation.

import type { Broker } from '../broker.ts';
import { errors, messageOf } from '../errors.ts';
import { fault } from '../util/faults.ts';
import { generatePassword } from '../util/random.ts';
import type { DatabaseBackend } from './database-backend.ts';
import { KeyedLock } from './keyed-lock.ts';
import { nextCronRun, nextRotationAt, retryDelayMs, RotationTimers } from './rotation-schedule.ts';
import type { StaticCredential, StaticRoleRecord, StaticRoleStore } from './static-role-store.ts';

export type StaticRotationTrigger = 'manual' | 'scheduled' | 'import' | 'resume' | 'read';

export function planOf(rec: StaticRoleRecord): { schedule?: string; period?: number } {
  return rec.rotationSchedule ? { schedule: rec.rotationSchedule } : { period: rec.rotationPeriod };
}

/** The database user the next rotation changes. */
export function rotationTarget(rec: StaticRoleRecord): string {
  if (rec.strategy === 'single') return rec.username;
  return rec.active.username === rec.username ? rec.alternateUsername : rec.username;
}

export class StaticRoleRotation {
  private readonly locks = new KeyedLock();
  private readonly timers = new RotationTimers((name) => this.fire(name));

  constructor(
    private readonly broker: Broker,
    private readonly backend: DatabaseBackend,
    private readonly store: StaticRoleStore,
  ) {}

  /** Run `work` alone among the changes of one static role. */
  exclusive<T>(name: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(name, work);
  }

  /** Wait for running and queued rotations to end. */
  idle(): Promise<void> {
    return this.locks.idle();
  }

  schedule(rec: StaticRoleRecord): void {
    this.timers.arm(rec.name, rec.nextRotation);
  }

  unschedule(name: string): void {
    this.timers.disarm(name);
  }

  stop(): void {
    this.timers.stop();
  }

  /** At unseal: finish interrupted rotations and imports, arm the schedules (a missed time fires once, at once). */
  async resume(): Promise<void> {
    for (const name of await this.store.names()) {
      // A failed rotation is also recorded on the role and retried on its own schedule.
      await this.finish(name, 'resume').catch((err: unknown) =>
        this.broker.logger.error({ mount: this.backend.mount, staticRole: name, error: messageOf(err) }, 'resuming static role failed'),
      );
    }
  }

  private async fire(name: string): Promise<void> {
    const rec = await this.store.read(name).catch(() => undefined);
    if (!rec) return;
    const late = rec.nextRotation !== undefined ? Date.now() - rec.nextRotation : 0;
    // rotation_window: a scheduled time missed by more than the window waits for the next one.
    if (rec.rotationSchedule && rec.rotationWindow > 0 && !rec.pending && !rec.failures && late > rec.rotationWindow * 1000) {
      await this.exclusive(name, async () => {
        const latest = await this.store.read(name);
        if (!latest) return;
        latest.nextRotation = nextCronRun(latest.rotationSchedule);
        await this.store.write(latest);
        this.schedule(latest);
        this.broker.logger.info({ mount: this.backend.mount, staticRole: name, outcome: 'skipped', lateMs: late }, 'static role rotation skipped: outside its rotation_window');
      }).catch(() => undefined);
      return;
    }
    await this.rotate(name, 'scheduled').catch(() => undefined);
  }

  /**
   * Finish an interrupted rotation or import, if the role has one (checked
   * under the lock: a queued caller must not start a fresh rotation once
   * another has finished it). Returns the role as it then is.
   */
  finish(name: string, trigger: 'resume' | 'read'): Promise<StaticRoleRecord> {
    return this.exclusive(name, async () => {
      const rec = await this.store.read(name);
      if (!rec) throw errors.ROLE_NOT_FOUND(name);
      if (rec.pending || (!rec.active.password && !rec.skipImportRotation)) return this.rotateLocked(name, trigger);
      this.schedule(rec);
      return rec;
    });
  }

  /** Rotate now (finishing an interrupted rotation if there is one); returns the committed role. */
  rotate(name: string, trigger: StaticRotationTrigger): Promise<StaticRoleRecord> {
    return this.exclusive(name, () => this.rotateLocked(name, trigger));
  }

  /** The same, for a caller that holds `exclusive(name)`. */
  async rotateLocked(name: string, trigger: StaticRotationTrigger): Promise<StaticRoleRecord> {
    const rec = await this.store.read(name);
    if (!rec) throw errors.ROLE_NOT_FOUND(name);
    const started = Date.now();
    const pending: StaticCredential = rec.pending ?? { username: rotationTarget(rec), password: generatePassword() };
    const log = { mount: this.backend.mount, staticRole: name, connection: rec.dbName, username: pending.username, trigger };
    let pendingStored = rec.pending !== undefined;
    try {
      if (!pendingStored) {
        await this.store.write({ ...rec, pending });
        pendingStored = true;
        fault('static.after_pending');
      }
      await this.backend.connections.run(rec.dbName, [pending.password, rec.active.password], (engine) =>
        engine.updateUser({ username: pending.username, password: { value: pending.password, statements: rec.rotationStatements } }),
      );
      fault('static.after_db_change');
      const committed = commit(rec, pending, Date.now());
      await this.store.write(committed);
      this.broker.logger.info({ ...log, outcome: 'success', durationMs: Date.now() - started }, 'static role password rotated');
      this.broker.metrics.staticRotation({ mount: this.backend.mount, role: name }, true);
      this.schedule(committed);
      return committed;
    } catch (err) {
      this.broker.metrics.staticRotation({ mount: this.backend.mount, role: name }, false);
      const message = messageOf(err);
      // A read that could not finish a rotation reports it; the schedule keeps its own retry pace.
      if (trigger === 'read' && pendingStored) {
        this.broker.logger.warn({ ...log, outcome: 'failure', durationMs: Date.now() - started, error: message }, 'static role password rotation failed');
        throw err;
      }
      const failures = (rec.failures ?? 0) + 1;
      const failed: StaticRoleRecord = { ...rec, lastError: message, failures, nextRotation: Date.now() + retryDelayMs(failures) };
      if (pendingStored) failed.pending = pending;
      await this.store.write(failed).catch(() => undefined);
      this.schedule(failed);
      this.broker.logger.warn(
        { ...log, outcome: 'failure', durationMs: Date.now() - started, failures, error: message, retryAt: new Date(failed.nextRotation!).toISOString() },
        'static role password rotation failed',
      );
      throw err;
    }
  }
}

/** The role after `pending` took effect in the database at `now`. */
function commit(rec: StaticRoleRecord, pending: StaticCredential, now: number): StaticRoleRecord {
  const next: StaticRoleRecord = { ...rec, active: pending, lastVaultRotation: now };
  delete next.pending;
  delete next.previous;
  delete next.lastError;
  delete next.failures;
  // "alternating": the user that was active keeps its password until the next rotation.
  if (rec.strategy === 'alternating' && rec.active.username !== pending.username && rec.active.password) next.previous = rec.active;
  const at = nextRotationAt(planOf(rec), now);
  if (at === undefined) delete next.nextRotation;
  else next.nextRotation = at;
  return next;
}
