// MySQL/MariaDB: the server at DBROKER_TEST_MYSQL_URL (default
// mysql://root@127.0.0.1:3306/test), as the tests use it.

import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { target } from '../../test/support/mariadb.ts';
import { checkPrefix, type BenchTarget, type DirectSession } from './target.ts';
import { renderStatement } from './render.ts';

const CREATION = [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`, `GRANT SELECT ON \`${target.database}\`.* TO '{{name}}'@'%'`];

async function connect(): Promise<Connection> {
  const conn = await createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, connectTimeout: 5000 });
  conn.on('error', () => undefined);
  return conn;
}

async function usersLike(conn: Connection, prefix: string): Promise<Array<{ user: string; host: string }>> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT User AS user, Host AS host FROM mysql.user WHERE User LIKE ?', [`${checkPrefix(prefix)}%`]);
  return rows.map((r) => ({ user: String(r['user']), host: String(r['host']) }));
}

export const mysqlTarget: BenchTarget = {
  engine: 'mysql',
  label: 'MySQL/MariaDB',
  creationStatements: CREATION,

  async unavailable() {
    try {
      const conn = await connect();
      await conn.end();
      return undefined;
    } catch (err) {
      return `cannot reach ${target.host}:${target.port}: ${(err as Error).message}`;
    }
  },

  async connectionConfig() {
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    return {
      plugin_name: 'mysql-database-plugin',
      connection_url: `{{username}}:{{password}}@tcp(${host}:${target.port})/`,
      username: target.user,
      password: target.password,
      allowed_roles: ['*'],
      max_open_connections: 8,
    };
  },

  async openDirect(): Promise<DirectSession> {
    const conn = await connect();
    return {
      // DDL commits on its own in MySQL: the statements run one by one, as the engine runs them.
      async createUser(name, password) {
        for (const t of CREATION) await conn.query(renderStatement(t, { name, password, expiration: new Date(Date.now() + 3600_000) }));
      },
      async dropUser(name) {
        await conn.query('DROP USER IF EXISTS ?@?', [name, '%']);
      },
      close: () => conn.end(),
    };
  },

  async countUsers(prefix) {
    const conn = await connect();
    try {
      return (await usersLike(conn, prefix)).length;
    } finally {
      await conn.end();
    }
  },

  async dropUsers(prefix) {
    const conn = await connect();
    try {
      const users = await usersLike(conn, prefix);
      for (const u of users) await conn.query('DROP USER IF EXISTS ?@?', [u.user, u.host]);
      return users.length;
    } finally {
      await conn.end();
    }
  },
};
