// sys/metrics (Vault's path): the Prometheus exposition with
// `?format=prometheus`, prom-client's JSON without it. Needs a token whose
// policy allows read on sys/metrics, unless the config sets
// telemetry.unauthenticated_metrics_access (then it also answers while
// sealed, so a scraper can see dbroker_sealed; Vault docs, "telemetry"
// stanza: unauthenticated_metrics_access).

import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import type { BrokerMetrics } from '../metrics/metrics.ts';

/**
 * The sys/metrics route. `unauthenticated`: telemetry.unauthenticated_metrics_access.
 * @throws BrokerError 400 for a `format` other than prometheus or json.
 */
export function metricsRoutes(metrics: Pick<BrokerMetrics, 'prometheus' | 'json'>, unauthenticated: boolean): Route[] {
  return [
    {
      methods: ['GET'],
      pattern: 'sys/metrics',
      auth: unauthenticated ? 'none' : 'token',
      ...(unauthenticated ? { sealedOk: true } : {}),
      async handler(ctx) {
        const format = ctx.query.format ?? '';
        if (format === 'prometheus') {
          const { text, contentType } = await metrics.prometheus();
          return { raw: text, contentType };
        }
        if (format !== '' && format !== 'json') throw errors.BAD_FIELD('format', 'must be "prometheus" or "json" (the default)');
        return { raw: await metrics.json() };
      },
    },
  ];
}
