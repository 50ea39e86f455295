// auth/token/*: create, lookup, renew and revoke tokens.

import { capabilitiesOn } from '../auth/policy.ts';
import type { Token } from '../auth/token-store.ts';
import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { duration, durationField, listField, object, stringList } from '../http/schema.ts';

// `id` is the token itself, known only when the caller sent it (lookup-self,
// lookup); Vault answers the same way and leaves it empty for lookup-accessor.
function tokenData(t: Token, id = ''): Record<string, unknown> {
  const now = Date.now();
  return {
    accessor: t.accessor,
    creation_time: Math.floor(t.creationTime / 1000),
    creation_ttl: t.ttl,
    display_name: t.displayName,
    entity_id: t.entityId,
    expire_time: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
    explicit_max_ttl: t.explicitMaxTtl,
    id,
    issue_time: new Date(t.creationTime).toISOString(),
    meta: Object.keys(t.meta).length > 0 ? t.meta : null,
    num_uses: t.usesLeft ?? 0,
    orphan: t.parentHash === null,
    path: t.path,
    policies: t.policies,
    renewable: t.renewable,
    ...(t.period ? { period: t.period } : {}),
    ttl: t.expiresAt === null ? 0 : Math.max(0, Math.floor((t.expiresAt - now) / 1000)),
    type: 'service',
  };
}

export function authBlock(secret: string, t: Token): Record<string, unknown> {
  return {
    client_token: secret,
    accessor: t.accessor,
    policies: t.policies,
    token_policies: t.policies,
    metadata: Object.keys(t.meta).length > 0 ? t.meta : null,
    lease_duration: t.expiresAt === null ? 0 : Math.max(0, Math.round((t.expiresAt - Date.now()) / 1000)),
    renewable: t.renewable,
    entity_id: t.entityId,
    token_type: 'service',
    orphan: t.parentHash === null,
    num_uses: t.usesLeft ?? 0,
  };
}

/** The body fields of auth/token/create (Vault API docs, "Token auth method: create token"); token roles reuse them. */
export const TOKEN_CREATE_FIELDS = {
  policies: stringList,
  ttl: duration,
  explicit_max_ttl: duration,
  period: duration,
  renewable: { type: 'boolean' },
  num_uses: { type: 'integer', minimum: 0, maximum: 1000000 },
  display_name: { type: 'string', maxLength: 256 },
  meta: { type: 'object', additionalProperties: { type: 'string', maxLength: 4096 }, maxProperties: 64 },
  no_parent: { type: 'boolean' },
  no_default_policy: { type: 'boolean' },
  id: { type: 'string', minLength: 1, maxLength: 256 },
  type: { type: 'string', enum: ['service', ''] },
  entity_alias: { type: 'string', maxLength: 0 },
} as const;

const createSchema = object(TOKEN_CREATE_FIELDS);

/** Vault's display name: "token-<name>" with anything but letters, digits and "-" made "-". */
export function tokenDisplayName(name: unknown): string {
  if (typeof name !== 'string' || name === '') return 'token';
  return `token-${name}`.replace(/[^a-zA-Z0-9-]/g, '-').replace(/-+$/, '');
}

