// A small client for the broker's Vault-compatible HTTP API
// (/work/shared/API.md; Vault's API docs for the shapes): log in, read and
// write paths, renew and revoke leases, look up and renew its own token.

import { BrokerRequestError, BrokerUnreachableError, isPermissionDenied } from './errors.ts';

/** Vault's `auth` block of a login or token renewal. `lease_duration` in seconds (0 = never expires). */
export interface AuthInfo {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies?: string[];
  metadata?: Record<string, string> | null;
  lease_duration: number;
  renewable: boolean;
}

/**
 * Vault's response envelope. `lease_duration` in seconds; `lease_id` is ''
 * for data without a lease (static creds, lookups).
 */
export interface SecretResponse<D = Record<string, unknown>> {
  request_id: string;
  lease_id: string;
  renewable: boolean;
  lease_duration: number;
  data: D | null;
  wrap_info: unknown;
  warnings: string[] | null;
  auth: AuthInfo | null;
}

/** `data` of `database/creds/<role>` and `database/static-creds/<role>`. */
export interface DatabaseCredentials {
  username: string;
  password: string;
  /** static-creds only: seconds until the next rotation. */
  ttl?: number;
  [field: string]: unknown;
}

/**
 * How to log in (Vault API shapes: POST auth/<mount>/login):
 * - approle: `role_id` + `secret_id` (https://developer.hashicorp.com/vault/api-docs/auth/approle#login-with-approle)
 * - jwt and kubernetes: `role` + `jwt`
 * - userpass: POST auth/<mount>/login/<username> with `password`
 * - token: no login, the token is used as is.
 * `mount` defaults to the method's name.
 */
export type LoginMethod =
  | { type: 'token'; token: string }
  | { type: 'approle'; roleId: string; secretId?: string; mount?: string }
  | { type: 'jwt'; role: string; jwt: string; mount?: string }
  | { type: 'kubernetes'; role: string; jwt: string; mount?: string }
  | { type: 'userpass'; username: string; password: string; mount?: string };

export interface BrokerClientOptions {
  /** Base URL of the broker (or of a `dbroker agent` proxy), e.g. `http://127.0.0.1:8200`. Default: VAULT_ADDR. */
  address?: string;
  /** Token sent as X-Vault-Token. Default: VAULT_TOKEN. */
  token?: string;
  /**
   * When set, `login()` without arguments uses it, and a request refused with
   * 403 because the token itself is no longer valid (expired, revoked: its
   * lookup-self fails too) logs in again once and is retried.
   */
  auth?: LoginMethod;
  /** Per-request timeout, ms (default 10000). */
  timeoutMs?: number;
  /** Called after every request with its error (undefined on success): for health tracking. */
  observe?: (error: Error | undefined) => void;
}

