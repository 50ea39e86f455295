// Three real broker processes in HA on one PostgreSQL store (the local
// server, a fresh database), the local PostgreSQL also as the target
// database: exactly one active node; standbys answer 429 on sys/health (200
// with standbyok, their own code with standbycode) and forward everything
// else transparently; creds, renew and revoke through each replica; sys/leader
// on every node names the active one; sys/step-down (sudo) hands leadership
// over with a higher fencing number.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { healthOf, startHaCluster, type HaCluster } from '../../support/ha-cluster.ts';
import { configureConnection, createRole, dropRolesWithPrefix, prefixTemplate, roleExists, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { unseal, type BrokerProcess } from '../../support/broker.ts';

const prefix = `ha${tag()}_`;
let target: TestPostgres;
let cluster: HaCluster;

/** The helpers of pg-broker.ts, talking to one node with the root token (they only use `api`). */
const via = (node: BrokerProcess): PgBroker => ({ api: (m: string, p: string, b?: unknown) => cluster.api(node, m, p, b) }) as unknown as PgBroker;

before(async () => {
  target = await trustPostgres();
  cluster = await startHaCluster(3);
});
after(async () => {
  await cluster?.close();
  await dropRolesWithPrefix(target, prefix);
  await target?.stop();
});

test('exactly one active node; standbys answer 429 on health, 200 with standbyok, their standbycode; sys/leader names the active', async () => {
  const active = await cluster.active();
  const standbys = cluster.nodes.filter((n) => n !== active);
  assert.equal(standbys.length, 2);
  for (const s of standbys) {
    const h = await s.api('GET', 'sys/health');
    assert.equal(h.status, 429);
    assert.equal(h.body.standby, true);
    assert.equal(h.body.sealed, false);
    assert.equal((await s.api('GET', 'sys/health?standbyok=true')).status, 200);
    assert.equal((await s.api('GET', 'sys/health?standbycode=473')).status, 473);
    assert.equal((await s.api('GET', 'sys/health?standbycode=99')).status, 400, 'a bad code is refused, naming the field');
  }
  const ah = await active.api('GET', 'sys/health');
  assert.equal(ah.body.standby, false);
  for (const node of cluster.nodes) {
    const l = await node.api('GET', 'sys/leader');
    assert.equal(l.status, 200);
    assert.equal(l.body.ha_enabled, true);
    assert.equal(l.body.is_self, node === active);
    assert.equal(l.body.leader_address, active.url);
    assert.equal(l.body.leader_cluster_address, active.url);
    assert.notEqual(l.body.active_time, '0001-01-01T00:00:00Z');
  }
  assert.equal(await cluster.fence(), 1, 'one election so far');
});

test('standbys forward everything else transparently; creds, renew and revoke through each replica', async () => {
  const active = await cluster.active();
  const standby = cluster.nodes.find((n) => n !== active)!;
  // Configuration written through a standby lands on the active node.
  await configureConnection(via(standby), target, 'pg');
  await createRole(via(standby), 'app', { db_name: 'pg', default_ttl: '1h', username_template: prefixTemplate(prefix) });
  // Errors come back as the active node gave them (status and body), and so do LIST and HEAD.
  const missing = await cluster.api(standby, 'GET', 'database/roles/nope');
  const missingThere = await cluster.api(active, 'GET', 'database/roles/nope');
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, missingThere.body);
  const denied = await standby.api('GET', 'sys/mounts', { token: 'hvs.not-a-token' });
  assert.equal(denied.status, 403);
  assert.deepEqual(denied.body.errors, ['permission denied']);
  const list = await standby.api('LIST', 'database/roles', { token: cluster.root });
  assert.deepEqual(list.body.data.keys, ['app']);
  const head = await fetch(`${standby.url}/v1/database/roles/app`, { method: 'HEAD', headers: { 'x-vault-token': cluster.root } });
  assert.equal(head.status, 200);
  assert.equal((await head.text()).length, 0);
  const bad = await standby.api('PUT', 'database/roles/x', { token: cluster.root, rawBody: '{"db_name": ' });
  assert.equal(bad.status, 400, 'a malformed body is refused by the active node, as it would be there');

  for (const node of cluster.nodes) {
    const creds = await cluster.api(node, 'GET', 'database/creds/app');
    assert.equal(creds.status, 200, creds.text);
    assert.ok(await roleExists(target, creds.body.data.username));
    const renew = await cluster.api(node, 'PUT', 'sys/leases/renew', { lease_id: creds.body.lease_id, increment: 600 });
    assert.equal(renew.status, 200, renew.text);
    assert.equal(renew.body.lease_duration, 600);
    const lookup = await cluster.api(node, 'PUT', 'sys/leases/lookup', { lease_id: creds.body.lease_id });
    assert.equal(lookup.status, 200);
    const revoke = await cluster.api(node, 'PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id });
    assert.equal(revoke.status, 204, revoke.text);
    assert.equal(await roleExists(target, creds.body.data.username), false, `revoked through ${node === active ? 'the active node' : 'a standby'}`);
  }
  // Tokens created through one standby work through the other.
  const [s1, s2] = cluster.nodes.filter((n) => n !== active) as [BrokerProcess, BrokerProcess];
  const tok = await cluster.api(s1, 'PUT', 'auth/token/create', { policies: ['default'], ttl: '1h' });
  assert.equal(tok.status, 200);
  assert.equal((await s2.api('GET', 'auth/token/lookup-self', { token: tok.body.auth.client_token })).status, 200);
});

test('sys/step-down (sudo, PUT, forwarded from a standby) hands leadership to another node with a higher fencing number', async () => {
  const before = await cluster.active();
  const fence = await cluster.fence();
  const standby = cluster.nodes.find((n) => n !== before)!;
  const child = await cluster.api(standby, 'PUT', 'auth/token/create', { policies: ['default'] });
  assert.equal((await standby.api('PUT', 'sys/step-down', { token: child.body.auth.client_token })).status, 403, 'sudo only');
  assert.equal((await standby.api('GET', 'sys/step-down', { token: cluster.root })).status, 405);
  const started = Date.now();
  const r = await cluster.api(standby, 'PUT', 'sys/step-down');
  assert.equal(r.status, 204, r.text);
  let after = before;
  while (after === before && Date.now() - started < 15_000) {
    after = await cluster.active();
    if (after === before) await new Promise((res) => setTimeout(res, 100));
  }
  assert.notEqual(after, before, 'another node is active');
  assert.equal(await cluster.fence(), fence + 1);
  assert.equal(await healthOf(before), 429, 'the old active is a standby now');
  // The new active serves creds, through the old one too.
  const creds = await cluster.api(before, 'GET', 'database/creds/app');
  assert.equal(creds.status, 200, creds.text);
  assert.equal((await cluster.api(after, 'PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  console.log(`step-down: new active after ${Date.now() - started} ms`);
});

test('sys/seal on the active node hands leadership over at once; unsealed again, it rejoins as a standby; SIGTERM hands over too', async () => {
  const active = await cluster.active();
  const fence = await cluster.fence();
  const started = Date.now();
  assert.equal((await cluster.api(active, 'PUT', 'sys/seal')).status, 204);
  assert.equal(await healthOf(active), 503, 'a sealed node answers 503');
  const next = await cluster.active(15_000, cluster.nodes.filter((n) => n !== active));
  const sealMs = Date.now() - started;
  assert.equal(await cluster.fence(), fence + 1);
  // A sealed standby does not forward: 503 sealed, like Vault.
  assert.equal((await cluster.api(active, 'GET', 'database/roles/app')).status, 503);
  await unseal(active, cluster.keys);
  assert.equal(await healthOf(active), 429, 'unsealed again: a standby');
  assert.equal((await cluster.api(active, 'GET', 'database/roles/app')).status, 200, 'and it forwards again');
  // A graceful stop releases leadership: the takeover needs one tick, not a lease.
  const t = Date.now();
  await next.stop();
  const third = await cluster.active(15_000, cluster.nodes.filter((n) => n !== next));
  const stopMs = Date.now() - t;
  console.log(`seal of the active: new active after ${sealMs} ms; SIGTERM of the active: after ${stopMs} ms`);
  assert.ok(stopMs < 3_000, `SIGTERM hands over within a tick or two (${stopMs} ms)`);
  assert.equal((await cluster.api(third, 'GET', 'database/roles/app')).status, 200);
  await next.start();
  await unseal(next, cluster.keys);
  assert.equal(await healthOf(next), 429);
});
