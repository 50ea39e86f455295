// sys/init, sys/unseal, sys/seal, sys/seal-status, sys/health.

import type { Broker } from '../broker.ts';
import { VERSION } from '../broker.ts';
import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { object } from '../http/schema.ts';

/** A `...code` query parameter of sys/health: an HTTP status, or the default. */
function statusParam(query: Record<string, unknown>, name: string, fallback: number): number {
  const value = query[name];
  if (value === undefined || value === '') return fallback;
  if (typeof value !== 'string' || !/^\d{3}$/.test(value) || Number(value) < 200 || Number(value) > 599) {
    throw errors.BAD_FIELD(name, 'must be an HTTP status code between 200 and 599');
  }
  return Number(value);
}

export function sealRoutes(broker: Broker): Route[] {
  const { seal } = broker;
  return [
    {
      methods: ['GET', 'PUT'],
      pattern: 'sys/init',
      auth: 'none',
      sealedOk: true,
      schema: object(
        {
          secret_shares: { type: 'integer', minimum: 1, maximum: 255 },
          secret_threshold: { type: 'integer', minimum: 1, maximum: 255 },
          // Fields Vault clients send with zero values; accepted and ignored.
          stored_shares: { type: 'integer', maximum: 0 },
          pgp_keys: { type: ['array', 'null'], maxItems: 0 },
          recovery_shares: { type: 'integer', maximum: 0 },
          recovery_threshold: { type: 'integer', maximum: 0 },
          recovery_pgp_keys: { type: ['array', 'null'], maxItems: 0 },
          root_token_pgp_key: { type: 'string', maxLength: 0 },
        },
        ['secret_shares', 'secret_threshold'],
      ),
      async handler(ctx) {
        // Another replica on a shared store may have initialised it since this one started.
        if (!seal.initialized) await seal.load();
        if (ctx.method === 'GET') return { raw: { initialized: seal.initialized } };
        const shares = ctx.body.secret_shares as number;
        const threshold = ctx.body.secret_threshold as number;
        if (threshold > shares) throw errors.BAD_FIELD('secret_threshold', 'must not exceed secret_shares');
        if (shares > 1 && threshold < 2) throw errors.BAD_FIELD('secret_threshold', 'must be at least 2 when secret_shares is more than 1');
        let rootToken = '';
        const keys = await seal.init({ shares, threshold }, async (barrier) => {
          const { secret } = await broker.tokens.create({ policies: ['root'], displayName: 'root', path: 'auth/token/root' }, barrier);
          rootToken = secret;
          await broker.mounts.createDefaults(barrier);
        });
        broker.logger.info({ shares, threshold }, 'dbroker initialized');
        return { raw: { keys: keys.map((k) => k.toString('hex')), keys_base64: keys.map((k) => k.toString('base64')), root_token: rootToken } };
      },
    },
    {
      methods: ['PUT'],
      pattern: 'sys/unseal',
      auth: 'none',
      sealedOk: true,
      schema: object({ key: { type: 'string', maxLength: 1024 }, reset: { type: 'boolean' }, migrate: { type: 'boolean', const: false } }),
      async handler(ctx) {
        if (ctx.body.reset === true) {
          seal.resetProgress();
          return { raw: seal.status() };
        }
        if (typeof ctx.body.key !== 'string') throw errors.BAD_REQUEST('missing required field "key" (or "reset": true)');
        // Another replica on a shared store may have initialised it since this one started.
        if (!seal.initialized) await seal.load();
        if (!seal.initialized) throw errors.NOT_INITIALIZED();
        if (seal.sealed && (await seal.submit(ctx.body.key))) {
          await broker.afterUnseal();
          broker.logger.info('dbroker unsealed');
        }
        return { raw: seal.status() };
      },
    },
    {
      methods: ['PUT'],
      pattern: 'sys/seal',
      auth: 'token',
      sudo: true,
      schema: object({}),
      async handler() {
        await broker.sealNow();
        broker.logger.info('dbroker sealed');
        return undefined;
      },
    },
    {
      methods: ['GET'],
      pattern: 'sys/seal-status',
      auth: 'none',
      sealedOk: true,
      async handler() {
        if (!seal.initialized) await seal.load();
        return { raw: seal.status() };
      },
    },
    {
      methods: ['GET'],
      pattern: 'sys/health',
      auth: 'none',
      sealedOk: true,
      async handler(ctx) {
        // Vault's query parameters choose the status for each state (load balancers use them);
        // all are checked, so a typo shows whatever the state.
        const codes = {
          uninit: statusParam(ctx.query, 'uninitcode', 501),
          sealed: statusParam(ctx.query, 'sealedcode', 503),
          active: statusParam(ctx.query, 'activecode', 200),
          standby: statusParam(ctx.query, 'standbycode', 429),
        };
        for (const name of ['performancestandbycode', 'drsecondarycode', 'haunhealthycode', 'removedcode']) statusParam(ctx.query, name, 0);
        // standbyok / perfstandbyok: a standby answers with the active code (Vault API docs, "/sys/health").
        const standbyOk = ['true', '1', ''].includes(ctx.query.standbyok ?? 'false') || ['true', '1', ''].includes(ctx.query.perfstandbyok ?? 'false');
        if (!seal.initialized) await seal.load();
        const standby = !seal.sealed && broker.cluster.isStandby();
        const status = !seal.initialized ? codes.uninit : seal.sealed ? codes.sealed : standby ? (standbyOk ? codes.active : codes.standby) : codes.active;
        return {
          status,
          raw: { initialized: seal.initialized, sealed: seal.sealed, standby, performance_standby: false, server_time_utc: Math.floor(Date.now() / 1000), version: VERSION },
        };
      },
    },
    {
      // `vault status` asks; without HA the broker is its own leader.
      methods: ['GET'],
      pattern: 'sys/leader',
      auth: 'none',
      handler: async () => {
        const l = await broker.cluster.leader();
        return {
          raw: {
            ha_enabled: l.haEnabled,
            is_self: l.isSelf,
            active_time: l.activeTime,
            leader_address: l.leaderAddress,
            leader_cluster_address: l.leaderClusterAddress,
            performance_standby: false,
            performance_standby_last_remote_wal: 0,
          },
        };
      },
    },
    {
      // Give up leadership; another node takes over (Vault API docs, "/sys/step-down"). A standby forwards it.
      methods: ['PUT'],
      pattern: 'sys/step-down',
      auth: 'token',
      sudo: true,
      schema: object({}),
      async handler() {
        await broker.cluster.stepDown();
        broker.logger.info('stepped down as the active node');
        return undefined;
      },
    },
  ];
}
