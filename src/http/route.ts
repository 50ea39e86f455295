// Route definitions and matching. Paths are Vault paths without `/v1/`.
// Patterns: `sys/leases/lookup`, `config/:name` (one segment),
// `sys/leases/revoke-prefix/*prefix` (the rest, may contain `/`).

import type { Token } from '../auth/token-store.ts';

export type Method = 'GET' | 'PUT' | 'DELETE' | 'LIST' | 'HEAD';

export interface RequestContext {
  method: Method;
  path: string;
  params: Record<string, string>;
  body: Record<string, unknown>;
  query: Record<string, string>;
  /** Set for routes with auth 'token'. */
  token?: Token;
  /** The caller's own token as sent (lookup-self echoes it, as Vault does); never log it. */
  tokenSecret?: string;
  /** The mount path (with trailing slash) for routes inside a mount. */
  mount?: string;
  requestId: string;
  /** The client's address (for the audit log). */
  remoteAddress?: string;
}

export interface Reply {
  status?: number;
  /** A body sent as is (sys/init, sys/health, ...), not in the envelope. */
  raw?: unknown;
  /** Media type of a raw string body (sys/metrics' Prometheus text); JSON otherwise. */
  contentType?: string;
  data?: unknown;
  leaseId?: string;
  leaseDuration?: number;
  renewable?: boolean;
  warnings?: string[];
  auth?: unknown;
  /** A login's new token: the audit entry of the response shows it as the request's auth (as Vault's does). Never sent. */
  issuedToken?: Token;
}

export interface Route {
  methods: Method[];
  pattern: string;
  /** JSON schema for the body (PUT) or query (GET); compiled once. */
  schema?: Record<string, unknown>;
  /** 'none': open even while sealed or without a token. */
  auth: 'none' | 'token';
  /** Works while sealed (only the seal endpoints). */
  sealedOk?: boolean;
  /** Needs the root policy (sudo paths). */
  sudo?: boolean;
  /**
   * GET on this route changes state (database/creds issues a lease), so HEAD
   * is refused with 405 instead of being run as a GET without a body
   * (RFC 9110 §9.3.2: HEAD is GET without the content, and must be safe).
   */
  getChangesState?: boolean;
  handler(ctx: RequestContext): Promise<Reply | undefined>;
}

interface CompiledPattern {
  segments: string[];
  rest: string | undefined;
}

export function compilePattern(pattern: string): CompiledPattern {
  const segments = pattern.split('/');
  const last = segments[segments.length - 1]!;
  if (last.startsWith('*')) return { segments: segments.slice(0, -1), rest: last.slice(1) };
  return { segments, rest: undefined };
}

/** Match `path` against a compiled pattern, returning the params or undefined. */
export function matchPattern(p: CompiledPattern, path: string): Record<string, string> | undefined {
  return matchParts(p, path.split('/'));
}

/** matchPattern for a path already split on "/" (to split it once for many patterns). */
export function matchParts(p: CompiledPattern, parts: string[]): Record<string, string> | undefined {
  if (p.rest === undefined ? parts.length !== p.segments.length : parts.length < p.segments.length) return undefined;
  // Literal segments first: most patterns tried for a path do not match, and need no params object.
  for (let i = 0; i < p.segments.length; i++) {
    const seg = p.segments[i]!;
    const part = parts[i]!;
    if (seg.startsWith(':') ? part === '' : seg !== part) return undefined;
  }
  const params: Record<string, string> = {};
  for (let i = 0; i < p.segments.length; i++) {
    const seg = p.segments[i]!;
    if (seg.startsWith(':')) params[seg.slice(1)] = parts[i]!;
  }
  if (p.rest !== undefined) params[p.rest] = parts.slice(p.segments.length).join('/');
  return params;
}
