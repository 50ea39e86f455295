// The only issuer of user DDL (creation and revocation of dynamic users) for
// one database connection of one mount in this process.
//
// Natural batching, no timers: a request goes to the database at once when a
// slot is free on its connection (slotsPerKind); otherwise it waits, and the
// next slot that frees takes every waiting request of one kind (up to
// BATCH_LIMIT) in one engine call (Engine.newUsers / deleteUsers). A slot is
// held until the caller has settled each request of its call (the lease
// written), so a crash repeats at most the work of the slots in flight, and
// the database never runs ahead of the lease store. So under
// no load a request costs what it did before, and under load the database
// sees few large transactions instead of many small ones. Engines without the
// batch methods get one call per request, as many at once as slots allow.
// Creations go first; an engine whose drops hold a lock creations need
// (Engine.dropsNearCreates: MySQL/MariaDB) gets small drop batches, few at
// once, none started while a creation runs, as long as creations are about.
//
// Every engine call goes through the connection's `run` (time bound, error
// mapping without secrets, root-credential settle and retry); the errors an
// engine returns per request in a batch are mapped the same way.

import { awaitWriteAhead, BATCH_LIMIT, type DropsNearCreates, type DeleteUserRequest, type DeleteUserResult, type Engine, type NewUserRequest } from '../engine/engine.ts';
import { errors, isBrokerError, type BrokerError } from '../errors.ts';
import { fault } from '../util/faults.ts';

/**
 * Engine calls of one kind (creations, or revocations) in flight at once on
 * a connection whose pool holds `maxOpen` connections: all but one, so the
 * other kind (and renewals) always find a free connection: creds answered
 * during a drain of due leases do not wait for a revocation batch.
 *
 * Why more than one: measured raw on PostgreSQL 15 (this 2-core machine,
 * loaded, batches of 64 CREATE ROLE + GRANT in one transaction, 3 s rounds,
 * medians of 4 interleaved rounds), 1 / 2 / 4 concurrent batch transactions
 * created 122 / 146 / 264 users/s: each CREATE ROLE with a password makes
 * the server hash it (SCRAM), CPU work that parallel backends share out.
 * MariaDB 10.11 was indifferent (176 / 228 / 237 users/s, noisy). Requests
 * only wait, and so batch, while every slot is busy.
 */
export function slotsPerKind(maxOpen: number): number {
  return Math.max(1, maxOpen - 1);
}

/**
 * Creations are "about" on a connection while one waits or is in flight,
 * and for this long (ms) after one was last asked for or finished: a client
 * issuing credentials one after another leaves a few ms between requests,
 * which must not let a large revocation batch in. Only engines that ask for
 * it (Engine.dropsNearCreates: MySQL/MariaDB) have their drops give way to
 * creations then (issue 11: creds p99 during a drain of due leases).
 */
export const CREATE_RECENT_MS = 500;

/**
 * Longest (ms) a waiting drop is held back while a creation waits or is in
 * flight and no drop call is (Engine.dropsNearCreates): a steady stream of
 * creations slows revocation to one call at a time, never stops it.
 */
export const DROP_DEFER_MAX_MS = 50;

/** A request that waited this long (ms) for a slot fails rather than wait on. */
export const QUEUE_WAIT_MS = 30_000;

/** What a batcher needs of its connection (Connections provides it). */
export interface BatcherConnection {
  /** The connection's name (in errors). */
  readonly name: string;
  /** Run one engine call: bounded in time, errors mapped to coded BrokerErrors (Connections.run). */
  run<T>(secrets: Array<string | undefined>, op: (engine: Engine) => Promise<T>): Promise<T>;
  /** Map an error the engine returned for one request, secrets scrubbed (mapEngineError). */
  mapError(err: unknown, secrets: Array<string | undefined>): BrokerError;
  /** The connection's pool size and what its open engine batches (false while none is open). */
  shape(): ConnectionShape;
  /**
   * HA: whether this node may still change databases (Cluster.canAct),
   * checked as each call goes out, since a request may wait meanwhile.
   * When it may not, the call's requests fail with NOT_ACTIVE (503) and
   * nothing reaches the database.
   */
  mayAct(): boolean;
}

