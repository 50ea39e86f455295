// Engine.tryStatements for PostgreSQL: statements tried when they are
// written (a role's, on a throwaway user; a static role's rotation, on its
// user) in one transaction that is always rolled back. CREATE ROLE, GRANT and DROP ROLE are transactional here (PG
// manual, "Transactions"), so nothing of the try is kept; statements that
// cannot run in a transaction block (CREATE DATABASE, VACUUM) fail the try as
// they would fail at creds time, where they run in one transaction too.

import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import { StatementRefusedError, type StatementKind, type Statements } from '../../src/engine/engine.ts';
import { splitStatements, type TemplateValues } from '../sql-common/statements.ts';
import { postgresDialect, renderFor } from './dialect.ts';
import { needsUserChangeLock } from './lock-scope.ts';
import { dbError, exec, isConnectionFailure, isTransient, LOCK_STATEMENT, retryTransient } from './sql.ts';

/** One rendered statement to try, with the role field it came from and its template. */
export interface TriedStatement {
  kind: StatementKind;
  /** What the database runs (throwaway name and password in it). */
  text: string;
  /** The role's template it was rendered from (shown in errors: it holds no secret). */
  template: string;
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
 * Run `statements` in one transaction on `client`, one at a time, taking the
 * user-change lock before the first that needs it (lock-scope.ts, as at
 * creds time), and roll it back whatever happens. A transient failure
 * (serialization, deadlock, a concurrent catalog update) is retried.
 * The caller checks first that no statement controls the transaction itself
 * (sql.ts controlsTransaction): a template COMMIT would keep what came before.
 * @throws StatementRefusedError naming the field and the template when the database refuses one
 *   (`throwaway`, the throwaway user's name, shown as {{name}}); EngineConnectionError when the
 *   connection fails. `secrets` are scrubbed from both.
 */
export async function tryRolledBack(
  client: PoolClient,
  statements: ReadonlyArray<TriedStatement>,
  throwaway: string | undefined,
  secrets: ReadonlyArray<string | undefined>,
): Promise<void> {
  await retryTransient(async () => {
    await exec(client, 'BEGIN');
    try {
      let locked = false;
      for (const statement of statements) {
        if (!locked && needsUserChangeLock(statement.text)) {
          await exec(client, LOCK_STATEMENT.text, LOCK_STATEMENT.values);
          locked = true;
        }
        try {
          await exec(client, statement.text);
        } catch (err) {
          if (isConnectionFailure(err) || isTransient(err)) throw err;
          const scrubbed = dbError('', err, secrets).message.replace(/^: /, '');
          const reason = throwaway === undefined ? scrubbed : scrubbed.split(throwaway).join('{{name}}');
          throw new StatementRefusedError(statement.kind, `${statement.kind}_statements: the database refused ${JSON.stringify(statement.template)}: ${reason}`);
        }
      }
    } finally {
      await exec(client, 'ROLLBACK').catch(() => undefined);
    }
  }).catch((err: unknown) => {
    if (err instanceof StatementRefusedError) throw err;
    throw dbError('trying the statements failed', err, secrets);
  });
}
