// Tokens over HTTP: create with every option, lookup/renew/revoke in all
// their forms, TTL expiry, use limits, and revocation cascading to children.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { eventually, initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';

let broker: BrokerProcess;
let root: string;

before(async () => {
  // A short system max TTL, so capping is observable.
  broker = await startBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '2h' } });
  ({ rootToken: root } = await initAndUnseal(broker));
  const policy = 'path "auth/token/create" { capabilities = ["update"] }\npath "sys/mounts" { capabilities = ["read"] }';
  assert.equal((await broker.api('PUT', 'sys/policies/acl/creator', { token: root, body: { policy } })).status, 204);
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

interface Created {
  token: string;
  accessor: string;
  auth: Record<string, unknown>;
  warnings: string[] | null;
}

async function create(body: Record<string, unknown>, parent = root): Promise<Created> {
  const r = await broker.api('PUT', 'auth/token/create', { token: parent, body });
  assert.equal(r.status, 200, r.text);
  return { token: r.body.auth.client_token, accessor: r.body.auth.accessor, auth: r.body.auth, warnings: r.body.warnings };
}

const status = async (token: string): Promise<number> => (await broker.api('GET', 'auth/token/lookup-self', { token })).status;

test('create with every option; the auth block and lookups show them', async () => {
  const t = await create({ policies: ['creator', 'other'], ttl: '30m', explicit_max_ttl: 3600, renewable: true, num_uses: 5, display_name: 'ci job #7', meta: { team: 'blue', run: '42' } });
  assert.match(t.token, /^hvs\./);
  assert.equal(typeof t.accessor, 'string');
  assert.deepEqual(t.auth.policies, ['creator', 'default', 'other']);
  assert.deepEqual(t.auth.token_policies, ['creator', 'default', 'other']);
  assert.equal(t.auth.lease_duration, 1800);
  assert.equal(t.auth.renewable, true);
  assert.equal(t.auth.num_uses, 5);
  assert.deepEqual(t.auth.metadata, { team: 'blue', run: '42' });
  assert.equal(t.auth.orphan, false);
  assert.equal(t.auth.token_type, 'service');

  const viaRoot = await broker.api('PUT', 'auth/token/lookup', { token: root, body: { token: t.token } });
  assert.equal(viaRoot.status, 200);
  const d = viaRoot.body.data;
  assert.equal(d.display_name, 'token-ci-job--7', 'sanitized as Vault does');
  assert.equal(d.accessor, t.accessor);
  assert.equal(d.creation_ttl, 1800);
  assert.equal(d.explicit_max_ttl, 3600);
  assert.ok(d.ttl > 1790 && d.ttl <= 1800, String(d.ttl));
  assert.equal(d.num_uses, 5);
  assert.deepEqual(d.meta, { team: 'blue', run: '42' });
  assert.equal(d.path, 'auth/token/create');
  assert.equal(d.id, t.token, 'lookup echoes the token the caller sent, as Vault does');

  const byAccessor = await broker.api('PUT', 'auth/token/lookup-accessor', { token: root, body: { accessor: t.accessor } });
  assert.equal(byAccessor.status, 200);
  assert.equal(byAccessor.body.data.display_name, 'token-ci-job--7');
  assert.equal(byAccessor.body.data.id, '', 'a lookup by accessor never reveals the token');
  assert.ok(!byAccessor.text.includes(t.token));

  // lookup-self takes one of the five uses.
  const self = await broker.api('GET', 'auth/token/lookup-self', { token: t.token });
  assert.equal(self.status, 200);
  assert.equal(self.body.data.num_uses, 5, 'lookup-self shows the count as the request found it');
  const again = await broker.api('PUT', 'auth/token/lookup', { token: root, body: { token: t.token } });
  assert.equal(again.body.data.num_uses, 4);

  // Authorization: Bearer works as well as X-Vault-Token.
  const bearer = await broker.api('GET', 'auth/token/lookup-self', { headers: { authorization: `Bearer ${root}` } });
  assert.equal(bearer.status, 200);
});

test('TTLs: default, system max cap with a warning, explicit_max_ttl cap, child capped by parent', async () => {
  const plain = await create({ policies: ['default'] });
  assert.equal(plain.auth.lease_duration, 3600, 'default_lease_ttl');
  const big = await create({ policies: ['default'], ttl: '100h' });
  assert.equal(big.auth.lease_duration, 7200, 'capped at max_lease_ttl');
  assert.match(big.warnings?.[0] ?? '', /capped/);
  const capped = await create({ policies: ['default'], ttl: '1h', explicit_max_ttl: '10m' });
  assert.equal(capped.auth.lease_duration, 600);

  const parent = await create({ policies: ['creator'], ttl: 120 });
  const child = await create({ policies: ['creator'], ttl: '1h' }, parent.token);
  assert.ok((child.auth.lease_duration as number) <= 120, 'a child never outlives its parent at creation');

  // Root children with the root policy and no TTL never expire.
  const rootChild = await create({ policies: ['root'] });
  assert.equal(rootChild.auth.lease_duration, 0);
  assert.equal(rootChild.auth.renewable, false);
});

