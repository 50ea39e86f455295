// Scale: 1,000 leases with the same short TTL, expiring together, are all
// revoked by the loop (and their database users dropped), and the broker's
// memory does not grow with the number of leases it holds.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { eventually } from '../../support/broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import {
  configureConnection,
  createRole,
  dropRolesWithPrefix,
  issueCreds,
  prefixTemplate,
  rolesWithPrefix,
  startPgBroker,
  tag,
  type PgBroker,
} from '../../support/pg-broker.ts';

const LEASES = 1000;
const FIRST = 100;
const CONCURRENCY = 12;
/** Long enough that the first lease is still alive when the last one is issued. */
const TTL_SECONDS = 30;
/** RSS may move with GC and allocator noise, but not with the lease count. */
const RSS_SLACK_KB = 48 * 1024;

const run = tag();
const userPrefix = `ts${run}`;
let server: TestPostgres;
let pb: PgBroker;

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'no VmRSS in /proc/<pid>/status');
  return Number(m[1]);
}

/** Issue `n` creds with at most CONCURRENCY requests in flight. */
async function issueMany(n: number): Promise<string[]> {
  const ids: string[] = [];
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      ids.push((await issueCreds(pb, 'bulk')).leaseId);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return ids;
}

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await configureConnection(pb, server, 'main', { max_open_connections: 8 });
  await createRole(pb, 'bulk', { db_name: 'main', default_ttl: TTL_SECONDS, max_ttl: '1h', username_template: prefixTemplate(userPrefix) });
});

after(async () => {
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
});

test(`${LEASES} leases expiring together are all revoked, and broker memory does not grow with the lease count`, async () => {
  const pid = pb.broker.pid!;
  const started = Date.now();
  const first = await issueMany(FIRST);
  const rssFirst = rssKb(pid);
  const rest = await issueMany(LEASES - FIRST);
  const issuedIn = Date.now() - started;
  const rssAll = rssKb(pid);
  const ids = new Set([...first, ...rest]);
  assert.equal(ids.size, LEASES, 'every lease id is unique');
  assert.equal((await pb.api('GET', 'sys/leases/count')).body.data.lease_count, LEASES);
  assert.equal((await rolesWithPrefix(server, userPrefix)).length, LEASES);
  const growth = rssAll - rssFirst;
  console.log(`scale: issued ${LEASES} in ${issuedIn} ms; RSS after ${FIRST}: ${rssFirst} kB, after ${LEASES}: ${rssAll} kB (${growth >= 0 ? '+' : ''}${growth} kB)`);
  assert.ok(growth < RSS_SLACK_KB, `RSS grew by ${growth} kB from ${FIRST} to ${LEASES} leases`);
  assert.ok(issuedIn < TTL_SECONDS * 1000, `issuing took ${issuedIn} ms, longer than the TTL: the leases did not expire together`);

  // No API call from here: the loop revokes them all once they expire.
  const expiry = started + TTL_SECONDS * 1000;
  await eventually(async () => (await pb.api('GET', 'sys/leases/count')).body.data.lease_count === 0, TTL_SECONDS * 1000 + 45_000, 'every lease to be revoked');
  const doneAfterExpiry = Date.now() - expiry;
  const rssEnd = rssKb(pid);
  console.log(`scale: all revoked ${doneAfterExpiry} ms after the first expiry; RSS now ${rssEnd} kB`);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
  assert.equal((await pb.api('GET', 'sys/leases/count?type=irrevocable')).body.data.lease_count, 0);
  assert.ok(rssEnd - rssFirst < RSS_SLACK_KB, `RSS grew by ${rssEnd - rssFirst} kB while revoking`);
});
