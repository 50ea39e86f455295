// Failover of a three-replica HA cluster (real processes, the local
// PostgreSQL as the store and as the target database, leadership lease 3 s):
// (a) kill -9 the active during a revocation burst of due leases,
// (b) kill -9 the active during issuance by 8 concurrent clients,
// (c) SIGSTOP the active past its lease, SIGCONT it after a standby took over.
// Each asserts a standby takes over within 10 s (the takeover time is printed),
// 0 orphaned database users, 0 lost leases, and for (c) that the paused node
// commits nothing once it wakes up (fencing) and rejoins as a standby.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BrokerProcess } from '../../support/broker.ts';
import { eventually } from '../../support/broker.ts';
import { healthOf, startHaCluster, type HaCluster } from '../../support/ha-cluster.ts';
import { configureConnection, createRole, dropRolesWithPrefix, prefixTemplate, rolesWithPrefix, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { COUNTING_TYPE, readDeleteLog } from '../../support/counting-engine.ts';
import { slotsPerKind } from '../../../src/database/ddl-batcher.ts';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const BURST = Number(process.env.DBROKER_TEST_HA_BURST ?? 1000);
/**
 * At most this many revocation calls run at once on the connection (max_open_connections 8, see
 * ddl-batcher.ts); the counting engine has no deleteUsers, so each call drops one user.
 */
const PER_CONNECTION = slotsPerKind(8);
const logDir = mkdtempSync(join(tmpdir(), 'dbroker-ha-deletes-'));
/**
 * A cluster whose engine logs every deleteUser call (test/support/counting-engine.ts),
 * so revocations are counted per user and per node.
 */
async function countingCluster(): Promise<{ cluster: HaCluster; deletes: () => ReturnType<typeof readDeleteLog> }> {
  const log = join(logDir, `deletes-${Math.random().toString(36).slice(2)}.log`);
  const cluster = await startHaCluster(3, {
    env: { DBROKER_TEST_DELETE_LOG: log },
    config: { plugins: { [COUNTING_TYPE]: resolve(import.meta.dirname, '../../support/counting-engine.ts') } },
  });
  return { cluster, deletes: () => readDeleteLog(existsSync(log) ? readFileSync(log, 'utf8') : '') };
}
const prefixes: string[] = [];
let target: TestPostgres;

before(async () => {
  target = await trustPostgres();
});
after(async () => {
  rmSync(logDir, { recursive: true, force: true });
  for (const p of prefixes) await dropRolesWithPrefix(target, p);
  await target?.stop();
});

const via = (cluster: HaCluster, node: BrokerProcess): PgBroker => ({ api: (m: string, p: string, b?: unknown) => cluster.api(node, m, p, b) }) as unknown as PgBroker;

async function setup(cluster: HaCluster, plugin = 'postgresql-database-plugin'): Promise<{ prefix: string; active: BrokerProcess }> {
  const prefix = `hf${tag()}_`;
  prefixes.push(prefix);
  const active = await cluster.active();
  await configureConnection(via(cluster, active), target, 'pg', { max_open_connections: 8, plugin_name: plugin });
  await createRole(via(cluster, active), 'app', { db_name: 'pg', default_ttl: '1h', username_template: prefixTemplate(prefix) });
  return { prefix, active };
}

/** Kill `active`; the milliseconds until a survivor answers sys/health 200. */
async function killAndTime(cluster: HaCluster, active: BrokerProcess, how: 'kill' | 'stop'): Promise<{ ms: number; next: BrokerProcess }> {
  const survivors = cluster.nodes.filter((n) => n !== active);
  const started = Date.now();
  if (how === 'kill') await active.kill();
  else active.signal('SIGSTOP');
  const next = await cluster.active(15_000, survivors);
  return { ms: Date.now() - started, next };
}

async function leaseStates(cluster: HaCluster): Promise<Record<string, number>> {
  const rows = await cluster.store.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM dbroker_leases GROUP BY state');
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

async function leaseCount(cluster: HaCluster): Promise<number> {
  return Object.values(await leaseStates(cluster)).reduce((a, b) => a + b, 0);
}

/** Issue `n` creds through `node` with `clients` in parallel. */
async function issueMany(cluster: HaCluster, node: BrokerProcess, n: number, clients = 8): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < n) {
        next++;
        const r = await cluster.api(node, 'GET', 'database/creds/app');
        assert.equal(r.status, 200, r.text);
      }
    }),
  );
}

