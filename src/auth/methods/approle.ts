// AppRole (type "approle"), in Vault's API shape
// (https://developer.hashicorp.com/vault/api-docs/auth/approle):
// role/:name, role/:name/role-id, role/:name/secret-id (generate, LIST
// accessors), role/:name/custom-secret-id, role/:name/secret-id/lookup|destroy,
// role/:name/secret-id-accessor/lookup|destroy, login.
//
// Secret IDs exist only as keyed hashes (HMAC with the barrier's key, bound to
// the mount and role); their use counts and expiry are plain columns so a use
// is one conditional UPDATE (atomic under concurrent logins); the rest
// (accessor, metadata, CIDRs) is sealed. Role IDs are found through a keyed-hash
// index and compared in constant time.

import { randomUUID, timingSafeEqual } from 'node:crypto';
import { errors } from '../../errors.ts';
import type { RequestContext, Route } from '../../http/route.ts';
import { duration, durationField, listField, object, stringList } from '../../http/schema.ts';
import { addressAllowed, parseCidrs } from '../cidr.ts';
import { anyValue, refuseUnsupported, requiredString, samePolicies, type AuthMethod, type MethodContext } from '../method.ts';
import { parseTokenParams, tokenParamsSchema, tokenParamsView, type TokenParams } from '../token-params.ts';
import type { SecretIdRow } from '../../storage/storage.ts';

interface RoleRecord {
  name: string;
  roleId: string;
  bindSecretId: boolean;
  /** Seconds; 0 = never expires. */
  secretIdTtl: number;
  /** 0 = unlimited. */
  secretIdNumUses: number;
  secretIdBoundCidrs: string[];
  token: TokenParams;
}

interface SecretIdDetails {
  accessor: string;
  metadata: Record<string, string>;
  cidrList: string[];
  tokenBoundCidrs: string[];
  creationTime: number;
  /** Seconds; 0 = never. */
  ttl: number;
  numUses: number;
}

const ROLE_NAME = /^[\w.@-]{1,128}$/;

const UNSUPPORTED_ROLE: Record<string, string> = {
  local_secret_ids: 'there is no replication (secret IDs are always local to this broker)',
  enable_local_secret_ids: 'there is no replication',
};

const roleSchema = object({
  ...tokenParamsSchema,
  role_id: { type: 'string', minLength: 1, maxLength: 4096 },
  bind_secret_id: { type: 'boolean' },
  secret_id_ttl: duration,
  secret_id_num_uses: { type: 'integer', minimum: 0, maximum: 1000000 },
  secret_id_bound_cidrs: stringList,
  bound_cidr_list: stringList,
  local_secret_ids: anyValue,
  enable_local_secret_ids: anyValue,
});

const secretIdSchema = object({
  metadata: { type: 'string', maxLength: 65536 },
  cidr_list: stringList,
  token_bound_cidrs: stringList,
  num_uses: { type: 'integer', minimum: 0, maximum: 1000000 },
  ttl: duration,
  secret_id: { type: 'string', minLength: 1, maxLength: 4096 },
});

function isoOrZero(ms: number | null): string {
  return ms === null ? '0001-01-01T00:00:00Z' : new Date(ms).toISOString();
}

export class AppRoleMethod implements AuthMethod {
  constructor(private readonly ctx: MethodContext) {}

  private get uuid(): string {
    return this.ctx.mount.uuid;
  }

  private roleName(ctx: RequestContext): string {
    const n = ctx.params.name!;
    if (!ROLE_NAME.test(n)) throw errors.BAD_FIELD('role_name', 'may contain only letters, digits, "_", ".", "@" and "-" (at most 128)');
    return n;
  }

  private roleIdIndex(roleId: string): string {
    return `role-id/${this.ctx.hmac(`approle-role-id:${this.uuid}:${roleId}`)}`;
  }

  private secretHash(role: string, secretId: string): string {
    return this.ctx.hmac(`approle-secret-id:${this.uuid}:${role}:${secretId}`);
  }

  private accessorHash(role: string, accessor: string): string {
    return this.ctx.hmac(`approle-secret-id-accessor:${this.uuid}:${role}:${accessor}`);
  }

  private async role(name: string): Promise<RoleRecord | undefined> {
    return this.ctx.store.get<RoleRecord>(`role/${name}`);
  }

  private async mustRole(name: string): Promise<RoleRecord> {
    const r = await this.role(name);
    if (!r) throw errors.BAD_REQUEST(`role "${name}" does not exist`);
    return r;
  }

