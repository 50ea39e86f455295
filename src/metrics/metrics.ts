// Prometheus metrics (prom-client, on a registry of our own, never the global
// one). The broker reports events through the narrow `MetricsRecorder`
// interface; gauges that describe stored state (leases, rotations, pools) are
// read from a `MetricsSource` at scrape time, so nothing here grows with the
// lease count. Labels carry only configuration names (mount, role,
// connection, audit device path) and route patterns, never a raw request
// path, a lease id, a username or any other value a client chose per request.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Events the broker reports. Every method is cheap and never throws. */
export interface MetricsRecorder {
  /**
   * One HTTP API request, after its reply or error.
   * @param route the route PATTERN that served it (`database/creds/:name`), or `(unmatched)`.
   * @param seconds wall time spent in the broker, in seconds.
   */
  request(method: string, route: string, status: number, seconds: number): void;
  /** Dynamic credentials issued (ok) or whose issuance failed after the role was found. */
  creds(labels: { mount: string; role: string; connection: string }, ok: boolean): void;
  /** One lease revocation attempt (the loop, revoke, revoke-prefix). */
  revocation(labels: { mount: string; connection: string }, ok: boolean): void;
  /** One root credential rotation (manual or scheduled). */
  rootRotation(labels: { mount: string; connection: string }, ok: boolean): void;
  /** One static role password rotation. */
  staticRotation(labels: { mount: string; role: string }, ok: boolean): void;
  /** An audit device failed to write an entry (`device` is its mount path). */
  auditFailure(device: string): void;
}

/** A recorder that records nothing (unit tests, tools). */
export const NO_METRICS: MetricsRecorder = {
  request: () => undefined,
  creds: () => undefined,
  revocation: () => undefined,
  rootRotation: () => undefined,
  staticRotation: () => undefined,
  auditFailure: () => undefined,
};

export interface ConnectionGauge {
  mount: string;
  connection: string;
  /** Engine operations running on the connection's live pool now. */
  inUse: number;
  /** The pool's bound (max_open_connections). */
  maxOpen: number;
  /** Last successful root rotation, epoch ms. */
  lastRootRotation?: number;
}

export interface StaticRoleGauge {
  mount: string;
  role: string;
  /** Last successful rotation, epoch ms. */
  lastRotation?: number;
}

/** What the scrape reads from the broker's state. */
export interface MetricsSource {
  seal(): { sealed: boolean; initialized: boolean };
  /**
   * Active leases per mount and role (a storage COUNT ... GROUP BY); undefined
   * when the storage backend cannot group (the gauge is then left out).
   */
  activeLeases(): Promise<Array<{ mount: string; role: string; count: number }> | undefined>;
  /** Leases reported irrevocable (IRREVOCABLE_AFTER failed attempts or more). */
  irrevocableLeases(): Promise<number>;
  /** The earliest due time (epoch ms) of a lease due by `now`, read through the due index; undefined if none is due. */
  oldestDueAt(now: number): Promise<number | undefined>;
  /** Connections of every mount (empty while sealed: their records are sealed). */
  connections(): Promise<ConnectionGauge[]>;
  /** Static roles of every mount (empty while sealed). */
  staticRoles(): Promise<StaticRoleGauge[]>;
}

/** Latency buckets in seconds: API calls run from sub-millisecond reads to multi-second database work. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const outcome = (ok: boolean): string => (ok ? 'ok' : 'failed');

/**
 * The broker's metrics: the recorder it calls and the registry `sys/metrics`
 * renders (Prometheus text format 0.0.4, or prom-client's JSON).
 */
