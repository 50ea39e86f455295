// Server configuration: a JSON file, each field overridable by an environment
// variable. Unknown or invalid fields are refused with the field's name.

import { readFileSync } from 'node:fs';
import { parseCidrs } from './auth/cidr.ts';
import { parseDuration } from './util/duration.ts';

export interface BrokerConfig {
  listen: { host: string; port: number };
  /** The SQLite file (storage.type "sqlite", the default); '' for PostgreSQL. */
  storagePath: string;
  /** storage.type "postgresql": where the store lives (see src/storage/postgres-storage.ts). */
  postgres?: PostgresStoreConfig;
  /** Several replicas on one PostgreSQL store, one active (see src/ha/). */
  ha?: HaConfig;
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
   * CIDR blocks of reverse proxies whose X-Forwarded-For header gives the
   * client address (token_bound_cidrs and CIDR-bound logins); empty = only the
   * socket address counts.
   */
  trustedProxies: string[];
  /**
   * telemetry.unauthenticated_metrics_access: serve sys/metrics without a
   * token (and while sealed), as Vault's telemetry stanza option of that name.
   */
  unauthenticatedMetricsAccess: boolean;
  /** Base directory for resolving relative plugin paths (the config file's folder). */
  baseDir: string;
}

export interface PostgresStoreConfig {
  connectionUrl: string;
  tablePrefix: string;
  maxConnections: number;
  /** Files (PEM) read at start. */
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  tlsSkipVerify?: boolean;
}

export interface HaConfig {
  /** How this node is reached by clients (http(s)://host:port), reported by sys/leader. */
  apiAddr: string;
  /** Where standbys forward requests to this node (http(s)://host:port); defaults to apiAddr. */
  clusterAddr: string;
  /** Seconds a leadership lease lasts without renewal: the longest a dead active goes unnoticed. */
  leaseDuration: number;
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
  'storage.type': 'DBROKER_STORAGE_TYPE',
  'storage.connection_url': 'DBROKER_STORAGE_CONNECTION_URL',
  'storage.table_prefix': 'DBROKER_STORAGE_TABLE_PREFIX',
  'storage.max_connections': 'DBROKER_STORAGE_MAX_CONNECTIONS',
  'storage.tls_ca_file': 'DBROKER_STORAGE_TLS_CA_FILE',
  'storage.tls_cert_file': 'DBROKER_STORAGE_TLS_CERT_FILE',
  'storage.tls_key_file': 'DBROKER_STORAGE_TLS_KEY_FILE',
  'storage.tls_skip_verify': 'DBROKER_STORAGE_TLS_SKIP_VERIFY',
  'ha.enabled': 'DBROKER_HA_ENABLED',
  'ha.lease_duration': 'DBROKER_HA_LEASE_DURATION',
  api_addr: 'DBROKER_API_ADDR',
  cluster_addr: 'DBROKER_CLUSTER_ADDR',
  'tls.cert_file': 'DBROKER_TLS_CERT_FILE',
  'tls.key_file': 'DBROKER_TLS_KEY_FILE',
  log_level: 'DBROKER_LOG_LEVEL',
  unseal_keys_file: 'DBROKER_UNSEAL_KEYS_FILE',
  revocation_interval: 'DBROKER_REVOCATION_INTERVAL',
  default_lease_ttl: 'DBROKER_DEFAULT_LEASE_TTL',
  max_lease_ttl: 'DBROKER_MAX_LEASE_TTL',
  max_request_size: 'DBROKER_MAX_REQUEST_SIZE',
  trusted_proxies: 'DBROKER_TRUSTED_PROXIES',
  plugins: 'DBROKER_PLUGINS',
  'telemetry.unauthenticated_metrics_access': 'DBROKER_TELEMETRY_UNAUTHENTICATED_METRICS_ACCESS',
} as const;
type Field = keyof typeof FIELDS;

