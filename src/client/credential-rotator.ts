// The core of the self-re-keying pools: one "generation" = one lease's
// credentials + the connection pool opened with them. A LifetimeWatcher keeps
// the lease renewed; when it can no longer be renewed (max_ttl near, revoked,
// broker unreachable into the grace period) a new generation is opened with
// fresh credentials and checked, new work goes to it, and the old one is
// drained: closed only once the work already running on it has finished,
// then its lease revoked. So no query fails because of a rotation.

import { EventEmitter } from 'node:events';
import { Backoff, sleep, type BackoffOptions } from './backoff.ts';
import { BrokerClient, type BrokerClientOptions, type DatabaseCredentials, type SecretResponse } from './broker-client.ts';
import { LifetimeWatcher } from './lifetime-watcher.ts';

/** Where the credentials come from. Give `role` (→ `database/creds/<role>`) or a full `path`. */
export interface CredentialSource {
  /** A client, or options to make one (with `auth` it logs in, and again when its token is refused). */
  broker: BrokerClient | BrokerClientOptions;
  /** Role name under `mount` (default mount `database`). */
  role?: string;
  mount?: string;
  /** Full path instead of role/mount, e.g. `db-prod/creds/app`. */
  path?: string;
  /** Seconds asked per lease renewal (default: the lease's initial TTL). */
  renewIncrementSeconds?: number;
  /** Start the switch to new credentials this long before the old expire, ms (default: a third of the TTL, at least 2000). */
  rotateBeforeMs?: number;
  /** Revoke a lease once its pool is drained (default true: the database user goes at once). */
  revokeOnRotate?: boolean;
  /** Retry bounds while the broker is unreachable. */
  backoff?: BackoffOptions;
}

/** A lease's credentials as a generation uses them. */
export interface LeasedCredentials {
  username: string;
  password: string;
  leaseId: string;
  /** Seconds, as first issued. */
  leaseDuration: number;
  response: SecretResponse<DatabaseCredentials>;
}

interface Generation<R> {
  id: number;
  creds: LeasedCredentials;
  resource: R;
  inflight: number;
  watcher: LifetimeWatcher;
  drained?: () => void;
}

/** The `rotate` event: generation `generation` (1 = the first) now serves, as `username`. */
export interface RotateEvent {
  generation: number;
  username: string;
  reason: string;
}

/** The `renew` event: the lease of `generation` was renewed for `leaseDuration` seconds. */
export interface RenewEvent {
  generation: number;
  leaseDuration: number;
}

/** Counters for monitoring and tests. */
export interface RotatorStats {
  /** Credential switches after the first generation. */
  rotations: number;
  /** Successful lease renewals, over all generations. */
  renewals: number;
  /** Failed attempts to obtain or open new credentials (each retried). */
  rotationFailures: number;
  /** Operations currently running, over all generations. */
  inflight: number;
}

/**
 * Events: `rotate` ({ generation, username, reason }), `renew` ({ generation, leaseDuration }),
 * `error` (Error: a failed rotation attempt, retried; a failed revoke of an old lease).
 * Without an `error` listener errors are not thrown (EventEmitter's rule is suspended here).
 */
export class CredentialRotator<R> extends EventEmitter {
  readonly client: BrokerClient;
  readonly path: string;
  private current: Generation<R> | undefined;
  private nextId = 1;
  private rotating: Promise<void> | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  private readonly draining = new Set<Promise<void>>();
  readonly stats: RotatorStats = { rotations: 0, renewals: 0, rotationFailures: 0, inflight: 0 };

