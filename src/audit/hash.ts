// Audit hashing: every string that could be a secret is replaced by
// `hmac-sha256:<hex>` under the device's own key, so the log can be searched
// (sys/audit-hash) but never read back. Object keys, numbers and booleans stay.

import { createHmac } from 'node:crypto';

export const HASH_PREFIX = 'hmac-sha256:';

export function hmacString(key: Buffer, value: string): string {
  return HASH_PREFIX + createHmac('sha256', key).update(value, 'utf8').digest('hex');
}

/**
 * One device's key for one request's entries: a value (the client token, its
 * accessor, a path) is hashed once however many times the request and
 * response entries show it. Lives as long as the request's audit record.
 */
export class AuditHasher {
  private readonly memo = new Map<string, string>();

  constructor(readonly key: Buffer) {}

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
