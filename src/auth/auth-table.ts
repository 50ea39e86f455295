// The auth table: which auth method serves which path under auth/ (like
// mounts/mount-table.ts for secrets engines). Entries are sealed under
// core/auth/<path>; a method's own data is sealed under auth/<uuid>/. The
// token method is built in at auth/token/ and is not in this table.
//
// Disabling a mount forgets it first (no new logins), then revokes every
// token issued through it (each token's tree and leases, whose database users
// the revocation loop drops at once), then deletes its data.

import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { compileRoutes } from '../broker.ts';
import { errors, type BrokerError } from '../errors.ts';
import type { Reply, RequestContext, Route } from '../http/route.ts';
import { authBlock } from '../routes/auth-token.ts';
import type { Barrier } from '../seal/barrier.ts';
import type { Storage } from '../storage/storage.ts';
import { AppRoleMethod } from './methods/approle.ts';
import { JwtMethod } from './methods/jwt.ts';
import { KubernetesMethod } from './methods/kubernetes.ts';
import { UserpassMethod } from './methods/userpass.ts';
import { AUTH_METHOD_TYPES, type AuthMethod, type AuthMethodType, type AuthMountEntry, type EntryStore, type LoginResult, type MethodContext } from './method.ts';
import type { TokenStore } from './token-store.ts';

const PREFIX = 'core/auth/';
const MOUNT_PATH = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/$/;
const REVOKE_BATCH = 256;
/** How often expired AppRole secret IDs are deleted (found through their expiry index). */
const SECRET_ID_SWEEP_MS = 60_000;

/** What the auth table needs of the broker. */
export interface AuthHost {
  readonly storage: Storage;
  readonly tokens: TokenStore;
  readonly logger: Logger;
  readonly config: { defaultLeaseTtl: number; maxLeaseTtl: number };
  keys(): Barrier;
  readEntry<T>(path: string): Promise<T | undefined>;
  writeEntry(path: string, value: unknown): Promise<void>;
  /** Revoke a token, its children and their leases. */
  revokeToken(idHash: string): Promise<void>;
}

interface Mounted {
  entry: AuthMountEntry;
  method: AuthMethod;
  routes: ReturnType<typeof compileRoutes>;
}

