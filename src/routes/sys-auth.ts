// sys/auth (list), sys/auth/:path (read, enable, disable) and
// sys/auth/:path/tune, in Vault's shapes
// (https://developer.hashicorp.com/vault/api-docs/system/auth). The token
// method is built in and listed at token/.

import type { AuthTable } from '../auth/auth-table.ts';
import { anyValue, refuseUnsupported, type AuthMountEntry } from '../auth/method.ts';
import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { duration, durationField, object, stringList } from '../http/schema.ts';

export interface SysAuthHost {
  readonly auths: AuthTable;
  readonly config: { defaultLeaseTtl: number; maxLeaseTtl: number };
}

const TOKEN_ENTRY = { type: 'token', description: 'token based credentials', accessor: 'auth_token_builtin', uuid: '', defaultLeaseTtl: 0, maxLeaseTtl: 0, listingVisibility: '' };

function view(m: Pick<AuthMountEntry, 'description' | 'accessor' | 'uuid' | 'defaultLeaseTtl' | 'maxLeaseTtl' | 'listingVisibility'> & { type: string }): Record<string, unknown> {
  return {
    type: m.type,
    description: m.description,
    accessor: m.accessor,
    uuid: m.uuid,
    config: {
      default_lease_ttl: m.defaultLeaseTtl,
      max_lease_ttl: m.maxLeaseTtl,
      force_no_cache: false,
      token_type: 'default-service',
      ...(m.listingVisibility ? { listing_visibility: m.listingVisibility } : {}),
    },
    local: false,
    seal_wrap: false,
    external_entropy_access: false,
    options: null,
    plugin_version: '',
    running_plugin_version: '',
  };
}

/** Vault mount config fields dbroker does not implement, and why. */
const UNSUPPORTED_CONFIG: Record<string, string> = {
  audit_non_hmac_request_keys: 'every request value is HMAC-hashed in the audit log',
  audit_non_hmac_response_keys: 'every response value is HMAC-hashed in the audit log',
  passthrough_request_headers: 'headers are not passed to auth methods',
  allowed_response_headers: 'auth methods set no response headers',
  plugin_version: 'auth methods are built in',
  plugin_name: 'auth methods are built in (the type names the method)',
  override_pinned_version: 'auth methods are built in',
  options: 'auth methods take no mount options',
  trim_request_trailing_slashes: 'trailing slashes are always trimmed',
  user_lockout_config: 'user lockout is not implemented',
  allowed_managed_keys: 'managed keys are not implemented',
  identity_token_key: 'identity tokens are not implemented',
  delegated_auth_accessors: 'delegated auth is not implemented',
};

const configSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    default_lease_ttl: duration,
    max_lease_ttl: duration,
    listing_visibility: { type: 'string', enum: ['', 'unauth', 'hidden'] },
    force_no_cache: { type: 'boolean' },
    token_type: { type: 'string', maxLength: 32 },
    description: { type: 'string', maxLength: 1024 },
    audit_non_hmac_request_keys: stringList,
    audit_non_hmac_response_keys: stringList,
    passthrough_request_headers: stringList,
    allowed_response_headers: stringList,
  },
} as const;

/** Read the TTL/visibility settings of a mount config (enable) or a tune body; refuse what is not implemented. */
function readConfig(input: Record<string, unknown>, field: string, warnings: string[]): { defaultLeaseTtl?: number; maxLeaseTtl?: number; listingVisibility?: string; description?: string } {
  let config = input;
  const known = new Set(['default_lease_ttl', 'max_lease_ttl', 'listing_visibility', 'force_no_cache', 'token_type', 'description', ...Object.keys(UNSUPPORTED_CONFIG)]);
  // trim_request_trailing_slashes=true is what dbroker does anyway.
  if (config.trim_request_trailing_slashes === true) config = { ...config, trim_request_trailing_slashes: false };
  // Unknown parameters are answered with a warning, as Vault does (a Vault field we do not implement is a 400 below).
  for (const key of Object.keys(config)) if (!known.has(key)) warnings.push(`endpoint ignored the unrecognized parameter "${field}${key}"`);
  refuseUnsupported(config, UNSUPPORTED_CONFIG);
  const tokenType = config.token_type;
  if (tokenType !== undefined && tokenType !== '' && tokenType !== 'default-service' && tokenType !== 'service' && tokenType !== 'default') {
    throw errors.UNSUPPORTED_FIELD(`${field}token_type`, 'only service tokens are issued');
  }
  if (config.force_no_cache === true) throw errors.UNSUPPORTED_FIELD(`${field}force_no_cache`, 'auth methods keep no response cache');
  const d = (k: string): number | undefined => {
    try {
      return durationField(config, k);
    } catch {
      throw errors.BAD_FIELD(field + k, 'is not a duration');
    }
  };
  const out: ReturnType<typeof readConfig> = {};
  const def = d('default_lease_ttl');
  const max = d('max_lease_ttl');
  if (def !== undefined) out.defaultLeaseTtl = def;
  if (max !== undefined) out.maxLeaseTtl = max;
  if (typeof config.listing_visibility === 'string') out.listingVisibility = config.listing_visibility;
  if (typeof config.description === 'string') out.description = config.description;
  return out;
}

/** Fields a tune body (or a mount config) may carry that an enable body has only under config. */
const TUNE_ONLY = ['override_pinned_version', 'user_lockout_config', 'delegated_auth_accessors', 'identity_token_key', 'trim_request_trailing_slashes', 'allowed_managed_keys'];

