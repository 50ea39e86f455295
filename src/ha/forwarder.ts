// Request forwarding: an unsealed standby proxies every request it cannot
// serve to the active node over HTTP(S) — method, path and query, headers and
// body as they came — and returns the active node's answer as it is (status,
// headers, body), so a client never notices which node it reached. It runs
// as a fastify onRequest hook, before the body is parsed, so the body is
// streamed through untouched.
//
// Served by the standby itself: its own state (sys/health, sys/leader,
// sys/seal-status), and its own seal (sys/init, sys/unseal, sys/seal).

import http from 'node:http';
import https from 'node:https';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';

/** The header a forwarded request carries, so it is never forwarded twice (no loops). */
export const FORWARDED_HEADER = 'x-dbroker-forwarded-by';

const LOCAL = new Set(['sys/health', 'sys/leader', 'sys/seal-status', 'sys/init', 'sys/unseal', 'sys/seal']);
/** Hop-by-hop headers (RFC 9110 §7.6.1) are not passed on. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

export interface ForwardingNode {
  nodeId: string;
  isStandby(): boolean;
  /** The active node's base URL, waiting up to `waitMs` while an election is under way. */
  awaitTarget(waitMs: number, avoid?: string): Promise<string | undefined>;
  electionWaitMs: number;
  /** Resolves once an active node has started its duties. */
  ready(): Promise<void>;
}

function pathOf(url: string): string {
  const path = url.split('?')[0]!.replace(/^\/v1\//, '').replace(/\/+$/, '');
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function fail(reply: FastifyReply, status: number, message: string): void {
  if (!reply.sent) reply.hijack();
  const body = JSON.stringify({ errors: [message] });
  reply.raw.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  reply.raw.end(body);
}

/**
 * Install the forwarding hook on `app` (before it listens).
 * @param isSealed whether this node is sealed (a sealed standby answers for itself: 503).
 */
export function installForwarding(app: FastifyInstance, node: ForwardingNode, isSealed: () => boolean, logger: Logger, bodyLimit: number): void {
  const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 64 }), https: new https.Agent({ keepAlive: true, maxSockets: 64 }) };

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (!req.url.startsWith('/v1/') || LOCAL.has(pathOf(req.url))) return;
    if (isSealed()) return;
    if (!node.isStandby()) {
      // An active node that is still loading its mounts answers once they are loaded.
      await node.ready();
      return;
    }
    if (req.headers[FORWARDED_HEADER] !== undefined) {
      fail(reply, 503, 'this node is a standby and the request was already forwarded once (leadership is changing); retry');
      return;
    }
    // The body is read first (bounded by the request size limit), so a request the active
    // node never received (connection refused: it just died) can be sent again to the next one.
    let body: Buffer;
    try {
      body = await readBody(req, bodyLimit);
    } catch (err) {
      fail(reply, 413, (err as Error).message);
      return;
    }
    const deadline = Date.now() + node.electionWaitMs;
    let avoid: string | undefined;
    for (;;) {
      const target = await node.awaitTarget(Math.max(0, deadline - Date.now()), avoid);
      if (!node.isStandby()) {
        // This node won the election meanwhile: it serves the request itself.
        await node.ready();
        fail(reply, 503, 'this node became the active node while forwarding the request; retry');
        return;
      }
      if (!target) {
        fail(reply, 503, 'this node is a standby and no active node is known right now (an election is under way); retry');
        return;
      }
      const outcome = await forward(req, reply, target, body, node.nodeId, agents);
      if (outcome === 'done') return;
      if (outcome === 'refused' && Date.now() < deadline) {
        avoid = target;
        continue;
      }
      logger.warn({ target }, 'forwarding to the active node failed');
      fail(reply, 503, `this node is a standby and the active node (${target}) could not be reached; retry`);
      return;
    }
  });

  app.addHook('onClose', async () => {
    agents.http.destroy();
    agents.https.destroy();
  });
}

/** The request body, up to `limit` bytes. */
function readBody(req: FastifyRequest, limit: number): Promise<Buffer> {
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.raw.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.raw.destroy();
        fail(new Error(`request body is larger than ${limit} bytes`));
      } else chunks.push(c);
    });
    req.raw.on('end', () => ok(Buffer.concat(chunks)));
    req.raw.on('error', fail);
  });
}

type Agents = { http: http.Agent; https: https.Agent };

/**
 * Send the request to `target` and stream its answer back as is.
 * 'refused': the connection was refused, so the request never arrived (safe to send elsewhere);
 * 'failed': it may have arrived and nothing was sent back yet.
 */
function forward(req: FastifyRequest, reply: FastifyReply, target: string, body: Buffer, nodeId: string, agents: Agents): Promise<'done' | 'refused' | 'failed'> {
  const url = new URL(req.url, target);
  const headers: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
  headers[FORWARDED_HEADER] = nodeId;
  headers['content-length'] = body.length;
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior ? `${String(prior)}, ${req.ip}` : req.ip;
  const https_ = url.protocol === 'https:';
  return new Promise((done) => {
    const upstream = (https_ ? https : http).request(url, { method: req.method, headers, agent: https_ ? agents.https : agents.http }, (res) => {
      reply.hijack();
      const out: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(res.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      reply.raw.writeHead(res.statusCode ?? 502, out);
      res.pipe(reply.raw);
      res.on('end', () => done('done'));
      res.on('error', () => (reply.raw.destroy(), done('done')));
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (reply.raw.headersSent) {
        reply.raw.destroy();
        done('done');
      } else done(err.code === 'ECONNREFUSED' ? 'refused' : 'failed');
    });
    upstream.end(body);
  });
}
