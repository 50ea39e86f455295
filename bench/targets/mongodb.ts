// MongoDB: MONGODB_URL (an admin URL), or the local FerretDB started by
// scripts/ferretdb.sh. The role grants `read` on one database. FerretDB 1.x
// answers createUser with roles NotImplemented (it has no authorization), so
// there the connection sets skip_unsupported_roles and the engine retries
// without roles; the direct baseline does the same two calls.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { MongoClient } from 'mongodb';
import { checkPrefix, type BenchTarget, type DirectSession } from './target.ts';
import { renderStatement } from './render.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const USER_NOT_FOUND = 11;
const NOT_IMPLEMENTED = 238;
const CREATION = [JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: 'dbroker_bench' }] })];

let adminUrl: string | undefined;
let isFerret = false;

function url(): string {
  if (adminUrl) return adminUrl;
  if (process.env.MONGODB_URL) return (adminUrl = process.env.MONGODB_URL);
  execFileSync('bash', ['scripts/ferretdb.sh', 'ensure'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  return (adminUrl = execFileSync('bash', ['scripts/ferretdb.sh', 'url'], { cwd: ROOT, encoding: 'utf8' }).trim());
}

async function connect(): Promise<MongoClient> {
  const client = new MongoClient(url(), { maxPoolSize: 1, serverSelectionTimeoutMS: 5000 });
  await client.connect();
  return client;
}

async function usersWithPrefix(client: MongoClient, prefix: string): Promise<string[]> {
  checkPrefix(prefix);
  const info = await client.db('admin').command({ usersInfo: 1 });
  const users = (info['users'] ?? []) as Array<{ user: string }>;
  return users.map((u) => u.user).filter((u) => u.startsWith(prefix));
}

async function dropUser(client: MongoClient, name: string): Promise<void> {
  try {
    await client.db('admin').command({ dropUser: name });
  } catch (err) {
    if ((err as { code?: number }).code !== USER_NOT_FOUND) throw err;
  }
}

export const mongodbTarget: BenchTarget = {
  engine: 'mongodb',
  get label() {
    return isFerret ? 'MongoDB (FerretDB)' : 'MongoDB';
  },

  async unavailable() {
    if (!existsSync(resolve(ROOT, 'plugins/mongodb/index.ts'))) return 'plugins/mongodb/index.ts does not exist yet';
    try {
      const client = await connect();
      try {
        const info = await client.db('admin').command({ buildInfo: 1 });
        isFerret = info['ferretdbVersion'] !== undefined;
      } finally {
        await client.close();
      }
      return undefined;
    } catch (err) {
      return `cannot reach MongoDB: ${(err as Error).message}`;
    }
  },

  async connectionConfig() {
    const parsed = new URL(url());
    const username = decodeURIComponent(parsed.username);
    const password = decodeURIComponent(parsed.password);
    parsed.username = '';
    parsed.password = '';
    return {
      plugin_name: 'mongodb-database-plugin',
      connection_url: parsed.toString().replace(/^mongodb:\/\//, 'mongodb://{{username}}:{{password}}@'),
      username,
      password,
      allowed_roles: ['*'],
      max_open_connections: 8,
      ...(isFerret ? { skip_unsupported_roles: true } : {}),
    };
  },

  // FerretDB has no roles: nothing to prepare, and no group-role run.
  async prepare() {
    return { creationStatements: CREATION, groupStatements: undefined, describe: `createUser with roles [read on dbroker_bench]${isFerret ? ' (FerretDB: retried without roles)' : ''}` };
  },

  async teardown() {},

  async openDirect(): Promise<DirectSession> {
    const client = await connect();
    return {
      async createUser(name, password, statements) {
        for (const t of statements) {
          const statement = JSON.parse(renderStatement(t, { name, password, expiration: new Date() })) as { db?: string; roles: unknown[] };
          const db = client.db(statement.db ?? 'admin');
          try {
            await db.command({ createUser: name, pwd: password, roles: statement.roles });
          } catch (err) {
            if (!isFerret || (err as { code?: number }).code !== NOT_IMPLEMENTED) throw err;
            await db.command({ createUser: name, pwd: password, roles: [] });
          }
        }
      },
      dropUser: (name) => dropUser(client, name),
      close: () => client.close(),
    };
  },

  async countUsers(prefix) {
    const client = await connect();
    try {
      return (await usersWithPrefix(client, prefix)).length;
    } finally {
      await client.close();
    }
  },

  async dropUsers(prefix) {
    const client = await connect();
    try {
      const users = await usersWithPrefix(client, prefix);
      for (const u of users) await dropUser(client, u);
      return users.length;
    } finally {
      await client.close();
    }
  },
};
