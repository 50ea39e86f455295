// Requests Node's HTTP parser refuses before fastify sees them.
//
// llhttp knows a fixed set of methods and `LIST` is not one of them, so a raw
// LIST request (hvac, node-vault, `curl -X LIST`) fails to parse. The parser
// hands the bytes it could not parse to the 'clientError' handler; a complete
// LIST request there is replayed as `GET ...?list=true` through fastify's
// inject and answered on the socket. The parser cannot resume on that
// connection, so the answer carries `Connection: close` and the client opens a
// new connection for its next request. Anything else gets a Vault-style
// `{"errors":[...]}` answer instead of fastify's default body.

import { METHODS, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

interface ParserError extends Error {
  code?: string;
  /** The bytes the parser could not parse (a Buffer in practice; typed loosely by fastify). */
  rawPacket?: unknown;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length']);

/** A LIST request parsed from raw bytes, an error message, or undefined when it is not LIST. */
export function parseListRequest(raw: Buffer): { url: string; headers: Record<string, string> } | { error: string } | undefined {
  const text = raw.toString('latin1');
  if (!text.startsWith('LIST ')) return undefined;
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return { error: 'incomplete LIST request; use GET with ?list=true' };
  const [requestLine, ...lines] = text.slice(0, end).split('\r\n');
  const m = /^LIST (\/\S*) HTTP\/1\.[01]$/.exec(requestLine!);
  if (!m) return { error: 'malformed LIST request line' };
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).toLowerCase() : '';
    if (!TOKEN.test(name)) return { error: 'malformed header in LIST request' };
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  if ((headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined) {
    return { error: 'a LIST request takes no body' };
  }
  for (const name of HOP_BY_HOP) delete headers[name];
  const url = m[1]!;
  return { url: url + (url.includes('?') ? '&' : '?') + 'list=true', headers };
}

function writeAndClose(socket: Socket, status: number, headers: Record<string, string | string[]>, body: Buffer): void {
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`];
  for (const [name, value] of Object.entries(headers)) {
    if (HOP_BY_HOP.has(name.toLowerCase())) continue;
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
  }
  lines.push(`content-length: ${body.length}`, 'connection: close', '', '');
  socket.once('finish', () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body]));
}

function writeError(socket: Socket, status: number, message: string): void {
  writeAndClose(socket, status, { 'content-type': 'application/json; charset=utf-8' }, Buffer.from(JSON.stringify({ errors: [message] })));
}

/** The fastify `clientErrorHandler`; `app` is looked up when an error happens. */
export function clientErrorHandler(app: () => FastifyInstance): (err: ParserError, socket: Socket) => void {
  const handled = new WeakSet<Socket>();
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable || handled.has(socket)) {
      if (!socket.destroyed && err.code === 'ECONNRESET') socket.destroy();
      return;
    }
    handled.add(socket);
    // A response already under way on this connection (pipelining): writing now would corrupt it.
    // `_httpMessage` is the in-flight ServerResponse; Node's own clientError default checks it too.
    if ((socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return writeError(socket, 408, 'request timed out');
    if (err.code === 'HPE_HEADER_OVERFLOW') return writeError(socket, 431, 'request headers are too large');
    const raw = Buffer.isBuffer(err.rawPacket) ? err.rawPacket : undefined;
    if (err.code === 'HPE_INVALID_METHOD' && raw) {
      const list = parseListRequest(raw);
      if (list && 'error' in list) return writeError(socket, 400, list.error);
      if (list) {
        app()
          .inject({ method: 'GET', url: list.url, headers: list.headers, remoteAddress: socket.remoteAddress ?? '127.0.0.1' })
          .then(
            (res) => writeAndClose(socket, res.statusCode, res.headers as Record<string, string | string[]>, res.rawPayload),
            () => writeError(socket, 500, 'internal error while answering a LIST request'),
          );
        return;
      }
      const method = /^[A-Za-z-]{1,20}/.exec(raw.toString('latin1'))?.[0] ?? '?';
      // A known method first means the bad one came later in the same packet (pipelining).
      if (!METHODS.includes(method)) {
        return writeError(socket, 405, `HTTP method ${method} is not supported; use GET, PUT, POST, DELETE or LIST (or GET with ?list=true)`);
      }
    }
    writeError(socket, 400, `malformed HTTP request (${err.code ?? 'parse error'})`);
  };
}
