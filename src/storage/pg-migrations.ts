// Versioned schema migrations of the PostgreSQL store. Append only: never edit
// a migration that has shipped. `{p}` is replaced by the table prefix.
//
// Text keys use COLLATE "C" so that range scans by prefix (`path >= p AND
// path < p || U+FFFF`) follow byte order, as in SQLite, whatever the
// database's default collation. Times are epoch milliseconds (bigint), the
// same units the Storage interface uses.

import type { PoolClient } from 'pg';

export const pgMigrations: string[] = [
  `
  CREATE TABLE {p}meta (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
  CREATE TABLE {p}entries (path text COLLATE "C" PRIMARY KEY, sealed bytea NOT NULL);
  CREATE TABLE {p}tokens (
    id_hash text COLLATE "C" PRIMARY KEY,
    accessor_hash text COLLATE "C" NOT NULL UNIQUE,
    parent_hash text COLLATE "C",
    expires_at bigint,
    uses_left bigint,
    sealed bytea NOT NULL
  );
  CREATE INDEX {p}tokens_parent ON {p}tokens (parent_hash);
  CREATE INDEX {p}tokens_expiry ON {p}tokens (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE {p}leases (
    id text COLLATE "C" PRIMARY KEY,
    mount text COLLATE "C" NOT NULL,
    role text COLLATE "C" NOT NULL,
    connection text COLLATE "C" NOT NULL,
    state text NOT NULL,
    issue_time bigint NOT NULL,
    expire_time bigint NOT NULL,
    max_expire_time bigint NOT NULL,
    last_renewal bigint,
    due_at bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    token_hash text COLLATE "C",
    sealed bytea NOT NULL
  );
  CREATE INDEX {p}leases_due ON {p}leases (due_at);
  CREATE INDEX {p}leases_connection ON {p}leases (mount, connection);
  CREATE INDEX {p}leases_role ON {p}leases (mount, role);
  CREATE INDEX {p}leases_token ON {p}leases (token_hash) WHERE token_hash IS NOT NULL;
  CREATE INDEX {p}leases_failing ON {p}leases (attempts) WHERE attempts > 0;
  -- HA: one row, the leadership lease and the fencing number (see src/ha/election.ts).
  CREATE TABLE {p}ha_leader (
    id integer PRIMARY KEY CHECK (id = 1),
    holder text,
    api_addr text,
    cluster_addr text,
    fence bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    acquired_at timestamptz
  );
  INSERT INTO {p}ha_leader (id) VALUES (1);
  `,
  // Auth methods (as SQLite migration 2): the auth mount a token came from,
  // and AppRole secret IDs with use counts and expiry in plain columns.
  `
  ALTER TABLE {p}tokens ADD COLUMN auth_mount text COLLATE "C";
  CREATE INDEX {p}tokens_auth_mount ON {p}tokens (auth_mount) WHERE auth_mount IS NOT NULL;
  CREATE TABLE {p}secret_ids (
    id_hash text COLLATE "C" PRIMARY KEY,
    accessor_hash text COLLATE "C" NOT NULL UNIQUE,
    mount text COLLATE "C" NOT NULL,
    role text COLLATE "C" NOT NULL,
    expires_at bigint,
    uses_left bigint,
    sealed bytea NOT NULL
  );
  CREATE INDEX {p}secret_ids_role ON {p}secret_ids (mount, role);
  CREATE INDEX {p}secret_ids_expiry ON {p}secret_ids (expires_at) WHERE expires_at IS NOT NULL;
  `,
  // As SQLite migration 3: interrupted work found at unseal by a partial index of unsettled leases only.
  `
  CREATE INDEX {p}leases_unsettled ON {p}leases (due_at) WHERE state IN ('pending', 'revoking');
  `,
];

/**
 * Run the migrations not yet applied, all in one transaction under a
 * transaction-scoped advisory lock (PG manual §9.27.10, "Advisory Lock
 * Functions"): replicas starting at once queue on the lock, and each finds
 * the versions the first one applied. The lock key is derived from the
 * prefix, so stores with different prefixes in one database do not wait on
 * each other.
 */
export async function migratePg(client: PoolClient, prefix: string): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('dbroker-migrate:' || $1))", [prefix]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${prefix}schema_version (version integer NOT NULL)`);
    const rows = (await client.query<{ version: number }>(`SELECT version FROM ${prefix}schema_version`)).rows;
    let current = rows[0]?.version ?? 0;
    if (rows.length === 0) await client.query(`INSERT INTO ${prefix}schema_version (version) VALUES (0)`);
    if (current > pgMigrations.length) throw new Error(`the store's schema (version ${current}) is newer than this dbroker knows (${pgMigrations.length}); upgrade dbroker`);
    for (; current < pgMigrations.length; current++) {
      await client.query(pgMigrations[current]!.replaceAll('{p}', prefix));
      await client.query(`UPDATE ${prefix}schema_version SET version = $1`, [current + 1]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
