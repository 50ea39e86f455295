// Running statements on a pool client, and turning pg errors into engine errors.

import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type pg from 'pg';
import { awaitWriteAhead, EngineConnectionError, scrubSecrets } from '../../src/engine/engine.ts';
import { firstLockedStatement } from './lock-scope.ts';

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
  detail?: unknown;
}

/** At most this many characters of the server's DETAIL go into an error (a 2BP01 lists up to 100 objects). */
const DETAIL_MAX = 400;

/**
 * The SQLSTATEs whose DETAIL is shown: it names catalog objects only. Most
 * other DETAILs echo row values ("Failing row contains (…)" of 23502/23514,
 * each value cut to 64 characters), and a custom statement may write
 * `{{password}}` into such a row: a cut value is a secret's prefix, which no
 * scrub of the whole secret finds.
 */
const DETAIL_SHOWN = new Set(['2BP01']);

function describe(err: unknown): { message: string; code: string | undefined } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as PgErrorLike;
  const message = typeof e.message === 'string' && e.message ? e.message : String(err);
  return { message, code: typeof e.code === 'string' ? e.code : undefined };
}

/** ". Detail: …" for a SQLSTATE in DETAIL_SHOWN, on one line, scrubbed, then cut; '' otherwise. */
function shownDetail(err: unknown, code: string | undefined, secrets: ReadonlyArray<string | undefined>): string {
  const detail = (err as PgErrorLike | null)?.detail;
  if (!code || !DETAIL_SHOWN.has(code) || typeof detail !== 'string' || !detail.trim()) return '';
  const scrubbed = scrubSecrets(detail.trim().split('\n').join('; '), secrets);
  return `. Detail: ${scrubbed.length > DETAIL_MAX ? `${scrubbed.slice(0, DETAIL_MAX)}…` : scrubbed}`;
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

/**
 * A scrubbed error for `what` failing; connection failures become
 * EngineConnectionError. For a role that cannot be dropped (2BP01) the
 * server's DETAIL follows: it names what depends on the role, e.g. "owner of
 * table public.t" or "1 object in database app" (PG manual, "Dropping
 * Roles"; protocol "Error and Notice Message Fields"). Scrubbed before it is
 * cut, so a cut never splits a secret.
 */
export function dbError(what: string, err: unknown, secrets: ReadonlyArray<string | undefined>): Error {
  const { message, code } = describe(err);
  const text = `${scrubSecrets(`${what}: ${message}${code && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : ''}`, secrets)}${shownDetail(err, code, secrets)}`;
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

/**
 * GRANT and REVOKE on one object (and DROP OWNED, which revokes) update the
 * same catalog row, and PostgreSQL fails the second of two concurrent
 * updates with "tuple concurrently updated" instead of waiting. dbroker's
 * transactions that run such statements take this transaction-level advisory
 * lock, so they run one at a time per database, also across brokers; which
 * statements need it is decided in lock-scope.ts (CREATE ROLE, DROP ROLE and
 * role membership grants do not).
 */
export const USER_CHANGE_LOCK = '7233000727465074';

/** Take the user-change lock until the current transaction ends. */
export async function takeUserChangeLock(client: PoolClient): Promise<void> {
  await exec(client, LOCK_STATEMENT.text, LOCK_STATEMENT.values);
}

/** Failures that a rolled back transaction can simply try again (concurrent catalog updates by others, deadlocks). */
export function isTransient(err: unknown): boolean {
  const code = sqlState(err);
  if (code === '40001' || code === '40P01') return true;
  return code === 'XX000' && /tuple concurrently (updated|deleted)/.test(describe(err).message);
}

const RETRIES = 4;

/** Run a whole transaction again (after a short random pause) while it fails transiently. */
export async function retryTransient<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (attempt >= RETRIES || !isTransient(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt + Math.random() * 50 * attempt));
    }
  }
}

/** One statement of a pipelined transaction (pipeline()). */
export interface Piped {
  text: string;
  values?: unknown[];
}

/**
 * Send `statements` on `client` without waiting for each answer (the pool's
 * clients run in pg's pipeline mode: one round trip for all of them, each
 * still its own extended-protocol query, so still one command each). After a
 * failure the server answers the rest of a transaction with "current
 * transaction is aborted"; the first failure in order is the one returned.
 * Resolves with undefined when every statement succeeded.
 */
