// What a mount may be given (POST sys/mounts/:path and its `config`, POST
// sys/mounts/:path/tune) and what dbroker makes of it. Source: Vault's
// sys/mounts API page and vault/logical_system.go (handleMount,
// handleTuneWriteCommon). Lease TTLs, force_no_cache, local and the
// description are applied; every other Vault option is refused with a 400
// naming it unless it is given at its default (clients such as the Go API
// client always send `seal_wrap: false`, `options: null`, ...), since
// accepting it would promise behaviour dbroker does not have.

import { errors } from '../errors.ts';
import { parseDuration } from '../util/duration.ts';

/** A mount's own settings. TTLs in seconds; 0 = the broker-wide value (Vault's "system"). */
export interface MountConfig {
  defaultLeaseTtl: number;
  maxLeaseTtl: number;
  /** Vault: never cache this mount's responses. dbroker caches none, so this holds either way. */
  forceNoCache: boolean;
}

export const DEFAULT_MOUNT_CONFIG: MountConfig = { defaultLeaseTtl: 0, maxLeaseTtl: 0, forceNoCache: false };

/** Vault mount options dbroker does not apply: accepted only at their default (empty) value. */
const UNAPPLIED_OPTIONS = [
  'audit_non_hmac_request_keys',
  'audit_non_hmac_response_keys',
  'listing_visibility',
  'passthrough_request_headers',
  'allowed_response_headers',
  'allowed_managed_keys',
  'delegated_auth_accessors',
  'identity_token_key',
  'token_type',
  'user_lockout_config',
  'plugin_version',
  'options',
];

/** Fields of `config` on POST sys/mounts/:path (Vault's APIMountConfig). */
const CONFIG_FIELDS = new Set(['default_lease_ttl', 'max_lease_ttl', 'force_no_cache', 'plugin_name', 'description', ...UNAPPLIED_OPTIONS]);
/** Fields of POST sys/mounts/:path/tune. */
export const TUNE_FIELDS = new Set(['default_lease_ttl', 'max_lease_ttl', 'force_no_cache', 'description', ...UNAPPLIED_OPTIONS]);

function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null || value === '' || value === false) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === 'object') return Object.keys(value).length === 0;
  return false;
}

/** Refuse a Vault option dbroker does not apply, unless it is empty. `field` is the name shown. */
export function refuseUnapplied(field: string, value: unknown): void {
  if (!isEmpty(value)) throw errors.BAD_FIELD(field, 'is not supported by dbroker (only its default value is accepted)');
}

/**
 * A TTL given to a mount: seconds, a Go duration, "" or absent (keep the
 * current value), or "system" (0: the broker-wide value). Throws BAD_FIELD.
 */
function ttlField(field: string, value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (value === 'system') return 0;
  if (typeof value === 'string' && /^-/.test(value.trim())) throw errors.BAD_FIELD(field, 'must not be negative');
  const parsed = parseDuration(value);
  if (typeof parsed === 'string') throw errors.BAD_FIELD(field, parsed);
  return parsed;
}

/** A boolean option (Vault also takes "true"/"false" strings). Throws BAD_FIELD. */
function boolField(field: string, value: unknown): boolean | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw errors.BAD_FIELD(field, 'must be a boolean');
}

/** The changes a request asks for: undefined fields stay as they are. */
export interface MountConfigChange {
  defaultLeaseTtl?: number;
  maxLeaseTtl?: number;
  forceNoCache?: boolean;
  description?: string;
}

/**
 * Read the settings of one request body: `config` of a mount (prefix
 * "config.") or the tune body (prefix ""). Unknown fields (not Vault's) are
 * returned as warnings, as Vault accepts and ignores them. Throws BAD_FIELD
 * for a wrong type or an option dbroker does not apply.
 */
export function readMountConfig(body: Record<string, unknown>, prefix: 'config.' | ''): { change: MountConfigChange; warnings: string[] } {
  const known = prefix === '' ? TUNE_FIELDS : CONFIG_FIELDS;
  const warnings: string[] = [];
  const change: MountConfigChange = {};
  for (const [key, value] of Object.entries(body)) {
    const field = prefix + key;
    if (!known.has(key)) {
      if (prefix !== '') warnings.push(`unknown field "${field}" ignored`);
      continue;
    }
    switch (key) {
      case 'default_lease_ttl': {
        const ttl = ttlField(field, value);
        if (ttl !== undefined) change.defaultLeaseTtl = ttl;
        break;
      }
      case 'max_lease_ttl': {
        const ttl = ttlField(field, value);
        if (ttl !== undefined) change.maxLeaseTtl = ttl;
        break;
      }
      case 'force_no_cache': {
        const b = boolField(field, value);
        if (b !== undefined) change.forceNoCache = b;
        break;
      }
      case 'description':
        if (value === undefined || value === null) break;
        if (typeof value !== 'string' || value.length > 1024) throw errors.BAD_FIELD(field, 'must be a string of at most 1024 characters');
        change.description = value;
        break;
      case 'plugin_name':
        if (!isEmpty(value) && value !== 'database') throw errors.BAD_FIELD(field, 'must be "database" (the only engine type)');
        break;
      default:
        refuseUnapplied(field, value);
    }
  }
  return { change, warnings };
}

/**
 * Apply `change` to `current`, checking Vault's rules: an explicit default
 * must not exceed the mount's max (or the broker-wide max when the mount
 * has none). Throws BAD_FIELD naming default_lease_ttl.
 */
export function applyMountConfig(current: MountConfig, change: MountConfigChange, systemMaxTtl: number): MountConfig {
  const next: MountConfig = {
    defaultLeaseTtl: change.defaultLeaseTtl ?? current.defaultLeaseTtl,
    maxLeaseTtl: change.maxLeaseTtl ?? current.maxLeaseTtl,
    forceNoCache: change.forceNoCache ?? current.forceNoCache,
  };
  if (next.defaultLeaseTtl > 0) {
    const max = next.maxLeaseTtl > 0 ? next.maxLeaseTtl : systemMaxTtl;
    if (next.defaultLeaseTtl > max) {
      throw errors.BAD_FIELD('default_lease_ttl', `${next.defaultLeaseTtl}s exceeds the ${next.maxLeaseTtl > 0 ? 'mount' : 'system'} max_lease_ttl of ${max}s`);
    }
  }
  return next;
}

/** The TTLs in force on a mount (Vault's dynamicSystemView): its own when set, else the broker-wide ones. Seconds. */
export function effectiveTtls(config: MountConfig, system: { defaultLeaseTtl: number; maxLeaseTtl: number }): { defaultTtl: number; maxTtl: number } {
  return {
    defaultTtl: config.defaultLeaseTtl > 0 ? config.defaultLeaseTtl : system.defaultLeaseTtl,
    maxTtl: config.maxLeaseTtl > 0 ? config.maxLeaseTtl : system.maxLeaseTtl,
  };
}
