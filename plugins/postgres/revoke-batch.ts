// Revoking many users at once (the engine's deleteUsers): the steps of
// revoke.ts, each done for the whole batch in one query or one transaction:
//   1. one query for the oids of all names; a name without a role is done;
//   2. one pg_stat_activity query for all; NOLOGIN, in one transaction, for
//      the users with sessions (so they cannot reconnect) and those with
//      custom statements (which may keep the role); the users with sessions
//      get revoke.ts's endSessions (membership, terminate, check), and a user
//      whose session stays open fails alone (kept NOLOGIN, retried);
//   3. the default revocation of a user without sessions needs no NOLOGIN:
//      a session that logs in before the DROP commits is found and ended by
//      step 5, and after it nobody can log in; if the DROP fails, revokeRole
//      (NOLOGIN first) takes over. An ALTER ROLE per user was most of a
//      drain's catalog writes;
//   4. one transaction, with the user-change lock when needed: for users
//      with the default revocation, the memberships REASSIGN/DROP OWNED need,
//      then `REASSIGN OWNED BY a, b, c TO owner; DROP OWNED BY a, b, c;
//      DROP ROLE IF EXISTS a, b, c` in one savepoint; users with custom
//      statements each in a savepoint of their own; one COMMIT;
//   5. one pg_stat_activity query for a session that logged in before the
//      DROP committed (ended as in step 2).
// When the default group's savepoint fails (one user that cannot be
// dropped), its users are revoked one at a time with revokeRole after the
// commit, so that user does not hold back the others. A user counts as done
// only once the transaction that dropped it committed (or it is gone).

import type { PoolClient } from 'pg';
import { postgresDialect } from './dialect.ts';
import { needsUserChangeLock } from './lock-scope.ts';
import { SessionsOpenError, defaultRevocation, endSessions, revokeRole } from './revoke.ts';
import { exec, isConnectionFailure, takeUserChangeLock } from './sql.ts';
import { inSavepoint } from './savepoint.ts';

/** One user of a revocation batch: its rendered custom statements, or null for the default revocation. */
export interface BatchRevocation {
  username: string;
  statements: string[] | null;
}

/** Per user: 'done' (the role is gone, committed, or custom statements committed), or the raw error. */
export type RevocationOutcome = 'done' | { error: unknown };

const quote = (name: string): string => postgresDialect.quoteIdentifier(name);

async function oidsOf(client: PoolClient, names: string[]): Promise<Map<string, number>> {
  const { rows } = await exec<{ oid: number; rolname: string }>(
    client,
    'SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])',
    [names],
  );
  return new Map(rows.map((r) => [r.rolname, r.oid]));
}

async function withSessions(client: PoolClient, oids: number[]): Promise<Set<number>> {
  if (oids.length === 0) return new Set();
  const { rows } = await exec<{ oid: number }>(
    client,
    'SELECT DISTINCT usesysid AS oid FROM pg_catalog.pg_stat_activity WHERE usesysid = ANY($1::oid[]) AND pid <> pg_catalog.pg_backend_pid()',
    [oids],
  );
  return new Set(rows.map((r) => r.oid));
}

/** NOLOGIN for all in one transaction; when that fails (a role dropped meanwhile, a refusal), one at a time. */
async function stopLogins(client: PoolClient, users: BatchRevocation[], outcomes: Map<BatchRevocation, RevocationOutcome>): Promise<void> {
  if (users.length === 0) return;
  await exec(client, 'BEGIN');
  try {
    for (const user of users) await exec(client, `ALTER ROLE ${quote(user.username)} NOLOGIN`);
    await exec(client, 'COMMIT');
    return;
  } catch (err) {
    await exec(client, 'ROLLBACK').catch(() => undefined);
    if (isConnectionFailure(err)) throw err;
  }
  for (const user of users) {
    await exec(client, `ALTER ROLE ${quote(user.username)} NOLOGIN`).catch(async (err: unknown) => {
      if (isConnectionFailure(err)) throw err;
      const gone = !(await oidsOf(client, [user.username])).has(user.username);
      outcomes.set(user, gone ? 'done' : { error: err });
    });
  }
}

/**
 * Revoke `users` on `client` (no transaction open); `owner` receives the
 * objects of users with the default revocation (null: the admin). Fills
 * `outcomes` as users settle, so that when this throws (a lost connection:
 * the raw error) the caller knows which users are settled and can revoke the
 * rest one at a time. A user is set 'done' only when it is gone, or its
 * custom statements committed.
 */
