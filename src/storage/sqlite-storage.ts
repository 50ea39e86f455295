// Default storage backend: one SQLite file (better-sqlite3, WAL). A write's
// promise settles only once its commit is on disk (so that a write-ahead lease
// row is durable before the database user exists): the commit itself runs
// without an fsync (synchronous=NORMAL) and the WAL file is then fsynced off
// the event loop, one fsync for every write committed meanwhile (group commit).
// SQLite's synchronous=FULL does exactly that fsync of the WAL at each commit
// (sqlite.org/pragma.html#pragma_synchronous), only on the event loop.

import Database from 'better-sqlite3';
import { closeSync, fsync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { migrations } from './migrations.ts';
import { lockStore } from './process-lock.ts';
import type { ConnectionKey, LeaseRow, LeaseState, LeaseStatus, SecretIdRow, Storage, TokenRow } from './storage.ts';
import { LEASE_COLUMNS, toLease, toSecretId, toToken, type LeaseRecord, type SecretIdRecord, type TokenRecord } from './records.ts';
import { STORE_TABLES, type CopyableStore, type RawRow, type StoreTable } from './store-copy.ts';

// Upper bound for a prefix range scan: ids are ASCII, so every id starting
// with `prefix` sorts below prefix + U+FFFF.
const rangeEnd = (prefix: string): string => prefix + '\uffff';

const INSERT_LEASE = `INSERT INTO leases (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, last_renewal, due_at, attempts, last_error, token_hash, sealed)
  VALUES (@id, @mount, @role, @connection, @state, @issueTime, @expireTime, @maxExpireTime, @lastRenewal, @dueAt, @attempts, @lastError, @tokenHash, @sealed)`;

interface GroupedWrite {
  run: () => unknown;
  /** Called once the write is committed, with the promise of that commit's fsync. */
  ok: (durable: Promise<void>) => void;
  fail: (err: unknown) => void;
}

/** A getLeaseStatus row as an array (state, issue_time, expire_time, max_expire_time, last_renewal, due_at, attempts, last_error). */
type LeaseStatusTuple = [LeaseState, number, number, number, number | null, number, number, string | null];

interface SyncWaiter {
  ok: () => void;
  fail: (err: unknown) => void;
}

export class SqliteStorage implements Storage, CopyableStore {
  private readonly db: Database.Database;
  private readonly unlock: () => void = () => undefined;
  private readonly statements = new Map<string, Database.Statement>();
  /**
   * getLeaseStatus's query, in raw mode: each row is an array, so better-sqlite3
   * does not build an object keyed by column names (a V8 string lookup and a
   * property store per column, most of the cost of a point read).
   */
  private leaseStatusStmt: Database.Statement<[string], LeaseStatusTuple> | undefined;
  private pending: GroupedWrite[] = [];
  private flushScheduled = false;
  /** The WAL file, fsynced after commits (undefined for ':memory:'). */
  private readonly walFd: number | undefined;
  /** Writes committed since the fsync in flight started: they wait for the next one. */
  private syncWaiters: SyncWaiter[] = [];
  /** The fsync in flight (settles when it is done), if any. */
  private syncing: Promise<void> | undefined;
  /** An fsync failed: what was written since may be lost, so every later write fails too. */
  private syncError: unknown;
  private closed = false;

  constructor(path: string) {
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      this.unlock = lockStore(path);
    }
    try {
      this.db = new Database(path);
    } catch (err) {
      this.unlock();
      throw err;
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    if (path !== ':memory:') {
      // The WAL exists now (the migrations check ran in a transaction); it
      // stays the same file while this connection is open.
      this.walFd = openSync(`${path}-wal`, 'r');
      this.db.pragma('synchronous = NORMAL');
    }
  }

  /**
   * Settles once everything committed so far is on disk: waits for the next
   * fsync of the WAL (one in flight may have started before the caller's
   * commit). Rejects when an fsync fails.
   */
  private durable(): Promise<void> {
    if (this.walFd === undefined) return Promise.resolve();
    if (this.syncError !== undefined) return Promise.reject(this.syncError);
    return new Promise((ok, fail) => {
      this.syncWaiters.push({ ok, fail });
      if (!this.syncing) this.syncing = this.syncNext();
    });
  }

  private syncNext(): Promise<void> {
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    return new Promise<void>((done) => {
      fsync(this.walFd!, (err) => {
        if (err) this.syncError ??= err;
        for (const w of waiters) {
          if (this.syncError !== undefined) w.fail(this.syncError);
          else w.ok();
        }
        this.syncing = this.syncWaiters.length > 0 ? this.syncNext() : undefined;
        done();
      });
    });
  }

  /** Run one write (a statement or a transaction) now; resolves with its result once it is on disk. */
  private async write<T>(run: () => T): Promise<T> {
    if (this.closed) throw new Error('the store is closed');
    if (this.syncError !== undefined) throw this.syncError;
    const result = run();
    await this.durable();
    return result;
  }

  /** A prepared statement, prepared once per connection (keyed by its text; dynamic texts come from a small set of column lists). */
  private sql(text: string): Database.Statement {
    let stmt = this.statements.get(text);
    if (!stmt) this.statements.set(text, (stmt = this.db.prepare(text)));
    return stmt;
  }

  /**
   * Group commit for the hot lease writes. Writes that arrive in the same
   * turn of the event loop share one transaction, and that transaction shares
   * its fsync with every other commit made while one is in flight. A write's
   * promise settles only once its commit is on disk, so a write-ahead
   * row is durable before its caller goes on. Each write runs in its own
   * savepoint (a nested better-sqlite3 transaction): one failing write does
   * not undo the others.
   */
  private grouped(run: () => unknown): Promise<void> {
    return new Promise((ok, fail) => this.enqueue({ run, ok: (durable) => durable.then(ok, fail), fail }));
  }

  /** grouped(), settling once the write is committed, with its fsync still to come (insertLeaseWriteAhead). */
  private groupedCommitted(run: () => unknown): Promise<{ durable: Promise<void> }> {
    return new Promise((ok, fail) => this.enqueue({ run, ok: (durable) => ok({ durable }), fail }));
  }

  private enqueue(write: GroupedWrite): void {
    if (this.closed) return write.fail(new Error('the store is closed'));
    this.pending.push(write);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const failures = new Map<GroupedWrite, unknown>();
    try {
      this.db.transaction(() => {
        for (const write of batch) {
          try {
            this.db.transaction(write.run)();
          } catch (err) {
            failures.set(write, err);
          }
        }
      })();
    } catch (err) {
      for (const write of batch) write.fail(err);
      return;
    }
    for (const [write, err] of failures) write.fail(err);
    if (failures.size === batch.length) return;
    const durable = this.durable();
    // Handled here: a caller of groupedCommitted may drop its copy (its work failed first).
    durable.catch(() => undefined);
    for (const write of batch) if (!failures.has(write)) write.ok(durable);
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = current; v < migrations.length; v++) {
      this.db.transaction(() => {
        this.db.exec(migrations[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  async getMeta(key: string): Promise<Buffer | undefined> {
    const row = this.sql('SELECT value FROM meta WHERE key = ?').get(key) as { value: Buffer } | undefined;
    return row?.value;
  }

  async putMeta(key: string, value: Buffer): Promise<void> {
    await this.write(() => this.sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value));
  }

  async getEntry(path: string): Promise<Buffer | undefined> {
    const row = this.sql('SELECT sealed FROM entries WHERE path = ?').get(path) as { sealed: Buffer } | undefined;
    return row?.sealed;
  }

  async putEntry(path: string, sealed: Buffer): Promise<void> {
    await this.write(() => this.sql('INSERT INTO entries (path, sealed) VALUES (?, ?) ON CONFLICT(path) DO UPDATE SET sealed = excluded.sealed').run(path, sealed));
  }

  async deleteEntry(path: string): Promise<void> {
    await this.write(() => this.sql('DELETE FROM entries WHERE path = ?').run(path));
  }

  async listEntries(prefix: string): Promise<string[]> {
    const rows = this.sql('SELECT path FROM entries WHERE path >= ? AND path < ? ORDER BY path').all(prefix, rangeEnd(prefix)) as Array<{ path: string }>;
    return rows.map((r) => r.path);
  }

  async insertToken(row: TokenRow): Promise<void> {
    await this.write(() =>
      this.sql('INSERT INTO tokens (id_hash, accessor_hash, parent_hash, expires_at, uses_left, sealed, auth_mount) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        row.idHash,
        row.accessorHash,
        row.parentHash,
        row.expiresAt,
        row.usesLeft,
        row.sealed,
        row.authMount ?? null,
      ),
    );
  }

  async getToken(idHash: string): Promise<TokenRow | undefined> {
    const r = this.sql('SELECT * FROM tokens WHERE id_hash = ?').get(idHash) as TokenRecord | undefined;
    return r && toToken(r);
  }

  async getTokenByAccessor(accessorHash: string): Promise<TokenRow | undefined> {
    const r = this.sql('SELECT * FROM tokens WHERE accessor_hash = ?').get(accessorHash) as TokenRecord | undefined;
    return r && toToken(r);
  }

  async updateToken(idHash: string, changes: Partial<Pick<TokenRow, 'expiresAt' | 'usesLeft' | 'sealed'>>): Promise<void> {
    const cols: string[] = [];
    const vals: unknown[] = [];
    if ('expiresAt' in changes) (cols.push('expires_at = ?'), vals.push(changes.expiresAt));
    if ('usesLeft' in changes) (cols.push('uses_left = ?'), vals.push(changes.usesLeft));
    if ('sealed' in changes) (cols.push('sealed = ?'), vals.push(changes.sealed));
    if (cols.length === 0) return;
    await this.write(() => this.sql(`UPDATE tokens SET ${cols.join(', ')} WHERE id_hash = ?`).run(...vals, idHash));
  }

  async useToken(idHash: string): Promise<{ ok: boolean; left: number | null }> {
    const row = (await this.write(() =>
      this.sql('UPDATE tokens SET uses_left = uses_left - 1 WHERE id_hash = ? AND (uses_left IS NULL OR uses_left > 0) RETURNING uses_left').get(idHash),
    )) as { uses_left: number | null } | undefined;
    return row ? { ok: true, left: row.uses_left } : { ok: false, left: null };
  }

  async childTokens(parentHash: string): Promise<string[]> {
    const rows = this.sql('SELECT id_hash FROM tokens WHERE parent_hash = ?').all(parentHash) as Array<{ id_hash: string }>;
    return rows.map((r) => r.id_hash);
  }

  async orphanChildren(parentHash: string): Promise<number> {
    return (await this.write(() => this.sql('UPDATE tokens SET parent_hash = NULL WHERE parent_hash = ?').run(parentHash))).changes;
  }

  async deleteToken(idHash: string): Promise<void> {
    await this.write(() => this.sql('DELETE FROM tokens WHERE id_hash = ?').run(idHash));
  }

  async expiredTokens(now: number, limit: number): Promise<string[]> {
    const rows = this.sql('SELECT id_hash FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?')
      .all(now, limit) as Array<{ id_hash: string }>;
    return rows.map((r) => r.id_hash);
  }

  async tokensOfAuthMount(authMount: string, limit: number): Promise<string[]> {
    const rows = this.sql('SELECT id_hash FROM tokens WHERE auth_mount = ? LIMIT ?').all(authMount, limit) as Array<{ id_hash: string }>;
    return rows.map((r) => r.id_hash);
  }

  async listTokenHashes(limit: number, after?: string): Promise<string[]> {
    const rows = (
      after === undefined
        ? this.sql('SELECT id_hash FROM tokens ORDER BY id_hash LIMIT ?').all(limit)
        : this.sql('SELECT id_hash FROM tokens WHERE id_hash > ? ORDER BY id_hash LIMIT ?').all(after, limit)
    ) as Array<{ id_hash: string }>;
    return rows.map((r) => r.id_hash);
  }

  async insertSecretId(row: SecretIdRow): Promise<void> {
    await this.write(() =>
      this.sql('INSERT INTO secret_ids (id_hash, accessor_hash, mount, role, expires_at, uses_left, sealed) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        row.idHash,
        row.accessorHash,
        row.mount,
        row.role,
        row.expiresAt,
        row.usesLeft,
        row.sealed,
      ),
    );
  }

  async getSecretId(idHash: string): Promise<SecretIdRow | undefined> {
    const r = this.sql('SELECT * FROM secret_ids WHERE id_hash = ?').get(idHash) as SecretIdRecord | undefined;
    return r && toSecretId(r);
  }

  async getSecretIdByAccessor(accessorHash: string): Promise<SecretIdRow | undefined> {
    const r = this.sql('SELECT * FROM secret_ids WHERE accessor_hash = ?').get(accessorHash) as SecretIdRecord | undefined;
    return r && toSecretId(r);
  }

  async useSecretId(idHash: string, now: number): Promise<{ ok: boolean; left: number | null }> {
    const row = (await this.write(() =>
      this.sql(
        'UPDATE secret_ids SET uses_left = uses_left - 1 WHERE id_hash = ? AND (uses_left IS NULL OR uses_left > 0) AND (expires_at IS NULL OR expires_at > ?) RETURNING uses_left',
      ).get(idHash, now),
    )) as { uses_left: number | null } | undefined;
    return row ? { ok: true, left: row.uses_left } : { ok: false, left: null };
  }

  async deleteSecretId(idHash: string): Promise<void> {
    await this.write(() => this.sql('DELETE FROM secret_ids WHERE id_hash = ?').run(idHash));
  }

  async listSecretIds(mount: string, role?: string): Promise<SecretIdRow[]> {
    const rows = (
      role === undefined
        ? this.sql('SELECT * FROM secret_ids WHERE mount = ?').all(mount)
        : this.sql('SELECT * FROM secret_ids WHERE mount = ? AND role = ?').all(mount, role)
    ) as SecretIdRecord[];
    return rows.map(toSecretId);
  }

  async deleteSecretIds(mount: string, role?: string): Promise<number> {
    return (
      await this.write(() =>
        role === undefined ? this.sql('DELETE FROM secret_ids WHERE mount = ?').run(mount) : this.sql('DELETE FROM secret_ids WHERE mount = ? AND role = ?').run(mount, role),
      )
    ).changes;
  }

  async deleteExpiredSecretIds(now: number): Promise<number> {
    return (await this.write(() => this.sql('DELETE FROM secret_ids WHERE expires_at IS NOT NULL AND expires_at <= ?').run(now))).changes;
  }

  async insertLease(row: LeaseRow): Promise<void> {
    return this.grouped(() => this.sql(INSERT_LEASE).run(row));
  }

  async insertLeaseWriteAhead(row: LeaseRow): Promise<{ durable: Promise<void> }> {
    return this.groupedCommitted(() => this.sql(INSERT_LEASE).run(row));
  }

  async getLease(id: string): Promise<LeaseRow | undefined> {
    const r = this.sql('SELECT * FROM leases WHERE id = ?').get(id) as LeaseRecord | undefined;
    return r && toLease(r);
  }

  async getLeaseStatus(id: string): Promise<LeaseStatus | undefined> {
    this.leaseStatusStmt ??= this.db
      .prepare<[string], LeaseStatusTuple>('SELECT state, issue_time, expire_time, max_expire_time, last_renewal, due_at, attempts, last_error FROM leases WHERE id = ?')
      .raw(true);
    const r = this.leaseStatusStmt.get(id);
    return r && { id, state: r[0], issueTime: r[1], expireTime: r[2], maxExpireTime: r[3], lastRenewal: r[4], dueAt: r[5], attempts: r[6], lastError: r[7] };
  }

  async updateLease(id: string, changes: Partial<Omit<LeaseRow, 'id'>>): Promise<void> {
    const keys = Object.keys(changes) as Array<keyof typeof LEASE_COLUMNS>;
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${LEASE_COLUMNS[k]} = ?`).join(', ');
    const values = keys.map((k) => changes[k] ?? null);
    return this.grouped(() => this.sql(`UPDATE leases SET ${sets} WHERE id = ?`).run(...values, id));
  }

  async deleteLease(id: string): Promise<void> {
    return this.grouped(() => this.sql('DELETE FROM leases WHERE id = ?').run(id));
  }

  private readonly claim = (now: number, claimUntil: number, limit: number, skip: ConnectionKey[]): LeaseRecord[] => {
    const skipSql = skip.map(() => ' AND NOT (mount = ? AND connection = ?)').join('');
    const rows = this.sql(`SELECT * FROM leases WHERE due_at <= ?${skipSql} ORDER BY due_at LIMIT ?`)
      .all(now, ...skip.flatMap((k) => [k.mount, k.connection]), limit) as LeaseRecord[];
    const push = this.sql("UPDATE leases SET due_at = ?, state = CASE state WHEN 'active' THEN 'revoking' ELSE state END WHERE id = ?");
    for (const r of rows) push.run(claimUntil, r.id);
    return rows.map((r) => ({ ...r, state: r.state === 'active' ? 'revoking' : r.state }));
  };

  async claimDueLeases(now: number, claimUntil: number, limit: number, skip: ConnectionKey[] = []): Promise<LeaseRow[]> {
    return (await this.write(() => this.db.transaction(this.claim)(now, claimUntil, limit, skip))).map(toLease);
  }

  async nextDueAt(): Promise<number | null> {
    const r = this.sql('SELECT min(due_at) AS due FROM leases').get() as { due: number | null };
    return r.due;
  }

  async listLeaseIds(prefix: string, limit: number, after?: string): Promise<string[]> {
    const from = after !== undefined && after >= prefix ? after : null;
    const rows = (
      from === null
        ? this.sql('SELECT id FROM leases WHERE id >= ? AND id < ? ORDER BY id LIMIT ?').all(prefix, rangeEnd(prefix), limit)
        : this.sql('SELECT id FROM leases WHERE id > ? AND id < ? ORDER BY id LIMIT ?').all(from, rangeEnd(prefix), limit)
    ) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  async countLeases(filter: { prefix?: string; mount?: string; connection?: string; role?: string; minAttempts?: number }): Promise<number> {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (filter.prefix !== undefined) (where.push('id >= ? AND id < ?'), vals.push(filter.prefix, rangeEnd(filter.prefix)));
    if (filter.mount !== undefined) (where.push('mount = ?'), vals.push(filter.mount));
    if (filter.connection !== undefined) (where.push('connection = ?'), vals.push(filter.connection));
    if (filter.role !== undefined) (where.push('role = ?'), vals.push(filter.role));
    if (filter.minAttempts !== undefined) (where.push('attempts >= ?'), vals.push(filter.minAttempts));
    const sql = `SELECT count(*) AS n FROM leases${where.length ? ' WHERE ' + where.join(' AND ') : ''}`;
    return (this.sql(sql).get(...vals) as { n: number }).n;
  }

  async listFailingLeases(minAttempts: number, limit: number): Promise<LeaseRow[]> {
    const rows = this.sql('SELECT * FROM leases WHERE attempts >= ? ORDER BY id LIMIT ?').all(minAttempts, limit) as LeaseRecord[];
    return rows.map(toLease);
  }

  async expediteLeases(filter: { prefix?: string; tokenHash?: string; mount?: string }, now: number): Promise<number> {
    const where: string[] = ['due_at > ?'];
    const vals: unknown[] = [now];
    if (filter.prefix !== undefined) (where.push('id >= ? AND id < ?'), vals.push(filter.prefix, rangeEnd(filter.prefix)));
    if (filter.tokenHash !== undefined) (where.push('token_hash = ?'), vals.push(filter.tokenHash));
    if (filter.mount !== undefined) (where.push('mount = ?'), vals.push(filter.mount));
    const info = await this.write(() => this.sql(`UPDATE leases SET due_at = ?, expire_time = min(expire_time, ?) WHERE ${where.join(' AND ')}`).run(now, now, ...vals));
    return info.changes;
  }

  async recoverInterrupted(now: number): Promise<number> {
    return (await this.write(() => this.sql("UPDATE leases SET due_at = ? WHERE state IN ('pending', 'revoking') AND due_at > ?").run(now, now))).changes;
  }

  async deleteLeases(prefix: string): Promise<number> {
    return (await this.write(() => this.sql('DELETE FROM leases WHERE id >= ? AND id < ?').run(prefix, rangeEnd(prefix)))).changes;
  }

  async isEmpty(): Promise<boolean> {
    return STORE_TABLES.every(({ table }) => this.sql(`SELECT 1 FROM ${table} LIMIT 1`).get() === undefined);
  }

  async readRows(table: StoreTable, after: string | undefined, limit: number): Promise<RawRow[]> {
    const key = STORE_TABLES.find((t) => t.table === table)!.key;
    return (
      after === undefined
        ? this.sql(`SELECT * FROM ${table} ORDER BY ${key} LIMIT ?`).all(limit)
        : this.sql(`SELECT * FROM ${table} WHERE ${key} > ? ORDER BY ${key} LIMIT ?`).all(after, limit)
    ) as RawRow[];
  }

  async writeRows(table: StoreTable, rows: RawRow[]): Promise<void> {
    await this.write(() =>
      this.db.transaction(() => {
        for (const row of rows) {
          const cols = Object.keys(row);
          this.sql(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`).run(...cols.map((c) => row[c]));
        }
      })(),
    );
  }

  async activeLeaseCounts(): Promise<Array<{ mount: string; role: string; count: number }>> {
    return this.sql("SELECT mount, role, count(*) AS count FROM leases WHERE state = 'active' GROUP BY mount, role").all() as Array<{
      mount: string;
      role: string;
      count: number;
    }>;
  }

  async oldestDueAt(now: number): Promise<number | undefined> {
    const row = this.sql('SELECT min(due_at) AS due FROM leases WHERE due_at <= ?').get(now) as { due: number | null };
    return row.due ?? undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.db.open) this.flush();
    // Every write made so far settles (on disk) before the WAL is let go.
    await this.durable().catch(() => undefined);
    while (this.syncing) await this.syncing;
    if (this.db.open) this.db.close();
    if (this.walFd !== undefined) closeSync(this.walFd);
    this.unlock();
  }
}
