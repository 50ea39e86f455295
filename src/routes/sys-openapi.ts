// sys/internal/specs/openapi (Vault's path): the OpenAPI document generated
// from the live route table (core routes and every mount's routes under its
// path). Needs a token allowed to read the path, like any other route.

import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { buildOpenApi, type RouteGroup } from '../openapi/openapi.ts';

/** What the route needs: the route groups as the dispatcher has them now, and the version. */
export interface RouteTableSource {
  routeGroups(): RouteGroup[];
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
        return { raw: buildOpenApi(source.routeGroups(), { version, genericMountPaths: generic === 'true' }) };
      },
    },
  ];
}