export async function revokeBatch(
  client: PoolClient,
  users: ReadonlyArray<BatchRevocation>,
  owner: string | null,
  outcomes: Map<BatchRevocation, RevocationOutcome>,
): Promise<void> {
  const oids = await oidsOf(client, [...new Set(users.map((u) => u.username))]);
  const present: BatchRevocation[] = [];
  for (const user of users) {
    if (oids.has(user.username)) present.push(user);
    else outcomes.set(user, 'done');
  }
  const sessions = await withSessions(client, present.map((u) => oids.get(u.username)!));
  await stopLogins(client, present.filter((u) => u.statements !== null || sessions.has(oids.get(u.username)!)), outcomes);

  // Memberships taken to end sessions (custom statements may keep the role: given back at the end).
  const joined = new Set<BatchRevocation>();
  for (const user of present) {
    const oid = oids.get(user.username)!;
    if (outcomes.has(user) || !sessions.has(oid)) continue;
    try {
      if (await endSessions(client, user.username, oid, true)) joined.add(user);
    } catch (err) {
      if (isConnectionFailure(err) && !(err instanceof SessionsOpenError)) throw err;
      outcomes.set(user, { error: err });
    }
  }

  const todo = present.filter((u) => !outcomes.has(u));
  const byDefault = todo.filter((u) => u.statements === null);
  const custom = todo.filter((u) => u.statements !== null);
  let defaultFailed = false;
  const customFailed = new Map<BatchRevocation, unknown>();
  if (todo.length > 0) {
    await exec(client, 'BEGIN');
    try {
      if (byDefault.length > 0 || custom.some((u) => u.statements!.some(needsUserChangeLock))) await takeUserChangeLock(client);
      if (byDefault.length > 0) defaultFailed = (await inSavepoint(client, await defaultGroup(client, byDefault, oids, owner))) !== undefined;
      for (const user of custom) {
        const err = await inSavepoint(client, user.statements!);
        if (err !== undefined) customFailed.set(user, err);
      }
      await exec(client, 'COMMIT');
    } catch (err) {
      await exec(client, 'ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  const committed = todo.filter((u) => !customFailed.has(u) && !(defaultFailed && u.statements === null));
  const left = await oidsOf(client, todo.map((u) => u.username));
  for (const [user, err] of customFailed) outcomes.set(user, left.has(user.username) ? { error: err } : 'done');

  // A session that logged in before the DROP committed (or before NOLOGIN took effect).
  const late = await withSessions(client, committed.map((u) => oids.get(u.username)!));
  for (const user of committed) {
    const oid = oids.get(user.username)!;
    const stillThere = left.has(user.username);
    try {
      if (late.has(oid)) await endSessions(client, user.username, oid, stillThere);
      if (joined.has(user) && stillThere) await exec(client, `REVOKE ${quote(user.username)} FROM CURRENT_USER`).catch(() => undefined);
      outcomes.set(user, 'done');
    } catch (err) {
      if (isConnectionFailure(err) && !(err instanceof SessionsOpenError)) throw err;
      outcomes.set(user, { error: err });
    }
  }

  // One user that cannot be dropped must not hold back the others.
  if (defaultFailed) {
    for (const user of byDefault) {
      try {
        await revokeRole(client, user.username, defaultRevocation(user.username, owner), true);
        outcomes.set(user, 'done');
      } catch (err) {
        if (isConnectionFailure(err) && !(err instanceof SessionsOpenError)) throw err;
        outcomes.set(user, { error: err });
      }
    }
  }
}

/**
 * The default revocation of several roles at once: the memberships a
 * CREATEROLE admin without superuser needs for REASSIGN/DROP OWNED (they go
 * with the dropped roles), then REASSIGN OWNED, DROP OWNED and DROP ROLE
 * naming every role (PG manual: each takes a list of roles).
 */
async function defaultGroup(client: PoolClient, users: BatchRevocation[], oids: Map<string, number>, owner: string | null): Promise<string[]> {
  const { rows } = await exec<{ rolname: string }>(
    client,
    "SELECT rolname FROM pg_catalog.pg_roles WHERE oid = ANY($1::oid[]) AND NOT pg_catalog.pg_has_role(CURRENT_USER, oid, 'USAGE')",
    [users.map((u) => oids.get(u.username)!)],
  );
  const list = [...new Set(users.map((u) => u.username))].map(quote).join(', ');
  const to = owner === null ? 'CURRENT_USER' : quote(owner);
  return [
    ...(rows.length > 0 ? [`GRANT ${rows.map((r) => quote(r.rolname)).join(', ')} TO CURRENT_USER`] : []),
    `REASSIGN OWNED BY ${list} TO ${to}`,
    `DROP OWNED BY ${list}`,
    `DROP ROLE IF EXISTS ${list}`,
  ];
}
