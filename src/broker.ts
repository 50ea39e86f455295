// The broker: owns storage, the seal, tokens, policies, mounts and the lease
// manager, and dispatches every HTTP request to a route after the checks all
// routes share (sealed, token, policy, body schema, token uses).

import type { Logger } from 'pino';
import { allows, DEFAULT_POLICY, parsePolicy, type PathRule } from './auth/policy.ts';
import { TokenStore, type Token } from './auth/token-store.ts';
import { AuditBroker, type AuditRecord } from './audit/audit-broker.ts';
import type { BrokerConfig } from './config.ts';
import { EngineRegistry } from './engine/registry.ts';
import { errors, isBrokerError } from './errors.ts';
import type { Dispatcher } from './http/server.ts';
import { compilePattern, matchParts, type Method, type Reply, type RequestContext, type Route } from './http/route.ts';
import { compile, object, unknownFieldsWarning } from './http/schema.ts';
import { TokenExpiry } from './auth/token-expiry.ts';
import { readSealedEntry, writeSealedEntry } from './storage/sealed-entry.ts';
import { LeaseManager } from './leases/lease-manager.ts';
import { RevocationLoop } from './leases/revocation-loop.ts';
import { MountTable } from './mounts/mount-table.ts';
import { policyRoutes } from './routes/sys-policies.ts';
import { sealRoutes } from './routes/sys-seal.ts';
import { keyRoutes } from './routes/sys-keys.ts';
import { capabilityRoutes } from './routes/sys-capabilities.ts';
import { leaseRoutes } from './routes/sys-leases.ts';
import { mountRoutes } from './routes/sys-mounts.ts';
import { tokenRoutes } from './routes/auth-token.ts';
import { auditRoutes } from './routes/sys-audit.ts';
import { AuthTable } from './auth/auth-table.ts';
import { addressAllowed } from './auth/cidr.ts';
import { sysAuthRoutes } from './routes/sys-auth.ts';
import { tokenRoleRoutes } from './routes/auth-token-roles.ts';
import { metricsRoutes } from './routes/sys-metrics.ts';
import { openApiRoutes } from './routes/sys-openapi.ts';
import type { RouteGroup } from './openapi/openapi.ts';
import { BrokerMetrics } from './metrics/metrics.ts';
import { brokerMetricsSource } from './metrics/broker-source.ts';
import { Seal } from './seal/seal.ts';
import { preloadEngines } from './mounts/engine-warmup.ts';
import type { Storage } from './storage/storage.ts';
import { Standalone, type Cluster } from './ha/cluster.ts';

export const VERSION = '0.1.0';

/** The `route` label of requests that matched no route. */
const UNMATCHED = '(unmatched)';

interface CompiledRoute {
  route: Route;
  pattern: ReturnType<typeof compilePattern>;
  /** Strips undeclared body fields (returning their names) and validates the rest; PUT only. */
  validate: (value: unknown) => string[];
}

const NO_FIELDS = object({});

/**
 * Compile route patterns, and body schemas `schemas` 'now' or at their
 * 'first-use' (a route without a schema declares no body fields). Compiling
 * every schema of a mount takes tens of milliseconds, which the unseal that
 * attaches the mounts must not pay (issue 11: unseal → first credential
 * ≤ 100 ms); the core routes compile now, at start, so that sys/unseal does
 * not pay for the first compile either.
 */
export function compileRoutes(routes: Route[], schemas: 'now' | 'first-use' = 'first-use'): CompiledRoute[] {
  return routes.map((route) => {
    const schema = route.schema ?? NO_FIELDS;
    let validate = schemas === 'now' ? compile(schema) : undefined;
    return { route, pattern: compilePattern(route.pattern), validate: (value) => (validate ??= compile(schema))(value) };
  });
}

/**
 * The route for `path` and `method`: the first whose pattern and method
 * match (HEAD counting as GET), else the first whose pattern matches, so the
 * caller can answer 405. Two routes may share a path with different methods
 * (PUT sys/leases/lookup and LIST sys/leases/lookup/, which needs sudo).
 */
function findRoute(routes: CompiledRoute[], path: string, method: Method): { compiled: CompiledRoute; params: Record<string, string> } | undefined {
  let first: { compiled: CompiledRoute; params: Record<string, string> } | undefined;
  const parts = path.split('/');
  for (const compiled of routes) {
    const params = matchParts(compiled.pattern, parts);
    if (!params) continue;
    const methods = compiled.route.methods;
    if (methods.includes(method) || (method === 'HEAD' && methods.includes('GET'))) return { compiled, params };
    first ??= { compiled, params };
  }
  return first;
}

