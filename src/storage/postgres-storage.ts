// PostgreSQL storage backend, for several broker replicas on one store (HA)
// or for users who already run a replicated PostgreSQL. Same barrier as the
// SQLite store: only ciphertext (the `sealed`/`value` columns) and the
// plaintext scheduling and lookup columns reach the database.
//
// Fencing (HA): when a fencing number is set (src/ha/election.ts), every write
// except seal metadata runs in a transaction that first reads the leadership
// row FOR SHARE and refuses with FencedError unless it still carries this
// node's fencing number. A takeover updates that row, so it waits for fenced
// writes in flight and every later write of the old leader is refused: a
// paused old leader cannot commit after a new one took over.

import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import { BrokerError, errors } from '../errors.ts';
import { migratePg } from './pg-migrations.ts';
import type { ConnectionKey, LeaseRow, LeaseStatus, SecretIdRow, Storage, TokenRow } from './storage.ts';
import { LEASE_COLUMNS, toLease, toSecretId, toToken, type LeaseRecord, type SecretIdRecord, type TokenRecord } from './records.ts';
import { STORE_TABLES, type CopyableStore, type RawRow, type StoreTable } from './store-copy.ts';

const rangeEnd = (prefix: string): string => prefix + '\uffff';

/** Table prefixes are spliced into SQL, so they are restricted to plain identifiers. */
export const TABLE_PREFIX = /^[a-z_][a-z0-9_]{0,39}$/;

/** A write refused by fencing: a 503 (DBR_ERR_HA_NOT_ACTIVE) for a request that reaches a deposed node. */
export class FencedError extends BrokerError {
  override name = 'FencedError';
  constructor(mine: number, current: number | string) {
    super(errors.NOT_ACTIVE.code, errors.NOT_ACTIVE.statusCode, errors.NOT_ACTIVE(`its fencing number is ${mine}, the store's is ${current}; the write was refused`).message);
  }
}

export interface PostgresStorageOptions {
  /** postgres:// URL (libpq-style parameters such as sslmode are understood by node-postgres). */
  connectionUrl: string;
  /** Prefix of every table name (default "dbroker_"). */
  tablePrefix?: string;
  /** Pool size (default 8). */
  maxConnections?: number;
  /** TLS settings for the store's connections (PEM strings), as for the engines. */
  tls?: { ca?: string; cert?: string; key?: string; skipVerify?: boolean };
  /**
   * 'single': one broker on this store; a session advisory lock held for the
   * life of the process refuses a second one. 'ha': several replicas (shared
   * mode of the same lock, so a single-mode broker and HA nodes never mix).
   * 'tool': no lock (operator migrate on a stopped store).
   */
  mode?: 'single' | 'ha' | 'tool';
  /** Shown in pg_stat_activity (default "dbroker"); HA nodes add their api_addr. */
  applicationName?: string;
  /**
   * HA: the server ends a session left idle inside a transaction this long
   * (ms; PG manual §20.11, idle_in_transaction_session_timeout), so a node
   * paused in the middle of a write (SIGSTOP, a stalled event loop) releases
   * its row locks and cannot hold up a takeover. Our transactions take
   * milliseconds.
   */
  idleInTransactionTimeoutMs?: number;
}

// bigint (int8) columns hold epoch milliseconds and counters, well inside 2^53.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

type Runner = { query: PoolClient['query'] };

/**
 * Sessions the pool keeps open while idle (pg-pool's `min`, the store lock's
 * session included), opened at start: the reads of an unseal, run side by
 * side, and the first requests after it find logged-in sessions instead of
 * each waiting for a new one, however long the broker stayed sealed.
 */
const KEPT_SESSIONS = 4;

