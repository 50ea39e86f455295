// Server configuration: a JSON file, each field overridable by an environment
// variable. Unknown or invalid fields are refused with the field's name.

import { readFileSync } from 'node:fs';
import { parseDuration } from './util/duration.ts';

export interface BrokerConfig {
  listen: { host: string; port: number };
  storagePath: string;
  tls?: { certFile: string; keyFile: string };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Third-party engines: plugin_name → module path or package name. */
  plugins: Record<string, string>;
  /** Auto-unseal (weaker than Shamir): a 0600 file with key shares, one per line. */
  unsealKeysFile?: string;
  /**
   * Auto-unseal (weaker than Shamir, and weaker than the file: the environment
   * of a process is visible to its user and often to tooling): key shares from
   * DBROKER_UNSEAL_KEYS, comma or whitespace separated. Environment only.
   */
  unsealKeys?: string[];
  /** Seconds between revocation loop passes. */
  revocationInterval: number;
  defaultLeaseTtl: number;
  maxLeaseTtl: number;
  maxRequestSize: number;
  /**
   * telemetry.unauthenticated_metrics_access: serve sys/metrics without a
   * token (and while sealed), as Vault's telemetry stanza option of that name.
   */
  unauthenticatedMetricsAccess: boolean;
  /** Base directory for resolving relative plugin paths (the config file's folder). */
  baseDir: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`invalid configuration field "${field}": ${problem}`);
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Config file fields, their environment variables, and how to read them. */
const FIELDS = {
  listen: 'DBROKER_LISTEN',
  'storage.path': 'DBROKER_STORAGE_PATH',
  'tls.cert_file': 'DBROKER_TLS_CERT_FILE',
  'tls.key_file': 'DBROKER_TLS_KEY_FILE',
  log_level: 'DBROKER_LOG_LEVEL',
  unseal_keys_file: 'DBROKER_UNSEAL_KEYS_FILE',
  revocation_interval: 'DBROKER_REVOCATION_INTERVAL',
  default_lease_ttl: 'DBROKER_DEFAULT_LEASE_TTL',
  max_lease_ttl: 'DBROKER_MAX_LEASE_TTL',
  max_request_size: 'DBROKER_MAX_REQUEST_SIZE',
  plugins: 'DBROKER_PLUGINS',
  'telemetry.unauthenticated_metrics_access': 'DBROKER_TELEMETRY_UNAUTHENTICATED_METRICS_ACCESS',
} as const;
type Field = keyof typeof FIELDS;

function flatten(raw: Record<string, unknown>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(raw)) {
    if (k === 'storage' || k === 'tls' || k === 'telemetry') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(k, 'must be an object');
      for (const [k2, v2] of Object.entries(v as Record<string, unknown>)) out.set(`${k}.${k2}`, v2);
    } else out.set(k, v);
  }
  return out;
}

export function parseListen(value: string, field = 'listen'): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(field, `"${value}" is not host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, '') || '0.0.0.0', port };
}

function str(field: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(field, 'must be a non-empty string');
  return v;
}

/** A boolean from the file (true/false) or the environment ("true"/"false"). */
function bool(field: string, v: unknown): boolean {
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw new ConfigError(field, 'must be true or false');
}

function seconds(field: string, v: unknown): number {
  const d = parseDuration(v);
  if (typeof d === 'string') throw new ConfigError(field, d);
  return d;
}

/** Build the config from an optional file plus the environment. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<Field, unknown>> = {}): BrokerConfig {
  let values = new Map<string, unknown>();
  let baseDir = process.cwd();
  if (file) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError('(file)', `cannot read ${file}: ${(err as Error).message}`);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('(file)', 'must be a JSON object');
    values = flatten(raw as Record<string, unknown>);
    baseDir = file.includes('/') ? file.slice(0, file.lastIndexOf('/')) || '/' : process.cwd();
  }
  for (const key of values.keys()) if (!(key in FIELDS)) throw new ConfigError(key, 'unknown field');
  const fromEnv = new Map<string, string>();
  for (const [field, envName] of Object.entries(FIELDS)) {
    const v = env[envName];
    if (v !== undefined && v !== '') {
      values.set(field, field === 'plugins' ? safeJson(field, v) : v);
      fromEnv.set(field, envName);
    }
  }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) (values.set(k, v), fromEnv.delete(k));
  try {
    return build(values, baseDir, env);
  } catch (err) {
    // Say where a bad value came from when it was the environment.
    if (err instanceof ConfigError && fromEnv.has(err.field)) throw new ConfigError(err.field, `${err.problem} (set by ${fromEnv.get(err.field)})`);
    throw err;
  }
}

function build(values: Map<string, unknown>, baseDir: string, env: NodeJS.ProcessEnv): BrokerConfig {
  const get = (f: Field): unknown => values.get(f);
  const logLevel = (get('log_level') ?? 'info') as BrokerConfig['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('log_level', `must be one of ${LOG_LEVELS.join(', ')}`);
  const cert = get('tls.cert_file');
  const key = get('tls.key_file');
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError(cert === undefined ? 'tls.cert_file' : 'tls.key_file', 'tls needs both cert_file and key_file');
  const plugins = get('plugins') ?? {};
  if (typeof plugins !== 'object' || plugins === null || Array.isArray(plugins) || Object.values(plugins).some((p) => typeof p !== 'string')) {
    throw new ConfigError('plugins', 'must be an object of plugin_name → module path');
  }
  const storagePath = get('storage.path');
  if (storagePath === undefined) throw new ConfigError('storage.path', 'is required');
  const maxRequestSize = Number(get('max_request_size') ?? 1048576);
  if (!Number.isInteger(maxRequestSize) || maxRequestSize < 1024) throw new ConfigError('max_request_size', 'must be an integer of at least 1024 bytes');
  const config: BrokerConfig = {
    listen: parseListen(str('listen', get('listen') ?? '127.0.0.1:8200')),
    storagePath: str('storage.path', storagePath),
    logLevel,
    plugins: plugins as Record<string, string>,
    revocationInterval: Math.max(1, seconds('revocation_interval', get('revocation_interval') ?? 1)),
    defaultLeaseTtl: seconds('default_lease_ttl', get('default_lease_ttl') ?? '768h'),
    maxLeaseTtl: seconds('max_lease_ttl', get('max_lease_ttl') ?? '768h'),
    maxRequestSize,
    unauthenticatedMetricsAccess: bool('telemetry.unauthenticated_metrics_access', get('telemetry.unauthenticated_metrics_access') ?? false),
    baseDir,
  };
  if (cert !== undefined) config.tls = { certFile: str('tls.cert_file', cert), keyFile: str('tls.key_file', key) };
  const unseal = get('unseal_keys_file');
  if (unseal !== undefined) config.unsealKeysFile = str('unseal_keys_file', unseal);
  const envKeys = env.DBROKER_UNSEAL_KEYS?.split(/[\s,]+/).filter(Boolean);
  if (envKeys && envKeys.length > 0) {
    if (config.unsealKeysFile) throw new ConfigError('DBROKER_UNSEAL_KEYS', 'give unseal_keys_file or DBROKER_UNSEAL_KEYS, not both');
    config.unsealKeys = envKeys;
  }
  if (config.defaultLeaseTtl > config.maxLeaseTtl) throw new ConfigError('default_lease_ttl', 'must not exceed max_lease_ttl');
  return config;
}

function safeJson(field: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(field, 'must be JSON');
  }
}
