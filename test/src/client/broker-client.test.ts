// The SDK's BrokerClient and LifetimeWatcher against a real broker and the
// shared PostgreSQL: AppRole login, read, renew (capped at max_ttl), revoke;
// Vault error bodies as BrokerRequestError, an unreachable broker as
// BrokerUnreachableError (transient); one re-login and retry when the token
// is refused; the watcher renews at ~2/3 of the TTL, reports done(null) a
// grace period before max_ttl, and done(error) when the lease is revoked.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { BrokerClient, BrokerRequestError, BrokerUnreachableError, isTransient, LifetimeWatcher, type SecretResponse } from '../../../src/client/index.ts';
import { freePort } from '../../support/broker.ts';
import { configureConnection, createRole, dropRolesWithPrefix, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const prefix = `bc${tag()}`;
let pb: PgBroker;
let pg: TestPostgres;
let roleId: string;
let secretId: string;

before(async () => {
  [pg, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } })]);
  await configureConnection(pb, pg, 'main');
  await createRole(pb, 'app', { db_name: 'main', default_ttl: 3, max_ttl: 7, username_template: `{{ printf "${prefix}%s" (random 12) }}` });
  assert.equal((await pb.api('PUT', 'sys/policies/acl/app', { policy: 'path "database/creds/app" { capabilities = ["read"] }\npath "sys/leases/revoke" { capabilities = ["update"] }' })).status, 204);
  assert.equal((await pb.api('PUT', 'sys/auth/approle', { type: 'approle' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/approle/role/svc', { token_policies: ['app'], token_ttl: '1h' })).status, 204);
  roleId = (await pb.api('GET', 'auth/approle/role/svc/role-id')).body.data.role_id;
  secretId = (await pb.api('PUT', 'auth/approle/role/svc/secret-id', {})).body.data.secret_id;
});

after(async () => {
  await pb?.close();
  await dropRolesWithPrefix(pg, prefix);
  await pg?.stop();
});

test('login, read, renew (capped at max_ttl with a warning), revoke; errors typed', async () => {
  const client = new BrokerClient({ address: pb.broker.url, auth: { type: 'approle', roleId, secretId } });
  const auth = await client.login();
  assert.equal(client.token, auth.client_token);
  assert.ok(auth.policies.includes('app'));
  assert.equal(auth.lease_duration, 3600);
  const secret = await client.read<{ username: string; password: string }>('database/creds/app');
  assert.ok(secret.data!.username.startsWith(prefix));
  assert.equal(secret.lease_duration, 3);
  const renewed = await client.renew(secret.lease_id, 60);
  assert.ok(renewed.lease_duration <= 7 && renewed.lease_duration >= 5, String(renewed.lease_duration));
  assert.ok(renewed.warnings?.some((w) => /max_ttl/.test(w)), 'capped with a warning');
  await client.revoke(secret.lease_id);
  assert.equal(await roleExists(pg, secret.data!.username), false);

  const tokenBefore = client.token;
  const denied = await client.read('sys/policies/acl/app').catch((e: unknown) => e);
  assert.equal(client.token, tokenBefore, 'a policy denial does not cause a new login');
  assert.ok(denied instanceof BrokerRequestError);
  assert.equal(denied.status, 403);
  assert.ok(denied.errors.length > 0);
  assert.equal(isTransient(denied), false);
  const gone = await client.renew(secret.lease_id).catch((e: unknown) => e);
  assert.ok(gone instanceof BrokerRequestError && gone.status === 400, String(gone));
  const nowhere = new BrokerClient({ address: `http://127.0.0.1:${await freePort()}`, token: 'x', timeoutMs: 2000 });
  const unreachable = await nowhere.read('database/creds/app').catch((e: unknown) => e);
  assert.ok(unreachable instanceof BrokerUnreachableError);
  assert.equal(isTransient(unreachable), true);
  await assert.rejects(new BrokerClient({ address: pb.broker.url, token: 't' }).read('../sys/seal'), TypeError);
});

test('a refused token (revoked) leads to one new login and the request is retried', async () => {
  const client = new BrokerClient({ address: pb.broker.url, auth: { type: 'approle', roleId, secretId } });
  await client.login();
  const first = client.token!;
  assert.equal((await pb.api('PUT', 'auth/token/revoke', { token: first })).status, 204);
  const secret = await client.read('database/creds/app');
  assert.notEqual(client.token, first);
  assert.ok(secret.lease_id);
  await client.revoke(secret.lease_id);
});

test('LifetimeWatcher: renews at ~2/3 of the TTL, done(null) before max_ttl; done(error) when the lease is revoked', async () => {
  const client = new BrokerClient({ address: pb.broker.url, token: pb.root });
  const secret = await client.read('database/creds/app');
  const issued = Date.now();
  const renewals: Array<{ at: number; ttl: number }> = [];
  const watcher = new LifetimeWatcher(client, { secret, graceMs: 1000 });
  watcher.on('renew', (r: SecretResponse) => renewals.push({ at: Date.now() - issued, ttl: r.lease_duration }));
  const done = await new Promise<{ err: Error | null; at: number }>((resolve) => watcher.once('done', (err: Error | null) => resolve({ err, at: Date.now() - issued })));
  assert.equal(done.err, null);
  assert.ok(renewals.length >= 2, JSON.stringify(renewals));
  assert.ok(renewals[0]!.at >= 1500 && renewals[0]!.at <= 2600, `first renewal at ${renewals[0]!.at} ms (TTL 3 s)`);
  assert.ok(done.at < 7000 && done.at > 4000, `done at ${done.at} ms, before max_ttl (7 s)`);
  const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: secret.lease_id });
  assert.equal(lookup.status, 200, 'the lease still exists when done fires');

  const other = await client.read('database/creds/app');
  const w2 = new LifetimeWatcher(client, { secret: other });
  const ended = new Promise<Error | null>((resolve) => w2.once('done', resolve));
  await pb.api('PUT', 'sys/leases/revoke', { lease_id: other.lease_id });
  const err = await ended;
  assert.ok(err instanceof BrokerRequestError && err.status === 400, String(err));
  console.log(`[sdk watcher] renewals=${renewals.length} at_ms=${renewals.map((r) => r.at).join(',')} done_at_ms=${done.at}`);
});
