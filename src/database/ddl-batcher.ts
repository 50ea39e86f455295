// The only issuer of user DDL (creation and revocation of dynamic users) for
// one database connection of one mount in this process.
//
// Natural batching, no timers: a request goes to the database at once when a
// slot is free on its connection; otherwise it waits, and the next slot that
// frees takes every waiting request of one kind (up to BATCH_LIMIT) in one
// engine call (Engine.newUsers / deleteUsers). So under no load a request
// costs what it did before, and under load the database sees few large
// transactions instead of many small ones. Engines without the batch methods
// get one call per request, at most max_open_connections at a time.
//
// Every engine call goes through the connection's `run` (time bound, error
// mapping without secrets, root-credential settle and retry); the errors an
// engine returns per request in a batch are mapped the same way.

import { BATCH_LIMIT, type DeleteUserRequest, type DeleteUserResult, type Engine, type NewUserRequest } from '../engine/engine.ts';
import { errors, type BrokerError } from '../errors.ts';
import { fault } from '../util/faults.ts';

/**
 * Batches of one kind in flight at once on a connection whose engine batches
 * that kind (never more than max_open_connections). Two keep the database
 * busy: while one batch runs, the requests arriving meanwhile gather for the
 * next, and it goes as soon as the first one's transaction ends, without
 * waiting for our bookkeeping of the first. More would split the waiting
 * requests into smaller batches and, on PostgreSQL, contend on the same
 * catalog rows (pg_authid, the ACL of a granted object) to no gain.
 */
export const BATCHES_IN_FLIGHT = 2;

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
}

export interface ConnectionShape {
  /** max_open_connections of the connection (1 when not known yet). */
  maxOpen: number;
  /** Whether the open engine has newUsers / deleteUsers. */
  newUsers: boolean;
  deleteUsers: boolean;
}

type Kind = 'create' | 'drop';

interface Job<R, O> {
  request: R;
  /** Secrets to scrub from errors about this request. */
  secrets: string[];
  queuedAt: number;
  resolve(outcome: O): void;
  reject(err: unknown): void;
}

type CreateJob = Job<NewUserRequest, void>;
type DropJob = Job<DeleteUserRequest, DeleteUserResult | void>;

export class DdlBatcher {
  private readonly creates: CreateJob[] = [];
  private readonly drops: DropJob[] = [];
  private readonly inFlight: Record<Kind, number> = { create: 0, drop: 0 };
  /** The kind that went last, so the other goes first when both wait. */
  private last: Kind = 'drop';

  constructor(private readonly connection: BatcherConnection) {}

  /**
   * Create the user of `req`. Resolves once the user exists and that is
   * committed. Rejects with a coded BrokerError: ENGINE_INPUT (400) when
   * nothing was created because of the input, otherwise (ENGINE_FAILED,
   * ENGINE_CONNECTION) the user may be half made and must be revoked.
   */
  create(req: NewUserRequest): Promise<void> {
    return new Promise((resolve, reject) => {
      this.creates.push({ request: req, secrets: [req.password], queuedAt: Date.now(), resolve, reject });
      this.pump();
    });
  }

  /**
   * Drop the user of `req` (idempotent; Engine.deleteUser's contract).
   * Resolves once the drop is committed, with the engine's warnings; rejects
   * with a coded BrokerError when the user may still exist.
   */
  drop(req: DeleteUserRequest): Promise<DeleteUserResult | void> {
    return new Promise((resolve, reject) => {
      this.drops.push({ request: req, secrets: [], queuedAt: Date.now(), resolve, reject });
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
      const kind = this.nextKind(shape);
      if (kind === undefined) return;
      this.last = kind;
      this.inFlight[kind]++;
      const done = (): void => {
        this.inFlight[kind]--;
        this.pump();
      };
      const size = this.batches(kind, shape) ? BATCH_LIMIT : 1;
      if (kind === 'create') void this.createBatch(this.take(this.creates, size)).finally(done);
      else void this.dropBatch(this.take(this.drops, size)).finally(done);
    }
  }

  private batches(kind: Kind, shape: ConnectionShape): boolean {
    return kind === 'create' ? shape.newUsers : shape.deleteUsers;
  }

  /**
   * The kind that may go now, if any: it has waiting requests, fewer calls
   * in flight than its limit, and the connection's pool has room, except
   * that each kind may always have one call in flight, so revocations never
   * starve creations and the other way round.
   */
  private nextKind(shape: ConnectionShape): Kind | undefined {
    const order: Kind[] = this.last === 'create' ? ['drop', 'create'] : ['create', 'drop'];
    const total = this.inFlight.create + this.inFlight.drop;
    for (const kind of order) {
      if ((kind === 'create' ? this.creates : this.drops).length === 0) continue;
      const limit = this.batches(kind, shape) ? Math.min(BATCHES_IN_FLIGHT, shape.maxOpen) : shape.maxOpen;
      if (this.inFlight[kind] >= limit) continue;
      if (total >= shape.maxOpen && this.inFlight[kind] > 0) continue;
      return kind;
    }
    return undefined;
  }

  /** Up to `size` jobs from the head of `queue`; jobs that waited too long fail instead. */
  private take<J extends CreateJob | DropJob>(queue: J[], size: number): J[] {
    const now = Date.now();
    const out: J[] = [];
    while (out.length < size && queue.length > 0) {
      const job = queue.shift()!;
      if (now - job.queuedAt > QUEUE_WAIT_MS) job.reject(errors.ENGINE_CONNECTION(this.connection.name, `the request waited ${Math.round((now - job.queuedAt) / 1000)}s for the database to take it`));
      else out.push(job);
    }
    return out;
  }

  private async createBatch(jobs: CreateJob[]): Promise<void> {
    if (jobs.length === 0) return;
    const secrets = jobs.flatMap((j) => j.secrets);
    let outcomes: Array<Error | undefined>;
    try {
      outcomes = await this.connection.run(secrets, async (engine) => {
        if (jobs.length === 1) {
          await engine.newUser(jobs[0]!.request);
          return [undefined];
        }
        if (engine.newUsers) return engine.newUsers(jobs.map((j) => j.request));
        return (await inTurn(jobs, (j) => engine.newUser(j.request))).map((o) => (o instanceof Error ? o : undefined));
      });
    } catch (err) {
      for (const job of jobs) job.reject(err);
      return;
    }
    // Every user of the batch that succeeded is committed; no lease knows it yet.
    fault('issue.after_batch_commit');
    jobs.forEach((job, i) => {
      const outcome = i < outcomes.length ? outcomes[i] : new Error('the engine returned no outcome for this user');
      if (outcome === undefined) job.resolve();
      else job.reject(this.connection.mapError(outcome, secrets));
    });
  }

  private async dropBatch(jobs: DropJob[]): Promise<void> {
    if (jobs.length === 0) return;
    let outcomes: Array<DeleteUserResult | void | Error>;
    try {
      outcomes = await this.connection.run([], async (engine) => {
        if (jobs.length === 1) return [await engine.deleteUser(jobs[0]!.request)];
        if (engine.deleteUsers) return engine.deleteUsers(jobs.map((j) => j.request));
        return inTurn(jobs, async (j) => (await engine.deleteUser(j.request)) ?? {});
      });
    } catch (err) {
      for (const job of jobs) job.reject(err);
      return;
    }
    jobs.forEach((job, i) => {
      const outcome = i < outcomes.length ? outcomes[i] : new Error('the engine returned no outcome for this user');
      if (outcome instanceof Error) job.reject(this.connection.mapError(outcome, []));
      else job.resolve(outcome);
    });
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
