// Audit hashing: every string that could be a secret is replaced by
// `hmac-sha256:<hex>` under the device's own key, so the log can be searched
// (sys/audit-hash) but never read back. Object keys, numbers and booleans stay.

import { createHmac } from 'node:crypto';

export const HASH_PREFIX = 'hmac-sha256:';

export function hmacString(key: Buffer, value: string): string {
  return HASH_PREFIX + createHmac('sha256', key).update(value, 'utf8').digest('hex');
}

/** How many tokens' hashes a device keeps (see TokenHashMemo). */
export const TOKEN_HASH_MEMO_SIZE = 4096;

/**
 * One device's hashes of recently seen tokens (the client token and its
 * accessor), by the token's stored id hash, so that a token used again is not
 * hashed again: two HMACs fewer on each audited request. Exact: the id hash is
 * the barrier's HMAC of the token itself, and a token's accessor never
 * changes, so each entry is a fixed function of its key. Holds no secret,
 * only what the audit log shows anyway, keyed by what the store holds anyway.
 * Bounded (least recently used out); lives as long as the device is open, so
 * a device enabled again (a new key) starts empty.
 */
export class TokenHashMemo {
  private readonly entries = new Map<string, { secret?: string; accessor?: string }>();

  /** The memoized hash of `field` of the token `idHash`, else `compute()` (then kept). */
  get(idHash: string, field: 'secret' | 'accessor', compute: () => string): string {
    let entry = this.entries.get(idHash);
    if (entry) {
      this.entries.delete(idHash);
      this.entries.set(idHash, entry);
    } else {
      entry = {};
      this.entries.set(idHash, entry);
      if (this.entries.size > TOKEN_HASH_MEMO_SIZE) this.entries.delete(this.entries.keys().next().value!);
    }
    return (entry[field] ??= compute());
  }

  /** How many tokens are memoized. */
  get size(): number {
    return this.entries.size;
  }
}

/**
 * One device's key for one request's entries: a value (the client token, its
 * accessor, a path) is hashed once however many times the request and
 * response entries show it. Lives as long as the request's audit record.
 */
export class AuditHasher {
  private readonly memo = new Map<string, string>();

  constructor(
    readonly key: Buffer,
    private readonly tokens: TokenHashMemo = new TokenHashMemo(),
  ) {}

  /**
   * `hash(secret)` for a client token whose stored id hash is `idHash`: the
   * barrier's HMAC of this very value, as the token store computed it when
   * the token resolved (never an id hash taken from anywhere else).
   */
  tokenSecret(secret: string, idHash: string): string {
    return this.tokens.get(idHash, 'secret', () => this.hash(secret));
  }

  /** `hash(accessor)` for the accessor of the token whose stored id hash is `idHash`. */
  tokenAccessor(accessor: string, idHash: string): string {
    return this.tokens.get(idHash, 'accessor', () => this.hash(accessor));
  }

  /** `hmac-sha256:<hex>` of `value` under the device's key. */
  hash(value: string): string {
    let hashed = this.memo.get(value);
    if (hashed === undefined) {
      hashed = hmacString(this.key, value);
      // Bounded: a large body's many strings are hashed without being kept.
      if (this.memo.size < 32) this.memo.set(value, hashed);
    }
    return hashed;
  }
}

/**
 * A copy of `value` with every string (at any depth) hashed, except the values
 * under the top-level keys in `clear`. Iterative, so no input is deep enough
 * to overflow the stack (request bodies are depth-limited at parse time, but
 * responses and stored data reach here too).
 */
export function hashValues(hasher: AuditHasher, value: unknown, clear: ReadonlySet<string> = new Set()): unknown {
  const copy = (v: unknown): unknown => {
    if (typeof v === 'string') return hasher.hash(v);
    if (Array.isArray(v)) return new Array<unknown>(v.length);
    if (v !== null && typeof v === 'object') return Object.create(null) as Record<string, unknown>; // a "__proto__" key stays a plain key
    return v;
  };
  const root = copy(value);
  // Pairs of (source container, its copy) still to fill in.
  const work: Array<[unknown, Record<string, unknown> | unknown[]]> = [];
  if (root !== null && typeof root === 'object') work.push([value, root as Record<string, unknown>]);
  let top = true;
  while (work.length > 0) {
    const [src, dst] = work.pop()!;
    const entries: Array<[string | number, unknown]> = Array.isArray(src) ? src.map((v, i) => [i, v]) : Object.entries(src as object);
    for (const [k, v] of entries) {
      if (top && typeof k === 'string' && clear.has(k)) {
        (dst as Record<string, unknown>)[k] = v;
        continue;
      }
      const c = copy(v);
      (dst as Record<string | number, unknown>)[k] = c;
      if (c !== null && typeof c === 'object') work.push([v, c as Record<string, unknown>]);
    }
    top = false;
  }
  return root;
}
