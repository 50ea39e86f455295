// The MongoDB test server for the engine tests: MONGODB_URL (an admin URL of
// a real mongod) when set, otherwise FerretDB started by scripts/ferretdb.sh.
// With DBROKER_TEST_REQUIRE_ALL=1 an unreachable server fails the test file;
// otherwise its tests are skipped with the reason.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { MongoClient } from 'mongodb';
import type { ConnectionConfig } from '../../../src/engine/engine.ts';

const ROOT = resolve(import.meta.dirname, '../../..');

export interface MongoTarget {
  /** The admin URL, with credentials. */
  adminUrl: string;
  /** `mongodb://{{username}}:{{password}}@host/...`, as Vault users write it. */
  templateUrl: string;
  /** The URL without credentials, for logins as other users. */
  bareUrl: string;
  username: string;
  password: string;
  ferretdb: boolean;
  admin: MongoClient;
}

export const tag = (): string => randomBytes(4).toString('hex');

function ferretUrl(): string {
  const script = resolve(ROOT, 'scripts/ferretdb.sh');
  // A cold build of FerretDB takes minutes; later runs reuse the binary.
  execFileSync('bash', [script, 'ensure'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 900_000 });
  return execFileSync('bash', [script, 'url'], { encoding: 'utf8', timeout: 30_000 }).trim();
}

const USERINFO = /^(mongodb(?:\+srv)?:\/\/)([^@/]*)@/i;

/** The server to test against, or a reason to skip (throws instead with DBROKER_TEST_REQUIRE_ALL=1). */
export async function mongoTarget(): Promise<MongoTarget | string> {
  const required = process.env['DBROKER_TEST_REQUIRE_ALL'] === '1';
  let adminUrl: string;
  let admin: MongoClient | undefined;
  try {
    adminUrl = process.env['MONGODB_URL'] || ferretUrl();
    admin = new MongoClient(adminUrl, { serverSelectionTimeoutMS: 10_000, maxPoolSize: 4 });
    await admin.db('admin').command({ ping: 1 });
  } catch (err) {
    await admin?.close().catch(() => undefined);
    const reason = `no MongoDB server (set MONGODB_URL or make scripts/ferretdb.sh work): ${err instanceof Error ? err.message : String(err)}`;
    if (required) throw new Error(`DBROKER_TEST_REQUIRE_ALL=1 and ${reason}`);
    return reason;
  }
  const m = USERINFO.exec(adminUrl);
  if (!m) throw new Error('MONGODB_URL must carry the admin credentials (mongodb://user:password@host/...)');
  const colon = m[2]!.indexOf(':');
  const username = decodeURIComponent(colon === -1 ? m[2]! : m[2]!.slice(0, colon));
  const password = colon === -1 ? '' : decodeURIComponent(m[2]!.slice(colon + 1));
  const build = await admin.db('admin').command({ buildInfo: 1 });
  return {
    adminUrl,
    templateUrl: adminUrl.replace(USERINFO, '$1{{username}}:{{password}}@'),
    bareUrl: adminUrl.replace(USERINFO, '$1'),
    username,
    password,
    ferretdb: typeof build['ferretdbVersion'] === 'string',
    admin,
  };
}

/** An engine ConnectionConfig for the admin login. */
export function mongoConfig(target: MongoTarget, overrides: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return {
    connectionUrl: target.templateUrl,
    username: target.username,
    password: target.password,
    maxOpenConnections: 2,
    // FerretDB 1.x refuses roles in createUser (and enforces none); a real mongod ignores this.
    options: target.ferretdb ? { skip_unsupported_roles: true } : {},
    ...overrides,
  };
}

/** `bareUrl` with `username`/`password` and `authSource` set. */
function loginUrl(target: MongoTarget, username: string, password: string, authSource: string): string {
  const url = target.bareUrl.replace(/^(mongodb(?:\+srv)?:\/\/)/i, `$1${encodeURIComponent(username)}:${encodeURIComponent(password)}@`);
  const withoutSource = url.replace(/([?&])authSource=[^&]*&?/i, '$1').replace(/[?&]$/, '');
  return `${withoutSource}${withoutSource.includes('?') ? '&' : '?'}authSource=${encodeURIComponent(authSource)}`;
}

/** A client logged in (SCRAM) as `username`; throws (code 18) when the login is refused. */
export async function loginAs(target: MongoTarget, username: string, password: string, authSource = 'admin'): Promise<MongoClient> {
  const client = new MongoClient(loginUrl(target, username, password, authSource), { serverSelectionTimeoutMS: 10_000, maxPoolSize: 1 });
  try {
    await client.db(authSource).command({ ping: 1 });
  } catch (err) {
    await client.close().catch(() => undefined);
    throw err;
  }
  return client;
}

export async function canLogin(target: MongoTarget, username: string, password: string, authSource = 'admin'): Promise<boolean> {
  try {
    const client = await loginAs(target, username, password, authSource);
    await client.close();
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 18) return false;
    throw err;
  }
}

/** The databases in which a user named `username` exists. */
export async function userDatabases(target: MongoTarget, username: string, dbs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const db of dbs) {
    const reply = await target.admin.db('admin').command({ usersInfo: { user: username, db } });
    if ((reply['users'] as unknown[]).length > 0) out.push(db);
  }
  return out;
}

/** Drop every user whose name starts with `prefix` in the given databases (cleanup after a failed test). */
export async function dropUsersWithPrefix(target: MongoTarget, prefix: string, dbs: string[]): Promise<void> {
  for (const db of dbs) {
    const reply = await target.admin.db(db).command({ usersInfo: 1 });
    for (const u of reply['users'] as Array<{ user: string }>) {
      if (u.user.startsWith(prefix)) await target.admin.db(db).command({ dropUser: u.user }).catch(() => undefined);
    }
  }
}

export const PASSWORD = (): string => `Aa1-${randomBytes(12).toString('base64url')}`;

/** What the broker says where revoked users' sessions cannot be ended (FerretDB lacks killAllSessionsByPattern). */
export const SESSIONS_WARNING = /cannot end the sessions of revoked users/;

/**
 * A connection write or a revocation answered 204 — or, on FerretDB, 200 with
 * a warning that sessions cannot be ended there (issue 8 item 11: never a
 * clean answer for work that could not be done).
 */
export function assertDone(target: MongoTarget, res: { status: number; text: string; body?: unknown }, what = 'request'): void {
  if (!target.ferretdb) {
    assert.equal(res.status, 204, `${what}: ${res.text}`);
    return;
  }
  assert.equal(res.status, 200, `${what}: ${res.text}`);
  const warnings = (res.body as { warnings?: unknown } | undefined)?.warnings;
  assert.ok(Array.isArray(warnings) && warnings.some((w) => SESSIONS_WARNING.test(String(w))), `${what}: a warning says sessions cannot be ended: ${res.text}`);
}
