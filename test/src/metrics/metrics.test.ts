// sys/metrics against a real broker process and the real PostgreSQL: after
// issuing, renewing, revoking, a revocation and an issuance that fail (the
// database cut through a TCP proxy), root rotations that succeed and fail,
// and an audit device that cannot write, the Prometheus exposition (parsed
// strictly) carries the right counters and gauges, with no secret in it.
// Also: who may scrape (token + policy, or unauthenticated by config, then
// even while sealed), and a bad format is a 400.

import { after, before, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { eventually, initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { TcpProxy } from '../../support/tcp-proxy.ts';
import { configureConnection, createRole, dropRolesWithPrefix, issueCreds, prefixTemplate, startPgBroker, tag, type Creds, type PgBroker } from '../../support/pg-broker.ts';
import { find, parseExposition, value, type Exposition } from '../../support/prom-text.ts';
import { IRREVOCABLE_AFTER } from '../../../src/leases/lease-manager.ts';

const run = tag();
const userPrefix = `tm${run}`;
const admin = `tmadmin${run}`;
let server: TestPostgres;
let pb: PgBroker;
let proxy: TcpProxy;

async function scrape(token: string | null = pb.root, broker: BrokerProcess = pb.broker): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(`${broker.url}/v1/sys/metrics?format=prometheus`, { headers: token ? { 'x-vault-token': token } : {} });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

async function exposition(): Promise<Exposition> {
  const r = await scrape();
  assert.equal(r.status, 200, r.text);
  return parseExposition(r.text);
}

before(async () => {
  server = await trustPostgres();
  // A root login of our own, so rotating it never touches the shared superuser.
  await adminQuery(server, `CREATE ROLE "${admin}" WITH LOGIN CREATEROLE PASSWORD 'initial-pw-${run}'`);
  proxy = new TcpProxy(server.host, server.port);
  await proxy.up();
  pb = await startPgBroker();
  const root = { ...server, adminUser: admin, adminPassword: `initial-pw-${run}` };
  await configureConnection(pb, root, 'main');
  await configureConnection(pb, { ...root, port: proxy.port }, 'flaky');
  await createRole(pb, 'ma', { db_name: 'main', default_ttl: '1h', username_template: prefixTemplate(userPrefix) });
  await createRole(pb, 'mb', { db_name: 'flaky', default_ttl: '1h', username_template: prefixTemplate(userPrefix) });
});

after(async () => {
  await pb?.close();
  await proxy?.down();
  if (server) {
    await dropRolesWithPrefix(server, userPrefix);
    await adminQuery(server, `DROP ROLE IF EXISTS "${admin}"`).catch(() => undefined);
    await server.stop();
  }
});

test('the exposition counts issuing, renewing, revoking, failures and rotations, with no secret in it', async () => {
  const started = Date.now() / 1000;
  const good: Creds[] = [];
  for (let i = 0; i < 3; i++) good.push(await issueCreds(pb, 'ma'));
  const flaky = await issueCreds(pb, 'mb');
  assert.equal((await pb.api('PUT', 'sys/leases/renew', { lease_id: good[0]!.leaseId, increment: '30m' })).status, 200);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: good[1]!.leaseId })).status, 204);
  assert.equal((await pb.api('PUT', 'database/rotate-root/main')).status, 204);
  // An audit device that cannot write (ENOSPC) beside one that can: requests go on, failures are counted.
  assert.equal((await pb.api('PUT', 'sys/audit/good', { type: 'file', options: { file_path: `${pb.broker.dir}/audit.log` } })).status, 204);
  assert.equal((await pb.api('PUT', 'sys/audit/full', { type: 'file', options: { file_path: '/dev/full', mode: '000' } })).status, 204);
  assert.equal((await pb.api('GET', 'sys/audit')).status, 200);
  assert.equal((await pb.api('DELETE', 'sys/audit/full')).status, 204);

  await proxy.down();
  const revoke = await pb.api('PUT', 'sys/leases/revoke', { lease_id: flaky.leaseId });
  assert.ok(revoke.status >= 400, revoke.text);
  const failedIssue = await pb.api('GET', 'database/creds/mb');
  assert.ok(failedIssue.status >= 400, failedIssue.text);
  assert.ok((await pb.api('PUT', 'database/rotate-root/flaky')).status >= 400);

  const exp = await exposition();
  const db = { mount: 'database/' };
  assert.equal(value(exp, 'dbroker_creds_issued_total', { ...db, role: 'ma', connection: 'main' }), 3);
  assert.equal(value(exp, 'dbroker_creds_issued_total', { ...db, role: 'mb', connection: 'flaky' }), 1);
  assert.equal(value(exp, 'dbroker_creds_failed_total', { ...db, role: 'mb', connection: 'flaky' }), 1);
  assert.equal(value(exp, 'dbroker_creds_failed_total', { ...db, role: 'ma', connection: 'main' }), undefined);
  assert.equal(value(exp, 'dbroker_revocations_total', { ...db, connection: 'main', outcome: 'ok' }), 1);
  assert.ok((value(exp, 'dbroker_revocations_total', { ...db, connection: 'flaky', outcome: 'failed' }) ?? 0) >= 1);
  assert.equal(value(exp, 'dbroker_revocations_total', { ...db, connection: 'flaky', outcome: 'ok' }), undefined);
  // Active leases come from the store: two of "ma" left; "mb"'s one is being revoked, not active.
  assert.equal(value(exp, 'dbroker_leases_active', { ...db, role: 'ma' }), 2);
  assert.equal(value(exp, 'dbroker_leases_active', { ...db, role: 'mb' }) ?? 0, 0);
  assert.equal(value(exp, 'dbroker_root_rotations_total', { ...db, connection: 'main', outcome: 'ok' }), 1);
  assert.equal(value(exp, 'dbroker_root_rotations_total', { ...db, connection: 'flaky', outcome: 'failed' }), 1);
  const last = value(exp, 'dbroker_root_rotation_last_success_timestamp_seconds', { ...db, connection: 'main' });
  assert.ok(last !== undefined && last >= started - 1 && last <= Date.now() / 1000 + 1, `last rotation ${last}`);
  assert.equal(value(exp, 'dbroker_root_rotation_last_success_timestamp_seconds', { ...db, connection: 'flaky' }), undefined);
  assert.ok((value(exp, 'dbroker_audit_device_failures_total', { device: 'full/' }) ?? 0) >= 2);
  assert.equal(value(exp, 'dbroker_audit_device_failures_total', { device: 'good/' }), undefined);
  assert.equal(value(exp, 'dbroker_sealed'), 0);
  assert.equal(value(exp, 'dbroker_initialized'), 1);
  assert.equal(value(exp, 'dbroker_db_pool_max_open', { ...db, connection: 'main' }), 4);
  assert.equal(value(exp, 'dbroker_db_pool_in_use', { ...db, connection: 'main' }), 0);
  const lag = value(exp, 'dbroker_revocation_lag_seconds');
  assert.ok(lag !== undefined && lag >= 0 && lag < 5, `lag ${lag}`);
  assert.equal(exp.types.get('dbroker_http_request_duration_seconds'), 'histogram');

  // Requests are labelled by route pattern, method and status.
  assert.equal(value(exp, 'dbroker_http_requests_total', { method: 'GET', route: 'database/creds/:name', status: '200' }), 4);
  assert.equal(value(exp, 'dbroker_http_requests_total', { method: 'PUT', route: 'sys/leases/renew', status: '200' }), 1);
  assert.equal(value(exp, 'dbroker_http_requests_total', { method: 'PUT', route: 'sys/leases/revoke', status: '204' }), 1);
  assert.equal(value(exp, 'dbroker_http_requests_total', { method: 'PUT', route: 'database/rotate-root/:name', status: '204' }), 1);
  assert.equal(value(exp, 'dbroker_http_request_duration_seconds_count', { method: 'GET', route: 'database/creds/:name', status: '200' }), 4);
  const buckets = find(exp, 'dbroker_http_request_duration_seconds_bucket', { method: 'GET', route: 'database/creds/:name', status: '200' });
  assert.ok(buckets.length > 5);
  assert.equal(buckets.find((b) => b.labels.le === '+Inf')?.value, 4);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'cumulative buckets');
  // Every route label is a pattern, never a raw path.
  for (const s of find(exp, 'dbroker_http_requests_total')) assert.ok(!/creds\/m[ab]|\/[A-Za-z0-9]{24}/.test(s.labels.route!), String(s.labels.route));

  // No secret, username or lease id anywhere in the exposition.
  const text = (await scrape()).text;
  for (const c of [...good, flaky]) {
    for (const secret of [c.password, c.username, c.leaseId, c.leaseId.split('/').pop() ?? c.leaseId]) assert.ok(!text.includes(secret), 'the exposition must not contain credentials or lease ids');
  }
  assert.ok(!text.includes(pb.root));

  // The lease whose database is gone becomes irrevocable (5 attempts with ~1 s doubling backoff).
  await eventually(async () => (value(await exposition(), 'dbroker_leases_irrevocable') ?? 0) >= 1, 60_000, 'an irrevocable lease in the metrics');
  const later = await exposition();
  assert.equal(value(later, 'dbroker_leases_irrevocable'), 1);
  assert.ok((value(later, 'dbroker_revocations_total', { ...db, connection: 'flaky', outcome: 'failed' }) ?? 0) >= IRREVOCABLE_AFTER);

  // Database back: the loop revokes it, and the counters say so.
  await proxy.up();
  await eventually(async () => (value(await exposition(), 'dbroker_leases_irrevocable') ?? 0) === 0, 60_000, 'the stuck lease revoked');
  assert.ok((value(await exposition(), 'dbroker_revocations_total', { ...db, connection: 'flaky', outcome: 'ok' }) ?? 0) >= 1);
});

