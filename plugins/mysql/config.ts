// Turn a ConnectionConfig into mysql2 pool options.
//
// Two connection_url styles are accepted:
//   - Vault's Go DSN: `{{username}}:{{password}}@tcp(host:3306)/db?tls=true`
//   - URL: `mysql://{{username}}:{{password}}@host:3306/db`
// Go DSNs are parsed as templates first and the values substituted into the
// parsed fields, so a password containing `@`, `/` or `:` cannot move the
// boundaries; URL style is parsed with letter-only stand-ins for the
// placeholders, and the real values put into the parsed fields afterwards.
// Either way the credentials reach the driver verbatim (as its own user and
// password options), never through URL encoding.
// Messages never quote the URL (it may carry a password).

import type { PoolOptions, SslOptions } from 'mysql2/promise';
import { EngineInputError, type ConnectionConfig } from '../../src/engine/engine.ts';
import { parseDuration } from '../../src/util/duration.ts';

export interface MysqlOptions {
  tlsCa?: string;
  tlsCertificateKey?: string;
  tlsSkipVerify: boolean;
  /** Host part of the admin account for the default root rotation. */
  rootHost?: string;
}

export interface ParsedConnection {
  user: string;
  password: string;
  host?: string;
  port?: number;
  socketPath?: string;
  database?: string;
  params: Map<string, string>;
}

const DEFAULT_PORT = 3306;
const DEFAULT_POOL_SIZE = 4;
const PLACEHOLDER = /\{\{\s*(username|password)\s*\}\}/g;

// Go driver parameters that only tune client behaviour we don't need; accepted
// and ignored so Vault configurations carry over. Anything else is refused.
const IGNORED_PARAMS = new Set([
  'charset', 'collation', 'parseTime', 'loc', 'readTimeout', 'writeTimeout', 'allowNativePasswords',
  'allowOldPasswords', 'allowCleartextPasswords', 'interpolateParams', 'multiStatements', 'clientFoundRows',
  'columnsWithAlias', 'rejectReadOnly', 'maxAllowedPacket', 'checkConnLiveness', 'serverPubKey',
  'allowAllFiles', 'allowFallbackToPlaintext', 'connectionAttributes',
]);

const KNOWN_OPTIONS = new Set(['tls_ca', 'tls_certificate_key', 'tls_skip_verify', 'root_host']);

function substitute(template: string, values: { username: string; password: string }): string {
  return template.replace(PLACEHOLDER, (_m, key: 'username' | 'password') => values[key]);
}

const STAND_IN = { username: 'dbrokerusernamestandin', password: 'dbrokerpasswordstandin' };

/** Put the real credentials where the stand-ins ended up. */
function restore(value: string, values: { username: string; password: string }): string {
  return value.split(STAND_IN.username).join(values.username).split(STAND_IN.password).join(values.password);
}

function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (!query) return params;
  for (const part of query.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? '' : part.slice(eq + 1);
    try {
      params.set(decodeURIComponent(key), decodeURIComponent(value));
    } catch {
      throw new EngineInputError('connection_url has a malformed query parameter');
    }
  }
  return params;
}

function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:]*))(?::(\d+))?$/.exec(address);
  if (!m) throw new EngineInputError('connection_url has an invalid address (expected host:port)');
  const host = m[1] ?? m[2] ?? '';
  const port = m[3] ? Number(m[3]) : DEFAULT_PORT;
  if (port < 1 || port > 65535) throw new EngineInputError('connection_url has an invalid port');
  return { host: host || '127.0.0.1', port };
}

