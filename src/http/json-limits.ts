// Limits on the shape of JSON that arrives from outside. Vault's listener
// refuses bodies nested deeper than `max_json_depth` (default 300; Vault docs,
// "tcp listener": max_json_depth) before decoding them; so do we, so that no
// walk over request data (schema checks, audit hashing, statement parsing)
// ever meets a structure deep enough to exhaust the stack.

/** Vault's default `max_json_depth`: nesting levels of objects and arrays. */
export const MAX_JSON_DEPTH = 300;

/**
 * Whether `text` (JSON, possibly malformed) nests objects/arrays deeper than
 * `limit` levels. A linear scan that skips string contents; it never recurses,
 * so it is safe on any input, and it runs before `JSON.parse`.
 */
export function jsonDepthExceeds(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
