// sys/mounts/:path and sys/mounts/:path/tune over HTTP against a real broker
// and the shared PostgreSQL: a mount's default_lease_ttl/max_lease_ttl decide
// the TTL of creds whose role has none (Vault: role → mount → system), tune
// reads and changes them, Vault options dbroker does not apply are a 400
// naming them (accepted at their default value, as Vault clients send them),
// and unmounting one mount leaves the leases of a mount whose path merely
// starts with the same letters alone.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { dropRolesWithPrefix, LOGIN_ROLE, prefixTemplate, roleExists, rolesWithPrefix, startPgBroker, tag, templatedUrl, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const run = tag();
const userPrefix = `tm${run}`;
let server: TestPostgres;
let pb: PgBroker;

// Broker-wide ("system") TTLs of this broker.
const SYSTEM_DEFAULT = 45 * 60;
const SYSTEM_MAX = 3 * 3600;

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '45m', max_lease_ttl: '3h' } })]);
});

after(async () => {
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
});

/** A connection `main` and a role `name` on `mount`; asserts 204 for both. */
async function connectionAndRole(mount: string, role: string, fields: Record<string, unknown> = {}): Promise<void> {
  const c = await pb.api('PUT', `${mount}/config/main`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: '*',
  });
  assert.equal(c.status, 204, c.text);
  const r = await pb.api('PUT', `${mount}/roles/${role}`, { db_name: 'main', creation_statements: [LOGIN_ROLE], username_template: prefixTemplate(`${userPrefix}${role}-`), ...fields });
  assert.equal(r.status, 204, r.text);
}

async function creds(mount: string, role: string): Promise<{ leaseId: string; ttl: number; username: string; warnings: string[] | null }> {
  const r = await pb.api('GET', `${mount}/creds/${role}`);
  assert.equal(r.status, 200, r.text);
  return { leaseId: r.body.lease_id, ttl: r.body.lease_duration, username: r.body.data.username, warnings: r.body.warnings };
}

const tuneOf = async (mount: string) => {
  const r = await pb.api('GET', `sys/mounts/${mount}/tune`);
  assert.equal(r.status, 200, r.text);
  return r.body.data as { default_lease_ttl: number; max_lease_ttl: number; force_no_cache: boolean; description: string };
};

