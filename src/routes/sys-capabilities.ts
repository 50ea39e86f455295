// sys/capabilities-self, sys/capabilities and sys/capabilities-accessor: what
// a token may do on given paths (Vault Agent and UIs ask before they act).

import type { Token } from '../auth/token-store.ts';
import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { listField, object, stringList } from '../http/schema.ts';
import { capabilitiesOn } from '../auth/policy.ts';

const MAX_PATHS = 256;

function requestedPaths(ctx: RequestContext): string[] {
  const paths = [...(listField(ctx.body, 'paths') ?? []), ...(listField(ctx.body, 'path') ?? [])].map((p) => p.replace(/^\/+/, ''));
  if (paths.length === 0) throw errors.BAD_FIELD('paths', 'is required (one or more paths)');
  if (paths.length > MAX_PATHS) throw errors.BAD_FIELD('paths', `at most ${MAX_PATHS} paths`);
  return paths;
}

async function capabilities(broker: Broker, token: Token, paths: string[]): Promise<Record<string, unknown>> {
  const policies = token.policies.includes('root') ? undefined : await broker.policiesOf(token);
  const data: Record<string, string[]> = {};
  for (const path of paths) {
    if (!policies) {
      data[path] = ['root'];
      continue;
    }
    const caps = [...capabilitiesOn(policies, path)].sort();
    data[path] = caps.length === 0 ? ['deny'] : caps;
  }
  // Vault adds `capabilities`, the union over all paths, for single-path callers.
  const union = new Set(Object.values(data).flat());
  if (union.size > 1) union.delete('deny');
  return { ...data, capabilities: [...union].sort() };
}

export function capabilityRoutes(broker: Broker): Route[] {
  const paths = { paths: stringList, path: stringList };
  return [
    {
      methods: ['PUT'],
      pattern: 'sys/capabilities-self',
      auth: 'token',
      schema: object(paths),
      handler: async (ctx) => ({ data: await capabilities(broker, ctx.token!, requestedPaths(ctx)) }),
    },
    {
      methods: ['PUT'],
      pattern: 'sys/capabilities',
      auth: 'token',
      schema: object({ ...paths, token: { type: 'string', minLength: 1, maxLength: 256 } }, ['token']),
      async handler(ctx) {
        const token = await broker.tokens.lookup(ctx.body.token as string);
        if (!token) throw errors.BAD_TOKEN();
        return { data: await capabilities(broker, token, requestedPaths(ctx)) };
      },
    },
    {
      methods: ['PUT'],
      pattern: 'sys/capabilities-accessor',
      auth: 'token',
      schema: object({ ...paths, accessor: { type: 'string', minLength: 1, maxLength: 256 } }, ['accessor']),
      async handler(ctx) {
        const token = await broker.tokens.lookupByAccessor(ctx.body.accessor as string);
        if (!token) throw errors.BAD_FIELD('accessor', 'no token has this accessor');
        return { data: await capabilities(broker, token, requestedPaths(ctx)) };
      },
    },
  ];
}
