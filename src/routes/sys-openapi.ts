// sys/internal/specs/openapi (Vault's path): the OpenAPI document generated
// from the live route table (core routes and every mount's routes under its
// path). Needs a token allowed to read the path, like any other route. As in
// Vault ("The set of included paths is based on the permissions of the
// request token"), a mount's paths are included only when one of the token's
// policy rules reaches into the mount; a root token sees everything.

import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { buildOpenApi, type RouteGroup } from '../openapi/openapi.ts';
import type { Token } from '../auth/token-store.ts';
import type { PathRule } from '../auth/policy.ts';

/** What the route needs: the route groups as the dispatcher has them now, and a token's parsed policies. */
export interface RouteTableSource {
  routeGroups(): RouteGroup[];
  policiesOf(token: Token): Promise<PathRule[][]>;
}

/**
 * Whether a policy rule can grant anything under `mount` (`database/`): its
 * literal part (before the first `*` or `+` glob) lies under the mount, or
 * is a prefix of it when the rule has a glob.
 */
export function ruleReaches(rule: PathRule, mount: string): boolean {
  if (rule.capabilities.length === 0 || rule.capabilities.every((c) => c === 'deny')) return false;
  const wild = rule.path.search(/[*+]/);
  const literal = wild === -1 ? rule.path : rule.path.slice(0, wild);
  return literal.startsWith(mount) || (wild !== -1 && mount.startsWith(literal));
}

/**
 * The sys/internal/specs/openapi route; `version` is the document's info.version.
 * @throws BrokerError 400 for a generic_mount_paths other than true or false.
 */
export function openApiRoutes(source: RouteTableSource, version: string): Route[] {
  return [
    {
      methods: ['GET'],
      pattern: 'sys/internal/specs/openapi',
      auth: 'token',
      async handler(ctx) {
        const generic = ctx.query.generic_mount_paths ?? 'false';
        if (generic !== 'true' && generic !== 'false') throw errors.BAD_FIELD('generic_mount_paths', 'must be true or false');
        let groups = source.routeGroups();
        const token = ctx.token;
        if (token && !token.policies.includes('root')) {
          const rules = (await source.policiesOf(token)).flat();
          groups = groups.filter((g) => g.prefix === '' || rules.some((r) => ruleReaches(r, g.prefix)));
        }
        return { raw: buildOpenApi(groups, { version, genericMountPaths: generic === 'true' }) };
      },
    },
  ];
}
