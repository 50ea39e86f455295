// Revoking many users at once (the engine's deleteUsers). First one query
// (`survey`) finds, for every name, its role (a name without one is done),
// whether the admin holds its privileges, and whether it has sessions.
//
// The common case, every user with the default revocation and none with a
// session, takes one more round trip (`quickDrop`): BEGIN, the user-change
// lock, the memberships a CREATEROLE admin needs for REASSIGN/DROP OWNED,
// `REASSIGN OWNED BY a, b, c TO owner; DROP OWNED BY a, b, c; DROP ROLE IF
// EXISTS a, b, c`, COMMIT and a look for sessions that logged in before the
// DROP committed, all sent at once (pg's pipeline mode). A statement that
// fails aborts the transaction, the pipelined COMMIT then rolls it back, and
// the batch is done the careful way instead, step by step:
//   1. NOLOGIN, in one transaction, for the users with sessions (so they
//      cannot reconnect) and those with custom statements (which may keep
//      the role); the users with sessions get revoke.ts's endSessions
//      (membership, terminate, check), and a user whose session stays open
//      fails alone (kept NOLOGIN, retried);
//   2. the default revocation of a user without sessions needs no NOLOGIN:
//      a session that logs in before the DROP commits is found and ended by
//      step 4, and after it nobody can log in; if the DROP fails, revokeRole
//      (NOLOGIN first) takes over. An ALTER ROLE per user was most of a
//      drain's catalog writes;
//   3. one transaction, with the user-change lock when needed: the default
//      group's statements (as above) in one savepoint; users with custom
//      statements each in a savepoint of their own; one COMMIT;
//   4. one query for a session that logged in before the DROP committed
//      (ended as in step 1).
// When the default group's savepoint fails (one user that cannot be
// dropped), its users are revoked one at a time with revokeRole after the
// commit, so that user does not hold back the others. A user counts as done
// only once the transaction that dropped it committed (or it is gone).
//
// Sessions are read from pg_stat_get_activity(NULL) (PG manual, "Statistics
// Functions"), not the pg_stat_activity view: planning the view's joins cost
// about 1 ms a query here, as much as the drop of several users.

import type { PoolClient } from 'pg';
import { postgresDialect } from './dialect.ts';
import { needsUserChangeLock } from './lock-scope.ts';
import { SessionsOpenError, defaultRevocation, endSessions, revokeRole } from './revoke.ts';
import { exec, execPrepared, isConnectionFailure, LOCK_STATEMENT, sendTogether, takeUserChangeLock, type Piped } from './sql.ts';
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

/** Other sessions of these roles (PG manual, "Statistics Functions": pg_stat_get_activity(NULL), one row per backend). */
const SESSIONS_OF = {
  text: 'SELECT DISTINCT usesysid AS oid FROM pg_catalog.pg_stat_get_activity(NULL) WHERE usesysid = ANY($1::oid[]) AND pid <> pg_catalog.pg_backend_pid()',
} as const;

async function withSessions(client: PoolClient, oids: number[]): Promise<Set<number>> {
  if (oids.length === 0) return new Set();
  const { rows } = await exec<{ oid: number }>(client, SESSIONS_OF.text, [oids]);
  return new Set(rows.map((r) => r.oid));
}

/** What survey() finds of one existing role. */
interface RoleFacts {
  oid: number;
  /** The admin has the role's privileges (pg_has_role USAGE): REASSIGN/DROP OWNED need no membership first. */
  member: boolean;
  /** Another session of the role is open. */
  busy: boolean;
}

/** The roles among `names` that exist, with their facts, in one query. */
async function survey(client: PoolClient, names: string[]): Promise<Map<string, RoleFacts>> {
  const { rows } = await execPrepared<{ oid: number; rolname: string; member: boolean; busy: boolean }>(
    client,
    'dbroker_revoke_survey',
    `SELECT r.oid, r.rolname, pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'USAGE') AS member, a.usesysid IS NOT NULL AS busy
       FROM pg_catalog.pg_roles r
       LEFT JOIN (SELECT DISTINCT usesysid FROM pg_catalog.pg_stat_get_activity(NULL) WHERE pid <> pg_catalog.pg_backend_pid()) a ON a.usesysid = r.oid
      WHERE r.rolname = ANY($1::text[])`,
    [names],
  );
  return new Map(rows.map((r) => [r.rolname, { oid: r.oid, member: r.member, busy: r.busy }]));
}

