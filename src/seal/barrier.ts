// The barrier: AES-256-GCM encryption of every stored secret.
//
// Ciphertext layout: version (1) | key term (4, BE) | nonce (12) | tag (16) | data.
// The header and the record's identity (e.g. "lease/<id>") are bound as
// associated data, so a ciphertext cannot be moved to another record or
// re-labelled with another term.

import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { errors } from '../errors.ts';

const VERSION = 1;
const HEADER = 5;
const NONCE = 12;
const TAG = 16;

export interface KeyTerm {
  term: number;
  key: Buffer;
  installTime: string;
}

function header(term: number): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeUInt8(VERSION, 0);
  h.writeUInt32BE(term, 1);
  return h;
}

/** Encrypt with one key; `identity` is bound as associated data. */
export function seal(key: Buffer, term: number, identity: string, plaintext: Buffer): Buffer {
  const h = header(term);
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.concat([h, Buffer.from(identity, 'utf8')]));
  const data = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([h, nonce, cipher.getAuthTag(), data]);
}

/** The key term a ciphertext names, or undefined when it is not ours. */
export function termOf(ciphertext: Buffer): number | undefined {
  if (ciphertext.length < HEADER + NONCE + TAG || ciphertext.readUInt8(0) !== VERSION) return undefined;
  return ciphertext.readUInt32BE(1);
}

/** Decrypt, or throw DECRYPT_FAILED when anything was tampered with. */
export function open(key: Buffer, identity: string, ciphertext: Buffer): Buffer {
  if (termOf(ciphertext) === undefined) throw errors.DECRYPT_FAILED(identity);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, ciphertext.subarray(HEADER, HEADER + NONCE));
    decipher.setAAD(Buffer.concat([ciphertext.subarray(0, HEADER), Buffer.from(identity, 'utf8')]));
    decipher.setAuthTag(ciphertext.subarray(HEADER + NONCE, HEADER + NONCE + TAG));
    return Buffer.concat([decipher.update(ciphertext.subarray(HEADER + NONCE + TAG)), decipher.final()]);
  } catch {
    throw errors.DECRYPT_FAILED(identity);
  }
}

/** The unsealed keyring: numbered encryption terms plus a fixed HMAC key for token hashes. */
export class Barrier {
  private constructor(
    private readonly terms: Map<number, KeyTerm>,
    private active: KeyTerm,
    private readonly hmacKey: Buffer,
  ) {}

  static create(): Barrier {
    const first: KeyTerm = { term: 1, key: randomBytes(32), installTime: new Date().toISOString() };
    return new Barrier(new Map([[1, first]]), first, randomBytes(32));
  }

  /** Restore from the serialized keyring (already decrypted with the root key). */
  static fromJSON(buf: Buffer): Barrier {
    const raw = JSON.parse(buf.toString('utf8')) as { active: number; hmac: string; terms: Array<{ term: number; key: string; installTime: string }> };
    const terms = new Map(raw.terms.map((t) => [t.term, { term: t.term, key: Buffer.from(t.key, 'base64'), installTime: t.installTime }]));
    const active = terms.get(raw.active);
    if (!active) throw new Error('keyring has no active term');
    return new Barrier(terms, active, Buffer.from(raw.hmac, 'base64'));
  }

  /** The keyring, serialized; with `next`, as it will be once `next` is installed. */
  toJSON(next?: KeyTerm): Buffer {
    const terms = [...this.terms.values(), ...(next ? [next] : [])];
    return Buffer.from(
      JSON.stringify({
        active: (next ?? this.active).term,
        hmac: this.hmacKey.toString('base64'),
        terms: terms.map((t) => ({ term: t.term, key: t.key.toString('base64'), installTime: t.installTime })),
      }),
    );
  }

  get term(): number {
    return this.active.term;
  }

  get installTime(): string {
    return this.active.installTime;
  }

  /** A new term, not yet in use (persist the keyring with it, then install it). */
  nextTerm(): KeyTerm {
    return { term: Math.max(...this.terms.keys()) + 1, key: randomBytes(32), installTime: new Date().toISOString() };
  }

  /** Make `term` the active one: new writes use it, old terms keep decrypting. */
  install(term: KeyTerm): void {
    this.terms.set(term.term, term);
    this.active = term;
  }

  /** Add a new term and make it active. */
  rotate(): KeyTerm {
    const next = this.nextTerm();
    this.install(next);
    return next;
  }

  encrypt(identity: string, plaintext: Buffer | string): Buffer {
    return seal(this.active.key, this.active.term, identity, typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext);
  }

  decrypt(identity: string, ciphertext: Buffer): Buffer {
    const term = termOf(ciphertext);
    if (term === undefined) throw errors.DECRYPT_FAILED(identity);
    const key = this.terms.get(term);
    if (!key) throw errors.UNKNOWN_KEY_TERM(identity, term);
    return open(key.key, identity, ciphertext);
  }

  encryptJSON(identity: string, value: unknown): Buffer {
    return this.encrypt(identity, JSON.stringify(value));
  }

  decryptJSON<T>(identity: string, ciphertext: Buffer): T {
    return JSON.parse(this.decrypt(identity, ciphertext).toString('utf8')) as T;
  }

  /** Keyed hash for tokens and audit; hex. */
  hmac(value: string): string {
    return createHmac('sha256', this.hmacKey).update(value, 'utf8').digest('hex');
  }

  /** Drop key material from memory (best effort: zero the buffers). */
  wipe(): void {
    for (const t of this.terms.values()) t.key.fill(0);
    this.hmacKey.fill(0);
  }
}
