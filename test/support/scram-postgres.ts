// PostgreSQL servers for tests.
//
// - startScramPostgres(): a private embedded server with scram-sha-256 auth,
//   for tests that must prove passwords and VALID UNTIL are enforced.
// - trustPostgres(): the shared server (DBROKER_TEST_PG_URL, default the
//   system one at 127.0.0.1:5432, which trusts every login); if it does not
//   answer, an embedded server instead.
//
// Both return a superuser URL and a stop() to call in `after`.

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/dev/embedded-postgres.ts';

export interface TestPostgres {
  /** Superuser URL (with its password, for the embedded servers). */
  url: string;
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  /** Whether logins are checked (false for the trust server). */
  checksPasswords: boolean;
  /** A URL for another login on the same server and database. */
  urlFor(user: string, password: string): string;
  stop(): Promise<void>;
}

export const DEFAULT_TRUST_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function describe(url: string, checksPasswords: boolean, stop: () => Promise<void>): TestPostgres {
  const parsed = new URL(url);
  const withLogin = (user: string, password: string): string => {
    const u = new URL(url);
    u.username = encodeURIComponent(user);
    u.password = encodeURIComponent(password);
    return u.toString();
  };
  return {
    url,
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    adminUser: decodeURIComponent(parsed.username),
    adminPassword: decodeURIComponent(parsed.password),
    checksPasswords,
    urlFor: withLogin,
    stop,
  };
}

/** Start a private embedded PostgreSQL with scram-sha-256 auth in a temp dir. */
export async function startScramPostgres(): Promise<TestPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'dbroker-pg-'));
  const password = `pw-${randomBytes(12).toString('hex')}`;
  let lastError: unknown;
  // A free port can be taken between the probe and the server's bind: retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const server = await startEmbeddedPostgres({
        dataDir: join(dir, 'data'),
        port: await freePort(),
        password,
        authMethod: 'scram-sha-256',
      });
      return describe(server.url, true, async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      });
    } catch (err) {
      lastError = err;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The shared trust server, or an embedded one if it does not answer. */
export async function trustPostgres(): Promise<TestPostgres> {
  const url = process.env.DBROKER_TEST_PG_URL || DEFAULT_TRUST_URL;
  if (await answers(url)) return describe(url, false, async () => undefined);
  return startScramPostgres();
}

/** Run one query as the server's superuser. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  server: TestPostgres,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: server.url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Open a client as `user`; rejects if the login is refused. */
export async function loginAs(server: TestPostgres, user: string, password: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: server.urlFor(user, password), connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}
