// `dbroker agent`: wires auto-auth, the secrets it holds, the encrypted
// persistent cache, templates, exec and the local API proxy (see
// README.md, "dbroker agent"). Startup order: restore the cache (so a restart
// while the broker is down serves what was valid), start auto-auth and the
// listener, obtain the configured secrets, render templates, start the child.

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { BrokerClient } from '../client/broker-client.ts';
import type { AgentConfig } from './agent-config.ts';
import { ApiProxy } from './api-proxy.ts';
import { AutoAuth, type TokenState } from './auto-auth.ts';
import { BrokerHealth } from './broker-health.ts';
import { ExecSupervisor } from './exec-supervisor.ts';
import { CacheDecryptError, deriveKey, EncryptedCache, loadCacheKey } from './persistent-cache.ts';
import { AUTO_KEY, SecretManager, type CachedSecret } from './secret-manager.ts';
import { renderTemplate, type SecretView } from './template.ts';
import { TemplateRunner } from './template-runner.ts';

/** The persistent cache document (encrypted at rest). */
interface CacheDocument {
  version: 1;
  savedAt: number;
  token?: TokenState;
  secrets: CachedSecret[];
}

export interface RunningAgent {
  /** Where the listener is (URL or socket path), '' without one. */
  address: string;
  status(): Record<string, unknown>;
  /** Stop everything (the child first), save the cache. */
  close(): Promise<void>;
  /** Resolves with the exit code the process should use when the agent ends by itself (exec child exited). */
  exited: Promise<number>;
}

