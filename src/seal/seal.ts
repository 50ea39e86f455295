// The seal: the root key is split with Shamir's scheme at init and never
// stored. The root key only encrypts the keyring (see barrier.ts); unsealing
// recombines the shares and proves them right by decrypting the keyring,
// because the Shamir library itself does no integrity check. To refuse a
// wrong share at once (not only when the threshold is reached), the seal
// config keeps a salted SHA-256 of each share: a share has 256 bits of
// entropy, so the hashes reveal nothing useful.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { combine, split } from 'shamir-secret-sharing';
import { errors } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';
import { Barrier, open, seal as sealWith } from './barrier.ts';

const ROOT_KEY_BYTES = 32;
const KEYRING = 'keyring';
const SEAL_CONFIG = 'seal-config';
const KEYRING_IDENTITY = 'core/keyring';

export interface SealConfig {
  shares: number;
  threshold: number;
  /** Salted hashes of the shares made at init (absent in stores from before they existed). */
  verifier?: { salt: string; hashes: string[] };
}

function shareHash(salt: Buffer, share: Buffer): Buffer {
  return createHash('sha256').update(salt).update(share).digest();
}

export interface SealStatus {
  type: 'shamir';
  initialized: boolean;
  sealed: boolean;
  t: number;
  n: number;
  progress: number;
  nonce: string;
  version: string;
}

/**
 * Parse an unseal key given as hex or base64. A string that reads as both
 * (base64 made only of hex digits) is taken in the encoding that gives
 * `expectedLength` bytes.
 */
export function decodeKey(text: string, expectedLength?: number): Buffer | undefined {
  const t = text.trim();
  const hex = /^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0 ? Buffer.from(t, 'hex') : undefined;
  const base64 = /^[A-Za-z0-9+/]+={0,2}$/.test(t) && t.length % 4 === 0 ? Buffer.from(t, 'base64') : undefined;
  if (hex && base64 && expectedLength !== undefined && hex.length !== expectedLength && base64.length === expectedLength) return base64;
  return hex ?? base64;
}

export class Seal {
  private config: SealConfig | undefined;
  private rootKey: Buffer | undefined;
  private barrier: Barrier | undefined;
  private pending: Buffer[] = [];
  /** Set while sys/init runs, so two concurrent inits cannot both make a keyring. */
  private initializing = false;

  constructor(
    private readonly storage: Storage,
    private readonly version: string,
  ) {}

  async load(): Promise<void> {
    const raw = await this.storage.getMeta(SEAL_CONFIG);
    this.config = raw ? (JSON.parse(raw.toString('utf8')) as SealConfig) : undefined;
  }

  get initialized(): boolean {
    return this.config !== undefined;
  }

  get sealed(): boolean {
    return this.barrier === undefined;
  }

  /** The unsealed barrier; throws SEALED otherwise. */
  get keys(): Barrier {
    if (!this.barrier) throw errors.SEALED();
    return this.barrier;
  }

  status(): SealStatus {
    return {
      type: 'shamir',
      initialized: this.initialized,
      sealed: this.sealed,
      t: this.config?.threshold ?? 0,
      n: this.config?.shares ?? 0,
      progress: this.sealed ? this.pending.length : 0,
      nonce: '',
      version: this.version,
    };
  }

  /**
   * Make the root key and keyring, store the sealed keyring, and return the
   * key shares. `withBarrier` runs while the new keyring is at hand (to
   * store the root token); the broker stays sealed afterwards, as Vault does.
   */
  async init(config: SealConfig, withBarrier: (barrier: Barrier) => Promise<void>): Promise<Buffer[]> {
    if (this.initialized || this.initializing) throw errors.ALREADY_INITIALIZED();
    this.initializing = true;
    const rootKey = randomBytes(ROOT_KEY_BYTES);
    const barrier = Barrier.create();
    try {
      await withBarrier(barrier);
      await this.storage.putMeta(KEYRING, sealWith(rootKey, 0, KEYRING_IDENTITY, barrier.toJSON()));
      // The library checks `constructor === Uint8Array`, which a Buffer fails.
      const shares = config.shares === 1 ? [Buffer.from(rootKey)] : (await split(new Uint8Array(rootKey), config.shares, config.threshold)).map((s) => Buffer.from(s));
      const salt = randomBytes(16);
      const stored: SealConfig = {
        shares: config.shares,
        threshold: config.threshold,
        verifier: { salt: salt.toString('hex'), hashes: shares.map((s) => shareHash(salt, s).toString('hex')) },
      };
      await this.storage.putMeta(SEAL_CONFIG, Buffer.from(JSON.stringify(stored)));
      this.config = stored;
      return shares;
    } finally {
      this.initializing = false;
      barrier.wipe();
      rootKey.fill(0);
    }
  }