export class Broker implements Dispatcher {
  readonly seal: Seal;
  readonly tokens: TokenStore;
  readonly mounts: MountTable;
  readonly leases: LeaseManager;
  readonly engines: EngineRegistry;
  readonly audit: AuditBroker;
  readonly auths: AuthTable;
  /** Prometheus metrics; subsystems report events through it (a MetricsRecorder). */
  readonly metrics: BrokerMetrics;
  private readonly revocation: RevocationLoop;
  private readonly tokenExpiry: TokenExpiry;
  private readonly coreRoutes: CompiledRoute[];
  private readonly policyCache = new Map<string, PathRule[]>();
  private readonly unsealHooks: Array<() => Promise<void>> = [];
  /** Active or standby; a broker without HA is always active (see src/ha/cluster.ts). */
  private clusterRole: Cluster = new Standalone();

  constructor(
    readonly config: BrokerConfig,
    readonly storage: Storage,
    readonly logger: Logger,
  ) {
    this.seal = new Seal(storage, VERSION);
    this.tokens = new TokenStore(storage, () => this.seal.keys);
    this.engines = new EngineRegistry(config.plugins, config.baseDir);
    this.mounts = new MountTable(this);
    this.leases = new LeaseManager(this);
    this.metrics = new BrokerMetrics(brokerMetricsSource(this));
    this.audit = new AuditBroker(storage, () => this.seal.keys, logger, (device) => this.metrics.auditFailure(device));
    this.auths = new AuthTable({
      storage,
      tokens: this.tokens,
      logger,
      config,
      keys: () => this.seal.keys,
      readEntry: (path) => this.readEntry(path),
      writeEntry: (path, value) => this.writeEntry(path, value),
      revokeToken: (hash) => this.revokeToken(hash),
    });
    this.revocation = new RevocationLoop(this.leases, () => this.storage, logger, config.revocationInterval * 1000);
    this.tokenExpiry = new TokenExpiry(
      { expiredTokens: (limit) => this.tokens.expired(limit), revokeToken: (hash) => this.revokeToken(hash) },
      logger,
      config.revocationInterval * 1000,
    );
    this.coreRoutes = compileRoutes([...sealRoutes(this), ...keyRoutes(this), ...mountRoutes(this), ...leaseRoutes(this), ...policyRoutes(this), ...tokenRoutes(this), ...capabilityRoutes(this), ...auditRoutes(this), ...sysAuthRoutes(this), ...tokenRoleRoutes(this), ...metricsRoutes(this.metrics, config.unauthenticatedMetricsAccess), ...openApiRoutes(this, VERSION)], 'now');
  }

  /** The route table as dispatched now: core routes, then each mount's routes under its path (for the OpenAPI document). */
  routeGroups(): RouteGroup[] {
    const groups: RouteGroup[] = [{ prefix: '', tag: 'system', routes: this.coreRoutes.map((c) => c.route) }];
    for (const entry of this.mounts.list()) {
      const backend = this.mounts.backend(entry.path);
      if (backend) groups.push({ prefix: entry.path, tag: `${entry.type} (${entry.path})`, routes: backend.routes() });
    }
    for (const { entry, routes } of this.auths.routesByMount()) groups.push({ prefix: `auth/${entry.path}`, tag: `auth ${entry.type} (auth/${entry.path})`, routes });
    return groups;
  }

  async start(): Promise<void> {
    await this.engines.loadThirdParty();
    await this.seal.load();
    // While sealed: load the engines the connections used last time, so the first credential does not wait for them.
    if (this.seal.initialized) void preloadEngines(this.storage, this.engines, this.logger);
  }

  /** Set before start (HA, src/ha/ha-node.ts); without it the broker is always active. */
  setCluster(cluster: Cluster): void {
    this.clusterRole = cluster;
  }

  get cluster(): Cluster {
    return this.clusterRole;
  }

  /**
   * Called after a successful unseal. The active node's duties (load mounts,
   * recover interrupted work, start the loops and schedules) run now without
   * HA, and whenever this node becomes active with it.
   */
  async afterUnseal(): Promise<void> {
    await this.audit.load();
    // Duties started within this call (always without HA) find the audit devices just loaded.
    let auditFresh = true;
    const start = (): Promise<void> => {
      const reloadAudit = !auditFresh;
      auditFresh = false;
      return this.startDuties(reloadAudit);
    };
    try {
      await this.clusterRole.unsealed({ start, stop: () => this.stopDuties() });
    } finally {
      auditFresh = false;
    }
    for (const hook of this.unsealHooks) await hook();
  }

