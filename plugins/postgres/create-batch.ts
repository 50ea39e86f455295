// Creating many users in one transaction (the engine's newUsers): one commit
// (one WAL flush) for the batch instead of one per user, each user in its own
// savepoint so one bad user does not fail the others.

import type { PoolClient } from 'pg';
import { firstLockedStatement } from './lock-scope.ts';
import { exec, takeUserChangeLock } from './sql.ts';
import { inSavepoint } from './savepoint.ts';

/** One user of a creation batch: its creation statements, already rendered and checked. */
export interface BatchCreation {
  username: string;
  statements: string[];
}

/**
 * Create `users` in one transaction on `client` (no transaction open).
 * Returns the users that failed, each with the raw error of the statement
 * that failed; every other user exists and is committed when this returns.
 * A failed user leaves nothing of its statements in the database.
 *
 * Each user's statements before its first one that needs the user-change
 * lock (lock-scope.ts: CREATE ROLE, where the server hashes a plaintext
 * password, and role membership grants) run first, for all users, without
 * the lock; then, if any user has more, the lock is taken once and the rest
 * run. A user whose second part fails has its first part in the transaction
 * already, and a savepoint cannot undo it alone: the transaction is then
 * rolled back and run again without the users that failed (so at most one
 * extra round per such failure; failures are rare, the common path is one
 * transaction).
 *
 * Throws (the raw error, after a best-effort ROLLBACK) when the transaction
 * as a whole fails: a lost connection, a failing COMMIT. Nothing of the
 * batch is then known to be committed.
 */
export async function createBatch(client: PoolClient, users: ReadonlyArray<BatchCreation>): Promise<Map<BatchCreation, unknown>> {
  const failed = new Map<BatchCreation, unknown>();
  let pending = [...users];
  while (pending.length > 0) {
    const split = new Map(pending.map((u) => [u, firstLockedStatement(u.statements)]));
    await exec(client, 'BEGIN');
    try {
      const firstPartDone: BatchCreation[] = [];
      for (const user of pending) {
        const err = await inSavepoint(client, user.statements.slice(0, split.get(user)));
        if (err === undefined) firstPartDone.push(user);
        else failed.set(user, err);
      }
      const rest = firstPartDone.filter((u) => split.get(u)! < u.statements.length);
      if (rest.length > 0) await takeUserChangeLock(client);
      let late = false;
      for (const user of rest) {
        const err = await inSavepoint(client, user.statements.slice(split.get(user)));
        if (err === undefined) continue;
        failed.set(user, err);
        late = true;
      }
      if (late) {
        await exec(client, 'ROLLBACK');
        pending = firstPartDone.filter((u) => !failed.has(u));
        continue;
      }
      await exec(client, 'COMMIT');
      return failed;
    } catch (err) {
      await exec(client, 'ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
  return failed;
}
