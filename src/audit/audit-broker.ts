// The audit broker: the enabled audit devices (stored sealed under
// core/audit/, each with its own random HMAC key), and the fan-out of one
// request's entries to them. Fail closed: with devices enabled, an entry that
// no device could write refuses the request (Vault does the same); one device
// that writes is enough.

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Reply } from '../http/route.ts';
import { errors, isBrokerError } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';
import { readSealedEntry, writeSealedEntry } from '../storage/sealed-entry.ts';
import type { Barrier } from '../seal/barrier.ts';
import { requestEntry, responseEntry, type AuditSubject } from './audit-entry.ts';
import { FileDevice, parseFileOptions } from './file-device.ts';
import { AuditHasher, hmacString, TokenHashMemo } from './hash.ts';

export interface AuditDeviceEntry {
  path: string;
  type: 'file';
  description: string;
  options: Record<string, string>;
  local: boolean;
  /** The device's HMAC key, base64 (the entry is sealed). */
  hmacKey: string;
  createdAt: number;
}

interface Enabled {
  entry: AuditDeviceEntry;
  device: FileDevice;
  key: Buffer;
  /** Hashes of the tokens seen lately, under this device's key. */
  tokens: TokenHashMemo;
}

export interface EnableRequest {
  type?: unknown;
  description?: unknown;
  options?: unknown;
  local?: unknown;
}

const PREFIX = 'core/audit/';
const DEVICE_PATH = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/$/;
/** Unauthenticated status probes (load balancers poll them); Vault does not audit them either. */
const UNAUDITED = new Set(['sys/health', 'sys/seal-status', 'sys/leader']);

export function normalizeDevicePath(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/*$/, '/');
}

function errorCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' ? code : String((err as Error).message ?? err);
}

export class AuditBroker {
  private devices = new Map<string, Enabled>();

  constructor(
    private readonly storage: Storage,
    private readonly keys: () => Barrier,
    private readonly logger: Logger,
    /** Called with a device's path each time it fails to write an entry (the failures metric). */
    private readonly onDeviceFailure: (device: string) => void = () => undefined,
  ) {}

  /** At unseal: reopen every stored device. One that cannot open stays enabled (requests fail closed until it is fixed). */
  async load(): Promise<void> {
    this.close();
    for (const key of await this.storage.listEntries(PREFIX)) {
      const entry = await readSealedEntry<AuditDeviceEntry>(this.storage, this.keys(), key);
      if (!entry) continue;
      const device = new FileDevice(parseFileOptions(entry.options));
      try {
        device.open();
      } catch (err) {
        this.logger.error({ device: entry.path, error: errorCode(err) }, 'audit device cannot be opened; requests fail until it can be written');
      }
      this.devices.set(entry.path, { entry, device, key: Buffer.from(entry.hmacKey, 'base64'), tokens: new TokenHashMemo() });
    }
  }

  /** At seal. Requests in flight keep the devices they started with, so their response entries are still written. */
  close(): void {
    for (const d of this.devices.values()) d.device.close();
    this.devices.clear();
  }

  list(): AuditDeviceEntry[] {
    return [...this.devices.values()].map((d) => d.entry).sort((a, b) => a.path.localeCompare(b.path));
  }

  async enable(rawPath: string, req: EnableRequest): Promise<void> {
    const path = normalizeDevicePath(rawPath);
    if (!DEVICE_PATH.test(path)) throw errors.BAD_FIELD('path', 'may contain only letters, digits, "_", "." and "-", separated by "/"');
    if (req.type === undefined) throw errors.BAD_FIELD('type', 'is required (only "file" is supported)');
    if (req.type !== 'file') throw errors.BAD_FIELD('type', `unsupported audit device type "${String(req.type)}" (only "file")`);
    const rawOptions = req.options ?? {};
    if (typeof rawOptions !== 'object' || rawOptions === null || Array.isArray(rawOptions)) throw errors.BAD_FIELD('options', 'must be an object');
    const parsed = parseFileOptions(rawOptions as Record<string, unknown>);
    for (const existing of this.devices.keys()) {
      if (existing.startsWith(path) || path.startsWith(existing)) throw errors.BAD_FIELD('path', `path already in use at "${existing}"`);
    }
    const device = new FileDevice(parsed);
    try {
      device.open();
    } catch (err) {
      throw errors.BAD_FIELD('options.file_path', `cannot be opened for appending (${errorCode(err)})`);
    }
    const options: Record<string, string> = { file_path: parsed.filePath, mode: '0' + parsed.mode.toString(8).padStart(3, '0') };
    const entry: AuditDeviceEntry = {
      path,
      type: 'file',
      description: typeof req.description === 'string' ? req.description : '',
      options,
      local: req.local === true,
      hmacKey: randomBytes(32).toString('base64'),
      createdAt: Date.now(),
    };
    try {
      await writeSealedEntry(this.storage, this.keys(), PREFIX + path, entry);
    } catch (err) {
      device.close();
      throw err;
    }
    this.devices.set(path, { entry, device, key: Buffer.from(entry.hmacKey, 'base64'), tokens: new TokenHashMemo() });
    this.logger.info({ device: path, type: entry.type }, 'audit device enabled');
  }

  /** Disabling an unknown path is a no-op (204), as in Vault. */
  async disable(rawPath: string): Promise<void> {
    const path = normalizeDevicePath(rawPath);
    if (!this.devices.has(path)) return;
    await this.storage.deleteEntry(PREFIX + path);
    this.devices.get(path)?.device.close();
    this.devices.delete(path);
    this.logger.info({ device: path }, 'audit device disabled');
  }

  hash(rawPath: string, input: string): string {
    const path = normalizeDevicePath(rawPath);
    const enabled = this.devices.get(path);
    if (!enabled) throw errors.AUDIT_NOT_FOUND(path);
    return hmacString(enabled.key, input);
  }

  /** Start auditing one request (after the sealed gate), on the devices enabled now. */
  begin(req: AuditSubject['req'], tokenSecret: string | undefined): AuditRecord {
    const quiet = this.devices.size === 0 || ((req.method === 'GET' || req.method === 'HEAD') && UNAUDITED.has(req.path));
    return new AuditRecord(quiet ? NO_DEVICES : [...this.devices.values()], { req, tokenSecret }, this.logger, this.onDeviceFailure);
  }
}