export function sysAuthRoutes(host: SysAuthHost): Route[] {
  const auths = (): AuthTable => host.auths;
  const find = (path: string): AuthMountEntry => {
    const m = auths().get(path);
    if (!m) throw errors.AUTH_MOUNT_NOT_FOUND(`auth/${path.replace(/\/*$/, '/')}`);
    return m;
  };
  const tuneView = (m: { description: string; defaultLeaseTtl: number; maxLeaseTtl: number; listingVisibility: string }) => ({
    data: {
      default_lease_ttl: m.defaultLeaseTtl || host.config.defaultLeaseTtl,
      max_lease_ttl: m.maxLeaseTtl || host.config.maxLeaseTtl,
      force_no_cache: false,
      description: m.description,
      token_type: 'default-service',
      ...(m.listingVisibility ? { listing_visibility: m.listingVisibility } : {}),
      options: null,
    },
  });
  return [
    {
      methods: ['GET'],
      pattern: 'sys/auth',
      auth: 'token',
      async handler(ctx) {
        const data: Record<string, unknown> = { 'token/': view(TOKEN_ENTRY) };
        for (const m of auths().list()) data[m.path] = view(m);
        // Vault returns the table both at the top level and under data.
        return { raw: { ...data, request_id: ctx.requestId, lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null } };
      },
    },
    {
      methods: ['GET', 'PUT', 'DELETE'],
      pattern: 'sys/auth/*path',
      auth: 'token',
      sudo: true,
      // Accepts the fields of both the enable and the tune body; the handler tells them apart.
      schema: object({
        type: { type: 'string', minLength: 1, maxLength: 64 },
        description: { type: 'string', maxLength: 1024 },
        config: configSchema,
        options: { type: ['object', 'null'] },
        local: { type: 'boolean' },
        seal_wrap: { type: 'boolean' },
        external_entropy_access: { type: 'boolean' },
        plugin_name: { type: 'string', maxLength: 128 },
        plugin_version: { type: 'string', maxLength: 128 },
        default_lease_ttl: duration,
        max_lease_ttl: duration,
        listing_visibility: { type: 'string', enum: ['', 'unauth', 'hidden'] },
        token_type: { type: 'string', maxLength: 32 },
        audit_non_hmac_request_keys: stringList,
        audit_non_hmac_response_keys: stringList,
        passthrough_request_headers: stringList,
        allowed_response_headers: stringList,
        force_no_cache: { type: 'boolean' },
        ...Object.fromEntries(TUNE_ONLY.map((f) => [f, anyValue])),
      }),
      async handler(ctx) {
        const raw = ctx.params.path!;
        if (ctx.method === 'DELETE') {
          if (raw.replace(/\/*$/, '/') === 'token/') throw errors.BAD_REQUEST('the token auth method cannot be disabled');
          await auths().disable(raw);
          return undefined;
        }
        const tuned = /^(.+?)\/+tune\/*$/.exec(raw);
        if (tuned) {
          const path = tuned[1]!;
          if (path.replace(/\/*$/, '/') === 'token/') {
            if (ctx.method === 'GET') return tuneView(TOKEN_ENTRY);
            throw errors.BAD_REQUEST('auth/token/ cannot be tuned: token TTLs follow the broker-wide default_lease_ttl and max_lease_ttl');
          }
          if (ctx.method === 'GET') return tuneView(find(path));
          const warnings: string[] = [];
          const tuneBody = { ...ctx.body };
          for (const f of ['type', 'config', 'local', 'seal_wrap', 'external_entropy_access']) {
            if (tuneBody[f] !== undefined) warnings.push(`endpoint ignored the unrecognized parameter "${f}" (not a tune parameter)`);
            delete tuneBody[f];
          }
          await auths().tune(path, readConfig(tuneBody, '', warnings));
          return warnings.length > 0 ? { warnings } : undefined;
        }
        if (ctx.method === 'GET') {
          if (raw.replace(/\/*$/, '/') === 'token/') return { data: view(TOKEN_ENTRY) };
          return { data: view(find(raw)) };
        }
        const warnings: string[] = [];
        for (const f of ['default_lease_ttl', 'max_lease_ttl', 'listing_visibility', 'token_type', 'audit_non_hmac_request_keys', 'audit_non_hmac_response_keys', 'passthrough_request_headers', 'allowed_response_headers', 'force_no_cache', ...TUNE_ONLY]) {
          if (ctx.body[f] !== undefined) warnings.push(`endpoint ignored the unrecognized parameter "${f}" (it belongs under "config")`);
        }
        if (typeof ctx.body.type !== 'string') throw errors.BAD_FIELD('type', 'is required (approle, jwt, oidc, kubernetes or userpass)');
        refuseUnsupported(ctx.body, {
          local: 'there is no replication',
          seal_wrap: 'entries are always sealed by the barrier',
          external_entropy_access: 'there is no external entropy source',
          plugin_version: 'auth methods are built in',
        });
        if (ctx.body.options !== undefined && ctx.body.options !== null && Object.keys(ctx.body.options as object).length > 0) {
          throw errors.UNSUPPORTED_FIELD('options', 'auth methods take no mount options');
        }
        if (typeof ctx.body.plugin_name === 'string' && ctx.body.plugin_name !== '' && ctx.body.plugin_name !== ctx.body.type) {
          throw errors.UNSUPPORTED_FIELD('plugin_name', 'external auth plugins are not supported');
        }
        const config = readConfig((ctx.body.config as Record<string, unknown> | undefined) ?? {}, 'config.', warnings);
        await auths().enable(raw, {
          type: ctx.body.type,
          description: typeof ctx.body.description === 'string' ? ctx.body.description : '',
          defaultLeaseTtl: config.defaultLeaseTtl ?? 0,
          maxLeaseTtl: config.maxLeaseTtl ?? 0,
          listingVisibility: config.listingVisibility ?? '',
        });
        return warnings.length > 0 ? { warnings } : undefined;
      },
    },
  ];
}