test('config.default_lease_ttl/max_lease_ttl given at mount time decide the creds TTL of a role without TTLs, and cap renewals', async () => {
  const m = await pb.api('PUT', 'sys/mounts/ttl-db', { type: 'database', config: { default_lease_ttl: '1h', max_lease_ttl: '2h' } });
  assert.ok(m.status === 204 || m.status === 200, m.text);
  const shown = await pb.api('GET', 'sys/mounts/ttl-db');
  assert.equal(shown.status, 200, shown.text);
  assert.deepEqual(shown.body.data.config, { default_lease_ttl: 3600, max_lease_ttl: 7200, force_no_cache: false });
  const listed = await pb.api('GET', 'sys/mounts');
  assert.equal(listed.body.data['ttl-db/'].config.max_lease_ttl, 7200);
  const tune = await tuneOf('ttl-db');
  assert.equal(tune.default_lease_ttl, 3600);
  assert.equal(tune.max_lease_ttl, 7200);

  await connectionAndRole('ttl-db', 'plain');
  const c = await creds('ttl-db', 'plain');
  assert.equal(c.ttl, 3600, 'no role TTL: the mount default (not the system 45m, nor 768h)');
  // Renewing past the mount max is capped at 2h from issue, with a warning.
  const renewed = await pb.api('PUT', 'sys/leases/renew', { lease_id: c.leaseId, increment: '5h' });
  assert.equal(renewed.status, 200, renewed.text);
  assert.ok(renewed.body.lease_duration <= 7200 && renewed.body.lease_duration >= 7190, renewed.text);
  assert.match(renewed.body.warnings[0], /max_ttl/);
  // Renewing without an increment: the mount default again.
  const again = await pb.api('PUT', 'sys/leases/renew', { lease_id: c.leaseId });
  assert.equal(again.body.lease_duration, 3600);

  // A role TTL still wins over the mount's; one above the mount max is refused at write, naming it.
  await connectionAndRole('ttl-db', 'short', { default_ttl: '90s' });
  assert.equal((await creds('ttl-db', 'short')).ttl, 90);
  const tooLong = await pb.api('PUT', 'ttl-db/roles/short', { db_name: 'main', max_ttl: '150m' });
  assert.equal(tooLong.status, 400, tooLong.text);
  assert.match(tooLong.body.errors[0], /max_ttl.*mount's max_lease_ttl \(7200s\)/);
  const defaultTooLong = await pb.api('PUT', 'ttl-db/roles/short', { db_name: 'main', default_ttl: '150m' });
  assert.equal(defaultTooLong.status, 400, defaultTooLong.text);
  assert.match(defaultTooLong.body.errors[0], /default_ttl/);
  // The default database/ mount is untouched: the broker-wide TTLs.
  assert.deepEqual([(await tuneOf('database')).default_lease_ttl, (await tuneOf('database')).max_lease_ttl], [SYSTEM_DEFAULT, SYSTEM_MAX]);

  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/ttl-db')).status, 204);
  assert.equal(await roleExists(server, c.username), false);
});

test('a mount max alone caps the system default; "0s" and "system" mean the broker-wide value', async () => {
  assert.equal((await pb.api('PUT', 'sys/mounts/max-only', { type: 'database', config: { max_lease_ttl: '10m' } })).status, 204);
  await connectionAndRole('max-only', 'plain');
  assert.equal((await creds('max-only', 'plain')).ttl, 600, 'the system default (45m) capped to the mount max');
  assert.deepEqual([(await tuneOf('max-only')).default_lease_ttl, (await tuneOf('max-only')).max_lease_ttl], [SYSTEM_DEFAULT, 600]);

  // What `vault secrets enable` sends without TTL flags.
  assert.equal((await pb.api('PUT', 'sys/mounts/zero', { type: 'database', config: { default_lease_ttl: '0s', max_lease_ttl: '0s', force_no_cache: false } })).status, 204);
  await connectionAndRole('zero', 'plain');
  assert.equal((await creds('zero', 'plain')).ttl, SYSTEM_DEFAULT);
  assert.equal((await pb.api('PUT', 'sys/mounts/sysval', { type: 'database', config: { default_lease_ttl: 'system', max_lease_ttl: 'system' } })).status, 204);
  assert.deepEqual((await pb.api('GET', 'sys/mounts/sysval')).body.data.config, { default_lease_ttl: 0, max_lease_ttl: 0, force_no_cache: false });
  // Seconds as a number work too.
  assert.equal((await pb.api('PUT', 'sys/mounts/numeric', { type: 'database', config: { default_lease_ttl: 120, max_lease_ttl: 240 } })).status, 204);
  assert.deepEqual([(await tuneOf('numeric')).default_lease_ttl, (await tuneOf('numeric')).max_lease_ttl], [120, 240]);

  for (const mount of ['max-only', 'zero']) assert.equal((await pb.api('PUT', `sys/leases/revoke-prefix/${mount}`)).status, 204);
  for (const mount of ['max-only', 'zero', 'sysval', 'numeric']) assert.equal((await pb.api('DELETE', `sys/mounts/${mount}`)).status, 204);
});

test('bad mount TTLs are a 400 naming the field, and nothing is mounted', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ default_lease_ttl: '2h', max_lease_ttl: '1h' }, /default_lease_ttl.*mount max_lease_ttl of 3600s/],
    [{ default_lease_ttl: '4h' }, /default_lease_ttl.*system max_lease_ttl of 10800s/],
    [{ default_lease_ttl: 'soon' }, /config\.default_lease_ttl/],
    [{ max_lease_ttl: '-5m' }, /config\.max_lease_ttl/],
    [{ max_lease_ttl: -300 }, /max_lease_ttl/],
    [{ force_no_cache: 'maybe' }, /config\.force_no_cache/],
  ];
  for (const [config, message] of cases) {
    const r = await pb.api('PUT', 'sys/mounts/bad-ttl', { type: 'database', config });
    assert.equal(r.status, 400, `${JSON.stringify(config)}: ${r.text}`);
    assert.match(r.body.errors[0], message, JSON.stringify(config));
  }
  const notObject = await pb.api('PUT', 'sys/mounts/bad-ttl', { type: 'database', config: 'x' });
  assert.equal(notObject.status, 400);
  assert.match(notObject.body.errors[0], /config/);
  assert.equal((await pb.api('GET', 'sys/mounts')).body.data['bad-ttl/'], undefined);
});