  /**
   * The active node's duties. The loads are independent reads of a handful
   * of entries each, run side by side (the PostgreSQL store answers them on
   * several connections); interrupted leases are found through the partial
   * index of unsettled ones, never by reading every lease. Engines are warmed
   * in the background.
   */
  private async startDuties(reloadAudit: boolean): Promise<void> {
    // Another node may have changed mounts, policies, tokens or audit devices while this one was a standby.
    this.policyCache.clear();
    this.tokens.forget();
    const loads = await Promise.allSettled([
      reloadAudit ? this.audit.load() : Promise.resolve(),
      this.mounts.load(),
      this.auths.load(),
      this.leases.recoverInterrupted(),
    ]);
    const failed = loads.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    this.revocation.start();
    this.tokenExpiry.start();
    this.mounts.resumeRotations();
    this.mounts.warmConnections();
  }

  private async stopDuties(): Promise<void> {
    this.revocation.stop();
    await this.revocation.idle();
    await this.tokenExpiry.stop();
    await this.mounts.close();
  }

  onUnseal(hook: () => Promise<void>): void {
    this.unsealHooks.push(hook);
  }

  async sealNow(): Promise<void> {
    await this.clusterRole.sealed();
    await this.stopDuties();
    this.auths.close();
    this.audit.close();
    this.policyCache.clear();
    this.tokens.forget();
    this.seal.seal();
  }

  async stop(): Promise<void> {
    if (!this.seal.sealed) await this.sealNow();
    await this.storage.close();
  }

  wakeRevocation(): void {
    this.revocation.wake();
  }

  /** A lease due at `dueAt` (ms since the epoch) was issued: the revocation loop passes no later than that. */
  revocationDueBy(dueAt: number): void {
    this.revocation.dueBy(dueAt);
  }

  /**
   * The token's policies when every one of them is parsed and cached already
   * (see policiesOf), else undefined: the per-request ACL check without an
   * async step. The same cache, so the same answer as policiesOf.
   */
  private cachedPoliciesOf(token: Token): PathRule[][] | undefined {
    const out: PathRule[][] = [];
    for (const name of token.policies) {
      if (name === 'root') continue;
      const rules = this.policyCache.get(name);
      if (!rules) return undefined;
      out.push(rules);
    }
    return out;
  }

  /** The policies a token carries, parsed (cached until changed or sealed). */
  async policiesOf(token: Token): Promise<PathRule[][]> {
    const out: PathRule[][] = [];
    for (const name of token.policies) {
      if (name === 'root') continue;
      let rules = this.policyCache.get(name);
      if (!rules) {
        const text = name === 'default' ? DEFAULT_POLICY : await this.readPolicy(name);
        rules = text === undefined ? [] : parsePolicy(text);
        this.policyCache.set(name, rules);
      }
      out.push(rules);
    }
    return out;
  }

  /** A stored entry, sealed by the barrier (see storage/sealed-entry.ts). */
  readEntry<T>(path: string): Promise<T | undefined> {
    return readSealedEntry<T>(this.storage, this.seal.keys, path);
  }

  writeEntry(path: string, value: unknown): Promise<void> {
    return writeSealedEntry(this.storage, this.seal.keys, path, value);
  }

  async readPolicy(name: string): Promise<string | undefined> {
    return (await this.readEntry<{ policy: string }>(`sys/policy/${name}`))?.policy;
  }

  invalidatePolicy(name: string): void {
    this.policyCache.delete(name);
  }

  async dispatch(req: Omit<RequestContext, 'params'>, tokenSecret: string | undefined): Promise<Reply | undefined> {
    const started = performance.now();
    // The route PATTERN that served the request (never the raw path: metrics labels stay bounded).
    const served = { route: UNMATCHED };
    let status = 500;
    try {
      const reply = await this.dispatchRoute(req, tokenSecret, served);
      status = reply ? (reply.status ?? 200) : 204;
      return reply;
    } catch (err) {
      const code = (err as { statusCode?: unknown }).statusCode;
      status = isBrokerError(err) ? err.statusCode : typeof code === 'number' && code >= 400 && code < 500 ? code : 500;
      throw err;
    } finally {
      this.metrics.request(req.method, served.route, status, (performance.now() - started) / 1000);
    }
  }

