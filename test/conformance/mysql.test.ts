// Conformance of mysql-database-plugin (32-character usernames) and
// mysql-legacy-database-plugin (16) against the real MariaDB/MySQL test
// server (DBROKER_TEST_MYSQL_URL, default 127.0.0.1:3306, database test).

import { randomBytes } from 'node:crypto';
import type { Connection } from 'mysql2/promise';
import { adminConnection, connectAs, createAdminUser, dropLeftovers, mysqlConfig, target } from '../support/mariadb.ts';
import { runConformance, ServerUnreachable, type Access, type ConformanceServer, type Credentials } from './suite.ts';

// Login refused: 1045, or 1698 which MariaDB sometimes answers for an account that no longer exists.
const LOGIN_REFUSED = new Set([1045, 1698]);
const ER_TABLEACCESS_DENIED = 1142;

const errno = (err: unknown): number | undefined =>
  typeof err === 'object' && err !== null && 'errno' in err ? Number((err as { errno: unknown }).errno) : undefined;

async function asUser<T>(creds: Credentials, work: (conn: Connection) => Promise<T>): Promise<T> {
  const conn = await connectAs(creds.username, creds.password, null);
  try {
    return await work(conn);
  } finally {
    await conn.end().catch(() => undefined);
  }
}

async function attempt(creds: Credentials, sql: string): Promise<Access> {
  return asUser(creds, async (conn) => {
    try {
      await conn.query(sql);
      return 'ok';
    } catch (err) {
      if (errno(err) === ER_TABLEACCESS_DENIED) return 'denied';
      throw err;
    }
  });
}

async function start(prefix: string): Promise<ConformanceServer> {
  let root: Connection;
  try {
    root = await adminConnection();
  } catch (err) {
    throw new ServerUnreachable(`MariaDB/MySQL at ${target.host}:${target.port}: ${(err as Error).message}`);
  }
  await dropLeftovers(root, prefix);
  const db = root.escapeId(target.database);
  const granted = `${db}.${root.escapeId(`${prefix}granted`)}`;
  const other = `${db}.${root.escapeId(`${prefix}other`)}`;
  await root.query(`CREATE TABLE ${granted} (v INT)`);
  await root.query(`INSERT INTO ${granted} VALUES (42)`);
  await root.query(`CREATE TABLE ${other} (v INT)`);
  const connectionConfig = (admin: Credentials): Record<string, unknown> => ({
    connection_url: mysqlConfig().connectionUrl,
    username: admin.username,
    password: admin.password,
    max_open_connections: 2,
  });
  return {
    admin: { username: target.user, password: target.password },
    connectionConfig,
    creationStatements: [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`, `GRANT SELECT ON ${granted} TO '{{name}}'@'%'`],
    async canLogin(creds) {
      try {
        await asUser(creds, (conn) => conn.query('SELECT 1'));
        return true;
      } catch (err) {
        if (LOGIN_REFUSED.has(errno(err) ?? 0)) return false;
        throw err;
      }
    },
    readGranted: (creds) => attempt(creds, `SELECT v FROM ${granted}`),
    readOther: (creds) => attempt(creds, `SELECT v FROM ${other}`),
    writeGranted: (creds) => attempt(creds, `INSERT INTO ${granted} VALUES (1)`),
    async listUsers() {
      const [rows] = await root.query('SELECT DISTINCT User AS user FROM mysql.user');
      return (rows as Array<{ user: string }>).map((r) => String(r.user));
    },
    async openSession(creds) {
      const conn = await connectAs(creds.username, creds.password, null);
      return {
        alive: () => conn.query('SELECT 1').then(() => true, () => false),
        close: async () => conn.destroy(),
      };
    },
    // An attribute the engine accepts and ignores (Go driver parameter).
    spacedQueryParam: 'connectionAttributes=program_name:my app',
    async createAdmin(username, password = `Aa1-${randomBytes(12).toString('hex')}`) {
      await createAdminUser(root, username, password, ['%']);
      return { username, password };
    },
    async dropUser(username) {
      await root.query('DROP USER IF EXISTS ?@?', [username, '%']);
    },
    async stop() {
      try {
        await dropLeftovers(root, prefix);
      } finally {
        await root.end().catch(() => undefined);
      }
    },
  };
}

runConformance({ name: 'mysql-database-plugin (MariaDB)', pluginName: 'mysql-database-plugin', maxUsernameLength: 32, start });
runConformance({ name: 'mysql-legacy-database-plugin (MariaDB)', pluginName: 'mysql-legacy-database-plugin', maxUsernameLength: 16, start });