test(`(a) kill -9 the active during a revocation burst of ${BURST} due leases: a standby takes over and finishes it, 0 orphaned users, 0 leases left`, async () => {
  const { cluster, deletes } = await countingCluster();
  try {
    const { prefix, active } = await setup(cluster, COUNTING_TYPE);
    await issueMany(cluster, active, BURST);
    assert.equal((await rolesWithPrefix(target, prefix)).length, BURST);
    // Make every lease due now (revoke-prefix without sync): the active node's loop revokes them.
    const r = await cluster.api(active, 'PUT', 'sys/leases/revoke-prefix/database/creds/app/', { sync: false });
    assert.equal(r.status, 202, r.text);
    // Kill it mid-burst: once some users are gone and many are still there.
    await eventually(async () => (await rolesWithPrefix(target, prefix)).length <= BURST * 0.8, 60_000, 'the burst to be under way');
    const { ms, next } = await killAndTime(cluster, active, 'kill');
    const left = (await rolesWithPrefix(target, prefix)).length;
    console.log(`(a) revocation burst: killed the active with ${left}/${BURST} users left; takeover in ${ms} ms`);
    assert.ok(left > 0, 'killed before the burst ended');
    assert.ok(ms < 10_000, `takeover within 10 s (took ${ms} ms)`);
    await eventually(async () => (await rolesWithPrefix(target, prefix)).length === 0 && (await leaseCount(cluster)) === 0, 120_000, 'the new active to finish the burst');
    assert.deepEqual(await rolesWithPrefix(target, prefix), [], '0 orphaned database users');
    assert.equal(await leaseCount(cluster), 0, 'every lease revoked and forgotten');
    assert.match(next.logs, /this node is now the active node/);
    // Each user dropped once, except the few whose drop the killed node had under way (at-least-once for those).
    const { perUser } = deletes();
    const twice = [...perUser.values()].filter((n) => n > 1).length;
    console.log(`(a) engine deleteUser calls: ${[...perUser.values()].reduce((a, b) => a + b, 0)} for ${perUser.size} users; users dropped twice: ${twice}`);
    assert.equal(perUser.size, BURST, 'every user dropped');
    assert.ok([...perUser.values()].every((n) => n <= 2), 'no user dropped more than twice');
    assert.ok(twice <= PER_CONNECTION, `only drops in flight at the kill are repeated (${twice})`);
  } finally {
    await cluster.close();
  }
});

