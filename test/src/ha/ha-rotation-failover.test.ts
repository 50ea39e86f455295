// kill -9 of the active node in the middle of a root credential rotation
// (the fault point after the database took the new password, before the
// store committed it), on a PostgreSQL target that checks passwords (an
// embedded scram-sha-256 server): a standby takes over, settles the
// interrupted rotation with the write-ahead pending password, and the broker
// keeps its root login (0 lockouts): creds work, the old password does not,
// and rotating again works.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { healthOf, startHaCluster, type HaCluster } from '../../support/ha-cluster.ts';
import { eventually } from '../../support/broker.ts';
import { LOGIN_ROLE, roleExists } from '../../support/pg-broker.ts';
import { adminQuery, loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

let server: TestPostgres;
let cluster: HaCluster;

before(async () => {
  server = await startScramPostgres();
  await adminQuery(server, "CREATE ROLE rotadmin WITH LOGIN CREATEROLE PASSWORD 'initial-pw'");
  // Only the first node, which becomes active, dies at the fault point.
  cluster = await startHaCluster(3, { envFor: (i): Record<string, string> => (i === 0 ? { DBROKER_FAULTS: 'rotate.after_db_change' } : {}) });
});
after(async () => {
  await cluster?.close();
  await server?.stop();
});

test('kill -9 during a root rotation: a standby takes over and settles it; 0 root lockouts', async () => {
  const active = await cluster.active();
  assert.equal(active, cluster.nodes[0], 'the first node unsealed is the active one');
  const conn = await cluster.api(active, 'PUT', 'database/config/pg', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: 'rotadmin',
    password: 'initial-pw',
    allowed_roles: '*',
  });
  assert.equal(conn.status, 204, conn.text);
  assert.equal((await cluster.api(active, 'PUT', 'database/roles/app', { db_name: 'pg', creation_statements: [LOGIN_ROLE], default_ttl: '10m' })).status, 204);

  const survivors = cluster.nodes.slice(1);
  const started = Date.now();
  const rotate = await cluster.api(active, 'PUT', 'database/rotate-root/pg').catch((err: Error) => ({ status: 0, text: err.message }));
  assert.notEqual(rotate.status, 204, 'the rotation did not report success: the node died in the middle');
  await active.waitForExit();
  const next = await cluster.active(15_000, survivors);
  const ms = Date.now() - started;
  console.log(`root rotation kill: takeover in ${ms} ms`);
  assert.ok(ms < 10_000);

  // The database took the new password before the kill: the old one is gone.
  await assert.rejects(loginAs(server, 'rotadmin', 'initial-pw'), 'the old root password no longer logs in');
  // The new active settled on the pending password: it still logs in as root.
  await eventually(async () => (await cluster.api(next, 'GET', 'database/creds/app')).status === 200, 30_000, 'creds from the new active');
  const creds = await cluster.api(next, 'GET', 'database/creds/app');
  assert.equal(creds.status, 200, creds.text);
  assert.ok(await roleExists(server, creds.body.data.username));
  assert.match(next.logs, /root credential settled|resuming|now the active node/);
  const config = await cluster.api(next, 'GET', 'database/config/pg');
  assert.equal(config.status, 200);
  // And rotates again, from a standby too (forwarded).
  const standby = survivors.find((n) => n !== next)!;
  assert.equal(await healthOf(standby), 429);
  const again = await cluster.api(standby, 'PUT', 'database/rotate-root/pg');
  assert.equal(again.status, 204, again.text);
  const after = await cluster.api(standby, 'GET', 'database/creds/app');
  assert.equal(after.status, 200, after.text);
  assert.equal((await cluster.api(next, 'PUT', 'sys/leases/revoke-prefix/database/creds/', {})).status, 204);
  assert.equal(await roleExists(server, creds.body.data.username), false);
});
