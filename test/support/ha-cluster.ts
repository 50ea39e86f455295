// Three (or n) real broker processes in HA on one PostgreSQL store (a fresh
// database per cluster), initialised through the first and unsealed each.

import assert from 'node:assert/strict';
import { initAndUnseal, pgStoreConfig, startBroker, unseal, type ApiResponse, type BrokerProcess } from './broker.ts';
import { createStoreDatabase, type StoreDatabase } from './pg-store.ts';

export interface HaCluster {
  nodes: BrokerProcess[];
  store: StoreDatabase;
  root: string;
  keys: string[];
  /** The node whose sys/health says 200 now (polls until exactly one does). */
  active(timeoutMs?: number, among?: BrokerProcess[]): Promise<BrokerProcess>;
  api(node: BrokerProcess, method: string, path: string, body?: unknown): Promise<ApiResponse>;
  /** The store's fencing number. */
  fence(): Promise<number>;
  close(): Promise<void>;
}

export async function healthOf(node: BrokerProcess): Promise<number> {
  try {
    const res = await fetch(`${node.url}/v1/sys/health`, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

export async function startHaCluster(
  n = 3,
  opts: { leaseDuration?: string; env?: Record<string, string>; envFor?: (i: number) => Record<string, string>; config?: Record<string, unknown>; storeUrlFor?: (i: number, url: string) => string } = {},
): Promise<HaCluster> {
  const store = await createStoreDatabase('ha');
  const nodes: BrokerProcess[] = [];
  try {
    for (let i = 0; i < n; i++) {
      nodes.push(
        await startBroker({
          config: { ...pgStoreConfig(opts.storeUrlFor ? opts.storeUrlFor(i, store.url) : store.url), ha: { enabled: true, lease_duration: opts.leaseDuration ?? '3s' }, ...opts.config },
          configFor: (port) => ({ api_addr: `http://127.0.0.1:${port}` }),
          stickyPort: true,
          env: { ...opts.env, ...opts.envFor?.(i) },
        }),
      );
    }
    const { rootToken, keys } = await initAndUnseal(nodes[0]!);
    for (const node of nodes.slice(1)) await unseal(node, keys);
    const cluster: HaCluster = {
      nodes,
      store,
      root: rootToken,
      keys,
      async active(timeoutMs = 15_000, among = nodes) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const codes: number[] = await Promise.all(among.map((node) => healthOf(node)));
          const up: BrokerProcess[] = among.filter((_, i) => codes[i] === 200);
          if (up.length === 1) return up[0]!;
          assert.ok(up.length <= 1, `more than one node is active: ${codes.join(',')}`);
          if (Date.now() > deadline) throw new Error(`no active node after ${timeoutMs} ms (health ${codes.join(',')})`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      api: (node, method, path, body) => node.api(method, path, { token: rootToken, ...(body !== undefined ? { body } : {}) }),
      async fence() {
        return Number((await store.query<{ fence: string }>('SELECT fence FROM dbroker_ha_leader WHERE id = 1'))[0]!.fence);
      },
      async close() {
        for (const node of nodes) {
          node.signal('SIGCONT');
          await node.stop().catch(() => undefined);
          node.remove();
        }
        await store.drop();
      },
    };
    return cluster;
  } catch (err) {
    for (const node of nodes) await node.kill().catch(() => undefined);
    await store.drop();
    throw err;
  }
}