test('Vault mount options dbroker does not apply are a 400 naming them, unless given at their default', async () => {
  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ seal_wrap: true }, /"seal_wrap"/],
    [{ external_entropy_access: true }, /"external_entropy_access"/],
    [{ options: { version: '2' } }, /"options"/],
    [{ plugin_version: 'v1.2.3' }, /"plugin_version"/],
    [{ plugin_name: 'kv' }, /"plugin_name"/],
    [{ config: { audit_non_hmac_request_keys: ['password'] } }, /"config\.audit_non_hmac_request_keys"/],
    [{ config: { audit_non_hmac_response_keys: 'username' } }, /"config\.audit_non_hmac_response_keys"/],
    [{ config: { listing_visibility: 'unauth' } }, /"config\.listing_visibility"/],
    [{ config: { passthrough_request_headers: ['X-Custom'] } }, /"config\.passthrough_request_headers"/],
    [{ config: { allowed_response_headers: ['X-Custom'] } }, /"config\.allowed_response_headers"/],
    [{ config: { plugin_version: 'v1.0.0' } }, /"config\.plugin_version"/],
    [{ config: { options: { version: '2' } } }, /"config\.options"/],
    [{ config: { token_type: 'batch' } }, /"config\.token_type"/],
    [{ config: { user_lockout_config: { lockout_threshold: 3 } } }, /"config\.user_lockout_config"/],
  ];
  for (const [body, message] of refused) {
    const r = await pb.api('PUT', 'sys/mounts/opts', { type: 'database', ...body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.body.errors[0], message, JSON.stringify(body));
  }
  assert.equal((await pb.api('GET', 'sys/mounts')).body.data['opts/'], undefined, 'a refused mount leaves nothing behind');

  // What Vault clients send by default (the Go API client, the CLI) is accepted.
  const defaults = await pb.api('PUT', 'sys/mounts/opts', {
    type: 'database',
    description: 'defaults',
    local: false,
    seal_wrap: false,
    external_entropy_access: false,
    options: null,
    plugin_name: '',
    config: { default_lease_ttl: '', max_lease_ttl: '', force_no_cache: false, audit_non_hmac_request_keys: [], listing_visibility: '', options: null, plugin_name: 'database' },
  });
  assert.equal(defaults.status, 204, defaults.text);
  assert.equal((await pb.api('DELETE', 'sys/mounts/opts')).status, 204);

  // What dbroker can honour is applied and shown: local (no replication, every mount is local), force_no_cache (no cache).
  assert.equal((await pb.api('PUT', 'sys/mounts/local-one', { type: 'database', local: true, config: { force_no_cache: true } })).status, 204);
  const shown = (await pb.api('GET', 'sys/mounts/local-one')).body.data;
  assert.equal(shown.local, true);
  assert.equal(shown.config.force_no_cache, true);
  assert.equal((await tuneOf('local-one')).force_no_cache, true);
  // A config field Vault does not know is accepted with a warning.
  const unknown = await pb.api('PUT', 'sys/mounts/unknown-cfg', { type: 'database', config: { bogus: 1 } });
  assert.equal(unknown.status, 200, unknown.text);
  assert.match(unknown.body.warnings[0], /config\.bogus/);
  for (const mount of ['local-one', 'unknown-cfg']) assert.equal((await pb.api('DELETE', `sys/mounts/${mount}`)).status, 204);
});