test('static role rotations: ok and failed counted by mount and role, last success time', async () => {
  const users = [`${userPrefix}s1`, `${userPrefix}s2`];
  for (const u of users) await adminQuery(server, `CREATE ROLE "${u}" WITH LOGIN PASSWORD 'x'`);
  const t0 = Date.now() / 1000;
  assert.equal((await pb.api('PUT', 'database/static-roles/s1', { db_name: 'main', username: users[0], rotation_period: '1h' })).status, 204);
  assert.equal((await pb.api('PUT', 'database/static-roles/s2', { db_name: 'flaky', username: users[1], rotation_period: '1h' })).status, 204);
  const first = await exposition();
  const importRotations = value(first, 'dbroker_static_role_rotations_total', { mount: 'database/', role: 's1', outcome: 'ok' }) ?? 0;
  assert.equal((await pb.api('PUT', 'database/rotate-role/s1')).status, 204);
  await proxy.down();
  try {
    assert.ok((await pb.api('PUT', 'database/rotate-role/s2')).status >= 400);
  } finally {
    await proxy.up();
  }
  const exp = await exposition();
  assert.equal(value(exp, 'dbroker_static_role_rotations_total', { mount: 'database/', role: 's1', outcome: 'ok' }), importRotations + 1);
  assert.equal(value(exp, 'dbroker_static_role_rotations_total', { mount: 'database/', role: 's2', outcome: 'failed' }), 1);
  assert.equal(value(exp, 'dbroker_static_role_rotations_total', { mount: 'database/', role: 's1', outcome: 'failed' }), undefined);
  const last = value(exp, 'dbroker_static_role_rotation_last_success_timestamp_seconds', { mount: 'database/', role: 's1' });
  assert.ok(last !== undefined && last >= t0 - 1 && last <= Date.now() / 1000 + 1, `last ${last}`);
  for (const r of ['s1', 's2']) assert.equal((await pb.api('DELETE', `database/static-roles/${r}`)).status, 204);
});

