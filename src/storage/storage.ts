// The storage interface. Callers see only this; the SQLite backend
// (sqlite-storage.ts) is the default, and a PostgreSQL backend for several
// broker replicas can implement the same interface later.
//
// Storage never sees plaintext secrets: values marked "sealed" are barrier
// ciphertext produced by the caller. Only what scheduling and lookups need is
// kept in plaintext columns.

export interface TokenRow {
  idHash: string;
  accessorHash: string;
  parentHash: string | null;
  /** Epoch ms, null = never expires. */
  expiresAt: number | null;
  /** Remaining uses, null = unlimited. */
  usesLeft: number | null;
  /** Sealed token details (policies, meta, accessor, ...). */
  sealed: Buffer;
  /** The auth mount path ("approle/") the token was issued through by a login; null/absent otherwise. */
  authMount?: string | null;
}

/** An AppRole secret ID: keyed hashes, the use count and expiry in the clear, the rest sealed. */
export interface SecretIdRow {
  idHash: string;
  accessorHash: string;
  /** The auth mount's uuid. */
  mount: string;
  role: string;
  /** Epoch ms, null = never expires. */
  expiresAt: number | null;
  /** Remaining uses, null = unlimited. */
  usesLeft: number | null;
  sealed: Buffer;
}

export type LeaseState = 'pending' | 'active' | 'revoking';

export interface LeaseRow {
  id: string;
  mount: string;
  role: string;
  connection: string;
  state: LeaseState;
  issueTime: number;
  expireTime: number;
  maxExpireTime: number;
  lastRenewal: number | null;
  /** When the revocation loop must next look at this lease (epoch ms). */
  dueAt: number;
  attempts: number;
  lastError: string | null;
  tokenHash: string | null;
  /** Sealed revocation context (username, revocation statements). */
  sealed: Buffer;
}

/**
 * What sys/leases/lookup shows of a lease: its row without the sealed
 * revocation context and the columns only revocation needs (mount, role,
 * connection, token), so a lookup reads and decrypts nothing secret.
 */
export type LeaseStatus = Pick<LeaseRow, 'id' | 'state' | 'issueTime' | 'expireTime' | 'maxExpireTime' | 'lastRenewal' | 'dueAt' | 'attempts' | 'lastError'>;

/** A database connection of a mount. */
export interface ConnectionKey {
  mount: string;
  connection: string;
}

export interface LeaseCounts {
  total: number;
  irrevocable: number;
}

export interface Storage {
  /** Small unencrypted metadata: seal configuration and the sealed keyring. */
  getMeta(key: string): Promise<Buffer | undefined>;
  putMeta(key: string, value: Buffer): Promise<void>;

  /** Sealed configuration entries (mounts, connections, roles, policies) by path. */
  getEntry(path: string): Promise<Buffer | undefined>;
  putEntry(path: string, sealed: Buffer): Promise<void>;
  deleteEntry(path: string): Promise<void>;
  /** Every path that starts with `prefix`, sorted. */
  listEntries(prefix: string): Promise<string[]>;

  insertToken(row: TokenRow): Promise<void>;
  getToken(idHash: string): Promise<TokenRow | undefined>;
  getTokenByAccessor(accessorHash: string): Promise<TokenRow | undefined>;
  updateToken(idHash: string, changes: Partial<Pick<TokenRow, 'expiresAt' | 'usesLeft' | 'sealed'>>): Promise<void>;
  /**
   * Atomically take one use. `ok` is false when the token has none left;
   * `left` is what remains after this use (null = unlimited).
   */
  useToken(idHash: string): Promise<{ ok: boolean; left: number | null }>;
  childTokens(parentHash: string): Promise<string[]>;
  /** Make the children of `parentHash` orphans (revoke-orphan). Returns how many. */
  orphanChildren(parentHash: string): Promise<number>;
  deleteToken(idHash: string): Promise<void>;
  /** Tokens expired by `now`, oldest first, at most `limit`. */
  expiredTokens(now: number, limit: number): Promise<string[]>;

  /** Hashes of tokens issued through the auth mount `authMount`, at most `limit`. */
  tokensOfAuthMount(authMount: string, limit: number): Promise<string[]>;
  /** Token hashes after `after` (sorted), at most `limit` (LIST auth/token/accessors). */
  listTokenHashes(limit: number, after?: string): Promise<string[]>;