  constructor(
    private readonly source: CredentialSource,
    private readonly open: (creds: LeasedCredentials) => Promise<R>,
    private readonly close: (resource: R) => Promise<void>,
  ) {
    super();
    this.client = source.broker instanceof BrokerClient ? source.broker : new BrokerClient(source.broker);
    const mount = (source.mount ?? 'database').replace(/^\/+|\/+$/g, '');
    if (source.path) this.path = source.path;
    else if (source.role) this.path = `${mount}/creds/${source.role}`;
    else throw new TypeError('give `role` or `path`');
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) return false;
    return super.emit(event, ...args);
  }

  /** The credentials in use now (undefined before start()). */
  get credentials(): LeasedCredentials | undefined {
    return this.current?.creds;
  }

  /**
   * Obtain the first credentials and open the first pool. Throws what the
   * broker or the database answered (no retry: a bad config should fail fast).
   */
  async start(): Promise<void> {
    const auth = this.source.broker instanceof BrokerClient ? undefined : this.source.broker.auth;
    if (auth && auth.type !== 'token') await this.client.login();
    this.current = await this.openGeneration();
  }

  private async fetchCredentials(): Promise<LeasedCredentials> {
    const res = await this.client.read<DatabaseCredentials>(this.path);
    const data = res.data;
    if (!data || typeof data.username !== 'string' || typeof data.password !== 'string') {
      throw new Error(`${this.path} answered no username/password`);
    }
    return { username: data.username, password: data.password, leaseId: res.lease_id, leaseDuration: res.lease_duration, response: res };
  }

  private async openGeneration(): Promise<Generation<R>> {
    const creds = await this.fetchCredentials();
    let resource: R;
    try {
      resource = await this.open(creds);
    } catch (err) {
      // Don't leave a database user behind for credentials nobody will use.
      if (creds.leaseId) await this.client.revoke(creds.leaseId).catch(() => undefined);
      throw err;
    }
    const id = this.nextId++;
    const watcher = new LifetimeWatcher(this.client, {
      secret: creds.response,
      ...(this.source.renewIncrementSeconds ? { incrementSeconds: this.source.renewIncrementSeconds } : {}),
      graceMs: this.source.rotateBeforeMs ?? Math.max(2000, ((this.source.renewIncrementSeconds ?? creds.leaseDuration) * 1000) / 3),
      ...(this.source.backoff ? { backoff: this.source.backoff } : {}),
    });
    const gen: Generation<R> = { id, creds, resource, inflight: 0, watcher };
    watcher.on('renew', (res: SecretResponse) => {
      this.stats.renewals++;
      this.emit('renew', { generation: id, leaseDuration: res.lease_duration } satisfies RenewEvent);
    });
    watcher.on('done', (err: Error | null) => {
      if (this.current === gen) void this.rotate(err ? `renewal failed: ${err.message}` : 'max_ttl reached');
    });
    return gen;
  }

  /**
   * Switch to new credentials now (also called by the watcher). Retries with
   * backoff until it succeeds or close() is called; concurrent calls share one switch.
   */
  rotate(reason = 'requested'): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.rotating ??= this.doRotate(reason).finally(() => (this.rotating = undefined));
    return this.rotating;
  }

  private async doRotate(reason: string): Promise<void> {
    const backoff = new Backoff(this.source.backoff);
    for (;;) {
      if (this.closed) return;
      try {
        const next = await this.openGeneration();
        if (this.closed) {
          next.watcher.stop();
          await this.retire(next);
          return;
        }
        const old = this.current;
        this.current = next;
        this.stats.rotations++;
        this.emit('rotate', { generation: next.id, username: next.creds.username, reason } satisfies RotateEvent);
        if (old) this.track(this.retire(old));
        return;
      } catch (err) {
        this.stats.rotationFailures++;
        this.emit('error', err);
        await sleep(backoff.next(), this.abort.signal);
      }
    }
  }

  private track(p: Promise<void>): void {
    this.draining.add(p);
    void p.finally(() => this.draining.delete(p));
  }

  /** Wait for the generation's running work, close its pool, revoke its lease. */
  private async retire(gen: Generation<R>): Promise<void> {
    gen.watcher.stop();
    if (gen.inflight > 0) await new Promise<void>((resolve) => (gen.drained = resolve));
    await this.close(gen.resource).catch((err) => this.emit('error', err));
    if (gen.creds.leaseId && this.source.revokeOnRotate !== false) {
      await this.client.revoke(gen.creds.leaseId).catch((err) => this.emit('error', err));
    }
  }

  /**
   * Take the current resource for one unit of work; call `release()` exactly
   * once when done. The generation is not closed before it is released.
   * Throws when not started or closed.
   */
  acquire(): { resource: R; generation: number; release: () => void } {
    const gen = this.current;
    if (!gen || this.closed) throw new Error(this.closed ? 'closed' : 'not started: call start() first');
    gen.inflight++;
    this.stats.inflight++;
    let released = false;
    return {
      resource: gen.resource,
      generation: gen.id,
      release: () => {
        if (released) return;
        released = true;
        gen.inflight--;
        this.stats.inflight--;
        if (gen.inflight === 0) gen.drained?.();
      },
    };
  }

  /**
   * Run `fn` on the current resource, holding it until `fn` settles. When
   * `fn` fails with an error `loginRefused` recognises (the database refused
   * the login: the lease was revoked behind our back, so the statement never
   * ran), switch to new credentials and run it once more.
   */
  async use<T>(fn: (resource: R) => Promise<T>, loginRefused?: (err: unknown) => boolean): Promise<T> {
    const { resource, generation, release } = this.acquire();
    try {
      return await fn(resource);
    } catch (err) {
      if (!loginRefused?.(err) || this.closed) throw err;
      release();
      if (this.current?.id === generation) await this.rotate('the database refused the credentials');
      return this.use(fn);
    } finally {
      release();
    }
  }

  /** Stop renewing, wait for running work, close every pool, revoke the leases (unless revokeOnRotate is false). */
  async end(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    await this.rotating?.catch(() => undefined);
    const last = this.current;
    this.current = undefined;
    if (last) this.track(this.retire(last));
    await Promise.all([...this.draining]);
  }
}
