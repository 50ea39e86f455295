// A real broker process for one engine's bench: its own temp store (via the
// test harness), initialised, unsealed, with the engine configured as the
// connection "bench".

import { initAndUnseal, startBroker, type ApiResponse, type BrokerProcess } from '../test/support/broker.ts';
import { findPidByArgument, rssMiB } from './process-rss.ts';
import type { BenchTarget } from './targets/target.ts';

export const CONNECTION = 'bench';

export interface RoleSettings {
  /** Every user of the role starts with this (letters and digits). */
  usernamePrefix: string;
  defaultTtl: number;
  maxTtl: number;
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

  async writeRole(name: string, target: BenchTarget, settings: RoleSettings): Promise<void> {
    await this.expect(204, 'PUT', `database/roles/${name}`, {
      db_name: CONNECTION,
      creation_statements: target.creationStatements,
      default_ttl: settings.defaultTtl,
      max_ttl: settings.maxTtl,
      username_template: `${settings.usernamePrefix}{{random 12}}`,
    }, 200);
  }

  /** Issue one credential; returns its lease id. */
  async issue(role: string): Promise<string> {
    const res = await this.expect(200, 'GET', `database/creds/${role}`);
    return res.body.lease_id as string;
  }

  async leaseCount(): Promise<number> {
    const res = await this.expect(200, 'GET', 'sys/leases/count');
    return Number(res.body.data.lease_count);
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
