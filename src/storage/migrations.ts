// Versioned schema migrations; PRAGMA user_version records how many have run.
// Append only: never edit a migration that has shipped.

export const migrations: string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
  CREATE TABLE entries (path TEXT PRIMARY KEY, sealed BLOB NOT NULL);
  CREATE TABLE tokens (
    id_hash TEXT PRIMARY KEY,
    accessor_hash TEXT NOT NULL UNIQUE,
    parent_hash TEXT,
    expires_at INTEGER,
    uses_left INTEGER,
    sealed BLOB NOT NULL
  );
  CREATE INDEX tokens_parent ON tokens (parent_hash);
  CREATE INDEX tokens_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    mount TEXT NOT NULL,
    role TEXT NOT NULL,
    connection TEXT NOT NULL,
    state TEXT NOT NULL,
    issue_time INTEGER NOT NULL,
    expire_time INTEGER NOT NULL,
    max_expire_time INTEGER NOT NULL,
    last_renewal INTEGER,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    token_hash TEXT,
    sealed BLOB NOT NULL
  );
  CREATE INDEX leases_due ON leases (due_at);
  CREATE INDEX leases_connection ON leases (mount, connection);
  CREATE INDEX leases_role ON leases (mount, role);
  CREATE INDEX leases_token ON leases (token_hash) WHERE token_hash IS NOT NULL;
  CREATE INDEX leases_failing ON leases (attempts) WHERE attempts > 0;
  `,
  // Auth methods (issue 9): the auth mount a token came from (so disabling the
  // mount finds its tokens by index), and AppRole secret IDs with their use
  // counts in plain columns (atomic conditional decrement) and the rest sealed.
  `
  ALTER TABLE tokens ADD COLUMN auth_mount TEXT;
  CREATE INDEX tokens_auth_mount ON tokens (auth_mount) WHERE auth_mount IS NOT NULL;
  CREATE TABLE secret_ids (
    id_hash TEXT PRIMARY KEY,
    accessor_hash TEXT NOT NULL UNIQUE,
    mount TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at INTEGER,
    uses_left INTEGER,
    sealed BLOB NOT NULL
  );
  CREATE INDEX secret_ids_role ON secret_ids (mount, role);
  CREATE INDEX secret_ids_expiry ON secret_ids (expires_at) WHERE expires_at IS NOT NULL;
  `,
  // Unseal finds interrupted work (pending issuance, revocation under way)
  // through this partial index: it holds only unsettled leases, so the unseal
  // path never reads the active ones, however many there are.
  `
  CREATE INDEX leases_unsettled ON leases (due_at) WHERE state IN ('pending', 'revoking');
  `,
];