/**
 * The default revocation of `users` (all existing, none with a session) in
 * one round trip: see the top of this file. Returns false, with nothing
 * changed, when a statement failed (the transaction rolled back); throws the
 * raw error when the connection fails, so whether the COMMIT took is unknown
 * (the caller revokes the users again, one at a time; dropping is idempotent).
 */
async function quickDrop(
  client: PoolClient,
  users: BatchRevocation[],
  facts: Map<string, RoleFacts>,
  owner: string | null,
  outcomes: Map<BatchRevocation, RevocationOutcome>,
): Promise<boolean> {
  const names = [...new Set(users.map((u) => u.username))];
  const oids = names.map((n) => facts.get(n)!.oid);
  const statements: Piped[] = [
    { text: 'BEGIN' },
    LOCK_STATEMENT,
    ...defaultGroup(names, names.filter((n) => !facts.get(n)!.member), owner).map((text) => ({ text })),
    { text: 'COMMIT' },
    { text: SESSIONS_OF.text, values: [oids] },
  ];
  const results = await Promise.allSettled(sendTogether(client, statements));
  const commit = results.length - 2;
  for (const r of results.slice(0, commit + 1)) {
    if (r.status === 'rejected' && isConnectionFailure(r.reason)) throw r.reason;
  }
  const committed = results[commit]!;
  if (committed.status === 'rejected' || committed.value.command !== 'COMMIT') {
    // A COMMIT of an aborted transaction answers ROLLBACK; an error there leaves the transaction open.
    if (committed.status === 'rejected') await exec(client, 'ROLLBACK').catch(() => undefined);
    return false;
  }
  const check = results[commit + 1]!;
  if (check.status === 'rejected') throw check.reason;
  const late = new Set((check.value.rows as Array<{ oid: number }>).map((r) => r.oid));
  for (const user of users) {
    const oid = facts.get(user.username)!.oid;
    try {
      if (late.has(oid)) await endSessions(client, user.username, oid, false);
      outcomes.set(user, 'done');
    } catch (err) {
      if (isConnectionFailure(err) && !(err instanceof SessionsOpenError)) throw err;
      outcomes.set(user, { error: err });
    }
  }
  return true;
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
  const facts = await survey(client, [...new Set(users.map((u) => u.username))]);
  const present: BatchRevocation[] = [];
  for (const user of users) {
    if (facts.has(user.username)) present.push(user);
    else outcomes.set(user, 'done');
  }
  if (present.length > 0 && present.every((u) => u.statements === null && !facts.get(u.username)!.busy)) {
    if (await quickDrop(client, present, facts, owner, outcomes)) return;
  }
  const oids = new Map([...facts].map(([name, f]) => [name, f.oid]));
  const sessions = new Set([...facts.values()].filter((f) => f.busy).map((f) => f.oid));
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
      if (byDefault.length > 0) {
        const names = [...new Set(byDefault.map((u) => u.username))];
        const toJoin = names.filter((n) => !facts.get(n)!.member);
        defaultFailed = (await inSavepoint(client, defaultGroup(names, toJoin, owner))) !== undefined;
      }
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
 * CREATEROLE admin without superuser needs for REASSIGN/DROP OWNED (`toJoin`,
 * they go with the dropped roles), then REASSIGN OWNED, DROP OWNED and DROP
 * ROLE naming every role (PG manual: each takes a list of roles).
 */
function defaultGroup(names: string[], toJoin: string[], owner: string | null): string[] {
  const list = names.map(quote).join(', ');
  const to = owner === null ? 'CURRENT_USER' : quote(owner);
  return [
    ...(toJoin.length > 0 ? [`GRANT ${toJoin.map(quote).join(', ')} TO CURRENT_USER`] : []),
    `REASSIGN OWNED BY ${list} TO ${to}`,
    `DROP OWNED BY ${list}`,
    `DROP ROLE IF EXISTS ${list}`,
  ];
}
