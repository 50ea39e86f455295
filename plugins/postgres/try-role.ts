// Engine.tryStatements for PostgreSQL: statements tried when they are
// written (a role's, a static role's rotation), on a throwaway user, in one
// transaction that is always rolled back. CREATE ROLE, GRANT and DROP ROLE
// are transactional here (PG manual, "Transactions"), so nothing of the try
// is kept but sequence values; statements that cannot run in a transaction
// block (CREATE DATABASE, VACUUM) fail the try as they would fail at creds
// time, where they run in one transaction too.

import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import { StatementRefusedError, type StatementKind, type Statements, type TryOutcome } from '../../src/engine/engine.ts';
import { splitStatements, type TemplateValues } from '../sql-common/statements.ts';
import { postgresDialect, renderFor } from './dialect.ts';
import { needsUserChangeLock } from './lock-scope.ts';
import { dbError, exec, isConnectionFailure, isTransient, LOCK_STATEMENT, retryTransient, sqlState } from './sql.ts';

/** One rendered statement to try, with the role field it came from and its template. */
export interface TriedStatement {
  kind: StatementKind;
  /** What the database runs (throwaway name and password in it). */
  text: string;
  /** The role's template it was rendered from (shown in errors: it holds no secret). */
  template: string;
  /** The engine's own statement (the throwaway user for lists without creation statements): its failure means "not tried". */
  own?: boolean;
}

/** A name no dynamic user has (the usernames of username_template never start with it), within PostgreSQL's 63 bytes. */
export function throwawayName(): string {
  return `dbroker_try_${randomBytes(8).toString('hex')}`;
}

/** Each statement of `templates` (a template may hold several), rendered with `values`. Throws EngineInputError. */
export function statementsToTry(kind: StatementKind, templates: Statements, values: TemplateValues): TriedStatement[] {
  return templates
    .flatMap((t) => splitStatements(t, postgresDialect))
    .map((template) => ({ kind, template, text: renderFor(kind, [template], values).join('; ') }));
}

/**
 * Longest a try may run (ms): each statement waits at most this long for a
 * lock (lock_timeout) or runs at most this long (statement_timeout), so a
 * try that waits behind a migration's open transaction ends by itself and
 * lets go of what it holds (the user-change lock among them) instead of
 * blocking creds. The broker stops waiting for a try after 5 s
 * (Connections.tryStatements); the engine closes the session of one still
 * running at TRY_TIMEOUT_MS + 1 s.
 */
export const TRY_TIMEOUT_MS = 4_000;

/** lock_not_available (lock_timeout), query_canceled (statement_timeout): the try ran out of time, it was not refused. */
const OUT_OF_TIME = new Set(['55P03', '57014']);

class OwnStatementFailed extends Error {}

export const OUT_OF_TIME_REASON = `the database did not finish trying them within ${TRY_TIMEOUT_MS / 1000}s (a statement waited for a lock, or ran long)`;

/**
 * Run `statements` in one transaction on `client`, one at a time, taking the
 * user-change lock before the first that needs it (lock-scope.ts, as at
 * creds time), and roll it back whatever happens. Each list (kind) after the
 * first starts from the admin's own settings (RESET ROLE, RESET ALL): at
 * creds time renewal and revocation run in transactions of their own, where
 * a creation statement's SET LOCAL ROLE or search_path no longer holds.
 * A transient failure (serialization, deadlock, a concurrent catalog update)
 * is retried. The caller checks first that no statement controls the
 * transaction itself (sql.ts controlsTransaction): a template COMMIT would
 * keep what came before.
 * @returns { tried: false } when a statement ran out of time (TRY_TIMEOUT_MS) or an `own` one failed.
 * @throws StatementRefusedError naming the field and the template when the database refuses one
 *   (`throwaway`, the throwaway user's name, shown as {{name}}); EngineConnectionError when the
 *   connection fails. `secrets` are scrubbed from both.
 */
export async function tryRolledBack(client: PoolClient, statements: ReadonlyArray<TriedStatement>, throwaway: string, secrets: ReadonlyArray<string | undefined>): Promise<TryOutcome> {
  const bound = async (): Promise<void> => {
    await exec(client, "SELECT pg_catalog.set_config('lock_timeout', $1, true), pg_catalog.set_config('statement_timeout', $1, true)", [`${TRY_TIMEOUT_MS}ms`]);
  };
  try {
    await retryTransient(async () => {
      await exec(client, 'BEGIN');
      try {
        await bound();
        let locked = false;
        let kind: StatementKind | undefined;
        for (const statement of statements) {
          if (kind !== undefined && statement.kind !== kind) {
            await exec(client, 'RESET ROLE');
            await exec(client, 'RESET ALL');
            await bound();
          }
          kind = statement.kind;
          if (!locked && needsUserChangeLock(statement.text)) {
            await exec(client, LOCK_STATEMENT.text, LOCK_STATEMENT.values);
            locked = true;
          }
          try {
            await exec(client, statement.text);
          } catch (err) {
            if (isConnectionFailure(err) || isTransient(err) || OUT_OF_TIME.has(sqlState(err) ?? '')) throw err;
            if (statement.own) throw new OwnStatementFailed(dbError('the admin cannot create a throwaway user to try them on', err, secrets).message);
            const scrubbed = dbError('', err, secrets).message.replace(/^: /, '');
            const reason = scrubbed.split(throwaway).join('{{name}}');
            throw new StatementRefusedError(statement.kind, `${statement.kind}_statements: the database refused ${JSON.stringify(statement.template)}: ${reason}`);
          }
        }
      } finally {
        await exec(client, 'ROLLBACK').catch(() => undefined);
      }
    });
  } catch (err) {
    if (err instanceof StatementRefusedError) throw err;
    if (err instanceof OwnStatementFailed) return { tried: false, reason: err.message };
    if (OUT_OF_TIME.has(sqlState(err) ?? '')) return { tried: false, reason: OUT_OF_TIME_REASON };
    throw dbError('trying the statements failed', err, secrets);
  }
  return { tried: true };
}
