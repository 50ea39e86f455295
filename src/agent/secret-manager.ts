// The secrets the agent holds: the ones its templates and exec env use
// ("configured", read with the agent's own token) and leased responses it
// cached for clients of its proxy (read with theirs). Each is kept alive by a
// LifetimeWatcher (renew at ~2/3 of the TTL). A configured secret whose lease
// can no longer be renewed (max_ttl near, revoked, broker unreachable into
// the grace period) is replaced by new credentials, retried with capped
// backoff while the broker is unreachable; until then the old ones are served
// while they are valid. A lease the broker refuses to renew (400: revoked,
// unknown) is dropped at once. Proxy entries are dropped when they end.
// Everything here is persisted (encrypted) through onPersist.

import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../client/backoff.ts';
import type { BrokerClient, SecretResponse } from '../client/broker-client.ts';
import { BrokerRequestError, isPermissionDenied, isTransient } from '../client/errors.ts';
import { LifetimeWatcher } from '../client/lifetime-watcher.ts';

/** The key of secrets read with the agent's own token (whatever that token is after a re-login). */
export const AUTO_KEY = 'auto';
/** Proxy entries kept at most (beyond, responses pass through uncached). */
const MAX_ENTRIES = 1000;

/** A held secret as persisted. Times in ms since epoch. */
export interface CachedSecret {
  /** AUTO_KEY, or a keyed hash of the client token that read it. */
  key: string;
  path: string;
  /** The client token (proxy entries only): needed to renew the lease. */
  token?: string;
  configured: boolean;
  response: SecretResponse;
  obtainedAt: number;
  /** null: never expires. */
  expireAt: number | null;
  /** Seconds asked per renewal: the TTL first issued. */
  increment: number;
  renewals: number;
}

interface Entry extends CachedSecret {
  watcher?: LifetimeWatcher;
  timer?: NodeJS.Timeout;
}

export interface SecretManagerDeps {
  /** The client carrying the agent's token (auto-auth keeps it current). */
  autoClient: BrokerClient;
  clientFor(token: string): BrokerClient;
  /** A request with the agent's token got a 403: log in again if the token itself is refused. */
  reauthenticate(): Promise<void>;
  /** Resolves once the agent has a token. */
  authReady: Promise<void>;
  backoff: { minMs: number; maxMs: number };
  log: Logger;
  /** A configured secret has new data (new credentials). */
  onChange(path: string): void;
  /** Something worth persisting changed. */
  onPersist(): void;
}

export interface SecretStats {
  renewals: number;
  /** New credentials obtained for configured secrets after the first. */
  replacements: number;
  /** Leases the broker refused to renew (revoked, unknown, past max_ttl), dropped. */
  refusedRenewals: number;
  fetches: number;
}

const mapKey = (key: string, path: string): string => `${key}\u0000${path}`;

/** Same data, not counting static credentials' `ttl` (which counts down at every read). */
function sameCredentials(a: SecretResponse, b: SecretResponse): boolean {
  const strip = (d: Record<string, unknown> | null): string => JSON.stringify(d ? { ...d, ttl: undefined } : d);
  return strip(a.data) === strip(b.data);
}

/** A keyed hash of a client token (HMAC-SHA256 under the cache-index key): entries never hold a token as their key. */
export function tokenKey(indexKey: Buffer, token: string): string {
  return createHmac('sha256', indexKey).update(token).digest('hex');
}

export class SecretManager {
  private readonly entries = new Map<string, Entry>();
  private readonly configured = new Set<string>();
  private readonly replacing = new Map<string, Promise<void>>();
  /** Configured paths that had credentials once (a later install is a replacement). */
  private readonly delivered = new Set<string>();
  private readonly abort = new AbortController();
  readonly stats: SecretStats = { renewals: 0, replacements: 0, refusedRenewals: 0, fetches: 0 };
  /** Last failure per configured path (cleared on success), for the status page. */
  readonly lastError = new Map<string, string>();

  constructor(private readonly deps: SecretManagerDeps) {}

  /** Whether `path` is used by templates or exec env. */
  isConfigured(path: string): boolean {
    return this.configured.has(path);
  }

  /** The valid entry for `key` + `path`, if any. */
  lookup(key: string, path: string): CachedSecret | undefined {
    const e = this.entries.get(mapKey(key, path));
    return e && (e.expireAt === null || e.expireAt > Date.now()) ? e : undefined;
  }