/** Go DSN: [user[:password]@][net[(addr)]]/dbname[?params], parsed like go-sql-driver/mysql. */
function parseGoDsn(template: string, values: { username: string; password: string }): ParsedConnection {
  const slash = template.lastIndexOf('/');
  if (slash === -1) throw new EngineInputError('connection_url is not a valid DSN (missing "/" before the database name)');
  const left = template.slice(0, slash);
  const right = template.slice(slash + 1);
  const at = left.lastIndexOf('@');
  const userInfo = at === -1 ? '' : left.slice(0, at);
  const netAddr = at === -1 ? left : left.slice(at + 1);
  const colon = userInfo.indexOf(':');
  const fill = (s: string): string => substitute(s, values);
  const user = fill(colon === -1 ? userInfo : userInfo.slice(0, colon));
  const password = fill(colon === -1 ? '' : userInfo.slice(colon + 1));

  const q = right.indexOf('?');
  const database = q === -1 ? right : right.slice(0, q);
  const params = parseQuery(q === -1 ? '' : right.slice(q + 1));
  const out: ParsedConnection = { user, password, params };
  if (database) out.database = database;

  const m = /^([a-z0-9]*)(?:\((.*)\))?$/i.exec(netAddr);
  if (!m) throw new EngineInputError('connection_url is not a valid DSN (expected tcp(host:port) or unix(path))');
  const net = m[1] || 'tcp';
  const addr = m[2] ?? '';
  if (net === 'unix') {
    if (!addr) throw new EngineInputError('connection_url: unix() needs a socket path');
    out.socketPath = addr;
  } else if (net === 'tcp') {
    Object.assign(out, parseHostPort(addr));
  } else {
    throw new EngineInputError(`connection_url: unsupported network "${net.slice(0, 20)}" (use tcp or unix)`);
  }
  return out;
}

function parseUrl(template: string, values: { username: string; password: string }): ParsedConnection {
  let url: URL;
  try {
    url = new URL(substitute(template, STAND_IN));
  } catch {
    throw new EngineInputError('connection_url is not a valid URL');
  }
  if (url.protocol !== 'mysql:' && url.protocol !== 'mariadb:') {
    throw new EngineInputError('connection_url: unsupported scheme (use mysql:// or a Go DSN like user:pass@tcp(host:3306)/)');
  }
  let user: string;
  let password: string;
  try {
    user = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    throw new EngineInputError('connection_url has malformed percent-encoding in its credentials');
  }
  const params = new Map([...parseQuery(url.search.slice(1))].map(([k, v]) => [k, restore(v, values)]));
  const out: ParsedConnection = { user: restore(user, values), password: restore(password, values), params };
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  out.host = host || '127.0.0.1';
  out.port = url.port ? Number(url.port) : DEFAULT_PORT;
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (database) out.database = database;
  return out;
}

export function parseConnectionUrl(config: ConnectionConfig): ParsedConnection {
  if (typeof config.connectionUrl !== 'string' || config.connectionUrl.trim() === '') {
    throw new EngineInputError('connection_url is required');
  }
  const values = { username: config.username ?? '', password: config.password ?? '' };
  const template = config.connectionUrl.trim();
  const parsed = /^[a-z][a-z0-9+.-]*:\/\//i.test(template) ? parseUrl(template, values) : parseGoDsn(template, values);
  // No credentials in the URL: take the configured ones.
  if (!parsed.user) {
    parsed.user = values.username;
    parsed.password = values.password;
  }
  if (!parsed.user) throw new EngineInputError('username is required (in the config or the connection_url)');
  return parsed;
}

function optionString(options: Record<string, unknown>, key: string): string | undefined {
  const value = options[key];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new EngineInputError(`${key} must be a string`);
  return value;
}

function optionBool(options: Record<string, unknown>, key: string): boolean {
  const value = options[key];
  if (value === undefined || value === null || value === '') return false;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new EngineInputError(`${key} must be a boolean`);
}

