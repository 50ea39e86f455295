// sys/leases/*: lookup, list, renew, revoke, revoke-prefix, revoke-force,
// and the irrevocable listing and counts. Vault's older aliases
// (sys/renew, sys/revoke, sys/revoke-prefix) answer too.

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { duration, durationField, object } from '../http/schema.ts';
import { IRREVOCABLE_AFTER } from '../leases/lease-manager.ts';
import type { LeaseStatus } from '../storage/storage.ts';

const LIST_LIMIT = 10_000;
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

function leaseView(row: LeaseStatus): Record<string, unknown> {
  const now = Date.now();
  return {
    id: row.id,
    issue_time: iso(row.issueTime),
    expire_time: iso(row.expireTime),
    last_renewal: iso(row.lastRenewal),
    renewable: row.state === 'active' && row.expireTime > now && row.maxExpireTime > now,
    ttl: Math.max(0, Math.round((row.expireTime - now) / 1000)),
    // Beyond Vault: how revocation is going, for a lease whose revocation has failed.
    ...(row.attempts > 0
      ? { revocation_attempts: row.attempts, last_revocation_error: row.lastError, next_revocation_attempt: iso(row.dueAt), irrevocable: row.attempts >= IRREVOCABLE_AFTER }
      : {}),
  };
}

/** `limit` of the irrevocable listing: a positive integer or "none" (at most LIST_LIMIT either way). */
function listLimit(value: string | undefined): number {
  if (value === undefined || value === '') return 1000;
  if (value === 'none') return LIST_LIMIT;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw errors.BAD_FIELD('limit', 'must be a positive integer or "none"');
  return Math.min(Number(value), LIST_LIMIT);
}