  /** Entries still valid, for persistence and status. */
  snapshot(): CachedSecret[] {
    const now = Date.now();
    const out: CachedSecret[] = [];
    for (const e of this.entries.values()) {
      if (e.expireAt !== null && e.expireAt <= now) continue;
      const { watcher: _w, timer: _t, ...plain } = e;
      out.push(plain);
    }
    return out;
  }

  /**
   * Take over entries from the persistent cache (only those still valid);
   * their leases are renewed at once to learn whether they still live. Call
   * manage() right after, in the same tick, to mark the ones still configured.
   */
  restore(list: CachedSecret[]): void {
    for (const c of list) {
      if (c.expireAt !== null && c.expireAt <= Date.now() + 1000) continue;
      // Configured again only if the current config still uses it (manage()).
      const entry: Entry = { ...c, configured: false };
      this.entries.set(mapKey(c.key, c.path), entry);
      this.watch(entry, true);
    }
  }

  /** Hold `paths` for templates/exec: obtain each (retrying with backoff) unless a valid one is held already. */
  manage(paths: string[]): void {
    for (const path of paths) {
      this.configured.add(path);
      const e = this.entries.get(mapKey(AUTO_KEY, path));
      if (e) {
        e.configured = true;
        this.delivered.add(path);
      }
      if (!this.lookup(AUTO_KEY, path)) void this.replace(path, 'first read');
    }
  }

  /**
   * The configured secret's valid entry; when none is held, waits up to
   * `waitMs` for the one being obtained, or reads it once now (throws what the broker answered).
   */
  async current(path: string, waitMs: number): Promise<CachedSecret> {
    const held = this.lookup(AUTO_KEY, path);
    if (held) return held;
    const pending = this.replacing.get(path);
    if (pending) {
      // Being obtained already: wait for it (bounded) rather than take a second lease.
      await Promise.race([pending, sleep(waitMs)]);
      const now = this.lookup(AUTO_KEY, path);
      if (now) return now;
      throw new Error(`credentials for ${path} are being obtained: ${this.lastError.get(path) ?? 'not yet'}`);
    }
    await Promise.race([this.deps.authReady, sleep(waitMs)]);
    return this.fetch(AUTO_KEY, undefined, path, true);
  }

  /** Cache a leased response read through the proxy with `token` (keyed `key`); it is renewed until it ends. */
  adopt(key: string, token: string | undefined, path: string, response: SecretResponse): void {
    if (this.entries.size >= MAX_ENTRIES && !this.entries.has(mapKey(key, path))) return;
    this.install(key, token, path, response, key === AUTO_KEY && this.configured.has(path));
  }

  /** Forget entries holding `leaseId` (revoked through the proxy); configured ones are replaced. */
  evictLease(leaseId: string): void {
    for (const e of [...this.entries.values()]) {
      if (e.response.lease_id !== leaseId) continue;
      this.drop(e);
      if (e.configured) void this.replace(e.path, 'lease revoked through the proxy');
    }
    this.deps.onPersist();
  }

  private client(e: { key: string; token?: string }): BrokerClient {
    return e.key === AUTO_KEY || !e.token ? this.deps.autoClient : this.deps.clientFor(e.token);
  }

  private async fetch(key: string, token: string | undefined, path: string, configured: boolean): Promise<Entry> {
    const client = this.client({ key, ...(token ? { token } : {}) });
    const res = await client.read(path);
    this.stats.fetches++;
    return this.install(key, token, path, res, configured);
  }

  private install(key: string, token: string | undefined, path: string, response: SecretResponse, configured: boolean): Entry {
    const now = Date.now();
    // Static credentials: `ttl` is the time to the next rotation (0 when it is due: read again in a second).
    const staticTtl = !response.lease_id && typeof response.data?.['ttl'] === 'number' ? Math.max(1, response.data['ttl'] as number) : 0;
    const ttl = response.lease_id ? response.lease_duration : staticTtl;
    const entry: Entry = {
      key,
      path,
      ...(token && key !== AUTO_KEY ? { token } : {}),
      configured,
      response,
      obtainedAt: now,
      expireAt: ttl > 0 ? now + ttl * 1000 : null,
      increment: response.lease_duration,
      renewals: 0,
    };
    const k = mapKey(key, path);
    const old = this.entries.get(k);
    if (old) this.stopTimers(old);
    this.entries.set(k, entry);
    this.watch(entry, false);
    this.deps.onPersist();
    if (configured && (!old || old.response.lease_id !== response.lease_id || sameCredentials(old.response, response) === false)) {
      if (this.delivered.has(path)) this.stats.replacements++;
      this.delivered.add(path);
      this.deps.onChange(path);
    }
    return entry;
  }