export class BrokerMetrics implements MetricsRecorder {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly latency: Histogram<'method' | 'route' | 'status'>;
  /** Bounded: route patterns and statuses are finite (unmatched paths share one label). */
  private readonly requestChildren = new Map<string, { count: Counter.Internal; latency: Histogram.Internal<'method' | 'route' | 'status'> }>();
  private readonly credsIssued: Counter<'mount' | 'role' | 'connection'>;
  private readonly credsFailed: Counter<'mount' | 'role' | 'connection'>;
  private readonly revocations: Counter<'mount' | 'connection' | 'outcome'>;
  private readonly rootRotations: Counter<'mount' | 'connection' | 'outcome'>;
  private readonly staticRotations: Counter<'mount' | 'role' | 'outcome'>;
  private readonly auditFailures: Counter<'device'>;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'dbroker_' });
    this.requests = new Counter({ name: 'dbroker_http_requests_total', help: 'API requests by method, route pattern and HTTP status.', labelNames: ['method', 'route', 'status'], registers });
    this.latency = new Histogram({
      name: 'dbroker_http_request_duration_seconds',
      help: 'API request latency in seconds, by method, route pattern and HTTP status.',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.credsIssued = new Counter({ name: 'dbroker_creds_issued_total', help: 'Dynamic credentials issued, by mount, role and connection.', labelNames: ['mount', 'role', 'connection'], registers });
    this.credsFailed = new Counter({ name: 'dbroker_creds_failed_total', help: 'Dynamic credential issuances that failed, by mount, role and connection.', labelNames: ['mount', 'role', 'connection'], registers });
    this.revocations = new Counter({ name: 'dbroker_revocations_total', help: 'Lease revocation attempts by mount, connection and outcome (ok, failed).', labelNames: ['mount', 'connection', 'outcome'], registers });
    this.rootRotations = new Counter({ name: 'dbroker_root_rotations_total', help: 'Root credential rotations by mount, connection and outcome (ok, failed).', labelNames: ['mount', 'connection', 'outcome'], registers });
    this.staticRotations = new Counter({ name: 'dbroker_static_role_rotations_total', help: 'Static role password rotations by mount, role and outcome (ok, failed).', labelNames: ['mount', 'role', 'outcome'], registers });
    this.auditFailures = new Counter({ name: 'dbroker_audit_device_failures_total', help: 'Audit entries an audit device failed to write, by device path.', labelNames: ['device'], registers });

    new Gauge({
      name: 'dbroker_sealed',
      help: '1 while the broker is sealed (or not initialized), 0 when unsealed.',
      registers,
      collect() {
        this.set(source.seal().sealed ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dbroker_initialized',
      help: '1 once the broker is initialized.',
      registers,
      collect() {
        this.set(source.seal().initialized ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dbroker_leases_irrevocable',
      help: 'Leases whose revocation failed repeatedly (still retried); see sys/leases?type=irrevocable.',
      registers,
      async collect() {
        this.set(await source.irrevocableLeases());
      },
    });
    new Gauge({
      name: 'dbroker_revocation_lag_seconds',
      help: 'Age of the oldest lease that is due for revocation and not yet claimed (0 when none is due).',
      registers,
      async collect() {
        const now = Date.now();
        const due = await source.oldestDueAt(now);
        this.set(due === undefined ? 0 : Math.max(0, (now - due) / 1000));
      },
    });
    new Gauge({
      name: 'dbroker_leases_active',
      help: 'Active leases by mount and role.',
      labelNames: ['mount', 'role'],
      registers,
      async collect() {
        this.reset();
        for (const g of (await source.activeLeases()) ?? []) this.set({ mount: g.mount, role: g.role }, g.count);
      },
    });
    // One read of the connections serves the three per-connection gauges of a scrape.
    let connections: Promise<ConnectionGauge[]> | undefined;
    const readConnections = (): Promise<ConnectionGauge[]> => {
      if (!connections) {
        connections = source.connections();
        const clear = (): void => void setImmediate(() => (connections = undefined));
        connections.then(clear, clear);
      }
      return connections;
    };
    new Gauge({
      name: 'dbroker_db_pool_in_use',
      help: 'Engine operations running on each connection pool now.',
      labelNames: ['mount', 'connection'],
      registers,
      async collect() {
        this.reset();
        for (const c of await readConnections()) this.set({ mount: c.mount, connection: c.connection }, c.inUse);
      },
    });
    new Gauge({
      name: 'dbroker_db_pool_max_open',
      help: 'Upper bound of each connection pool (max_open_connections).',
      labelNames: ['mount', 'connection'],
      registers,
      async collect() {
        this.reset();
        for (const c of await readConnections()) this.set({ mount: c.mount, connection: c.connection }, c.maxOpen);
      },
    });
    new Gauge({
      name: 'dbroker_root_rotation_last_success_timestamp_seconds',
      help: 'Unix time of the last successful root credential rotation, by mount and connection (absent if never rotated).',
      labelNames: ['mount', 'connection'],
      registers,
      async collect() {
        this.reset();
        for (const c of await readConnections()) if (c.lastRootRotation) this.set({ mount: c.mount, connection: c.connection }, c.lastRootRotation / 1000);
      },
    });
    new Gauge({
      name: 'dbroker_static_role_rotation_last_success_timestamp_seconds',
      help: 'Unix time of the last successful static role rotation, by mount and role (absent if never rotated).',
      labelNames: ['mount', 'role'],
      registers,
      async collect() {
        this.reset();
        for (const r of await source.staticRoles()) if (r.lastRotation) this.set({ mount: r.mount, role: r.role }, r.lastRotation / 1000);
      },
    });
  }

  request(method: string, route: string, status: number, seconds: number): void {
    // One labelled child per (method, route pattern, status), found once: prom-client hashes the labels on every call otherwise.
    const key = `${method} ${status} ${route}`;
    let child = this.requestChildren.get(key);
    if (!child) {
      const labels = { method, route, status: String(status) };
      child = { count: this.requests.labels(labels), latency: this.latency.labels(labels) };
      this.requestChildren.set(key, child);
    }
    child.count.inc();
    child.latency.observe(seconds);
  }

  creds(labels: { mount: string; role: string; connection: string }, ok: boolean): void {
    (ok ? this.credsIssued : this.credsFailed).inc(labels);
  }

  revocation(labels: { mount: string; connection: string }, ok: boolean): void {
    this.revocations.inc({ ...labels, outcome: outcome(ok) });
  }

  rootRotation(labels: { mount: string; connection: string }, ok: boolean): void {
    this.rootRotations.inc({ ...labels, outcome: outcome(ok) });
  }

  staticRotation(labels: { mount: string; role: string }, ok: boolean): void {
    this.staticRotations.inc({ ...labels, outcome: outcome(ok) });
  }

  auditFailure(device: string): void {
    this.auditFailures.inc({ device });
  }

  /** The exposition in Prometheus text format; `contentType` is its media type. */
  async prometheus(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  /** prom-client's JSON rendering (what `sys/metrics` answers without `format=prometheus`). */
  json(): Promise<unknown> {
    return this.registry.getMetricsAsJSON();
  }
}
