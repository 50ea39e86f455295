// Errors the client SDK throws: the broker answered with an error status, or
// could not be reached at all (connection refused, reset, timeout).

/**
 * The broker answered `status` (4xx/5xx) with Vault's error body
 * `{"errors":[...]}`; `errors` holds those messages.
 */
export class BrokerRequestError extends Error {
  override name = 'BrokerRequestError';
  constructor(
    readonly status: number,
    readonly errors: string[],
    readonly method: string,
    readonly path: string,
    /** The raw response text (Vault's error JSON); never contains a secret of ours. */
    readonly body: string,
  ) {
    super(`${method} /v1/${path}: ${status} ${errors.join('; ') || 'no error message'}`);
  }
}

/** The broker could not be reached (network error or timeout); `cause` is the underlying error. */
export class BrokerUnreachableError extends Error {
  override name = 'BrokerUnreachableError';
  constructor(
    readonly method: string,
    readonly path: string,
    cause: unknown,
  ) {
    super(`${method} /v1/${path}: broker unreachable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * Worth retrying later: the broker was unreachable, sealed or overloaded
 * (network error, 5xx, 429). Anything else (400, 403, 404) is an answer.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof BrokerUnreachableError) return true;
  if (err instanceof BrokerRequestError) return err.status >= 500 || err.status === 429;
  return false;
}

/** The broker refused the token (403): log in again, then retry. */
export function isPermissionDenied(err: unknown): boolean {
  return err instanceof BrokerRequestError && err.status === 403;
}