  private async writeRole(body: Record<string, unknown>, name: string): Promise<void> {
    refuseUnsupported(body, UNSUPPORTED_ROLE);
    const existing = await this.role(name);
    const secretCidrs = listField(body, 'secret_id_bound_cidrs') ?? listField(body, 'bound_cidr_list');
    const role: RoleRecord = {
      name,
      roleId: existing?.roleId ?? randomUUID(),
      bindSecretId: typeof body.bind_secret_id === 'boolean' ? body.bind_secret_id : (existing?.bindSecretId ?? true),
      secretIdTtl: durationField(body, 'secret_id_ttl') ?? existing?.secretIdTtl ?? 0,
      secretIdNumUses: typeof body.secret_id_num_uses === 'number' ? body.secret_id_num_uses : (existing?.secretIdNumUses ?? 0),
      secretIdBoundCidrs: secretCidrs !== undefined ? parseCidrs('secret_id_bound_cidrs', secretCidrs) : (existing?.secretIdBoundCidrs ?? []),
      token: parseTokenParams(body, existing?.token),
    };
    if (typeof body.role_id === 'string') role.roleId = body.role_id;
    // Vault: a role must have at least one constraint on login.
    if (!role.bindSecretId && role.secretIdBoundCidrs.length === 0 && role.token.boundCidrs.length === 0) {
      throw errors.BAD_FIELD('bind_secret_id', 'at least one constraint should be enabled on the role (bind_secret_id, secret_id_bound_cidrs or token_bound_cidrs)');
    }
    await this.setRoleId(role, existing?.roleId);
  }

  /** Store the role and its role-ID index entry; refuses a role ID another role uses. */
  private async setRoleId(role: RoleRecord, previous: string | undefined): Promise<void> {
    const index = await this.ctx.store.get<{ name: string }>(this.roleIdIndex(role.roleId));
    if (index && index.name !== role.name) throw errors.BAD_FIELD('role_id', 'is already used by another role');
    await this.ctx.store.put(`role/${role.name}`, role);
    await this.ctx.store.put(this.roleIdIndex(role.roleId), { name: role.name });
    if (previous !== undefined && previous !== role.roleId) await this.ctx.store.delete(this.roleIdIndex(previous));
  }

  private roleView(r: RoleRecord): Record<string, unknown> {
    return {
      bind_secret_id: r.bindSecretId,
      local_secret_ids: false,
      secret_id_bound_cidrs: r.secretIdBoundCidrs,
      secret_id_num_uses: r.secretIdNumUses,
      secret_id_ttl: r.secretIdTtl,
      ...tokenParamsView(r.token),
    };
  }

