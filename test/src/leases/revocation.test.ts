// Revocation over HTTP against a real broker process and a PostgreSQL that
// checks passwords: an explicit revoke ends logins and sessions, expiry
// revokes with no API call (also across a SIGKILL), crashes at each step of
// issuance and revocation leave no orphaned user, and a database that is
// unreachable is retried with backoff and reported, without holding up the
// leases of other connections.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs, IRREVOCABLE_AFTER } from '../../../src/leases/lease-manager.ts';
import { eventually } from '../../support/broker.ts';
import { loginAs, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { TcpProxy } from '../../support/tcp-proxy.ts';
import {
  configureConnection,
  createRole,
  dropRolesWithPrefix,
  issueCreds,
  prefixTemplate,
  roleExists,
  rolesWithPrefix,
  startPgBroker,
  tag,
  type PgBroker,
} from '../../support/pg-broker.ts';

const run = tag();
const userPrefix = `tr${run}`;
let server: TestPostgres;
let pb: PgBroker;
let proxy: TcpProxy;

const sqlStateOf = (err: unknown): string | undefined => (err as { code?: string }).code;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function leaseIdsUnder(prefix: string): Promise<string[]> {
  const r = await pb.list(`sys/leases/lookup/${prefix}`);
  if (r.status === 404) return [];
  assert.equal(r.status, 200, r.text);
  return r.body.data.keys as string[];
}

before(async () => {
  [server, pb] = await Promise.all([startScramPostgres(), startPgBroker()]);
  proxy = new TcpProxy(server.host, server.port);
  await proxy.up();
  await configureConnection(pb, server, 'main');
  // The same database behind a forwarder the tests can cut.
  await configureConnection(pb, { ...server, port: proxy.port }, 'flaky');
  const role = (name: string, db: string, ttl: string) => createRole(pb, name, { db_name: db, default_ttl: ttl, max_ttl: '1h', username_template: prefixTemplate(`${userPrefix}${name}-`) });
  await role('manual', 'main', '10m');
  await role('short', 'main', '2s');
  await role('crash', 'main', '10m');
  // Issuances cut short by a crash: their leases are kept to this TTL, then revoked.
  await role('cut-short', 'main', '8s');
  await role('steady', 'main', '2s');
  await role('cut', 'flaky', '2s');
});

after(async () => {
  await proxy?.down();
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
});

test('revocation backoff: about a second at first, doubling with jitter, capped at an hour', () => {
  for (let i = 0; i < 50; i++) {
    const first = backoffMs(1);
    assert.ok(first >= 500 && first <= 1000, `first retry after ${first} ms`);
    const fifth = backoffMs(5);
    assert.ok(fifth >= 8000 && fifth <= 16_000, `fifth retry after ${fifth} ms`);
    const late = backoffMs(40);
    assert.ok(late >= 1_800_000 && late <= 3_600_000, `late retry after ${late} ms`);
  }
  assert.ok(IRREVOCABLE_AFTER >= 3 && IRREVOCABLE_AFTER <= 10);
});

test('revoke: the login fails, the role is gone, and an open session is terminated', async () => {
  const creds = await issueCreds(pb, 'manual');
  const session = await loginAs(server, creds.username, creds.password);
  let sessionError: Error | undefined;
  session.on('error', (err) => (sessionError = err));
  session.on('end', () => (sessionError ??= new Error('ended')));
  assert.deepEqual((await session.query('SELECT 1 AS one')).rows, [{ one: 1 }]);

  const r = await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId });
  assert.equal(r.status, 204, r.text);
  assert.equal(await roleExists(server, creds.username), false);
  await assert.rejects(loginAs(server, creds.username, creds.password), (err) => sqlStateOf(err) === '28P01');
  // The kept session was terminated by the server (57P01, or the socket closed under it).
  await eventually(async () => sessionError !== undefined, 5000, 'the open session to be terminated');
  await assert.rejects(session.query('SELECT 1'), (err: Error) => sqlStateOf(err) === '57P01' || /terminat|not queryable|closed/i.test(err.message));
  await session.end().catch(() => undefined);
  const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: creds.leaseId });
  assert.equal(lookup.status, 400);
  // Revoking again (or an unknown lease) is not an error.
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
});

