// The shape of one audit line, close to Vault's: `{time, type, auth,
// request, response?, error?}`. What is hashed (see hash.ts):
// - auth: client_token, accessor and metadata values; policies,
//   display_name, entity_id, token_type and numbers stay clear.
// - request: client_token, client_token_accessor and every string in data;
//   id, operation, path, mount_type and remote_address stay clear.
// - response: every string in data and in auth (as above); secret.lease_id
//   and warnings stay clear, as in Vault.
// - error: clear (error messages never carry secret values).

import type { Token } from '../auth/token-store.ts';
import type { Reply, RequestContext } from '../http/route.ts';
import { hashValues, type AuditHasher } from './hash.ts';

export interface AuditSubject {
  req: Omit<RequestContext, 'params'>;
  tokenSecret: string | undefined;
  /** Set once the token resolved (also for a request its policies then deny). */
  token?: Token;
  /**
   * The stored id hash of `tokenSecret`, set when the request's own token
   * resolved (so its hashes can be memoized per device, see TokenHashMemo).
   * `token` may later name another token (a login's issued one); this stays
   * the caller's.
   */
  tokenSecretIdHash?: string;
  mount?: string;
  /** The mount's type when it is not a database mount (an auth method: "approle", ...). */
  mountType?: string;
}

const AUTH_CLEAR: ReadonlySet<string> = new Set(['policies', 'token_policies', 'identity_policies', 'display_name', 'entity_id', 'token_type']);

const OPERATIONS: Record<string, string> = { GET: 'read', HEAD: 'read', PUT: 'update', DELETE: 'delete', LIST: 'list' };

function mountType(s: AuditSubject): string {
  if (s.mountType !== undefined) return s.mountType;
  if (s.mount !== undefined) return 'database';
  if (s.req.path.startsWith('auth/token')) return 'token';
  if (s.req.path.startsWith('sys')) return 'system';
  return '';
}

function clientToken(key: AuditHasher, s: AuditSubject, secret: string): string {
  return s.tokenSecretIdHash !== undefined ? key.tokenSecret(secret, s.tokenSecretIdHash) : key.hash(secret);
}

function authView(key: AuditHasher, s: AuditSubject): Record<string, unknown> {
  const t = s.token;
  const out: Record<string, unknown> = {};
  if (s.tokenSecret !== undefined) out.client_token = clientToken(key, s, s.tokenSecret);
  if (!t) return out;
  return {
    ...out,
    accessor: key.tokenAccessor(t.accessor, t.idHash),
    display_name: t.displayName,
    policies: t.policies,
    token_policies: t.policies,
    metadata: Object.keys(t.meta).length > 0 ? hashValues(key, t.meta) : null,
    entity_id: t.entityId,
    token_type: 'service',
    token_ttl: t.ttl,
    token_issue_time: new Date(t.creationTime).toISOString(),
  };
}

function requestData(req: AuditSubject['req']): Record<string, unknown> | null {
  const data: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(req.query)) if (k !== 'list') data[k] = v;
  Object.assign(data, req.body);
  return Object.keys(data).length > 0 ? data : null;
}

function requestView(key: AuditHasher, s: AuditSubject): Record<string, unknown> {
  return {
    id: s.req.requestId,
    operation: OPERATIONS[s.req.method] ?? s.req.method.toLowerCase(),
    mount_type: mountType(s),
    ...(s.mount !== undefined ? { mount_point: s.mount } : {}),
    ...(s.tokenSecret !== undefined ? { client_token: clientToken(key, s, s.tokenSecret) } : {}),
    ...(s.token ? { client_token_accessor: key.tokenAccessor(s.token.accessor, s.token.idHash) } : {}),
    namespace: { id: 'root' },
    path: s.req.path,
    data: hashValues(key, requestData(s.req)),
    remote_address: s.req.remoteAddress ?? '',
  };
}

function responseView(key: AuditHasher, s: AuditSubject, reply: Reply | undefined): Record<string, unknown> {
  const base = { mount_type: mountType(s) };
  if (!reply) return { ...base, data: null };
  if (reply.raw !== undefined) return { ...base, data: hashValues(key, reply.raw) };
  return {
    ...base,
    data: hashValues(key, reply.data ?? null),
    ...(reply.leaseId ? { secret: { lease_id: reply.leaseId } } : {}),
    ...(reply.auth ? { auth: hashValues(key, reply.auth, AUTH_CLEAR) } : {}),
    warnings: reply.warnings && reply.warnings.length > 0 ? reply.warnings : null,
  };
}

export function requestEntry(key: AuditHasher, s: AuditSubject, error?: string): Record<string, unknown> {
  return { time: new Date().toISOString(), type: 'request', auth: authView(key, s), request: requestView(key, s), ...(error !== undefined ? { error } : {}) };
}

export function responseEntry(key: AuditHasher, s: AuditSubject, reply: Reply | undefined, error?: string): Record<string, unknown> {
  return {
    time: new Date().toISOString(),
    type: 'response',
    auth: authView(key, s),
    request: requestView(key, s),
    response: responseView(key, s, reply),
    ...(error !== undefined ? { error } : {}),
  };
}
