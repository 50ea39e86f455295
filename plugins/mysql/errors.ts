// Turning mysql2 errors into engine errors without leaking secrets.

import { EngineConnectionError, EngineInputError, scrubSecrets } from '../../src/engine/engine.ts';
import { mysqlDialect } from './dialect.ts';

/** The fields of a mysql2 error we look at. */
export interface MysqlError {
  message: string;
  code?: string;
  errno?: number;
  fatal?: boolean;
}

export function asMysqlError(err: unknown): MysqlError {
  if (err instanceof Error) return err as MysqlError;
  return { message: String(err) };
}

export const ER_NO_SUCH_THREAD = 1094;
/** ER_CANNOT_USER: "Operation CREATE USER failed for …" (the account exists, or is a role). */
export const ER_CANNOT_USER = 1396;

// Server errors that mean "the admin could not log in / get a session".
// 1044 (access denied to a database) and 1049 (unknown database) are not
// among them: a statement gets them too (a GRANT the admin may not give);
// at login the engine reports them as EngineConnectionError itself.
const LOGIN_ERRNOS = new Set([
  1040, // too many connections
  1045, // access denied (bad password)
  1129, // host blocked
  1130, // host not allowed
  1203, // max_user_connections
  1226, // user resource limit
  3118, // MySQL: account locked
  4151, // MariaDB: account locked
]);

export function isConnectionFailure(err: MysqlError): boolean {
  if (err.fatal) return true;
  if (err.errno !== undefined && LOGIN_ERRNOS.has(err.errno)) return true;
  const code = err.code ?? '';
  return /^(E[A-Z]+|PROTOCOL_|HANDSHAKE_)/.test(code) && !code.startsWith('ER_');
}

/**
 * Redact secrets from a server message. MySQL echoes the statement text
 * after `near '`, possibly cut mid-password, and escaped; when the failing
 * statement carried a secret that snippet is dropped entirely.
 */
export function cleanMessage(message: string, secrets: ReadonlyArray<string | undefined>, statement?: string): string {
  let out = message;
  const present = secrets.filter((s): s is string => !!s && s.length > 0);
  if (statement && present.some((s) => statement.includes(mysqlDialect.escapeInQuotes(s, "'")) || statement.includes(s))) {
    out = out.replace(/ near '[\s\S]*' at line (\d+)/, ' near [the statement text is not shown: it holds a secret] at line $1');
  }
  const variants = present.flatMap((s) => [s, mysqlDialect.escapeInQuotes(s, "'"), mysqlDialect.escapeInQuotes(s, '"')]);
  return scrubSecrets(out, variants);
}

/** Rethrow anything as an engine error with a scrubbed message. */
export function engineError(
  err: unknown,
  context: string,
  secrets: ReadonlyArray<string | undefined>,
  statement?: string,
): Error {
  if (err instanceof EngineInputError) return new EngineInputError(cleanMessage(err.message, secrets));
  const e = asMysqlError(err);
  const message = `${context}: ${cleanMessage(e.message, secrets, statement)}`;
  if (err instanceof EngineConnectionError || isConnectionFailure(e)) return new EngineConnectionError(message);
  return new Error(message);
}
