// The revocation loop. When the next lease is due (and at least every
// interval) it claims due leases through the due_at index, a batch at a
// time, and hands each to the lease manager at once, which hands the drop
// to its connection's DdlBatcher: the batcher
// bounds the database work per connection and drops the waiting users in
// batches. Claims are not awaited as a whole, so a slow or failing connection
// only ever delays its own leases. The number of leases in flight is capped,
// so memory does not grow with the lease count; so is each connection's share
// of it: while a connection holds its cap (a database that hangs rather than
// refuses) its leases are not claimed, so they cannot take the room other
// connections' leases need.

import type { Logger } from 'pino';
import { messageOf } from '../errors.ts';
import type { ConnectionKey, LeaseRow } from '../storage/storage.ts';
import { CLAIM_MS, type LeaseManager } from './lease-manager.ts';

const BATCH = 256;
const MAX_IN_FLIGHT = 2048;
/** From this many leases held (waiting or being revoked), a connection's leases are not claimed. */
const PER_CONNECTION_QUEUE = 256;
/** A connection that held its cap and went down to this many gets more claimed at once. */
const PER_CONNECTION_REFILL = PER_CONNECTION_QUEUE / 2;

interface RevocationStore {
  claimDueLeases(now: number, claimUntil: number, limit: number, skip?: ConnectionKey[]): Promise<LeaseRow[]>;
  nextDueAt(): Promise<number | null>;
}

/** Least wait (ms) between two passes when the next lease is due sooner: leases due a few ms apart go in one pass. */
const MIN_WAIT_MS = 10;

/** The leases one connection holds: counted, each revoked as soon as it comes. */
class ConnectionQueue {
  private held = 0;

  constructor(
    private readonly work: (row: LeaseRow) => Promise<void>,
    /** Called when the count went down to PER_CONNECTION_REFILL or to 0: more of its leases may be claimed. */
    private readonly onRoom: (empty: boolean) => void,
  ) {}

  push(row: LeaseRow): void {
    this.held++;
    void this.work(row).finally(() => {
      this.held--;
      if (this.held === 0) this.onRoom(true);
      else if (this.held === PER_CONNECTION_REFILL) this.onRoom(false);
    });
  }

  get size(): number {
    return this.held;
  }
}

export class RevocationLoop {
  private timer: NodeJS.Timeout | undefined;
  /** When the timer set fires (ms since the epoch). */
  private nextPassAt = 0;
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

  /**
   * A lease due at `dueAt` (ms since the epoch) was issued: the next pass
   * comes no later than that. Cheap: a comparison, and a new timer only when
   * it is sooner than the one set. (A renewal only moves a lease later.)
   */
  dueBy(dueAt: number): void {
    if (!this.running || this.ticking || dueAt >= this.nextPassAt) return;
    this.schedule(Math.max(MIN_WAIT_MS, dueAt - Date.now()));
  }

  private schedule(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.nextPassAt = Date.now() + delay;
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  /**
   * One pass: claim what is due, then sleep until the next lease is due
   * (the due_at index's first entry), at most the interval, so a lease is
   * revoked when it ends rather than up to an interval later. Leases still
   * due after the pass wait for room (a full queue or the in-flight cap),
   * which wakes the loop when it frees: then the interval applies.
   */
  private async tick(): Promise<void> {
    if (!this.running || this.ticking) return;
    this.ticking = true;
    let wait = this.intervalMs;
    try {
      for (;;) {
        const room = Math.min(BATCH, MAX_IN_FLIGHT - this.inFlight);
        if (room <= 0) break;
        const now = Date.now();
        const rows = await this.store().claimDueLeases(now, now + CLAIM_MS, room, this.fullConnections());
        for (const row of rows) this.enqueue(row);
        if (rows.length < room || !this.running) break;
      }
      const next = await this.store().nextDueAt();
      const until = next === null ? Infinity : next - Date.now();
      if (until > 0) wait = Math.min(this.intervalMs, Math.max(MIN_WAIT_MS, until));
    } catch (err) {
      this.logger.error({ err: messageOf(err) }, 'revocation pass failed');
    } finally {
      this.ticking = false;
      if (this.running) this.schedule(this.again ? 0 : wait);
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
      const created: ConnectionQueue = new ConnectionQueue(
        (r) => this.revokeOne(r),
        (empty) => {
          if (empty && this.queues.get(key) === created) this.queues.delete(key);
          // It may have been full, with more of its leases due: claim them now.
          this.wake();
        },
      );
      queue = created;
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
