// PostgreSQL: the server at DBROKER_TEST_PG_URL (default the local trust
// server, 127.0.0.1:5432 as postgres).

import pg from 'pg';
import { checkPrefix, type BenchTarget, type DirectSession } from './target.ts';
import { renderStatement } from './render.ts';

const URL_TEXT = process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const CREATION = [
  `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
  `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"`,
];

async function connect(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: URL_TEXT, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function inTransaction(client: pg.Client, statements: string[]): Promise<void> {
  await client.query('BEGIN');
  try {
    for (const sql of statements) await client.query(sql);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** What the direct baseline and the cleanup do to drop a role (its grants go with DROP OWNED). */
const dropStatements = (name: string): string[] => [`DROP OWNED BY ${quoteIdent(name)}`, `DROP ROLE IF EXISTS ${quoteIdent(name)}`];

export const postgresTarget: BenchTarget = {
  engine: 'postgres',
  label: 'PostgreSQL',
  creationStatements: CREATION,

  async unavailable() {
    try {
      const client = await connect();
      await client.end();
      return undefined;
    } catch (err) {
      return `cannot reach ${new URL(URL_TEXT).host}: ${(err as Error).message}`;
    }
  },

  async connectionConfig() {
    const url = new URL(URL_TEXT);
    const user = decodeURIComponent(url.username) || 'postgres';
    const password = decodeURIComponent(url.password);
    url.username = '';
    url.password = '';
    const rest = url.toString().replace(/^postgres(ql)?:\/\//, '');
    return {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgresql://{{username}}:{{password}}@${rest}`,
      username: user,
      password,
      allowed_roles: ['*'],
      max_open_connections: 8,
    };
  },

  async openDirect(): Promise<DirectSession> {
    const client = await connect();
    return {
      createUser: (name, password) =>
        inTransaction(
          client,
          CREATION.map((t) => renderStatement(t, { name, password, expiration: new Date(Date.now() + 3600_000) })),
        ),
      dropUser: (name) => inTransaction(client, dropStatements(name)),
      close: () => client.end(),
    };
  },

  async countUsers(prefix) {
    const client = await connect();
    try {
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE $1', [`${checkPrefix(prefix)}%`]);
      return Number(rows[0]?.n ?? 0);
    } finally {
      await client.end();
    }
  },

  async dropUsers(prefix) {
    const client = await connect();
    try {
      const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [`${checkPrefix(prefix)}%`]);
      for (const { rolname } of rows) await inTransaction(client, dropStatements(rolname));
      return rows.length;
    } finally {
      await client.end();
    }
  },
};
