// The Storage interface, the same assertions against both backends: the
// SQLite file and the PostgreSQL store (a fresh database on the local server,
// a fresh table prefix per test). Every method is exercised with the value it
// must return; backend-specific behaviour (group commit, EXPLAIN, fencing)
// lives in sqlite-storage.test.ts and postgres-storage.test.ts.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PostgresStorage } from '../../../src/storage/postgres-storage.ts';
import { SqliteStorage } from '../../../src/storage/sqlite-storage.ts';
import type { LeaseRow, SecretIdRow, Storage, TokenRow } from '../../../src/storage/storage.ts';
import { createStoreDatabase, type StoreDatabase } from '../../support/pg-store.ts';

const dir = mkdtempSync(join(tmpdir(), 'dbroker-conformance-'));
let pgdb: StoreDatabase;
let counter = 0;

before(async () => {
  pgdb = await createStoreDatabase('conformance');
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pgdb?.drop();
});

const backends: Array<{ name: string; open: () => Promise<Storage> }> = [
  { name: 'sqlite', open: async () => new SqliteStorage(join(dir, `s${counter++}.db`)) },
  { name: 'postgresql', open: () => PostgresStorage.open({ connectionUrl: pgdb.url, tablePrefix: `t${counter++}_`, mode: 'tool' }) },
];

function lease(id: string, fields: Partial<LeaseRow> = {}): LeaseRow {
  return {
    id,
    mount: 'database/',
    role: 'r',
    connection: 'c',
    state: 'active',
    issueTime: 1,
    expireTime: 1_000,
    maxExpireTime: 2_000,
    lastRenewal: null,
    dueAt: 1_000,
    attempts: 0,
    lastError: null,
    tokenHash: null,
    sealed: Buffer.from([0, 1, 2, 255]),
    ...fields,
  };
}

function token(idHash: string, fields: Partial<TokenRow> = {}): TokenRow {
  return { idHash, accessorHash: `acc-${idHash}`, parentHash: null, expiresAt: null, usesLeft: null, sealed: Buffer.from(`sealed-${idHash}`), authMount: null, ...fields };
}