export async function pipeline<T extends Piped>(client: PoolClient, statements: ReadonlyArray<T>): Promise<{ err: unknown; at: T } | undefined> {
  const results = await Promise.allSettled(sendTogether(client, statements));
  const i = results.findIndex((r) => r.status === 'rejected');
  return i === -1 ? undefined : { err: (results[i] as PromiseRejectedResult).reason, at: statements[i]! };
}

/** The socket under a pg client (not in @types/pg; Client.connection.stream). */
interface WithStream {
  connection?: { stream?: { cork?: () => void; uncork?: () => void } };
}

/**
 * Send `statements` at once (pg's pipeline mode) and return each one's
 * result. pg writes every query to the socket by itself, a write(v) system
 * call each; the socket is corked meanwhile so they leave in one (Node
 * "writable.cork()": writes buffered until the matching uncork): a revocation
 * batch's transaction was eight system calls, a noticeable share of the
 * broker's CPU during a drain of due leases.
 */
export function sendTogether<R extends QueryResultRow = QueryResultRow>(client: PoolClient, statements: ReadonlyArray<Piped>): Array<Promise<QueryResult<R>>> {
  const stream = (client as unknown as WithStream).connection?.stream;
  stream?.cork?.();
  try {
    return statements.map((s) => exec<R>(client, s.text, s.values));
  } finally {
    stream?.uncork?.();
  }
}

/**
 * Statements one after another, stopping at the first failure (pipeline()'s
 * answer). For templates that end or start transactions themselves: sent
 * together, the statements after a failure and such a COMMIT would run
 * outside any transaction, where one at a time they never run.
 */
export async function sequentially<T extends Piped>(client: PoolClient, statements: ReadonlyArray<T>): Promise<{ err: unknown; at: T } | undefined> {
  for (const s of statements) {
    try {
      await exec(client, s.text, s.values);
    } catch (err) {
      return { err, at: s };
    }
  }
  return undefined;
}

// PostgreSQL manual, "SQL Commands": the statements that begin, end or mark a transaction (after any comments).
const TRANSACTION_CONTROL = /^\s*(?:(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)\s*)*(begin|commit|end|rollback|abort|start\s+transaction|savepoint|release|prepare\s+transaction|commit\s+prepared|rollback\s+prepared)\b/i;

/** Whether one of `statements` ends, starts or marks the transaction itself (COMMIT, SAVEPOINT, ...). */
export function controlsTransaction(statements: ReadonlyArray<string>): boolean {
  return statements.some((s) => TRANSACTION_CONTROL.test(s));
}

/** How to send a transaction's statements: pipeline(), or sequentially() when a template controls the transaction itself. */
export function senderFor(statements: ReadonlyArray<string>): typeof pipeline {
  return controlsTransaction(statements) ? sequentially : pipeline;
}

/** The statements of one user's creation with the user-change lock taken before the first that needs it (lock-scope.ts). */
export function withLock(statements: ReadonlyArray<string>): Piped[] {
  const locked = firstLockedStatement(statements);
  return statements.flatMap((text, i) => (i === locked ? [LOCK_STATEMENT, { text }] : [{ text }]));
}

export const LOCK_STATEMENT: Piped = { text: 'SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)', values: [USER_CHANGE_LOCK] };

/**
 * Run statements in one transaction that takes the user-change lock before
 * the first statement that needs it (lock-scope.ts; none: no lock), so
 * CREATE ROLE, where the server hashes a plaintext password, runs unlocked;
 * on failure roll back and rethrow (the raw error). BEGIN and the statements
 * go in one round trip (pipeline()). With `writeAhead`, COMMIT waits for it
 * (NewUserRequest.writeAhead); WriteAheadFailed rolls back too.
 */
export async function inTransaction(client: PoolClient, statements: string[], writeAhead?: Promise<void>): Promise<void> {
  await retryTransient(async () => {
    const failed = await senderFor(statements)(client, [{ text: 'BEGIN' }, ...withLock(statements)]);
    try {
      if (failed) throw failed.err;
      await awaitWriteAhead([{ writeAhead }]);
      await exec(client, 'COMMIT');
    } catch (err) {
      await exec(client, 'ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

export async function roleOid(client: PoolClient, username: string): Promise<number | null> {
  const result = await exec<{ oid: number }>(client, 'SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1', [username]);
  return result.rows[0]?.oid ?? null;
}