test('(b) kill -9 the active during issuance by 8 clients: 0 lost leases, 0 orphaned users, issuance resumes through every node', async () => {
  const cluster = await startHaCluster(3);
  try {
    const { prefix, active } = await setup(cluster);
    const issued = new Map<string, string>(); // lease id → username
    let failures = 0;
    let stop = false;
    // 8 clients, spread over the three nodes (two thirds of requests are forwarded).
    const clients = Array.from({ length: 8 }, async (_, i) => {
      const node = cluster.nodes[i % 3]!;
      while (!stop) {
        if (node === active && active.pid !== undefined && (await healthOf(active)) === 0) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const r = await cluster.api(node, 'GET', 'database/creds/app').catch(() => undefined);
        if (r?.status === 200) issued.set(r.body.lease_id, r.body.data.username);
        else failures++;
      }
    });
    await eventually(async () => issued.size >= 60, 60_000, 'issuance under way');
    const { ms, next } = await killAndTime(cluster, active, 'kill');
    const atKill = issued.size;
    // Go on issuing through the survivors for a while.
    await eventually(async () => issued.size >= atKill + 60, 60_000, 'issuance to resume after the takeover');
    stop = true;
    await Promise.all(clients);
    console.log(`(b) issuance under 8 clients: takeover in ${ms} ms; ${issued.size} creds issued (${atKill} before the kill), ${failures} requests failed around it`);
    assert.ok(ms < 10_000, `takeover within 10 s (took ${ms} ms)`);
    // An issuance the kill cut short keeps its lease (the new active cannot know whether its answer
    // went out): at most one per client, with or without its user. Every lease a client received is
    // kept with its user, and no user is left without a lease (the revoke-prefix below drops them all).
    assert.equal((await leaseStates(cluster)).pending, undefined, 'leases are written whole, never pending');
    const users = new Set(await rolesWithPrefix(target, prefix));
    const leaseRows = await leaseCount(cluster);
    for (const [id, username] of issued) {
      assert.ok(users.has(username), `the user of ${id} exists`);
      const lookup = await cluster.api(next, 'PUT', 'sys/leases/lookup', { lease_id: id });
      assert.equal(lookup.status, 200, `lease ${id} is kept (0 lost leases)`);
    }
    assert.ok(users.size <= leaseRows, `every user has a lease: 0 orphaned users (${users.size} users, ${leaseRows} leases)`);
    assert.ok(leaseRows - issued.size <= 8, `at most one lease per client whose answer was lost in the kill (${leaseRows - issued.size})`);
    // Everything revokes cleanly from the new active.
    const r = await cluster.api(next, 'PUT', 'sys/leases/revoke-prefix/database/creds/app/', {});
    assert.equal(r.status, 204, r.text);
    assert.deepEqual(await rolesWithPrefix(target, prefix), []);
    assert.equal(await leaseCount(cluster), 0);
  } finally {
    await cluster.close();
  }
});

