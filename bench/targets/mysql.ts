// MySQL/MariaDB: the server at DBROKER_TEST_MYSQL_URL (default
// mysql://root@127.0.0.1:3306/test), as the tests use it. The issuance and
// drain roles grant SELECT on the test database; the vault-benchmark-style
// role grants a role (MariaDB 10.0.5+, MySQL 8: CREATE ROLE, GRANT role TO
// user, SET DEFAULT ROLE … FOR user).

import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { target } from '../../test/support/mariadb.ts';
import { checkPrefix, chunks, type BenchTarget, type DirectSession } from './target.ts';
import { renderStatement } from './render.ts';

const CREATE_USER = `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`;

async function connect(): Promise<Connection> {
  const conn = await createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, connectTimeout: 5000 });
  conn.on('error', () => undefined);
  return conn;
}

async function withConnection<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
  const conn = await connect();
  try {
    return await fn(conn);
  } finally {
    await conn.end();
  }
}

async function usersLike(conn: Connection, prefix: string): Promise<Array<{ user: string; host: string }>> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT User AS user, Host AS host FROM mysql.user WHERE User LIKE ?', [`${checkPrefix(prefix)}%`]);
  return rows.map((r) => ({ user: String(r['user']), host: String(r['host']) }));
}

let isMariaDb = false;

export const mysqlTarget: BenchTarget = {
  engine: 'mysql',
  get label() {
    return isMariaDb ? 'MariaDB' : 'MySQL';
  },

  async unavailable() {
    try {
      await withConnection(async (conn) => {
        const [rows] = await conn.query<RowDataPacket[]>('SELECT VERSION() AS v');
        isMariaDb = /mariadb/i.test(String(rows[0]?.['v'] ?? ''));
      });
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

  async prepare(group) {
    const g = `\`${checkPrefix(group)}\``;
    await withConnection(async (conn) => {
      await conn.query(`CREATE ROLE ${g}`);
      await conn.query(`GRANT SELECT ON \`${target.database}\`.* TO ${g}`);
    });
    return {
      creationStatements: [CREATE_USER, `GRANT SELECT ON \`${target.database}\`.* TO '{{name}}'@'%'`],
      groupStatements: [CREATE_USER, `GRANT ${g} TO '{{name}}'@'%'`, `SET DEFAULT ROLE ${g} FOR '{{name}}'@'%'`],
      describe: `CREATE USER …; GRANT SELECT ON \`${target.database}\`.* (the 10,000-user run: GRANT ${group} + SET DEFAULT ROLE, a role with that grant)`,
    };
  },

  async teardown(group) {
    await withConnection((conn) => conn.query(`DROP ROLE IF EXISTS \`${checkPrefix(group)}\``));
  },

  async openDirect(): Promise<DirectSession> {
    const conn = await connect();
    return {
      // DDL commits on its own in MySQL: the statements run one by one, as the engine runs them.
      async createUser(name, password, statements) {
        for (const t of statements) await conn.query(renderStatement(t, { name, password, expiration: new Date(Date.now() + 3600_000) }));
      },
      async dropUser(name) {
        await conn.query('DROP USER IF EXISTS ?@?', [name, '%']);
      },
      close: () => conn.end(),
    };
  },

  async countUsers(prefix) {
    return withConnection(async (conn) => (await usersLike(conn, prefix)).length);
  },

  async dropUsers(prefix) {
    return withConnection(async (conn) => {
      const users = await usersLike(conn, prefix);
      for (const batch of chunks(users, 200)) {
        await conn.query(`DROP USER IF EXISTS ${batch.map(() => '?@?').join(', ')}`, batch.flatMap((u) => [u.user, u.host]));
      }
      return users.length;
    });
  },
};