export function parseOptions(options: Record<string, unknown>): MysqlOptions {
  for (const key of Object.keys(options ?? {})) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new EngineInputError(`unknown option "${key.slice(0, 64)}" for the MySQL engine (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
  }
  const out: MysqlOptions = { tlsSkipVerify: optionBool(options ?? {}, 'tls_skip_verify') };
  const ca = optionString(options ?? {}, 'tls_ca');
  const certKey = optionString(options ?? {}, 'tls_certificate_key');
  const rootHost = optionString(options ?? {}, 'root_host');
  if (ca !== undefined) out.tlsCa = ca;
  if (certKey !== undefined) out.tlsCertificateKey = certKey;
  if (rootHost !== undefined) out.rootHost = rootHost;
  return out;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** Vault's tls_certificate_key is one PEM holding the certificate(s) and the private key. */
function splitCertificateKey(pem: string): { cert: string; key: string } {
  const certs: string[] = [];
  const keys: string[] = [];
  for (const m of pem.matchAll(PEM_BLOCK)) {
    if (m[1] === 'CERTIFICATE') certs.push(m[0]);
    else if (m[1]!.endsWith('PRIVATE KEY')) keys.push(m[0]);
  }
  if (certs.length === 0 || keys.length !== 1) {
    throw new EngineInputError('tls_certificate_key must be a PEM with the client certificate and exactly one private key');
  }
  return { cert: certs.join('\n'), key: keys[0]! };
}

function sslOptions(opts: MysqlOptions, params: Map<string, string>): SslOptions | undefined {
  const tlsParam = params.get('tls');
  if (tlsParam !== undefined && !['true', 'false', 'skip-verify'].includes(tlsParam)) {
    throw new EngineInputError('connection_url parameter "tls" must be true, false or skip-verify');
  }
  const skipVerify = opts.tlsSkipVerify || tlsParam === 'skip-verify';
  const wanted = opts.tlsCa !== undefined || opts.tlsCertificateKey !== undefined || opts.tlsSkipVerify
    || tlsParam === 'true' || tlsParam === 'skip-verify';
  if (!wanted) return undefined;
  const ssl: SslOptions = { rejectUnauthorized: !skipVerify, verifyIdentity: !skipVerify };
  if (opts.tlsCa !== undefined) {
    if (!opts.tlsCa.includes('-----BEGIN CERTIFICATE-----')) throw new EngineInputError('tls_ca must be a PEM certificate');
    ssl.ca = opts.tlsCa;
  }
  if (opts.tlsCertificateKey !== undefined) Object.assign(ssl, splitCertificateKey(opts.tlsCertificateKey));
  return ssl;
}

function connectTimeout(params: Map<string, string>): number | undefined {
  const raw = params.get('timeout');
  if (raw === undefined) return undefined;
  const seconds = parseDuration(raw);
  if (typeof seconds === 'string' || seconds < 1) {
    throw new EngineInputError('connection_url parameter "timeout" must be a duration of at least 1s');
  }
  return seconds * 1000;
}

/**
 * mysql2 pool options. `maxIdle` (max_idle_connections, resolved by the
 * broker) caps the idle connections mysql2 keeps beyond `idleTimeout`.
 */
export function poolOptions(parsed: ParsedConnection, opts: MysqlOptions, maxOpenConnections: number, maxIdle?: number): PoolOptions {
  for (const key of parsed.params.keys()) {
    if (key !== 'tls' && key !== 'timeout' && !IGNORED_PARAMS.has(key)) {
      throw new EngineInputError(`connection_url parameter "${key.slice(0, 64)}" is not supported`);
    }
  }
  const limit = Number.isInteger(maxOpenConnections) && maxOpenConnections > 0 ? maxOpenConnections : DEFAULT_POOL_SIZE;
  const out: PoolOptions = {
    user: parsed.user,
    password: parsed.password,
    connectionLimit: limit,
    maxIdle: maxIdle !== undefined && maxIdle >= 0 ? Math.min(maxIdle, limit) : limit,
    idleTimeout: 60_000,
    enableKeepAlive: true,
    // Statements are rendered to single statements; never let one become many.
    multipleStatements: false,
    supportBigNumbers: true,
    // No caller stack captured on every query (mysql2's "long stack traces",
    // a cost per statement): the engine wraps every error in its own anyway.
    trace: false,
  };
  if (parsed.socketPath) out.socketPath = parsed.socketPath;
  else {
    out.host = parsed.host ?? '127.0.0.1';
    out.port = parsed.port ?? DEFAULT_PORT;
  }
  if (parsed.database) out.database = parsed.database;
  const ssl = sslOptions(opts, parsed.params);
  if (ssl) out.ssl = ssl;
  const timeout = connectTimeout(parsed.params);
  if (timeout !== undefined) out.connectTimeout = timeout;
  return out;
}
