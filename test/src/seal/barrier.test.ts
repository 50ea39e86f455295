// The barrier: AES-256-GCM with the record identity as associated data, and
// key terms that keep decrypting after sys/rotate (in process and over HTTP,
// across a restart).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Barrier, open, seal, termOf } from '../../../src/seal/barrier.ts';
import { isBrokerError } from '../../../src/errors.ts';
import { initAndUnseal, startBroker, unseal, type BrokerProcess } from '../../support/broker.ts';

const HEADER = 5;
const NONCE = 12;
const TAG = 16;

const decryptFails = (fn: () => unknown, identity: string, what = identity): void => {
  assert.throws(fn, (err: unknown) => isBrokerError(err) && err.code === 'DBR_ERR_BARRIER_DECRYPT' && err.message.includes(`"${identity}"`), what);
};

const flip = (buf: Buffer, at: number): Buffer => {
  const copy = Buffer.from(buf);
  copy[at] = copy[at]! ^ 0x01;
  return copy;
};

test('a sealed record opens with its key and identity', () => {
  const key = randomBytes(32);
  const plaintext = Buffer.from('the secret password');
  const ct = seal(key, 7, 'lease/abc', plaintext);
  assert.equal(termOf(ct), 7);
  assert.equal(ct.length, HEADER + NONCE + TAG + plaintext.length);
  assert.ok(!ct.includes(plaintext), 'ciphertext must not contain the plaintext');
  assert.deepEqual(open(key, 'lease/abc', ct), plaintext);
  // The same plaintext twice gives different ciphertexts (random nonce).
  assert.notDeepEqual(seal(key, 7, 'lease/abc', plaintext), ct);
});

test('tampering with any byte of header, nonce, tag or data makes decryption fail', () => {
  const key = randomBytes(32);
  const ct = seal(key, 1, 'token/x', Buffer.from('{"policies":["root"]}'));
  const regions = {
    version: 0,
    term: 3,
    nonce: HEADER + 4,
    tag: HEADER + NONCE + 5,
    data: HEADER + NONCE + TAG + 2,
    'last data byte': ct.length - 1,
  };
  for (const [what, at] of Object.entries(regions)) decryptFails(() => open(key, 'token/x', flip(ct, at)), 'token/x', `flipped ${what}`);
  decryptFails(() => open(key, 'token/x', ct.subarray(0, ct.length - 1)), 'token/x');
  decryptFails(() => open(key, 'token/x', ct.subarray(0, HEADER + NONCE + TAG - 1)), 'token/x');
  decryptFails(() => open(key, 'token/x', Buffer.alloc(0)), 'token/x');
  decryptFails(() => open(randomBytes(32), 'token/x', ct), 'token/x');
});

test('associated data: a ciphertext moved to another record, or relabelled, fails', () => {
  const key = randomBytes(32);
  const ct = seal(key, 1, 'mounts/database/config/a', Buffer.from('{"password":"p"}'));
  decryptFails(() => open(key, 'mounts/database/config/b', ct), 'mounts/database/config/b');
  decryptFails(() => open(key, 'mounts/database/config/a ', ct), 'mounts/database/config/a ');
  decryptFails(() => open(key, '', ct), '');

  // A barrier with two terms: relabelling a term-1 record as term 2 fails even though both keys exist.
  const barrier = Barrier.create();
  const old = barrier.encrypt('core/x', 'v1');
  barrier.rotate();
  const relabelled = Buffer.from(old);
  relabelled.writeUInt32BE(2, 1);
  decryptFails(() => barrier.decrypt('core/x', relabelled), 'core/x');
  assert.equal(barrier.decrypt('core/x', old).toString(), 'v1');
});

test('rotation: new writes use the new term, old terms keep decrypting, and the keyring round-trips', () => {
  const barrier = Barrier.create();
  assert.equal(barrier.term, 1);
  const first = barrier.encryptJSON('entry/1', { n: 1 });
  const next = barrier.nextTerm();
  assert.equal(next.term, 2);
  assert.equal(barrier.term, 1, 'nextTerm does not install the term');
  // The keyring serialized with the pending term already holds it.
  const pending = Barrier.fromJSON(barrier.toJSON(next));
  assert.equal(pending.term, 2);
  barrier.install(next);
  const second = barrier.encryptJSON('entry/2', { n: 2 });
  assert.equal(termOf(first), 1);
  assert.equal(termOf(second), 2);
  barrier.rotate();
  const third = barrier.encryptJSON('entry/3', { n: 3 });
  assert.equal(termOf(third), 3);

  const restored = Barrier.fromJSON(barrier.toJSON());
  assert.equal(restored.term, 3);
  assert.deepEqual(restored.decryptJSON('entry/1', first), { n: 1 });
  assert.deepEqual(restored.decryptJSON('entry/2', second), { n: 2 });
  assert.deepEqual(restored.decryptJSON('entry/3', third), { n: 3 });
  assert.equal(restored.hmac('t'), barrier.hmac('t'), 'the token HMAC key survives rotation and restore');

  // A term the keyring does not know is a clear error, not a crash.
  const unknown = Buffer.from(third);
  unknown.writeUInt32BE(99, 1);
  assert.throws(() => restored.decrypt('entry/3', unknown), (err: unknown) => isBrokerError(err) && /unknown key term 99/.test(err.message));
});

test('wipe zeroes the key material', () => {
  const barrier = Barrier.create();
  const ct = barrier.encrypt('x', 'y');
  barrier.wipe();
  decryptFails(() => barrier.decrypt('x', ct), 'x');
});

let broker: BrokerProcess;
let rootToken: string;
let keys: string[];

