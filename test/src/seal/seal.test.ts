// The Shamir seal over HTTP: init, unseal progress, refused shares, reset,
// sys/seal, what answers while sealed, and a restart that keeps every record.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, unseal, type BrokerProcess } from '../../support/broker.ts';

let broker: BrokerProcess;
let keys: string[];
let keysBase64: string[];
let rootToken: string;

before(async () => {
  broker = await startBroker();
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

const sealStatus = async () => (await broker.api('GET', 'sys/seal-status')).body as { sealed: boolean; t: number; n: number; progress: number; initialized: boolean };

/** Flip one hex digit of a share: still well-formed, but not a share of this store. */
const corrupt = (hex: string): string => hex.slice(0, 10) + (hex[10] === '0' ? '1' : '0') + hex.slice(11);

test('before init: sys/init says false, health 501, unseal refuses, data paths 503', async () => {
  assert.deepEqual((await broker.api('GET', 'sys/init')).body, { initialized: false });
  const health = await broker.api('GET', 'sys/health');
  assert.equal(health.status, 501);
  assert.equal(health.body.initialized, false);
  const status = await sealStatus();
  assert.equal(status.initialized, false);
  assert.equal(status.sealed, true);
  const unsealEarly = await broker.api('PUT', 'sys/unseal', { body: { key: 'ab'.repeat(33) } });
  assert.equal(unsealEarly.status, 400);
  assert.deepEqual(unsealEarly.body, { errors: ['dbroker is not initialized'] });
  assert.equal((await broker.api('GET', 'sys/mounts', { token: 'x' })).status, 503);
});

test('init 5/3 returns five shares (hex and base64) and a root token, once', async () => {
  // Two inits at once: exactly one wins, so no one holds shares of an overwritten keyring.
  const [a, b] = await Promise.all([
    broker.api('PUT', 'sys/init', { body: { secret_shares: 5, secret_threshold: 3 } }),
    broker.api('PUT', 'sys/init', { body: { secret_shares: 5, secret_threshold: 3 } }),
  ]);
  const won = [a, b].filter((r) => r.status === 200);
  const lost = [a, b].filter((r) => r.status !== 200);
  assert.equal(won.length, 1, `one init must win: ${a.status} ${b.status}`);
  assert.equal(lost[0]!.status, 400);
  assert.deepEqual(lost[0]!.body, { errors: ['dbroker is already initialized'] });
  const init = won[0]!;
  keys = init.body.keys;
  keysBase64 = init.body.keys_base64;
  rootToken = init.body.root_token;
  assert.equal(keys.length, 5);
  assert.equal(new Set(keys).size, 5);
  for (const [i, k] of keys.entries()) {
    assert.match(k, /^[0-9a-f]{66}$/, 'a share is 33 bytes: 32 of key and the x coordinate');
    assert.equal(Buffer.from(keysBase64[i]!, 'base64').toString('hex'), k);
  }
  assert.match(rootToken, /^hvs\.[A-Za-z0-9_-]{40,}$/);
  assert.deepEqual((await broker.api('GET', 'sys/init')).body, { initialized: true });

  const again = await broker.api('PUT', 'sys/init', { body: { secret_shares: 1, secret_threshold: 1 } });
  assert.equal(again.status, 400);
  assert.deepEqual(again.body, { errors: ['dbroker is already initialized'] });
});

test('while sealed: data paths answer 503, the seal endpoints answer', async () => {
  const status = await sealStatus();
  assert.deepEqual({ sealed: status.sealed, t: status.t, n: status.n, progress: status.progress }, { sealed: true, t: 3, n: 5, progress: 0 });
  for (const [method, path] of [
    ['GET', 'sys/mounts'],
    ['GET', 'sys/key-status'],
    ['GET', 'auth/token/lookup-self'],
    ['PUT', 'auth/token/create'],
    ['GET', 'sys/policies/acl?list=true'],
    ['GET', 'database/creds/readonly'],
    ['GET', 'database/roles/x'],
    ['PUT', 'sys/leases/lookup'],
    ['GET', 'no/such/path'],
  ] as const) {
    const r = await broker.api(method, path, { token: rootToken });
    assert.equal(r.status, 503, `${method} ${path}`);
    assert.deepEqual(r.body, { errors: ['dbroker is sealed'] }, `${method} ${path}`);
  }
  const health = await broker.api('GET', 'sys/health');
  assert.equal(health.status, 503);
  assert.equal(health.body.sealed, true);
  assert.equal(health.body.initialized, true);
  assert.equal((await broker.api('GET', 'sys/init')).status, 200);
});

test('malformed, wrong-length, corrupted and duplicate shares: 400 and no progress', async () => {
  const refuse = async (key: unknown, message: RegExp, what: string): Promise<void> => {
    const before = (await sealStatus()).progress;
    const r = await broker.api('PUT', 'sys/unseal', { body: { key } });
    assert.equal(r.status, 400, `${what}: ${r.text}`);
    assert.equal(r.body.errors.length, 1);
    assert.match(r.body.errors[0], message, what);
    assert.equal((await sealStatus()).progress, before, `${what} must add no progress`);
  };
  await refuse('zz-not-a-key', /"key" must be hex or base64/, 'not hex');
  await refuse('', /"key" must be hex or base64/, 'empty');
  await refuse(keys[0]!.slice(0, 64), /wrong length: expected 33 bytes, got 32/, 'too short');
  await refuse(keys[0]! + 'ab', /wrong length/, 'too long');
  await refuse(corrupt(keys[0]!), /not one of this dbroker's key shares/, 'one digit changed');
  await refuse(5, /invalid field "key": must be string/, 'a number');
  const missing = await broker.api('PUT', 'sys/unseal', { body: {} });
  assert.equal(missing.status, 400);
  assert.match(missing.body.errors[0], /"key"/);

  const first = await broker.api('PUT', 'sys/unseal', { body: { key: keys[0] } });
  assert.equal(first.status, 200);
  assert.equal(first.body.progress, 1);
  await refuse(keys[0], /already submitted/, 'the same share again');
  await refuse(keysBase64[0], /already submitted/, 'the same share in base64');
  await refuse(corrupt(keys[1]!), /not one of this dbroker's key shares/, 'corrupted second share');
  assert.equal((await sealStatus()).sealed, true);
});

test('two shares do not unseal; reset clears progress; three shares unseal', async () => {
  const second = await broker.api('PUT', 'sys/unseal', { body: { key: keysBase64[1] } });
  assert.equal(second.status, 200);
  assert.deepEqual({ sealed: second.body.sealed, progress: second.body.progress, t: second.body.t, n: second.body.n }, { sealed: true, progress: 2, t: 3, n: 5 });
  assert.equal((await broker.api('GET', 'sys/mounts', { token: rootToken })).status, 503);

  const reset = await broker.api('PUT', 'sys/unseal', { body: { reset: true } });
  assert.equal(reset.status, 200);
  assert.equal(reset.body.progress, 0);
  assert.equal(reset.body.sealed, true);

  // Any three of the five, in any encoding.
  assert.equal((await broker.api('PUT', 'sys/unseal', { body: { key: keys[4] } })).body.progress, 1);
  assert.equal((await broker.api('PUT', 'sys/unseal', { body: { key: keysBase64[2] } })).body.progress, 2);
  const third = await broker.api('PUT', 'sys/unseal', { body: { key: keys[3] } });
  assert.equal(third.status, 200);
  assert.equal(third.body.sealed, false);
  assert.equal(third.body.progress, 0);
  assert.equal((await broker.api('GET', 'sys/health')).status, 200);
  assert.equal((await broker.api('GET', 'sys/mounts', { token: rootToken })).status, 200);
  // Unsealing an unsealed broker is a no-op status answer.
  const noop = await broker.api('PUT', 'sys/unseal', { body: { key: keys[0] } });
  assert.equal(noop.status, 200);
  assert.equal(noop.body.sealed, false);
});

test('restart: sealed again, and after unseal tokens, mounts and policies are intact', async () => {
  const child = await broker.api('PUT', 'auth/token/create', {
    token: rootToken,
    body: { policies: ['reader'], ttl: '1h', display_name: 'kept', meta: { team: 'blue' } },
  });
  assert.equal(child.status, 200);
  const childToken = child.body.auth.client_token as string;
  const policy = 'path "database/creds/reader" { capabilities = ["read"] }';
  assert.equal((await broker.api('PUT', 'sys/policies/acl/reader', { token: rootToken, body: { policy } })).status, 204);
  assert.equal((await broker.api('PUT', 'sys/mounts/extra-db', { token: rootToken, body: { type: 'database', description: 'second' } })).status, 204);
  const mountsBefore = (await broker.api('GET', 'sys/mounts', { token: rootToken })).body.data;

  await broker.restart();
  const status = await sealStatus();
  assert.deepEqual({ sealed: status.sealed, progress: status.progress, initialized: status.initialized }, { sealed: true, progress: 0, initialized: true });
  assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: childToken })).status, 503);
  await unseal(broker, [keys[2]!, keys[0]!, keys[1]!]);

  const self = await broker.api('GET', 'auth/token/lookup-self', { token: childToken });
  assert.equal(self.status, 200);
  assert.equal(self.body.data.display_name, 'token-kept');
  assert.deepEqual(self.body.data.meta, { team: 'blue' });
  assert.deepEqual(self.body.data.policies, ['default', 'reader']);
  assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: rootToken })).body.data.policies[0], 'root');
  assert.deepEqual((await broker.api('GET', 'sys/policies/acl/reader', { token: rootToken })).body.data, { name: 'reader', policy });
  assert.deepEqual((await broker.api('GET', 'sys/mounts', { token: rootToken })).body.data, mountsBefore);
});

