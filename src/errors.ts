// One registry of coded errors, in the manner of fastify's lib/errors.js:
// DBR_ERR_<AREA>_<WHAT>, an HTTP status, and a message template whose %s
// slots are filled in order. Messages never carry secret values.

export class BrokerError extends Error {
  override name = 'BrokerError';
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

type ErrorFactory = ((...args: Array<string | number>) => BrokerError) & { code: string; statusCode: number };

function define(code: string, statusCode: number, template: string): ErrorFactory {
  const factory = (...args: Array<string | number>): BrokerError => {
    let i = 0;
    const message = template.replace(/%s/g, () => String(args[i++] ?? ''));
    return new BrokerError(code, statusCode, message);
  };
  return Object.assign(factory, { code, statusCode });
}

export const errors = {
  // request shape
  BAD_REQUEST: define('DBR_ERR_REQUEST_INVALID', 400, '%s'),
  BAD_FIELD: define('DBR_ERR_REQUEST_FIELD', 400, 'invalid field "%s": %s'),
  BAD_JSON: define('DBR_ERR_REQUEST_JSON', 400, 'malformed JSON body: %s'),
  JSON_TOO_DEEP: define('DBR_ERR_REQUEST_JSON_DEPTH', 400, 'malformed JSON body: nested deeper than %s levels (max_json_depth)'),
  UNSUPPORTED_HEADER: define('DBR_ERR_REQUEST_HEADER', 400, 'header %s is not supported: %s'),
  BODY_TOO_LARGE: define('DBR_ERR_REQUEST_TOO_LARGE', 413, 'request body is larger than %s bytes'),
  NOT_FOUND: define('DBR_ERR_ROUTE_NOT_FOUND', 404, 'no handler for route "%s"'),
  ENTRY_NOT_FOUND: define('DBR_ERR_ENTRY_NOT_FOUND', 404, 'nothing is stored at "%s"'),
  EMPTY_LIST: define('DBR_ERR_ENTRY_EMPTY_LIST', 404, 'no entries under "%s"'),
  METHOD_NOT_ALLOWED: define('DBR_ERR_ROUTE_METHOD', 405, 'method %s is not supported on "%s"'),
  UNSUPPORTED_MEDIA: define('DBR_ERR_REQUEST_MEDIA_TYPE', 415, 'unsupported content type "%s"'),

  // auth
  PERMISSION_DENIED: define('DBR_ERR_AUTH_DENIED', 403, 'permission denied'),
  TOKEN_NOT_RENEWABLE: define('DBR_ERR_AUTH_NOT_RENEWABLE', 400, 'token is not renewable'),
  TOKEN_NOT_FOUND: define('DBR_ERR_AUTH_TOKEN_NOT_FOUND', 400, 'token not found'),
  BAD_TOKEN: define('DBR_ERR_AUTH_BAD_TOKEN', 403, 'bad token'),

  // auth methods (sys/auth, logins)
  AUTH_METHOD_TYPE: define('DBR_ERR_AUTH_METHOD_TYPE', 400, 'unsupported auth method type "%s" (supported: approle, jwt, oidc, kubernetes, userpass)'),
  AUTH_MOUNT_NOT_FOUND: define('DBR_ERR_AUTH_MOUNT_NOT_FOUND', 400, 'no auth method enabled at "%s"'),
  /** A login refused for its credentials (Vault answers these with 400). */
  LOGIN_FAILED: define('DBR_ERR_AUTH_LOGIN', 400, '%s'),
  /** A login whose credentials are valid but not allowed here (bound claims, CIDRs). */
  LOGIN_DENIED: define('DBR_ERR_AUTH_LOGIN_DENIED', 403, '%s'),
  /** A Vault field dbroker does not implement: refused rather than ignored. */
  UNSUPPORTED_FIELD: define('DBR_ERR_REQUEST_UNSUPPORTED', 400, 'field "%s" is not supported by dbroker: %s'),
  /** An identity provider (JWKS, OIDC discovery, Kubernetes TokenReview) could not be used. */
  AUTH_UPSTREAM: define('DBR_ERR_AUTH_UPSTREAM', 502, '%s'),

  // seal
  SEALED: define('DBR_ERR_SEAL_SEALED', 503, 'dbroker is sealed'),
  // HA: a write or an action of a node that lost leadership (src/ha/, fencing).
  NOT_ACTIVE: define('DBR_ERR_HA_NOT_ACTIVE', 503, 'this node is no longer the active node (%s); retry'),
  NOT_INITIALIZED: define('DBR_ERR_SEAL_NOT_INITIALIZED', 400, 'dbroker is not initialized'),
  ALREADY_INITIALIZED: define('DBR_ERR_SEAL_ALREADY_INITIALIZED', 400, 'dbroker is already initialized'),
  BAD_UNSEAL_KEY: define('DBR_ERR_SEAL_BAD_KEY', 400, '%s'),
  UNSEAL_FAILED: define('DBR_ERR_SEAL_COMBINE', 400, 'the unseal keys do not combine to the root key; progress was reset, submit the keys again'),

  // barrier
  DECRYPT_FAILED: define('DBR_ERR_BARRIER_DECRYPT', 500, 'stored record "%s" failed to decrypt'),
  UNKNOWN_KEY_TERM: define('DBR_ERR_BARRIER_TERM', 500, 'stored record "%s" uses unknown key term %s'),

  // mounts
  MOUNT_EXISTS: define('DBR_ERR_MOUNT_EXISTS', 400, 'path is already in use at "%s"'),
  MOUNT_TYPE: define('DBR_ERR_MOUNT_TYPE', 400, 'unsupported mount type "%s" (only "database")'),
  MOUNT_RESERVED: define('DBR_ERR_MOUNT_RESERVED', 400, 'cannot mount at reserved path "%s"'),
  MOUNT_NOT_FOUND: define('DBR_ERR_MOUNT_NOT_FOUND', 400, 'no mount at "%s"'),

  // database engine
  CONNECTION_NOT_FOUND: define('DBR_ERR_DB_CONNECTION_NOT_FOUND', 400, 'no database connection named "%s"'),
  ROLE_NOT_FOUND: define('DBR_ERR_DB_ROLE_NOT_FOUND', 400, 'unknown role: %s'),
  ROLE_NOT_ALLOWED: define('DBR_ERR_DB_ROLE_NOT_ALLOWED', 400, 'role "%s" is not allowed by connection "%s" (allowed_roles)'),
  UNKNOWN_PLUGIN: define('DBR_ERR_DB_PLUGIN', 400, 'unknown plugin_name "%s"'),
  ENGINE_INPUT: define('DBR_ERR_DB_INPUT', 400, '%s'),
  ENGINE_CONNECTION: define('DBR_ERR_DB_UNREACHABLE', 502, 'database connection "%s" failed: %s'),
  /**
   * The database refused at one of its own limits (an EngineLimitError, e.g. a
   * PostgreSQL object's ACL row is full) and nothing was created. 409, not
   * 500: the request is valid but conflicts with the database's current state,
   * which the operator can change (RFC 9110 §15.5.10); not a 5xx because
   * Vault's Go client retries those, and a retry cannot succeed until the state changes.
   */
  ENGINE_LIMIT: define('DBR_ERR_DB_LIMIT', 409, 'database connection "%s" is at a limit of the database: %s'),
  ENGINE_FAILED: define('DBR_ERR_DB_FAILED', 500, 'database operation on "%s" failed: %s'),
  IN_USE: define('DBR_ERR_DB_IN_USE', 409, '%s "%s" still has %s active lease(s); revoke them first (e.g. sys/leases/revoke-prefix/%s)'),

  // leases
  LEASE_NOT_FOUND: define('DBR_ERR_LEASE_NOT_FOUND', 400, 'lease not found'),
  LEASE_NOT_RENEWABLE: define('DBR_ERR_LEASE_NOT_RENEWABLE', 400, 'lease is not renewable: %s'),
  LEASE_PAST_MAX: define('DBR_ERR_LEASE_PAST_MAX', 400, 'lease is past its max_ttl and cannot be renewed'),
  REVOCATION_FAILED: define('DBR_ERR_LEASE_REVOKE', 500, 'revocation failed and will be retried: %s'),

  // audit
  AUDIT_FAILED: define('DBR_ERR_AUDIT_FAILED', 500, 'no audit device could record this request, so it was refused (audit devices fail closed; the broker log names the device)'),
  AUDIT_NOT_FOUND: define('DBR_ERR_AUDIT_NOT_FOUND', 400, 'no audit device at "%s"'),

  // config
  CONFIG_INVALID: define('DBR_ERR_CONFIG_INVALID', 400, 'invalid configuration field "%s": %s'),
} as const;

export function isBrokerError(err: unknown): err is BrokerError {
  return err instanceof BrokerError;
}

/** The message of anything thrown (for logs and recorded errors). */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