  private stopTimers(e: Entry): void {
    e.watcher?.stop();
    clearTimeout(e.timer);
  }

  private drop(e: Entry): void {
    this.stopTimers(e);
    const k = mapKey(e.key, e.path);
    if (this.entries.get(k) === e) this.entries.delete(k);
  }

  /** Start keeping `e` alive: renew a lease; re-read static creds after their rotation. */
  private watch(e: Entry, renewNow: boolean): void {
    if (this.abort.signal.aborted || e.expireAt === null) return;
    if (!e.response.lease_id) {
      // Static credentials (no lease): read again just after the broker's rotation.
      e.timer = setTimeout(() => this.ended(e, null), Math.max(0, e.expireAt - Date.now()) + 500);
      return;
    }
    const remaining = Math.max(1, Math.round((e.expireAt - Date.now()) / 1000));
    const watcher = new LifetimeWatcher(this.client(e), {
      secret: { ...e.response, lease_duration: remaining },
      incrementSeconds: e.increment > 0 ? e.increment : remaining,
      // Replace a third of the TTL before the end, and at least 2 s before (time to fetch, render, signal).
      graceMs: Math.max(2000, ((e.increment > 0 ? e.increment : remaining) * 1000) / 3),
      renewNow,
      backoff: this.deps.backoff,
    });
    e.watcher = watcher;
    watcher.on('renew', (res: SecretResponse) => {
      e.expireAt = Date.now() + res.lease_duration * 1000;
      e.renewals++;
      this.stats.renewals++;
      this.deps.onPersist();
    });
    watcher.on('done', (err: Error | null) => this.ended(e, err));
  }

  /** `e` can no longer be kept: drop it if the broker refused it, replace it if configured. */
  private ended(e: Entry, err: Error | null): void {
    if (this.abort.signal.aborted || this.entries.get(mapKey(e.key, e.path)) !== e) return;
    // Refused for good: a 4xx; for a proxy client's entry also a 403 (its token is gone: stop serving it).
    const refused = err instanceof BrokerRequestError && !isTransient(err) && (e.key !== AUTO_KEY || !isPermissionDenied(err));
    if (refused) {
      this.stats.refusedRenewals++;
      this.deps.log.warn({ path: e.path, status: (err as BrokerRequestError).status, err: err!.message }, 'lease renewal refused: dropping it from the cache');
    }
    if (refused) this.drop(e);
    else if (!e.configured) {
      // A proxy entry that can no longer be renewed is still served until it ends.
      clearTimeout(e.timer);
      e.timer = setTimeout(() => this.drop(e), Math.max(0, (e.expireAt ?? Date.now()) - Date.now()));
    }
    this.deps.onPersist();
    if (!e.configured) return;
    const reason = err ? `renewal failed: ${err.message}` : e.response.lease_id ? 'lease reaches its max_ttl' : 'static credentials rotated';
    if (isPermissionDenied(err)) void this.deps.reauthenticate().then(() => this.replace(e.path, reason));
    else void this.replace(e.path, reason);
  }

  /** Obtain new credentials for configured `path`, retrying with backoff until it works (shared by concurrent callers). */
  private replace(path: string, reason: string): Promise<void> {
    let p = this.replacing.get(path);
    if (!p) {
      p = this.replaceLoop(path, reason).finally(() => this.replacing.delete(path));
      this.replacing.set(path, p);
    }
    return p;
  }

  private async replaceLoop(path: string, reason: string): Promise<void> {
    await this.deps.authReady;
    const backoff = new Backoff({ minMs: this.deps.backoff.minMs, maxMs: this.deps.backoff.maxMs });
    this.deps.log.info({ path, reason }, 'obtaining credentials');
    while (!this.abort.signal.aborted) {
      try {
        await this.fetch(AUTO_KEY, undefined, path, true);
        this.lastError.delete(path);
        return;
      } catch (err) {
        this.lastError.set(path, (err as Error).message);
        this.deps.log.warn({ path, err: (err as Error).message }, 'cannot obtain credentials, will retry');
        if (isPermissionDenied(err)) await this.deps.reauthenticate();
        await sleep(backoff.next(), this.abort.signal);
      }
    }
  }

  /** Stop every renewal and retry (the cache keeps what it holds). */
  stop(): void {
    this.abort.abort();
    for (const e of this.entries.values()) this.stopTimers(e);
  }
}
