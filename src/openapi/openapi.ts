// The OpenAPI 3.1 document of the API, generated from the route table the
// dispatcher uses and the JSON schemas that validate request bodies, so it
// cannot drift from what the server does. Shape as Vault's
// sys/internal/specs/openapi (Vault API docs, "/sys/internal/specs/openapi"):
// LIST is a GET with `list=true`, updates are POST (PUT is accepted too),
// and the extensions x-vault-sudo and x-vault-unauthenticated.

import type { Method, Route } from '../http/route.ts';

/** One group of routes served under a path prefix: '' for the core (sys/, auth/), or a mount path such as `database/`. */
export interface RouteGroup {
  prefix: string;
  /** Shown in the document (the mount type, or "system"). */
  tag: string;
  routes: Route[];
}

export interface OpenApiOptions {
  version: string;
  /** Vault's generic_mount_paths: mount prefixes become a `{mountPath}` parameter. */
  genericMountPaths?: boolean;
}

type Json = Record<string, unknown>;

const ERROR_REF = { $ref: '#/components/schemas/ErrorResponse' };

/**
 * `config/:name` → `/config/{name}`; `*prefix` (the rest of the path, which
 * may contain "/") → `{prefix}`. Returns the path and its parameter names.
 */
export function openApiPath(pattern: string): { path: string; params: Array<{ name: string; rest: boolean }> } {
  const params: Array<{ name: string; rest: boolean }> = [];
  const segments = pattern.split('/').map((seg) => {
    if (seg.startsWith(':')) return params.push({ name: seg.slice(1), rest: false }), `{${seg.slice(1)}}`;
    if (seg.startsWith('*')) return params.push({ name: seg.slice(1), rest: true }), `{${seg.slice(1)}}`;
    return seg;
  });
  return { path: '/' + segments.join('/'), params };
}

function operationId(method: string, path: string): string {
  return `${method}-${path.replace(/^\//, '').replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+/g, '-')}`.replace(/-+$/, '');
}

function responses(method: Method): Json {
  const out: Json = {
    '200': { description: 'Success: the Vault response envelope (`data`, `lease_id`, `auth`, `warnings`, ...) or, for a few system endpoints, a bare JSON object.', content: { 'application/json': { schema: { type: 'object' } } } },
    default: { description: 'Error: `{"errors": [message]}` with a 4xx or 5xx status.', content: { 'application/json': { schema: ERROR_REF } } },
  };
  if (method !== 'GET' && method !== 'LIST') out['204'] = { description: 'Success without a body.' };
  return out;
}

function operation(route: Route, method: Method, path: string, pathParams: Json[], tag: string, withList: 'no' | 'optional' | 'required'): Json {
  const op: Json = {
    operationId: operationId(withList === 'required' ? 'list' : method === 'PUT' ? 'write' : method.toLowerCase(), path),
    tags: [tag],
    summary: `${withList === 'required' ? 'LIST' : method} ${path}`,
    responses: responses(withList === 'required' ? 'LIST' : method),
  };
  const parameters = [...pathParams];
  if (withList !== 'no') {
    parameters.push({
      name: 'list',
      in: 'query',
      required: withList === 'required',
      description: 'Must be `true` to list (the LIST method is accepted too).',
      schema: { type: 'string', enum: ['true'] },
    });
  }
  if (parameters.length > 0) op.parameters = parameters;
  if (method === 'PUT') {
    // Fields the schema does not declare are ignored with a warning (Vault's behaviour), not refused.
    const schema = structuredClone(route.schema ?? { type: 'object', properties: {} });
    op.requestBody = { required: false, content: { 'application/json': { schema } } };
  }
  if (route.auth === 'none') {
    op.security = [];
    op['x-vault-unauthenticated'] = true;
  }
  if (route.sudo) op['x-vault-sudo'] = true;
  if (route.getChangesState && method === 'GET') op.description = 'Issues credentials: the GET changes state (HEAD is refused with 405).';
  return op;
}

/**
 * Build the document for the given route groups. Every route and method
 * appears: GET as `get`, LIST as `get` with `list=true` (merged when a route
 * has both), PUT as `post` (PUT is an accepted alias), DELETE as `delete`.
 */
export function buildOpenApi(groups: RouteGroup[], opts: OpenApiOptions): Json {
  const paths: Record<string, Json> = {};
  for (const group of groups) {
    for (const route of group.routes) {
      const generic = opts.genericMountPaths && group.prefix !== '';
      const { path, params } = openApiPath((generic ? '{mountPath}/' : group.prefix) + route.pattern);
      const pathParams: Json[] = [
        ...(generic ? [{ name: 'mountPath', in: 'path', required: true, description: `The mount path (e.g. "${group.prefix.replace(/\/$/, '')}").`, schema: { type: 'string' } }] : []),
        ...params.map((p) => ({
          name: p.name,
          in: 'path',
          required: true,
          ...(p.rest ? { description: 'The rest of the path; may contain "/" (sent unescaped).' } : {}),
          schema: { type: 'string' },
        })),
      ];
      const item: Json = (paths[path] ??= {});
      const has = (m: Method): boolean => route.methods.includes(m);
      if (has('GET')) item.get = operation(route, 'GET', path, pathParams, group.tag, has('LIST') ? 'optional' : 'no');
      else if (has('LIST')) item.get = operation(route, 'LIST', path, pathParams, group.tag, 'required');
      if (has('PUT')) item.post = operation(route, 'PUT', path, pathParams, group.tag, 'no');
      if (has('DELETE')) item.delete = operation(route, 'DELETE', path, pathParams, group.tag, 'no');
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'dbroker API',
      description: 'Vault-compatible HTTP API of dbroker, a dynamic database credentials broker. Every path is under `/v1/`. Generated from the route table and the request schemas the server validates with.',
      version: opts.version,
      license: { name: 'Proprietary', identifier: 'LicenseRef-dbroker' },
    },
    servers: [{ url: '/v1' }],
    security: [{ vaultToken: [] }],
    paths,
    components: {
      securitySchemes: {
        vaultToken: { type: 'apiKey', in: 'header', name: 'X-Vault-Token', description: 'A dbroker token (`Authorization: Bearer <token>` is accepted too).' },
      },
      schemas: {
        ErrorResponse: { type: 'object', properties: { errors: { type: 'array', items: { type: 'string' } } }, required: ['errors'] },
      },
    },
  };
}
