// Revocation, the part Vault's plugin gets wrong: a user that owns objects or
// has open sessions can't simply be dropped. Here, deleting a user:
//   1. succeeds at once if the role does not exist (idempotent);
//   2. sets NOLOGIN, so no new session can start;
//   3. terminates the role's sessions;
//   4. runs the revocation statements in one transaction (holding the
//      user-change lock, see sql.ts; retried if it fails transiently), by default
//      REASSIGN OWNED BY <role> TO <owner>; DROP OWNED BY <role>; DROP ROLE
//      (first making the admin a member of the role if it has no privileges
//      of it: a CREATEROLE admin that is not superuser needs that for
//      REASSIGN/DROP OWNED; the membership goes with the dropped role);
//   5. terminates any session that slipped in before NOLOGIN took effect.
// A failure after which the role turns out to be gone (a concurrent delete)
// still counts as success. REASSIGN/DROP OWNED act on the database of the
// admin connection (and shared objects); see README.md.

import type { PoolClient } from 'pg';
import { beginUserChange, exec, retryTransient, roleOid } from './sql.ts';
import { postgresDialect } from './dialect.ts';

export function defaultRevocation(username: string, owner: string | null): string[] {
  const role = postgresDialect.quoteIdentifier(username);
  const to = owner === null ? 'CURRENT_USER' : postgresDialect.quoteIdentifier(owner);
  return [`REASSIGN OWNED BY ${role} TO ${to}`, `DROP OWNED BY ${role}`, `DROP ROLE IF EXISTS ${role}`];
}

/**
 * End the role's sessions. Best effort per session: terminating needs
 * superuser or pg_signal_backend, and without it the role is still NOLOGIN
 * and dropped, its open sessions just run until they disconnect.
 */
async function terminateSessions(client: PoolClient, oid: number): Promise<void> {
  const sessions = await exec<{ pid: number }>(
    client,
    'SELECT pid FROM pg_catalog.pg_stat_activity WHERE usesysid = $1 AND pid <> pg_catalog.pg_backend_pid()',
    [oid],
  );
  for (const { pid } of sessions.rows) {
    await exec(client, 'SELECT pg_catalog.pg_terminate_backend($1)', [pid]).catch(() => undefined);
  }
}

async function runRevocation(client: PoolClient, username: string, oid: number, statements: string[], isDefault: boolean): Promise<void> {
  await beginUserChange(client);
  try {
    if (isDefault) {
      const { rows } = await exec<{ has: boolean }>(client, "SELECT pg_catalog.pg_has_role(CURRENT_USER, $1::oid, 'USAGE') AS has", [oid]);
      if (!rows[0]?.has) await exec(client, `GRANT ${postgresDialect.quoteIdentifier(username)} TO CURRENT_USER`);
    }
    for (const statement of statements) await exec(client, statement);
    await exec(client, 'COMMIT');
  } catch (err) {
    await exec(client, 'ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Revoke `username` with already rendered statements (`isDefault`: they are
 * defaultRevocation's). Throws the raw pg error.
 */
export async function revokeRole(client: PoolClient, username: string, statements: string[], isDefault: boolean): Promise<void> {
  const oid = await roleOid(client, username);
  if (oid === null) return;
  try {
    await exec(client, `ALTER ROLE ${postgresDialect.quoteIdentifier(username)} NOLOGIN`);
    await terminateSessions(client, oid);
    await retryTransient(() => runRevocation(client, username, oid, statements, isDefault));
    await terminateSessions(client, oid);
  } catch (err) {
    if ((await roleOid(client, username).catch(() => oid)) === null) return;
    throw err;
  }
}
