import { initAndUnseal, startBroker, unseal, pgStoreConfig } from '/work/wt-u/test/support/broker.ts';
import { createStoreDatabase } from '/work/wt-u/test/support/pg-store.ts';
import { trustPostgres, adminQuery } from '/work/wt-u/test/support/scram-postgres.ts';
const target = await trustPostgres();
const pgDb = process.argv[2] === 'pg' ? await createStoreDatabase('trace') : undefined;
const broker = await startBroker({ env: { DBROKER_TRACE: '1' }, ...(pgDb ? { config: pgStoreConfig(pgDb.url) } : {}) });
const prefix = `trc${Date.now() % 100000}`;
try {
  const { rootToken, keys } = await initAndUnseal(broker);
  const api = (m: string, p: string, b?: unknown) => broker.api(m, p, { token: rootToken, ...(b !== undefined ? { body: b } : {}) });
  await api('PUT', 'database/config/main', { plugin_name: 'postgresql-database-plugin', connection_url: `postgres://{{username}}:{{password}}@${target.host}:${target.port}/postgres`, username: target.adminUser, password: target.adminPassword, allowed_roles: '*' });
  await api('PUT', 'database/roles/app', { db_name: 'main', creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`], username_template: `{{ printf "${prefix}%s" (random 20) }}`, default_ttl: '1h' });
  const N = Number(process.argv[3] ?? 0);
  if (N > 0) {
    const t = await api('GET', 'database/creds/app');
    const YEAR = Date.now() + 365 * 86_400_000;
    if (pgDb) {
      await pgDb.query(`INSERT INTO dbroker_leases (id, mount, role, connection, state, issue_time, last_renewal, attempts, last_error, token_hash, sealed, expire_time, max_expire_time, due_at)
       SELECT 'database/creds/app/copy' || lpad(i::text, 8, '0'), mount, role, connection, state, issue_time, last_renewal, attempts, last_error, token_hash, sealed, $1::bigint, $1::bigint, $1::bigint
       FROM dbroker_leases, generate_series(1, $2::int) AS i WHERE id = $3`, [YEAR, N, t.body.lease_id]);
      await pgDb.query('ANALYZE dbroker_leases');
    }
    console.log('filled', N);
  }
  for (let r = 0; r < 3; r++) {
    await broker.restart({ DBROKER_TRACE: '1' });
    const before = broker.logs.length;
    const t = performance.now();
    await unseal(broker, keys);
    const t1 = performance.now();
    const c = await api('GET', 'database/creds/app');
    const t2 = performance.now();
    await new Promise((r) => setTimeout(r, 50));
    console.log(`round ${r}: unseal ${(t1 - t).toFixed(1)} creds ${(t2 - t1).toFixed(1)} total ${(t2 - t).toFixed(1)} status ${c.status}`);
    console.log(broker.logs.slice(before).split('\n').filter((l) => l.startsWith('TRACE')).join('\n'));
  }
} finally {
  await broker.stop(); broker.remove(); await pgDb?.drop();
  for (const r of await adminQuery<{ rolname: string }>(target, 'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix])) await adminQuery(target, `DROP ROLE IF EXISTS "${r.rolname}"`);
}