  /** Which share (by index) this key is, or -1 when it is none of them; undefined without a verifier. */
  private shareIndex(key: Buffer): number | undefined {
    const verifier = this.config?.verifier;
    if (!verifier) return undefined;
    const hash = shareHash(Buffer.from(verifier.salt, 'hex'), key);
    let found = -1;
    verifier.hashes.forEach((h, i) => {
      if (timingSafeEqual(Buffer.from(h, 'hex'), hash)) found = i;
    });
    return found;
  }

  /** Add one share. Returns true once unsealed. */
  async submit(keyText: string): Promise<boolean> {
    if (!this.config) throw errors.NOT_INITIALIZED();
    if (!this.sealed) return true;
    const expectedLength = this.config.shares === 1 ? ROOT_KEY_BYTES : ROOT_KEY_BYTES + 1;
    const key = decodeKey(keyText, expectedLength);
    if (!key) throw errors.BAD_UNSEAL_KEY('"key" must be hex or base64');
    if (key.length !== expectedLength) throw errors.BAD_UNSEAL_KEY(`"key" has the wrong length: expected ${expectedLength} bytes, got ${key.length}`);
    if (this.pending.some((p) => timingSafeEqual(p, key))) throw errors.BAD_UNSEAL_KEY('this key was already submitted; submit a different key share');
    if (this.shareIndex(key) === -1) throw errors.BAD_UNSEAL_KEY('"key" is not one of this dbroker\'s key shares (mistyped, corrupted, or from another store); progress is unchanged');
    // Shares carry their x coordinate in the last byte; two shares with the same x cannot combine.
    if (this.config.shares > 1 && this.pending.some((p) => p[p.length - 1] === key[key.length - 1])) {
      throw errors.BAD_UNSEAL_KEY('this key share conflicts with one already submitted (same share index)');
    }
    this.pending.push(key);
    if (this.pending.length < this.config.threshold) return false;

    const shares = this.pending;
    this.pending = [];
    let rootKey: Buffer;
    try {
      rootKey = this.config.shares === 1 ? shares[0]! : Buffer.from(await combine(shares.map((s) => new Uint8Array(s))));
    } catch {
      throw errors.UNSEAL_FAILED();
    } finally {
      if (this.config.shares > 1) for (const s of shares) s.fill(0);
    }
    await this.unlock(rootKey);
    this.pending = [];
    return true;
  }

  /** Unseal with the whole root key (dev mode and auto-unseal go through shares too; this is the common end). */
  private async unlock(rootKey: Buffer): Promise<void> {
    const sealedKeyring = await this.storage.getMeta(KEYRING);
    if (!sealedKeyring) throw errors.NOT_INITIALIZED();
    let keyring: Buffer;
    try {
      keyring = open(rootKey, KEYRING_IDENTITY, sealedKeyring);
    } catch {
      rootKey.fill(0);
      throw errors.UNSEAL_FAILED();
    }
    this.rootKey = rootKey;
    this.barrier = Barrier.fromJSON(keyring);
  }

  resetProgress(): void {
    this.pending = [];
  }

  /** Add a key term: persist the keyring with it first, then start writing with it. */
  async rotate(): Promise<void> {
    if (!this.barrier || !this.rootKey) throw errors.SEALED();
    const next = this.barrier.nextTerm();
    await this.storage.putMeta(KEYRING, sealWith(this.rootKey, 0, KEYRING_IDENTITY, this.barrier.toJSON(next)));
    this.barrier.install(next);
  }

  seal(): void {
    this.barrier?.wipe();
    this.rootKey?.fill(0);
    this.barrier = undefined;
    this.rootKey = undefined;
    this.pending = [];
  }
}
