// sys/audit, sys/audit/:path and sys/audit-hash/:path (all sudo, as in Vault).

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { object } from '../http/schema.ts';
import type { AuditDeviceEntry } from '../audit/audit-broker.ts';

function view(d: AuditDeviceEntry): Record<string, unknown> {
  return { type: d.type, description: d.description, options: d.options, path: d.path, local: d.local };
}

/** Vault answers these both at the top level and under `data`. */
function raw(requestId: string, data: Record<string, unknown>): { raw: Record<string, unknown> } {
  return { raw: { ...data, request_id: requestId, lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null } };
}

export function auditRoutes(broker: Broker): Route[] {
  return [
    {
      methods: ['GET'],
      pattern: 'sys/audit',
      auth: 'token',
      sudo: true,
      async handler(ctx) {
        const data: Record<string, unknown> = {};
        for (const d of broker.audit.list()) data[d.path] = view(d);
        return raw(ctx.requestId, data);
      },
    },
    {
      methods: ['PUT', 'DELETE'],
      pattern: 'sys/audit/*path',
      auth: 'token',
      sudo: true,
      schema: object({
        type: { type: 'string', minLength: 1, maxLength: 64 },
        description: { type: 'string', maxLength: 1024 },
        options: { type: ['object', 'null'] },
        local: { type: 'boolean' },
      }),
      async handler(ctx) {
        const path = ctx.params.path!;
        if (path === '') throw errors.BAD_FIELD('path', 'is required (sys/audit/<path>)');
        if (ctx.method === 'DELETE') await broker.audit.disable(path);
        else await broker.audit.enable(path, ctx.body);
        return undefined;
      },
    },
    {
      methods: ['PUT'],
      pattern: 'sys/audit-hash/*path',
      auth: 'token',
      sudo: true,
      schema: object({ input: { type: 'string', maxLength: 65536 } }, ['input']),
      async handler(ctx) {
        const path = ctx.params.path!;
        if (path === '') throw errors.BAD_FIELD('path', 'is required (sys/audit-hash/<path>)');
        return raw(ctx.requestId, { hash: broker.audit.hash(path, ctx.body.input as string) });
      },
    },
  ];
}