/** Strip slashes; refuse what would leave /v1/ (the path is the caller's, not a user's). */
function cleanPath(path: string): string {
  const p = path.replace(/^\/+/, '').replace(/^v1\//, '');
  if (p.split('/').some((seg) => seg === '..')) throw new TypeError(`path "${path}" may not contain ".."`);
  return p;
}

export class BrokerClient {
  readonly address: string;
  /** The current token (updated by login()). */
  token: string | undefined;
  private readonly timeoutMs: number;
  private readonly auth: LoginMethod | undefined;
  private readonly observe: ((error: Error | undefined) => void) | undefined;
  private loggingIn: Promise<AuthInfo> | undefined;

  /** Throws TypeError when no address is given and VAULT_ADDR is unset. */
  constructor(opts: BrokerClientOptions = {}) {
    const address = opts.address ?? process.env['VAULT_ADDR'];
    if (!address) throw new TypeError('BrokerClient: give `address` (or set VAULT_ADDR)');
    this.address = address.replace(/\/+$/, '');
    this.token = opts.token ?? (opts.auth?.type === 'token' ? opts.auth.token : process.env['VAULT_TOKEN']);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.auth = opts.auth;
    this.observe = opts.observe;
  }

  /**
   * One request: `method` `/v1/<path>` with a JSON body. Resolves the parsed
   * body (undefined for 204). Throws BrokerRequestError (non-2xx) or
   * BrokerUnreachableError (network, timeout). With `auth` configured, a 403
   * for a token that is no longer valid is answered by one fresh login and a retry.
   */
  async request<T = SecretResponse>(method: string, path: string, body?: unknown): Promise<T> {
    try {
      return await this.send<T>(method, path, body, this.token);
    } catch (err) {
      if (!isPermissionDenied(err) || !this.auth || this.auth.type === 'token') throw err;
      // A 403 is also what a policy denial looks like: log in again only if the token itself is refused.
      const tokenAlive = await this.send('GET', 'auth/token/lookup-self', undefined, this.token).then(
        () => true,
        () => false,
      );
      if (tokenAlive) throw err;
      await this.login();
      return this.send<T>(method, path, body, this.token);
    }
  }

  private async send<T>(method: string, path: string, body: unknown, token: string | undefined): Promise<T> {
    try {
      const result = await this.sendOnce<T>(method, path, body, token);
      this.observe?.(undefined);
      return result;
    } catch (err) {
      this.observe?.(err as Error);
      throw err;
    }
  }

  private async sendOnce<T>(method: string, path: string, body: unknown, token: string | undefined): Promise<T> {
    const p = cleanPath(path);
    const headers: Record<string, string> = {};
    if (token) headers['x-vault-token'] = token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.address}/v1/${p}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw new BrokerUnreachableError(method, p, err);
    }
    if (res.status >= 400) {
      let messages: string[] = [];
      try {
        const parsed = JSON.parse(text) as { errors?: unknown };
        if (Array.isArray(parsed.errors)) messages = parsed.errors.map(String);
      } catch {
        messages = [text.slice(0, 200)];
      }
      throw new BrokerRequestError(res.status, messages, method, p, text);
    }
    if (res.status === 204 || text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new BrokerRequestError(res.status, [`response is not JSON: ${(err as Error).message}`], method, p, text.slice(0, 200));
    }
  }

  /**
   * Log in with `method` (default: the `auth` option) and keep the token.
   * Concurrent calls share one login. Returns Vault's auth block.
   */
  login(method: LoginMethod | undefined = this.auth): Promise<AuthInfo> {
    if (!method) return Promise.reject(new TypeError('login: no login method given'));
    if (this.loggingIn) return this.loggingIn;
    this.loggingIn = this.doLogin(method).finally(() => (this.loggingIn = undefined));
    return this.loggingIn;
  }

  private async doLogin(method: LoginMethod): Promise<AuthInfo> {
    if (method.type === 'token') {
      this.token = method.token;
      const self = await this.lookupSelf();
      return {
        client_token: method.token,
        accessor: String(self.data?.['accessor'] ?? ''),
        policies: (self.data?.['policies'] as string[] | undefined) ?? [],
        lease_duration: Number(self.data?.['ttl'] ?? 0),
        renewable: self.data?.['renewable'] === true,
      };
    }
    const mount = (method.mount ?? method.type).replace(/^\/+|\/+$/g, '').replace(/^auth\//, '');
    let path = `auth/${mount}/login`;
    let body: Record<string, unknown>;
    switch (method.type) {
      case 'approle':
        body = { role_id: method.roleId, ...(method.secretId !== undefined ? { secret_id: method.secretId } : {}) };
        break;
      case 'jwt':
      case 'kubernetes':
        body = { role: method.role, jwt: method.jwt };
        break;
      case 'userpass':
        path = `${path}/${encodeURIComponent(method.username)}`;
        body = { password: method.password };
        break;
    }
    const res = await this.send<SecretResponse>('PUT', path, body, undefined);
    if (!res?.auth?.client_token) throw new BrokerRequestError(200, ['login answered without an auth block'], 'PUT', path, '');
    this.token = res.auth.client_token;
    return res.auth;
  }

  /** GET `path` (e.g. `database/creds/app`). */
  read<D = Record<string, unknown>>(path: string): Promise<SecretResponse<D>> {
    return this.request<SecretResponse<D>>('GET', path);
  }

  /** PUT `path` with `body`; undefined for a 204. */
  write<D = Record<string, unknown>>(path: string, body: Record<string, unknown> = {}): Promise<SecretResponse<D> | undefined> {
    return this.request<SecretResponse<D> | undefined>('PUT', path, body);
  }

  /**
   * PUT sys/leases/renew. `incrementSeconds` is counted from now (0 = the
   * role's default TTL); the broker caps it at the lease's max_ttl and then
   * answers a shorter `lease_duration` with a warning.
   */
  renew(leaseId: string, incrementSeconds = 0): Promise<SecretResponse> {
    return this.request<SecretResponse>('PUT', 'sys/leases/renew', { lease_id: leaseId, ...(incrementSeconds > 0 ? { increment: incrementSeconds } : {}) });
  }

  /** PUT sys/leases/revoke (synchronous: the database user is gone when it resolves). */
  async revoke(leaseId: string): Promise<void> {
    await this.request('PUT', 'sys/leases/revoke', { lease_id: leaseId });
  }

  /** GET auth/token/lookup-self: `data.ttl` (seconds), `data.renewable`, `data.policies`... */
  lookupSelf(): Promise<SecretResponse> {
    return this.request<SecretResponse>('GET', 'auth/token/lookup-self');
  }

  /** PUT auth/token/renew-self; the answer's `auth.lease_duration` is the new TTL in seconds. */
  renewSelf(incrementSeconds = 0): Promise<SecretResponse> {
    return this.request<SecretResponse>('PUT', 'auth/token/renew-self', incrementSeconds > 0 ? { increment: incrementSeconds } : {});
  }
}
