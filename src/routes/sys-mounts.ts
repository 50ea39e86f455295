// sys/mounts, sys/mounts/:path and sys/mounts/:path/tune.

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { Reply, RequestContext, Route } from '../http/route.ts';
import { object } from '../http/schema.ts';
import { readMountConfig, refuseUnapplied, TUNE_FIELDS } from '../mounts/mount-config.ts';
import { mountConfigOf, type MountEntry } from '../mounts/mount-table.ts';

/** A mount as Vault's mountInfo shows it: `config` holds the mount's own values (0 = the broker-wide one). */
function view(m: MountEntry): Record<string, unknown> {
  const config = mountConfigOf(m);
  return {
    type: m.type,
    description: m.description,
    accessor: m.accessor,
    uuid: m.uuid,
    config: { default_lease_ttl: config.defaultLeaseTtl, max_lease_ttl: config.maxLeaseTtl, force_no_cache: config.forceNoCache },
    local: m.local === true,
    seal_wrap: false,
    external_entropy_access: false,
    options: null,
  };
}

/** Fields of POST sys/mounts/:path (Vault's handleMount). */
const MOUNT_FIELDS = new Set(['type', 'description', 'config', 'options', 'local', 'seal_wrap', 'external_entropy_access', 'plugin_name', 'plugin_version']);

/**
 * The body schema of sys/mounts/:path, which also serves .../tune: types of
 * the fields of either endpoint. Which fields an endpoint applies, and which
 * it refuses, is checked by its handler.
 */
const mountSchema = object({
  type: { type: 'string', minLength: 1, maxLength: 64 },
  description: { type: 'string', maxLength: 1024 },
  config: { type: ['object', 'null'], maxProperties: 64 },
  options: { type: ['object', 'null'] },
  local: { type: ['boolean', 'string'] },
  seal_wrap: { type: ['boolean', 'string'] },
  external_entropy_access: { type: ['boolean', 'string'] },
  plugin_name: { type: 'string', maxLength: 128 },
  plugin_version: { type: 'string', maxLength: 64 },
  // Tune (top-level there).
  default_lease_ttl: { type: ['string', 'integer'], maxLength: 64 },
  max_lease_ttl: { type: ['string', 'integer'], maxLength: 64 },
  force_no_cache: { type: ['boolean', 'string'] },
  audit_non_hmac_request_keys: {},
  audit_non_hmac_response_keys: {},
  listing_visibility: {},
  passthrough_request_headers: {},
  allowed_response_headers: {},
  allowed_managed_keys: {},
  delegated_auth_accessors: {},
  identity_token_key: {},
  token_type: {},
  user_lockout_config: {},
});

/**
 * A field of the other endpoint of this shared route (a tune field sent to
 * the mount, or the reverse): ignored with a warning, as Vault does with a
 * field it does not know. Fields of neither are the schema's business.
 */
const misplaced = (body: Record<string, unknown>, known: Set<string>, endpoint: string): string[] =>
  Object.keys(body)
    .filter((k) => !known.has(k) && k in (mountSchema.properties as Record<string, unknown>))
    .map((k) => `unknown field "${k}" ignored (not a field of ${endpoint})`);

const withWarnings = (warnings: string[], data: unknown = null): Reply | undefined => (warnings.length > 0 ? { data, warnings } : undefined);

export function mountRoutes(broker: Broker): Route[] {
  /** POST sys/mounts/:path: mount a database engine, with its TTLs; Vault options dbroker does not apply are a 400. */
  const mount = async (ctx: RequestContext, path: string): Promise<Reply | undefined> => {
    const body = ctx.body;
    if (typeof body.type !== 'string') throw errors.BAD_FIELD('type', 'is required (e.g. "database")');
    const warnings = misplaced(body, MOUNT_FIELDS, 'sys/mounts/:path');
    const config = readMountConfig((body.config as Record<string, unknown> | null | undefined) ?? {}, 'config.');
    warnings.push(...config.warnings);
    for (const field of ['options', 'seal_wrap', 'external_entropy_access', 'plugin_version']) refuseUnapplied(field, body[field]);
    if (body.plugin_name !== undefined && body.plugin_name !== '' && body.plugin_name !== 'database') throw errors.BAD_FIELD('plugin_name', 'must be "database" (the only engine type)');
    if (body.local !== undefined && typeof body.local !== 'boolean' && body.local !== 'true' && body.local !== 'false') throw errors.BAD_FIELD('local', 'must be a boolean');
    const description = (body.description as string | undefined) ?? config.change.description ?? '';
    await broker.mounts.mount(path, body.type, { description, config: config.change, local: body.local === true || body.local === 'true' });
    return withWarnings(warnings);
  };

  /**
   * sys/mounts/:path/tune. GET: the TTLs in force (the mount's own, else the
   * broker-wide ones), as Vault's handleTuneReadCommon. POST: change them
   * ("system" resets one to the broker-wide value), force_no_cache or the
   * description.
   */
  const tune = async (ctx: RequestContext, path: string): Promise<Reply | undefined> => {
    const entry = broker.mounts.get(path);
    if (!entry) throw errors.MOUNT_NOT_FOUND(path);
    if (ctx.method === 'DELETE') throw errors.METHOD_NOT_ALLOWED(ctx.method, ctx.path);
    if (ctx.method === 'PUT') {
      const warnings = misplaced(ctx.body, TUNE_FIELDS, 'sys/mounts/:path/tune');
      const { change } = readMountConfig(ctx.body, '');
      await broker.mounts.tune(path, change);
      return withWarnings(warnings);
    }
    const current = broker.mounts.get(path)!;
    const ttls = broker.mounts.ttls(current.path);
    return {
      data: { default_lease_ttl: ttls.defaultTtl, max_lease_ttl: ttls.maxTtl, force_no_cache: mountConfigOf(current).forceNoCache, description: current.description, options: null },
    };
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
      schema: mountSchema,
      async handler(ctx) {
        const path = ctx.params.path!;
        const tuned = /^(.+?)\/+tune\/*$/.exec(path);
        if (tuned) return tune(ctx, tuned[1]!);
        if (ctx.method === 'GET') {
          const m = broker.mounts.get(path);
          if (!m) throw errors.MOUNT_NOT_FOUND(path);
          return { data: view(m) };
        }
        if (ctx.method === 'DELETE') {
          await broker.mounts.unmount(path);
          return undefined;
        }
        return mount(ctx, path);
      },
    },
  ];
}
