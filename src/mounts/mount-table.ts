// The mount table: which path serves a database engine. `database/` exists
// from init; more are added with sys/mounts/:path. Entries are sealed.

import { randomUUID } from 'node:crypto';
import type { Broker } from '../broker.ts';
import { compileRoutes } from '../broker.ts';
import { DatabaseBackend } from '../database/database-backend.ts';
import { errors } from '../errors.ts';
import type { Barrier } from '../seal/barrier.ts';
import { writeSealedEntry } from '../storage/sealed-entry.ts';
import { warmConnections } from './engine-warmup.ts';
import { applyMountConfig, DEFAULT_MOUNT_CONFIG, effectiveTtls, type MountConfig, type MountConfigChange } from './mount-config.ts';

export interface MountEntry {
  path: string;
  type: 'database';
  description: string;
  uuid: string;
  accessor: string;
  createdAt: number;
  /** Lease TTLs and force_no_cache (absent in entries written before mount tuning existed). */
  config?: MountConfig;
  /** Vault's "local" (not replicated): every dbroker mount is, so this is only shown back. */
  local?: boolean;
}

/** The settings a mount is created with. */
export interface MountOptions {
  description: string;
  config: MountConfigChange;
  local: boolean;
}

/** A mount's config, with the defaults for entries that predate it. */
export function mountConfigOf(entry: MountEntry): MountConfig {
  return { ...DEFAULT_MOUNT_CONFIG, ...entry.config };
}

const PREFIX = 'core/mounts/';
const RESERVED = ['sys/', 'auth/', 'cubbyhole/', 'identity/'];
const MOUNT_PATH = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/$/;

export function normalizeMountPath(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/*$/, '/');
}

interface Mounted {
  entry: MountEntry;
  backend: DatabaseBackend;
  routes: ReturnType<typeof compileRoutes>;
  /** Set when its backend starts closing (seal, standby, unmount): background work started before must not open anything on it. */
  closing?: boolean;
}

export class MountTable {
  private mounts = new Map<string, Mounted>();

  constructor(private readonly broker: Broker) {}

  private newEntry(path: string, description: string): MountEntry {
    return { path, type: 'database', description, uuid: randomUUID(), accessor: `database_${randomUUID().slice(0, 8)}`, createdAt: Date.now() };
  }

  async createDefaults(barrier: Barrier): Promise<void> {
    const entry = this.newEntry('database/', 'database secrets engine');
    await writeSealedEntry(this.broker.storage, barrier, PREFIX + entry.path, entry);
  }

  async load(): Promise<void> {
    await this.close();
    for (const key of await this.broker.storage.listEntries(PREFIX)) {
      const entry = await this.broker.readEntry<MountEntry>(key);
      if (entry) this.attach(entry);
    }
  }

  private attach(entry: MountEntry): void {
    const backend = new DatabaseBackend(this.broker, entry.path);
    backend.rotation.start();
    this.mounts.set(entry.path, { entry, backend, routes: compileRoutes(backend.routes()) });
  }

  /** Settle interrupted root rotations and arm schedules, in the background. */
  resumeRotations(): void {
    for (const m of this.mounts.values()) {
      void m.backend.rotation.resume().catch((err: unknown) => this.broker.logger.error({ mount: m.entry.path, err: String(err) }, 'resuming root rotations failed'));
    }
  }

  /** Open every mount's connections in the background (engine-warmup.ts); never fails or delays the caller. */
  warmConnections(): void {
    const mounts = [...this.mounts.values()].map(({ entry, backend }) => ({
      mount: entry.path,
      connections: backend.connections,
      isOpen: () => {
        const now = this.mounts.get(entry.path);
        return now?.backend === backend && !now.closing && !this.broker.seal.sealed;
      },
    }));
    void warmConnections(mounts, { storage: this.broker.storage, engines: this.broker.engines, logger: this.broker.logger });
  }

  list(): MountEntry[] {
    return [...this.mounts.values()].map((m) => m.entry).sort((a, b) => a.path.localeCompare(b.path));
  }

  backend(path: string): DatabaseBackend | undefined {
    return this.mounts.get(path)?.backend;
  }

