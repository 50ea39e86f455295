// Revoking many users at once (the engine's deleteUsers), in three round
// trips when nothing goes wrong:
//   1. one query (`survey`) finds each name's role (a name without one is
//      done) and whether the admin holds its privileges;
//   2. NOLOGIN for every user in one transaction, sent at once with its
//      COMMIT and a look for the users' sessions (`stopLogins`): no session
//      can start after that commit, and those open are found while the roles
//      still exist (an admin that ends sessions through membership of a role
//      cannot once it is dropped). Dropping NOLOGIN for users without
//      sessions (session 5) let a login that raced the drop outlive a
//      revocation reported done;
//   3. when every user has the default revocation and none has a session
//      (`quickDrop`): BEGIN, the user-change lock, the memberships a
//      CREATEROLE admin needs for REASSIGN/DROP OWNED, `REASSIGN OWNED BY a,
//      b, c TO owner; DROP OWNED BY a, b, c; DROP ROLE IF EXISTS a, b, c`,
//      COMMIT and a look for sessions that logged in before NOLOGIN took
//      effect, all at once (pg's pipeline mode).
// Otherwise, or when a statement of step 3 fails (the pipelined COMMIT then
// rolls back), the batch goes step by step: the users with sessions get
// revoke.ts's endSessions (membership, terminate, check), and a user whose
// session stays open fails alone (kept NOLOGIN, retried); then one
// transaction, with the user-change lock when needed: the default group's
// statements in one savepoint, users with custom statements each in a
// savepoint of their own, one COMMIT; then the look for late sessions.
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
import { exec, isConnectionFailure, LOCK_STATEMENT, sendTogether, takeUserChangeLock, type Piped } from './sql.ts';
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
}

/** The roles among `names` that exist, with their facts, in one query. */
async function survey(client: PoolClient, names: string[]): Promise<Map<string, RoleFacts>> {
  const { rows } = await exec<{ oid: number; rolname: string; member: boolean }>(
    client,
    "SELECT oid, rolname, pg_catalog.pg_has_role(CURRENT_USER, oid, 'USAGE') AS member FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])",
    [names],
  );
  return new Map(rows.map((r) => [r.rolname, { oid: r.oid, member: r.member }]));
}

/**
 * BEGIN, `body`, COMMIT and a look for the sessions of `oids`, sent at once
 * (sendTogether: one socket write, one round trip). Throws the raw error when
 * the connection fails before the look. `committed` is false when the
 * transaction rolled back (a statement failed: its COMMIT answers ROLLBACK; a
 * COMMIT that failed is followed by a ROLLBACK here). `sessions`: the oids
 * with a session open after the COMMIT, or the look's error.
 */
async function commitThenLook(
  client: PoolClient,
  body: Piped[],
  oids: number[],
): Promise<{ committed: boolean; sessions: Set<number> | { error: unknown } }> {
  const results = await Promise.allSettled(sendTogether(client, [{ text: 'BEGIN' }, ...body, { text: 'COMMIT' }, { text: SESSIONS_OF.text, values: [oids] }]));
  const commit = results.length - 2;
  for (const r of results.slice(0, commit + 1)) {
    if (r.status === 'rejected' && isConnectionFailure(r.reason)) throw r.reason;
  }
  const committed = results[commit]!;
  // An error at COMMIT leaves the transaction open.
  if (committed.status === 'rejected') await exec(client, 'ROLLBACK').catch(() => undefined);
  const check = results[commit + 1]!;
  return {
    committed: committed.status === 'fulfilled' && committed.value.command === 'COMMIT',
    sessions: check.status === 'rejected' ? { error: check.reason } : new Set((check.value.rows as Array<{ oid: number }>).map((r) => r.oid)),
  };
}

/**
 * The default revocation of `users` (all existing, NOLOGIN, none with a
 * session) in one round trip: see the top of this file. Returns false, with nothing
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
  const sent = await commitThenLook(
    client,
    [LOCK_STATEMENT, ...defaultGroup(names, names.filter((n) => !facts.get(n)!.member), owner).map((text) => ({ text }))],
    names.map((n) => facts.get(n)!.oid),
  );
  if (!sent.committed) return false;
  if ('error' in sent.sessions) throw sent.sessions.error;
  const late = sent.sessions;
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

/**
 * NOLOGIN for all in one transaction, sent at once with the COMMIT and a look
 * for their sessions; when that fails (a role dropped meanwhile, a refusal),
 * one at a time, then the look. Returns the oids with a session open once
 * NOLOGIN is committed: no session can start after that, so one not found
 * here can only be a login that passed its check just before the commit
 * (the check after the DROP is for those).
 */
async function stopLogins(
  client: PoolClient,
  users: BatchRevocation[],
  facts: Map<string, RoleFacts>,
  outcomes: Map<BatchRevocation, RevocationOutcome>,
): Promise<Set<number>> {
  if (users.length === 0) return new Set();
  const oids = [...new Set(users.map((u) => facts.get(u.username)!.oid))];
  const names = [...new Set(users.map((u) => u.username))];
  const sent = await commitThenLook(client, names.map((name) => ({ text: `ALTER ROLE ${quote(name)} NOLOGIN` })), oids);
  if (sent.committed && !('error' in sent.sessions)) return sent.sessions;
  for (const user of users) {
    await exec(client, `ALTER ROLE ${quote(user.username)} NOLOGIN`).catch(async (err: unknown) => {
      if (isConnectionFailure(err)) throw err;
      const gone = !(await oidsOf(client, [user.username])).has(user.username);
      outcomes.set(user, gone ? 'done' : { error: err });
    });
  }
  return withSessions(client, oids);
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
  // NOLOGIN first, committed, for every user: a session cannot start after it,
  // and one that started before is found now, while the role exists (an admin
  // that ends sessions through membership of the role cannot once it is gone).
  const sessions = await stopLogins(client, present, facts, outcomes);
  const oids = new Map([...facts].map(([name, f]) => [name, f.oid]));
  const unsettled = present.filter((u) => !outcomes.has(u));
  if (unsettled.length > 0 && unsettled.every((u) => u.statements === null && !sessions.has(oids.get(u.username)!))) {
    if (await quickDrop(client, unsettled, facts, owner, outcomes)) return;
  }

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
