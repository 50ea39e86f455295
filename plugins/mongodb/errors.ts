// Turning MongoDB driver errors into engine errors without leaking secrets.

import {
  MongoClientClosedError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoParseError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from 'mongodb';
import { EngineConnectionError, EngineInputError, scrubSecrets } from '../../src/engine/engine.ts';

export const CODE = {
  BAD_VALUE: 2,
  FAILED_TO_PARSE: 9,
  USER_NOT_FOUND: 11,
  UNAUTHORIZED: 13,
  TYPE_MISMATCH: 14,
  AUTHENTICATION_FAILED: 18,
  ROLE_NOT_FOUND: 31,
  COMMAND_NOT_FOUND: 59,
  INVALID_NAMESPACE: 73,
  NOT_IMPLEMENTED: 238,
  DUPLICATE_KEY: 11000,
  USER_ALREADY_EXISTS: 51003,
} as const;

// Server answers that mean the request itself was wrong (and, for createUser,
// that nothing was created): a 400, not a retryable failure.
const INPUT_CODES = new Set<number>([
  CODE.BAD_VALUE,
  CODE.FAILED_TO_PARSE,
  CODE.TYPE_MISMATCH,
  CODE.ROLE_NOT_FOUND,
  CODE.INVALID_NAMESPACE,
]);

export function serverCode(err: unknown): number | undefined {
  return err instanceof MongoServerError && typeof err.code === 'number' ? err.code : undefined;
}

/** The server does not have this command (or this form of it): FerretDB for killAllSessionsByPattern. */
export function isUnsupported(err: unknown): boolean {
  const code = serverCode(err);
  return code === CODE.COMMAND_NOT_FOUND || code === CODE.NOT_IMPLEMENTED;
}

export function isConnectionFailure(err: unknown): boolean {
  return (
    err instanceof MongoNetworkError ||
    err instanceof MongoServerSelectionError ||
    err instanceof MongoTopologyClosedError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoClientClosedError ||
    serverCode(err) === CODE.AUTHENTICATION_FAILED
  );
}

function describe(err: unknown): string {
  if (err instanceof MongoServerError) {
    const name = err.codeName ?? (typeof err.code === 'number' ? `code ${err.code}` : undefined);
    return name ? `${name}: ${err.message}` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Rethrow anything as an engine error, with `context` and a scrubbed message. */
export function engineError(err: unknown, context: string, secrets: ReadonlyArray<string | undefined>): Error {
  const scrub = (message: string): string => scrubSecrets(message, secrets);
  if (err instanceof EngineInputError) return new EngineInputError(scrub(err.message));
  if (err instanceof EngineConnectionError) return new EngineConnectionError(scrub(err.message));
  const message = scrub(`${context}: ${describe(err)}`);
  if (isConnectionFailure(err)) return new EngineConnectionError(message);
  if (err instanceof MongoParseError) return new EngineInputError(message);
  const code = serverCode(err);
  if (code !== undefined && INPUT_CODES.has(code)) return new EngineInputError(message);
  return new Error(message);
}
