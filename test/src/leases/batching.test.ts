// Batched DDL through a real broker process and a real PostgreSQL, with an
// engine that records its calls (test/support/batch-counting-engine.ts:
// the PostgreSQL engine, whose newUsers/deleteUsers are used when it has
// them, else looped over newUser/deleteUser, which then tests the broker's
// batch bookkeeping only): a bad role's creds fail alone among concurrent
// good ones and leave no lease and no user; a crash right after a batch of
// creations committed (before any lease became active) leaves no user once
// the broker is back; 300 leases due at once are revoked in batches, while a
// user that cannot be dropped keeps its lease with the error.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { eventually } from '../../support/broker.ts';
import { BATCH_COUNTING_TYPE, readBatchLog } from '../../support/batch-counting-engine.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { configureConnection, createRole, dropRolesWithPrefix, issueCreds, prefixTemplate, rolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';

const run = tag();
const userPrefix = `tq${run}`;
const MISSING_TABLE = `dbroker_missing_${run}`;
const DRAIN = 300;
const SLOW_MARK = `slow_${run}`;
const logDir = mkdtempSync(join(tmpdir(), 'dbroker-batch-log-'));
const batchLog = join(logDir, 'calls.log');
let server: TestPostgres;
let pb: PgBroker;

const calls = () => readBatchLog(readFileSync(batchLog, 'utf8'));

async function leaseIdsUnder(prefix: string): Promise<string[]> {
  const r = await pb.list(`sys/leases/lookup/${prefix}`);
  if (r.status === 404) return [];
  assert.equal(r.status, 200, r.text);
  return r.body.data.keys as string[];
}

/** GET creds of `role` `n` times, at most `concurrency` at once; the responses in order. */
async function issueMany(role: string, n: number, concurrency = 12): Promise<Array<{ status: number; body: any; text: string }>> {
  const out: Array<{ status: number; body: any; text: string }> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      out[i] = await pb.broker.api('GET', `database/creds/${role}`, { token: pb.root });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

before(async () => {
  writeFileSync(batchLog, '');
  [server, pb] = await Promise.all([
    trustPostgres(),
    startPgBroker({
      config: { plugins: { [BATCH_COUNTING_TYPE]: resolve(import.meta.dirname, '../../support/batch-counting-engine.ts') } },
      env: { DBROKER_TEST_BATCH_LOG: batchLog },
    }),
  ]);
  await configureConnection(pb, server, 'main', { plugin_name: BATCH_COUNTING_TYPE, max_open_connections: 4 });
  const role = (name: string, fields: Record<string, unknown> = {}) =>
    createRole(pb, name, { db_name: 'main', default_ttl: '10m', max_ttl: '1h', username_template: prefixTemplate(`${userPrefix}${name}-`), ...fields });
  await role('good');
  await role('bad', { creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`, `GRANT SELECT ON ${MISSING_TABLE} TO "{{name}}"`] });
  // One connection slot, for the crash test's queueing.
  await configureConnection(pb, server, 'single', { plugin_name: BATCH_COUNTING_TYPE, max_open_connections: 1 });
  // A crash cuts these issuances short: their leases are kept to this TTL, then revoked.
  await role('crash', { db_name: 'single', default_ttl: '8s' });
  await role('slowbad', {
    db_name: 'single',
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`, `SELECT pg_sleep(3) AS ${SLOW_MARK}`, `GRANT SELECT ON ${MISSING_TABLE} TO "{{name}}"`],
  });
  await role('drain');
  await role('stuck', { revocation_statements: [`REVOKE ALL ON ${MISSING_TABLE} FROM "{{name}}"`, 'DROP ROLE "{{name}}"'] });
});

after(async () => {
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
  rmSync(logDir, { recursive: true, force: true });
});

test('a role whose creation fails at runtime fails alone among concurrent creds on its connection: a clear error, no lease, no user; the others succeed', async () => {
  const [good, bad] = await Promise.all([issueMany('good', 24, 8), issueMany('bad', 8, 4)]);
  for (const r of good) assert.equal(r.status, 200, r.text);
  for (const r of bad) {
    assert.ok(r.status === 400 || r.status === 500, r.text);
    assert.match(r.body.errors.join(' '), new RegExp(`${MISSING_TABLE}.*does not exist`));
  }
  const goodUsers = good.map((r) => r.body.data.username as string).sort();
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}good-`), goodUsers);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}bad-`), []);
  // Each creation reached the engine exactly once, batched or not.
  const created = calls().filter((c) => c.kind === 'create').flatMap((c) => c.usernames);
  assert.equal(created.length, 32);
  for (const u of goodUsers) assert.ok(created.includes(u));
  // A failed creation's lease is revoked at once (nothing to drop) and forgotten.
  await eventually(async () => (await leaseIdsUnder('database/creds/bad/')).length === 0, 15_000, 'the failed leases to be forgotten');
  assert.equal((await leaseIdsUnder('database/creds/good/')).length, 24);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/good')).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}good-`), []);
});

