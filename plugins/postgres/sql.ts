// Running statements on a pool client, and turning pg errors into engine errors.

import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type pg from 'pg';
import { EngineConnectionError, scrubSecrets } from '../../src/engine/engine.ts';

// pg supports queryMode but @types/pg does not declare it.
interface ExtendedQueryConfig extends QueryConfig {
  queryMode: 'extended';
}

/**
 * Every statement goes through the extended protocol, which refuses more than
 * one command per query: a second layer under the template splitting.
 */
export function exec<R extends QueryResultRow = QueryResultRow>(
  client: PoolClient,
  text: string,
  values: unknown[] = [],
): Promise<QueryResult<R>> {
  const config: ExtendedQueryConfig = { text, values, queryMode: 'extended' };
  return client.query<R>(config);
}

interface PgErrorLike {
  message?: unknown;
  code?: unknown;
}

function describe(err: unknown): { message: string; code: string | undefined } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as PgErrorLike;
  const message = typeof e.message === 'string' && e.message ? e.message : String(err);
  return { message, code: typeof e.code === 'string' ? e.code : undefined };
}

export function sqlState(err: unknown): string | undefined {
  return describe(err).code;
}

/** Lost connection or a server going away, rather than a failing statement. */
export function isConnectionFailure(err: unknown): boolean {
  const code = sqlState(err);
  if (code === undefined) return true; // socket errors, timeouts: no SQLSTATE
  return code.startsWith('08') || code.startsWith('57P') || code.startsWith('28') || code === '3D000';
}

/** A scrubbed error for `what` failing; connection failures become EngineConnectionError. */
export function dbError(what: string, err: unknown, secrets: ReadonlyArray<string | undefined>): Error {
  const { message, code } = describe(err);
  const text = scrubSecrets(`${what}: ${message}${code && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : ''}`, secrets);
  return isConnectionFailure(err) ? new EngineConnectionError(text) : new Error(text);
}

/** Check out a client; failing to connect is an EngineConnectionError. */
export async function connect(pool: pg.Pool, secrets: ReadonlyArray<string | undefined>): Promise<PoolClient> {
  try {
    return await pool.connect();
  } catch (err) {
    throw new EngineConnectionError(scrubSecrets(`cannot connect to PostgreSQL: ${describe(err).message}`, secrets));
  }
}

/** Run statements in one transaction; on failure roll back and rethrow (the raw error). */
export async function inTransaction(client: PoolClient, statements: string[]): Promise<void> {
  await exec(client, 'BEGIN');
  try {
    for (const statement of statements) await exec(client, statement);
    await exec(client, 'COMMIT');
  } catch (err) {
    await exec(client, 'ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export async function roleOid(client: PoolClient, username: string): Promise<number | null> {
  const result = await exec<{ oid: number }>(client, 'SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1', [username]);
  return result.rows[0]?.oid ?? null;
}