for (const backend of backends) {
  describe(`storage conformance: ${backend.name}`, () => {
    const withStore = (name: string, body: (s: Storage) => Promise<void>) =>
      test(name, async () => {
        const store = await backend.open();
        try {
          await body(store);
        } finally {
          await store.close();
        }
      });

    withStore('meta: absent, put, overwrite; values are bytes', async (s) => {
      assert.equal(await s.getMeta('k'), undefined);
      await s.putMeta('k', Buffer.from([1, 2]));
      await s.putMeta('k', Buffer.from([3, 0, 4]));
      assert.deepEqual(await s.getMeta('k'), Buffer.from([3, 0, 4]));
    });

    withStore('entries: put, overwrite, delete, list by prefix in byte order', async (s) => {
      for (const p of ['a/b', 'a/a', 'a0', 'a/c/d', 'b/x', 'A/y']) await s.putEntry(p, Buffer.from(p));
      await s.putEntry('a/b', Buffer.from('again'));
      assert.deepEqual(await s.getEntry('a/b'), Buffer.from('again'));
      assert.deepEqual(await s.listEntries('a/'), ['a/a', 'a/b', 'a/c/d']);
      assert.deepEqual(await s.listEntries(''), ['A/y', 'a/a', 'a/b', 'a/c/d', 'a0', 'b/x']);
      await s.deleteEntry('a/a');
      await s.deleteEntry('missing');
      assert.equal(await s.getEntry('a/a'), undefined);
      assert.deepEqual(await s.listEntries('a/'), ['a/b', 'a/c/d']);
    });

    withStore('tokens: insert, lookups, update, uses, children, expiry, delete', async (s) => {
      await s.insertToken(token('p'));
      await s.insertToken(token('c1', { parentHash: 'p', expiresAt: 300, usesLeft: 2 }));
      await s.insertToken(token('c2', { parentHash: 'p', expiresAt: 100 }));
      await s.insertToken(token('c3', { expiresAt: 200 }));
      await assert.rejects(s.insertToken(token('p')), 'a duplicate id is refused');
      assert.deepEqual(await s.getToken('c1'), token('c1', { parentHash: 'p', expiresAt: 300, usesLeft: 2 }));
      assert.equal((await s.getTokenByAccessor('acc-c2'))?.idHash, 'c2');
      assert.equal(await s.getToken('none'), undefined);
      assert.deepEqual((await s.childTokens('p')).sort(), ['c1', 'c2']);
      assert.deepEqual(await s.expiredTokens(250, 10), ['c2', 'c3'], 'oldest first');
      assert.deepEqual(await s.expiredTokens(1_000, 1), ['c2'], 'limited');
      assert.deepEqual(await s.useToken('c1'), { ok: true, left: 1 });
      assert.deepEqual(await s.useToken('c1'), { ok: true, left: 0 });
      assert.deepEqual(await s.useToken('c1'), { ok: false, left: null });
      assert.deepEqual(await s.useToken('p'), { ok: true, left: null }, 'unlimited');
      await s.updateToken('c3', { expiresAt: null, sealed: Buffer.from('new') });
      await s.updateToken('c3', {});
      const c3 = await s.getToken('c3');
      assert.equal(c3?.expiresAt, null);
      assert.deepEqual(c3?.sealed, Buffer.from('new'));
      await s.deleteToken('c2');
      assert.equal(await s.getToken('c2'), undefined);
      assert.deepEqual(await s.expiredTokens(10_000, 10), ['c1']);
    });

    withStore('leases: insert, get, update, delete; a duplicate is refused', async (s) => {
      await s.insertLease(lease('database/creds/r/1', { tokenHash: 't', lastRenewal: 5 }));
      await assert.rejects(s.insertLease(lease('database/creds/r/1')));
      assert.deepEqual(await s.getLease('database/creds/r/1'), lease('database/creds/r/1', { tokenHash: 't', lastRenewal: 5 }));
      await s.updateLease('database/creds/r/1', { state: 'pending', attempts: 3, lastError: 'boom', dueAt: 7, expireTime: 8, sealed: Buffer.from('z') });
      const got = await s.getLease('database/creds/r/1');
      assert.deepEqual(
        { state: got?.state, attempts: got?.attempts, lastError: got?.lastError, dueAt: got?.dueAt, expireTime: got?.expireTime, sealed: got?.sealed },
        { state: 'pending', attempts: 3, lastError: 'boom', dueAt: 7, expireTime: 8, sealed: Buffer.from('z') },
      );
      await s.deleteLease('database/creds/r/1');
      await s.deleteLease('database/creds/r/none');
      assert.equal(await s.getLease('database/creds/r/1'), undefined);
    });

    withStore('lease status: the lookup columns only, exactly as stored, after each write; pending included; undefined when absent', async (s) => {
      const t = 1_764_547_200_123;
      assert.equal(await s.getLeaseStatus('database/creds/r/s'), undefined);
      await s.insertLease(lease('database/creds/r/s', { issueTime: t, expireTime: t + 1, maxExpireTime: t + 2, dueAt: t + 3, tokenHash: 'tok', lastRenewal: null }));
      const status = { id: 'database/creds/r/s', state: 'active', issueTime: t, expireTime: t + 1, maxExpireTime: t + 2, lastRenewal: null, dueAt: t + 3, attempts: 0, lastError: null };
      // Exactly these keys: neither the sealed context nor mount, role, connection or token.
      assert.deepEqual(await s.getLeaseStatus('database/creds/r/s'), status);
      await s.updateLease('database/creds/r/s', { state: 'revoking', attempts: 2, lastError: 'boom', lastRenewal: t + 4, dueAt: t + 5 });
      assert.deepEqual(await s.getLeaseStatus('database/creds/r/s'), { ...status, state: 'revoking', attempts: 2, lastError: 'boom', lastRenewal: t + 4, dueAt: t + 5 });
      await s.updateLease('database/creds/r/s', { state: 'pending' });
      assert.equal((await s.getLeaseStatus('database/creds/r/s'))?.state, 'pending', 'the store reports pending leases; the lease manager hides them');
      assert.equal(await s.getLeaseStatus('database/creds/r/'), undefined, 'an exact id, not a prefix');
      await s.deleteLease('database/creds/r/s');
      assert.equal(await s.getLeaseStatus('database/creds/r/s'), undefined);
    });

    withStore('insertLeaseWriteAhead: the row is readable once it resolves, durable settles, a duplicate id is refused and stores nothing', async (s) => {
      const row = lease('database/creds/r/w', { state: 'pending', dueAt: 5 });
      const { durable } = await s.insertLeaseWriteAhead(row);
      assert.deepEqual(await s.getLease('database/creds/r/w'), row, 'committed before it is durable');
      await durable;
      await assert.rejects(s.insertLeaseWriteAhead({ ...row, role: 'other' }));
      assert.equal((await s.getLease('database/creds/r/w'))?.role, 'r');
      // Writes in one turn share a transaction; one failing leaves the other committed and durable.
      const [dup, fresh] = await Promise.allSettled([s.insertLeaseWriteAhead(row), s.insertLeaseWriteAhead(lease('database/creds/r/w2'))]);
      assert.equal(dup.status, 'rejected');
      assert.equal(fresh.status, 'fulfilled');
      if (fresh.status === 'fulfilled') await fresh.value.durable;
      assert.equal((await s.getLease('database/creds/r/w2'))?.id, 'database/creds/r/w2');
    });

    withStore('epoch milliseconds round-trip exactly (beyond 32 bits)', async (s) => {
      const t = 1_764_547_200_123;
      await s.insertLease(lease('database/creds/r/t', { issueTime: t, expireTime: t + 1, maxExpireTime: t + 2, dueAt: t + 3 }));
      const got = await s.getLease('database/creds/r/t');
      assert.deepEqual([got?.issueTime, got?.expireTime, got?.maxExpireTime, got?.dueAt], [t, t + 1, t + 2, t + 3]);
      assert.equal(typeof got?.dueAt, 'number');
    });

    withStore('claims: due order, limit, active becomes revoking, pushed out, connections skipped', async (s) => {
      await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          s.insertLease(lease(`database/creds/r/${String(i).padStart(2, '0')}`, { dueAt: i < 10 ? 100 + i : 10_000 + i, state: i === 3 ? 'pending' : 'active', connection: i === 5 ? 'slow' : 'c' })),
        ),
      );
      const first = await s.claimDueLeases(1_000, 5_000, 4);
      assert.deepEqual(first.map((l) => l.dueAt), [100, 101, 102, 103], 'the rows as they were when claimed, in due order');
      assert.deepEqual(first.map((l) => l.state), ['revoking', 'revoking', 'revoking', 'pending']);
      assert.equal((await s.getLease('database/creds/r/00'))?.dueAt, 5_000, 'the claim is stored');
      const rest = await s.claimDueLeases(1_000, 5_000, 100, [{ mount: 'database/', connection: 'slow' }]);
      assert.deepEqual(rest.map((l) => l.id), ['database/creds/r/04', 'database/creds/r/06', 'database/creds/r/07', 'database/creds/r/08', 'database/creds/r/09']);
      assert.deepEqual((await s.claimDueLeases(1_000, 5_000, 100)).map((l) => l.id), ['database/creds/r/05'], 'claimed leases are not claimed twice');
      assert.equal((await s.claimDueLeases(4_999, 9_000, 100)).length, 0);
      assert.equal((await s.claimDueLeases(5_000, 9_000, 100)).length, 10, 'an unfinished claim becomes due again');
    });

    withStore('nextDueAt: the earliest due time of any lease, null without leases, a claim moves it', async (s) => {
      assert.equal(await s.nextDueAt(), null);
      const t = 1_764_547_200_123;
      await s.insertLease(lease('database/creds/r/late', { dueAt: t + 500 }));
      await s.insertLease(lease('database/creds/r/soon', { dueAt: t }));
      assert.equal(await s.nextDueAt(), t);
      assert.equal(typeof (await s.nextDueAt()), 'number');
      await s.claimDueLeases(t, t + 10_000, 1);
      assert.equal(await s.nextDueAt(), t + 500, 'the claimed lease is due again only at the claim\'s end');
      await s.deleteLease('database/creds/r/late');
      assert.equal(await s.nextDueAt(), t + 10_000);
    });

    withStore('lease ids by prefix, paged; counts; failing leases', async (s) => {
      const ids = ['database/creds/a/1', 'database/creds/a/2', 'database/creds/a/3', 'database/creds/ab/1', 'other/creds/a/1'];
      for (const [i, id] of ids.entries()) await s.insertLease(lease(id, { mount: id.startsWith('other') ? 'other/' : 'database/', role: id.split('/')[2]!, attempts: i, connection: i % 2 ? 'x' : 'y' }));
      assert.deepEqual(await s.listLeaseIds('database/creds/a/', 2), ['database/creds/a/1', 'database/creds/a/2']);
      assert.deepEqual(await s.listLeaseIds('database/creds/a/', 2, 'database/creds/a/2'), ['database/creds/a/3']);
      assert.deepEqual(await s.listLeaseIds('database/creds/a', 10), ['database/creds/a/1', 'database/creds/a/2', 'database/creds/a/3', 'database/creds/ab/1']);
      assert.equal(await s.countLeases({}), 5);
      assert.equal(await s.countLeases({ prefix: 'database/' }), 4);
      assert.equal(await s.countLeases({ mount: 'database/', role: 'a' }), 3);
      assert.equal(await s.countLeases({ mount: 'database/', connection: 'x' }), 2);
      assert.equal(await s.countLeases({ minAttempts: 3 }), 2);
      assert.deepEqual((await s.listFailingLeases(3, 10)).map((l) => l.id), ['database/creds/ab/1', 'other/creds/a/1']);
      assert.deepEqual((await s.listFailingLeases(1, 1)).map((l) => l.id), ['database/creds/a/2']);
    });

    withStore('expedite by prefix, token and mount; recover interrupted; delete by prefix', async (s) => {
      await s.insertLease(lease('database/creds/a/1', { dueAt: 5_000, expireTime: 5_000, tokenHash: 'tk' }));
      await s.insertLease(lease('database/creds/a/2', { dueAt: 5_000, expireTime: 400 }));
      await s.insertLease(lease('database/creds/b/1', { dueAt: 5_000, tokenHash: 'tk', state: 'pending' }));
      await s.insertLease(lease('m2/creds/b/1', { mount: 'm2/', dueAt: 5_000, state: 'revoking' }));
      await s.insertLease(lease('m2/creds/b/2', { mount: 'm2/', dueAt: 50 }));
      assert.equal(await s.expediteLeases({ prefix: 'database/creds/a/' }, 500), 2);
      assert.deepEqual([(await s.getLease('database/creds/a/1'))?.dueAt, (await s.getLease('database/creds/a/1'))?.expireTime], [500, 500]);
      assert.equal((await s.getLease('database/creds/a/2'))?.expireTime, 400, 'expiry only ever comes closer');
      assert.equal(await s.expediteLeases({ tokenHash: 'tk' }, 600), 1, 'a lease already due sooner is left alone');
      assert.equal(await s.expediteLeases({ mount: 'm2/' }, 700), 1);
      await s.updateLease('m2/creds/b/1', { dueAt: 9_000 });
      await s.updateLease('database/creds/b/1', { dueAt: 9_000 });
      assert.equal(await s.recoverInterrupted(800), 2, 'pending and revoking leases become due now (active ones are left alone)');
      assert.equal(await s.recoverInterrupted(800), 0, 'none is due later than now any more');
      assert.equal((await s.getLease('m2/creds/b/1'))?.dueAt, 800);
      assert.equal(await s.deleteLeases('database/creds/'), 3);
      assert.equal(await s.countLeases({}), 2);
    });

    withStore('concurrent writes: each settles on its own; one failure rejects alone', async (s) => {
      await s.insertLease(lease('database/creds/r/dup'));
      const results = await Promise.allSettled([
        s.insertLease(lease('database/creds/r/a')),
        s.insertLease(lease('database/creds/r/dup')),
        s.insertLease(lease('database/creds/r/b')),
        s.updateLease('database/creds/r/dup', { attempts: 7 }),
        s.deleteLease('database/creds/r/missing'),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
      assert.deepEqual(await s.listLeaseIds('', 10), ['database/creds/r/a', 'database/creds/r/b', 'database/creds/r/dup']);
      assert.equal((await s.getLease('database/creds/r/dup'))?.attempts, 7);
    });

    withStore('metrics reads: active leases by mount and role, the oldest due lease', async (s) => {
      await s.insertLease(lease('database/creds/a/1', { role: 'a', dueAt: 500 }));
      await s.insertLease(lease('database/creds/a/2', { role: 'a', dueAt: 300 }));
      await s.insertLease(lease('database/creds/b/1', { role: 'b', dueAt: 900 }));
      await s.insertLease(lease('database/creds/b/2', { role: 'b', state: 'pending', dueAt: 100 }));
      const counts = (await s.activeLeaseCounts()).map((c) => ({ ...c, count: Number(c.count) })).sort((x, y) => x.role.localeCompare(y.role));
      assert.deepEqual(counts, [
        { mount: 'database/', role: 'a', count: 2 },
        { mount: 'database/', role: 'b', count: 1 },
      ]);
      assert.equal(await s.oldestDueAt(400), 100);
      assert.equal(await s.oldestDueAt(50), undefined);
    });

    withStore('tokens of an auth mount, orphaning children, token hashes in pages', async (s) => {
      await s.insertToken(token('p', { authMount: 'approle/' }));
      await s.insertToken(token('c1', { parentHash: 'p', authMount: 'approle/' }));
      await s.insertToken(token('c2', { parentHash: 'p' }));
      await s.insertToken(token('x', { authMount: 'userpass/' }));
      assert.deepEqual((await s.tokensOfAuthMount('approle/', 10)).sort(), ['c1', 'p']);
      assert.equal((await s.tokensOfAuthMount('approle/', 1)).length, 1);
      assert.equal((await s.getToken('x'))?.authMount, 'userpass/');
      assert.equal((await s.getToken('c2'))?.authMount ?? null, null);
      assert.equal(await s.orphanChildren('p'), 2);
      assert.deepEqual(await s.childTokens('p'), []);
      assert.equal((await s.getToken('c1'))?.parentHash, null);
      assert.deepEqual(await s.listTokenHashes(2), ['c1', 'c2']);
      assert.deepEqual(await s.listTokenHashes(10, 'c2'), ['p', 'x']);
    });

    withStore('secret IDs: by hash and accessor, atomic uses, expiry, per role and mount', async (s) => {
      const sid = (idHash: string, fields: Partial<SecretIdRow> = {}): SecretIdRow => ({
        idHash, accessorHash: `acc-${idHash}`, mount: 'm1', role: 'r1', expiresAt: null, usesLeft: null, sealed: Buffer.from([9, 0, idHash.length]), ...fields,
      });
      await s.insertSecretId(sid('limited', { usesLeft: 5 }));
      await s.insertSecretId(sid('expiring', { expiresAt: 1_000 }));
      await s.insertSecretId(sid('other', { role: 'r2' }));
      await s.insertSecretId(sid('elsewhere', { mount: 'm2' }));
      assert.deepEqual(await s.getSecretId('limited'), sid('limited', { usesLeft: 5 }));
      assert.equal((await s.getSecretIdByAccessor('acc-other'))?.role, 'r2');
      assert.equal(await s.getSecretId('nope'), undefined);
      // 20 concurrent uses of a 5-use secret ID: exactly 5 succeed.
      const uses = await Promise.all(Array.from({ length: 20 }, () => s.useSecretId('limited', 0)));
      assert.equal(uses.filter((u) => u.ok).length, 5);
      assert.deepEqual(uses.filter((u) => u.ok).map((u) => u.left).sort(), [0, 1, 2, 3, 4]);
      assert.deepEqual(await s.useSecretId('expiring', 999), { ok: true, left: null });
      assert.deepEqual(await s.useSecretId('expiring', 1_000), { ok: false, left: null }, 'expired at its expiry time');
      assert.deepEqual((await s.listSecretIds('m1', 'r1')).map((r) => r.idHash).sort(), ['expiring', 'limited']);
      assert.equal((await s.listSecretIds('m1')).length, 3);
      assert.equal(await s.deleteExpiredSecretIds(1_000), 1);
      assert.equal(await s.getSecretId('expiring'), undefined);
      await s.deleteSecretId('limited');
      assert.equal(await s.deleteSecretIds('m1', 'r2'), 1);
      assert.equal(await s.deleteSecretIds('m2'), 1);
      assert.deepEqual(await s.listSecretIds('m1'), []);
    });
  });
}

test('writes started before close are committed; writes after close fail (both backends)', async () => {
  for (const backend of backends) {
    const store = await backend.open();
    const queued = store.insertLease(lease('database/creds/r/q'));
    await store.close();
    await queued;
    await assert.rejects(store.insertLease(lease('database/creds/r/late')), backend.name);
  }
});
