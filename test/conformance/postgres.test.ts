// Conformance of postgresql-database-plugin against a private embedded
// PostgreSQL with scram-sha-256 auth, so passwords, VALID UNTIL and NOLOGIN
// are really enforced.

import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../support/scram-postgres.ts';
import { runConformance, ServerUnreachable, type Access, type ConformanceServer, type Credentials } from './suite.ts';

const AUTH_FAILED = new Set(['28P01', '28000']);
const INSUFFICIENT_PRIVILEGE = '42501';

const sqlState = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;

async function asUser<T>(server: TestPostgres, creds: Credentials, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await loginAs(server, creds.username, creds.password);
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function attempt(server: TestPostgres, creds: Credentials, sql: string): Promise<Access> {
  return asUser(server, creds, async (client) => {
    try {
      await client.query(sql);
      return 'ok';
    } catch (err) {
      if (sqlState(err) === INSUFFICIENT_PRIVILEGE) return 'denied';
      throw err;
    }
  });
}

async function start(prefix: string): Promise<ConformanceServer> {
  let server: TestPostgres;
  try {
    server = await startScramPostgres();
  } catch (err) {
    throw new ServerUnreachable(`embedded PostgreSQL did not start: ${(err as Error).message}`);
  }
  const granted = `${prefix}granted`;
  const other = `${prefix}other`;
  await adminQuery(server, `CREATE TABLE ${granted} (v int); INSERT INTO ${granted} VALUES (42); CREATE TABLE ${other} (v int)`);
  const connectionConfig = (admin: Credentials): Record<string, unknown> => ({
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: admin.username,
    password: admin.password,
    max_open_connections: 2,
  });
  return {
    admin: { username: server.adminUser, password: server.adminPassword },
    connectionConfig,
    creationStatements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
      `GRANT SELECT ON ${granted} TO "{{name}}"`,
    ],
    async canLogin(creds) {
      try {
        await asUser(server, creds, (c) => c.query('SELECT 1'));
        return true;
      } catch (err) {
        if (AUTH_FAILED.has(sqlState(err) ?? '')) return false;
        throw err;
      }
    },
    readGranted: (creds) => attempt(server, creds, `SELECT v FROM ${granted}`),
    readOther: (creds) => attempt(server, creds, `SELECT v FROM ${other}`),
    writeGranted: (creds) => attempt(server, creds, `INSERT INTO ${granted} VALUES (1)`),
    async listUsers() {
      return (await adminQuery<{ rolname: string }>(server, 'SELECT rolname FROM pg_roles')).map((r) => r.rolname);
    },
    async openSession(creds) {
      const client = await loginAs(server, creds.username, creds.password);
      return {
        alive: () => client.query('SELECT 1').then(() => true, () => false),
        close: () => client.end().catch(() => undefined),
      };
    },
    async expiryOf(username) {
      const [row] = await adminQuery<{ until: Date | null }>(server, 'SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [username]);
      return row?.until ?? null;
    },
    spacedQueryParam: 'application_name=my app',
    async createAdmin(username, password = `A-${randomBytes(16).toString('hex')}`) {
      // Not a superuser: what the engine needs (create roles, grant the table, end sessions).
      await adminQuery(server, `CREATE ROLE "${username}" LOGIN CREATEROLE PASSWORD '${password}'`);
      await adminQuery(server, `GRANT SELECT ON ${granted} TO "${username}" WITH GRANT OPTION; GRANT pg_signal_backend TO "${username}"`);
      return { username, password };
    },
    async dropUser(username) {
      await adminQuery(server, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [username]);
      await adminQuery(server, `DROP OWNED BY "${username}"; DROP ROLE IF EXISTS "${username}"`);
    },
    // A private server in a temp dir: stopping it removes everything.
    stop: () => server.stop(),
  };
}

runConformance({
  name: 'postgresql-database-plugin (embedded PostgreSQL, scram-sha-256)',
  pluginName: 'postgresql-database-plugin',
  maxUsernameLength: 63,
  start,
});