export function tokenRoutes(broker: Broker): Route[] {
  const tokens = broker.tokens;

  const create = async (ctx: RequestContext, orphan: boolean) => {
    const parent = ctx.token!;
    const isRoot = parent.policies.includes('root');
    // Vault: orphans, periodic tokens and chosen ids need root or sudo on the create path.
    const sudo = isRoot || capabilitiesOn(await broker.policiesOf(parent), ctx.path).has('sudo');
    let policies = listField(ctx.body, 'policies') ?? parent.policies;
    if (!isRoot && policies.some((p) => !parent.policies.includes(p))) {
      throw errors.BAD_FIELD('policies', 'a child token can only have a subset of its parent token\'s policies');
    }
    if (ctx.body.id !== undefined && !isRoot) throw errors.BAD_FIELD('id', 'only a root token may choose a token id');
    if (ctx.body.no_parent === true && !sudo) throw errors.BAD_FIELD('no_parent', 'only a root or sudo token may create an orphan token');
    if (ctx.body.no_default_policy !== true && !policies.includes('root') && !policies.includes('default')) policies = [...policies, 'default'];
    const ttl = durationField(ctx.body, 'ttl');
    const explicitMaxTtl = durationField(ctx.body, 'explicit_max_ttl');
    const period = durationField(ctx.body, 'period');
    if (period && !sudo) throw errors.BAD_FIELD('period', 'only a root or sudo token may create a periodic token');
    const { secret, token, warnings } = await tokens.create({
      policies,
      ...(ttl !== undefined ? { ttl } : {}),
      ...(explicitMaxTtl !== undefined ? { explicitMaxTtl } : {}),
      ...(period ? { period } : {}),
      defaultTtl: broker.config.defaultLeaseTtl,
      maxTtl: broker.config.maxLeaseTtl,
      ...(typeof ctx.body.renewable === 'boolean' ? { renewable: ctx.body.renewable } : {}),
      ...(typeof ctx.body.num_uses === 'number' ? { numUses: ctx.body.num_uses } : {}),
      displayName: tokenDisplayName(ctx.body.display_name),
      ...(ctx.body.meta ? { meta: ctx.body.meta as Record<string, string> } : {}),
      ...(typeof ctx.body.id === 'string' ? { id: ctx.body.id } : {}),
      parent: orphan || ctx.body.no_parent === true ? null : parent,
      path: orphan ? 'auth/token/create-orphan' : 'auth/token/create',
    });
    return { auth: authBlock(secret, token), warnings };
  };

  const byBody = async (ctx: RequestContext, notFound = errors.TOKEN_NOT_FOUND): Promise<Token> => {
    const secret = ctx.body.token;
    if (typeof secret !== 'string' || secret === '') throw errors.BAD_REQUEST('missing required field "token"');
    const token = await tokens.lookup(secret);
    if (!token) throw notFound();
    return token;
  };
  const byAccessor = async (ctx: RequestContext): Promise<Token> => {
    const accessor = ctx.body.accessor;
    if (typeof accessor !== 'string' || accessor === '') throw errors.BAD_REQUEST('missing required field "accessor"');
    const token = await tokens.lookupByAccessor(accessor);
    if (!token) throw errors.TOKEN_NOT_FOUND();
    return token;
  };
  const renew = async (ctx: RequestContext, token: Token) => {
    const increment = durationField(ctx.body, 'increment') ?? 0;
    const { token: renewed, warnings } = await tokens.renew(token, increment, broker.config.maxLeaseTtl);
    return { auth: authBlock('', renewed), warnings };
  };

  const tokenField = object({ token: { type: 'string', maxLength: 1024 }, increment: duration });
  const accessorField = object({ accessor: { type: 'string', maxLength: 256 }, increment: duration });
  const incrementField = object({ increment: duration });

  return [
    { methods: ['PUT'], pattern: 'auth/token/create', auth: 'token', schema: createSchema, handler: (ctx) => create(ctx, false) },
    { methods: ['PUT'], pattern: 'auth/token/create-orphan', auth: 'token', sudo: true, schema: createSchema, handler: (ctx) => create(ctx, true) },
    { methods: ['GET'], pattern: 'auth/token/lookup-self', auth: 'token', handler: async (ctx) => ({ data: tokenData(ctx.token!, ctx.tokenSecret) }) },
    { methods: ['PUT'], pattern: 'auth/token/lookup', auth: 'token', schema: tokenField, handler: async (ctx) => ({ data: tokenData(await byBody(ctx, errors.BAD_TOKEN), ctx.body.token as string) }) },
    { methods: ['PUT'], pattern: 'auth/token/lookup-accessor', auth: 'token', schema: accessorField, handler: async (ctx) => ({ data: tokenData(await byAccessor(ctx)) }) },
    { methods: ['PUT'], pattern: 'auth/token/renew-self', auth: 'token', schema: incrementField, handler: (ctx) => renew(ctx, ctx.token!) },
    { methods: ['PUT'], pattern: 'auth/token/renew', auth: 'token', schema: tokenField, handler: async (ctx) => renew(ctx, await byBody(ctx)) },
    { methods: ['PUT'], pattern: 'auth/token/renew-accessor', auth: 'token', schema: accessorField, handler: async (ctx) => renew(ctx, await byAccessor(ctx)) },
    {
      methods: ['PUT'],
      pattern: 'auth/token/revoke-self',
      auth: 'token',
      schema: object({}),
      handler: async (ctx) => (await broker.revokeToken(ctx.token!.idHash), undefined),
    },
    {
      methods: ['PUT'],
      pattern: 'auth/token/revoke',
      auth: 'token',
      schema: tokenField,
      handler: async (ctx) => {
        const secret = ctx.body.token;
        if (typeof secret !== 'string' || secret === '') throw errors.BAD_REQUEST('missing required field "token"');
        const token = await tokens.lookup(secret);
        if (token) await broker.revokeToken(token.idHash);
        return undefined;
      },
    },
    {
      methods: ['PUT'],
      pattern: 'auth/token/revoke-accessor',
      auth: 'token',
      schema: accessorField,
      handler: async (ctx) => (await broker.revokeToken((await byAccessor(ctx)).idHash), undefined),
    },
  ];
}
