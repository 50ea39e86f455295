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
const CALIBRATION = 60;
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

/** Issue `n` creds of `role` with at most CONCURRENCY requests in flight. */
async function issueMany(n: number, role = 'bulk'): Promise<string[]> {
  const ids: string[] = [];
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      ids.push((await issueCreds(pb, role)).leaseId);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return ids;
}

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await configureConnection(pb, server, 'main', { max_open_connections: 8 });
  await createRole(pb, 'warmup', { db_name: 'main', default_ttl: 2, username_template: prefixTemplate(`${userPrefix}w`) });
});

after(async () => {
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
});

test(`${LEASES} leases expiring together are all revoked, and broker memory does not grow with the lease count`, async () => {
  const pid = pb.broker.pid!;
  // The TTL must outlast issuing all of them (so that all 1,000 exist at
  // once), yet stay short: size it from the issue rate on this machine now.
  const calibrating = Date.now();
  await issueMany(CALIBRATION, 'warmup');
  const estimate = ((Date.now() - calibrating) / CALIBRATION) * LEASES;
  // Generous: the load on a shared machine changes from one second to the next.
  const ttlSeconds = Math.min(60, Math.max(25, Math.ceil((estimate * 1.5) / 1000) + 10));
  await createRole(pb, 'bulk', { db_name: 'main', default_ttl: ttlSeconds, max_ttl: '1h', username_template: prefixTemplate(`${userPrefix}b`) });
  console.log(`scale: ~${Math.round(estimate)} ms to issue ${LEASES} expected, TTL ${ttlSeconds}s`);

  const started = Date.now();
  const first = await issueMany(FIRST);
  const rssFirst = rssKb(pid);
  const rest = await issueMany(LEASES - FIRST);
  const issuedIn = Date.now() - started;
  const rssAll = rssKb(pid);
  const ids = new Set([...first, ...rest]);
  assert.equal(ids.size, LEASES, 'every lease id is unique');
  assert.equal((await pb.list('sys/leases/lookup/database/creds/bulk/')).body.data.keys.length, LEASES, `all ${LEASES} leases exist at once (issuing took ${issuedIn} ms, TTL ${ttlSeconds}s)`);
  assert.equal((await rolesWithPrefix(server, `${userPrefix}b`)).length, LEASES);
  const growth = rssAll - rssFirst;
  console.log(`scale: issued ${LEASES} in ${issuedIn} ms; RSS after ${FIRST}: ${rssFirst} kB, after ${LEASES}: ${rssAll} kB (${growth >= 0 ? '+' : ''}${growth} kB)`);
  assert.ok(growth < RSS_SLACK_KB, `RSS grew by ${growth} kB from ${FIRST} to ${LEASES} leases`);

  // No API call from here: the loop revokes them all once they expire.
  const expiry = started + ttlSeconds * 1000;
  await eventually(async () => (await pb.api('GET', 'sys/leases/count')).body.data.lease_count === 0, ttlSeconds * 1000 + 45_000, 'every lease to be revoked');
  const doneAfterExpiry = Date.now() - expiry;
  const rssEnd = rssKb(pid);
  console.log(`scale: all revoked ${doneAfterExpiry} ms after the first expiry; RSS now ${rssEnd} kB`);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), [], 'every database user is dropped (the warm-up ones too)');
  assert.equal((await pb.api('GET', 'sys/leases/count?type=irrevocable')).body.data.lease_count, 0);
  assert.ok(rssEnd - rssFirst < RSS_SLACK_KB, `RSS grew by ${rssEnd - rssFirst} kB while revoking`);
});
