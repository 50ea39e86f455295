// Stored rows as both backends hold them (the same table and column names in
// SQLite and PostgreSQL, see migrations.ts and pg-migrations.ts), and their
// mapping to the Storage interface's rows. Times are epoch milliseconds.

import type { LeaseRow, SecretIdRow, TokenRow } from './storage.ts';

export interface LeaseRecord {
  id: string;
  mount: string;
  role: string;
  connection: string;
  state: LeaseRow['state'];
  issue_time: number;
  expire_time: number;
  max_expire_time: number;
  last_renewal: number | null;
  due_at: number;
  attempts: number;
  last_error: string | null;
  token_hash: string | null;
  sealed: Buffer;
}

export interface TokenRecord {
  id_hash: string;
  accessor_hash: string;
  parent_hash: string | null;
  expires_at: number | null;
  uses_left: number | null;
  sealed: Buffer;
  auth_mount: string | null;
}

export interface SecretIdRecord {
  id_hash: string;
  accessor_hash: string;
  mount: string;
  role: string;
  expires_at: number | null;
  uses_left: number | null;
  sealed: Buffer;
}

/** LeaseRow field → column, for partial updates. */
export const LEASE_COLUMNS: Record<keyof Omit<LeaseRow, 'id'>, string> = {
  mount: 'mount',
  role: 'role',
  connection: 'connection',
  state: 'state',
  issueTime: 'issue_time',
  expireTime: 'expire_time',
  maxExpireTime: 'max_expire_time',
  lastRenewal: 'last_renewal',
  dueAt: 'due_at',
  attempts: 'attempts',
  lastError: 'last_error',
  tokenHash: 'token_hash',
  sealed: 'sealed',
};

export function toLease(r: LeaseRecord): LeaseRow {
  return {
    id: r.id,
    mount: r.mount,
    role: r.role,
    connection: r.connection,
    state: r.state,
    issueTime: r.issue_time,
    expireTime: r.expire_time,
    maxExpireTime: r.max_expire_time,
    lastRenewal: r.last_renewal,
    dueAt: r.due_at,
    attempts: r.attempts,
    lastError: r.last_error,
    tokenHash: r.token_hash,
    sealed: r.sealed,
  };
}

export function toToken(r: TokenRecord): TokenRow {
  return {
    idHash: r.id_hash,
    accessorHash: r.accessor_hash,
    parentHash: r.parent_hash,
    expiresAt: r.expires_at,
    usesLeft: r.uses_left,
    sealed: r.sealed,
    authMount: r.auth_mount,
  };
}

export function toSecretId(r: SecretIdRecord): SecretIdRow {
  return { idHash: r.id_hash, accessorHash: r.accessor_hash, mount: r.mount, role: r.role, expiresAt: r.expires_at, usesLeft: r.uses_left, sealed: r.sealed };
}