export function normalizeAuthPath(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/*$/, '/');
}

export interface EnableRequest {
  type: string;
  description: string;
  defaultLeaseTtl: number;
  maxLeaseTtl: number;
  listingVisibility: string;
}

export class AuthTable {
  private mounts = new Map<string, Mounted>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly host: AuthHost) {
    host.tokens.setRenewCheck(async (token) => {
      const mounted = token.authMount === null ? undefined : this.mounts.get(token.authMount);
      if (!mounted) return `the auth method at auth/${token.authMount ?? ''} is gone`;
      return mounted.method.renewCheck?.(token.meta, token.policies);
    });
  }

  /** At unseal: attach every stored mount; start deleting expired secret IDs. */
  async load(): Promise<void> {
    this.close();
    for (const key of await this.host.storage.listEntries(PREFIX)) {
      const entry = await this.host.readEntry<AuthMountEntry>(key);
      if (entry) this.attach(entry);
    }
    this.sweeper = setInterval(() => {
      this.host.storage.deleteExpiredSecretIds(Date.now()).catch((err: unknown) => this.host.logger.error({ error: String(err) }, 'deleting expired secret IDs failed; will retry'));
    }, SECRET_ID_SWEEP_MS);
    this.sweeper.unref();
  }

  /** At seal. */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const m of this.mounts.values()) m.method.close?.();
    this.mounts.clear();
  }

  list(): AuthMountEntry[] {
    return [...this.mounts.values()].map((m) => m.entry).sort((a, b) => a.path.localeCompare(b.path));
  }

  get(path: string): AuthMountEntry | undefined {
    return this.mounts.get(normalizeAuthPath(path))?.entry;
  }

  /** Each enabled auth mount with its routes (relative to auth/<path>), for the OpenAPI document. */
  routesByMount(): Array<{ entry: AuthMountEntry; routes: Route[] }> {
    return this.list().map((entry) => ({ entry, routes: this.mounts.get(entry.path)!.routes.map((c) => c.route) }));
  }

  /** The method serving `path` (relative to auth/; longest prefix wins), with the rest of the path. */
  resolve(path: string): { mount: string; type: string; rest: string; routes: Mounted['routes'] } | undefined {
    let best: Mounted | undefined;
    const dir = path + '/';
    for (const m of this.mounts.values()) {
      if (dir.startsWith(m.entry.path) && (!best || m.entry.path.length > best.entry.path.length)) best = m;
    }
    if (!best) return undefined;
    return { mount: best.entry.path, type: best.entry.type, rest: path.slice(best.entry.path.length), routes: best.routes };
  }

  /** Enable a method at `rawPath` (relative to auth/). Throws 400s naming the field. */
  async enable(rawPath: string, req: EnableRequest): Promise<void> {
    const path = normalizeAuthPath(rawPath);
    if (!MOUNT_PATH.test(path)) throw errors.BAD_FIELD('path', 'may contain only letters, digits, "_", "." and "-", separated by "/"');
    if (path === 'token/' || path.startsWith('token/')) throw errors.MOUNT_RESERVED(`auth/${path}`);
    if (!AUTH_METHOD_TYPES.includes(req.type as AuthMethodType)) throw errors.AUTH_METHOD_TYPE(req.type);
    for (const existing of this.mounts.keys()) {
      if (existing.startsWith(path) || path.startsWith(existing)) throw errors.MOUNT_EXISTS(`auth/${existing}`);
    }
    checkTtls(req.defaultLeaseTtl, req.maxLeaseTtl, this.host.config.maxLeaseTtl);
    const entry: AuthMountEntry = {
      path,
      type: req.type as AuthMethodType,
      description: req.description,
      uuid: randomUUID(),
      accessor: `auth_${req.type}_${randomBytes(4).toString('hex')}`,
      createdAt: Date.now(),
      defaultLeaseTtl: req.defaultLeaseTtl,
      maxLeaseTtl: req.maxLeaseTtl,
      listingVisibility: req.listingVisibility,
    };
    await this.host.writeEntry(PREFIX + path, entry);
    this.attach(entry);
    this.host.logger.info({ path: `auth/${path}`, type: entry.type }, 'auth method enabled');
  }

  /** Tune TTLs, description, listing visibility (only the fields given). */
  async tune(rawPath: string, changes: Partial<Omit<EnableRequest, 'type'>>): Promise<void> {
    const mounted = this.mounts.get(normalizeAuthPath(rawPath));
    if (!mounted) throw errors.AUTH_MOUNT_NOT_FOUND(`auth/${normalizeAuthPath(rawPath)}`);
    const entry = { ...mounted.entry, ...changes };
    checkTtls(entry.defaultLeaseTtl, entry.maxLeaseTtl, this.host.config.maxLeaseTtl);
    await this.host.writeEntry(PREFIX + entry.path, entry);
    mounted.entry = entry;
  }

  /** Disable: no new logins, every token issued through the mount revoked (with its leases), its data deleted. Unknown path: no-op. */
  async disable(rawPath: string): Promise<number> {
    const path = normalizeAuthPath(rawPath);
    const mounted = this.mounts.get(path);
    if (!mounted) return 0;
    this.mounts.delete(path);
    mounted.method.close?.();
    let revoked = 0;
    for (;;) {
      const batch = await this.host.storage.tokensOfAuthMount(path, REVOKE_BATCH);
      for (const hash of batch) await this.host.revokeToken(hash);
      revoked += batch.length;
      if (batch.length < REVOKE_BATCH) break;
    }
    await this.host.storage.deleteSecretIds(mounted.entry.uuid);
    for (const key of await this.host.storage.listEntries(`auth/${mounted.entry.uuid}/`)) await this.host.storage.deleteEntry(key);
    await this.host.storage.deleteEntry(PREFIX + path);
    this.host.logger.info({ path: `auth/${path}`, type: mounted.entry.type, revokedTokens: revoked }, 'auth method disabled');
    return revoked;
  }

  private attach(entry: AuthMountEntry): void {
    const method = this.createMethod(entry);
    this.mounts.set(entry.path, { entry, method, routes: compileRoutes(method.routes()) });
  }

  private createMethod(entry: AuthMountEntry): AuthMethod {
    const ctx = this.context(entry);
    switch (entry.type) {
      case 'approle':
        return new AppRoleMethod(ctx);
      case 'jwt':
      case 'oidc':
        return new JwtMethod(ctx);
      case 'kubernetes':
        return new KubernetesMethod(ctx);
      case 'userpass':
        return new UserpassMethod(ctx);
    }
  }

  /** The entry as it is now (tune replaces it). */
  private current(entry: AuthMountEntry): AuthMountEntry {
    return this.mounts.get(entry.path)?.entry ?? entry;
  }

  private context(entry: AuthMountEntry): MethodContext {
    const host = this.host;
    const base = `auth/${entry.uuid}/`;
    const store: EntryStore = {
      get: <T>(key: string) => host.readEntry<T>(base + key),
      put: (key, value) => host.writeEntry(base + key, value),
      delete: (key) => host.storage.deleteEntry(base + key),
      list: async (prefix) => (await host.storage.listEntries(base + prefix)).map((k) => k.slice(base.length + prefix.length)),
    };
    return {
      mount: entry,
      store,
      secretIds: host.storage,
      logger: host.logger,
      hmac: (value) => host.keys().hmac(value),
      encrypt: (identity, value) => host.keys().encryptJSON(identity, value),
      decrypt: <T>(identity: string, sealed: Buffer) => host.keys().decryptJSON<T>(identity, sealed),
      issue: (login, req) => this.issue(this.current(entry), login, req),
      loginFailed: (req: RequestContext, reason: string, error: BrokerError) => {
        host.logger.warn({ mount: `auth/${entry.path}`, type: entry.type, requestId: req.requestId, remoteAddress: req.remoteAddress, reason }, 'login failed');
        return error;
      },
    };
  }

  /**
   * A token for a successful login (an orphan, as in Vault). TTL: the role's
   * token_ttl, else the mount's default, else the broker's; the ceiling for
   * renewals: token_max_ttl, the mount's max and the broker's max, lowest wins.
   * display_name: the mount path with "/" as "-", then the method's name
   * (Vault: "kubernetes-<namespace>-<service account>").
   */
  private async issue(entry: AuthMountEntry, login: LoginResult, req: RequestContext): Promise<Reply> {
    const system = this.host.config;
    const p = login.params;
    const policies = [...p.policies];
    if (!p.noDefaultPolicy && !policies.includes('default')) policies.push('default');
    const mountMax = entry.maxLeaseTtl > 0 ? Math.min(entry.maxLeaseTtl, system.maxLeaseTtl) : system.maxLeaseTtl;
    const maxTtl = p.maxTtl > 0 ? Math.min(p.maxTtl, mountMax) : mountMax;
    const defaultTtl = entry.defaultLeaseTtl > 0 ? entry.defaultLeaseTtl : system.defaultLeaseTtl;
    const source = entry.path.replace(/\//g, '-');
    const displayName = (source + login.displayName).replace(/-+$/, '');
    const { secret, token, warnings } = await this.host.tokens.create({
      policies,
      ...(p.ttl > 0 ? { ttl: p.ttl } : {}),
      defaultTtl: Math.min(defaultTtl, maxTtl),
      maxTtl,
      ...(p.explicitMaxTtl > 0 ? { explicitMaxTtl: p.explicitMaxTtl } : {}),
      ...(p.period > 0 ? { period: p.period } : {}),
      renewable: true,
      numUses: p.numUses,
      displayName,
      meta: login.metadata,
      path: req.path,
      parent: null,
      boundCidrs: p.boundCidrs,
      authMount: entry.path,
    });
    // The mount was disabled while this login ran (after its tokens were revoked): take the token back.
    if (this.mounts.get(entry.path)?.entry.uuid !== entry.uuid) {
      await this.host.revokeToken(token.idHash);
      throw errors.AUTH_MOUNT_NOT_FOUND(`auth/${entry.path}`);
    }
    return {
      auth: { ...authBlock(secret, token), mount_type: entry.type },
      issuedToken: token,
      warnings: [...(login.warnings ?? []), ...warnings],
    };
  }
}

function checkTtls(defaultTtl: number, maxTtl: number, systemMax: number): void {
  if (maxTtl > systemMax) throw errors.BAD_FIELD('max_lease_ttl', `cannot be more than the broker's max_lease_ttl (${systemMax}s)`);
  if (defaultTtl > systemMax) throw errors.BAD_FIELD('default_lease_ttl', `cannot be more than the broker's max_lease_ttl (${systemMax}s)`);
  if (maxTtl > 0 && defaultTtl > maxTtl) throw errors.BAD_FIELD('default_lease_ttl', 'cannot be more than max_lease_ttl');
}
