// A network cut between the active node and the store (a TCP proxy that drops
// everything in both directions, connections left hanging): the cut-off node
// stops being active by its own clock within its lease, a standby takes over,
// nothing the cut-off node tries is committed, and when the network comes
// back it rejoins as a standby that forwards.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from '../../support/broker.ts';
import { healthOf, startHaCluster, type HaCluster } from '../../support/ha-cluster.ts';
import { TcpProxy } from '../../support/tcp-proxy.ts';

let proxy: TcpProxy;
let cluster: HaCluster;

before(async () => {
  proxy = new TcpProxy('127.0.0.1', 5432);
  await proxy.up();
  // Node 0 (unsealed first, so active) reaches the store through the proxy.
  cluster = await startHaCluster(3, {
    storeUrlFor: (i, url) => {
      if (i !== 0) return url;
      const u = new URL(url);
      u.port = String(proxy.port);
      return u.toString();
    },
  });
});
after(async () => {
  proxy?.blackhole(false);
  await cluster?.close();
  await proxy?.down();
});

test('network cut of the active from the store: it steps down by its own clock, a standby takes over, it rejoins when the network is back', async () => {
  const active = await cluster.active();
  assert.equal(active, cluster.nodes[0]);
  const fence = await cluster.fence();
  const cutAt = Date.now();
  proxy.blackhole(true);
  // Within its lease (3 s) plus a tick, the cut-off node no longer claims to be active.
  await eventually(async () => (await healthOf(active)) !== 200, 10_000, 'the cut-off node to stop being active');
  const selfDemoteMs = Date.now() - cutAt;
  const next = await cluster.active(15_000, cluster.nodes.slice(1));
  const takeoverMs = Date.now() - cutAt;
  console.log(`network cut: the cut-off node stepped down after ${selfDemoteMs} ms; a standby took over after ${takeoverMs} ms`);
  assert.ok(selfDemoteMs < 6_000, `steps down within lease + tick (${selfDemoteMs} ms)`);
  assert.ok(takeoverMs < 10_000);
  assert.equal(await cluster.fence(), fence + 1);
  // The new active serves while the old one is cut off.
  const tok = await cluster.api(next, 'PUT', 'auth/token/create', { policies: ['default'] });
  assert.equal(tok.status, 200);
  proxy.blackhole(false);
  await eventually(async () => (await healthOf(active)) === 429, 15_000, 'the cut-off node to rejoin as a standby');
  assert.match(active.logs, /no longer active/);
  assert.equal(await cluster.fence(), fence + 1, 'the new active kept leadership when the old one came back');
  const lookup = await active.api('GET', 'auth/token/lookup-self', { token: tok.body.auth.client_token });
  assert.equal(lookup.status, 200, 'it forwards again');
});
