// Audit hashing: every string that could be a secret is replaced by
// `hmac-sha256:<hex>` under the device's own key, so the log can be searched
// (sys/audit-hash) but never read back. Object keys, numbers and booleans stay.

import { createHmac } from 'node:crypto';

export const HASH_PREFIX = 'hmac-sha256:';

export function hmacString(key: Buffer, value: string): string {
  return HASH_PREFIX + createHmac('sha256', key).update(value, 'utf8').digest('hex');
}

/** A copy of `value` with every string (at any depth) hashed, except under the keys in `clear`. */
export function hashValues(key: Buffer, value: unknown, clear: ReadonlySet<string> = new Set()): unknown {
  if (typeof value === 'string') return hmacString(key, value);
  if (Array.isArray(value)) return value.map((v) => hashValues(key, v));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = clear.has(k) ? v : hashValues(key, v);
    return out;
  }
  return value;
}
