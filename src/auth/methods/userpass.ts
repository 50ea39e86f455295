// userpass (type "userpass"), for people (DBAs, operators), in Vault's API
// shape (https://developer.hashicorp.com/vault/api-docs/auth/userpass):
// users/:name (password, token_* fields), users/:name/password,
// users/:name/policies, LIST users, login/:name.
//
// Passwords are stored as scrypt hashes (node:crypto; memory-hard, RFC 7914)
// with a random salt and the cost parameters beside them, compared in
// constant time. An unknown user costs the same scrypt as a known one, so
// response time does not reveal which usernames exist.

import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { errors } from '../../errors.ts';
import type { RequestContext, Route } from '../../http/route.ts';
import { object } from '../../http/schema.ts';
import { addressAllowed } from '../cidr.ts';
import { anyValue, refuseUnsupported, requiredString, samePolicies, type AuthMethod, type MethodContext } from '../method.ts';
import { parseTokenParams, tokenParamsSchema, tokenParamsView, type TokenParams } from '../token-params.ts';

interface PasswordHash {
  /** base64 */
  salt: string;
  /** base64, 64 bytes */
  hash: string;
  N: number;
  r: number;
  p: number;
}

interface UserRecord {
  name: string;
  password: PasswordHash;
  token: TokenParams;
}

/** scrypt cost: N=2^15, r=8, p=1 (32 MiB, the RFC 7914 interactive-login range). */
const COST = { N: 32768, r: 8, p: 1 } as const;
const KEY_LENGTH = 64;
const USERNAME = /^[\w.@-]{1,128}$/;

function derive(password: string, salt: Buffer, cost: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { N: cost.N, r: cost.r, p: cost.p, maxmem: 128 * cost.N * cost.r * 2 };
  return new Promise((ok, fail) => scrypt(password, salt, KEY_LENGTH, options, (err, key) => (err ? fail(err) : ok(key))));
}

async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = randomBytes(16);
  return { salt: salt.toString('base64'), hash: (await derive(password, salt, COST)).toString('base64'), ...COST };
}

/** A stored hash of no password: what an unknown user's login is checked against. */
const DUMMY: PasswordHash = { salt: randomBytes(16).toString('base64'), hash: randomBytes(KEY_LENGTH).toString('base64'), ...COST };

async function verify(password: string, stored: PasswordHash): Promise<boolean> {
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await derive(password, Buffer.from(stored.salt, 'base64'), stored);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

const password = { type: 'string', minLength: 1, maxLength: 1024 } as const;

export class UserpassMethod implements AuthMethod {
  constructor(private readonly ctx: MethodContext) {}

  /** Vault lowercases usernames. */
  private username(ctx: RequestContext): string {
    const n = ctx.params.name!.toLowerCase();
    if (!USERNAME.test(n)) throw errors.BAD_FIELD('username', 'may contain only letters, digits, "_", ".", "@" and "-" (at most 128)');
    return n;
  }

  private user(name: string): Promise<UserRecord | undefined> {
    return this.ctx.store.get<UserRecord>(`user/${name}`);
  }

  private async mustUser(name: string): Promise<UserRecord> {
    const u = await this.user(name);
    if (!u) throw errors.BAD_REQUEST(`user "${name}" does not exist`);
    return u;
  }

  private async login(ctx: RequestContext) {
    const name = this.username(ctx);
    const given = requiredString(ctx.body, 'password');
    const user = await this.user(name);
    const ok = await verify(given, user?.password ?? DUMMY);
    if (!user || !ok) throw this.ctx.loginFailed(ctx, user ? `user "${name}": wrong password` : `unknown user "${name}"`, errors.LOGIN_FAILED('invalid username or password'));
    if (!addressAllowed(user.token.boundCidrs, ctx.remoteAddress)) {
      throw this.ctx.loginFailed(ctx, `user "${name}": client address is outside token_bound_cidrs`, errors.LOGIN_DENIED('login request originated from invalid CIDR'));
    }
    return this.ctx.issue({ params: user.token, displayName: name, metadata: { username: name }, aliasName: name }, ctx);
  }

  async renewCheck(meta: Record<string, string>, policies: string[]): Promise<string | undefined> {
    const user = meta.username === undefined ? undefined : await this.user(meta.username);
    if (!user) return `user "${meta.username ?? ''}" does not exist any more`;
    if (!samePolicies(user.token, policies)) return 'the user\'s policies have changed';
    return undefined;
  }

  routes(): Route[] {
    return [
      { methods: ['PUT'], pattern: 'login/:name', auth: 'none', schema: object({ password }, ['password']), handler: (ctx) => this.login(ctx) },
      {
        methods: ['LIST'],
        pattern: 'users',
        auth: 'token',
        handler: async () => {
          const keys = await this.ctx.store.list('user/');
          if (keys.length === 0) throw errors.EMPTY_LIST(`auth/${this.ctx.mount.path}users/`);
          return { data: { keys } };
        },
      },
      {
        methods: ['GET', 'PUT', 'DELETE'],
        pattern: 'users/:name',
        auth: 'token',
        schema: object({ ...tokenParamsSchema, password, bound_cidrs: anyValue }),
        handler: async (ctx) => {
          const name = this.username(ctx);
          const user = await this.user(name);
          if (ctx.method === 'GET') {
            if (!user) throw errors.ENTRY_NOT_FOUND(`auth/${this.ctx.mount.path}users/${name}`);
            return { data: tokenParamsView(user.token) };
          }
          if (ctx.method === 'DELETE') return void (await this.ctx.store.delete(`user/${name}`));
          refuseUnsupported(ctx.body, { bound_cidrs: 'deprecated in Vault; use token_bound_cidrs' });
          const token = parseTokenParams(ctx.body, user?.token);
          let hash = user?.password;
          if (typeof ctx.body.password === 'string') hash = await hashPassword(ctx.body.password);
          if (!hash) throw errors.BAD_REQUEST('missing required field "password" (a new user needs one)');
          await this.ctx.store.put(`user/${name}`, { name, password: hash, token } satisfies UserRecord);
          return undefined;
        },
      },
      {
        methods: ['PUT'],
        pattern: 'users/:name/password',
        auth: 'token',
        schema: object({ password }, ['password']),
        handler: async (ctx) => {
          const user = await this.mustUser(this.username(ctx));
          await this.ctx.store.put(`user/${user.name}`, { ...user, password: await hashPassword(ctx.body.password as string) });
          return undefined;
        },
      },
      {
        methods: ['PUT'],
        pattern: 'users/:name/policies',
        auth: 'token',
        schema: object({ token_policies: tokenParamsSchema.token_policies, policies: tokenParamsSchema.policies }),
        handler: async (ctx) => {
          const user = await this.mustUser(this.username(ctx));
          const policies = parseTokenParams({ token_policies: ctx.body.token_policies ?? ctx.body.policies ?? [] }, user.token);
          await this.ctx.store.put(`user/${user.name}`, { ...user, token: policies });
          return undefined;
        },
      },
    ];
  }
}