test('renew-self, renew and renew-accessor; explicit_max_ttl caps renewals; non-renewable is refused', async () => {
  const t = await create({ policies: ['default'], ttl: 60, explicit_max_ttl: 300 });
  const self = await broker.api('PUT', 'auth/token/renew-self', { token: t.token, body: { increment: 120 } });
  assert.equal(self.status, 200, self.text);
  assert.equal(self.body.auth.lease_duration, 120);
  assert.equal(self.body.auth.client_token, '', 'a renewal does not echo the token');

  const viaRoot = await broker.api('PUT', 'auth/token/renew', { token: root, body: { token: t.token, increment: '1h' } });
  assert.equal(viaRoot.status, 200);
  assert.ok(viaRoot.body.auth.lease_duration <= 300 && viaRoot.body.auth.lease_duration >= 295, String(viaRoot.body.auth.lease_duration));
  assert.match(viaRoot.body.warnings[0], /capped/);

  const viaAccessor = await broker.api('PUT', 'auth/token/renew-accessor', { token: root, body: { accessor: t.accessor, increment: 30 } });
  assert.equal(viaAccessor.status, 200);
  assert.equal(viaAccessor.body.auth.lease_duration, 30);

  // Without an increment the token gets its original TTL again.
  const plain = await broker.api('PUT', 'auth/token/renew-self', { token: t.token, body: {} });
  assert.equal(plain.body.auth.lease_duration, 60);

  const fixed = await create({ policies: ['default'], renewable: false });
  const refused = await broker.api('PUT', 'auth/token/renew-self', { token: fixed.token });
  assert.equal(refused.status, 400);
  assert.deepEqual(refused.body, { errors: ['token is not renewable'] });

  const unknown = await broker.api('PUT', 'auth/token/renew', { token: root, body: { token: 'hvs.nope' } });
  assert.equal(unknown.status, 400);
  assert.deepEqual(unknown.body, { errors: ['token not found'] });
});

test('a periodic token renews to its period; only root or sudo may create one', async () => {
  const periodic = await create({ policies: ['default'], period: '10m', ttl: '1m' });
  assert.equal(periodic.auth.lease_duration, 600);
  const renewed = await broker.api('PUT', 'auth/token/renew-self', { token: periodic.token, body: { increment: 5 } });
  assert.equal(renewed.body.auth.lease_duration, 600);
  const creator = await create({ policies: ['creator'] });
  const refused = await broker.api('PUT', 'auth/token/create', { token: creator.token, body: { policies: ['creator'], period: 60 } });
  assert.equal(refused.status, 400);
  assert.match(refused.body.errors[0], /"period"/);
});