test('(c) SIGSTOP the active past its lease: a standby takes over; after SIGCONT the old one commits nothing (fencing) and rejoins as a standby', async () => {
  const { cluster, deletes } = await countingCluster();
  try {
    const { prefix, active } = await setup(cluster, COUNTING_TYPE);
    await issueMany(cluster, active, 200);
    // Every committed row change of the store is logged with the session's application_name
    // ("dbroker <api_addr>") and the fencing number current in its transaction, so what each
    // node committed, under which leadership and when, is known.
    await cluster.store.query(`
      CREATE TABLE write_log (app text, tbl text, fence bigint, at timestamptz DEFAULT clock_timestamp());
      CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO write_log (app, tbl, fence) VALUES (current_setting('application_name'), TG_TABLE_NAME, (SELECT fence FROM dbroker_ha_leader WHERE id = 1));
          RETURN NULL;
        END $$;
      CREATE TRIGGER leases_log AFTER INSERT OR UPDATE OR DELETE ON dbroker_leases FOR EACH ROW EXECUTE FUNCTION log_write();
      CREATE TRIGGER entries_log AFTER INSERT OR UPDATE OR DELETE ON dbroker_entries FOR EACH ROW EXECUTE FUNCTION log_write();
      CREATE TRIGGER tokens_log AFTER INSERT OR UPDATE OR DELETE ON dbroker_tokens FOR EACH ROW EXECUTE FUNCTION log_write();`);
    const fence = await cluster.fence();
    // The old active is busy revoking when it is paused.
    assert.equal((await cluster.api(active, 'PUT', 'sys/leases/revoke-prefix/database/creds/app/', { sync: false })).status, 202);
    await eventually(async () => (await rolesWithPrefix(target, prefix)).length <= 180, 60_000, 'the burst to be under way');
    const { ms, next } = await killAndTime(cluster, active, 'stop');
    const takenOverAt = (await cluster.store.query<{ t: Date }>('SELECT clock_timestamp() AS t'))[0]!.t;
    console.log(`(c) SIGSTOP: takeover in ${ms} ms`);
    assert.ok(ms < 10_000, `takeover within 10 s (took ${ms} ms)`);
    assert.equal(await cluster.fence(), fence + 1);
    // The new active works while the old one sleeps: a lease and a config change.
    const fresh = await cluster.api(next, 'GET', 'database/creds/app');
    assert.equal(fresh.status, 200, fresh.text);
    await createRole(via(cluster, next), 'app2', { db_name: 'pg', default_ttl: '30m', username_template: prefixTemplate(prefix) });
    await new Promise((r) => setTimeout(r, 2_000));
    const wokeAt = Date.now();
    const oldPid = active.pid!;
    active.signal('SIGCONT');
    // It notices it lost leadership and becomes a standby.
    await eventually(async () => (await healthOf(active)) === 429, 15_000, 'the old active to rejoin as a standby').catch((err: Error) => {
      throw new Error(`${err.message}\n--- its log:\n${active.logs.slice(-4000)}`);
    });
    console.log(`(c) SIGCONT: the old active is a standby after ${Date.now() - wokeAt} ms`);
    assert.match(active.logs, /this node is no longer active/);
    // The burst ends, by the new active: every user dropped except the fresh lease's.
    await eventually(async () => (await leaseCount(cluster)) === 1, 90_000, 'the new active to finish the burst');
    assert.deepEqual(await rolesWithPrefix(target, prefix), [fresh.body.data.username], '0 orphaned users');
    const byNode = await cluster.store.query<{ app: string; fence: number; n: number; late: number }>(
      'SELECT app, fence::int, count(*)::int AS n, (count(*) FILTER (WHERE at > $1))::int AS late FROM write_log GROUP BY app, fence ORDER BY app, fence',
      [takenOverAt],
    );
    const refused = (active.logs.match(/the write was refused/g) ?? []).length;
    console.log(`(c) committed row changes by node and fencing number: ${JSON.stringify(byNode)}; writes the woken node had refused: ${refused}`);
    const old = `dbroker ${active.url}`;
    assert.ok(byNode.some((r) => r.app === `dbroker ${next.url}` && r.fence === fence + 1 && r.n > 0), 'the log sees the new active');
    assert.deepEqual(byNode.filter((r) => r.app === old && r.fence !== fence), [], 'the old node committed nothing under the new leadership (fencing)');
    assert.deepEqual(byNode.filter((r) => r.app === old && r.late > 0), [], 'nor anything at all after the takeover');
    // Nor does it drop a database user once awake (canAct), and no user is dropped twice but those in flight at the pause.
    const { perUser, calls } = deletes();
    const awake = calls.filter((c) => c.pid === oldPid && c.at >= wokeAt);
    const twice = [...perUser.values()].filter((n) => n > 1).length;
    console.log(`(c) deleteUser calls by the woken node: ${awake.length}; users dropped twice: ${twice}`);
    assert.deepEqual(awake, [], 'the woken node dropped no user');
    assert.ok(twice <= PER_CONNECTION, `only drops in flight at the pause are repeated (${twice})`);
    assert.equal(await cluster.fence(), fence + 1, 'the new active kept its leadership');
    assert.equal(await healthOf(next), 200);
    const leader = await active.api('GET', 'sys/leader');
    assert.equal(leader.body.is_self, false);
    assert.equal(leader.body.leader_address, next.url);
    // It serves again, by forwarding.
    const creds = await cluster.api(active, 'GET', 'database/creds/app2');
    assert.equal(creds.status, 200, creds.text);
    assert.equal((await cluster.api(active, 'PUT', 'sys/leases/revoke-prefix/database/creds/', {})).status, 204);
    assert.deepEqual(await rolesWithPrefix(target, prefix), [], '0 orphaned users');
  } finally {
    await cluster.close();
  }
});
