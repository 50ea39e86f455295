// Turn a ConnectionConfig into a MongoClient URL and options, validating the
// engine options. Messages never quote the URL (it may carry a password).
//
// Engine options (every config field the broker does not know itself):
//   write_concern           JSON (string or object) in Vault's shape:
//                           {"w": 1, "wmode": "majority", "wtimeout": 5000, "j": true, "fsync": false};
//                           sent with createUser, updateUser and dropUser.
//   tls_ca                  PEM CA certificate(s) to verify the server with (turns TLS on).
//   tls_certificate_key     PEM with the client certificate and its private key (turns TLS on).
//   skip_unsupported_roles  true: when the server answers createUser's roles with
//                           NotImplemented (FerretDB 1.x, which has no authorization:
//                           every user may do everything), create the user without
//                           roles instead of failing. Off by default, so nobody gets
//                           an unrestricted user without asking for it.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { MongoClientOptions } from 'mongodb';
import { EngineInputError, type ConnectionConfig } from '../../src/engine/engine.ts';

export interface WriteConcern {
  w?: number | string;
  wtimeout?: number;
  j?: boolean;
}

export interface MongoSettings {
  /** The URL without the userinfo that held `{{username}}`/`{{password}}` (those go in clientOptions.auth). */
  url: string;
  clientOptions: MongoClientOptions;
  writeConcern: WriteConcern | undefined;
  skipUnsupportedRoles: boolean;
  /** The admin password and its encoded form, to scrub from messages. */
  secrets: string[];
}

