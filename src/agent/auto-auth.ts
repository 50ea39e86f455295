// Auto-auth: the agent logs in by itself (Vault Agent's method types, in the
// broker's API shapes: https://developer.hashicorp.com/vault/docs/agent-and-proxy/autoauth),
// keeps its token renewed (renew-self at ~2/3 of its TTL), logs in again when
// the token nears its end, is refused or revoked, and writes it to its sinks.
// Logins that fail are retried with capped backoff. Secret IDs and JWTs read
// from files that are removed after reading are kept in memory only.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../client/backoff.ts';
import type { BrokerClient, SecretResponse } from '../client/broker-client.ts';
import { BrokerRequestError } from '../client/errors.ts';
import { LifetimeWatcher } from '../client/lifetime-watcher.ts';
import type { AutoAuthMethod } from './agent-config.ts';
import { writeFileAtomic } from './atomic-file.ts';

/** The agent's token as kept in memory and in the encrypted cache. Times in ms since epoch. */
export interface TokenState {
  token: string;
  accessor: string;
  /** null: never expires. */
  expireAt: number | null;
  renewable: boolean;
  /** Seconds: the TTL at login, asked again at each renewal. */
  ttl: number;
}

export interface AutoAuthDeps {
  client: BrokerClient;
  backoff: { minMs: number; maxMs: number };
  log: Logger;
  /** Called with each new or renewed token (to persist it). */
  onToken: (state: TokenState) => void;
}

async function readTrimmed(path: string): Promise<string> {
  const text = (await readFile(path, 'utf8')).trim();
  if (!text) throw new Error(`${path} is empty`);
  return text;
}

export class AutoAuth {
  state: TokenState | undefined;
  /** Logins performed (not counting a token restored from the cache). */
  logins = 0;
  lastError: string | undefined;
  private watcher: LifetimeWatcher | undefined;
  private relogin: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private cachedSecret: string | undefined;
  private readyResolve!: () => void;
  /** Resolves once a token is available. */
  readonly ready: Promise<void> = new Promise((resolve) => (this.readyResolve = resolve));

  constructor(
    private readonly method: AutoAuthMethod,
    private readonly sinks: string[],
    private readonly deps: AutoAuthDeps,
  ) {}

  /** Use `restored` if it has not expired (checked by renewing it at once), else log in. Does not wait for the login. */
  start(restored?: TokenState): void {
    void this.begin(restored);
  }

  private async begin(restored: TokenState | undefined): Promise<void> {
    if (restored && this.method.type === 'token_file') {
      // A token file that now holds another token wins over the cached one.
      const current = await readTrimmed(this.method.tokenFilePath).catch(() => undefined);
      if (current !== undefined && current !== restored.token) restored = undefined;
    }
    if (restored && (restored.expireAt === null || restored.expireAt > Date.now() + 1000)) {
      this.deps.log.info({ method: this.method.type }, 'auto-auth: using the token from the cache');
      void this.adopt(restored, true);
      return;
    }
    void this.reauthenticate();
  }

  /** Log in again (shared by concurrent callers); retries with backoff until it works or stop(). */
  reauthenticate(): Promise<void> {
    this.relogin ??= this.loginLoop().finally(() => (this.relogin = undefined));
    return this.relogin;
  }

  private async loginLoop(): Promise<void> {
    const backoff = new Backoff({ minMs: this.deps.backoff.minMs, maxMs: this.deps.backoff.maxMs });
    while (!this.abort.signal.aborted) {
      try {
        const state = await this.login();
        this.logins++;
        this.lastError = undefined;
        this.deps.log.info({ method: this.method.type, ttl: state.ttl }, 'auto-auth: logged in');
        await this.adopt(state, false);
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
        this.deps.log.warn({ method: this.method.type, err: this.lastError }, 'auto-auth: login failed, will retry');
        await sleep(backoff.next(), this.abort.signal);
      }
    }
  }

