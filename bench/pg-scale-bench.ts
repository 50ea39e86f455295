// The PostgreSQL store with many leases (a measurement, never a test): a real
// broker on a fresh store database, 1,000,000 lease rows added to it (not due
// for a year, so the revocation loop leaves them alone), then for each size:
// restart, unseal, and time unseal → first served credential, and the
// broker's RSS after it. Nothing on the unseal path may grow with the lease
// count. The store database and the users made are dropped at the end.
//
//   node --import tsx bench/pg-scale-bench.ts [--max 1000000]

import { parseArgs } from 'node:util';
import { initAndUnseal, pgStoreConfig, startBroker, unseal } from '../test/support/broker.ts';
import { createStoreDatabase } from '../test/support/pg-store.ts';
import { adminQuery, trustPostgres } from '../test/support/scram-postgres.ts';
import { findPidByArgument, rssMiB } from './process-rss.ts';

const { values } = parseArgs({ options: { max: { type: 'string', default: '1000000' } } });
const MAX = Number(values.max);
const progress = (m: string): void => void process.stderr.write(`pg-scale-bench: ${m}\n`);

const db = await createStoreDatabase('scalebench');
const target = await trustPostgres();
const broker = await startBroker({ config: pgStoreConfig(db.url) });
const prefix = `psb${Date.now() % 100000}`;
try {
  const { rootToken, keys } = await initAndUnseal(broker);
  const api = (method: string, path: string, body?: unknown) => broker.api(method, path, { token: rootToken, ...(body !== undefined ? { body } : {}) });
  const conn = await api('PUT', 'database/config/main', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${target.host}:${target.port}/postgres`,
    username: target.adminUser,
    password: target.adminPassword,
    allowed_roles: '*',
  });
  if (conn.status >= 300) throw new Error(conn.text);
  const role = await api('PUT', 'database/roles/app', {
    db_name: 'main',
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
    username_template: `{{ printf "${prefix}%s" (random 20) }}`,
    default_ttl: '1h',
  });
  if (role.status >= 300) throw new Error(role.text);

  console.log('leases in the store | unseal → first creds (ms) | broker RSS after (MiB)');
  const yearAhead = Date.now() + 365 * 86_400_000;
  let rows = 0;
  for (const size of [0, 10_000, 100_000, MAX].filter((s, i, a) => s <= MAX && a.indexOf(s) === i)) {
    if (size > rows) {
      progress(`adding leases up to ${size}`);
      await db.query(
        `INSERT INTO dbroker_leases (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, due_at, sealed)
         SELECT 'database/creds/app/bench' || lpad(i::text, 8, '0'), 'database/', 'app', 'main', 'active', 0, $1::bigint, $1::bigint, $1::bigint, '\\x00'
         FROM generate_series($2::int, $3::int) AS i`,
        [yearAhead, rows + 1, size],
      );
      await db.query('ANALYZE dbroker_leases');
      rows = size;
    }
    await broker.restart();
    const started = performance.now();
    await unseal(broker, keys);
    const creds = await api('GET', 'database/creds/app');
    const ms = performance.now() - started;
    if (creds.status !== 200) throw new Error(creds.text);
    const rss = rssMiB(findPidByArgument(broker.configPath));
    console.log(`${String(size).padStart(19)} | ${ms.toFixed(0).padStart(25)} | ${rss.toFixed(0).padStart(22)}`);
    await api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id });
  }
} finally {
  await broker.stop();
  broker.remove();
  await db.drop();
  const left = await adminQuery<{ rolname: string }>(target, 'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix]);
  for (const r of left) await adminQuery(target, `DROP ROLE IF EXISTS "${r.rolname}"`);
}
