// One replica of an HA cluster: competes for leadership once unsealed, runs
// the broker's active duties while it leads, and tells the forwarder where
// the active node is while it does not.
//
// Timing (L = ha.lease_duration): every L/4 the active renews its lease and a
// standby looks at the leadership row, taking it over once the lease has
// expired. A dead active is so replaced within L + L/4. The active also
// keeps a local deadline (the start of its last successful renewal + 0.8 L,
// on the monotonic clock): past it, it stops writing at once (the store's
// fence guard) and steps down, so a node whose event loop stalled, or that was
// paused (SIGSTOP) or cut off from the store, never acts on a lease another
// node may already have taken. The store refuses its writes anyway (fencing).

import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { messageOf } from '../errors.ts';
import type { PostgresStorage } from '../storage/postgres-storage.ts';
import { ZERO_TIME, type ActiveDuties, type Cluster, type LeaderInfo } from './cluster.ts';
import { Election, type LeaderRow } from './election.ts';

export interface HaNodeOptions {
  apiAddr: string;
  clusterAddr: string;
  /** Seconds. */
  leaseDuration: number;
}

type State = 'sealed' | 'standby' | 'active';

export class HaNode implements Cluster {
  readonly haEnabled = true;
  readonly nodeId = randomUUID();
  private readonly election: Election;
  private readonly leaseMs: number;
  private readonly tickMs: number;
  private state: State = 'sealed';
  private fence = 0;
  /** performance.now() past which this node no longer trusts its own lease. */
  private validUntil = 0;
  private duties: ActiveDuties | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  /** No new attempt to lead before this (performance.now()), after a step-down. */
  private cooldownUntil = 0;
  private lastSeen: LeaderRow | undefined;
  private activeSince: Date | undefined;
  /** Serialises starting and stopping the duties. */
  private transition: Promise<void> = Promise.resolve();
  private starting: Promise<void> | undefined;

  constructor(
    private readonly storage: PostgresStorage,
    private readonly opts: HaNodeOptions,
    private readonly logger: Logger,
  ) {
    this.election = new Election(storage.queryable, storage.prefix, this.nodeId, opts.apiAddr, opts.clusterAddr, opts.leaseDuration);
    this.leaseMs = opts.leaseDuration * 1000;
    this.tickMs = Math.max(250, Math.floor(this.leaseMs / 4));
  }

  get isActive(): boolean {
    return this.state === 'active';
  }

  isStandby(): boolean {
    return this.state === 'standby';
  }

  canAct(): boolean {
    return this.state === 'active' && performance.now() < this.validUntil;
  }

  /** Where to forward a request (the active node's cluster address), if one is known and it is not this node. */
  forwardTarget(): string | undefined {
    const seen = this.lastSeen;
    if (this.state !== 'standby' || !seen || !seen.live || seen.holder === this.nodeId) return undefined;
    return seen.clusterAddr ?? seen.apiAddr ?? undefined;
  }

  /**
   * The active node's address; while none is known (an election under way),
   * or only `avoid` (an address that just refused a connection), look at the
   * leadership row every 200 ms for up to `waitMs`.
   */
  async awaitTarget(waitMs: number, avoid?: string): Promise<string | undefined> {
    const deadline = performance.now() + waitMs;
    for (;;) {
      let target = this.forwardTarget();
      if (target === avoid) target = undefined;
      if (target || this.state !== 'standby' || performance.now() >= deadline) return target;
      await new Promise((r) => setTimeout(r, 200));
      if (this.state !== 'standby') return undefined;
      this.lastSeen = await this.election.current().catch(() => this.lastSeen);
    }
  }

  /** How long a request may wait for an election (a lease and a tick). */
  get electionWaitMs(): number {
    return this.leaseMs + this.tickMs;
  }

  async unsealed(duties: ActiveDuties): Promise<void> {
    this.duties = duties;
    this.state = 'standby';
    // Until this node wins, any write it attempts is refused (it forwards requests instead).
    this.storage.setFence(this.fence, () => false);
    await this.tick();
    this.schedule();
  }

  async sealed(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.ticking;
    const wasActive = this.state === 'active';
    await this.demote('sealed', wasActive);
    this.state = 'sealed';
    this.duties = undefined;
  }

  async stepDown(): Promise<void> {
    if (this.state !== 'active') return;
    // Leave the others time to take over before competing again.
    this.cooldownUntil = performance.now() + Math.max(2 * this.tickMs, 2_000);
    await this.demote('step-down', true);
  }

