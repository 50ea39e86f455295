// HA benchmark (a measurement, never a test): three real broker processes in
// HA on one PostgreSQL store (a fresh database on the local server, also the
// target database), then
//   1. creds/s by concurrent clients through the active node and through a
//      standby (the forwarding overhead);
//   2. takeover time over K kills (-9) of the active node: kill, time until a
//      survivor answers sys/health 200, restart and unseal the killed node.
// Every database user it creates is revoked (and a final sweep by prefix
// drops leftovers). The cluster helpers are the tests' (test/support/).
//
//   node --import tsx bench/ha-bench.ts [--kills 20] [--lease 8s] [--seconds 10] [--clients 8]

import { parseArgs } from 'node:util';
import { startHaCluster, type HaCluster } from '../test/support/ha-cluster.ts';
import { unseal, type BrokerProcess } from '../test/support/broker.ts';
import { dropRolesWithPrefix, prefixTemplate, tag } from '../test/support/pg-broker.ts';
import { trustPostgres } from '../test/support/scram-postgres.ts';
import { fmt, percentile, perSecond } from './stats.ts';

const { values } = parseArgs({
  options: { kills: { type: 'string', default: '20' }, lease: { type: 'string', default: '8s' }, seconds: { type: 'string', default: '10' }, clients: { type: 'string', default: '8' } },
});
const KILLS = Number(values.kills);
const SECONDS = Number(values.seconds);
const CLIENTS = Number(values.clients);
const progress = (m: string): void => void process.stderr.write(`ha-bench: ${m}\n`);

async function credsPerSecond(cluster: HaCluster, node: BrokerProcess): Promise<{ rate: number; p50: number; p99: number; errors: number }> {
  const deadline = Date.now() + SECONDS * 1000;
  const latencies: number[] = [];
  let errors = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (Date.now() < deadline) {
        const t = performance.now();
        const r = await cluster.api(node, 'GET', 'database/creds/app');
        if (r.status === 200) latencies.push(performance.now() - t);
        else errors++;
      }
    }),
  );
  return { rate: perSecond(latencies.length, Date.now() - started), p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

async function main(): Promise<void> {
  const target = await trustPostgres();
  const prefix = `hab${tag()}_`;
  progress(`starting 3 nodes (lease ${values.lease})`);
  const cluster = await startHaCluster(3, { leaseDuration: values.lease! });
  try {
    let active = await cluster.active(30_000);
    const admin = new URL(target.url);
    let r = await cluster.api(active, 'PUT', 'database/config/pg', {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgres://{{username}}:{{password}}@${admin.host}/postgres`,
      username: target.adminUser,
      password: target.adminPassword,
      allowed_roles: '*',
      max_open_connections: 16,
    });
    if (r.status !== 204) throw new Error(r.text);
    r = await cluster.api(active, 'PUT', 'database/roles/app', {
      db_name: 'pg',
      creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
      default_ttl: '1h',
      username_template: prefixTemplate(prefix),
    });
    if (r.status !== 204) throw new Error(r.text);

    progress(`creds/s for ${SECONDS} s with ${CLIENTS} clients, through the active node, then through a standby`);
    const direct = await credsPerSecond(cluster, active);
    await cluster.api(active, 'PUT', 'sys/leases/revoke-prefix/database/creds/app/', {});
    const standby = cluster.nodes.find((n) => n !== active)!;
    const forwarded = await credsPerSecond(cluster, standby);
    await cluster.api(active, 'PUT', 'sys/leases/revoke-prefix/database/creds/app/', {});

    const takeovers: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const survivors = cluster.nodes.filter((n) => n !== active);
      const t = Date.now();
      await active.kill();
      const next = await cluster.active(60_000, survivors);
      takeovers.push(Date.now() - t);
      progress(`kill ${k + 1}/${KILLS}: takeover in ${takeovers[k]} ms`);
      await active.start();
      await unseal(active, cluster.keys);
      active = next;
    }

    console.log('\nHA benchmark (3 nodes, one machine, local PostgreSQL as store and target)');
    console.log(`creds/s through the active : ${fmt(direct.rate, 1)} (p50 ${fmt(direct.p50, 1)} ms, p99 ${fmt(direct.p99, 1)} ms, errors ${direct.errors})`);
    console.log(`creds/s through a standby  : ${fmt(forwarded.rate, 1)} (p50 ${fmt(forwarded.p50, 1)} ms, p99 ${fmt(forwarded.p99, 1)} ms, errors ${forwarded.errors})`);
    if (takeovers.length > 0) {
      console.log(
        `takeover after kill -9 over ${takeovers.length} kills, lease ${values.lease}: min ${Math.min(...takeovers)} ms, p50 ${percentile(takeovers, 50)} ms, p95 ${percentile(takeovers, 95)} ms, max ${Math.max(...takeovers)} ms`,
      );
    }
  } finally {
    await cluster.close();
    await dropRolesWithPrefix(target, prefix);
    await target.stop();
  }
}

await main();
