// The agent's listener: the broker's API for local clients (VAULT_ADDR points
// here) plus the agent's own /agent/v1/status and /agent/v1/metrics.
// A GET (no query string) of a leased secret is answered from the cache for
// the same token + path while the lease is valid (header X-Cache: HIT);
// otherwise the request goes to the broker as is, and a leased answer is
// cached and kept renewed. With use_auto_auth_token, a request without a
// token (or every request, with "force") uses the agent's token. Revoking a
// lease through the proxy drops it from the cache. When the broker cannot be
// reached, cached secrets are still served; anything else is a 502.

import { randomUUID } from 'node:crypto';
import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { SecretResponse } from '../client/broker-client.ts';
import { BrokerRequestError, BrokerUnreachableError } from '../client/errors.ts';
import type { AgentConfig } from './agent-config.ts';
import { AUTO_KEY, tokenKey, type CachedSecret, type SecretManager } from './secret-manager.ts';

/** Request bodies larger than this are refused (413); the broker's own limit is smaller. */
const MAX_BODY = 32 * 1024 * 1024;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host', 'content-length', 'proxy-connection', 'te', 'trailer']);

export interface ProxyDeps {
  config: AgentConfig;
  manager: SecretManager;
  /** The agent's token now (undefined before the first login). */
  agentToken(): string | undefined;
  isAgentToken(token: string | undefined): boolean;
  indexKey: Buffer;
  status(): Record<string, unknown>;
  metrics(): string;
  /** Told the outcome of each pass-through request (broker health). */
  observe(err: Error | undefined): void;
  log: Logger;
}

export interface ProxyCounters {
  requests: number;
  cacheHits: number;
  brokerErrors: number;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { 'content-type': 'application/json' } : {}), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** A cached response as served: a fresh request id and the lease's remaining TTL. */
function fromCache(entry: CachedSecret): SecretResponse {
  const remaining = entry.expireAt === null ? entry.response.lease_duration : Math.max(0, Math.floor((entry.expireAt - Date.now()) / 1000));
  const data = entry.response.data && !entry.response.lease_id && typeof entry.response.data['ttl'] === 'number' ? { ...entry.response.data, ttl: remaining } : entry.response.data;
  return { ...entry.response, request_id: randomUUID(), ...(entry.response.lease_id ? { lease_duration: remaining } : {}), data };
}

/** The lease id a revoke request names (body `lease_id`, or the path after revoke/), or undefined. */
function revokedLease(path: string, body: Buffer): string | undefined {
  const m = /^sys\/(?:leases\/)?revoke(?:\/(.+))?$/.exec(path);
  if (!m) return undefined;
  if (m[1]) return decodeURIComponent(m[1]);
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { lease_id?: unknown };
    return typeof parsed.lease_id === 'string' ? parsed.lease_id : undefined;
  } catch {
    return undefined;
  }
}

export class ApiProxy {
  private server: Server | undefined;
  readonly counters: ProxyCounters = { requests: 0, cacheHits: 0, brokerErrors: 0 };

  constructor(private readonly deps: ProxyDeps) {}

  /** The URL clients use (http://host:port), or the socket path. */
  address = '';

