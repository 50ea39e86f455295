// Token roles and the rest of the token method's API
// (https://developer.hashicorp.com/vault/api-docs/auth/token):
// auth/token/roles/:name (allowed_policies, disallowed_policies and their
// _glob forms, orphan, renewable, path_suffix, token_period,
// token_explicit_max_ttl, token_bound_cidrs, token_no_default_policy,
// token_num_uses), LIST auth/token/roles, auth/token/create/:role,
// auth/token/revoke-orphan (sudo), LIST auth/token/accessors (sudo).

import { capabilitiesOn, type PathRule } from '../auth/policy.ts';
import { parseCidrs } from '../auth/cidr.ts';
import { globMatch } from '../auth/jwt-verify.ts';
import { refuseUnsupported, anyValue } from '../auth/method.ts';
import type { Token, TokenStore } from '../auth/token-store.ts';
import { errors } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { duration, durationField, listField, object, stringList } from '../http/schema.ts';
import type { Storage } from '../storage/storage.ts';
import { authBlock, TOKEN_CREATE_FIELDS, tokenDisplayName } from './auth-token.ts';

export interface TokenRoleHost {
  readonly tokens: TokenStore;
  readonly storage: Storage;
  readonly config: { defaultLeaseTtl: number; maxLeaseTtl: number };
  policiesOf(token: Token): Promise<PathRule[][]>;
  readEntry<T>(path: string): Promise<T | undefined>;
  writeEntry(path: string, value: unknown): Promise<void>;
  wakeRevocation(): void;
}

interface TokenRole {
  name: string;
  allowedPolicies: string[];
  disallowedPolicies: string[];
  allowedPoliciesGlob: string[];
  disallowedPoliciesGlob: string[];
  orphan: boolean;
  renewable: boolean;
  pathSuffix: string;
  /** Seconds. */
  period: number;
  explicitMaxTtl: number;
  boundCidrs: string[];
  noDefaultPolicy: boolean;
  numUses: number;
}

const PREFIX = 'core/token-roles/';
const ROLE_NAME = /^[\w.@-]{1,128}$/;
const ACCESSOR_PAGE = 500;

const roleSchema = object({
  allowed_policies: stringList,
  disallowed_policies: stringList,
  allowed_policies_glob: stringList,
  disallowed_policies_glob: stringList,
  orphan: { type: 'boolean' },
  renewable: { type: 'boolean' },
  path_suffix: { type: 'string', maxLength: 256 },
  token_period: duration,
  period: duration,
  token_explicit_max_ttl: duration,
  explicit_max_ttl: duration,
  token_bound_cidrs: stringList,
  bound_cidrs: stringList,
  token_no_default_policy: { type: 'boolean' },
  token_num_uses: { type: 'integer', minimum: 0, maximum: 1000000 },
  token_type: { type: 'string', maxLength: 32 },
  allowed_entity_aliases: anyValue,
});

// auth/token/create/:role takes the same fields; a role's create refuses entity aliases and chosen ids by name (refuseUnsupported).
const createSchema = object({ ...TOKEN_CREATE_FIELDS, entity_alias: anyValue, id: anyValue });

function roleView(r: TokenRole): Record<string, unknown> {
  return {
    name: r.name,
    allowed_policies: r.allowedPolicies,
    disallowed_policies: r.disallowedPolicies,
    allowed_policies_glob: r.allowedPoliciesGlob,
    disallowed_policies_glob: r.disallowedPoliciesGlob,
    allowed_entity_aliases: [],
    orphan: r.orphan,
    renewable: r.renewable,
    path_suffix: r.pathSuffix,
    token_period: r.period,
    period: r.period,
    token_explicit_max_ttl: r.explicitMaxTtl,
    explicit_max_ttl: r.explicitMaxTtl,
    token_bound_cidrs: r.boundCidrs,
    bound_cidrs: r.boundCidrs,
    token_no_default_policy: r.noDefaultPolicy,
    token_num_uses: r.numUses,
    token_type: 'default-service',
  };
}