export interface ConnectionShape {
  /** max_open_connections of the connection (1 when not known yet). */
  maxOpen: number;
  /** Whether the open engine has newUsers / deleteUsers. */
  newUsers: boolean;
  deleteUsers: boolean;
  /** The open engine's own limit on creation calls at once (Engine.createSlots), if any. */
  createSlots?: number;
  /** How the open engine's drops give way to creations (Engine.dropsNearCreates), if at all. */
  dropsNearCreates?: DropsNearCreates;
}

/**
 * Calls of `kind` that may be in flight at once on a connection of `shape`:
 * all but one of the pool's connections (slotsPerKind), fewer when the engine
 * caps its creations (createSlots) or, for drops, while they give way to
 * creations (`yielding`, the engine's dropsNearCreates); at least one.
 */
export function slotsFor(kind: 'create' | 'drop', shape: ConnectionShape, yielding?: ConnectionShape['dropsNearCreates']): number {
  const slots = slotsPerKind(shape.maxOpen);
  const cap = kind === 'create' ? shape.createSlots : yielding?.slots;
  return cap === undefined ? slots : Math.max(1, Math.min(slots, cap));
}

type Kind = 'create' | 'drop';

/** What became of one request: its value, or the (coded) error. */
export type Outcome<V> = { ok: true; value: V } | { ok: false; error: unknown };

/** A settle step that only passes the outcome on: resolves with the value, rejects with the error. */
export function unwrap<V>(outcome: Outcome<V>): Promise<V> {
  return outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
}

interface Job<R, V> {
  request: R;
  /** Secrets to scrub from errors about this request. */
  secrets: string[];
  queuedAt: number;
  /** The caller's settle step; never rejects (its result goes to the caller's promise). */
  settle(outcome: Outcome<V>): Promise<void>;
}

type CreateJob = Job<NewUserRequest, void>;
type DropJob = Job<DeleteUserRequest, DeleteUserResult | void>;

export class DdlBatcher {
  private readonly creates: CreateJob[] = [];
  private readonly drops: DropJob[] = [];
  private readonly inFlight: Record<Kind, number> = { create: 0, drop: 0 };
  /** When a creation was last asked for or last finished (ms since the epoch; 0: never). */
  private lastCreateAt = 0;
  /** Set while drops are held back by creations: pumps again once the longest deferral ends. */
  private deferTimer: NodeJS.Timeout | undefined;

  constructor(private readonly connection: BatcherConnection) {}

