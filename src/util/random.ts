// Random identifiers and passwords from the CSPRNG.

import { randomInt } from 'node:crypto';

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const PASSWORD_CHARS = BASE62 + '-';

export function randomString(length: number, alphabet = BASE62): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

/** A password with upper, lower, digit and '-' (at least 20 characters). */
export function generatePassword(length = 24): string {
  const n = Math.max(20, length);
  for (;;) {
    const p = randomString(n, PASSWORD_CHARS);
    if (/[A-Z]/.test(p) && /[a-z]/.test(p) && /[0-9]/.test(p) && p.includes('-') && !p.startsWith('-')) return p;
  }
}