  /** Listen on the configured loopback port or Unix socket (mode 0600). */
  async listen(): Promise<void> {
    const l = this.deps.config.listener;
    if (!l) return;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        this.deps.log.error({ err: err.message }, 'proxy: request failed');
        if (!res.headersSent) send(res, 500, { errors: ['dbroker agent: internal error'] });
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (l.type === 'unix') {
        // Replace a stale socket from an earlier run; never remove anything else.
        if (lstatSync(l.path, { throwIfNoEntry: false })?.isSocket()) rmSync(l.path);
        server.listen(l.path, () => resolve());
      } else server.listen(l.port, l.host, () => resolve());
    });
    if (l.type === 'unix') chmodSync(l.path, 0o600);
    const a = server.address();
    this.address = typeof a === 'string' ? a : `http://${l.type === 'tcp' && l.host.includes(':') ? `[${l.host}]` : (a?.address ?? '')}:${a?.port}`;
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const method = (req.method ?? 'GET').toUpperCase();
    if (url.pathname === '/agent/v1/status' || url.pathname === '/agent/v1/metrics') {
      if (method !== 'GET' && method !== 'HEAD') return send(res, 405, { errors: ['use GET'] }, { allow: 'GET, HEAD' });
      if (url.pathname === '/agent/v1/status') return send(res, 200, this.deps.status());
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(method === 'HEAD' ? undefined : this.deps.metrics());
    }
    if (!url.pathname.startsWith('/v1/')) return send(res, 404, { errors: ['not found: the agent serves /v1/* (proxied to the broker) and /agent/v1/status, /agent/v1/metrics'] });
    this.counters.requests++;
    let body: Buffer;
    try {
      body = await readBody(req);
    } catch (err) {
      return send(res, (err as { status?: number }).status ?? 400, { errors: [(err as Error).message] });
    }
    const path = url.pathname.slice('/v1/'.length).replace(/\/+$/, '');
    const header = req.headers['x-vault-token'];
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    let token = (Array.isArray(header) ? header[0] : header) || bearer || undefined;
    const use = this.deps.config.apiProxy.useAutoAuthToken;
    if (use === 'force' || (use === true && !token)) token = this.deps.agentToken() ?? token;
    const isAgent = this.deps.isAgentToken(token);
    const key = isAgent ? AUTO_KEY : token ? tokenKey(this.deps.indexKey, token) : undefined;
    const cacheable = method === 'GET' && url.search === '' && key !== undefined;

    if (cacheable) {
      const hit = this.deps.manager.lookup(key, path);
      if (hit) {
        this.counters.cacheHits++;
        return send(res, 200, fromCache(hit), { 'x-cache': 'HIT' });
      }
      if (isAgent && this.deps.manager.isConfigured(path)) {
        // The agent's own secret: one set of credentials for templates, exec and proxy clients.
        try {
          const entry = await this.deps.manager.current(path, this.deps.config.broker.timeoutMs);
          return send(res, 200, fromCache(entry), { 'x-cache': 'MISS' });
        } catch (err) {
          if (err instanceof BrokerRequestError) return send(res, err.status, { errors: err.errors });
          this.counters.brokerErrors++;
          return send(res, 502, { errors: [`dbroker agent: broker unreachable and no valid cached secret for ${path}: ${(err as Error).message}`] });
        }
      }
    }

    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || name === 'x-vault-token' || name === 'authorization') continue;
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    if (token) headers['x-vault-token'] = token;
    let upstream: Response;
    let text: Buffer;
    try {
      upstream = await fetch(`${this.deps.config.broker.address}${url.pathname}${url.search}`, {
        method,
        headers,
        ...(body.length > 0 && method !== 'GET' && method !== 'HEAD' ? { body } : {}),
        signal: AbortSignal.timeout(this.deps.config.broker.timeoutMs),
        redirect: 'manual',
      });
      text = Buffer.from(await upstream.arrayBuffer());
    } catch (err) {
      this.counters.brokerErrors++;
      this.deps.observe(new BrokerUnreachableError(method, path, err));
      return send(res, 502, { errors: [`dbroker agent: broker unreachable: ${(err as Error).message}`] });
    }
    this.deps.observe(upstream.status >= 500 || upstream.status === 429 ? new BrokerRequestError(upstream.status, [], method, path, '') : undefined);
    const out: Record<string, string> = {};
    upstream.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.has(name) && name !== 'content-encoding') out[name] = value;
    });
    if (cacheable && upstream.status === 200) {
      try {
        const parsed = JSON.parse(text.toString('utf8')) as SecretResponse;
        if (parsed.lease_id && parsed.lease_duration > 0) {
          this.deps.manager.adopt(key, isAgent ? undefined : token, path, parsed);
          out['x-cache'] = 'MISS';
        }
      } catch {
        // not JSON: nothing to cache
      }
    }
    if (upstream.status < 300 && (method === 'PUT' || method === 'POST')) {
      const revoked = revokedLease(path, body);
      if (revoked) this.deps.manager.evictLease(revoked);
    }
    res.writeHead(upstream.status, out);
    res.end(method === 'HEAD' ? undefined : text);
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