test('a short TTL expires: the token is refused with 403, and its row is removed', async () => {
  const t = await create({ policies: ['default'], ttl: 2 });
  assert.equal(await status(t.token), 200);
  await eventually(async () => (await status(t.token)) === 403, 15_000, 'the 2s token to expire');
  const lookup = await broker.api('PUT', 'auth/token/lookup', { token: root, body: { token: t.token } });
  assert.equal(lookup.status, 403);
  assert.deepEqual(lookup.body, { errors: ['bad token'] });
  const byAccessor = await broker.api('PUT', 'auth/token/lookup-accessor', { token: root, body: { accessor: t.accessor } });
  assert.equal(byAccessor.status, 400);
  const expiredRows = (): number => {
    const db = new Database(broker.storagePath, { readonly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM tokens WHERE expires_at <= ?').get(Date.now()) as { n: number }).n;
    } finally {
      db.close();
    }
  };
  await eventually(async () => expiredRows() === 0, 15_000, 'the expiry pass to remove expired token rows');
});

test('num_uses: the token works that many times, then it is gone', async () => {
  const t = await create({ policies: ['creator'], num_uses: 3 });
  assert.equal((await broker.api('GET', 'sys/mounts', { token: t.token })).status, 200);
  assert.equal((await broker.api('GET', 'sys/mounts', { token: t.token })).status, 200);
  assert.equal((await broker.api('GET', 'sys/mounts', { token: t.token })).status, 200);
  const fourth = await broker.api('GET', 'sys/mounts', { token: t.token });
  assert.equal(fourth.status, 403);
  assert.deepEqual(fourth.body, { errors: ['permission denied'] });
  assert.equal((await broker.api('PUT', 'auth/token/lookup', { token: root, body: { token: t.token } })).status, 403);

  // Concurrent uses: exactly num_uses succeed.
  const c = await create({ policies: ['creator'], num_uses: 4 });
  const results = await Promise.all(Array.from({ length: 10 }, () => broker.api('GET', 'sys/mounts', { token: c.token })));
  assert.equal(results.filter((r) => r.status === 200).length, 4);
  assert.equal(results.filter((r) => r.status === 403).length, 6);
  const db = new Database(broker.storagePath, { readonly: true });
  try {
    const left = db.prepare('SELECT count(*) AS n FROM tokens WHERE uses_left = 0').get() as { n: number };
    assert.equal(left.n, 0, 'an exhausted token is revoked, not left behind with 0 uses');
  } finally {
    db.close();
  }
});

test('revoke-self, revoke and revoke-accessor; unknown and revoked tokens get 403', async () => {
  assert.equal(await status('hvs.unknown-token'), 403);
  assert.equal(await status(''), 403);
  assert.equal((await broker.api('GET', 'auth/token/lookup-self')).status, 403, 'no token at all');

  const a = await create({ policies: ['default'] });
  assert.equal((await broker.api('PUT', 'auth/token/revoke-self', { token: a.token })).status, 204);
  assert.equal(await status(a.token), 403);

  const b = await create({ policies: ['default'] });
  assert.equal((await broker.api('PUT', 'auth/token/revoke', { token: root, body: { token: b.token } })).status, 204);
  assert.equal(await status(b.token), 403);

  const c = await create({ policies: ['default'] });
  assert.equal((await broker.api('PUT', 'auth/token/revoke-accessor', { token: root, body: { accessor: c.accessor } })).status, 204);
  assert.equal(await status(c.token), 403);
  const gone = await broker.api('PUT', 'auth/token/revoke-accessor', { token: root, body: { accessor: c.accessor } });
  assert.equal(gone.status, 400);

  // The default policy does not let a token revoke or look up others.
  const d = await create({ policies: ['default'] });
  const e = await create({ policies: ['default'] });
  assert.equal((await broker.api('PUT', 'auth/token/revoke', { token: d.token, body: { token: e.token } })).status, 403);
  assert.equal((await broker.api('PUT', 'auth/token/lookup', { token: d.token, body: { token: e.token } })).status, 403);
  assert.equal(await status(e.token), 200);
});

test('revoking a parent revokes its children and grandchildren; orphans survive', async () => {
  const parent = await create({ policies: ['creator'] });
  const child = await create({ policies: ['creator'] }, parent.token);
  const grandchild = await create({ policies: ['default'] }, child.token);
  const orphan = (await broker.api('PUT', 'auth/token/create-orphan', { token: root, body: { policies: ['creator'] } })).body.auth;
  assert.equal(orphan.orphan, true);
  const orphanChild = await create({ policies: ['default'] }, orphan.client_token);
  for (const t of [parent.token, child.token, grandchild.token, orphanChild.token]) assert.equal(await status(t), 200);

  assert.equal((await broker.api('PUT', 'auth/token/revoke', { token: root, body: { token: parent.token } })).status, 204);
  for (const t of [parent.token, child.token, grandchild.token]) assert.equal(await status(t), 403);
  assert.equal(await status(orphan.client_token), 200);
  assert.equal(await status(orphanChild.token), 200);

  // Through the accessor too.
  const p2 = await create({ policies: ['creator'] });
  const c2 = await create({ policies: ['default'] }, p2.token);
  assert.equal((await broker.api('PUT', 'auth/token/revoke-accessor', { token: root, body: { accessor: p2.accessor } })).status, 204);
  assert.equal(await status(c2.token), 403);
});

test('an expired parent takes its (renewed) children with it', async () => {
  const parent = await create({ policies: ['creator'], ttl: 3 });
  const child = await create({ policies: ['default'], ttl: 3 }, parent.token);
  // The child renews past its parent's end; the parent's expiry must still revoke it.
  const renewed = await broker.api('PUT', 'auth/token/renew-self', { token: child.token, body: { increment: '1h' } });
  assert.equal(renewed.status, 200);
  await eventually(async () => (await status(parent.token)) === 403, 15_000, 'the parent to expire');
  await eventually(async () => (await status(child.token)) === 403, 15_000, 'the child to be revoked with its expired parent');
});

test('a non-root token: only a subset of its policies, no orphans, no chosen ids', async () => {
  const creator = await create({ policies: ['creator'] });
  const more = await broker.api('PUT', 'auth/token/create', { token: creator.token, body: { policies: ['creator', 'admin'] } });
  assert.equal(more.status, 400);
  assert.match(more.body.errors[0], /"policies"/);
  const rootPolicy = await broker.api('PUT', 'auth/token/create', { token: creator.token, body: { policies: ['root'] } });
  assert.equal(rootPolicy.status, 400);
  const orphan = await broker.api('PUT', 'auth/token/create', { token: creator.token, body: { no_parent: true } });
  assert.equal(orphan.status, 400);
  assert.match(orphan.body.errors[0], /"no_parent"/);
  const orphanPath = await broker.api('PUT', 'auth/token/create-orphan', { token: creator.token, body: {} });
  assert.equal(orphanPath.status, 403);
  const chosen = await broker.api('PUT', 'auth/token/create', { token: creator.token, body: { id: 'my-own-token' } });
  assert.equal(chosen.status, 400);
  assert.match(chosen.body.errors[0], /"id"/);
  // Inherits the parent's policies when none are given.
  const inherited = await create({}, creator.token);
  assert.deepEqual(inherited.auth.policies, ['creator', 'default']);
  const bare = await create({ policies: ['creator'], no_default_policy: true }, creator.token);
  assert.deepEqual(bare.auth.policies, ['creator']);
});