test('a 2 s lease is revoked a few seconds after expiry without any API call; the login is refused', async () => {
  const creds = await issueCreds(pb, 'short');
  assert.equal(creds.leaseDuration, 2);
  const client = await loginAs(server, creds.username, creds.password);
  await client.end();
  const issued = Date.now();
  await eventually(async () => !(await roleExists(server, creds.username)), 15_000, 'the expired user to be dropped');
  const took = Date.now() - issued;
  assert.ok(took < 8000, `dropped ${took} ms after issue`);
  await assert.rejects(loginAs(server, creds.username, creds.password), (err) => sqlStateOf(err) === '28P01');
  assert.deepEqual(await leaseIdsUnder('database/creds/short/'), []);
});

test('a lease that expires while the broker is down (SIGKILL) is revoked right after restart and unseal', async () => {
  const creds = await issueCreds(pb, 'short');
  await pb.broker.kill();
  await sleep(2500); // past the lease end, with nobody running
  assert.ok(await roleExists(server, creds.username), 'nothing can revoke while the broker is down');
  await pb.broker.start();
  const unsealedAt = Date.now();
  const keys = pb.keys;
  for (const key of keys) assert.equal((await pb.broker.api('PUT', 'sys/unseal', { body: { key } })).status, 200);
  await eventually(async () => !(await roleExists(server, creds.username)), 15_000, 'the expired user to be dropped after unseal');
  assert.ok(Date.now() - unsealedAt < 8000);
  assert.deepEqual(await leaseIdsUnder('database/creds/short/'), []);
});