function flatten(raw: Record<string, unknown>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(raw)) {
    if (k === 'storage' || k === 'tls' || k === 'ha' || k === 'telemetry') {
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

/** A boolean from the file (true/false) or the environment ("true"/"false", "1"/"0"). */
function bool(field: string, v: unknown): boolean {
  if (v === true || v === 'true' || v === '1') return true;
  if (v === false || v === 'false' || v === '0') return false;
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
  const storageType = get('storage.type') ?? 'sqlite';
  if (storageType !== 'sqlite' && storageType !== 'postgresql') throw new ConfigError('storage.type', 'must be "sqlite" or "postgresql"');
  const storagePath = storageType === 'sqlite' ? get('storage.path') : '';
  if (storagePath === undefined) throw new ConfigError('storage.path', 'is required');
  const postgres = storageType === 'postgresql' ? postgresStore(get) : undefined;
  if (!postgres) {
    for (const f of Object.keys(FIELDS) as Field[]) {
      if (f.startsWith('storage.') && f !== 'storage.path' && f !== 'storage.type' && get(f) !== undefined) throw new ConfigError(f, 'is for storage.type "postgresql"');
    }
  } else if (get('storage.path') !== undefined) throw new ConfigError('storage.path', 'is for storage.type "sqlite"');
  const ha = haConfig(get, postgres !== undefined);
  const maxRequestSize = Number(get('max_request_size') ?? 1048576);
  if (!Number.isInteger(maxRequestSize) || maxRequestSize < 1024) throw new ConfigError('max_request_size', 'must be an integer of at least 1024 bytes');
  const config: BrokerConfig = {
    listen: parseListen(str('listen', get('listen') ?? '127.0.0.1:8200')),
    storagePath: storageType === 'sqlite' ? str('storage.path', storagePath) : '',
    ...(postgres ? { postgres } : {}),
    ...(ha ? { ha } : {}),
    logLevel,
    plugins: plugins as Record<string, string>,
    revocationInterval: Math.max(1, seconds('revocation_interval', get('revocation_interval') ?? 1)),
    defaultLeaseTtl: seconds('default_lease_ttl', get('default_lease_ttl') ?? '768h'),
    maxLeaseTtl: seconds('max_lease_ttl', get('max_lease_ttl') ?? '768h'),
    maxRequestSize,
    trustedProxies: proxies(get('trusted_proxies')),
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

/** trusted_proxies: a JSON list or a comma-separated string of CIDR blocks or addresses. */
function proxies(v: unknown): string[] {
  if (v === undefined) return [];
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : undefined;
  if (!items || items.some((i) => typeof i !== 'string')) throw new ConfigError('trusted_proxies', 'must be a list of CIDR blocks');
  try {
    return parseCidrs('trusted_proxies', (items as string[]).map((i) => i.trim()).filter(Boolean));
  } catch (err) {
    throw new ConfigError('trusted_proxies', (err as Error).message.replace(/^invalid field "trusted_proxies": /, ''));
  }
}

function httpAddr(field: string, v: unknown): string {
  const text = str(field, v);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(field, `"${text}" is not a URL (http(s)://host:port)`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search || url.hash || url.username) {
    throw new ConfigError(field, `"${text}" must be http(s)://host:port with nothing after the port`);
  }
  return url.origin;
}

/** storage.* for storage.type "postgresql". */
function postgresStore(get: (f: Field) => unknown): PostgresStoreConfig {
  const url = str('storage.connection_url', get('storage.connection_url'));
  if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError('storage.connection_url', 'must be a postgres:// or postgresql:// URL');
  const tablePrefix = str('storage.table_prefix', get('storage.table_prefix') ?? 'dbroker_');
  if (!/^[a-z_][a-z0-9_]{0,39}$/.test(tablePrefix)) throw new ConfigError('storage.table_prefix', 'must be lower-case letters, digits and "_", starting with a letter or "_" (at most 40)');
  const maxConnections = Number(get('storage.max_connections') ?? 8);
  if (!Number.isInteger(maxConnections) || maxConnections < 2 || maxConnections > 1000) throw new ConfigError('storage.max_connections', 'must be an integer from 2 to 1000');
  const out: PostgresStoreConfig = { connectionUrl: url, tablePrefix, maxConnections };
  const ca = get('storage.tls_ca_file');
  const cert = get('storage.tls_cert_file');
  const key = get('storage.tls_key_file');
  const skip = get('storage.tls_skip_verify');
  if (ca !== undefined) out.tlsCaFile = str('storage.tls_ca_file', ca);
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError(cert === undefined ? 'storage.tls_cert_file' : 'storage.tls_key_file', 'give tls_cert_file and tls_key_file together');
  if (cert !== undefined) (out.tlsCertFile = str('storage.tls_cert_file', cert), (out.tlsKeyFile = str('storage.tls_key_file', key)));
  if (skip !== undefined) out.tlsSkipVerify = bool('storage.tls_skip_verify', skip);
  return out;
}

/** ha.*, api_addr, cluster_addr; HA needs the PostgreSQL store. */
function haConfig(get: (f: Field) => unknown, onPostgres: boolean): HaConfig | undefined {
  const enabled = get('ha.enabled') === undefined ? false : bool('ha.enabled', get('ha.enabled'));
  if (!enabled) {
    for (const f of ['ha.lease_duration', 'api_addr', 'cluster_addr'] as const) if (get(f) !== undefined) throw new ConfigError(f, 'is for ha.enabled true');
    return undefined;
  }
  if (!onPostgres) throw new ConfigError('ha.enabled', 'HA needs storage.type "postgresql" (one SQLite file cannot be shared by several nodes)');
  if (get('api_addr') === undefined) throw new ConfigError('api_addr', 'is required with ha.enabled (the address clients and other nodes reach this node at)');
  const apiAddr = httpAddr('api_addr', get('api_addr'));
  const clusterAddr = get('cluster_addr') === undefined ? apiAddr : httpAddr('cluster_addr', get('cluster_addr'));
  const leaseDuration = seconds('ha.lease_duration', get('ha.lease_duration') ?? '8s');
  if (leaseDuration < 2 || leaseDuration > 300) throw new ConfigError('ha.lease_duration', 'must be from 2 to 300 seconds');
  return { apiAddr, clusterAddr, leaseDuration };
}

function safeJson(field: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(field, 'must be JSON');
  }
}
