// A real broker process for one engine's bench: its own temp store (via the
// test harness), initialised, unsealed, with the engine configured as the
// connection "bench".

import { initAndUnseal, startBroker, type ApiResponse, type BrokerProcess } from '../test/support/broker.ts';
import { HttpClient } from './http-client.ts';
import { findPidByArgument, rssMiB } from './process-rss.ts';
import type { BenchTarget } from './targets/target.ts';

export const CONNECTION = 'bench';

export interface RoleSettings {
  /** Creation statements (broker templates). */
  statements: string[];
  /** Every user of the role starts with this (letters and digits). */
  usernamePrefix: string;
  defaultTtl: number;
  maxTtl: number;
}

/** Event-loop delay over a window, in ms. */
export interface EventLoopLag {
  p99: number;
  max: number;
}

export class BenchBroker {
  private constructor(
    readonly process: BrokerProcess,
    readonly token: string,
    private readonly pid: number | undefined,
  ) {}

  static async start(target: BenchTarget): Promise<BenchBroker> {
    const broker = await startBroker();
    try {
      const { rootToken } = await initAndUnseal(broker);
      const bench = new BenchBroker(broker, rootToken, findPidByArgument(broker.configPath));
      await bench.expect(200, 'PUT', `database/config/${CONNECTION}`, await target.connectionConfig(), 204);
      return bench;
    } catch (err) {
      await broker.stop();
      broker.remove();
      throw err;
    }
  }

  /** Call the API; throw (with the broker's message) unless the status is one of `ok`. */
  async expect(ok: number, method: string, path: string, body?: unknown, alsoOk?: number): Promise<ApiResponse> {
    const res = await this.process.api(method, path, { token: this.token, ...(body !== undefined ? { body } : {}) });
    if (res.status !== ok && res.status !== alsoOk) throw new Error(`${method} ${path} answered ${res.status}: ${res.text.slice(0, 300)}`);
    return res;
  }

  async writeRole(name: string, settings: RoleSettings): Promise<void> {
    await this.expect(204, 'PUT', `database/roles/${name}`, {
      db_name: CONNECTION,
      creation_statements: settings.statements,
      default_ttl: settings.defaultTtl,
      max_ttl: settings.maxTtl,
      username_template: `${settings.usernamePrefix}{{random 12}}`,
    }, 200);
  }

  /** A keep-alive client for load, `sockets` connections at most; close it after use. */
  client(sockets: number): HttpClient {
    return new HttpClient(this.process.url, sockets);
  }

  /** Issue one credential through `client`; returns its lease id. */
  async issue(client: HttpClient, role: string): Promise<string> {
    const res = await client.expect(200, 'GET', `/v1/database/creds/${role}`, { token: this.token });
    return (JSON.parse(res.text) as { lease_id: string }).lease_id;
  }

  /** Leases whose id starts with `prefix` (all leases without one). */
  async leaseCount(prefix?: string): Promise<number> {
    const res = await this.expect(200, 'GET', `sys/leases/count${prefix ? `?prefix=${encodeURIComponent(prefix)}` : ''}`);
    return Number(res.body.data.lease_count);
  }

  /**
   * The broker's event-loop delay (p99, max) since the previous call, in ms: prom-client's
   * default metrics (perf_hooks monitorEventLoopDelay, sampled every 10 ms),
   * whose histogram is reset by each scrape of sys/metrics. Call once to
   * start a window, again to read it.
   */
  async eventLoopLag(): Promise<EventLoopLag> {
    const res = await this.expect(200, 'GET', 'sys/metrics?format=prometheus');
    const read = (name: string): number => {
      const line = res.text.split('\n').find((l) => l.startsWith(`dbroker_nodejs_eventloop_lag_${name}_seconds `));
      return line === undefined ? NaN : Number(line.split(' ')[1]) * 1000;
    };
    return { p99: read('p99'), max: read('max') };
  }

  /** Resident memory of the broker process in MiB. */
  rss(): number {
    return rssMiB(this.pid);
  }

  async close(): Promise<void> {
    await this.process.stop();
    this.process.remove();
  }
}
