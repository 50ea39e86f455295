// The agent's persistent cache: one file, encrypted and authenticated with
// AES-256-GCM (node:crypto; NIST SP 800-38D) under a key the operator
// provides (a file or an environment variable). Each write uses a fresh
// random 96-bit nonce and replaces the file atomically (mode 0600). The file
// holds no plaintext: format = MAGIC (8 bytes, also the AAD) | nonce (12) |
// tag (16) | ciphertext of the JSON state.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../config.ts';
import { writeFileAtomic } from './atomic-file.ts';

const MAGIC = Buffer.from('DBRAGC01', 'ascii');
const NONCE = 12;
const TAG = 16;
export const CACHE_FILE = 'agent-cache.bin';

/**
 * The 32-byte master key: from `keyFile` (32 raw bytes, or 64 hex digits, or
 * base64 of 32 bytes, surrounding whitespace ignored) or the environment
 * variable `keyEnv` (hex or base64). Throws ConfigError naming the field.
 */
export function loadCacheKey(opts: { keyFile?: string; keyEnv?: string }, env: NodeJS.ProcessEnv = process.env): Buffer {
  let raw: Buffer;
  let field: string;
  if (opts.keyFile) {
    field = 'cache.persist.key_file';
    try {
      raw = readFileSync(opts.keyFile);
    } catch (err) {
      throw new ConfigError(field, `cannot read ${opts.keyFile}: ${(err as Error).message}`);
    }
  } else {
    field = 'cache.persist.key_env';
    const value = env[opts.keyEnv ?? ''];
    if (!value) throw new ConfigError(field, `environment variable ${opts.keyEnv} is not set`);
    raw = Buffer.from(value, 'utf8');
  }
  if (raw.length === 32 && field.endsWith('key_file') && !/^[0-9a-fA-F\s]+$/.test(raw.toString('latin1'))) return raw;
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  const b64 = Buffer.from(text, 'base64');
  if (b64.length === 32 && /^[A-Za-z0-9+/_-]{43}=?$/.test(text)) return b64;
  throw new ConfigError(field, 'the key must be 32 bytes: raw, 64 hex digits or base64 (e.g. `openssl rand -hex 32`)');
}

/** Subkeys by purpose (RFC 5869 HKDF-SHA256), so the master key encrypts nothing itself. */
export function deriveKey(master: Buffer, purpose: 'cache-encryption' | 'cache-index'): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `dbroker-agent ${purpose}`, 32));
}

export class CacheDecryptError extends Error {
  override name = 'CacheDecryptError';
}

/** An encrypted JSON document at `<dir>/agent-cache.bin`. */
export class EncryptedCache<T> {
  readonly path: string;
  private readonly key: Buffer;
  private writing: Promise<void> = Promise.resolve();
  private pending: T | undefined;

  constructor(dir: string, master: Buffer) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, CACHE_FILE);
    this.key = deriveKey(master, 'cache-encryption');
  }

  /**
   * The stored document, or undefined when there is no file. Throws
   * CacheDecryptError when it is not ours, was altered, or the key differs.
   */
  load(): T | undefined {
    let buf: Buffer;
    try {
      buf = readFileSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (buf.length < MAGIC.length + NONCE + TAG || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new CacheDecryptError(`${this.path} is not an agent cache file`);
    const nonce = buf.subarray(MAGIC.length, MAGIC.length + NONCE);
    const tag = buf.subarray(MAGIC.length + NONCE, MAGIC.length + NONCE + TAG);
    const decipher = createDecipheriv('aes-256-gcm', this.key, nonce);
    decipher.setAAD(MAGIC);
    decipher.setAuthTag(tag);
    try {
      const plain = Buffer.concat([decipher.update(buf.subarray(MAGIC.length + NONCE + TAG)), decipher.final()]);
      return JSON.parse(plain.toString('utf8')) as T;
    } catch {
      throw new CacheDecryptError(`${this.path} cannot be decrypted with this key (altered, or another key)`);
    }
  }

  /** Encrypt and store `value`. Writes are serialized; a burst of saves writes only the last value. */
  save(value: T): Promise<void> {
    const first = this.pending === undefined;
    this.pending = value;
    if (!first) return this.writing;
    this.writing = this.writing.catch(() => undefined).then(async () => {
      const doc = this.pending as T;
      this.pending = undefined;
      const nonce = randomBytes(NONCE);
      const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
      cipher.setAAD(MAGIC);
      const body = Buffer.concat([cipher.update(JSON.stringify(doc), 'utf8'), cipher.final()]);
      await writeFileAtomic(this.path, Buffer.concat([MAGIC, nonce, cipher.getAuthTag(), body]), 0o600);
    });
    return this.writing;
  }
}