/** Start the agent with `config`. Throws ConfigError for a missing/invalid cache key. */
export async function startAgent(config: AgentConfig, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RunningAgent> {
  const started = Date.now();
  const master = config.persist ? loadCacheKey(config.persist, env) : undefined;
  // The key stays out of the environment of the exec child and template commands.
  if (config.persist?.keyEnv) delete env[config.persist.keyEnv];
  const cache = config.persist && master ? new EncryptedCache<CacheDocument>(config.persist.dir, master) : undefined;
  const indexKey = master ? deriveKey(master, 'cache-index') : randomBytes(32);
  let restored: CacheDocument | undefined;
  let restoredFrom = false;
  try {
    restored = cache?.load();
    if (restored && (restored.version !== 1 || !Array.isArray(restored.secrets))) {
      log.error('persistent cache has an unknown format: starting without it');
      restored = undefined;
    }
    restoredFrom = restored !== undefined;
  } catch (err) {
    if (!(err instanceof CacheDecryptError)) throw err;
    log.error({ err: err.message }, 'persistent cache unreadable: starting without it');
  }

  const health = new BrokerHealth();
  const backoff = { minMs: config.broker.minBackoffMs, maxMs: config.broker.maxBackoffMs };
  const clientOpts = { address: config.broker.address, timeoutMs: config.broker.timeoutMs, observe: health.observe };
  // The agent's client carries only the auto-auth token (never VAULT_TOKEN from the environment).
  const autoClient = new BrokerClient({ ...clientOpts, token: '' });
  autoClient.token = undefined;

  let persistTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const persistNow = async (): Promise<void> => {
    if (!cache) return;
    const doc: CacheDocument = { version: 1, savedAt: Date.now(), ...(auth?.state ? { token: auth.state } : {}), secrets: manager.snapshot() };
    await cache.save(doc).catch((err: Error) => log.error({ err: err.message }, 'cannot write the persistent cache'));
  };
  // At most one save per 20 ms; each writes the state as it is then.
  const persist = (): void => {
    if (!cache || closed || persistTimer) return;
    persistTimer = setTimeout(() => {
      persistTimer = undefined;
      void persistNow();
    }, 20);
  };

  const auth = config.autoAuth ? new AutoAuth(config.autoAuth.method, config.autoAuth.sinks, { client: autoClient, backoff, log, onToken: persist }) : undefined;
  const clients = new Map<string, BrokerClient>();
  let exitResolve!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (exitResolve = resolve));

  const manager: SecretManager = new SecretManager({
    autoClient,
    clientFor(token) {
      let c = clients.get(token);
      if (!c) {
        if (clients.size > 1000) clients.clear();
        c = new BrokerClient({ ...clientOpts, token });
        clients.set(token, c);
      }
      return c;
    },
    reauthenticate: () => auth?.refused() ?? Promise.resolve(),
    authReady: auth?.ready ?? Promise.resolve(),
    backoff,
    log,
    onChange: (path) => queueDelivery(path),
    onPersist: persist,
  });

  const runner = new TemplateRunner(config.templates, log);
  const exec = config.exec ? new ExecSupervisor(config.exec, log, (code) => exitResolve(code)) : undefined;
  const configuredPaths = [...new Set([...config.templates.flatMap((t) => t.template.secrets), ...Object.values(config.envTemplates).flatMap((t) => t.secrets)])];
  const lookup = (path: string): SecretView | undefined => manager.lookup(AUTO_KEY, path)?.response as SecretView | undefined;
  const envNow = (): Record<string, string> | undefined => {
    const out: Record<string, string> = {};
    try {
      for (const [name, t] of Object.entries(config.envTemplates)) out[name] = renderTemplate(t, lookup);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'exec: environment not rendered');
      return undefined;
    }
    return out;
  };

  // Deliveries run one at a time; changes arriving meanwhile are merged.
  let delivering: Promise<void> = Promise.resolve();
  let ready = false;
  const pendingPaths = new Set<string>();
  let deliveries = 0;
  const queueDelivery = (path: string): void => {
    if (!ready) return;
    pendingPaths.add(path);
    delivering = delivering.then(async () => {
      if (pendingPaths.size === 0 || closed) return;
      const paths = [...pendingPaths];
      pendingPaths.clear();
      let changed = 0;
      for (const p of paths) changed += await runner.render(lookup, p);
      const envChanged = paths.some((p) => Object.values(config.envTemplates).some((t) => t.secrets.includes(p)));
      if (exec && (changed > 0 || envChanged)) {
        const e = envNow();
        if (e) {
          deliveries++;
          await exec.secretsChanged(e);
        }
      }
    });
  };

  const startedAt = new Date(started).toISOString();
  const status = (): Record<string, unknown> => {
    const now = Date.now();
    const reasons: string[] = [];
    if (health.reachable === false) reasons.push(`broker unreachable: ${health.lastError}`);
    if (auth && !auth.state) reasons.push(`not authenticated${auth.lastError ? `: ${auth.lastError}` : ''}`);
    if (auth?.state?.expireAt && auth.state.expireAt <= now) reasons.push('the agent token has expired');
    for (const p of configuredPaths) if (!manager.lookup(AUTO_KEY, p)) reasons.push(`no valid credentials for ${p}${manager.lastError.get(p) ? `: ${manager.lastError.get(p)}` : ''}`);
    for (const [dest, err] of runner.errors) reasons.push(`template ${dest}: ${err}`);
    return {
      status: reasons.length ? 'degraded' : 'ok',
      reasons,
      started_at: startedAt,
      restored_from_cache: restoredFrom,
      broker: {
        address: config.broker.address,
        reachable: health.reachable ?? null,
        consecutive_failures: health.consecutiveFailures,
        last_error: health.lastError ?? null,
        last_error_time: health.lastErrorAt ? new Date(health.lastErrorAt).toISOString() : null,
        last_success_time: health.lastSuccessAt ? new Date(health.lastSuccessAt).toISOString() : null,
      },
      auth: auth
        ? {
            method: config.autoAuth!.method.type,
            authenticated: auth.state !== undefined,
            logins: auth.logins,
            expires_in: auth.state?.expireAt ? Math.max(0, Math.floor((auth.state.expireAt - now) / 1000)) : null,
          }
        : null,
      secrets: manager.snapshot().map((s) => ({
        path: s.path,
        configured: s.configured,
        proxied_for_agent_token: s.key === AUTO_KEY,
        leased: s.response.lease_id !== '',
        expires_in: s.expireAt === null ? null : Math.max(0, Math.floor((s.expireAt - now) / 1000)),
        renewals: s.renewals,
      })),
      counters: {
        renewals: manager.stats.renewals,
        replacements: manager.stats.replacements,
        refused_renewals: manager.stats.refusedRenewals,
        fetches: manager.stats.fetches,
        template_renders: runner.renders,
        template_commands: runner.commandRuns,
        deliveries,
        proxy_requests: proxy.counters.requests,
        proxy_cache_hits: proxy.counters.cacheHits,
        broker_failures: health.failuresTotal,
      },
      exec: exec ? { pid: exec.pid ?? null, restarts: exec.restarts, signals_sent: exec.signalsSent } : null,
    };
  };
  const metrics = (): string => {
    const s = status() as { status: string };
    const lines: Array<[string, string, number]> = [
      ['dbroker_agent_degraded', 'gauge', s.status === 'ok' ? 0 : 1],
      ['dbroker_agent_broker_reachable', 'gauge', health.reachable === false ? 0 : 1],
      ['dbroker_agent_broker_failures_total', 'counter', health.failuresTotal],
      ['dbroker_agent_lease_renewals_total', 'counter', manager.stats.renewals],
      ['dbroker_agent_credential_replacements_total', 'counter', manager.stats.replacements],
      ['dbroker_agent_refused_renewals_total', 'counter', manager.stats.refusedRenewals],
      ['dbroker_agent_cached_secrets', 'gauge', manager.snapshot().length],
      ['dbroker_agent_proxy_requests_total', 'counter', proxy.counters.requests],
      ['dbroker_agent_proxy_cache_hits_total', 'counter', proxy.counters.cacheHits],
      ['dbroker_agent_auth_logins_total', 'counter', auth?.logins ?? 0],
    ];
    return lines.map(([name, type, value]) => `# TYPE ${name} ${type}\n${name} ${value}\n`).join('');
  };

  const proxy = new ApiProxy({
    config,
    manager,
    agentToken: () => auth?.state?.token,
    isAgentToken: (t) => auth?.isAgentToken(t) ?? false,
    indexKey,
    status,
    metrics,
    observe: health.observe,
    log,
  });

  if (restored) {
    log.info({ secrets: restored.secrets.length, saved_at: new Date(restored.savedAt).toISOString() }, 'restored the persistent cache');
    manager.restore(restored.secrets);
  }
  manager.manage(configuredPaths);
  auth?.start(restored?.token);
  await proxy.listen();
  if (proxy.address) log.info({ address: proxy.address }, 'agent listening');

  // First delivery: once every configured secret is available (from the cache or the broker).
  const firstDelivery = (async () => {
    while (!closed && !configuredPaths.every((p) => manager.lookup(AUTO_KEY, p))) await new Promise((r) => setTimeout(r, 100));
    if (closed) return;
    await runner.render(lookup);
    ready = true;
    if (exec) {
      let e = envNow();
      while (!e && !closed) {
        await new Promise((r) => setTimeout(r, 500));
        e = envNow();
      }
      if (e && !closed) exec.start(e);
    }
  })();

  return {
    address: proxy.address,
    status,
    exited,
    async close() {
      if (closed) return;
      closed = true;
      await firstDelivery.catch(() => undefined);
      await delivering.catch(() => undefined);
      await exec?.stop();
      await proxy.close();
      manager.stop();
      auth?.stop();
      clearTimeout(persistTimer);
      await persistNow();
    },
  };
}