test('sys/seal needs a root/sudo token, drops the keys, and the store unseals again', async () => {
  const child = await broker.api('PUT', 'auth/token/create', { token: rootToken, body: { policies: ['reader'] } });
  const denied = await broker.api('PUT', 'sys/seal', { token: child.body.auth.client_token });
  assert.equal(denied.status, 403);
  assert.equal((await broker.api('PUT', 'sys/seal')).status, 403, 'no token');
  assert.equal((await sealStatus()).sealed, false);

  const sealed = await broker.api('PUT', 'sys/seal', { token: rootToken });
  assert.equal(sealed.status, 204);
  assert.equal((await sealStatus()).sealed, true);
  const after = await broker.api('GET', 'auth/token/lookup-self', { token: rootToken });
  assert.equal(after.status, 503);
  assert.deepEqual(after.body, { errors: ['dbroker is sealed'] });
  assert.equal((await broker.api('GET', 'sys/health')).status, 503);

  await unseal(broker, keys.slice(1, 4));
  assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: rootToken })).status, 200);
});

test('init refuses bad share/threshold combinations with the field named', async () => {
  const fresh = await startBroker();
  try {
    for (const [body, field, message] of [
      [{ secret_shares: 3, secret_threshold: 4 }, 'secret_threshold', /must not exceed secret_shares/],
      [{ secret_shares: 256, secret_threshold: 3 }, 'secret_shares', /must be <= 255/],
      [{ secret_shares: 0, secret_threshold: 0 }, 'secret_shares', /must be >= 1/],
      [{ secret_shares: 5, secret_threshold: 1 }, 'secret_threshold', /at least 2/],
      [{ secret_shares: 'five', secret_threshold: 3 }, 'secret_shares', /must be integer/],
      [{ secret_shares: 2.5, secret_threshold: 2 }, 'secret_shares', /must be integer/],
      [{ secret_threshold: 3 }, 'secret_shares', /missing required field/],
      [{ secret_shares: 5, secret_threshold: 3, pgp_keys: ['x'] }, 'pgp_keys', /must NOT have more than 0 items/],
      // An unknown field with a bad known one: the known one is refused (unknown ones are ignored, as Vault does).
      [{ secret_shares: 5, secret_threshold: 9, bogus: 1 }, 'secret_threshold', /must not exceed/],
    ] as const) {
      const r = await fresh.api('PUT', 'sys/init', { body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.body.errors[0], new RegExp(`"${field}"`), JSON.stringify(body));
      assert.match(r.body.errors[0], message, JSON.stringify(body));
    }
    assert.deepEqual((await fresh.api('GET', 'sys/init')).body, { initialized: false }, 'no refused init left anything behind');
    // 1/1 (dev style): the single share is the whole key.
    const init = await fresh.api('PUT', 'sys/init', { body: { secret_shares: 1, secret_threshold: 1 } });
    assert.equal(init.status, 200);
    assert.match(init.body.keys[0], /^[0-9a-f]{64}$/);
    const wrong = await fresh.api('PUT', 'sys/unseal', { body: { key: corrupt(init.body.keys[0]) } });
    assert.equal(wrong.status, 400);
    await unseal(fresh, init.body.keys);
    assert.equal((await fresh.api('GET', 'sys/health')).status, 200);
  } finally {
    await fresh.stop();
    fresh.remove();
  }
});