  async leader(): Promise<LeaderInfo> {
    if (this.state === 'active') {
      return { haEnabled: true, isSelf: true, leaderAddress: this.opts.apiAddr, leaderClusterAddress: this.opts.clusterAddr, activeTime: (this.activeSince ?? new Date()).toISOString() };
    }
    const row = await this.election.current().catch(() => this.lastSeen);
    if (!row || !row.live || !row.holder) return { haEnabled: true, isSelf: false, leaderAddress: '', leaderClusterAddress: '', activeTime: ZERO_TIME };
    return {
      haEnabled: true,
      isSelf: row.holder === this.nodeId,
      leaderAddress: row.apiAddr ?? '',
      leaderClusterAddress: row.clusterAddr ?? '',
      activeTime: row.acquiredAt ? row.acquiredAt.toISOString() : ZERO_TIME,
    };
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state === 'sealed') return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => this.schedule());
    }, this.tickMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    // A store that does not answer at all (a network that drops packets) must
    // not hold the tick: past the wait, the lease is judged by the local clock.
    const wait = Math.max(this.tickMs, 1_000);
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the store did not answer within ${wait} ms`)), wait);
    });
    try {
      const work = this.state === 'active' ? this.keepLeading() : this.state === 'standby' ? this.tryToLead() : Promise.resolve();
      work.catch(() => undefined);
      await Promise.race([work, silent]);
    } catch (err) {
      this.logger.warn({ err: messageOf(err), state: this.state }, 'HA: talking to the store failed');
      if (this.state === 'active' && performance.now() > this.validUntil) await this.demote('lease expired: the store could not be reached', false);
    } finally {
      clearTimeout(timer);
    }
  }

  private async keepLeading(): Promise<void> {
    if (performance.now() > this.validUntil) {
      // Paused or stalled past the lease: another node may lead already.
      await this.demote('lease expired before it could be renewed', false);
      return;
    }
    const started = performance.now();
    if (await this.election.renew(this.fence)) this.validUntil = started + this.leaseMs * 0.8;
    else await this.demote('leadership was taken over', false);
  }

  private async tryToLead(): Promise<void> {
    const row = await this.election.current();
    this.lastSeen = row;
    if (row.live || performance.now() < this.cooldownUntil) return;
    const started = performance.now();
    const fence = await this.election.tryAcquire();
    if (fence === undefined) {
      this.lastSeen = await this.election.current();
      return;
    }
    this.promote(fence, started);
  }

  /**
   * Become active: writes carry `fence` from now on; the duties start in the
   * background (the renewals go on meanwhile), and requests wait for them.
   */
  private promote(fence: number, started: number): void {
    if (this.state !== 'standby') return;
    this.fence = fence;
    this.validUntil = started + this.leaseMs * 0.8;
    this.storage.setFence(fence, () => this.canAct());
    this.state = 'active';
    this.activeSince = new Date();
    this.logger.info({ fence, nodeId: this.nodeId, apiAddr: this.opts.apiAddr }, 'HA: this node is now the active node');
    const starting = (this.transition = this.transition.then(async () => {
      if (this.state !== 'active' || this.fence !== fence) return;
      try {
        await this.duties?.start();
      } catch (err) {
        this.logger.error({ err: messageOf(err) }, 'HA: starting the active duties failed; stepping down');
        this.cooldownUntil = performance.now() + 2 * this.tickMs;
        this.transition = this.transition.then(() => this.demoteNow('active duties failed to start', true));
      }
    }));
    this.starting = starting;
  }

  /** Resolves once this node, if active, has started its duties (mounts loaded): requests wait for it. */
  ready(): Promise<void> {
    return this.starting ?? Promise.resolve();
  }

  /** Stop being active: writes are refused at once (synchronously), the duties stop after they finished starting. */
  private demote(reason: string, release: boolean): Promise<void> {
    if (this.state !== 'active') return this.transition;
    this.state = 'standby';
    this.storage.setFence(this.fence, () => false);
    this.activeSince = undefined;
    this.starting = undefined;
    this.logger.warn({ reason, fence: this.fence, nodeId: this.nodeId }, 'HA: this node is no longer active; now a standby');
    return (this.transition = this.transition.then(() => this.stopDuties(release)));
  }

  private demoteNow(reason: string, release: boolean): Promise<void> {
    if (this.state === 'active') {
      this.state = 'standby';
      this.storage.setFence(this.fence, () => false);
      this.activeSince = undefined;
      this.starting = undefined;
      this.logger.warn({ reason, fence: this.fence, nodeId: this.nodeId }, 'HA: this node is no longer active; now a standby');
    }
    return this.stopDuties(release);
  }

  private async stopDuties(release: boolean): Promise<void> {
    try {
      await this.duties?.stop();
    } catch (err) {
      this.logger.error({ err: messageOf(err) }, 'HA: stopping the active duties failed');
    }
    if (release) await this.election.release(this.fence).catch((err: unknown) => this.logger.warn({ err: messageOf(err) }, 'HA: releasing leadership failed'));
    this.lastSeen = await this.election.current().catch(() => undefined);
  }
}
