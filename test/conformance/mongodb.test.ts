// Conformance of mongodb-database-plugin against MONGODB_URL (an admin URL)
// or, when it is unset, the local FerretDB (`bash scripts/ferretdb.sh ensure`).
// FerretDB accepts logins and users but does not enforce roles nor end other
// users' sessions: those checks are skipped there, with the reason printed.

import test from 'node:test';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { MongoClient, MongoServerError } from 'mongodb';
import type { EngineFactory } from '../../src/engine/engine.ts';
import { runConformance, ServerUnreachable, type Access, type ConformanceServer, type Credentials } from './suite.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const PLUGIN = 'mongodb-database-plugin';
const AUTHENTICATION_FAILED = 18;
const UNAUTHORIZED = 13;
const USER_NOT_FOUND = 11;

/** The admin URL: MONGODB_URL, or the local FerretDB (started if needed). */
function adminUrl(): string {
  if (process.env.MONGODB_URL) return process.env.MONGODB_URL;
  try {
    execFileSync('bash', ['scripts/ferretdb.sh', 'ensure'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
    return execFileSync('bash', ['scripts/ferretdb.sh', 'url'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new ServerUnreachable(`FerretDB could not be started (set MONGODB_URL to use another server): ${stderr || (err as Error).message}`);
  }
}

/** The same server and options with another login. */
function urlFor(base: string, creds: Credentials | null): string {
  const url = new URL(base);
  url.username = creds ? encodeURIComponent(creds.username) : '';
  url.password = creds ? encodeURIComponent(creds.password) : '';
  return url.toString();
}

const codeOf = (err: unknown): number | undefined => (err instanceof MongoServerError && typeof err.code === 'number' ? err.code : undefined);

async function asUser<T>(base: string, creds: Credentials, work: (client: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(urlFor(base, creds), { serverSelectionTimeoutMS: 5000, maxPoolSize: 1 });
  try {
    await client.connect();
    return await work(client);
  } finally {
    await client.close().catch(() => undefined);
  }
}

async function attempt(base: string, creds: Credentials, op: (client: MongoClient) => Promise<unknown>): Promise<Access> {
  return asUser(base, creds, async (client) => {
    try {
      await op(client);
      return 'ok';
    } catch (err) {
      if (codeOf(err) === UNAUTHORIZED) return 'denied';
      throw err;
    }
  });
}

async function start(prefix: string): Promise<ConformanceServer> {
  const base = adminUrl();
  const root = new MongoClient(base, { serverSelectionTimeoutMS: 5000 });
  try {
    await root.connect();
  } catch (err) {
    await root.close().catch(() => undefined);
    throw new ServerUnreachable(`MongoDB at ${new URL(base).host}: ${(err as Error).message}`);
  }
  const parsed = new URL(base);
  const adminCreds = { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) };
  const adminDb = root.db('admin');
  const ferret = 'ferretdbVersion' in (await adminDb.command({ buildInfo: 1 }));
  const dbName = `${prefix}db`;
  const otherDb = `${prefix}other`;
  await root.db(dbName).collection('granted').insertOne({ v: 42 });
  await root.db(otherDb).collection('secret').insertOne({ v: 1 });

  const users = async (): Promise<Array<{ user: string; db: string }>> =>
    ((await adminDb.command({ usersInfo: { forAllDBs: true } })).users as Array<{ user: string; db: string }>).map((u) => ({ user: u.user, db: u.db }));
  const drop = async (user: string, db = 'admin'): Promise<void> => {
    await root
      .db(db)
      .command({ dropUser: user })
      .catch((err: unknown) => {
        if (codeOf(err) !== USER_NOT_FOUND) throw err;
      });
  };

  return {
    admin: adminCreds,
    connectionConfig: (admin) => ({
      connection_url: urlFor(base, null).replace('mongodb://', 'mongodb://{{username}}:{{password}}@'),
      username: admin.username,
      password: admin.password,
      max_open_connections: 2,
      // FerretDB refuses roles in createUser; the engine must be told to create role-less users there.
      ...(ferret ? { skip_unsupported_roles: true } : {}),
    }),
    creationStatements: [JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: dbName }] })],
    async canLogin(creds) {
      try {
        await asUser(base, creds, (client) => client.db('admin').command({ ping: 1 }));
        return true;
      } catch (err) {
        if (codeOf(err) === AUTHENTICATION_FAILED) return false;
        throw err;
      }
    },
    readGranted: (creds) => attempt(base, creds, (c) => c.db(dbName).collection('granted').find().toArray()),
    readOther: (creds) => attempt(base, creds, (c) => c.db(otherDb).collection('secret').find().toArray()),
    writeGranted: (creds) => attempt(base, creds, (c) => c.db(dbName).collection('granted').insertOne({ v: 1 })),
    listUsers: async () => (await users()).map((u) => u.user),
    async openSession(creds) {
      const client = new MongoClient(urlFor(base, creds), { serverSelectionTimeoutMS: 3000, maxPoolSize: 1 });
      await client.connect();
      return {
        alive: () => client.db(dbName).collection('granted').findOne().then(() => true, () => false),
        close: () => client.close().catch(() => undefined),
      };
    },
    spacedQueryParam: 'appName=my app',
    async createAdmin(username, password = `Aa1-${randomBytes(12).toString('hex')}`) {
      // FerretDB refuses roles (it does not enforce them; any login may do anything).
      await adminDb.command({ createUser: username, pwd: password, roles: ferret ? [] : [{ role: 'root', db: 'admin' }] });
      return { username, password };
    },
    dropUser: (username) => drop(username),
    ...(ferret
      ? {
          skipLeastPrivilege: 'FerretDB does not enforce roles',
          skipSessionTermination: "FerretDB cannot end another user's sessions (no killAllSessionsByPattern); a dropped user's open connection keeps working",
        }
      : {}),
    async stop() {
      try {
        for (const u of await users()) if (u.user.startsWith(prefix)) await drop(u.user, u.db);
        await root.db(dbName).dropDatabase();
        await root.db(otherDb).dropDatabase();
      } finally {
        await root.close().catch(() => undefined);
      }
    },
  };
}

const REQUIRE_ALL = process.env.DBROKER_TEST_REQUIRE_ALL === '1';
let factory: EngineFactory | undefined;
let missing: string | undefined;
try {
  // Loaded at run time: the engine's username limit comes from its factory.
  const specifier = new URL('../../plugins/mongodb/index.ts', import.meta.url).href;
  factory = ((await import(specifier)) as { default: EngineFactory }).default;
} catch (err) {
  missing = `plugins/mongodb/index.ts cannot be loaded: ${(err as Error).message}`;
}

if (factory) {
  runConformance({ name: `${PLUGIN} (${process.env.MONGODB_URL ? 'MONGODB_URL' : 'FerretDB'})`, pluginName: PLUGIN, maxUsernameLength: factory.maxUsernameLength, start });
} else {
  test(`conformance: ${PLUGIN}`, (t) => {
    if (REQUIRE_ALL) throw new Error(missing);
    t.skip(missing);
  });
}