const DEFAULT_POOL_SIZE = 4;
const PLACEHOLDER = /\{\{\s*([A-Za-z_]+)\s*\}\}/g;
const USERINFO = /^(mongodb(?:\+srv)?:\/\/)([^@/?#]*)@/i;
// Letter-only stand-ins for the placeholders while the URL is taken apart.
const STAND_IN = { username: 'dbrokerusernamestandin', password: 'dbrokerpasswordstandin' } as const;
const KNOWN_OPTIONS = ['write_concern', 'tls_ca', 'tls_certificate_key', 'skip_unsupported_roles'];

function isEmpty(value: unknown): boolean {
  return value === undefined || value === null || value === '';
}

function optionString(field: string, value: unknown): string | undefined {
  if (isEmpty(value)) return undefined;
  if (typeof value !== 'string') throw new EngineInputError(`${field} must be a string`);
  return value;
}

// The Vault CLI sends every field as a string, so "true"/"false" count too.
function optionBool(field: string, value: unknown): boolean {
  if (isEmpty(value)) return false;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new EngineInputError(`${field} must be a boolean`);
}

function nonNegativeInteger(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new EngineInputError(`${field} must be a non-negative integer`);
  return value;
}

export function parseWriteConcern(value: unknown): WriteConcern | undefined {
  if (isEmpty(value)) return undefined;
  let doc: unknown = value;
  if (typeof value === 'string') {
    try {
      doc = JSON.parse(value);
    } catch {
      throw new EngineInputError('write_concern is not valid JSON (expected e.g. {"wmode": "majority", "wtimeout": 5000})');
    }
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new EngineInputError('write_concern must be a JSON object');
  const fields = doc as Record<string, unknown>;
  const out: WriteConcern = {};
  for (const [key, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    switch (key) {
      case 'w': {
        const n = nonNegativeInteger('write_concern.w', v);
        if (typeof out.w !== 'string') out.w = n;
        break;
      }
      case 'wmode':
        if (typeof v !== 'string' || v === '') throw new EngineInputError('write_concern.wmode must be a non-empty string (e.g. "majority")');
        out.w = v; // a mode wins over a number, as in Vault
        break;
      case 'wtimeout':
        out.wtimeout = nonNegativeInteger('write_concern.wtimeout', v);
        break;
      case 'j':
      case 'fsync':
        if (typeof v !== 'boolean') throw new EngineInputError(`write_concern.${key} must be a boolean`);
        // fsync in a write concern is the old name for waiting on the journal.
        if (v) out.j = true;
        else out.j ??= false;
        break;
      default:
        throw new EngineInputError(`write_concern has unknown field "${key.slice(0, 64)}" (known: w, wmode, wtimeout, j, fsync)`);
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

function parseCa(value: unknown): string | undefined {
  const pem = optionString('tls_ca', value)?.trim();
  if (pem === undefined || pem === '') return undefined;
  const certs = [...pem.matchAll(PEM_BLOCK)].filter((m) => m[1] === 'CERTIFICATE');
  try {
    if (certs.length === 0) throw new Error('no certificate');
    for (const m of certs) new X509Certificate(m[0]);
  } catch {
    throw new EngineInputError('tls_ca must hold one or more PEM certificates');
  }
  return pem;
}

/** Vault's tls_certificate_key: one PEM with the client certificate(s) and exactly one private key. */
function parseCertificateKey(value: unknown): { cert: string; key: string } | undefined {
  const pem = optionString('tls_certificate_key', value)?.trim();
  if (pem === undefined || pem === '') return undefined;
  const certs: string[] = [];
  const keys: string[] = [];
  for (const m of pem.matchAll(PEM_BLOCK)) {
    if (m[1] === 'CERTIFICATE') certs.push(m[0]);
    else if (m[1]!.endsWith('PRIVATE KEY')) keys.push(m[0]);
  }
  const problem = 'tls_certificate_key must be a PEM with the client certificate and exactly one private key';
  if (certs.length === 0 || keys.length !== 1) throw new EngineInputError(problem);
  try {
    for (const c of certs) new X509Certificate(c);
    createPrivateKey(keys[0]!);
  } catch {
    throw new EngineInputError(problem);
  }
  return { cert: certs.join('\n'), key: keys[0]! };
}

/** Query parameter names of a connection string, lower-cased. */
function urlParams(url: string): Set<string> {
  const q = url.indexOf('?');
  const names = new Set<string>();
  if (q === -1) return names;
  for (const part of url.slice(q + 1).split('&')) {
    const name = part.split('=')[0]!.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

export function parseMongoConfig(config: ConnectionConfig): MongoSettings {
  const options = config.options ?? {};
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.includes(key)) {
      throw new EngineInputError(`unknown field "${key.slice(0, 64)}" for the MongoDB engine (known: ${KNOWN_OPTIONS.join(', ')})`);
    }
  }
  const writeConcern = parseWriteConcern(options['write_concern']);
  const ca = parseCa(options['tls_ca']);
  const certificateKey = parseCertificateKey(options['tls_certificate_key']);
  const skipUnsupportedRoles = optionBool('skip_unsupported_roles', options['skip_unsupported_roles']);

  const template = typeof config.connectionUrl === 'string' ? config.connectionUrl.trim() : '';
  if (template === '') throw new EngineInputError('connection_url is required');
  if (!/^mongodb(\+srv)?:\/\//i.test(template)) throw new EngineInputError('connection_url must be a mongodb:// or mongodb+srv:// URL');
  const username = config.username ?? '';
  const password = config.password ?? '';
  const templated = new Set<string>();
  const withStandIns = template.replace(PLACEHOLDER, (_m, key: string) => {
    templated.add(key);
    if (key === 'username' || key === 'password') return STAND_IN[key];
    throw new EngineInputError(`connection_url: unknown placeholder {{${key.slice(0, 32)}}} (use {{username}} and {{password}})`);
  });
  // The credentials go to the driver as its `auth` option, verbatim, never
  // URL-encoded into the URL: the userinfo holding the placeholders is cut out.
  const userinfo = USERINFO.exec(withStandIns);
  const url = templated.size > 0 && userinfo ? withStandIns.replace(USERINFO, '$1') : withStandIns;
  if (url.includes(STAND_IN.username) || url.includes(STAND_IN.password)) {
    throw new EngineInputError('connection_url: {{username}} and {{password}} may only appear before the "@" of the host (mongodb://{{username}}:{{password}}@host/...)');
  }

  const given = urlParams(url);
  const pool = Number.isInteger(config.maxOpenConnections) && config.maxOpenConnections > 0 ? config.maxOpenConnections : DEFAULT_POOL_SIZE;
  const clientOptions: MongoClientOptions = {
    // One bounded pool per connection: max_open_connections wins over a
    // maxPoolSize in the URL.
    maxPoolSize: pool,
    minPoolSize: 0,
    // Defaults the URL may override (e.g. a shorter serverSelectionTimeoutMS).
    ...(given.has('serverselectiontimeoutms') ? {} : { serverSelectionTimeoutMS: 10_000 }),
    ...(given.has('connecttimeoutms') ? {} : { connectTimeoutMS: 10_000 }),
    ...(given.has('maxidletimems') ? {} : { maxIdleTimeMS: 60_000 }),
    ...(given.has('appname') ? {} : { appName: 'dbroker' }),
  };
  // Credentials are passed as options: from the placeholders, or, without
  // any in the URL, the configured ones.
  if (templated.size > 0 && userinfo) {
    const parts = userinfo[2]!.split(':');
    const fill = (part: string | undefined): string => {
      let literal: string;
      try {
        literal = decodeURIComponent(part ?? ''); // text written around the placeholders is URL-encoded
      } catch {
        throw new EngineInputError('connection_url has malformed percent-encoding before the "@"');
      }
      return literal.split(STAND_IN.username).join(username).split(STAND_IN.password).join(password);
    };
    clientOptions.auth = { username: fill(parts[0]), password: fill(parts.slice(1).join(':')) };
  } else if (!templated.has('username') && username !== '') {
    clientOptions.auth = { username, password };
  }
  if (ca !== undefined || certificateKey !== undefined) {
    clientOptions.tls = true;
    if (ca !== undefined) clientOptions.ca = ca;
    if (certificateKey !== undefined) Object.assign(clientOptions, certificateKey);
  }
  return {
    url,
    clientOptions,
    writeConcern,
    skipUnsupportedRoles,
    secrets: [password, encodeURIComponent(password)].filter((s) => s !== ''),
  };
}