export function leaseRoutes(broker: Broker): Route[] {
  const leases = broker.leases;
  const leaseIdOf = (ctx: RequestContext): string => {
    const id = (ctx.params.lease_id || ctx.body.lease_id) as string | undefined;
    if (typeof id !== 'string' || id === '') throw errors.BAD_REQUEST('missing required field "lease_id"');
    return id;
  };
  const leaseBody = object({ lease_id: { type: 'string', maxLength: 1024 }, increment: duration, sync: { type: 'boolean' } });

  const renew: Route['handler'] = async (ctx) => {
    const { row, ttl, warnings } = await leases.renew(leaseIdOf(ctx), durationField(ctx.body, 'increment') ?? 0);
    return { leaseId: row.id, leaseDuration: ttl, renewable: true, warnings };
  };
  const revoke: Route['handler'] = async (ctx) => {
    const id = leaseIdOf(ctx);
    if (ctx.body.sync === false) {
      // This lease only: revoking by prefix needs sudo (revoke-prefix).
      await leases.expedite(id);
      return { status: 202, data: null };
    }
    const warnings = await leases.revoke(id);
    return warnings.length > 0 ? { warnings } : undefined;
  };
  const revokePrefix: Route['handler'] = async (ctx) => {
    const prefix = ctx.params.prefix ?? '';
    if (prefix === '') throw errors.BAD_FIELD('prefix', 'is required (a lease id prefix, e.g. "database/creds/<role>/")');
    if (ctx.body.sync === false) {
      await leases.revokePrefix(prefix, false);
      return { status: 202, data: null };
    }
    await leases.revokePrefix(prefix, true);
    return undefined;
  };

  /**
   * Directory-style listing (Vault's LIST sys/leases/lookup/:prefix): the
   * next path segment of every lease id under `<prefix>/`, or under the top
   * level for an empty prefix. Each directory costs one query, whatever the
   * number of leases in it: the scan skips past it (ids are ASCII, so
   * `dir + U+FFFF` sorts after all of them).
   */
  const listLeases: Route['handler'] = async (ctx) => {
    const raw = ctx.params.prefix ?? '';
    const prefix = raw === '' ? '' : raw.replace(/\/*$/, '/');
    const keys: string[] = [];
    let after: string | undefined;
    let truncated = false;
    page: for (;;) {
      const ids = await broker.storage.listLeaseIds(prefix, 1000, after);
      if (ids.length === 0) break;
      for (const id of ids) {
        if (keys.length >= LIST_LIMIT) {
          truncated = true;
          break page;
        }
        const rest = id.slice(prefix.length);
        const slash = rest.indexOf('/');
        if (slash === -1) {
          keys.push(rest);
          after = id;
          continue;
        }
        const dir = rest.slice(0, slash + 1);
        keys.push(dir);
        after = prefix + dir + '\uffff';
        continue page;
      }
    }
    if (keys.length === 0) throw errors.ENTRY_NOT_FOUND(ctx.path);
    return { data: { keys }, ...(truncated ? { warnings: [`listing stopped after ${LIST_LIMIT} keys; use a longer prefix`] } : {}) };
  };

  return [
    {
      methods: ['PUT'],
      pattern: 'sys/leases/lookup',
      auth: 'token',
      schema: leaseBody,
      handler: async (ctx) => ({ data: leaseView(await leases.status(leaseIdOf(ctx))) }),
    },
    // LIST sys/leases/lookup/ (the top level) arrives without its slash.
    { methods: ['LIST'], pattern: 'sys/leases/lookup', auth: 'token', sudo: true, handler: listLeases },
    { methods: ['LIST'], pattern: 'sys/leases/lookup/*prefix', auth: 'token', sudo: true, handler: listLeases },
    { methods: ['PUT'], pattern: 'sys/leases/renew', auth: 'token', schema: leaseBody, handler: renew },
    { methods: ['PUT'], pattern: 'sys/leases/renew/*lease_id', auth: 'token', schema: leaseBody, handler: renew },
    { methods: ['PUT'], pattern: 'sys/renew', auth: 'token', schema: leaseBody, handler: renew },
    { methods: ['PUT'], pattern: 'sys/renew/*lease_id', auth: 'token', schema: leaseBody, handler: renew },
    { methods: ['PUT'], pattern: 'sys/leases/revoke', auth: 'token', schema: leaseBody, handler: revoke },
    { methods: ['PUT'], pattern: 'sys/leases/revoke/*lease_id', auth: 'token', schema: leaseBody, handler: revoke },
    { methods: ['PUT'], pattern: 'sys/revoke', auth: 'token', schema: leaseBody, handler: revoke },
    { methods: ['PUT'], pattern: 'sys/revoke/*lease_id', auth: 'token', schema: leaseBody, handler: revoke },
    { methods: ['PUT'], pattern: 'sys/leases/revoke-prefix/*prefix', auth: 'token', sudo: true, schema: object({ sync: { type: 'boolean' } }), handler: revokePrefix },
    { methods: ['PUT'], pattern: 'sys/revoke-prefix/*prefix', auth: 'token', sudo: true, schema: object({ sync: { type: 'boolean' } }), handler: revokePrefix },
    {
      methods: ['PUT'],
      pattern: 'sys/leases/revoke-force/*prefix',
      auth: 'token',
      sudo: true,
      schema: object({}),
      async handler(ctx) {
        const prefix = ctx.params.prefix ?? '';
        if (prefix === '') throw errors.BAD_REQUEST('revoke-force needs a prefix');
        const n = await leases.forget(prefix);
        broker.logger.warn({ prefix, leases: n }, 'leases forgotten by revoke-force; their database users were NOT dropped');
        return undefined;
      },
    },
    {
      methods: ['GET'],
      pattern: 'sys/leases/count',
      auth: 'token',
      sudo: true,
      async handler(ctx) {
        const type = ctx.query.type;
        if (type !== undefined && type !== '' && type !== 'irrevocable' && type !== 'all') throw errors.BAD_FIELD('type', 'must be "irrevocable" or "all"');
        const irrevocable = type === 'irrevocable';
        // Beyond Vault: `prefix` counts the leases under a lease id prefix (the CLI's revoke-prefix progress).
        const prefix = ctx.query.prefix;
        if (prefix !== undefined && (typeof prefix !== 'string' || prefix.length > 1024)) throw errors.BAD_FIELD('prefix', 'must be one lease id prefix (at most 1024 characters)');
        const n = await broker.storage.countLeases({ ...(irrevocable ? { minAttempts: IRREVOCABLE_AFTER } : {}), ...(prefix ? { prefix } : {}) });
        return { data: { lease_count: n, counts: null } };
      },
    },
    {
      methods: ['GET'],
      pattern: 'sys/leases',
      auth: 'token',
      sudo: true,
      async handler(ctx) {
        if (ctx.query.type !== 'irrevocable') throw errors.BAD_FIELD('type', 'only "irrevocable" is supported');
        const limit = listLimit(ctx.query.limit);
        const rows = await broker.storage.listFailingLeases(IRREVOCABLE_AFTER, limit);
        const total = await broker.storage.countLeases({ minAttempts: IRREVOCABLE_AFTER });
        return {
          data: {
            lease_count: total,
            leases: rows.map((r) => ({ lease_id: r.id, mount_id: r.mount, connection: r.connection, attempts: r.attempts, error: r.lastError, next_attempt: iso(r.dueAt) })),
          },
        };
      },
    },
  ];
}
