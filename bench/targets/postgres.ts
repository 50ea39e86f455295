// PostgreSQL: the server at DBROKER_TEST_PG_URL (default the local trust
// server, 127.0.0.1:5432 as postgres). The roles grant a group role that
// reads one table in a schema of the run's own: a grant on a table to each
// user would add one entry per live user to the table's ACL, which holds
// ~2,440 at most (one pg_class row, no TOAST), far fewer than the drain and
// the 10,000-user run need.

import pg from 'pg';
import { checkPrefix, chunks, type BenchTarget, type DirectSession } from './target.ts';
import { renderStatement } from './render.ts';

const URL_TEXT = process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const createRole = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`;

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

async function withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** What the direct baseline does to drop one user (its grants go with DROP OWNED). */
const dropStatements = (names: string[]): string[] => [`DROP OWNED BY ${names.map(quoteIdent).join(', ')}`, `DROP ROLE IF EXISTS ${names.map(quoteIdent).join(', ')}`];

async function rolesWithPrefix(client: pg.Client, prefix: string): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname', [checkPrefix(prefix)]);
  return rows.map((r) => r.rolname);
}

export const postgresTarget: BenchTarget = {
  engine: 'postgres',
  label: 'PostgreSQL',

  async unavailable() {
    try {
      await withClient(async () => undefined);
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

  async prepare(group) {
    const g = quoteIdent(checkPrefix(group));
    // Start from vacuumed role catalogs (see dropUsers).
    await withClient((c) => c.query('VACUUM pg_catalog.pg_authid, pg_catalog.pg_auth_members, pg_catalog.pg_shdepend').catch(() => undefined));
    await withClient((c) =>
      inTransaction(c, [
        `CREATE SCHEMA ${g}`,
        `CREATE TABLE ${g}.t (id int PRIMARY KEY, note text)`,
        `CREATE ROLE ${g} NOLOGIN`,
        `GRANT USAGE ON SCHEMA ${g} TO ${g}`,
        `GRANT SELECT ON ${g}.t TO ${g}`,
      ]),
    );
    const statements = [createRole, `GRANT ${g} TO "{{name}}"`];
    return { creationStatements: statements, groupStatements: statements, describe: `CREATE ROLE … LOGIN PASSWORD … VALID UNTIL …; GRANT ${group} TO "{{name}}" (the group reads one table)` };
  },

  async teardown(group) {
    const g = quoteIdent(checkPrefix(group));
    await withClient((c) => inTransaction(c, [`DROP SCHEMA IF EXISTS ${g} CASCADE`, `DROP ROLE IF EXISTS ${g}`]));
  },

  async openDirect(): Promise<DirectSession> {
    const client = await connect();
    return {
      createUser: (name, password, statements) =>
        inTransaction(
          client,
          statements.map((t) => renderStatement(t, { name, password, expiration: new Date(Date.now() + 3600_000) })),
        ),
      dropUser: (name) => inTransaction(client, dropStatements([name])),
      close: () => client.end(),
    };
  },

  async countUsers(prefix) {
    return withClient(async (c) => {
      const { rows } = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_roles WHERE starts_with(rolname, $1)', [checkPrefix(prefix)]);
      return Number(rows[0]?.n ?? 0);
    });
  },

  async dropUsers(prefix) {
    return withClient(async (c) => {
      const names = await rolesWithPrefix(c, prefix);
      for (const batch of chunks(names, 200)) await inTransaction(c, dropStatements(batch));
      // Dropped roles leave dead rows in the shared catalogs; where autovacuum is off or behind
      // (it is off on the dev machine: pg_authid had grown to 36 MB for 15 roles), they slow
      // every later CREATE ROLE, raw and broker alike, and most the phases that come last.
      // Vacuumed here, untimed, so each phase starts from the same catalogs (needs superuser).
      if (names.length > 0) await c.query('VACUUM pg_catalog.pg_authid, pg_catalog.pg_auth_members, pg_catalog.pg_shdepend').catch(() => undefined);
      return names.length;
    });
  },
};