/** The devices of a request audited nowhere (none enabled, or an unaudited status probe). */
const NO_DEVICES: readonly Enabled[] = Object.freeze([]);

/** One request's audit trail: the request entry before handling, the response entry after. */
export class AuditRecord {
  private requestWritten = false;
  /** Per device (by its key): the hashes already computed for this request (made at the first entry written). */
  private hashers: Map<Buffer, AuditHasher> | undefined;

  constructor(
    private readonly devices: readonly Enabled[],
    readonly subject: AuditSubject,
    private readonly logger: Logger,
    private readonly onDeviceFailure: (device: string) => void = () => undefined,
  ) {}

  /** Write the request entry (once); throws AUDIT_FAILED when no device took it. */
  request(): void {
    if (this.requestWritten || this.devices.length === 0) return;
    this.fanOut((key) => requestEntry(key, this.subject));
    this.requestWritten = true;
  }

  succeeded(reply: Reply | undefined): void {
    if (this.devices.length === 0) return;
    this.request();
    this.fanOut((key) => responseEntry(key, this.subject, reply));
  }

  /** A failed or denied request: both entries, with the error. */
  failed(err: unknown): void {
    // The audit itself failed: it was logged, and writing again would fail the same way.
    if (this.devices.length === 0 || (isBrokerError(err) && err.code === errors.AUDIT_FAILED.code)) return;
    const message = isBrokerError(err) ? err.message : 'internal error';
    if (!this.requestWritten) {
      this.fanOut((key) => requestEntry(key, this.subject, message));
      this.requestWritten = true;
    }
    this.fanOut((key) => responseEntry(key, this.subject, undefined, message));
  }

  private fanOut(build: (hasher: AuditHasher) => Record<string, unknown>): void {
    if (this.devices.length === 0) return;
    let written = 0;
    for (const d of this.devices) {
      try {
        this.hashers ??= new Map();
        let hasher = this.hashers.get(d.key);
        if (!hasher) this.hashers.set(d.key, (hasher = new AuditHasher(d.key, d.tokens)));
        d.device.write(JSON.stringify(build(hasher)));
        written++;
      } catch (err) {
        this.logger.error({ device: d.entry.path, requestId: this.subject.req.requestId, error: errorCode(err) }, 'audit device failed to write an entry');
        this.onDeviceFailure(d.entry.path);
      }
    }
    if (written === 0) throw errors.AUDIT_FAILED();
  }
}
