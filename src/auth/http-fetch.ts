// Small JSON-over-HTTP(S) client for identity providers (JWKS, OIDC
// discovery, the Kubernetes TokenReview API): a custom CA (PEM) per call,
// a timeout, and a size limit, so a slow or hostile endpoint cannot hang or
// flood a login. Errors carry the URL and the cause, never a credential.

import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface FetchOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Content type of `body` (default application/json). */
  contentType?: string;
  /** PEM bundle trusted for https (instead of the system roots). */
  caPem?: string;
  /** Milliseconds; default 10 000. */
  timeoutMs?: number;
}

export class FetchError extends Error {
  override name = 'FetchError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const MAX_BYTES = 1024 * 1024;

/** Fetch `url` and parse its body as JSON. Throws FetchError (network, status >= 400 unless `acceptStatus`, size, JSON). */
export function fetchJson(url: string, opts: FetchOptions = {}, acceptStatus: (status: number) => boolean = (s) => s < 400): Promise<{ status: number; body: unknown }> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return Promise.reject(new FetchError(`"${url.slice(0, 200)}" is not a URL`));
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return Promise.reject(new FetchError(`${parsed.protocol} URLs are not supported (use https or http)`));
  const request = parsed.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((ok, fail) => {
    const req = request(
      parsed,
      {
        method: opts.method ?? 'GET',
        headers: { accept: 'application/json', ...(opts.body !== undefined ? { 'content-type': opts.contentType ?? 'application/json', 'content-length': String(Buffer.byteLength(opts.body)) } : {}), ...opts.headers },
        timeout: opts.timeoutMs ?? 10_000,
        ...(opts.caPem ? { ca: opts.caPem } : {}),
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size > MAX_BYTES) {
            req.destroy(new FetchError(`${parsed.origin}${parsed.pathname}: response larger than ${MAX_BYTES} bytes`));
            return;
          }
          chunks.push(d);
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (!acceptStatus(status)) return fail(new FetchError(`${parsed.origin}${parsed.pathname} answered HTTP ${status}`, status));
          try {
            ok({ status, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          } catch {
            fail(new FetchError(`${parsed.origin}${parsed.pathname} did not answer JSON`, status));
          }
        });
        res.on('error', (err) => fail(new FetchError(`${parsed.origin}${parsed.pathname}: ${err.message}`)));
      },
    );
    req.on('timeout', () => req.destroy(new FetchError(`${parsed.origin}${parsed.pathname}: timed out`)));
    req.on('error', (err) => fail(err instanceof FetchError ? err : new FetchError(`${parsed.origin}${parsed.pathname}: ${err.message}`)));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}
