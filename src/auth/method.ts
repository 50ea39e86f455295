// What an auth method (a mount under auth/) sees of the broker: its own
// sealed entries, the keyed hash, the secret-ID rows (AppRole), and a token
// issuer for a successful login. Nothing else (no Broker).

import type { Logger } from 'pino';
import type { BrokerError } from '../errors.ts';
import { errors } from '../errors.ts';
import type { Reply, RequestContext, Route } from '../http/route.ts';
import type { Storage } from '../storage/storage.ts';
import type { TokenParams } from './token-params.ts';

/** One enabled auth method, as stored under core/auth/<path> (sealed). */
export interface AuthMountEntry {
  /** "approle/" (relative to auth/, with a trailing slash). */
  path: string;
  type: AuthMethodType;
  description: string;
  uuid: string;
  /** "auth_approle_1a2b3c4d": names the mount in token lookups and the audit log. */
  accessor: string;
  createdAt: number;
  /** Seconds; 0 = the broker-wide default_lease_ttl / max_lease_ttl. */
  defaultLeaseTtl: number;
  maxLeaseTtl: number;
  listingVisibility: string;
}

export type AuthMethodType = 'approle' | 'jwt' | 'oidc' | 'kubernetes' | 'userpass';
export const AUTH_METHOD_TYPES: readonly AuthMethodType[] = ['approle', 'jwt', 'oidc', 'kubernetes', 'userpass'];

/** Sealed entries of one mount; keys are relative ("role/web"). */
export interface EntryStore {
  get<T>(key: string): Promise<T | undefined>;
  put(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  /** Keys under `prefix`, relative to it, sorted (one level: "a/b" under "" is listed as "a/b"). */
  list(prefix: string): Promise<string[]>;
}

/** What a successful login hands to the token issuer. */
export interface LoginResult {
  params: TokenParams;
  /** The method's part of the display name ("ns-sa", a username); the mount path is prefixed as Vault does. */
  displayName: string;
  /** Token metadata (shown in lookups, hashed in the audit log). */
  metadata: Record<string, string>;
  /** The identity alias name (Vault's auth.alias.name): role_id, sub claim, SA uid, username. */
  aliasName: string;
  warnings?: string[];
}

export type SecretIdStorage = Pick<
  Storage,
  'insertSecretId' | 'getSecretId' | 'getSecretIdByAccessor' | 'useSecretId' | 'deleteSecretId' | 'listSecretIds' | 'deleteSecretIds' | 'deleteExpiredSecretIds'
>;

export interface MethodContext {
  readonly mount: AuthMountEntry;
  readonly store: EntryStore;
  readonly secretIds: SecretIdStorage;
  readonly logger: Logger;
  /** Keyed hash (HMAC-SHA256 with the barrier's HMAC key), hex. */
  hmac(value: string): string;
  /** Barrier encryption with `identity` as associated data. */
  encrypt(identity: string, value: unknown): Buffer;
  decrypt<T>(identity: string, sealed: Buffer): T;
  /** Issue a token for a successful login: the Reply carries Vault's `auth` block. */
  issue(login: LoginResult, req: RequestContext): Promise<Reply>;
  /**
   * Log a failed login (the reason, the mount, the client address; never the
   * credential) and return `error` for the caller to throw.
   */
  loginFailed(req: RequestContext, reason: string, error: BrokerError): BrokerError;
}

export interface AuthMethod {
  routes(): Route[];
  close?(): void;
  /**
   * Before a token from this mount is renewed: a reason to refuse, or
   * undefined. `meta` is the token's metadata, `policies` its policies.
   */
  renewCheck?(meta: Record<string, string>, policies: string[]): Promise<string | undefined>;
}

/** Vault's renewal rule: the role still gives the token the policies it has. */
export function samePolicies(params: TokenParams, policies: string[]): boolean {
  const expected = new Set(params.policies);
  if (!params.noDefaultPolicy) expected.add('default');
  return expected.size === policies.length && policies.every((p) => expected.has(p));
}

/**
 * Refuse Vault fields dbroker does not implement (400 naming the field)
 * instead of ignoring them. `fields` maps a field name to why it is refused;
 * a field sent with its "off" value (false, "", [], {}, 0, null) is accepted
 * (Vault's Go client and CLI send every field, most of them empty).
 */
export function refuseUnsupported(body: Record<string, unknown>, fields: Record<string, string>): void {
  for (const [field, why] of Object.entries(fields)) {
    const v = body[field];
    const emptyObject = v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0;
    const off = v === undefined || v === null || v === false || v === '' || v === 0 || (Array.isArray(v) && v.length === 0) || emptyObject;
    if (!off) throw errors.UNSUPPORTED_FIELD(field, why);
  }
}

/** A schema entry that accepts any value (the handler refuses it with refuseUnsupported). */
export const anyValue = {} as const;

export function requiredString(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v === '') throw errors.BAD_REQUEST(`missing required field "${field}"`);
  return v;
}
