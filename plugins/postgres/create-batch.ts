// Creating many users in one transaction (the engine's newUsers): one commit
// (one WAL flush) for the batch instead of one per user, each user in its own
// savepoint so one bad user does not fail the others.

import type { PoolClient } from 'pg';
import { awaitWriteAhead } from '../../src/engine/engine.ts';
import { firstLockedStatement } from './lock-scope.ts';
import { exec, isConnectionFailure, isTransient, LOCK_STATEMENT, senderFor, takeUserChangeLock, type Piped } from './sql.ts';
import { inSavepoint } from './savepoint.ts';

/** One user of a creation batch: its creation statements, already rendered and checked. */
export interface BatchCreation {
  username: string;
  statements: string[];
  /** NewUserRequest.writeAhead: COMMIT waits for it. */
  writeAhead?: Promise<void> | undefined;
}

/**
 * Create `users` in one transaction on `client` (no transaction open).
 * Returns the users that failed, each with the raw error of the statement
 * that failed; every other user exists and is committed when this returns.
 * A failed user leaves nothing of its statements in the database.
 *
 * The common case, no user fails, costs two round trips: the first pass
 * sends BEGIN, every statement and the lock at once (pipeline(), no
 * savepoints), then COMMIT. When a statement fails there, the transaction
 * is rolled back, that user gets its error (unless the error is transient:
 * then it is tried again), and the others run again in savepoints
 * (savepointBatch), so a batch with failures costs at most one extra pass.
 *
 * COMMIT waits for every user's writeAhead (NewUserRequest.writeAhead), so
 * the broker's fsync of the lease rows overlaps the statements.
 *
 * Throws (the raw error, after a best-effort ROLLBACK) when the transaction
 * as a whole fails: a lost connection, a failing COMMIT, WriteAheadFailed.
 * Nothing of the batch is then known to be committed.
 */
export async function createBatch(client: PoolClient, users: ReadonlyArray<BatchCreation>): Promise<Map<BatchCreation, unknown>> {
  const failed = new Map<BatchCreation, unknown>();
  if (users.length === 0) return failed;
  const split = new Map(users.map((u) => [u, firstLockedStatement(u.statements)]));
  const rest = users.filter((u) => split.get(u)! < u.statements.length);
  const statements: Array<Piped & { owner?: BatchCreation }> = [
    { text: 'BEGIN' },
    ...users.flatMap((owner) => owner.statements.slice(0, split.get(owner)).map((text) => ({ text, owner }))),
    ...(rest.length > 0 ? [LOCK_STATEMENT] : []),
    ...rest.flatMap((owner) => owner.statements.slice(split.get(owner)).map((text) => ({ text, owner }))),
  ];
  const first = await senderFor(users.flatMap((u) => u.statements))(client, statements);
  try {
    if (first) throw first.err;
    await awaitWriteAhead(users);
    await exec(client, 'COMMIT');
    return failed;
  } catch (err) {
    await exec(client, 'ROLLBACK').catch(() => undefined);
    // Not one user's statement (BEGIN, the lock, COMMIT, the write-ahead) or the connection: the batch failed.
    if (!first?.at.owner || isConnectionFailure(err)) throw err;
  }
  if (!isTransient(first.err)) failed.set(first.at.owner, first.err);
  for (const [user, err] of await savepointBatch(client, users.filter((u) => !failed.has(u)))) failed.set(user, err);
  return failed;
}

/**
 * createBatch's second pass: each user's statements in a savepoint.
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
async function savepointBatch(client: PoolClient, users: ReadonlyArray<BatchCreation>): Promise<Map<BatchCreation, unknown>> {
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
      await awaitWriteAhead(firstPartDone);
      await exec(client, 'COMMIT');
      return failed;
    } catch (err) {
      await exec(client, 'ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
  return failed;
}
