// sys/mounts and sys/mounts/:path.

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { object } from '../http/schema.ts';
import type { MountEntry } from '../mounts/mount-table.ts';

function view(m: MountEntry): Record<string, unknown> {
  return {
    type: m.type,
    description: m.description,
    accessor: m.accessor,
    uuid: m.uuid,
    config: { default_lease_ttl: 0, max_lease_ttl: 0, force_no_cache: false },
    local: false,
    seal_wrap: false,
    external_entropy_access: false,
    options: null,
  };
}

export function mountRoutes(broker: Broker): Route[] {
  // `sys/mounts/:path/tune`: lease TTLs here are set per role (default_ttl,
  // max_ttl) under the broker-wide default_lease_ttl/max_lease_ttl, so a
  // mount shows those and cannot be tuned.
  const tune = (method: string, path: string) => {
    const m = broker.mounts.list().find((e) => e.path === path.replace(/\/*$/, '/'));
    if (!m) throw errors.MOUNT_NOT_FOUND(path);
    if (method !== 'GET') {
      throw errors.BAD_REQUEST('mounts cannot be tuned here: set default_ttl and max_ttl on the role, or default_lease_ttl and max_lease_ttl in the broker config');
    }
    const { defaultLeaseTtl, maxLeaseTtl } = broker.config;
    return { data: { default_lease_ttl: defaultLeaseTtl, max_lease_ttl: maxLeaseTtl, force_no_cache: false, description: m.description, options: null } };
  };
  return [
    {
      methods: ['GET'],
      pattern: 'sys/mounts',
      auth: 'token',
      async handler(ctx) {
        const data: Record<string, unknown> = {};
        for (const m of broker.mounts.list()) data[m.path] = view(m);
        // Vault returns the mounts both at the top level and under data.
        return { raw: { ...data, request_id: ctx.requestId, lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null } };
      },
    },
    {
      methods: ['GET', 'PUT', 'DELETE'],
      pattern: 'sys/mounts/*path',
      auth: 'token',
      schema: object(
        {
          type: { type: 'string', minLength: 1, maxLength: 64 },
          description: { type: 'string', maxLength: 1024 },
          config: { type: 'object' },
          options: { type: ['object', 'null'] },
          local: { type: 'boolean' },
          seal_wrap: { type: 'boolean' },
          external_entropy_access: { type: 'boolean' },
          plugin_name: { type: 'string' },
        },
      ),
      async handler(ctx) {
        const path = ctx.params.path!;
        const tuned = /^(.+?)\/+tune\/*$/.exec(path);
        if (tuned) return tune(ctx.method, tuned[1]!);
        if (ctx.method === 'GET') {
          const m = broker.mounts.list().find((e) => e.path === path.replace(/\/*$/, '/'));
          if (!m) throw errors.MOUNT_NOT_FOUND(path);
          return { data: view(m) };
        }
        if (ctx.method === 'DELETE') await broker.mounts.unmount(path);
        else if (typeof ctx.body.type !== 'string') throw errors.BAD_FIELD('type', 'is required (e.g. "database")');
        else await broker.mounts.mount(path, ctx.body.type as string, (ctx.body.description as string | undefined) ?? '');
        return undefined;
      },
    },
  ];
}