// Recovery rolls forward: after a crash the broker cannot know whether its
// answer reached the client, so a lease whose issuance was cut short is an
// ordinary lease, revoked at its own end (never earlier: the client may hold it).
test('crash after the database user is created, before the answer: the lease is kept after restart and drops the user at its TTL', async () => {
  await pb.restart({ env: { DBROKER_FAULTS: 'issue.after_create_user' } });
  const sent = Date.now();
  const r = await pb.broker.api('GET', 'database/creds/cut-short', { token: pb.root }).catch((err: unknown) => err);
  assert.ok(r instanceof Error, 'the creds request should die with the broker');
  await pb.broker.waitForExit();
  const made = await rolesWithPrefix(server, `${userPrefix}cut-short-`);
  assert.equal(made.length, 1, 'the fault point is after the user exists');

  await pb.restart();
  const [key] = await leaseIdsUnder('database/creds/cut-short/');
  assert.ok(key, 'the lease survived the crash');
  const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: `database/creds/cut-short/${key}` });
  assert.equal(lookup.status, 200, lookup.text);
  assert.ok(Date.parse(lookup.body.data.expire_time) <= sent + 9000 + 1000, `it ends at its TTL (8 s): ${lookup.body.data.expire_time}`);
  if (Date.now() < sent + 7000) assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}cut-short-`), made, 'the user is kept until the lease ends');
  await eventually(async () => (await rolesWithPrefix(server, `${userPrefix}cut-short-`)).length === 0, 20_000, 'the user to be dropped at the lease end');
  assert.ok(Date.now() - sent >= 8000, `dropped ${Date.now() - sent} ms after the request, not before the TTL`);
  await eventually(async () => (await leaseIdsUnder('database/creds/cut-short/')).length === 0, 10_000, 'the lease to be forgotten');
});

test('crash after the lease is written, before the user exists: no user; the lease ends at its TTL (a drop of nobody) and is forgotten', async () => {
  await pb.restart({ env: { DBROKER_FAULTS: 'issue.after_write_ahead' } });
  const r = await pb.broker.api('GET', 'database/creds/cut-short', { token: pb.root }).catch((err: unknown) => err);
  assert.ok(r instanceof Error);
  await pb.broker.waitForExit();
  await pb.restart();
  assert.equal((await leaseIdsUnder('database/creds/cut-short/')).length, 1, 'the lease written ahead survived the crash');
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}cut-short-`), []);
  await eventually(async () => (await leaseIdsUnder('database/creds/cut-short/')).length === 0, 25_000, 'the lease to be revoked at its end and forgotten');
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}cut-short-`), []);
});

test('crash after the user is dropped but before the lease is forgotten: the lease is settled after restart', async () => {
  const [kept, doomed] = await Promise.all([issueCreds(pb, 'crash'), issueCreds(pb, 'crash')]);
  await pb.restart({ env: { DBROKER_FAULTS: 'revoke.after_delete_user' } });
  const r = await pb.broker.api('PUT', 'sys/leases/revoke', { token: pb.root, body: { lease_id: doomed.leaseId } }).catch((err: unknown) => err);
  assert.ok(r instanceof Error);
  await pb.broker.waitForExit();
  assert.equal(await roleExists(server, doomed.username), false);
  await pb.restart();
  await eventually(async () => (await pb.api('PUT', 'sys/leases/lookup', { lease_id: doomed.leaseId })).status === 400, 15_000, 'the revoked lease to be forgotten');
  // The other lease is untouched: still active, its user still there. Every
  // role of this role's prefix has an active lease.
  const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: kept.leaseId });
  assert.equal(lookup.status, 200);
  assert.ok(lookup.body.data.ttl > 0);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}crash-`), [kept.username]);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: kept.leaseId })).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}crash-`), []);
});

test('an unreachable database: revocation is retried with backoff and reported, other connections are revoked on time, and it completes once the database is back', async () => {
  const stuck = await issueCreds(pb, 'cut');
  await proxy.down();
  const issued = Date.now();
  const onTime = await issueCreds(pb, 'steady');

  // The healthy connection's lease goes on time.
  await eventually(async () => !(await roleExists(server, onTime.username)), 15_000, 'the lease on the healthy connection to be revoked');
  assert.ok(Date.now() - issued < 8000, 'a failing connection delayed another connection');

  // The stuck lease shows its failing revocation: attempts, last error, next attempt.
  await eventually(
    async () => {
      const r = await pb.api('PUT', 'sys/leases/lookup', { lease_id: stuck.leaseId });
      return r.status === 200 && r.body.data.revocation_attempts >= 2;
    },
    20_000,
    'lookup to show failed revocation attempts',
  );
  const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: stuck.leaseId });
  assert.match(lookup.body.data.last_revocation_error, /flaky/);
  assert.equal(lookup.body.data.ttl, 0);
  assert.equal(lookup.body.data.renewable, false);
  assert.ok(Date.parse(lookup.body.data.next_revocation_attempt) > Date.now() - 1000);
  // Renewing a lease under revocation is refused.
  assert.equal((await pb.api('PUT', 'sys/leases/renew', { lease_id: stuck.leaseId, increment: 60 })).status, 400);

  // After enough attempts it is listed as irrevocable (still retried). The
  // backoff starts at about a second and doubles: 5 attempts take ~8-16 s.
  await eventually(
    async () => {
      const r = await pb.api('GET', 'sys/leases?type=irrevocable');
      return r.status === 200 && r.body.data.leases.some((l: { lease_id: string }) => l.lease_id === stuck.leaseId);
    },
    40_000,
    'the lease to be listed as irrevocable',
  );
  const listed = await pb.api('GET', 'sys/leases?type=irrevocable');
  const entry = listed.body.data.leases.find((l: { lease_id: string }) => l.lease_id === stuck.leaseId);
  assert.equal(entry.connection, 'flaky');
  assert.ok(entry.attempts >= 5);
  assert.match(entry.error, /flaky/);
  assert.ok(!listed.text.includes(server.adminPassword));
  const count = await pb.api('GET', 'sys/leases/count?type=irrevocable');
  assert.ok(count.body.data.lease_count >= 1);
  assert.ok(await roleExists(server, stuck.username), 'nothing could drop it yet');
  // In-database expiry (VALID UNTIL) still stops the login meanwhile.
  await assert.rejects(loginAs(server, stuck.username, stuck.password), (err) => sqlStateOf(err) === '28P01');

  // Back: the next attempt (within the current backoff step, ≤ ~32 s) revokes it.
  await proxy.up();
  await eventually(async () => !(await roleExists(server, stuck.username)), 45_000, 'the stuck lease to be revoked once the database is back');
  await eventually(async () => (await pb.api('PUT', 'sys/leases/lookup', { lease_id: stuck.leaseId })).status === 400, 5000, 'the lease to be forgotten');
  assert.equal((await pb.api('GET', 'sys/leases/count?type=irrevocable')).body.data.lease_count, 0);
});

test('nothing of this file is left: every role of the prefix is gone', async () => {
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
});