  private async dispatchRoute(req: Omit<RequestContext, 'params'>, tokenSecret: string | undefined, served: { route: string }): Promise<Reply | undefined> {
    const core = req.path.startsWith('sys/') || req.path.startsWith('auth/') || req.path === 'sys' || req.path === 'auth';
    let found = core ? findRoute(this.coreRoutes, req.path, req.method) : undefined;
    if (found) served.route = found.compiled.route.pattern;
    if (this.seal.sealed && !(found && found.compiled.route.sealedOk)) throw errors.SEALED();

    // Every request past the sealed gate is audited, failed and denied ones too.
    const audit = this.audit.begin(req, tokenSecret);
    let reply: Reply | undefined;
    try {
      reply = await this.handle(req, tokenSecret, core, found, audit, served);
    } catch (err) {
      audit.failed(err);
      throw err;
    }
    try {
      if (reply?.issuedToken) audit.subject.token = reply.issuedToken;
      audit.succeeded(reply);
    } catch (err) {
      // A credential is never handed out unaudited; its lease is revoked now
      // rather than left to its TTL.
      if (reply?.leaseId) await this.leases.expedite(reply.leaseId).catch(() => undefined);
      throw err;
    }
    return reply;
  }

  private async handle(
    req: Omit<RequestContext, 'params'>,
    tokenSecret: string | undefined,
    core: boolean,
    coreRoute: ReturnType<typeof findRoute>,
    audit: AuditRecord,
    served: { route: string },
  ): Promise<Reply | undefined> {
    let found = coreRoute;
    let mount: string | undefined;
    if (!core) {
      const hit = this.mounts.resolve(req.path);
      if (hit) {
        mount = hit.mount;
        audit.subject.mount = mount;
        found = findRoute(hit.routes, hit.rest, req.method);
        if (found) served.route = mount + found.compiled.route.pattern;
      }
    } else if (!found && req.path.startsWith('auth/')) {
      // An auth method mount (auth/approle/login, ...).
      const hit = this.auths.resolve(req.path.slice('auth/'.length));
      if (hit) {
        mount = `auth/${hit.mount}`;
        audit.subject.mount = mount;
        audit.subject.mountType = hit.type;
        found = findRoute(hit.routes, hit.rest, req.method);
      }
    }
    if (!found) throw errors.NOT_FOUND(req.path);
    const { compiled, params } = found;
    const route = compiled.route;
    // HEAD is GET without the body (RFC 9110 §9.3.2): it runs the read branch,
    // is checked against the policy as a read, and is refused where GET is
    // absent or changes state.
    const head = req.method === 'HEAD';
    const method = head ? 'GET' : req.method;
    if (!route.methods.includes(method) || (head && route.getChangesState)) throw errors.METHOD_NOT_ALLOWED(req.method, req.path);

    const ctx: RequestContext = { method, path: req.path, params, body: req.body, query: req.query, requestId: req.requestId, remoteAddress: req.remoteAddress };
    if (mount !== undefined) ctx.mount = mount;
    let exhausted = false;
    if (route.auth === 'token') {
      const token = tokenSecret ? await this.tokens.lookup(tokenSecret) : undefined;
      if (!token) throw errors.PERMISSION_DENIED();
      audit.subject.token = token;
      audit.subject.tokenSecretIdHash = token.idHash;
      // token_bound_cidrs: checked on every use, against the socket's address.
      if (!addressAllowed(token.boundCidrs, req.remoteAddress)) throw errors.PERMISSION_DENIED();
      if (!token.policies.includes('root') && !allows(this.cachedPoliciesOf(token) ?? (await this.policiesOf(token)), req.path, method, route.sudo === true)) {
        throw errors.PERMISSION_DENIED();
      }
      audit.request();
      // HEAD changes nothing, not even a token's remaining uses (an unlimited token has none to take).
      if (!head && token.usesLeft !== null) {
        const use = await this.tokens.use(token);
        if (!use.ok) throw errors.PERMISSION_DENIED();
        exhausted = use.exhausted;
      }
      ctx.token = token;
      ctx.tokenSecret = tokenSecret;
    } else audit.request();
    const ignored = method === 'PUT' ? compiled.validate(req.body) : [];
    try {
      const reply = await route.handler(ctx);
      // Raw bodies (sys/init, sys/unseal) have no warnings slot; like Vault's own handlers for them, unknown fields are just ignored.
      if (ignored.length === 0 || reply?.raw !== undefined) return reply;
      return { ...(reply ?? { data: null }), warnings: [...(reply?.warnings ?? []), unknownFieldsWarning(ignored)] };
    } finally {
      if (exhausted && ctx.token) await this.revokeToken(ctx.token.idHash);
    }
  }

  /** Revoke a token tree and every lease those tokens created. */
  async revokeToken(idHash: string): Promise<void> {
    const revoked = await this.tokens.revokeTree(idHash);
    let leases = 0;
    for (const hash of revoked) leases += await this.storage.expediteLeases({ tokenHash: hash }, Date.now());
    if (leases > 0) this.wakeRevocation();
  }
}