export function tokenRoleRoutes(host: TokenRoleHost): Route[] {
  const roleName = (ctx: RequestContext, param = 'name'): string => {
    const n = ctx.params[param]!;
    if (!ROLE_NAME.test(n)) throw errors.BAD_FIELD('role_name', 'may contain only letters, digits, "_", ".", "@" and "-" (at most 128)');
    return n;
  };

  const writeRole = async (name: string, body: Record<string, unknown>): Promise<void> => {
    refuseUnsupported(body, { allowed_entity_aliases: 'there are no identity entities' });
    const e = await host.readEntry<TokenRole>(PREFIX + name);
    const list = (f: string): string[] | undefined => listField(body, f);
    const type = body.token_type;
    if (type !== undefined && type !== '' && type !== 'service' && type !== 'default-service' && type !== 'default') {
      throw errors.UNSUPPORTED_FIELD('token_type', 'only service tokens are issued');
    }
    const suffix = typeof body.path_suffix === 'string' ? body.path_suffix : (e?.pathSuffix ?? '');
    if (suffix.includes('..') || !/^[\w.@/-]*$/.test(suffix)) throw errors.BAD_FIELD('path_suffix', 'may contain only letters, digits, "_", ".", "@", "-" and "/", and no ".."');
    const cidrs = list('token_bound_cidrs') ?? list('bound_cidrs');
    const role: TokenRole = {
      name,
      allowedPolicies: list('allowed_policies') ?? e?.allowedPolicies ?? [],
      disallowedPolicies: list('disallowed_policies') ?? e?.disallowedPolicies ?? [],
      allowedPoliciesGlob: list('allowed_policies_glob') ?? e?.allowedPoliciesGlob ?? [],
      disallowedPoliciesGlob: list('disallowed_policies_glob') ?? e?.disallowedPoliciesGlob ?? [],
      orphan: typeof body.orphan === 'boolean' ? body.orphan : (e?.orphan ?? false),
      renewable: typeof body.renewable === 'boolean' ? body.renewable : (e?.renewable ?? true),
      pathSuffix: suffix,
      period: durationField(body, 'token_period') ?? durationField(body, 'period') ?? e?.period ?? 0,
      explicitMaxTtl: durationField(body, 'token_explicit_max_ttl') ?? durationField(body, 'explicit_max_ttl') ?? e?.explicitMaxTtl ?? 0,
      boundCidrs: cidrs !== undefined ? parseCidrs('token_bound_cidrs', cidrs) : (e?.boundCidrs ?? []),
      noDefaultPolicy: typeof body.token_no_default_policy === 'boolean' ? body.token_no_default_policy : (e?.noDefaultPolicy ?? false),
      numUses: typeof body.token_num_uses === 'number' ? body.token_num_uses : (e?.numUses ?? 0),
    };
    if (role.allowedPolicies.includes('root') || role.allowedPoliciesGlob.some((g) => globMatch(g, 'root'))) {
      throw errors.BAD_FIELD('allowed_policies', 'a token role cannot allow the "root" policy');
    }
    await host.writeEntry(PREFIX + name, role);
  };

  /**
   * auth/token/create/:role, Vault's rules: the policies asked for (or, when
   * none, the role's allowed_policies, else the parent's) must be allowed by
   * the role and none disallowed; with allowed policies set, the parent's
   * policies do not limit the child. orphan, renewable, period,
   * explicit_max_ttl and bound CIDRs come from the role.
   */
  const createWithRole = async (ctx: RequestContext) => {
    const parent = ctx.token!;
    const name = roleName(ctx, 'role');
    const role = await host.readEntry<TokenRole>(PREFIX + name);
    if (!role) throw errors.BAD_FIELD('role_name', `unknown role "${name}"`);
    refuseUnsupported(ctx.body, { entity_alias: 'there are no identity entities', id: 'a chosen token id is only possible at auth/token/create' });
    const isRoot = parent.policies.includes('root');
    const sudo = isRoot || capabilitiesOn(await host.policiesOf(parent), ctx.path).has('sudo');
    const asked = listField(ctx.body, 'policies');
    const roleLimits = role.allowedPolicies.length > 0 || role.allowedPoliciesGlob.length > 0;
    let policies = (asked ?? (roleLimits ? role.allowedPolicies : parent.policies)).filter((p) => p !== 'default');
    const allowed = (p: string) => role.allowedPolicies.includes(p) || role.allowedPoliciesGlob.some((g) => globMatch(g, p));
    const disallowed = (p: string) => role.disallowedPolicies.includes(p) || role.disallowedPoliciesGlob.some((g) => globMatch(g, p));
    if (policies.includes('root') && !isRoot) throw errors.BAD_FIELD('policies', 'only a root token may create a root token');
    if (roleLimits) {
      const bad = policies.find((p) => !allowed(p));
      if (bad !== undefined) throw errors.BAD_FIELD('policies', `"${bad}" is not in the role's allowed_policies`);
    } else if (!isRoot && policies.some((p) => !parent.policies.includes(p))) {
      throw errors.BAD_FIELD('policies', 'a child token can only have a subset of its parent token\'s policies');
    }
    const refused = policies.find(disallowed);
    if (refused !== undefined) throw errors.BAD_FIELD('policies', `"${refused}" is in the role's disallowed_policies`);
    const noDefault = ctx.body.no_default_policy === true || role.noDefaultPolicy;
    if (!noDefault && !policies.includes('root') && !disallowed('default')) policies = [...policies, 'default'];
    if (ctx.body.no_parent === true && !sudo && !role.orphan) throw errors.BAD_FIELD('no_parent', 'only a root or sudo token may create an orphan token');
    const askedPeriod = durationField(ctx.body, 'period');
    if (askedPeriod && !sudo) throw errors.BAD_FIELD('period', 'only a root or sudo token may create a periodic token');
    const ttl = durationField(ctx.body, 'ttl');
    const askedMax = durationField(ctx.body, 'explicit_max_ttl') ?? 0;
    const limits = [askedMax, role.explicitMaxTtl].filter((v) => v > 0);
    const explicitMaxTtl = limits.length > 0 ? Math.min(...limits) : 0;
    const period = role.period > 0 ? role.period : (askedPeriod ?? 0);
    const renewable = role.renewable && ctx.body.renewable !== false;
    const numUses = typeof ctx.body.num_uses === 'number' ? ctx.body.num_uses : role.numUses;
    const { secret, token, warnings } = await host.tokens.create({
      policies,
      ...(ttl !== undefined ? { ttl } : {}),
      ...(explicitMaxTtl > 0 ? { explicitMaxTtl } : {}),
      ...(period > 0 ? { period } : {}),
      defaultTtl: host.config.defaultLeaseTtl,
      maxTtl: host.config.maxLeaseTtl,
      renewable,
      numUses,
      displayName: tokenDisplayName(ctx.body.display_name),
      ...(ctx.body.meta ? { meta: ctx.body.meta as Record<string, string> } : {}),
      parent: role.orphan || ctx.body.no_parent === true ? null : parent,
      path: `auth/token/create/${name}${role.pathSuffix ? `/${role.pathSuffix}` : ''}`,
      boundCidrs: role.boundCidrs,
      role: name,
    });
    return { auth: authBlock(secret, token), warnings };
  };

  return [
    {
      methods: ['LIST'],
      pattern: 'auth/token/roles',
      auth: 'token',
      handler: async () => {
        const keys = (await host.storage.listEntries(PREFIX)).map((k) => k.slice(PREFIX.length));
        if (keys.length === 0) throw errors.EMPTY_LIST('auth/token/roles/');
        return { data: { keys } };
      },
    },
    {
      methods: ['GET', 'PUT', 'DELETE'],
      pattern: 'auth/token/roles/:name',
      auth: 'token',
      schema: roleSchema,
      handler: async (ctx) => {
        const name = roleName(ctx);
        if (ctx.method === 'PUT') return void (await writeRole(name, ctx.body));
        if (ctx.method === 'DELETE') return void (await host.storage.deleteEntry(PREFIX + name));
        const role = await host.readEntry<TokenRole>(PREFIX + name);
        if (!role) throw errors.ENTRY_NOT_FOUND(`auth/token/roles/${name}`);
        return { data: roleView(role) };
      },
    },
    { methods: ['PUT'], pattern: 'auth/token/create/:role', auth: 'token', schema: createSchema, handler: createWithRole },
    {
      methods: ['PUT'],
      pattern: 'auth/token/revoke-orphan',
      auth: 'token',
      sudo: true,
      schema: object({ token: { type: 'string', minLength: 1, maxLength: 1024 } }, ['token']),
      handler: async (ctx) => {
        const token = await host.tokens.lookup(ctx.body.token as string);
        if (!token) return undefined;
        // The children live on as orphans; only this token and its own leases go.
        await host.tokens.orphanChildren(token.idHash);
        const revoked = await host.tokens.revokeTree(token.idHash);
        let leases = 0;
        for (const hash of revoked) leases += await host.storage.expediteLeases({ tokenHash: hash }, Date.now());
        if (leases > 0) host.wakeRevocation();
        return undefined;
      },
    },
    {
      methods: ['LIST'],
      pattern: 'auth/token/accessors',
      auth: 'token',
      sudo: true,
      handler: async () => {
        const keys: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await host.storage.listTokenHashes(ACCESSOR_PAGE, after);
          if (page.length === 0) break;
          after = page[page.length - 1];
          for (const hash of page) {
            const token = await host.tokens.lookupByHash(hash);
            if (token) keys.push(token.accessor);
          }
        }
        return { data: { keys: keys.sort() } };
      },
    },
  ];
}
