// The CLI's HTTP client for the Vault-compatible API: address, token and TLS
// from flags and the environment as the Vault CLI reads them (Vault docs,
// "Environment variables": VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT,
// VAULT_SKIP_VERIFY), with DBROKER_ADDR / DBROKER_TOKEN taking precedence.

import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readStoredToken } from './token-helper.ts';

/** dbroker listens on plain HTTP at 127.0.0.1:8200 unless TLS is configured. */
export const DEFAULT_ADDRESS = 'http://127.0.0.1:8200';

/** An answer of 4xx/5xx from the server: its `errors` messages. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly messages: string[],
    /** The method and URL as sent (no token: that travels in a header). */
    readonly request: string,
  ) {
    super(messages.length > 0 ? messages.join('\n') : `HTTP ${status}`);
  }

  /** Vault's CLI wording: the request, the status and each message of the API. */
  describe(): string {
    return `Error making API request.\n\nURL: ${this.request}\nCode: ${this.status}. Errors:\n\n${this.messages.map((m) => `* ${m}`).join('\n')}`;
  }
}

/** A failure before any answer (connection refused, bad certificate, bad CA file). */
export class TransportError extends Error {}

export interface ClientOptions {
  address?: string;
  caCert?: string;
  tlsSkipVerify?: boolean;
  /** A token given explicitly (login -method=token); otherwise the environment, then ~/.vault-token. */
  token?: string;
}

export interface ApiResult {
  status: number;
  // any: API bodies are arbitrary JSON; each command reads the fields it prints.
  body: any;
}

const truthy = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';

export class Client {
  readonly address: string;
  private readonly token: string | undefined;
  private readonly ca: Buffer | undefined;
  private readonly skipVerify: boolean;

  constructor(opts: ClientOptions, env: NodeJS.ProcessEnv = process.env) {
    this.address = (opts.address || env.DBROKER_ADDR || env.VAULT_ADDR || DEFAULT_ADDRESS).replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+$/.test(this.address)) throw new TransportError(`invalid address "${this.address}": want http(s)://host:port`);
    this.token = opts.token ?? (env.DBROKER_TOKEN || env.VAULT_TOKEN || readStoredToken(env));
    const caFile = opts.caCert || env.VAULT_CACERT;
    if (caFile) {
      try {
        this.ca = readFileSync(caFile);
      } catch (err) {
        throw new TransportError(`cannot read the CA certificate ${caFile}: ${(err as Error).message}`);
      }
    }
    this.skipVerify = opts.tlsSkipVerify === true || truthy(env.VAULT_SKIP_VERIFY);
  }

  get hasToken(): boolean {
    return this.token !== undefined;
  }

  /**
   * One API call. `path` is the Vault path without `/v1/`; LIST is sent as
   * GET with `list=true` (what Vault's own client does).
   * @throws ApiError for a 4xx/5xx answer, TransportError when none came.
   */
  async call(method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'LIST', path: string, body?: unknown, query: Record<string, string> = {}): Promise<ApiResult> {
    const params = new URLSearchParams(query);
    let verb: string = method;
    if (method === 'LIST') {
      verb = 'GET';
      params.set('list', 'true');
    }
    const qs = params.toString();
    const url = new URL(`${this.address}/v1/${encodeURI(path.replace(/^\/+/, ''))}${qs ? `?${qs}` : ''}`);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (this.token) headers['x-vault-token'] = this.token;
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = send(url, { method: verb, headers, ...(url.protocol === 'https:' ? { ca: this.ca, rejectUnauthorized: !this.skipVerify } : {}) }, (r: IncomingMessage) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        r.on('error', reject);
      });
      req.on('error', (err) => reject(new TransportError(`error contacting ${this.address}: ${err.message}`)));
      req.end(payload);
    });
    let parsed: unknown = null;
    if (res.text.trim() !== '') {
      try {
        parsed = JSON.parse(res.text);
      } catch {
        parsed = res.text;
      }
    }
    if (res.status >= 400) {
      const errors = (parsed as { errors?: unknown } | null)?.errors;
      const messages = Array.isArray(errors) ? errors.map(String) : [typeof parsed === 'string' ? parsed : `HTTP ${res.status}`];
      throw new ApiError(res.status, messages, `${verb} ${url.toString()}`);
    }
    return { status: res.status, body: parsed };
  }
}