  /** The mount serving `path` (longest prefix wins), with the rest of the path. */
  resolve(path: string): { mount: string; rest: string; routes: Mounted['routes'] } | undefined {
    let best: Mounted | undefined;
    const dir = path + '/';
    for (const m of this.mounts.values()) {
      if (dir.startsWith(m.entry.path) && (!best || m.entry.path.length > best.entry.path.length)) best = m;
    }
    if (!best) return undefined;
    return { mount: best.entry.path, rest: path.slice(best.entry.path.length), routes: best.routes };
  }

  /**
   * Mount a database engine at `rawPath`. Throws BAD_FIELD (path, default_lease_ttl),
   * MOUNT_RESERVED, MOUNT_TYPE or MOUNT_EXISTS; nothing is stored then.
   */
  async mount(rawPath: string, type: string, opts: MountOptions): Promise<void> {
    const path = normalizeMountPath(rawPath);
    if (!MOUNT_PATH.test(path)) throw errors.BAD_FIELD('path', 'may contain only letters, digits, "_", "." and "-", separated by "/"');
    if (RESERVED.some((r) => path.startsWith(r))) throw errors.MOUNT_RESERVED(path);
    if (type !== 'database') throw errors.MOUNT_TYPE(type);
    for (const existing of this.mounts.keys()) {
      if (existing.startsWith(path) || path.startsWith(existing)) throw errors.MOUNT_EXISTS(existing);
    }
    const config = applyMountConfig(DEFAULT_MOUNT_CONFIG, opts.config, this.broker.config.maxLeaseTtl);
    const entry: MountEntry = { ...this.newEntry(path, opts.description), config, ...(opts.local ? { local: true } : {}) };
    await this.broker.writeEntry(PREFIX + path, entry);
    this.attach(entry);
  }

  /** The mount entry at `rawPath` (exactly), or undefined. */
  get(rawPath: string): MountEntry | undefined {
    return this.mounts.get(normalizeMountPath(rawPath))?.entry;
  }

  /**
   * sys/mounts/:path/tune: change a mount's TTLs, force_no_cache or
   * description. Throws MOUNT_NOT_FOUND, or BAD_FIELD when the result breaks
   * Vault's default ≤ max rule (then nothing changes). Leases already issued
   * keep their max expiry; new leases and renewals of roles without their own
   * TTLs follow the new values.
   */
  async tune(rawPath: string, change: MountConfigChange): Promise<MountEntry> {
    const path = normalizeMountPath(rawPath);
    const mounted = this.mounts.get(path);
    if (!mounted) throw errors.MOUNT_NOT_FOUND(path);
    const config = applyMountConfig(mountConfigOf(mounted.entry), change, this.broker.config.maxLeaseTtl);
    const entry: MountEntry = { ...mounted.entry, config, ...(change.description !== undefined ? { description: change.description } : {}) };
    await this.broker.writeEntry(PREFIX + path, entry);
    mounted.entry = entry;
    return entry;
  }

  /**
   * The lease TTLs in force on mount `path` (seconds): its own, else the
   * broker-wide default_lease_ttl/max_lease_ttl (Vault's system view).
   * Throws MOUNT_NOT_FOUND.
   */
  ttls(path: string): { defaultTtl: number; maxTtl: number } {
    const mounted = this.mounts.get(path);
    if (!mounted) throw errors.MOUNT_NOT_FOUND(path);
    return effectiveTtls(mountConfigOf(mounted.entry), this.broker.config);
  }

  /** Unmount: revoke the mount's leases first; refuse while any revocation fails. */
  async unmount(rawPath: string): Promise<void> {
    const path = normalizeMountPath(rawPath);
    const mounted = this.mounts.get(path);
    if (!mounted) return;
    await this.broker.leases.revokeMount(path);
    mounted.closing = true;
    await mounted.backend.close();
    for (const key of await this.broker.storage.listEntries(`mounts/${path}`)) await this.broker.storage.deleteEntry(key);
    await this.broker.storage.deleteEntry(PREFIX + path);
    this.mounts.delete(path);
  }

  async close(): Promise<void> {
    for (const m of this.mounts.values()) m.closing = true;
    for (const m of this.mounts.values()) await m.backend.close();
    this.mounts.clear();
  }
}