  private async generate(ctx: RequestContext, custom: boolean) {
    const role = await this.mustRole(this.roleName(ctx));
    if (!role.bindSecretId) throw errors.BAD_REQUEST('bind_secret_id is not set on the role; secret IDs cannot be generated');
    const secretId = custom ? requiredString(ctx.body, 'secret_id') : randomUUID();
    if (!custom && ctx.body.secret_id !== undefined) throw errors.BAD_REQUEST('unknown field "secret_id" (use custom-secret-id to choose one)');
    let metadata: Record<string, string> = {};
    if (typeof ctx.body.metadata === 'string' && ctx.body.metadata !== '') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(ctx.body.metadata);
      } catch {
        throw errors.BAD_FIELD('metadata', 'must be a JSON object of strings, given as a string');
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
        throw errors.BAD_FIELD('metadata', 'must be a JSON object of strings, given as a string');
      }
      metadata = parsed as Record<string, string>;
    }
    const cidrList = parseCidrs('cidr_list', listField(ctx.body, 'cidr_list') ?? []);
    const tokenBoundCidrs = parseCidrs('token_bound_cidrs', listField(ctx.body, 'token_bound_cidrs') ?? []);
    // Vault: a secret ID's CIDRs must lie within the role's.
    if (role.secretIdBoundCidrs.length > 0 && cidrList.some((c) => !role.secretIdBoundCidrs.some((r) => within(c, r)))) {
      throw errors.BAD_FIELD('cidr_list', 'must be a subset of the role\'s secret_id_bound_cidrs');
    }
    if (role.token.boundCidrs.length > 0 && tokenBoundCidrs.some((c) => !role.token.boundCidrs.some((r) => within(c, r)))) {
      throw errors.BAD_FIELD('token_bound_cidrs', 'must be a subset of the role\'s token_bound_cidrs');
    }
    // num_uses/ttl may only narrow the role's (Vault).
    const askedUses = typeof ctx.body.num_uses === 'number' ? ctx.body.num_uses : undefined;
    if (askedUses !== undefined && role.secretIdNumUses > 0 && (askedUses === 0 || askedUses > role.secretIdNumUses)) {
      throw errors.BAD_FIELD('num_uses', `cannot be more than the role's secret_id_num_uses (${role.secretIdNumUses})`);
    }
    const askedTtl = durationField(ctx.body, 'ttl');
    if (askedTtl !== undefined && role.secretIdTtl > 0 && (askedTtl === 0 || askedTtl > role.secretIdTtl)) {
      throw errors.BAD_FIELD('ttl', `cannot be more than the role's secret_id_ttl (${role.secretIdTtl}s)`);
    }
    const numUses = askedUses ?? role.secretIdNumUses;
    const ttl = askedTtl ?? role.secretIdTtl;
    const now = Date.now();
    const details: SecretIdDetails = { accessor: randomUUID(), metadata, cidrList, tokenBoundCidrs, creationTime: now, ttl, numUses };
    const idHash = this.secretHash(role.name, secretId);
    if (custom && (await this.ctx.secretIds.getSecretId(idHash))) throw errors.BAD_FIELD('secret_id', 'is already registered');
    await this.ctx.secretIds.insertSecretId({
      idHash,
      accessorHash: this.accessorHash(role.name, details.accessor),
      mount: this.uuid,
      role: role.name,
      expiresAt: ttl > 0 ? now + ttl * 1000 : null,
      usesLeft: numUses > 0 ? numUses : null,
      sealed: this.ctx.encrypt(`secret-id/${idHash}`, details),
    });
    return { data: { secret_id: secretId, secret_id_accessor: details.accessor, secret_id_ttl: ttl, secret_id_num_uses: numUses } };
  }

  private details(row: SecretIdRow): SecretIdDetails {
    return this.ctx.decrypt<SecretIdDetails>(`secret-id/${row.idHash}`, row.sealed);
  }

  private secretView(row: SecretIdRow): Record<string, unknown> {
    const d = this.details(row);
    return {
      cidr_list: d.cidrList,
      creation_time: new Date(d.creationTime).toISOString(),
      expiration_time: isoOrZero(row.expiresAt),
      last_updated_time: new Date(d.creationTime).toISOString(),
      metadata: d.metadata,
      secret_id_accessor: d.accessor,
      secret_id_num_uses: row.usesLeft ?? 0,
      secret_id_ttl: d.ttl,
      token_bound_cidrs: d.tokenBoundCidrs,
    };
  }

  /** The live secret-ID row of `role` for `secretId`, or undefined (hash compared in constant time). */
  private async findSecret(role: string, secretId: string): Promise<SecretIdRow | undefined> {
    const idHash = this.secretHash(role, secretId);
    const row = await this.ctx.secretIds.getSecretId(idHash);
    if (!row || !timingSafeEqual(Buffer.from(row.idHash), Buffer.from(idHash)) || row.mount !== this.uuid || row.role !== role) return undefined;
    if (row.expiresAt !== null && row.expiresAt <= Date.now()) {
      await this.ctx.secretIds.deleteSecretId(row.idHash);
      return undefined;
    }
    return row;
  }

  private async findAccessor(role: string, accessor: string): Promise<SecretIdRow | undefined> {
    const row = await this.ctx.secretIds.getSecretIdByAccessor(this.accessorHash(role, accessor));
    if (!row || row.mount !== this.uuid || row.role !== role) return undefined;
    return row;
  }

  private async login(ctx: RequestContext) {
    const fail = (reason: string, message = 'invalid role ID or secret ID') => this.ctx.loginFailed(ctx, reason, errors.LOGIN_FAILED(message));
    const roleId = ctx.body.role_id;
    if (typeof roleId !== 'string' || roleId === '') throw errors.BAD_REQUEST('missing required field "role_id"');
    const index = await this.ctx.store.get<{ name: string }>(this.roleIdIndex(roleId));
    const role = index ? await this.role(index.name) : undefined;
    if (!role || !timingSafeEqual(Buffer.from(this.ctx.hmac(role.roleId)), Buffer.from(this.ctx.hmac(roleId)))) throw fail('unknown role_id', 'invalid role ID');
    const address = ctx.remoteAddress;
    if (!addressAllowed(role.secretIdBoundCidrs, address)) {
      throw this.ctx.loginFailed(ctx, `role "${role.name}": client address is outside secret_id_bound_cidrs`, errors.LOGIN_DENIED('source address unauthorized through CIDR restrictions on the role'));
    }
    if (!addressAllowed(role.token.boundCidrs, address)) {
      throw this.ctx.loginFailed(ctx, `role "${role.name}": client address is outside token_bound_cidrs`, errors.LOGIN_DENIED('source address unauthorized through CIDR restrictions on the role'));
    }
    const metadata: Record<string, string> = {};
    let tokenBoundCidrs = role.token.boundCidrs;
    if (role.bindSecretId) {
      const secretId = ctx.body.secret_id;
      if (typeof secretId !== 'string' || secretId === '') throw fail(`role "${role.name}": no secret_id`, 'missing required field "secret_id"');
      const row = await this.findSecret(role.name, secretId);
      if (!row) throw fail(`role "${role.name}": unknown, expired or destroyed secret_id`);
      const d = this.details(row);
      if (!addressAllowed(d.cidrList, address)) {
        throw this.ctx.loginFailed(ctx, `role "${role.name}": client address is outside the secret ID's cidr_list`, errors.LOGIN_DENIED('source address unauthorized through CIDR restrictions on the secret ID'));
      }
      if (!addressAllowed(d.tokenBoundCidrs, address)) {
        throw this.ctx.loginFailed(ctx, `role "${role.name}": client address is outside the secret ID's token_bound_cidrs`, errors.LOGIN_DENIED('source address unauthorized through CIDR restrictions on the secret ID'));
      }
      // One atomic conditional decrement: of N concurrent logins with N uses left, exactly N pass.
      const use = await this.ctx.secretIds.useSecretId(row.idHash, Date.now());
      if (!use.ok) throw fail(`role "${role.name}": secret_id has no uses left or expired`);
      if (use.left === 0) await this.ctx.secretIds.deleteSecretId(row.idHash);
      Object.assign(metadata, d.metadata);
      if (d.tokenBoundCidrs.length > 0) tokenBoundCidrs = d.tokenBoundCidrs;
    } else if (ctx.body.secret_id !== undefined && ctx.body.secret_id !== '') {
      throw fail(`role "${role.name}": secret_id given to a role without bind_secret_id`, 'secret_id is not used by this role (bind_secret_id is false)');
    }
    metadata.role_name = role.name;
    return this.ctx.issue({ params: { ...role.token, boundCidrs: tokenBoundCidrs }, displayName: '', metadata, aliasName: role.roleId }, ctx);
  }

  async renewCheck(meta: Record<string, string>, policies: string[]): Promise<string | undefined> {
    const role = meta.role_name === undefined ? undefined : await this.role(meta.role_name);
    if (!role) return `role "${meta.role_name ?? ''}" does not exist any more`;
    if (!samePolicies(role.token, policies)) return 'the role\'s policies have changed';
    return undefined;
  }

  routes(): Route[] {
    const roleRoute = (suffix: string) => `role/:name${suffix}`;
    return [
      {
        methods: ['PUT'],
        pattern: 'login',
        auth: 'none',
        schema: object({ role_id: { type: 'string', maxLength: 4096 }, secret_id: { type: 'string', maxLength: 4096 } }),
        handler: (ctx) => this.login(ctx),
      },
      {
        methods: ['LIST'],
        pattern: 'role',
        auth: 'token',
        handler: async () => {
          const keys = (await this.ctx.store.list('role/')).filter((k) => !k.includes('/'));
          if (keys.length === 0) throw errors.EMPTY_LIST(`auth/${this.ctx.mount.path}role/`);
          return { data: { keys } };
        },
      },
      {
        methods: ['GET', 'PUT', 'DELETE'],
        pattern: roleRoute(''),
        auth: 'token',
        schema: roleSchema,
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          if (ctx.method === 'PUT') return void (await this.writeRole(ctx.body, n));
          const role = await this.role(n);
          if (ctx.method === 'GET') {
            if (!role) throw errors.ENTRY_NOT_FOUND(`auth/${this.ctx.mount.path}role/${n}`);
            return { data: this.roleView(role) };
          }
          if (role) {
            await this.ctx.secretIds.deleteSecretIds(this.uuid, n);
            await this.ctx.store.delete(this.roleIdIndex(role.roleId));
            await this.ctx.store.delete(`role/${n}`);
          }
          return undefined;
        },
      },
      {
        methods: ['GET', 'PUT'],
        pattern: roleRoute('/role-id'),
        auth: 'token',
        schema: object({ role_id: { type: 'string', minLength: 1, maxLength: 4096 } }, ['role_id']),
        handler: async (ctx) => {
          const role = await this.mustRole(this.roleName(ctx));
          if (ctx.method === 'GET') return { data: { role_id: role.roleId } };
          const previous = role.roleId;
          await this.setRoleId({ ...role, roleId: ctx.body.role_id as string }, previous);
          return undefined;
        },
      },
      {
        methods: ['PUT', 'LIST'],
        pattern: roleRoute('/secret-id'),
        auth: 'token',
        schema: secretIdSchema,
        handler: async (ctx) => {
          if (ctx.method === 'PUT') return this.generate(ctx, false);
          const n = this.roleName(ctx);
          await this.mustRole(n);
          const now = Date.now();
          const keys = (await this.ctx.secretIds.listSecretIds(this.uuid, n)).filter((r) => r.expiresAt === null || r.expiresAt > now).map((r) => this.details(r).accessor).sort();
          if (keys.length === 0) throw errors.EMPTY_LIST(`auth/${this.ctx.mount.path}role/${n}/secret-id/`);
          return { data: { keys } };
        },
      },
      { methods: ['PUT'], pattern: roleRoute('/custom-secret-id'), auth: 'token', schema: secretIdSchema, handler: (ctx) => this.generate(ctx, true) },
      {
        methods: ['PUT'],
        pattern: roleRoute('/secret-id/lookup'),
        auth: 'token',
        schema: object({ secret_id: { type: 'string', minLength: 1, maxLength: 4096 } }, ['secret_id']),
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          await this.mustRole(n);
          const row = await this.findSecret(n, ctx.body.secret_id as string);
          // Vault answers an unknown secret ID with an empty 204.
          return row ? { data: this.secretView(row) } : undefined;
        },
      },
      {
        methods: ['PUT', 'DELETE'],
        pattern: roleRoute('/secret-id/destroy'),
        auth: 'token',
        schema: object({ secret_id: { type: 'string', minLength: 1, maxLength: 4096 } }, ['secret_id']),
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          await this.mustRole(n);
          const secretId = requiredString(ctx.body, 'secret_id');
          const row = await this.findSecret(n, secretId);
          if (row) await this.ctx.secretIds.deleteSecretId(row.idHash);
          return undefined;
        },
      },
      {
        methods: ['PUT'],
        pattern: roleRoute('/secret-id-accessor/lookup'),
        auth: 'token',
        schema: object({ secret_id_accessor: { type: 'string', minLength: 1, maxLength: 256 } }, ['secret_id_accessor']),
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          await this.mustRole(n);
          const row = await this.findAccessor(n, ctx.body.secret_id_accessor as string);
          if (!row || (row.expiresAt !== null && row.expiresAt <= Date.now())) throw errors.BAD_FIELD('secret_id_accessor', 'no secret ID with this accessor');
          return { data: this.secretView(row) };
        },
      },
      {
        methods: ['PUT', 'DELETE'],
        pattern: roleRoute('/secret-id-accessor/destroy'),
        auth: 'token',
        schema: object({ secret_id_accessor: { type: 'string', minLength: 1, maxLength: 256 } }, ['secret_id_accessor']),
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          await this.mustRole(n);
          const accessor = requiredString(ctx.body, 'secret_id_accessor');
          const row = await this.findAccessor(n, accessor);
          if (!row) throw errors.BAD_FIELD('secret_id_accessor', 'no secret ID with this accessor');
          await this.ctx.secretIds.deleteSecretId(row.idHash);
          return undefined;
        },
      },
      {
        methods: ['PUT'],
        pattern: 'tidy/secret-id',
        auth: 'token',
        schema: object({}),
        handler: async () => {
          const removed = await this.ctx.secretIds.deleteExpiredSecretIds(Date.now());
          return { data: { removed } };
        },
      },
    ];
  }
}

/** Is CIDR block `inner` inside block `outer`? (both normalized "addr/bits") */
function within(inner: string, outer: string): boolean {
  const [addr, bits] = inner.split('/');
  const [, outerBits] = outer.split('/');
  return Number(bits) >= Number(outerBits) && addressAllowed([outer], addr);
}

