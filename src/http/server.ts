// The HTTP front: fastify with one catch-all route under /v1/ (and the web
// UI's static files under /ui/, see ui-static.ts), Vault's
// envelope, and one error path that turns every failure into
// {"errors":[...]} with the right status. A client mistake is never a 500.

import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { BrokerError, errors, isBrokerError } from '../errors.ts';
import { clientErrorHandler } from './client-errors.ts';
import { clientAddress } from './client-address.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from './json-limits.ts';
import { LazyRequestLogger } from './request-logger.ts';
import type { Method, Reply, RequestContext } from './route.ts';
import { registerUi } from './ui-static.ts';

export interface Dispatcher {
  dispatch(ctx: Omit<RequestContext, 'params'>, tokenSecret: string | undefined): Promise<Reply | undefined>;
}

export interface HttpOptions {
  logger: Logger;
  bodyLimit: number;
  /** PEM certificate and key (read by the caller, which names the config field when that fails). */
  tls?: { cert: Buffer; key: Buffer };
  /** CIDR blocks of proxies whose X-Forwarded-For is believed (see client-address.ts). */
  trustedProxies?: string[];
}

const METHODS: Record<string, Method> = { GET: 'GET', HEAD: 'HEAD', PUT: 'PUT', POST: 'PUT', DELETE: 'DELETE', LIST: 'LIST' };

function tokenOf(req: FastifyRequest): string | undefined {
  const header = req.headers['x-vault-token'];
  if (typeof header === 'string' && header.length > 0) return header;
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  return undefined;
}

function envelope(reply: Reply, requestId: string): Record<string, unknown> {
  return {
    request_id: requestId,
    lease_id: reply.leaseId ?? '',
    renewable: reply.renewable ?? false,
    lease_duration: reply.leaseDuration ?? 0,
    data: reply.data ?? null,
    wrap_info: null,
    warnings: reply.warnings && reply.warnings.length > 0 ? reply.warnings : null,
    auth: reply.auth ?? null,
  };
}

/** Map anything thrown to a status and a message that is safe to show. */
export function toHttpError(err: unknown, logger: Logger, requestId: string, bodyLimit?: number): { status: number; message: string } {
  if (isBrokerError(err)) {
    if (err.statusCode >= 500 && err.code !== errors.SEALED.code) logger.warn({ requestId, code: err.code, error: err.message }, 'request failed');
    return { status: err.statusCode, message: err.message };
  }
  const e = err as { statusCode?: number; code?: string; message?: string };
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, message: errors.BODY_TOO_LARGE(bodyLimit ?? 'the configured limit of').message };
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, message: e.message ?? 'bad request' };
  }
  logger.error({ requestId, err }, 'internal error');
  return { status: 500, message: `internal error (request ${requestId})` };
}

/** A URL fastify cannot route (bad percent-encoding, an overlong segment) gets our envelope too. */
function onFrameworkError(err: { code?: string }, _req: FastifyRequest, reply: FastifyReply): void {
  const status = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
  void reply.code(status).send({ errors: [status === 414 ? 'the request path is too long' : 'the request path is not a valid URL (bad percent-encoding)'] });
}

/**
 * Vault request headers whose meaning dbroker does not implement are refused
 * rather than ignored: a client that asked for a single-use wrapped response
 * (X-Vault-Wrap-TTL, Vault docs "Response wrapping") must not receive the
 * plaintext secret believing it is wrapped; one that names a namespace
 * (X-Vault-Namespace, an Enterprise feature) must not think it is isolated.
 * @throws BrokerError 400 naming the header.
 */
function refuseUnappliedHeaders(req: FastifyRequest): void {
  const wrap = req.headers['x-vault-wrap-ttl'];
  if (typeof wrap === 'string' && wrap.trim() !== '') {
    throw errors.UNSUPPORTED_HEADER('X-Vault-Wrap-TTL', 'response wrapping is not supported; request the secret without it');
  }
  const ns = req.headers['x-vault-namespace'];
  if (typeof ns === 'string' && ns.trim() !== '' && ns.trim().replace(/\/+$/, '') !== 'root') {
    throw errors.UNSUPPORTED_HEADER('X-Vault-Namespace', 'namespaces are not supported; omit the header or use "root"');
  }
}

export function buildHttpServer(dispatcher: Dispatcher, opts: HttpOptions): FastifyInstance {
  const https = opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : null;
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.logger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (logger, bindings, options) => new LazyRequestLogger(logger as Logger, bindings, options),
    bodyLimit: opts.bodyLimit,
    return503OnClosing: true,
    genReqId: () => randomUUID(),
    // Lease ids and prefixes can be long; the default (100) would refuse them.
    routerOptions: { maxParamLength: 8192 },
    clientErrorHandler: clientErrorHandler(() => app),
    frameworkErrors: onFrameworkError,
    ...(https ? { https } : {}),
  }) as unknown as FastifyInstance;

  // Vault clients send JSON under any content type (curl's default is form
  // encoding), so every body is parsed as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body).trim();
    if (text === '') return done(null, {});
    if (jsonDepthExceeds(text)) return done(errors.JSON_TOO_DEEP(MAX_JSON_DEPTH), undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(errors.BAD_JSON((err as Error).message), undefined);
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const { status, message } = toHttpError(err, opts.logger, String(req.id), opts.bodyLimit);
    void reply.code(status).send({ errors: [message] });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ errors: [errors.NOT_FOUND(req.url.split('?')[0]!).message] });
  });

  const handle = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const requestId = String(req.id);
    const query = (req.query ?? {}) as Record<string, string>;
    let method = METHODS[req.method];
    if (!method) throw errors.METHOD_NOT_ALLOWED(req.method, (req.params as { '*': string })['*']);
    if (method === 'GET' && (query.list === 'true' || query.list === '1')) method = 'LIST';
    refuseUnappliedHeaders(req);
    const body = req.body ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw errors.BAD_REQUEST('the request body must be a JSON object');
    const path = (req.params as { '*': string })['*'].replace(/\/+$/, '');
    const result = await dispatcher.dispatch({ method, path, body: body as Record<string, unknown>, query, requestId, remoteAddress: clientAddress(req.socket.remoteAddress ?? req.ip, req.headers['x-forwarded-for'], opts.trustedProxies ?? []) }, tokenOf(req));
    if (!result) {
      void reply.code(204).send();
      return;
    }
    const status = result.status ?? 200;
    void reply.code(status).header('cache-control', 'no-store');
    if (result.contentType) void reply.header('content-type', result.contentType);
    if (method === 'HEAD') void reply.send();
    else void reply.send(result.raw !== undefined ? result.raw : envelope(result, requestId));
  };

  // PATCH and OPTIONS reach the handler only to be refused with a 405.
  app.route({ method: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'], url: '/v1/*', handler: handle, exposeHeadRoute: false });
  // The web UI (static files; it calls the /v1/ API above like any client).
  registerUi(app);
  return app;
}

export { BrokerError };
