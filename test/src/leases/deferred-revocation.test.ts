// A revocation that reaches a lease while this process is still issuing it is
// deferred until the issuance ends (lease-manager.ts). It used to be lost when
// it arrived after the issuance's settle step had looked for it: the loop
// claiming a failed issuance's row (claimed rows come due again only after
// CLAIM_MS, 120 s; a CI run waited 15 s for it), or a revoke arriving while
// the user was being made (the lease then lived to its TTL).
//
// An in-process broker (SQLite store) against the real PostgreSQL. To land in
// that window every time, the test wraps the real store's method on its
// instance: when the issuance writes the row, the wrapper asks for the
// revocation right then; the store still does the write.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../../src/config.ts';
import { startServer, type RunningServer } from '../../../src/server.ts';
import type { LeaseRow, Storage } from '../../../src/storage/storage.ts';
import { eventually } from '../../support/broker.ts';
import { dropRolesWithPrefix, LOGIN_ROLE, rolesWithPrefix, tag, templatedUrl } from '../../support/pg-broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const run = tag();
const prefix = `tdr${run}`;
const MISSING_TABLE = `dbroker_missing_${run}`;
const dir = mkdtempSync(join(tmpdir(), 'dbroker-deferred-'));
let pg: TestPostgres;
let server: RunningServer;
let root: Record<string, string>;

async function call(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON answers of several shapes
  const r = await server.app.inject({ method, url: `/v1/${url}`, headers: { ...root, 'content-type': 'application/json' }, ...(body !== undefined ? { payload: JSON.stringify(body) } : {}) });
  return { status: r.statusCode, body: r.body ? r.json() : undefined };
}

/** Run `onWrite(id)` when the issuance writes `match`ing changes to a lease row, once the store committed them. */
function onLeaseWrite(match: (changes: Partial<LeaseRow>) => boolean, onWrite: (id: string) => Promise<unknown>): () => void {
  const storage = server.broker.storage;
  const original = storage.updateLease.bind(storage);
  let fired = false;
  storage.updateLease = async (id, changes) => {
    if (fired || !match(changes)) return original(id, changes);
    fired = true;
    await original(id, changes);
    await onWrite(id);
  };
  return () => {
    storage.updateLease = original;
    assert.ok(fired, 'the revocation was asked for inside the window');
  };
}

const leaseExists = async (id: string): Promise<boolean> => (await server.broker.storage.getLease(id)) !== undefined;

before(async () => {
  pg = await trustPostgres();
  const config = loadConfig(undefined, { DBROKER_STORAGE_PATH: join(dir, 'store.db'), DBROKER_LISTEN: '127.0.0.1:0' });
  server = await startServer(config, { logger: pino({ level: 'silent' }) });
  const init = await server.app.inject({ method: 'PUT', url: '/v1/sys/init', payload: { secret_shares: 1, secret_threshold: 1 } });
  const { keys, root_token: token } = init.json() as { keys: string[]; root_token: string };
  root = { 'x-vault-token': token };
  await server.app.inject({ method: 'PUT', url: '/v1/sys/unseal', payload: { key: keys[0] } });
  assert.equal((await call('PUT', 'database/config/main', { plugin_name: 'postgresql-database-plugin', connection_url: templatedUrl(pg), username: pg.adminUser, password: pg.adminPassword, allowed_roles: '*' })).status, 204);
  const role = (name: string, statements: string[]) => call('PUT', `database/roles/${name}`, { db_name: 'main', creation_statements: statements, default_ttl: 3600, username_template: `${prefix}${name}{{random 12}}` });
  assert.equal((await role('good', [LOGIN_ROLE])).status, 204);
  // Fails at runtime, after CREATE ROLE ran (a failure that is not an input error): the table exists
  // when the role is written (its statements are tried then), and is dropped before any creds.
  await adminQuery(pg, `CREATE TABLE ${MISSING_TABLE} (v int)`);
  assert.ok([200, 204].includes((await role('bad', [LOGIN_ROLE, `GRANT SELECT ON ${MISSING_TABLE} TO "{{name}}"`])).status));
  await adminQuery(pg, `DROP TABLE ${MISSING_TABLE}`);
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
  if (pg) await dropRolesWithPrefix(pg, prefix).catch(() => undefined);
  await pg?.stop();
});

test('a failed issuance whose row the revocation loop claims while the issuance unwinds is revoked at once, not after the claim expires', async () => {
  let leaseId = '';
  const restore = onLeaseWrite(
    (changes) => changes.state === 'revoking' && typeof changes.dueAt === 'number' && changes.dueAt <= Date.now(),
    async (id) => {
      leaseId = id;
      // What the loop does once woken: claim the due row (pushing it CLAIM_MS ahead) and revoke it.
      const [row] = await server.broker.storage.claimDueLeases(Date.now() + 1, Date.now() + 120_000, 10, []);
      assert.equal(row?.id, id);
      await server.broker.leases.revokeClaimed(row!);
    },
  );
  const r = await call('GET', 'database/creds/bad');
  restore();
  assert.equal(r.status, 500, JSON.stringify(r.body));
  assert.match(r.body.errors.join(' '), new RegExp(`${MISSING_TABLE}.*does not exist`));
  await eventually(async () => !(await leaseExists(leaseId)), 5_000, 'the failed lease to be revoked and forgotten');
  assert.deepEqual(await rolesWithPrefix(pg, `${prefix}bad`), []);
});

