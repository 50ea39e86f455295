// Where a scrape reads the broker's state: seal status, lease counts from
// storage (grouped and indexed queries, nothing held per lease), and each
// mount's connections and static roles (their sealed records, so only while
// unsealed).

import type { Broker } from '../broker.ts';
import { IRREVOCABLE_AFTER } from '../leases/lease-manager.ts';
import type { ConnectionGauge, MetricsSource, StaticRoleGauge } from './metrics.ts';

/** The `MetricsSource` of a broker. Reads happen at scrape time only. */
export function brokerMetricsSource(broker: Broker): MetricsSource {
  return {
    seal: () => ({ sealed: broker.seal.sealed, initialized: broker.seal.initialized }),
    activeLeases: () => broker.storage.activeLeaseCounts(),
    irrevocableLeases: () => broker.storage.countLeases({ minAttempts: IRREVOCABLE_AFTER }),
    oldestDueAt: (now) => broker.storage.oldestDueAt(now),
    async connections() {
      if (broker.seal.sealed) return [];
      const out: ConnectionGauge[] = [];
      for (const mount of broker.mounts.list()) {
        const backend = broker.mounts.backend(mount.path);
        if (!backend) continue;
        for (const name of await backend.connections.names()) {
          const rec = await backend.connections.read(name);
          if (!rec) continue;
          out.push({
            mount: mount.path,
            connection: name,
            inUse: backend.connections.inUse(name),
            maxOpen: rec.maxOpenConnections,
            ...(rec.rotation?.lastRotation ? { lastRootRotation: rec.rotation.lastRotation } : {}),
          });
        }
      }
      return out;
    },
    async staticRoles() {
      if (broker.seal.sealed) return [];
      const out: StaticRoleGauge[] = [];
      for (const mount of broker.mounts.list()) {
        const store = broker.mounts.backend(mount.path)?.staticRoles.store;
        if (!store) continue;
        for (const name of await store.names()) {
          const rec = await store.read(name);
          if (rec) out.push({ mount: mount.path, role: name, ...(rec.lastVaultRotation ? { lastRotation: rec.lastVaultRotation } : {}) });
        }
      }
      return out;
    },
  };
}