  /**
   * Create the user of `req`, then run `settle` with the outcome (the
   * caller's lease bookkeeping) before the slot is given to other requests,
   * so a slot covers a request until its lease is settled. Resolves or
   * rejects as `settle` does (`unwrap` passes the outcome on). The outcome is
   * ok once the user exists and that is committed; otherwise its error is a
   * coded BrokerError: ENGINE_INPUT (400) when nothing was created because of
   * the input; ENGINE_FAILED, ENGINE_CONNECTION when the user may be half
   * made and must be revoked; NOT_ACTIVE (HA) when nothing was sent.
   */
  create<T>(req: NewUserRequest, settle: (outcome: Outcome<void>) => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const now = Date.now();
      this.lastCreateAt = now;
      this.creates.push({ request: req, secrets: [req.password], queuedAt: now, settle: (o) => settle(o).then(resolve, reject) });
      this.pump();
    });
  }

  /**
   * Drop the user of `req` (idempotent; Engine.deleteUser's contract), then
   * run `settle` with the outcome before the slot is freed, as `create`.
   * The outcome is ok, with the engine's warnings, once the drop is
   * committed; otherwise its error (coded) means the user may still exist.
   */
  drop<T>(req: DeleteUserRequest, settle: (outcome: Outcome<DeleteUserResult | void>) => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      this.drops.push({ request: req, secrets: [], queuedAt: Date.now(), settle: (o) => settle(o).then(resolve, reject) });
      this.pump();
    });
  }

  /** Requests waiting for a slot plus engine calls in flight (for tests and gauges). */
  get load(): { waiting: number; inFlight: number } {
    return { waiting: this.creates.length + this.drops.length, inFlight: this.inFlight.create + this.inFlight.drop };
  }

  private pump(): void {
    for (;;) {
      const shape = this.connection.shape();
      const yielding = this.yielding(shape);
      const kind = this.nextKind(shape, yielding);
      if (kind === undefined) return;
      this.inFlight[kind]++;
      const done = (): void => {
        this.inFlight[kind]--;
        if (kind === 'create') this.lastCreateAt = Date.now();
        this.pump();
      };
      const size = !this.batches(kind, shape) ? 1 : kind === 'drop' && yielding ? yielding.batch : BATCH_LIMIT;
      if (kind === 'create') void this.createBatch(this.take(this.creates, size)).finally(done);
      else void this.dropBatch(this.take(this.drops, size)).finally(done);
    }
  }

  private batches(kind: Kind, shape: ConnectionShape): boolean {
    return kind === 'create' ? shape.newUsers : shape.deleteUsers;
  }

  /**
   * The kind that may go now, if any: it has waiting requests, fewer calls
   * in flight than its slots (slotsFor), and the connection's pool has room,
   * except that each kind may always have one call in flight, so revocations
   * never starve creations and the other way round (a pool of one
   * connection). Creations go first. While drops give way to creations
   * (`yielding`, see yielding()), drops have `yielding.slots` slots at most,
   * and none starts while a creation waits or is in flight unless none is in
   * flight and the oldest drop waited DROP_DEFER_MAX_MS (a timer pumps again
   * then).
   */
  private nextKind(shape: ConnectionShape, yielding: ConnectionShape['dropsNearCreates']): Kind | undefined {
    const total = this.inFlight.create + this.inFlight.drop;
    for (const kind of ['create', 'drop'] as const) {
      if ((kind === 'create' ? this.creates : this.drops).length === 0) continue;
      const slots = slotsFor(kind, shape, yielding);
      if (this.inFlight[kind] >= slots) continue;
      if (total >= shape.maxOpen && this.inFlight[kind] > 0) continue;
      if (kind === 'drop' && yielding && !yielding.alongside && (this.creates.length > 0 || this.inFlight.create > 0)) {
        if (this.inFlight.drop > 0) continue;
        const held = Date.now() - this.drops[0]!.queuedAt;
        if (held < DROP_DEFER_MAX_MS) {
          this.deferTimer ??= setTimeout(() => {
            this.deferTimer = undefined;
            this.pump();
          }, DROP_DEFER_MAX_MS - held + 1).unref();
          continue;
        }
      }
      return kind;
    }
    return undefined;
  }

  /**
   * The engine's limits on drops (Engine.dropsNearCreates) while creations
   * are about (waiting, in flight, or asked for or finished within
   * CREATE_RECENT_MS); undefined otherwise, or when the engine has none.
   */
  private yielding(shape: ConnectionShape): ConnectionShape['dropsNearCreates'] {
    const limits = shape.dropsNearCreates;
    if (!limits) return undefined;
    const about = this.creates.length > 0 || this.inFlight.create > 0 || Date.now() - this.lastCreateAt < CREATE_RECENT_MS;
    return about ? { ...limits, batch: Math.max(1, Math.min(BATCH_LIMIT, limits.batch)) } : undefined;
  }

  /** Up to `size` jobs from the head of `queue`; jobs that waited too long fail instead. */
  private take<J extends CreateJob | DropJob>(queue: J[], size: number): J[] {
    const now = Date.now();
    const out: J[] = [];
    while (out.length < size && queue.length > 0) {
      const job = queue.shift()!;
      if (now - job.queuedAt <= QUEUE_WAIT_MS) out.push(job);
      else void job.settle({ ok: false, error: errors.ENGINE_CONNECTION(this.connection.name, `the request waited ${Math.round((now - job.queuedAt) / 1000)}s for the database to take it`) });
    }
    return out;
  }

  /** Settle every job with the same failure. */
  private async failAll(jobs: Array<CreateJob | DropJob>, error: unknown): Promise<void> {
    await Promise.all(jobs.map((job) => job.settle({ ok: false, error })));
  }

  private async createBatch(jobs: CreateJob[]): Promise<void> {
    if (jobs.length === 0) return;
    if (!this.connection.mayAct()) return this.failAll(jobs, errors.NOT_ACTIVE('the database work is left to the active node'));
    const secrets = jobs.flatMap((j) => j.secrets);
    let outcomes: Array<Error | undefined>;
    // Connections.run calls the engine again after a connection failure that a
    // settled root credential may cure; the first call may have committed
    // users whose answer was lost, which the second then finds "already
    // existing". Generated names are random (username-template.ts), so such a
    // name is this lease's own user: after a second call an input error is
    // unknown, and the pending lease revokes whatever exists.
    let calls = 0;
    const isInput = (err: unknown): boolean => isBrokerError(err) && err.code === errors.ENGINE_INPUT.code;
    try {
      outcomes = await this.connection.run(secrets, async (engine) => {
        calls++;
        // Write-ahead: no user before its lease row is durable. Engines that commit
        // in a transaction wait for it themselves, right before COMMIT.
        if (!engine.awaitsWriteAhead && jobs.some((j) => j.request.writeAhead)) await awaitWriteAhead(jobs.map((j) => j.request));
        if (jobs.length === 1) {
          await engine.newUser(jobs[0]!.request);
          return [undefined];
        }
        if (engine.newUsers) return engine.newUsers(jobs.map((j) => j.request));
        return (await inTurn(jobs, (j) => engine.newUser(j.request))).map((o) => (o instanceof Error ? o : undefined));
      });
    } catch (err) {
      // A batch that failed as a whole leaves every user unknown (Engine.newUsers), even
      // when the engine calls it an input error: the leases must revoke whatever exists.
      const unknown = (jobs.length > 1 || calls > 1) && isInput(err) ? errors.ENGINE_FAILED(this.connection.name, err instanceof Error ? err.message : String(err)) : err;
      return this.failAll(jobs, unknown);
    }
    // Every user of the batch that succeeded is committed; no lease knows it yet.
    fault('issue.after_batch_commit');
    await Promise.all(
      jobs.map((job, i) => {
        const outcome = i < outcomes.length ? outcomes[i] : new Error('the engine returned no outcome for this user');
        if (outcome === undefined) return job.settle({ ok: true, value: undefined });
        const error = this.connection.mapError(outcome, secrets);
        return job.settle({ ok: false, error: calls > 1 && isInput(error) ? errors.ENGINE_FAILED(this.connection.name, error.message) : error });
      }),
    );
  }

  private async dropBatch(jobs: DropJob[]): Promise<void> {
    if (jobs.length === 0) return;
    if (!this.connection.mayAct()) return this.failAll(jobs, errors.NOT_ACTIVE('the database work is left to the active node'));
    let outcomes: Array<DeleteUserResult | void | Error>;
    try {
      outcomes = await this.connection.run([], async (engine) => {
        if (jobs.length === 1) return [await engine.deleteUser(jobs[0]!.request)];
        if (engine.deleteUsers) return engine.deleteUsers(jobs.map((j) => j.request));
        return inTurn(jobs, async (j) => (await engine.deleteUser(j.request)) ?? {});
      });
    } catch (err) {
      return this.failAll(jobs, err);
    }
    await Promise.all(
      jobs.map((job, i) => {
        const outcome = i < outcomes.length ? outcomes[i] : new Error('the engine returned no outcome for this user');
        return job.settle(outcome instanceof Error ? { ok: false, error: this.connection.mapError(outcome, []) } : { ok: true, value: outcome });
      }),
    );
  }
}

/**
 * One call per job, one after another, each outcome kept (undefined or the
 * result on success, the error otherwise). Only for a batch that reached an
 * engine without the batch method (it was replaced meanwhile).
 */
async function inTurn<J, O>(jobs: J[], call: (job: J) => Promise<O>): Promise<Array<O | Error>> {
  const out: Array<O | Error> = [];
  for (const job of jobs) {
    try {
      out.push(await call(job));
    } catch (err) {
      out.push(err instanceof Error ? err : new Error(String(err)));
    }
  }
  return out;
}
