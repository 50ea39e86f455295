// Revocation, the part Vault's plugin gets wrong: a user that owns objects or
// has open sessions can't simply be dropped. Here, deleting a user:
//   1. succeeds at once if the role does not exist (idempotent);
//   2. sets NOLOGIN, so no new session can start;
//   3. terminates the role's sessions (taking membership of the role first
//      when the admin has no other right to) and checks that none is left:
//      if one is, it stops here with an error, the role kept NOLOGIN, so the
//      lease is retried rather than reported revoked while a session lives;
//   4. runs the revocation statements in one transaction (holding the
//      user-change lock when one of them needs it, see lock-scope.ts; retried
//      if it fails transiently), by default
//      REASSIGN OWNED BY <role> TO <owner>; DROP OWNED BY <role>; DROP ROLE
//      (first making the admin a member of the role if it has no privileges
//      of it: a CREATEROLE admin that is not superuser needs that for
//      REASSIGN/DROP OWNED; the membership goes with the dropped role);
//   5. terminates any session that slipped in before NOLOGIN took effect
//      (and fails the same way if one cannot be ended).
// A failure after which the role turns out to be gone (a concurrent delete)
// still counts as success. REASSIGN/DROP OWNED act on the database of the
// admin connection (and shared objects); see README.md.

import type { PoolClient } from 'pg';
import { needsUserChangeLock } from './lock-scope.ts';
import { exec, retryTransient, roleOid, takeUserChangeLock } from './sql.ts';
import { postgresDialect } from './dialect.ts';

export function defaultRevocation(username: string, owner: string | null): string[] {
  const role = postgresDialect.quoteIdentifier(username);
  const to = owner === null ? 'CURRENT_USER' : postgresDialect.quoteIdentifier(owner);
  return [`REASSIGN OWNED BY ${role} TO ${to}`, `DROP OWNED BY ${role}`, `DROP ROLE IF EXISTS ${role}`];
}

/** What the admin may do about other roles' sessions (PG manual, "Server Signaling Functions"). */
export interface SignalRights {
  admin: string;
  superuser: boolean;
  /** Has the privileges of pg_signal_backend (may signal any non-superuser backend). */
  signalBackend: boolean;
  createrole: boolean;
  inherit: boolean;
}

/** The admin's (CURRENT_USER's) attributes that decide whether it may end other roles' sessions. */
export async function signalRights(client: PoolClient): Promise<SignalRights> {
  const { rows } = await exec<{ admin: string; superuser: boolean; signal: boolean; createrole: boolean; inherit: boolean }>(
    client,
    `SELECT r.rolname AS admin, r.rolsuper AS superuser, r.rolcreaterole AS createrole, r.rolinherit AS inherit,
            pg_catalog.pg_has_role(CURRENT_USER, 'pg_signal_backend', 'USAGE') AS signal
       FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER`,
  );
  const r = rows[0];
  if (!r) return { admin: '', superuser: false, signalBackend: false, createrole: false, inherit: false };
  return { admin: r.admin, superuser: r.superuser, signalBackend: r.signal, createrole: r.createrole, inherit: r.inherit };
}

/**
 * The grants that let `rights.admin` end other roles' sessions, or null when
 * it can already: superuser, pg_signal_backend, or CREATEROLE with INHERIT
 * (it then takes membership of the role to end, which pg_terminate_backend
 * accepts).
 */
export function missingSignalGrant(rights: SignalRights): string | null {
  if (rights.superuser || rights.signalBackend || (rights.createrole && rights.inherit)) return null;
  const admin = postgresDialect.quoteIdentifier(rights.admin);
  return rights.inherit ? `GRANT pg_signal_backend TO ${admin}` : `ALTER ROLE ${admin} INHERIT; GRANT pg_signal_backend TO ${admin}`;
}

/** A session of the role stays open: the revocation must not be reported done. */
export class SessionsOpenError extends Error {
  override name = 'SessionsOpenError';
}

