// Keeps one lease (or the client's own token) alive, like the LifetimeWatcher
// of Vault's Go client (https://pkg.go.dev/github.com/hashicorp/vault/api#LifetimeWatcher):
// renews at about 2/3 of the TTL; when the broker caps a renewal at the
// lease's max_ttl (or the lease is not renewable) it reports `done` a grace
// period before the end, so the owner can fetch new credentials while the
// old still work. A renewal refused for good (4xx: revoked, unknown, past
// max_ttl) ends it at once; an unreachable broker is retried with capped
// backoff until the grace period.

import { EventEmitter } from 'node:events';
import { Backoff, type BackoffOptions } from './backoff.ts';
import type { BrokerClient, SecretResponse } from './broker-client.ts';
import { isTransient } from './errors.ts';

export interface LifetimeWatcherOptions {
  /**
   * What to keep alive: a leased response (`lease_id`, `lease_duration`), or a
   * response with an `auth` block (the client's own token, renewed with renew-self).
   */
  secret: SecretResponse;
  /** Seconds asked per renewal (default: the secret's initial lease_duration). */
  incrementSeconds?: number;
  /**
   * How long before the end `done` fires when the lease cannot be extended, ms.
   * Default: a third of the increment, at least 1000.
   */
  graceMs?: number;
  /** Renew at once instead of at 2/3 of the TTL (after a restart from a cache: is the lease still alive?). */
  renewNow?: boolean;
  /** Retry bounds while the broker is unreachable. */
  backoff?: BackoffOptions;
  /** Time the secret was obtained, ms since epoch (default now); its TTL counts from here. */
  obtainedAt?: number;
}

/**
 * Events:
 * - `renew` (response: SecretResponse): a renewal succeeded; `expireAt` moved.
 * - `retry` (error: Error): a renewal failed transiently and will be retried.
 * - `done` (error: Error | null): no more renewals. `null`: the lease reached
 *   its max_ttl (or is not renewable) and ends in about `graceMs`; an Error:
 *   renewal was refused (revoked, not found) or the broker stayed unreachable
 *   into the grace period.
 */
export class LifetimeWatcher extends EventEmitter {
  /** When the lease (or token) ends, ms since epoch; null = never. */
  expireAt: number | null;
  /** Successful renewals so far. */
  renewals = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly increment: number;
  private readonly graceMs: number;
  private readonly backoff: Backoff;
  private readonly isAuth: boolean;
  private readonly leaseId: string;

  constructor(
    private readonly client: BrokerClient,
    opts: LifetimeWatcherOptions,
  ) {
    super();
    const s = opts.secret;
    this.isAuth = s.auth !== null && s.auth !== undefined && !s.lease_id;
    const ttl = this.isAuth ? s.auth!.lease_duration : s.lease_duration;
    this.leaseId = s.lease_id;
    this.increment = opts.incrementSeconds ?? ttl;
    this.graceMs = opts.graceMs ?? Math.max(1000, (this.increment * 1000) / 3);
    this.backoff = new Backoff(opts.backoff);
    const from = opts.obtainedAt ?? Date.now();
    this.expireAt = ttl > 0 ? from + ttl * 1000 : null;
    const renewable = this.isAuth ? s.auth!.renewable : s.renewable;
    queueMicrotask(() => {
      if (this.stopped) return;
      if (this.expireAt === null) return; // never expires: nothing to do
      if (!renewable) return this.finalStretch();
      this.schedule(opts.renewNow ? 0 : this.renewDelay(this.expireAt - Date.now()));
    });
  }

  /** 2/3 of the remaining time, with up to 10% jitter earlier. */
  private renewDelay(remainingMs: number): number {
    return Math.max(0, (remainingMs * 2) / 3 - Math.random() * remainingMs * 0.1);
  }

  private schedule(ms: number, fn: () => void = () => void this.renew()): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(fn, ms);
  }

  /** No renewal can extend the lease: `done(null)` a grace period before its end. */
  private finalStretch(): void {
    const at = (this.expireAt ?? Date.now()) - this.graceMs;
    this.schedule(Math.max(0, at - Date.now()), () => this.finish(null));
  }

  private finish(err: Error | null): void {
    if (this.stopped) return;
    this.stop();
    this.emit('done', err);
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    try {
      const res = this.isAuth ? await this.client.renewSelf(this.increment) : await this.client.renew(this.leaseId, this.increment);
      if (this.stopped) return;
      this.backoff.reset();
      this.renewals++;
      const ttl = this.isAuth ? (res.auth?.lease_duration ?? 0) : res.lease_duration;
      const renewable = this.isAuth ? res.auth?.renewable !== false : res.renewable !== false;
      this.expireAt = Date.now() + ttl * 1000;
      this.emit('renew', res);
      // Capped at max_ttl (shorter than asked): further renewals cannot help.
      if (ttl < this.increment || !renewable || ttl <= 0) return this.finalStretch();
      this.schedule(this.renewDelay(ttl * 1000));
    } catch (err) {
      if (this.stopped) return;
      if (!isTransient(err)) return this.finish(err as Error);
      this.emit('retry', err);
      const end = (this.expireAt ?? Infinity) - this.graceMs;
      // Into the grace period: give up so the owner replaces the secret while it still works.
      if (Date.now() >= end) return this.finish(err as Error);
      this.schedule(Math.min(this.backoff.next(), end - Date.now()));
    }
  }

  /** Stop renewing; no more events. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