test('tune: reads the TTLs in force, changes them (checked, all or nothing), "system" resets; survives a restart', async () => {
  assert.equal((await pb.api('PUT', 'sys/mounts/tuned', { type: 'database', description: 'before', config: { default_lease_ttl: '1h', max_lease_ttl: '2h' } })).status, 204);
  await connectionAndRole('tuned', 'plain');

  // A max below the current default is refused; nothing changes.
  const bad = await pb.api('PUT', 'sys/mounts/tuned/tune', { max_lease_ttl: '30m' });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.body.errors[0], /default_lease_ttl/);
  const bothBad = await pb.api('PUT', 'sys/mounts/tuned/tune', { default_lease_ttl: '1h', max_lease_ttl: '30m' });
  assert.equal(bothBad.status, 400, bothBad.text);
  const badValue = await pb.api('PUT', 'sys/mounts/tuned/tune', { default_lease_ttl: 'later' });
  assert.equal(badValue.status, 400);
  assert.match(badValue.body.errors[0], /default_lease_ttl/);
  const refused = await pb.api('PUT', 'sys/mounts/tuned/tune', { audit_non_hmac_request_keys: ['password'] });
  assert.equal(refused.status, 400);
  assert.match(refused.body.errors[0], /"audit_non_hmac_request_keys"/);
  assert.deepEqual([(await tuneOf('tuned')).default_lease_ttl, (await tuneOf('tuned')).max_lease_ttl], [3600, 7200]);

  const ok = await pb.api('PUT', 'sys/mounts/tuned/tune', { default_lease_ttl: '10m', max_lease_ttl: '30m', description: 'after' });
  assert.equal(ok.status, 204, ok.text);
  let t = await tuneOf('tuned');
  assert.deepEqual([t.default_lease_ttl, t.max_lease_ttl, t.description], [600, 1800, 'after']);
  assert.equal((await pb.api('GET', 'sys/mounts')).body.data['tuned/'].description, 'after');
  assert.equal((await creds('tuned', 'plain')).ttl, 600);
  // Only one of them: the other stays.
  assert.equal((await pb.api('PUT', 'sys/mounts/tuned/tune', { default_lease_ttl: '20m' })).status, 204);
  t = await tuneOf('tuned');
  assert.deepEqual([t.default_lease_ttl, t.max_lease_ttl], [1200, 1800]);

  await pb.restart();
  t = await tuneOf('tuned');
  assert.deepEqual([t.default_lease_ttl, t.max_lease_ttl, t.description], [1200, 1800, 'after']);
  assert.equal((await creds('tuned', 'plain')).ttl, 1200);

  // "system" resets both to the broker-wide values.
  assert.equal((await pb.api('PUT', 'sys/mounts/tuned/tune', { default_lease_ttl: 'system', max_lease_ttl: 'system' })).status, 204);
  t = await tuneOf('tuned');
  assert.deepEqual([t.default_lease_ttl, t.max_lease_ttl], [SYSTEM_DEFAULT, SYSTEM_MAX]);
  assert.equal((await creds('tuned', 'plain')).ttl, SYSTEM_DEFAULT);
  assert.deepEqual((await pb.api('GET', 'sys/mounts/tuned')).body.data.config, { default_lease_ttl: 0, max_lease_ttl: 0, force_no_cache: false });

  // The default mount can be tuned too; unknown mounts are a 400.
  assert.equal((await pb.api('PUT', 'sys/mounts/database/tune', { max_lease_ttl: '1h' })).status, 204);
  assert.equal((await tuneOf('database')).max_lease_ttl, 3600);
  assert.equal((await pb.api('PUT', 'sys/mounts/database/tune', { max_lease_ttl: 'system' })).status, 204);
  assert.equal((await pb.api('PUT', 'sys/mounts/nope/tune', { max_lease_ttl: '1h' })).status, 400);

  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/tuned')).status, 204);
  assert.equal((await pb.api('DELETE', 'sys/mounts/tuned')).status, 204);
});

test('unmounting "edge" revokes its leases only: those of "edge-x" (same first letters) stay', async () => {
  for (const mount of ['edge', 'edge-x']) {
    assert.equal((await pb.api('PUT', `sys/mounts/${mount}`, { type: 'database' })).status, 204);
    await connectionAndRole(mount, 'app');
  }
  const [inner, outer] = [await creds('edge', 'app'), await creds('edge-x', 'app')];
  assert.equal((await pb.api('DELETE', 'sys/mounts/edge')).status, 204);
  assert.equal(await roleExists(server, inner.username), false, 'the unmounted mount’s user is dropped');
  assert.equal((await pb.api('PUT', 'sys/leases/lookup', { lease_id: outer.leaseId })).status, 200, 'edge-x keeps its lease');
  assert.ok(await roleExists(server, outer.username));
  assert.equal((await pb.api('DELETE', 'sys/mounts/edge-x')).status, 204);
  assert.equal(await roleExists(server, outer.username), false);
});

test('nothing of this file is left', async () => {
  for (const mount of ['ttl-db']) await pb.api('DELETE', `sys/mounts/${mount}`);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
});