async function openSessions(client: PoolClient, oid: number): Promise<number[]> {
  const { rows } = await exec<{ pid: number }>(
    client,
    'SELECT pid FROM pg_catalog.pg_stat_get_activity(NULL) WHERE usesysid = $1 AND pid <> pg_catalog.pg_backend_pid()',
    [oid],
  );
  return rows.map((r) => r.pid);
}

/**
 * End the role's sessions and check that none is left; throws
 * SessionsOpenError naming the grant that would have allowed it otherwise.
 * pg_terminate_backend needs superuser, the privileges of pg_signal_backend,
 * or the privileges of the role itself: an admin with none of them takes
 * membership of the role first (`mayJoin`, the role still exists; CREATEROLE
 * allows it; the membership goes with the dropped role). Returns whether it
 * took that membership.
 */
export async function endSessions(client: PoolClient, username: string, oid: number, mayJoin: boolean): Promise<boolean> {
  const pids = await openSessions(client, oid);
  if (pids.length === 0) return false;
  let joined = false;
  if (mayJoin) {
    const { rows } = await exec<{ may: boolean }>(
      client,
      `SELECT pg_catalog.pg_has_role(CURRENT_USER, $1::oid, 'USAGE') OR pg_catalog.pg_has_role(CURRENT_USER, 'pg_signal_backend', 'USAGE')
              OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER) AS may`,
      [oid],
    );
    if (!rows[0]?.may) {
      joined = await exec(client, `GRANT ${postgresDialect.quoteIdentifier(username)} TO CURRENT_USER`).then(() => true, () => false);
    }
  }
  let refusal = '';
  for (const pid of pids) {
    // With a timeout, pg_terminate_backend waits (up to 5 s) for the backend to exit.
    await exec(client, 'SELECT pg_catalog.pg_terminate_backend($1, 5000)', [pid]).catch((err: unknown) => {
      refusal ||= err instanceof Error ? err.message : String(err);
    });
  }
  const left = await openSessions(client, oid);
  if (left.length > 0) {
    const rights = await signalRights(client);
    // Membership may have been out of reach (PG 16+: a role created by another admin), so name the grant anyway.
    const grant = rights.superuser || rights.signalBackend ? null : (missingSignalGrant(rights) ?? `GRANT pg_signal_backend TO ${postgresDialect.quoteIdentifier(rights.admin)}`);
    throw new SessionsOpenError(
      `${left.length} open session(s) of role "${username}" could not be ended${refusal ? ` (${refusal})` : ''}; ` +
        `the role is NOLOGIN and is dropped once they end (the revocation is retried)` +
        (grant ? `; to end sessions the admin needs: ${grant}` : ''),
    );
  }
  return joined;
}

async function runRevocation(client: PoolClient, username: string, oid: number, statements: string[], isDefault: boolean): Promise<void> {
  await exec(client, 'BEGIN');
  try {
    if (isDefault || statements.some(needsUserChangeLock)) await takeUserChangeLock(client);
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
 * defaultRevocation's). Throws the raw pg error, or SessionsOpenError when a
 * session of the role outlives the attempt to end it: then, if that was
 * found before the statements ran, the role is kept (NOLOGIN) so a retry
 * finds it and its sessions again.
 */
export async function revokeRole(client: PoolClient, username: string, statements: string[], isDefault: boolean): Promise<void> {
  const oid = await roleOid(client, username);
  if (oid === null) return;
  try {
    await exec(client, `ALTER ROLE ${postgresDialect.quoteIdentifier(username)} NOLOGIN`);
    const joined = await endSessions(client, username, oid, true);
    await retryTransient(() => runRevocation(client, username, oid, statements, isDefault));
    // A session that slipped in before NOLOGIN took effect.
    const stillThere = (await roleOid(client, username)) !== null;
    await endSessions(client, username, oid, stillThere);
    // Custom statements may keep the role: give back the membership taken to end its sessions.
    if (joined && stillThere) await exec(client, `REVOKE ${postgresDialect.quoteIdentifier(username)} FROM CURRENT_USER`).catch(() => undefined);
  } catch (err) {
    if (!(err instanceof SessionsOpenError) && (await roleOid(client, username).catch(() => oid)) === null) return;
    throw err;
  }
}
