// The seal: the root key is split with Shamir's scheme at init and never
// stored. The root key only encrypts the keyring (see barrier.ts); unsealing
// recombines the shares and proves them right by decrypting the keyring,
// because the Shamir library itself does no integrity check.

import { randomBytes, timingSafeEqual } from 'node:crypto';
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

/** Parse an unseal key given as hex or base64. */
export function decodeKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(t) && t.length % 4 === 0) return Buffer.from(t, 'base64');
  return undefined;
}

export class Seal {
  private config: SealConfig | undefined;
  private rootKey: Buffer | undefined;
  private barrier: Barrier | undefined;
  private pending: Buffer[] = [];

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
      progress: this.pending.length,
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
    if (this.initialized) throw errors.ALREADY_INITIALIZED();
    const rootKey = randomBytes(ROOT_KEY_BYTES);
    const barrier = Barrier.create();
    await withBarrier(barrier);
    await this.storage.putMeta(KEYRING, sealWith(rootKey, 0, KEYRING_IDENTITY, barrier.toJSON()));
    const shares = config.shares === 1 ? [Buffer.from(rootKey)] : (await split(rootKey, config.shares, config.threshold)).map((s) => Buffer.from(s));
    await this.storage.putMeta(SEAL_CONFIG, Buffer.from(JSON.stringify(config)));
    this.config = config;
    barrier.wipe();
    rootKey.fill(0);
    return shares;
  }

  /** Add one share. Returns true once unsealed. */
  async submit(keyText: string): Promise<boolean> {
    if (!this.config) throw errors.NOT_INITIALIZED();
    if (!this.sealed) return true;
    const key = decodeKey(keyText);
    const expectedLength = this.config.shares === 1 ? ROOT_KEY_BYTES : ROOT_KEY_BYTES + 1;
    if (!key) throw errors.BAD_UNSEAL_KEY('"key" must be hex or base64');
    if (key.length !== expectedLength) throw errors.BAD_UNSEAL_KEY(`"key" has the wrong length: expected ${expectedLength} bytes, got ${key.length}`);
    if (this.pending.some((p) => timingSafeEqual(p, key))) throw errors.BAD_UNSEAL_KEY('this key was already submitted; submit a different key share');
    // Shares carry their x coordinate in the last byte; two shares with the same x cannot combine.
    if (this.config.shares > 1 && this.pending.some((p) => p[p.length - 1] === key[key.length - 1])) {
      throw errors.BAD_UNSEAL_KEY('this key share conflicts with one already submitted (same share index)');
    }
    this.pending.push(key);
    if (this.pending.length < this.config.threshold) return false;

    const shares = this.pending;
    this.pending = [];
    const rootKey = this.config.shares === 1 ? shares[0]! : Buffer.from(await combine(shares.map((s) => new Uint8Array(s))));
    await this.unlock(rootKey);
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

  /** Add a key term and persist the keyring. */
  async rotate(): Promise<void> {
    if (!this.barrier || !this.rootKey) throw errors.SEALED();
    this.barrier.rotate();
    await this.storage.putMeta(KEYRING, sealWith(this.rootKey, 0, KEYRING_IDENTITY, this.barrier.toJSON()));
  }

  seal(): void {
    this.barrier?.wipe();
    this.rootKey?.fill(0);
    this.barrier = undefined;
    this.rootKey = undefined;
    this.pending = [];
  }
}