test('scraping needs a token allowed to read sys/metrics; a bad format is a 400', async () => {
  assert.equal((await scrape(null)).status, 403);
  const plain = await pb.api('PUT', 'auth/token/create', { policies: ['default'] });
  assert.equal((await scrape(plain.body.auth.client_token)).status, 403);
  assert.equal((await pb.api('PUT', 'sys/policies/acl/scraper', { policy: 'path "sys/metrics" { capabilities = ["read"] }' })).status, 204);
  const scraper = await pb.api('PUT', 'auth/token/create', { policies: ['scraper'] });
  const ok = await scrape(scraper.body.auth.client_token);
  assert.equal(ok.status, 200);
  assert.match(ok.type ?? '', /^text\/plain; version=0\.0\.4/);
  parseExposition(ok.text);
  const bad = await pb.api('GET', 'sys/metrics?format=xml');
  assert.equal(bad.status, 400);
  assert.match(bad.body.errors[0], /format/);
  const json = await pb.api('GET', 'sys/metrics');
  assert.equal(json.status, 200);
  assert.ok(Array.isArray(json.body) && json.body.some((m: { name: string }) => m.name === 'dbroker_sealed'));
});

test('every metric the Grafana dashboard and the alert rules use is in the exposition', async () => {
  const exp = await exposition();
  const root = resolve(import.meta.dirname, '../../..');
  for (const file of ['deploy/grafana-dashboard.json', 'deploy/prometheus-alerts.yml']) {
    const names = new Set([...readFileSync(join(root, file), 'utf8').matchAll(/\bdbroker_[a-z_]+/g)].map((m) => m[0]));
    assert.ok(names.size >= 8, `${file} uses ${names.size} metrics`);
    for (const name of names) assert.ok(exp.types.has(name) || exp.types.has(name.replace(/_(bucket|count|sum)$/, '')), `${file}: ${name} is not a metric`);
  }
  const dashboard = JSON.parse(readFileSync(join(root, 'deploy/grafana-dashboard.json'), 'utf8'));
  assert.ok(dashboard.panels.length >= 10);
});

