// The revocation loop. Every interval it claims due leases through the
// due_at index, a batch at a time, and hands each to a queue per database
// connection with bounded concurrency. Claims are not awaited as a whole, so
// a slow or failing connection only ever delays its own leases. The number of
// leases in flight is capped, so memory does not grow with the lease count;
// so is each connection's share of it: while a connection's queue is full (a
// database that hangs rather than refuses) its leases are not claimed, so
// they cannot take the room other connections' leases need.

import type { Logger } from 'pino';
import { messageOf } from '../errors.ts';
import type { ConnectionKey, LeaseRow } from '../storage/storage.ts';
import { CLAIM_MS, type LeaseManager } from './lease-manager.ts';

const BATCH = 256;
const MAX_IN_FLIGHT = 2048;
const PER_CONNECTION = 4;
/** From this many leases held (waiting or being revoked), a connection's leases are not claimed. */
const PER_CONNECTION_QUEUE = 256;

interface RevocationStore {
  claimDueLeases(now: number, claimUntil: number, limit: number, skip?: ConnectionKey[]): Promise<LeaseRow[]>;
}

class ConnectionQueue {
  private readonly waiting: LeaseRow[] = [];
  private active = 0;

  constructor(
    private readonly work: (row: LeaseRow) => Promise<void>,
    private readonly onIdle: () => void,
  ) {}

  push(row: LeaseRow): void {
    this.waiting.push(row);
    this.pump();
  }

  get size(): number {
    return this.waiting.length + this.active;
  }

  private pump(): void {
    while (this.active < PER_CONNECTION && this.waiting.length > 0) {
      const row = this.waiting.shift()!;
      this.active++;
      void this.work(row).finally(() => {
        this.active--;
        this.pump();
        if (this.size === 0) this.onIdle();
      });
    }
  }
}

export class RevocationLoop {
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private again = false;
  private running = false;
  private inFlight = 0;
  private readonly queues = new Map<string, ConnectionQueue>();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly leases: LeaseManager,
    private readonly store: () => RevocationStore,
    private readonly logger: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Run a pass soon (after revoke-prefix or a token revocation). */
  wake(): void {
    if (!this.running) return;
    if (this.ticking) this.again = true;
    else this.schedule(0);
  }

  /** Resolves when nothing is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (!this.running || this.ticking) return;
    this.ticking = true;
    try {
      for (;;) {
        const room = Math.min(BATCH, MAX_IN_FLIGHT - this.inFlight);
        if (room <= 0) break;
        const now = Date.now();
        const rows = await this.store().claimDueLeases(now, now + CLAIM_MS, room, this.fullConnections());
        for (const row of rows) this.enqueue(row);
        if (rows.length < room || !this.running) break;
      }
    } catch (err) {
      this.logger.error({ err: messageOf(err) }, 'revocation pass failed');
    } finally {
      this.ticking = false;
      if (this.running) this.schedule(this.again ? 0 : this.intervalMs);
      this.again = false;
    }
  }

  /** Connections whose queue is full: their leases wait in storage. */
  private fullConnections(): ConnectionKey[] {
    const full: ConnectionKey[] = [];
    for (const [key, queue] of this.queues) {
      if (queue.size < PER_CONNECTION_QUEUE) continue;
      const [mount, connection] = key.split('\u0000') as [string, string];
      full.push({ mount, connection });
    }
    return full;
  }

  private enqueue(row: LeaseRow): void {
    const key = `${row.mount}\u0000${row.connection}`;
    let queue = this.queues.get(key);
    if (!queue) {
      queue = new ConnectionQueue(
        (r) => this.revokeOne(r),
        () => {
          this.queues.delete(key);
          // It may have been full, with more of its leases due: claim them now.
          this.wake();
        },
      );
      this.queues.set(key, queue);
    }
    this.inFlight++;
    queue.push(row);
  }

  private async revokeOne(row: LeaseRow): Promise<void> {
    try {
      await this.leases.revokeClaimed(row);
    } catch (err) {
      // revokeClaimed records its own failures; this is a storage failure.
      this.logger.error({ leaseId: row.id, err: messageOf(err) }, 'revocation bookkeeping failed');
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }
}