  insertSecretId(row: SecretIdRow): Promise<void>;
  getSecretId(idHash: string): Promise<SecretIdRow | undefined>;
  getSecretIdByAccessor(accessorHash: string): Promise<SecretIdRow | undefined>;
  /**
   * Atomically take one use of an unexpired secret ID (a conditional UPDATE):
   * `ok` is false when it has none left or expired by `now`; `left` is what
   * remains after this use (null = unlimited).
   */
  useSecretId(idHash: string, now: number): Promise<{ ok: boolean; left: number | null }>;
  deleteSecretId(idHash: string): Promise<void>;
  /** Secret IDs of one role (or of every role with `role` undefined) of a mount. */
  listSecretIds(mount: string, role?: string): Promise<SecretIdRow[]>;
  /** Forget every secret ID of a mount (disable) or of one role (role deleted). */
  deleteSecretIds(mount: string, role?: string): Promise<number>;
  /** Forget secret IDs expired by `now`. Returns how many. */
  deleteExpiredSecretIds(now: number): Promise<number>;

  insertLease(row: LeaseRow): Promise<void>;
  /**
   * insertLease for a write-ahead row, in two steps: resolves once the row is
   * committed (readable, and kept if this process dies), with `durable`,
   * which settles once the commit would also survive the machine losing
   * power (rejects when the store cannot make it so). A caller may start
   * work that stays invisible until `durable` settles (a database
   * transaction it commits only then) and so overlap the two. Stores whose
   * commit is already durable (PostgreSQL) resolve `durable` at once.
   */
  insertLeaseWriteAhead(row: LeaseRow): Promise<{ durable: Promise<void> }>;
  getLease(id: string): Promise<LeaseRow | undefined>;
  /**
   * The status columns of one lease (see LeaseStatus), pending ones included
   * (the caller hides them), or undefined: the read behind sys/leases/lookup,
   * narrower and cheaper than getLease.
   */
  getLeaseStatus(id: string): Promise<LeaseStatus | undefined>;
  updateLease(id: string, changes: Partial<Omit<LeaseRow, 'id'>>): Promise<void>;
  deleteLease(id: string): Promise<void>;
  /**
   * Claim up to `limit` leases due by `now` (through the due_at index) by
   * pushing their due time to `claimUntil`, so a claim survives a crash: an
   * unfinished lease becomes due again then. Active leases become 'revoking'.
   * Leases of the connections in `skip` are left alone (their queue is full).
   */
  claimDueLeases(now: number, claimUntil: number, limit: number, skip?: ConnectionKey[]): Promise<LeaseRow[]>;
  /** The earliest due_at of any lease (ms since the epoch; the due_at index's first entry), or null when there is none. */
  nextDueAt(): Promise<number | null>;
  /** Lease ids starting with `prefix`, sorted, paged. */
  listLeaseIds(prefix: string, limit: number, after?: string): Promise<string[]>;
  countLeases(filter: { prefix?: string; mount?: string; connection?: string; role?: string; minAttempts?: number }): Promise<number>;
  /** Irrevocable leases (attempts >= minAttempts), paged. */
  listFailingLeases(minAttempts: number, limit: number): Promise<LeaseRow[]>;
  /** Make every lease matching the filter due now (revoke-prefix, token revocation). Returns how many. */
  expediteLeases(filter: { prefix?: string; tokenHash?: string; mount?: string }, now: number): Promise<number>;
  /**
   * After a restart: leases left pending (issuance interrupted) or revoking
   * (revocation interrupted) by a previous process become due now.
   */
  recoverInterrupted(now: number): Promise<number>;
  /** Forget leases without revoking them (revoke-force). Returns how many. */
  deleteLeases(prefix: string): Promise<number>;

  /**
   * Metrics (read at scrape time). Leases in state 'active' counted per mount
   * and role with one COUNT ... GROUP BY (memory per group, never per lease).
   */
  activeLeaseCounts(): Promise<Array<{ mount: string; role: string; count: number }>>;
  /** The smallest due_at (epoch ms) at or before `now`, through the due index; undefined if nothing is due. */
  oldestDueAt(now: number): Promise<number | undefined>;

  close(): Promise<void>;
}
