// Tokens: 256 random bits, handed out once. Only an HMAC of the token (and of
// its accessor) is stored; details are sealed by the barrier. Looking a token
// up goes through the HMAC index, then the stored hash is compared in
// constant time.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { errors } from '../errors.ts';
import type { Barrier } from '../seal/barrier.ts';
import type { Storage, TokenRow } from '../storage/storage.ts';

export const DEFAULT_TOKEN_TTL = 768 * 3600; // Vault's default max lease TTL, 32 days
const TOKEN_PREFIX = 'hvs.'; // what Vault clients expect a service token to look like

export interface TokenDetails {
  accessor: string;
  policies: string[];
  displayName: string;
  meta: Record<string, string>;
  creationTime: number;
  /** Seconds; 0 = no expiry (root tokens). */
  ttl: number;
  explicitMaxTtl: number;
  renewable: boolean;
  numUses: number;
  /** Seconds; a periodic token renews to this with no maximum (0 = not periodic). Absent in older records. */
  period?: number;
  path: string;
  entityId: string;
  /** CIDR blocks the token may be used from (token_bound_cidrs); absent or empty = anywhere. */
  boundCidrs?: string[];
  /**
   * Seconds from creation: this token's own ceiling for renewals (a login's
   * token_max_ttl, capped by the mount and the system); 0/absent = the system max.
   */
  maxTtl?: number;
  /** The token role it was created against (auth/token/create/:role), if any. */
  role?: string;
}

export interface Token extends TokenDetails {
  idHash: string;
  expiresAt: number | null;
  usesLeft: number | null;
  parentHash: string | null;
  /** The auth mount path ("approle/") of a login token; null otherwise. */
  authMount: string | null;
}

export interface CreateTokenRequest {
  policies: string[];
  ttl?: number;
  explicitMaxTtl?: number;
  period?: number;
  /** Seconds: the TTL when none is asked for (non-root tokens). */
  defaultTtl?: number;
  /** Seconds from creation: the system ceiling for non-periodic tokens. */
  maxTtl?: number;
  renewable?: boolean;
  numUses?: number;
  displayName?: string;
  meta?: Record<string, string>;
  path?: string;
  /** Dev mode: a chosen token value. */
  id?: string;
  parent?: Token | null;
  /** token_bound_cidrs (already validated). */
  boundCidrs?: string[];
  /** A login's auth mount path ("approle/"): disabling the mount revokes the token. */
  authMount?: string;
  /** The token role name, for auth/token/create/:role. */
  role?: string;
  entityId?: string;
}

const identity = (idHash: string): string => `token/${idHash}`;

/** Cached details are shared by every Token built from them: freeze them (and their lists) so none is changed in place. */
function freeze(details: TokenDetails): TokenDetails {
  Object.freeze(details.policies);
  Object.freeze(details.meta);
  if (details.boundCidrs) Object.freeze(details.boundCidrs);
  return Object.freeze(details);
}

/**
 * Asked before a login token is renewed (Vault asks the auth method): a
 * reason to refuse (the role or user is gone, its policies changed), or undefined.
 */
export type RenewCheck = (token: Token) => Promise<string | undefined>;

/** How many tokens are kept in memory (row and decrypted details, under a kilobyte each). */
export const TOKEN_CACHE_SIZE = 4096;

interface CachedToken {
  row: TokenRow;
  details: TokenDetails;
}

export class TokenStore {
  private renewCheck: RenewCheck | undefined;
  /**
   * Recently used tokens by hash (least recently used first): the stored row
   * and its decrypted details, so a lookup reads nothing and decrypts
   * nothing. Exact because every write to a token goes through this class
   * and drops the entry, before and after the write, and bumps `generation`
   * so that a read in flight across a write never fills the cache with what
   * it read (see `changing`). Expiry is checked against the clock on each
   * lookup; remaining uses are taken in the store (`use`). Cleared at seal
   * and when this node becomes active (HA).
   */
  private readonly cache = new Map<string, CachedToken>();
  private generation = 0;

  /** Set by the auth table: checks login tokens before renewal. */
  setRenewCheck(check: RenewCheck): void {
    this.renewCheck = check;
  }

  constructor(
    private readonly storage: Storage,
    private readonly keys: () => Barrier,
  ) {}

  private build(row: TokenRow, details: TokenDetails): Token {
    return { ...details, idHash: row.idHash, expiresAt: row.expiresAt, usesLeft: row.usesLeft, parentHash: row.parentHash, authMount: row.authMount ?? null };
  }

  /** A row read outside the cache: its details from the cache when the ciphertext is the same, else decrypted. */
  private async load(row: TokenRow): Promise<Token> {
    const cached = this.cache.get(row.idHash);
    const details = cached && cached.row.sealed.equals(row.sealed) ? cached.details : this.decrypt(row);
    return this.build(row, details);
  }