  private async login(): Promise<TokenState> {
    const m = this.method;
    const client = this.deps.client;
    if (m.type === 'token_file') {
      const token = await readTrimmed(m.tokenFilePath);
      client.token = token;
      const self = await client.lookupSelf();
      const ttl = Number(self.data?.['ttl'] ?? 0);
      return { token, accessor: String(self.data?.['accessor'] ?? ''), expireAt: ttl > 0 ? Date.now() + ttl * 1000 : null, renewable: self.data?.['renewable'] === true, ttl };
    }
    let auth;
    if (m.type === 'approle') {
      const roleId = await readTrimmed(m.roleIdFilePath);
      const secretId = await this.readOnce(m.secretIdFilePath, m.removeSecretIdFileAfterReading);
      auth = await client.login({ type: 'approle', roleId, secretId, mount: m.mount });
    } else if (m.type === 'jwt') {
      auth = await client.login({ type: 'jwt', role: m.role, jwt: await this.readOnce(m.path, m.removeJwtAfterReading), mount: m.mount });
    } else {
      auth = await client.login({ type: 'kubernetes', role: m.role, jwt: await readTrimmed(m.tokenPath), mount: m.mount });
    }
    return {
      token: auth.client_token,
      accessor: auth.accessor,
      expireAt: auth.lease_duration > 0 ? Date.now() + auth.lease_duration * 1000 : null,
      renewable: auth.renewable,
      ttl: auth.lease_duration,
    };
  }

  /** A credential file that may be removed once read: the file when present, else what was read before. */
  private async readOnce(path: string, remove: boolean): Promise<string> {
    try {
      const value = await readTrimmed(path);
      this.cachedSecret = value;
      if (remove) await rm(path, { force: true });
      return value;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && this.cachedSecret) return this.cachedSecret;
      throw err;
    }
  }

  private async adopt(state: TokenState, verify: boolean): Promise<void> {
    this.watcher?.stop();
    this.state = state;
    this.deps.client.token = state.token;
    this.deps.onToken(state);
    for (const sink of this.sinks) {
      await writeFileAtomic(sink, state.token, 0o600).catch((err: Error) => this.deps.log.error({ sink, err: err.message }, 'auto-auth: cannot write the token sink'));
    }
    this.readyResolve();
    if (state.expireAt === null) return;
    const remaining = Math.max(1, Math.round((state.expireAt - Date.now()) / 1000));
    const secret: SecretResponse = {
      request_id: '',
      lease_id: '',
      renewable: false,
      lease_duration: 0,
      data: null,
      wrap_info: null,
      warnings: null,
      auth: { client_token: state.token, accessor: state.accessor, policies: [], lease_duration: remaining, renewable: state.renewable },
    };
    const watcher = new LifetimeWatcher(this.deps.client, {
      secret,
      incrementSeconds: state.ttl > 0 ? state.ttl : remaining,
      graceMs: Math.max(1000, Math.min(60_000, (state.ttl * 1000) / 5)),
      renewNow: verify,
      backoff: this.deps.backoff,
    });
    this.watcher = watcher;
    watcher.on('renew', (res: SecretResponse) => {
      if (this.state?.token !== state.token || !res.auth) return;
      this.state = { ...state, expireAt: res.auth.lease_duration > 0 ? Date.now() + res.auth.lease_duration * 1000 : null };
      this.deps.onToken(this.state);
    });
    watcher.on('done', (err: Error | null) => {
      if (this.watcher !== watcher) return;
      this.deps.log.info({ reason: err ? err.message : 'token reaches its max TTL' }, 'auto-auth: token ending, logging in again');
      void this.reauthenticate();
    });
  }

  /**
   * The broker answered 403 to a request with the agent's token: log in again
   * if the token itself is refused (lookup-self fails with 403); a policy
   * denial (the token is fine) changes nothing.
   */
  async refused(): Promise<void> {
    const token = this.state?.token;
    try {
      await this.deps.client.lookupSelf();
    } catch (err) {
      if (err instanceof BrokerRequestError && err.status === 403 && this.state?.token === token) await this.reauthenticate();
    }
  }

  /** Whether `token` is the agent's current token. */
  isAgentToken(token: string | undefined): boolean {
    if (token === undefined || this.state === undefined) return false;
    const digest = (t: string): Buffer => createHash('sha256').update(t).digest();
    return timingSafeEqual(digest(token), digest(this.state.token));
  }

  stop(): void {
    this.abort.abort();
    this.watcher?.stop();
  }
}