test('telemetry.unauthenticated_metrics_access: no token needed, and the sealed state is visible', async () => {
  const broker = await startBroker({ config: { telemetry: { unauthenticated_metrics_access: true } } });
  try {
    const uninit = await scrape(null, broker);
    assert.equal(uninit.status, 200, uninit.text);
    assert.equal(value(parseExposition(uninit.text), 'dbroker_initialized'), 0);
    const { rootToken } = await initAndUnseal(broker);
    assert.equal(value(parseExposition((await scrape(null, broker)).text), 'dbroker_sealed'), 0);
    assert.equal((await broker.api('PUT', 'sys/seal', { token: rootToken })).status, 204);
    const sealed = await scrape(null, broker);
    assert.equal(sealed.status, 200, sealed.text);
    const exp = parseExposition(sealed.text);
    assert.equal(value(exp, 'dbroker_sealed'), 1);
    assert.equal(value(exp, 'dbroker_initialized'), 1);
  } finally {
    await broker.stop();
    broker.remove();
  }
});

test('the environment variable sets it too, and a bad value names the field', async () => {
  const { loadConfig, ConfigError } = await import('../../../src/config.ts');
  const base = { DBROKER_STORAGE_PATH: '/tmp/x.db' };
  assert.equal(loadConfig(undefined, base).unauthenticatedMetricsAccess, false);
  assert.equal(loadConfig(undefined, { ...base, DBROKER_TELEMETRY_UNAUTHENTICATED_METRICS_ACCESS: 'true' }).unauthenticatedMetricsAccess, true);
  assert.throws(() => loadConfig(undefined, { ...base, DBROKER_TELEMETRY_UNAUTHENTICATED_METRICS_ACCESS: 'yes' }), (err: unknown) => err instanceof ConfigError && /telemetry\.unauthenticated_metrics_access/.test(err.message));
});
