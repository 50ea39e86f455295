// Helpers for tests against the real MariaDB/MySQL test server.
//
// DBROKER_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test) names an
// admin login. Each test file picks its own name prefix (files run in
// parallel) and calls dropLeftovers(prefix) at start and end.

import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import type { ConnectionConfig } from '../../src/engine/engine.ts';

export const MYSQL_URL = process.env['DBROKER_TEST_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/test';

export interface MysqlTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export const target: MysqlTarget = (() => {
  const url = new URL(MYSQL_URL);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: url.port ? Number(url.port) : 3306,
    user: decodeURIComponent(url.username) || 'root',
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.replace(/^\//, '')) || 'test',
  };
})();

/** An engine ConnectionConfig for `user` (default: the test admin), URL style. */
export function mysqlConfig(overrides: Partial<ConnectionConfig> = {}): ConnectionConfig {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return {
    connectionUrl: `mysql://{{username}}:{{password}}@${host}:${target.port}/${encodeURIComponent(target.database)}`,
    username: target.user,
    password: target.password,
    maxOpenConnections: 4,
    options: {},
    ...overrides,
  };
}

/** The body of a `database/config/<name>` write for this server as the test admin (add allowed_roles and the rest). */
export function mysqlConnectionFields(): Record<string, string> {
  const c = mysqlConfig();
  return { plugin_name: 'mysql-database-plugin', connection_url: c.connectionUrl, username: c.username ?? '', password: c.password ?? '' };
}

/** The same server as a Go-style DSN template (Vault's format). */
export function goDsn(): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `{{username}}:{{password}}@tcp(${host}:${target.port})/${target.database}`;
}

/** A direct connection; 'error' is absorbed so a killed session can't crash the test process. */
export async function connectAs(user: string, password: string, database: string | null = target.database): Promise<Connection> {
  const conn = await createConnection({ host: target.host, port: target.port, user, password, ...(database ? { database } : {}) });
  conn.on('error', () => undefined);
  return conn;
}

export function adminConnection(): Promise<Connection> {
  return connectAs(target.user, target.password);
}

/** Whether `user` can log in with `password` (no default database, so no grant is needed). */
export async function canLogin(user: string, password: string): Promise<boolean> {
  try {
    const conn = await connectAs(user, password, null);
    await conn.query('SELECT 1');
    await conn.end();
    return true;
  } catch {
    return false;
  }
}

export async function userHosts(admin: Connection, user: string): Promise<string[]> {
  // mysql.user is utf8mb3: a name with a 4-byte character cannot be there (nor be compared).
  if (/[\u{10000}-\u{10FFFF}]/u.test(user)) return [];
  const [rows] = await admin.query<RowDataPacket[]>('SELECT Host AS host FROM mysql.user WHERE User = ? ORDER BY Host', [user]);
  return rows.map((r) => String(r['host']));
}

function likePrefix(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (c) => '\\' + c) + '%';
}

/** Drop every user and table (in the test database) whose name starts with `prefix`. */
export async function dropLeftovers(admin: Connection, prefix: string): Promise<void> {
  const [users] = await admin.query<RowDataPacket[]>(
    'SELECT User AS user, Host AS host FROM mysql.user WHERE User LIKE ?',
    [likePrefix(prefix)],
  );
  for (const u of users) {
    await admin.query('DROP USER IF EXISTS ?@?', [String(u['user']), String(u['host'])]);
  }
  const [tables] = await admin.query<RowDataPacket[]>(
    'SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ?',
    [target.database, likePrefix(prefix)],
  );
  for (const t of tables) {
    await admin.query(`DROP TABLE IF EXISTS ${admin.escapeId(target.database)}.${admin.escapeId(String(t['name']))}`);
  }
}

/** A dedicated admin account (never the real root) with what the engine needs, incl. killing sessions. */
export async function createAdminUser(admin: Connection, user: string, password: string, hosts = ['%']): Promise<void> {
  for (const host of hosts) {
    await admin.query('CREATE USER ?@? IDENTIFIED BY ?', [user, host, password]);
    await admin.query('GRANT ALL PRIVILEGES ON *.* TO ?@? WITH GRANT OPTION', [user, host]);
  }
}

/**
 * A least-privilege admin at host '%': `CREATE USER` plus the global
 * privileges in `extra` (e.g. PROCESS, CONNECTION ADMIN), `SELECT` on
 * mysql.user (existence checks), and `SELECT` on `grantable` (a
 * `db`.`table` name, already quoted) WITH GRANT OPTION, so the roles it
 * serves may grant that and nothing else.
 */
export async function createLimitedAdmin(admin: Connection, user: string, password: string, grantable: string, extra: string[] = []): Promise<void> {
  await admin.query('CREATE USER ?@? IDENTIFIED BY ?', [user, '%', password]);
  await admin.query(`GRANT ${['CREATE USER', ...extra].join(', ')} ON *.* TO ?@?`, [user, '%']);
  await admin.query('GRANT SELECT ON mysql.user TO ?@?', [user, '%']);
  await admin.query(`GRANT SELECT ON ${grantable} TO ?@? WITH GRANT OPTION`, [user, '%']);
}

/** Ids of the sessions `user` has open. */
export async function sessionsOf(admin: Connection, user: string): Promise<number[]> {
  const [rows] = await admin.query<RowDataPacket[]>('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ?', [user]);
  return rows.map((r) => Number(r['id']));
}