  private decrypt(row: TokenRow): TokenDetails {
    return freeze(this.keys().decryptJSON<TokenDetails>(identity(row.idHash), row.sealed));
  }

  /** The cached entry of `idHash`, made the most recently used; undefined when not cached. */
  private cacheHit(idHash: string): CachedToken | undefined {
    const hit = this.cache.get(idHash);
    if (hit) {
      this.cache.delete(idHash);
      this.cache.set(idHash, hit);
    }
    return hit;
  }

  /** The stored row of `idHash` (from the cache, else read and cached), or undefined. */
  private async cachedRow(idHash: string): Promise<CachedToken | undefined> {
    const hit = this.cacheHit(idHash);
    if (hit) return hit;
    const generation = this.generation;
    const row = await this.storage.getToken(idHash);
    if (!row) return undefined;
    const entry = { row, details: this.decrypt(row) };
    // A write began while the row was read: what was read may be stale, so it is not kept.
    if (generation === this.generation) {
      this.cache.set(idHash, entry);
      if (this.cache.size > TOKEN_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    }
    return entry;
  }

  /** Run a write to the tokens in `hashes` (undefined: possibly any token) with their cache entries dropped before and after. */
  private async changing<T>(hashes: string[] | undefined, write: () => Promise<T>): Promise<T> {
    const drop = () => {
      this.generation++;
      if (hashes === undefined) this.cache.clear();
      else for (const h of hashes) this.cache.delete(h);
    };
    drop();
    try {
      return await write();
    } finally {
      drop();
    }
  }

  /** Drop every cached token (at seal: nothing decrypted outlives the keys; on becoming active: another node may have written). */
  forget(): void {
    this.generation++;
    this.cache.clear();
  }

  /** Create a token; returns the secret once, plus its stored view (and warnings about capped TTLs). */
  async create(req: CreateTokenRequest, barrier: Barrier = this.keys()): Promise<{ secret: string; token: Token; warnings: string[] }> {
    const secret = req.id ?? TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const accessor = randomBytes(18).toString('base64url');
    const isRoot = req.policies.includes('root');
    const now = Date.now();
    const warnings: string[] = [];
    const period = req.period ?? 0;
    let ttl = period > 0 ? period : (req.ttl ?? 0);
    if (ttl === 0 && !isRoot) ttl = req.defaultTtl ?? DEFAULT_TOKEN_TTL;
    const maxTtl = req.maxTtl ?? 0;
    if (period === 0 && maxTtl > 0 && ttl > maxTtl) {
      warnings.push(`TTL of "${ttl}s" exceeded the system max TTL of "${maxTtl}s"; TTL value is capped accordingly`);
      ttl = maxTtl;
    }
    const explicitMaxTtl = req.explicitMaxTtl ?? 0;
    if (explicitMaxTtl > 0 && (ttl === 0 || ttl > explicitMaxTtl)) ttl = explicitMaxTtl;
    let expiresAt = ttl > 0 ? now + ttl * 1000 : null;
    // A child never outlives its parent.
    if (req.parent?.expiresAt != null && (expiresAt === null || expiresAt > req.parent.expiresAt)) {
      expiresAt = req.parent.expiresAt;
      ttl = Math.max(0, Math.ceil((expiresAt - now) / 1000));
    }
    const details: TokenDetails = {
      accessor,
      policies: [...new Set(req.policies)].sort(),
      displayName: req.displayName ?? 'token',
      meta: req.meta ?? {},
      creationTime: now,
      ttl,
      explicitMaxTtl,
      renewable: req.renewable ?? !isRoot,
      numUses: req.numUses ?? 0,
      period,
      path: req.path ?? 'auth/token/create',
      entityId: req.entityId ?? '',
      ...(req.boundCidrs && req.boundCidrs.length > 0 ? { boundCidrs: req.boundCidrs } : {}),
      ...(req.authMount !== undefined && maxTtl > 0 ? { maxTtl } : {}),
      ...(req.role !== undefined ? { role: req.role } : {}),
    };
    const idHash = barrier.hmac(secret);
    const row: TokenRow = {
      idHash,
      accessorHash: barrier.hmac('accessor:' + accessor),
      parentHash: req.parent?.idHash ?? null,
      expiresAt,
      usesLeft: details.numUses > 0 ? details.numUses : null,
      sealed: barrier.encryptJSON(identity(idHash), details),
      authMount: req.authMount ?? null,
    };
    await this.changing([idHash], () => this.storage.insertToken(row));
    return { secret, token: { ...details, idHash, expiresAt, usesLeft: row.usesLeft, parentHash: row.parentHash, authMount: req.authMount ?? null }, warnings };
  }

  /** Find a live token by its secret, or undefined. Does not take a use. */
  async lookup(secret: string): Promise<Token | undefined> {
    if (secret.length === 0 || secret.length > 512) return undefined;
    const idHash = this.keys().hmac(secret);
    // A cached token is answered without another async step (the hot path of every request).
    const entry = this.cacheHit(idHash) ?? (await this.cachedRow(idHash));
    const row = entry?.row;
    if (!row || !timingSafeEqual(Buffer.from(row.idHash), Buffer.from(idHash))) return undefined;
    if (row.expiresAt !== null && row.expiresAt <= Date.now()) return undefined;
    if (row.usesLeft !== null && row.usesLeft <= 0) return undefined;
    return this.build(row, entry.details);
  }

  /** A live token by its stored hash (LIST accessors); undefined when gone or expired. */
  async lookupByHash(idHash: string): Promise<Token | undefined> {
    const row = await this.storage.getToken(idHash);
    if (!row || (row.expiresAt !== null && row.expiresAt <= Date.now())) return undefined;
    if (row.usesLeft !== null && row.usesLeft <= 0) return undefined;
    return this.load(row);
  }

  async lookupByAccessor(accessor: string): Promise<Token | undefined> {
    if (accessor.length === 0 || accessor.length > 512) return undefined;
    const row = await this.storage.getTokenByAccessor(this.keys().hmac('accessor:' + accessor));
    if (!row || (row.expiresAt !== null && row.expiresAt <= Date.now())) return undefined;
    if (row.usesLeft !== null && row.usesLeft <= 0) return undefined;
    return this.load(row);
  }

  /**
   * Take one use of a limited-use token. A token whose last use this was is
   * revoked afterwards by the caller (so its request still completes).
   */
  async use(token: Token): Promise<{ ok: boolean; exhausted: boolean }> {
    if (token.usesLeft === null) return { ok: true, exhausted: false };
    // The count left comes from the store, so concurrent requests agree on which was the last use.
    const { ok, left } = await this.changing([token.idHash], () => this.storage.useToken(token.idHash));
    return { ok, exhausted: ok && left === 0 };
  }

  /**
   * Renew: a new TTL counted from now (a periodic token always gets its
   * period), capped by explicit_max_ttl and, unless periodic, by the system
   * `maxTtl`, both counted from creation.
   */
  async renew(token: Token, increment: number, maxTtl = 0): Promise<{ token: Token; warnings: string[] }> {
    if (!token.renewable || token.expiresAt === null) throw errors.TOKEN_NOT_RENEWABLE();
    if (token.authMount !== null && this.renewCheck) {
      const refused = await this.renewCheck(token);
      if (refused !== undefined) throw errors.BAD_REQUEST(`the token cannot be renewed: ${refused}`);
    }
    const warnings: string[] = [];
    const now = Date.now();
    const period = token.period ?? 0;
    let ttl = period > 0 ? period : increment > 0 ? increment : token.ttl;
    const limits = [token.explicitMaxTtl, period > 0 ? 0 : token.maxTtl || maxTtl].filter((l) => l > 0);
    if (limits.length > 0) {
      const maxEnd = token.creationTime + Math.min(...limits) * 1000;
      if (now + ttl * 1000 > maxEnd) {
        ttl = Math.max(0, Math.floor((maxEnd - now) / 1000));
        warnings.push(`TTL of "${increment}s" exceeded the effective max_ttl of "${ttl}s"; TTL value is capped accordingly`);
      }
    }
    const expiresAt = now + ttl * 1000;
    await this.changing([token.idHash], () => this.storage.updateToken(token.idHash, { expiresAt }));
    return { token: { ...token, expiresAt }, warnings };
  }

  /** Revoke a token and, depth first, every token created from it. Returns the revoked hashes. */
  async revokeTree(idHash: string): Promise<string[]> {
    const revoked: string[] = [];
    const stack = [idHash];
    while (stack.length > 0) {
      const current = stack.pop()!;
      stack.push(...(await this.storage.childTokens(current)));
      await this.changing([current], () => this.storage.deleteToken(current));
      revoked.push(current);
    }
    return revoked;
  }

  /** Make the children of `parentHash` orphans (revoke-orphan); returns how many. */
  async orphanChildren(parentHash: string): Promise<number> {
    return this.changing(undefined, () => this.storage.orphanChildren(parentHash));
  }

  /** Hashes of tokens that expired by now (for the cleanup pass). */
  async expired(limit: number): Promise<string[]> {
    return this.storage.expiredTokens(Date.now(), limit);
  }
}