before(async () => {
  broker = await startBroker();
  ({ rootToken, keys } = await initAndUnseal(broker, 1, 1));
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

test('over HTTP: sys/rotate increments the term; records of both terms read back, also after a restart', async () => {
  const status0 = await broker.api('GET', 'sys/key-status', { token: rootToken });
  assert.equal(status0.status, 200);
  assert.equal(status0.body.data.term, 1);
  assert.ok(!Number.isNaN(Date.parse(status0.body.data.install_time)));

  const before = await broker.api('PUT', 'auth/token/create', { token: rootToken, body: { policies: ['default'], display_name: 'before' } });
  assert.equal(before.status, 200);
  const policyBefore = await broker.api('PUT', 'sys/policies/acl/term-one', { token: rootToken, body: { policy: 'path "database/creds/a" { capabilities = ["read"] }' } });
  assert.equal(policyBefore.status, 204);

  const rotate = await broker.api('PUT', 'sys/rotate', { token: rootToken });
  assert.equal(rotate.status, 204);
  const status1 = await broker.api('GET', 'sys/key-status', { token: rootToken });
  assert.equal(status1.body.data.term, 2);
  assert.ok(Date.parse(status1.body.data.install_time) >= Date.parse(status0.body.data.install_time));

  const afterRotate = await broker.api('PUT', 'auth/token/create', { token: rootToken, body: { policies: ['default'], display_name: 'after' } });
  assert.equal(afterRotate.status, 200);
  assert.equal((await broker.api('PUT', 'sys/rotate', { token: rootToken })).status, 204);

  const check = async (): Promise<void> => {
    for (const [created, name] of [
      [before, 'token-before'],
      [afterRotate, 'token-after'],
    ] as const) {
      const lookup = await broker.api('PUT', 'auth/token/lookup', { token: rootToken, body: { token: created.body.auth.client_token } });
      assert.equal(lookup.status, 200, lookup.text);
      assert.equal(lookup.body.data.display_name, name);
      const self = await broker.api('GET', 'auth/token/lookup-self', { token: created.body.auth.client_token });
      assert.equal(self.status, 200, self.text);
    }
    const policy = await broker.api('GET', 'sys/policies/acl/term-one', { token: rootToken });
    assert.equal(policy.status, 200);
    assert.match(policy.body.data.policy, /database\/creds\/a/);
    const mounts = await broker.api('GET', 'sys/mounts', { token: rootToken });
    assert.ok(mounts.body.data['database/'], 'the default mount, written at term 1, still reads');
  };
  await check();

  await broker.restart();
  const sealed = await broker.api('GET', 'sys/key-status', { token: rootToken });
  assert.equal(sealed.status, 503);
  await unseal(broker, keys);
  const status3 = await broker.api('GET', 'sys/key-status', { token: rootToken });
  assert.equal(status3.body.data.term, 3, 'the rotated keyring was persisted');
  await check();
});

test('over HTTP: sys/rotate needs sudo', async () => {
  const child = await broker.api('PUT', 'auth/token/create', { token: rootToken, body: { policies: ['default'] } });
  const denied = await broker.api('PUT', 'sys/rotate', { token: child.body.auth.client_token });
  assert.equal(denied.status, 403);
  assert.deepEqual(denied.body, { errors: ['permission denied'] });
});

test('over HTTP: a sealed blob copied onto another record, or altered, is refused (never read as that record)', async () => {
  const child = await broker.api('PUT', 'auth/token/create', { token: rootToken, body: { policies: ['default'], ttl: '1h' } });
  const childToken = child.body.auth.client_token as string;
  assert.equal((await broker.api('PUT', 'sys/policies/acl/tamper-me', { token: rootToken, body: { policy: 'path "x" { capabilities = ["read"] }' } })).status, 204);
  await broker.stop();

  const { default: Database } = await import('better-sqlite3');
  const db = new Database(broker.storagePath);
  try {
    // The root token is the one without parent or expiry; give its sealed details to the child's row.
    const root = db.prepare('SELECT sealed FROM tokens WHERE parent_hash IS NULL AND expires_at IS NULL').get() as { sealed: Buffer };
    const changed = db.prepare('UPDATE tokens SET sealed = ? WHERE parent_hash IS NOT NULL AND expires_at IS NOT NULL').run(root.sealed).changes;
    assert.ok(changed >= 1);
    const policy = db.prepare("SELECT sealed FROM entries WHERE path = 'sys/policy/tamper-me'").get() as { sealed: Buffer };
    db.prepare("INSERT INTO entries (path, sealed) VALUES ('sys/policy/moved-here', ?)").run(policy.sealed);
    db.prepare("UPDATE entries SET sealed = ? WHERE path = 'sys/policy/tamper-me'").run(flip(policy.sealed, policy.sealed.length - 3));
  } finally {
    db.close();
  }

  await broker.start();
  await unseal(broker, keys);
  const asChild = await broker.api('GET', 'auth/token/lookup-self', { token: childToken });
  assert.equal(asChild.status, 500, 'a child row carrying the root token blob must not authenticate as anything');
  assert.match(asChild.body.errors[0], /^stored record "token\/[0-9a-f]{64}" failed to decrypt$/);
  const rotate = await broker.api('PUT', 'sys/rotate', { token: childToken });
  assert.notEqual(rotate.status, 204);
  const moved = await broker.api('GET', 'sys/policies/acl/moved-here', { token: rootToken });
  assert.equal(moved.status, 500);
  const altered = await broker.api('GET', 'sys/policies/acl/tamper-me', { token: rootToken });
  assert.equal(altered.status, 500);
  assert.match(broker.logs, /stored record \\"sys\/policy\/tamper-me\\" failed to decrypt/);
  // The root token itself is untouched.
  assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: rootToken })).status, 200);
});
