// One unit of work inside a batch transaction: a savepoint, so that its
// failure undoes only its own statements and the transaction goes on.

import type { PoolClient } from 'pg';
import { exec, isConnectionFailure, isTransient } from './sql.ts';

const SAVEPOINT = 'dbroker_unit';
const ATTEMPTS = 4;

/**
 * Run statements in a savepoint of the open transaction. Returns undefined
 * when they all ran (the savepoint released), else the raw error of the one
 * that failed, after rolling back to the savepoint so the transaction can go
 * on. Transient failures (concurrent catalog updates, deadlocks) are retried
 * up to 4 times after a short random pause (milliseconds). Throws, leaving
 * the transaction to the caller, on a lost connection or when the rollback
 * to the savepoint itself fails.
 */
export async function inSavepoint(client: PoolClient, statements: ReadonlyArray<string>): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    await exec(client, `SAVEPOINT ${SAVEPOINT}`);
    try {
      for (const statement of statements) await exec(client, statement);
      await exec(client, `RELEASE SAVEPOINT ${SAVEPOINT}`);
      return undefined;
    } catch (err) {
      if (isConnectionFailure(err)) throw err;
      await exec(client, `ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
      await exec(client, `RELEASE SAVEPOINT ${SAVEPOINT}`);
      if (attempt >= ATTEMPTS || !isTransient(err)) return err;
      await new Promise((resolve) => setTimeout(resolve, 10 * attempt + Math.random() * 30 * attempt));
    }
  }
}