export class PostgresStorage implements Storage, CopyableStore {
  readonly prefix: string;
  private fence: number | undefined;
  private guard: () => boolean = () => true;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    prefix: string,
    /** Holds the session advisory lock ('single' and 'ha' modes). */
    private readonly lockClient: PoolClient | undefined,
  ) {
    this.prefix = prefix;
  }

  /**
   * Connect, take the store lock for `mode`, and run pending migrations.
   * @throws Error when the database cannot be reached, the prefix is not an
   *   identifier, or another broker holds the store in an incompatible mode.
   */
  static async open(opts: PostgresStorageOptions): Promise<PostgresStorage> {
    const prefix = opts.tablePrefix ?? 'dbroker_';
    if (!TABLE_PREFIX.test(prefix)) throw new Error(`table_prefix "${prefix}" must match ${TABLE_PREFIX.source}`);
    const tls = opts.tls;
    const ssl =
      tls && (tls.ca !== undefined || tls.cert !== undefined || tls.skipVerify !== undefined)
        ? { ...(tls.ca !== undefined ? { ca: tls.ca } : {}), ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}), ...(tls.skipVerify ? { rejectUnauthorized: false } : {}) }
        : undefined;
    const max = opts.maxConnections ?? 8;
    const pool = new pg.Pool({
      connectionString: opts.connectionUrl,
      max,
      min: Math.min(KEPT_SESSIONS, max),
      types,
      connectionTimeoutMillis: 10_000,
      application_name: opts.applicationName ?? 'dbroker',
      ...(opts.idleInTransactionTimeoutMs ? { options: `-c idle_in_transaction_session_timeout=${Math.round(opts.idleInTransactionTimeoutMs)}` } : {}),
      ...(ssl ? { ssl } : {}),
    });
    // An idle client that loses its server must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    let lockClient: PoolClient | undefined;
    try {
      const client = await pool.connect();
      try {
        await migratePg(client, prefix);
      } finally {
        client.release();
      }
      const mode = opts.mode ?? 'single';
      if (mode !== 'tool') {
        lockClient = await pool.connect();
        lockClient.on('error', () => undefined);
        const fn = mode === 'ha' ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock';
        const got = (await lockClient.query<{ ok: boolean }>(`SELECT ${fn}(hashtext('dbroker-store:' || $1)) AS ok`, [prefix])).rows[0]!.ok;
        if (!got) {
          throw new Error(
            mode === 'ha'
              ? 'the store is in use by a dbroker without HA; stop it or enable ha on every node'
              : 'the store is in use by another dbroker process (enable ha on every node to run several)',
          );
        }
      }
    } catch (err) {
      lockClient?.release(true);
      await pool.end().catch(() => undefined);
      throw err;
    }
    // A session that cannot be opened now is opened at its first use, as without this.
    const opened = await Promise.allSettled(Array.from({ length: Math.max(0, Math.min(KEPT_SESSIONS, max) - pool.totalCount) }, () => pool.connect()));
    for (const r of opened) if (r.status === 'fulfilled') r.value.release();
    return new PostgresStorage(pool, prefix, lockClient);
  }

  private t(name: StoreTable | 'ha_leader'): string {
    return this.prefix + name;
  }

  /**
   * HA: from now on every write must carry `fence` (the store's current
   * fencing number when this node won the election) and pass `guard` (this
   * node's own belief that its leadership lease is still valid). A standby
   * sets the number it last saw, so its writes are refused once anyone leads.
   */
  setFence(fence: number, guard: () => boolean = () => true): void {
    this.fence = fence;
    this.guard = guard;
  }

  /** The pool, for the election (src/ha/election.ts); same store, same credentials. */
  get queryable(): { query: pg.Pool['query'] } {
    return this.pool;
  }

  private readonly inFlight = new Set<Promise<unknown>>();

  /** Track an operation, so close() lets operations already started finish. */
  private track<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    const p = work();
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  private read<R extends QueryResultRow>(sql: string, values: unknown[] = []): Promise<R[]> {
    return this.track(async () => (await this.pool.query<R>(sql, values)).rows);
  }

  /**
   * A hot point read as a named prepared statement: each pooled session
   * parses and plans it once, then only binds and executes (PostgreSQL
   * manual, "Extended Query" protocol). `name` is unique per statement text
   * within this store (the table prefix is part of the text, one pool per store).
   */
  private readPrepared<R extends QueryResultRow>(name: string, sql: string, values: unknown[]): Promise<R[]> {
    return this.track(async () => (await this.pool.query<R>({ name: `dbroker_${name}`, text: sql, values })).rows);
  }

  /** Run a write, checked against the fencing number when one is set. */
  private write<T>(work: (db: Runner) => Promise<T>, opts: { transaction?: boolean } = {}): Promise<T> {
    return this.track(() => this.writeNow(work, opts.transaction === true));
  }

  private async writeNow<T>(work: (db: Runner) => Promise<T>, transaction: boolean): Promise<T> {
    if (this.fence === undefined && !transaction) return work(this.pool);
    const client = await this.pool.connect();
    let broken = false;
    // A checked-out client has no pool listener: the server ending the session (the
    // idle-in-transaction timeout after a pause) must fail this write, not the process.
    const onError = (): void => void (broken = true);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      if (this.fence !== undefined) {
        const mine = this.fence;
        if (!this.guard()) throw new FencedError(mine, 'unknown (leadership lease expired locally)');
        const row = (await client.query<{ fence: number }>(`SELECT fence FROM ${this.t('ha_leader')} WHERE id = 1 FOR SHARE`)).rows[0];
        if (!row || row.fence !== mine) throw new FencedError(mine, row?.fence ?? 'missing');
      }
      const out = await work(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async getMeta(key: string): Promise<Buffer | undefined> {
    return (await this.read<{ value: Buffer }>(`SELECT value FROM ${this.t('meta')} WHERE key = $1`, [key]))[0]?.value;
  }

  /** Seal metadata (seal config, sealed keyring) is not fenced: sys/init runs before any node is active. */
  async putMeta(key: string, value: Buffer): Promise<void> {
    await this.track(() => this.pool.query(`INSERT INTO ${this.t('meta')} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [key, value]));
  }

  async getEntry(path: string): Promise<Buffer | undefined> {
    return (await this.readPrepared<{ sealed: Buffer }>('get_entry', `SELECT sealed FROM ${this.t('entries')} WHERE path = $1`, [path]))[0]?.sealed;
  }

  async putEntry(path: string, sealed: Buffer): Promise<void> {
    await this.write((db) => db.query(`INSERT INTO ${this.t('entries')} (path, sealed) VALUES ($1, $2) ON CONFLICT (path) DO UPDATE SET sealed = excluded.sealed`, [path, sealed]));
  }

  async deleteEntry(path: string): Promise<void> {
    await this.write((db) => db.query(`DELETE FROM ${this.t('entries')} WHERE path = $1`, [path]));
  }

  async listEntries(prefix: string): Promise<string[]> {
    const rows = await this.read<{ path: string }>(`SELECT path FROM ${this.t('entries')} WHERE path >= $1 AND path < $2 ORDER BY path`, [prefix, rangeEnd(prefix)]);
    return rows.map((r) => r.path);
  }

  async insertToken(row: TokenRow): Promise<void> {
    await this.write((db) =>
      db.query(`INSERT INTO ${this.t('tokens')} (id_hash, accessor_hash, parent_hash, expires_at, uses_left, sealed, auth_mount) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
        row.idHash,
        row.accessorHash,
        row.parentHash,
        row.expiresAt,
        row.usesLeft,
        row.sealed,
        row.authMount ?? null,
      ]),
    );
  }

  async getToken(idHash: string): Promise<TokenRow | undefined> {
    const r = (await this.readPrepared<TokenRecord>('get_token', `SELECT * FROM ${this.t('tokens')} WHERE id_hash = $1`, [idHash]))[0];
    return r && toToken(r);
  }

  async getTokenByAccessor(accessorHash: string): Promise<TokenRow | undefined> {
    const r = (await this.read<TokenRecord>(`SELECT * FROM ${this.t('tokens')} WHERE accessor_hash = $1`, [accessorHash]))[0];
    return r && toToken(r);
  }

  async updateToken(idHash: string, changes: Partial<Pick<TokenRow, 'expiresAt' | 'usesLeft' | 'sealed'>>): Promise<void> {
    const cols: string[] = [];
    const vals: unknown[] = [];
    const set = (col: string, v: unknown) => (vals.push(v), cols.push(`${col} = $${vals.length}`));
    if ('expiresAt' in changes) set('expires_at', changes.expiresAt);
    if ('usesLeft' in changes) set('uses_left', changes.usesLeft);
    if ('sealed' in changes) set('sealed', changes.sealed);
    if (cols.length === 0) return;
    vals.push(idHash);
    await this.write((db) => db.query(`UPDATE ${this.t('tokens')} SET ${cols.join(', ')} WHERE id_hash = $${vals.length}`, vals));
  }

  async useToken(idHash: string): Promise<{ ok: boolean; left: number | null }> {
    const rows = await this.write(
      async (db) =>
        (await db.query<{ uses_left: number | null }>(
          `UPDATE ${this.t('tokens')} SET uses_left = uses_left - 1 WHERE id_hash = $1 AND (uses_left IS NULL OR uses_left > 0) RETURNING uses_left`,
          [idHash],
        )).rows,
    );
    return rows[0] ? { ok: true, left: rows[0].uses_left } : { ok: false, left: null };
  }

  async childTokens(parentHash: string): Promise<string[]> {
    return (await this.read<{ id_hash: string }>(`SELECT id_hash FROM ${this.t('tokens')} WHERE parent_hash = $1`, [parentHash])).map((r) => r.id_hash);
  }

  async deleteToken(idHash: string): Promise<void> {
    await this.write((db) => db.query(`DELETE FROM ${this.t('tokens')} WHERE id_hash = $1`, [idHash]));
  }

  async expiredTokens(now: number, limit: number): Promise<string[]> {
    const rows = await this.read<{ id_hash: string }>(
      `SELECT id_hash FROM ${this.t('tokens')} WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2`,
      [now, limit],
    );
    return rows.map((r) => r.id_hash);
  }

  async orphanChildren(parentHash: string): Promise<number> {
    return this.write(async (db) => (await db.query(`UPDATE ${this.t('tokens')} SET parent_hash = NULL WHERE parent_hash = $1`, [parentHash])).rowCount ?? 0);
  }

  async tokensOfAuthMount(authMount: string, limit: number): Promise<string[]> {
    const rows = await this.read<{ id_hash: string }>(`SELECT id_hash FROM ${this.t('tokens')} WHERE auth_mount = $1 LIMIT $2`, [authMount, limit]);
    return rows.map((r) => r.id_hash);
  }

  async listTokenHashes(limit: number, after?: string): Promise<string[]> {
    const rows =
      after === undefined
        ? await this.read<{ id_hash: string }>(`SELECT id_hash FROM ${this.t('tokens')} ORDER BY id_hash LIMIT $1`, [limit])
        : await this.read<{ id_hash: string }>(`SELECT id_hash FROM ${this.t('tokens')} WHERE id_hash > $1 ORDER BY id_hash LIMIT $2`, [after, limit]);
    return rows.map((r) => r.id_hash);
  }

  async insertSecretId(row: SecretIdRow): Promise<void> {
    await this.write((db) =>
      db.query(`INSERT INTO ${this.t('secret_ids')} (id_hash, accessor_hash, mount, role, expires_at, uses_left, sealed) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
        row.idHash,
        row.accessorHash,
        row.mount,
        row.role,
        row.expiresAt,
        row.usesLeft,
        row.sealed,
      ]),
    );
  }

  async getSecretId(idHash: string): Promise<SecretIdRow | undefined> {
    const r = (await this.read<SecretIdRecord>(`SELECT * FROM ${this.t('secret_ids')} WHERE id_hash = $1`, [idHash]))[0];
    return r && toSecretId(r);
  }

  async getSecretIdByAccessor(accessorHash: string): Promise<SecretIdRow | undefined> {
    const r = (await this.read<SecretIdRecord>(`SELECT * FROM ${this.t('secret_ids')} WHERE accessor_hash = $1`, [accessorHash]))[0];
    return r && toSecretId(r);
  }

  async useSecretId(idHash: string, now: number): Promise<{ ok: boolean; left: number | null }> {
    // One conditional UPDATE: concurrent logins serialise on the row, so uses are never overspent.
    const rows = await this.write(
      async (db) =>
        (await db.query<{ uses_left: number | null }>(
          `UPDATE ${this.t('secret_ids')} SET uses_left = uses_left - 1 WHERE id_hash = $1 AND (uses_left IS NULL OR uses_left > 0) AND (expires_at IS NULL OR expires_at > $2) RETURNING uses_left`,
          [idHash, now],
        )).rows,
    );
    return rows[0] ? { ok: true, left: rows[0].uses_left } : { ok: false, left: null };
  }

  async deleteSecretId(idHash: string): Promise<void> {
    await this.write((db) => db.query(`DELETE FROM ${this.t('secret_ids')} WHERE id_hash = $1`, [idHash]));
  }

  async listSecretIds(mount: string, role?: string): Promise<SecretIdRow[]> {
    const rows =
      role === undefined
        ? await this.read<SecretIdRecord>(`SELECT * FROM ${this.t('secret_ids')} WHERE mount = $1`, [mount])
        : await this.read<SecretIdRecord>(`SELECT * FROM ${this.t('secret_ids')} WHERE mount = $1 AND role = $2`, [mount, role]);
    return rows.map(toSecretId);
  }

  async deleteSecretIds(mount: string, role?: string): Promise<number> {
    return this.write(async (db) =>
      role === undefined
        ? ((await db.query(`DELETE FROM ${this.t('secret_ids')} WHERE mount = $1`, [mount])).rowCount ?? 0)
        : ((await db.query(`DELETE FROM ${this.t('secret_ids')} WHERE mount = $1 AND role = $2`, [mount, role])).rowCount ?? 0),
    );
  }

  async deleteExpiredSecretIds(now: number): Promise<number> {
    return this.write(async (db) => (await db.query(`DELETE FROM ${this.t('secret_ids')} WHERE expires_at IS NOT NULL AND expires_at <= $1`, [now])).rowCount ?? 0);
  }

  async activeLeaseCounts(): Promise<Array<{ mount: string; role: string; count: number }>> {
    return this.read<{ mount: string; role: string; count: number }>(`SELECT mount, role, count(*)::integer AS count FROM ${this.t('leases')} WHERE state = 'active' GROUP BY mount, role`, []);
  }

  async oldestDueAt(now: number): Promise<number | undefined> {
    // min() over the due_at index: one index probe, not a scan.
    const rows = await this.read<{ due: number | null }>(`SELECT min(due_at) AS due FROM ${this.t('leases')} WHERE due_at <= $1`, [now]);
    return rows[0]?.due ?? undefined;
  }

  async insertLease(row: LeaseRow): Promise<void> {
    await this.write((db) =>
      db.query(
        `INSERT INTO ${this.t('leases')} (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, last_renewal, due_at, attempts, last_error, token_hash, sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
        [row.id, row.mount, row.role, row.connection, row.state, row.issueTime, row.expireTime, row.maxExpireTime, row.lastRenewal, row.dueAt, row.attempts, row.lastError, row.tokenHash, row.sealed],
      ),
    );
  }

  async insertLeaseWriteAhead(row: LeaseRow): Promise<{ durable: Promise<void> }> {
    // A PostgreSQL commit returns once its WAL is flushed (synchronous_commit on).
    await this.insertLease(row);
    return { durable: Promise.resolve() };
  }

  async getLease(id: string): Promise<LeaseRow | undefined> {
    const r = (await this.readPrepared<LeaseRecord>('get_lease', `SELECT * FROM ${this.t('leases')} WHERE id = $1`, [id]))[0];
    return r && toLease(r);
  }

  async getLeaseStatus(id: string): Promise<LeaseStatus | undefined> {
    type StatusRecord = Pick<LeaseRecord, 'state' | 'issue_time' | 'expire_time' | 'max_expire_time' | 'last_renewal' | 'due_at' | 'attempts' | 'last_error'>;
    const r = (
      await this.readPrepared<StatusRecord>(
        'get_lease_status',
        `SELECT state, issue_time, expire_time, max_expire_time, last_renewal, due_at, attempts, last_error FROM ${this.t('leases')} WHERE id = $1`,
        [id],
      )
    )[0];
    return (
      r && { id, state: r.state, issueTime: r.issue_time, expireTime: r.expire_time, maxExpireTime: r.max_expire_time, lastRenewal: r.last_renewal, dueAt: r.due_at, attempts: r.attempts, lastError: r.last_error }
    );
  }

  async updateLease(id: string, changes: Partial<Omit<LeaseRow, 'id'>>): Promise<void> {
    const keys = Object.keys(changes) as Array<keyof typeof LEASE_COLUMNS>;
    if (keys.length === 0) return;
    const sets = keys.map((k, i) => `${LEASE_COLUMNS[k]} = $${i + 1}`).join(', ');
    const values = [...keys.map((k) => changes[k] ?? null), id];
    await this.write((db) => db.query(`UPDATE ${this.t('leases')} SET ${sets} WHERE id = $${values.length}`, values));
  }

  async deleteLease(id: string): Promise<void> {
    await this.write((db) => db.query(`DELETE FROM ${this.t('leases')} WHERE id = $1`, [id]));
  }

  /** The claim query: due leases through the due_at index, rows other claimers hold are skipped (SKIP LOCKED). */
  claimSql(skipCount: number): string {
    const skipSql = Array.from({ length: skipCount }, (_, i) => ` AND NOT (mount = $${4 + 2 * i} AND connection = $${5 + 2 * i})`).join('');
    return `WITH due AS (
        SELECT id, due_at FROM ${this.t('leases')} WHERE due_at <= $1${skipSql} ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED
      )
      UPDATE ${this.t('leases')} l SET due_at = $2, state = CASE l.state WHEN 'active' THEN 'revoking' ELSE l.state END
      FROM due WHERE l.id = due.id
      RETURNING l.*, due.due_at AS claimed_due_at`;
  }

  async claimDueLeases(now: number, claimUntil: number, limit: number, skip: ConnectionKey[] = []): Promise<LeaseRow[]> {
    const rows = await this.write(
      async (db) =>
        (await db.query<LeaseRecord & { claimed_due_at: number }>(this.claimSql(skip.length), [now, claimUntil, limit, ...skip.flatMap((k) => [k.mount, k.connection])]))
          .rows,
    );
    // Like the SQLite store: the rows as claimed (their due time before the claim), in due order.
    return rows
      .map((r) => toLease({ ...r, due_at: r.claimed_due_at }))
      .sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async nextDueAt(): Promise<number | null> {
    const [r] = await this.read<{ due: string | number | null }>(`SELECT min(due_at) AS due FROM ${this.t('leases')}`);
    return r?.due === null || r?.due === undefined ? null : Number(r.due);
  }

  async listLeaseIds(prefix: string, limit: number, after?: string): Promise<string[]> {
    const from = after !== undefined && after >= prefix ? after : null;
    const rows =
      from === null
        ? await this.read<{ id: string }>(`SELECT id FROM ${this.t('leases')} WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3`, [prefix, rangeEnd(prefix), limit])
        : await this.read<{ id: string }>(`SELECT id FROM ${this.t('leases')} WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3`, [from, rangeEnd(prefix), limit]);
    return rows.map((r) => r.id);
  }

  async countLeases(filter: { prefix?: string; mount?: string; connection?: string; role?: string; minAttempts?: number }): Promise<number> {
    const where: string[] = [];
    const vals: unknown[] = [];
    const add = (sql: (n: number) => string, ...v: unknown[]) => {
      where.push(sql(vals.length + 1));
      vals.push(...v);
    };
    if (filter.prefix !== undefined) add((n) => `id >= $${n} AND id < $${n + 1}`, filter.prefix, rangeEnd(filter.prefix));
    if (filter.mount !== undefined) add((n) => `mount = $${n}`, filter.mount);
    if (filter.connection !== undefined) add((n) => `connection = $${n}`, filter.connection);
    if (filter.role !== undefined) add((n) => `role = $${n}`, filter.role);
    if (filter.minAttempts !== undefined) add((n) => `attempts >= $${n}`, filter.minAttempts);
    const rows = await this.read<{ n: number }>(`SELECT count(*)::int AS n FROM ${this.t('leases')}${where.length ? ' WHERE ' + where.join(' AND ') : ''}`, vals);
    return rows[0]!.n;
  }

  async listFailingLeases(minAttempts: number, limit: number): Promise<LeaseRow[]> {
    return (await this.read<LeaseRecord>(`SELECT * FROM ${this.t('leases')} WHERE attempts >= $1 ORDER BY id LIMIT $2`, [minAttempts, limit])).map(toLease);
  }

  async expediteLeases(filter: { prefix?: string; tokenHash?: string; mount?: string }, now: number): Promise<number> {
    const where: string[] = ['due_at > $1'];
    const vals: unknown[] = [now];
    if (filter.prefix !== undefined) (vals.push(filter.prefix, rangeEnd(filter.prefix)), where.push(`id >= $${vals.length - 1} AND id < $${vals.length}`));
    if (filter.tokenHash !== undefined) (vals.push(filter.tokenHash), where.push(`token_hash = $${vals.length}`));
    if (filter.mount !== undefined) (vals.push(filter.mount), where.push(`mount = $${vals.length}`));
    const res = await this.write((db) => db.query(`UPDATE ${this.t('leases')} SET due_at = $1, expire_time = LEAST(expire_time, $1) WHERE ${where.join(' AND ')}`, vals));
    return res.rowCount ?? 0;
  }

  async recoverInterrupted(now: number): Promise<number> {
    const res = await this.write((db) => db.query(`UPDATE ${this.t('leases')} SET due_at = $1 WHERE state IN ('pending', 'revoking') AND due_at > $1`, [now]));
    return res.rowCount ?? 0;
  }

  async deleteLeases(prefix: string): Promise<number> {
    const res = await this.write((db) => db.query(`DELETE FROM ${this.t('leases')} WHERE id >= $1 AND id < $2`, [prefix, rangeEnd(prefix)]));
    return res.rowCount ?? 0;
  }

  async isEmpty(): Promise<boolean> {
    for (const { table } of STORE_TABLES) {
      if ((await this.read(`SELECT 1 FROM ${this.t(table)} LIMIT 1`)).length > 0) return false;
    }
    return true;
  }

  async readRows(table: StoreTable, after: string | undefined, limit: number): Promise<RawRow[]> {
    const key = STORE_TABLES.find((t) => t.table === table)!.key;
    return after === undefined
      ? this.read<RawRow>(`SELECT * FROM ${this.t(table)} ORDER BY ${key} LIMIT $1`, [limit])
      : this.read<RawRow>(`SELECT * FROM ${this.t(table)} WHERE ${key} > $1 ORDER BY ${key} LIMIT $2`, [after, limit]);
  }

  async writeRows(table: StoreTable, rows: RawRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.write(
      async (db) => {
        for (const row of rows) {
          const cols = Object.keys(row);
          await db.query(`INSERT INTO ${this.t(table)} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, cols.map((c) => row[c]));
        }
      },
      { transaction: true },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    if (this.lockClient) {
      // Unlocked now, not once the server notices the session ended (pool.end() does not wait
      // for that): a broker started right after on this store must not find it still held.
      await this.lockClient.query('SELECT pg_catalog.pg_advisory_unlock_all()').catch(() => undefined);
      this.lockClient.release(true);
    }
    await this.pool.end();
  }
}
