// The token store's in-memory cache (rows and decrypted details, by hash)
// never answers with what the store no longer holds: revocation, use counts,
// renewals and orphaning are exact at once, and a lookup whose read overlapped
// a write does not keep what it read.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TokenStore } from '../../../src/auth/token-store.ts';
import { Barrier } from '../../../src/seal/barrier.ts';
import { SqliteStorage } from '../../../src/storage/sqlite-storage.ts';
import type { TokenRow } from '../../../src/storage/storage.ts';

const dir = mkdtempSync(join(tmpdir(), 'dbroker-token-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;

/** A real SQLite store whose token reads can be held back (to overlap a read with a write). */
class HeldStore extends SqliteStorage {
  hold: Promise<void> | undefined;
  reads = 0;
  override async getToken(idHash: string): Promise<TokenRow | undefined> {
    this.reads++;
    const row = await super.getToken(idHash);
    if (this.hold) await this.hold;
    return row;
  }
}

function open(): { store: HeldStore; tokens: TokenStore; barrier: Barrier } {
  const store = new HeldStore(join(dir, `t${counter++}.db`));
  const barrier = Barrier.create();
  return { store, tokens: new TokenStore(store, () => barrier), barrier };
}

test('a cached token is served without a store read, and revoked at once', async () => {
  const { store, tokens } = open();
  const { secret, token } = await tokens.create({ policies: ['default'] });
  assert.ok(await tokens.lookup(secret));
  const reads = store.reads;
  const again = await tokens.lookup(secret);
  assert.equal(store.reads, reads, 'the second lookup comes from the cache');
  assert.deepEqual(again?.policies, ['default']);
  await tokens.revokeTree(token.idHash);
  assert.equal(await tokens.lookup(secret), undefined);
  await store.close();
});

test('use counts are exact through the cache: n uses, then refused', async () => {
  const { store, tokens } = open();
  const { secret } = await tokens.create({ policies: ['default'], numUses: 2 });
  for (let i = 0; i < 2; i++) {
    const t = await tokens.lookup(secret);
    assert.ok(t, `use ${i + 1}`);
    const use = await tokens.use(t);
    assert.equal(use.ok, true);
    assert.equal(use.exhausted, i === 1);
  }
  assert.equal(await tokens.lookup(secret), undefined, 'no use left');
  await store.close();
});

test('renewal, expiry and orphaning show at once', async () => {
  const { store, tokens } = open();
  const parent = await tokens.create({ policies: ['default'], ttl: 600 });
  const child = await tokens.create({ policies: ['default'], ttl: 60, parent: parent.token });
  const before = await tokens.lookup(child.secret);
  assert.equal(before?.parentHash, parent.token.idHash);
  const renewed = await tokens.renew(before!, 300);
  assert.equal((await tokens.lookup(child.secret))?.expiresAt, renewed.token.expiresAt);
  assert.equal(await tokens.orphanChildren(parent.token.idHash), 1);
  assert.equal((await tokens.lookup(child.secret))?.parentHash, null);
  await store.close();
});

test('a cached token expires on the clock, without a write', async () => {
  const { store, tokens } = open();
  const { secret, token } = await tokens.create({ policies: ['default'], ttl: 1 });
  assert.ok(await tokens.lookup(secret));
  const reads = store.reads;
  while (Date.now() <= token.expiresAt!) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await tokens.lookup(secret), undefined);
  assert.equal(store.reads, reads, 'refused from the cached row');
  await store.close();
});

test('a lookup whose read overlaps a revocation does not keep the row it read', async () => {
  const { store, tokens } = open();
  const { secret, token } = await tokens.create({ policies: ['default'] });
  let release!: () => void;
  store.hold = new Promise((ok) => (release = ok));
  const reading = tokens.lookup(secret); // reads the row, then waits
  await tokens.revokeTree(token.idHash); // deletes it meanwhile
  release();
  store.hold = undefined;
  assert.ok(await reading, 'the overlapping lookup answers with what it read');
  assert.equal(await tokens.lookup(secret), undefined, 'but the next one reads the store again');
  await store.close();
});

test('cached details are frozen: a caller cannot change what the next lookup returns', async () => {
  const { store, tokens } = open();
  const { secret } = await tokens.create({ policies: ['a', 'b'], meta: { team: 'blue' } });
  const t = await tokens.lookup(secret);
  assert.throws(() => (t!.policies as string[]).push('root'));
  assert.throws(() => {
    t!.meta.team = 'red';
  });
  assert.deepEqual((await tokens.lookup(secret))?.policies, ['a', 'b']);
  await store.close();
});

test('forget() drops everything: the next lookup reads and decrypts again', async () => {
  const { store, tokens } = open();
  const { secret } = await tokens.create({ policies: ['default'] });
  await tokens.lookup(secret);
  tokens.forget();
  const reads = store.reads;
  assert.ok(await tokens.lookup(secret));
  assert.equal(store.reads, reads + 1);
  await store.close();
});