test('a crash after a creation batch committed, before any answer: after restart the leases are kept, revoked at their TTL, and no user is left', async () => {
  await pb.restart({ env: { DBROKER_FAULTS: 'issue.after_batch_commit' } });
  const pid = pb.broker.pid!;
  // The connection's only slot is taken by a slow creation that fails (so it passes no
  // fault point); the creds asked meanwhile wait, and go together as one batch after it.
  const slow = pb.broker.api('GET', 'database/creds/slowbad', { token: pb.root }).catch((err: Error) => err);
  await eventually(
    async () => (await adminQuery(server, 'SELECT 1 FROM pg_catalog.pg_stat_activity WHERE query LIKE $1', [`%${SLOW_MARK}%`])).length > 0,
    15_000,
    'the slow creation to run',
  );
  const sent = Date.now();
  const answers = await Promise.all(Array.from({ length: 5 }, () => pb.broker.api('GET', 'database/creds/crash', { token: pb.root }).catch((err: unknown) => err)));
  assert.ok(answers.every((a) => a instanceof Error), 'every creds request should die with the broker');
  // The slow creation failed (and was answered) just before the batch went.
  const slowAnswer = await slow;
  assert.ok(slowAnswer instanceof Error || slowAnswer.status >= 400, JSON.stringify(slowAnswer));
  await pb.broker.waitForExit();
  const made = await rolesWithPrefix(server, `${userPrefix}crash-`);
  const last = calls().filter((c) => c.pid === pid && c.kind === 'create').at(-1);
  assert.ok(last && !last.single && last.usernames.length === 5, `the last creation call was ${JSON.stringify(last)}`);
  assert.deepEqual(made, [...last.usernames].sort(), 'the batch committed its users, then the broker died');

  await pb.restart();
  // The broker cannot know whether an answer reached its client: each lease lives to its TTL.
  assert.equal((await leaseIdsUnder('database/creds/crash/')).length, 5, 'every lease written ahead survived the crash');
  await eventually(async () => (await rolesWithPrefix(server, `${userPrefix}crash-`)).length === 0, 25_000, 'the users to be dropped at the leases\' end');
  assert.ok(Date.now() - sent >= 8000, `dropped ${Date.now() - sent} ms after the requests, not before the TTL`);
  await eventually(async () => (await leaseIdsUnder('database/creds/crash/')).length === 0, 10_000, 'the leases to be forgotten');
  await eventually(async () => (await leaseIdsUnder('database/creds/slowbad/')).length === 0, 10_000, 'the failed lease to be forgotten');
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}slowbad-`), []);
});

test(`${DRAIN} leases due at once are revoked in batches, none left; a user that cannot be dropped keeps its lease with the error`, async () => {
  const issued = await issueMany('drain', DRAIN);
  for (const r of issued) assert.equal(r.status, 200, r.text);
  const stuck = await issueCreds(pb, 'stuck');
  assert.equal((await rolesWithPrefix(server, `${userPrefix}drain-`)).length, DRAIN);
  writeFileSync(batchLog, '');

  // Every lease of the mount due now: the loop claims them and drains them.
  const r = await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/', { sync: false });
  assert.equal(r.status, 202, r.text);
  await eventually(async () => (await rolesWithPrefix(server, `${userPrefix}drain-`)).length === 0, 120_000, 'every drained user to be dropped');
  await eventually(async () => (await leaseIdsUnder('database/creds/drain/')).length === 0, 20_000, 'every drained lease to be forgotten');

  const drops = calls().filter((c) => c.kind === 'drop');
  console.log(`drain: ${drops.length} engine calls, sizes ${drops.map((c) => c.usernames.length).join(',')}`);
  const dropped = drops.flatMap((c) => c.usernames).filter((u) => u.startsWith(`${userPrefix}drain-`));
  assert.equal(new Set(dropped).size, DRAIN);
  assert.ok(drops.length < DRAIN / 4, `${drops.length} engine calls for ${DRAIN} users`);
  assert.ok(Math.max(...drops.map((c) => c.usernames.length)) > 1);

  // The user that cannot be dropped: still there, its lease kept with the error and retried.
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}stuck-`), [stuck.username]);
  await eventually(
    async () => {
      const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: stuck.leaseId });
      return lookup.status === 200 && lookup.body.data.revocation_attempts >= 1;
    },
    15_000,
    'the stuck lease to show its failed revocation',
  );
  const lookup = await pb.api('PUT', 'sys/leases/lookup', { lease_id: stuck.leaseId });
  assert.match(lookup.body.data.last_revocation_error, /does not exist/);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-force/database/creds/stuck')).status, 204);
});
