// Leader election through the PostgreSQL store: one row (`<prefix>ha_leader`,
// id 1) holds the active node's id and addresses, a leadership lease
// (expires_at) and a fencing number. Times are PostgreSQL's clock
// (clock_timestamp()), so clock skew between nodes does not matter.
//
// - acquire: take the row if it has no holder or its lease expired, adding 1
//   to the fencing number; the new number is this node's fence.
// - renew: push expires_at, only while holder and fence are still ours.
// - release: clear the holder (step-down, seal, shutdown), only if ours.
//
// The fencing number only ever grows, so every write checked against it
// (src/storage/postgres-storage.ts) is refused once leadership moved on.

import type { QueryResultRow } from 'pg';

export interface Queryable {
  query<R extends QueryResultRow>(sql: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

export interface LeaderRow {
  holder: string | null;
  apiAddr: string | null;
  clusterAddr: string | null;
  fence: number;
  /** Whether the lease is still running (by the database's clock). */
  live: boolean;
  acquiredAt: Date | null;
}

export class Election {
  private readonly table: string;

  /**
   * @param prefix the store's table prefix (already validated as an identifier).
   * @param leaseSeconds how long a lease lasts without renewal.
   */
  constructor(
    private readonly db: Queryable,
    prefix: string,
    readonly nodeId: string,
    private readonly apiAddr: string,
    private readonly clusterAddr: string,
    private readonly leaseSeconds: number,
  ) {
    this.table = `${prefix}ha_leader`;
  }

  /** Take leadership if nobody holds a live lease; returns the new fencing number, or undefined. */
  async tryAcquire(): Promise<number | undefined> {
    const rows = (
      await this.db.query<{ fence: number }>(
        `UPDATE ${this.table}
            SET holder = $1, api_addr = $2, cluster_addr = $3, fence = fence + 1,
                expires_at = clock_timestamp() + make_interval(secs => $4), acquired_at = clock_timestamp()
          WHERE id = 1 AND (holder IS NULL OR expires_at IS NULL OR expires_at < clock_timestamp())
          RETURNING fence`,
        [this.nodeId, this.apiAddr, this.clusterAddr, this.leaseSeconds],
      )
    ).rows;
    return rows[0]?.fence;
  }

  /** Extend our lease; false when leadership is no longer ours (someone took over). */
  async renew(fence: number): Promise<boolean> {
    const rows = (
      await this.db.query(
        `UPDATE ${this.table} SET expires_at = clock_timestamp() + make_interval(secs => $3)
          WHERE id = 1 AND holder = $1 AND fence = $2 RETURNING 1`,
        [this.nodeId, fence, this.leaseSeconds],
      )
    ).rows;
    return rows.length === 1;
  }

  /** Give leadership up (only if still ours), so another node can take it at once. */
  async release(fence: number): Promise<void> {
    await this.db.query(`UPDATE ${this.table} SET holder = NULL, expires_at = NULL WHERE id = 1 AND holder = $1 AND fence = $2`, [this.nodeId, fence]);
  }

  async current(): Promise<LeaderRow> {
    const r = (
      await this.db.query<{ holder: string | null; api_addr: string | null; cluster_addr: string | null; fence: number; live: boolean; acquired_at: Date | null }>(
        `SELECT holder, api_addr, cluster_addr, fence, (holder IS NOT NULL AND expires_at >= clock_timestamp()) AS live, acquired_at FROM ${this.table} WHERE id = 1`,
      )
    ).rows[0];
    if (!r) throw new Error(`the leadership row of ${this.table} is missing`);
    return { holder: r.holder, apiAddr: r.api_addr, clusterAddr: r.cluster_addr, fence: Number(r.fence), live: r.live, acquiredAt: r.acquired_at };
  }
}