type Answer = Awaited<ReturnType<typeof call>>;

/**
 * GET database/creds/good while the real store's insertLeaseWriteAhead is
 * wrapped: `write(row, original)` does the write (or fails it) and acts in
 * the window, with the row committed and the user not made yet. Returns the
 * creds answer and the lease id the issuance wrote.
 */
async function credsWhileWriting(write: (row: LeaseRow, original: Storage['insertLeaseWriteAhead']) => ReturnType<Storage['insertLeaseWriteAhead']>): Promise<{ answer: Answer; leaseId: string }> {
  const storage = server.broker.storage;
  const original = storage.insertLeaseWriteAhead.bind(storage);
  let leaseId = '';
  storage.insertLeaseWriteAhead = async (row) => {
    if (leaseId) return original(row);
    leaseId = row.id;
    return write(row, original);
  };
  try {
    return { answer: await call('GET', 'database/creds/good'), leaseId };
  } finally {
    storage.insertLeaseWriteAhead = original;
  }
}

test('a revocation asked for while the user is being made is not lost: the new lease is answered, then revoked and its user dropped', async () => {
  const { answer: r, leaseId } = await credsWhileWriting(async (row, original) => {
    const written = await original(row);
    // The row is committed and the user not made yet: the revocation is deferred.
    await server.broker.leases.expedite(row.id);
    assert.ok(await leaseExists(row.id), 'deferred, not done: the lease is still there');
    return written;
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.lease_id, leaseId);
  await eventually(async () => !(await leaseExists(leaseId)), 5_000, 'the lease to be revoked');
  assert.deepEqual(await rolesWithPrefix(pg, `${prefix}good`), []);
});

test('lookup and renew do not see a lease still being issued; they do once it is answered', async () => {
  let seen: Answer[] = [];
  const { answer: r } = await credsWhileWriting(async (row, original) => {
    const written = await original(row);
    seen = [await call('PUT', 'sys/leases/lookup', { lease_id: row.id }), await call('PUT', 'sys/leases/renew', { lease_id: row.id, increment: 60 })];
    return written;
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(seen.map((x) => x.status), [400, 400], JSON.stringify(seen));
  for (const x of seen) assert.match(x.body.errors.join(' '), /lease not found/);
  const lookup = await call('PUT', 'sys/leases/lookup', { lease_id: r.body.lease_id });
  assert.equal(lookup.status, 200, JSON.stringify(lookup.body));
  assert.ok(lookup.body.data.ttl > 3500, JSON.stringify(lookup.body.data));
  assert.equal((await call('PUT', 'sys/leases/revoke', { lease_id: r.body.lease_id })).status, 204);
});

// The row is written while the engine starts (PostgreSQL runs its statements
// meanwhile and commits only once the row is durable): a row that cannot be
// written must leave no user, no lease, and a clear error.
test('a lease row that cannot be written while the engine already runs: a 500 naming it, no user committed, no lease', async () => {
  const { answer: r, leaseId } = await credsWhileWriting(async () => {
    await new Promise((resolve) => setTimeout(resolve, 50)); // the engine's statements are under way
    throw new Error('disk I/O error (injected)');
  });
  assert.equal(r.status, 500, JSON.stringify(r.body));
  assert.match(r.body.errors.join(' '), /could not be stored durably: disk I\/O error \(injected\)/);
  assert.ok(leaseId);
  assert.equal(await leaseExists(leaseId), false);
  assert.deepEqual(await rolesWithPrefix(pg, `${prefix}good`), []);
});

// "Never answer success for work not done": a synchronous revoke that reaches
// a lease while its user is being made used to answer 204 at once and leave
// the drop to later.
test('a synchronous revoke of a lease still being issued answers only once its user is dropped', async () => {
  let revoke: Promise<{ answer: Answer; afterCreds: boolean }> | undefined;
  let credsAnswered = false;
  const { answer: r, leaseId } = await credsWhileWriting(async (row, original) => {
    const written = await original(row);
    revoke = call('PUT', 'sys/leases/revoke', { lease_id: row.id }).then((answer) => ({ answer, afterCreds: credsAnswered }));
    return written;
  });
  credsAnswered = true;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(revoke);
  const { answer, afterCreds } = await revoke;
  assert.ok(afterCreds, 'the revoke answered after the issuance, not at once');
  assert.equal(answer.status, 204, JSON.stringify(answer.body));
  // Checked right at the answer, without waiting: the work is done.
  assert.deepEqual(await rolesWithPrefix(pg, `${prefix}good`), []);
  assert.equal(await leaseExists(leaseId), false);
});
