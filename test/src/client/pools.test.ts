// The SDK's self-re-keying pools against a real broker and real databases
// (PostgreSQL at 127.0.0.1:5432, MariaDB at 127.0.0.1:3306, FerretDB): each
// runs 20 queries/s while its lease (TTL 4 s, max_ttl 6 s) is rotated at
// least 5 times; not one query may fail. Old database users are gone once
// drained, the credentials in use always work, and a lease revoked behind the
// pool's back is replaced at the next renewal. Prints the figures.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RowDataPacket } from 'mysql2/promise';
import { createMongoClient, createMysqlPool, createPgPool, type RotateEvent } from '../../../src/client/index.ts';
import { eventually } from '../../support/broker.ts';
import { adminConnection, dropLeftovers, mysqlConfig, target as mysqlTarget, userHosts } from '../../support/mariadb.ts';
import { configureConnection, createRole, dropRolesWithPrefix, rolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { assertDone, dropUsersWithPrefix, mongoConfig, mongoTarget, type MongoTarget } from '../../plugins/mongodb/helpers.ts';

const prefix = `sdk${tag()}`;
const ROTATIONS = 5;
const RATE_PER_S = 20;
const TTL = { default_ttl: 4, max_ttl: 6 };
let pb: PgBroker;
let pg: TestPostgres;

before(async () => {
  [pg, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } })]);
});

after(async () => {
  await pb?.close();
  await dropRolesWithPrefix(pg, prefix);
  await pg?.stop();
});

interface LoadResult {
  run: number;
  failed: number;
  errors: string[];
  users: Set<string>;
  seconds: number;
}

/**
 * Fire `query` RATE times a second (not waiting for the previous one) until
 * `done()` holds or `maxMs` passes; then wait for the stragglers.
 */
async function load(query: () => Promise<string>, done: () => boolean, maxMs: number): Promise<LoadResult> {
  const result: LoadResult = { run: 0, failed: 0, errors: [], users: new Set(), seconds: 0 };
  const started = Date.now();
  const running = new Set<Promise<void>>();
  let fired = 0;
  while (!done() && Date.now() - started < maxMs) {
    // Keep to the rate by the clock (a late timer fires the queries it owes).
    const owed = Math.floor(((Date.now() - started) * RATE_PER_S) / 1000) + 1;
    for (; fired < owed; fired++) {
      const p = query()
        .then((user) => {
          result.run++;
          result.users.add(user);
        })
        .catch((err: Error) => {
          result.run++;
          result.failed++;
          if (result.errors.length < 5) result.errors.push(err.message);
        });
      running.add(p);
      void p.finally(() => running.delete(p));
    }
    await new Promise((r) => setTimeout(r, 1000 / RATE_PER_S));
  }
  await Promise.all([...running]);
  result.seconds = (Date.now() - started) / 1000;
  return result;
}

function report(kind: string, r: LoadResult, stats: { rotations: number; renewals: number; rotationFailures: number }, revoked: number): void {
  console.log(
    `[sdk ${kind}] queries run=${r.run} failed=${r.failed} rotations=${stats.rotations} renewals=${stats.renewals} ` +
      `rotation_failures=${stats.rotationFailures} external_revokes=${revoked} distinct_users=${r.users.size} window=${r.seconds.toFixed(1)}s rate=${(r.run / r.seconds).toFixed(1)}/s`,
  );
}

test('createPgPool: 20 queries/s across >= 5 rotations, 0 failed; a lease revoked behind its back is replaced; old users dropped', async () => {
  await configureConnection(pb, pg, 'pg');
  await createRole(pb, 'pgapp', { db_name: 'pg', ...TTL, username_template: `{{ printf "${prefix}p%s" (random 12) }}` });
  const pool = await createPgPool({
    broker: { address: pb.broker.url, token: pb.root },
    role: 'pgapp',
    pool: { host: pg.host, port: pg.port, database: 'postgres', max: 4 },
    backoff: { minMs: 200, maxMs: 1000 },
  });
  const rotations: RotateEvent[] = [];
  pool.on('rotate', (e) => rotations.push(e));
  const query = async (): Promise<string> => {
    const res = await pool.query<{ u: string }>('SELECT current_user AS u, pg_sleep(0.03)');
    return res.rows[0]!.u;
  };
  try {
    assert.ok(pool.credentials!.username.startsWith(`${prefix}p`));
    const r = await load(query, () => pool.stats.rotations >= ROTATIONS, 90_000);
    // A transaction on a checked-out client survives a switch too.
    const client = await pool.connect();
    await client.query('BEGIN');
    await pool.rotate();
    assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
    await client.query('COMMIT');
    client.release();
    report('pg', r, pool.stats, 0);
    assert.equal(r.failed, 0, `failed queries: ${r.errors.join(' | ')}`);
    assert.ok(pool.stats.rotations >= ROTATIONS + 1);
    assert.ok(r.run >= r.seconds * RATE_PER_S * 0.85, `rate too low: ${r.run} in ${r.seconds}s`);
    assert.ok(r.users.size >= ROTATIONS, `queries ran as ${r.users.size} different users`);
    assert.ok(rotations.some((e) => e.reason === 'max_ttl reached'));
    assert.ok(pool.stats.renewals >= 1, 'leases were renewed');
    // Drained generations are revoked: only the current user is left.
    await eventually(async () => JSON.stringify(await rolesWithPrefix(pg, `${prefix}p`)) === JSON.stringify([pool.credentials!.username]), 15_000, 'only the current user left');

    // Revoked behind the pool's back (not a rotation: its sessions are cut at
    // once). Logins refused from then on are retried on new credentials; only
    // statements running on a cut session can fail. The pool re-keys.
    const before = pool.stats.rotations;
    const victim = pool.credentials!;
    let revokedAt = 0;
    const r2 = await load(
      query,
      () => {
        if (revokedAt === 0 && Date.now()) {
          revokedAt = Date.now();
          void pb.api('PUT', 'sys/leases/revoke', { lease_id: victim.leaseId });
        }
        return pool.stats.rotations > before && Date.now() - revokedAt > 3000;
      },
      30_000,
    );
    report('pg external revoke', r2, pool.stats, 1);
    assert.ok(pool.stats.rotations > before, 'a new lease replaced the revoked one');
    assert.notEqual(pool.credentials!.username, victim.username);
    assert.ok(r2.failed <= 8, `only statements in flight on cut sessions may fail: ${r2.failed} (${r2.errors.join(' | ')})`);
    for (const e of r2.errors) assert.match(e, /terminat|connection/i, 'no login error reaches the application');
    assert.equal(await query(), pool.credentials!.username);
  } finally {
    await pool.end();
  }
  // end() asks for the revocation; a session still closing can make the first attempt fail, and the broker retries it.
  await eventually(async () => (await rolesWithPrefix(pg, `${prefix}p`)).length === 0, 15_000, 'end() revokes the last lease');
});

test('createMysqlPool: 20 queries/s across >= 5 rotations on MariaDB, 0 failed; old users dropped', async () => {
  const admin = await adminConnection();
  await dropLeftovers(admin, `${prefix}m`);
  try {
    const r0 = await pb.api('PUT', 'database/config/my', {
      plugin_name: 'mysql-database-plugin',
      connection_url: mysqlConfig().connectionUrl,
      username: mysqlTarget.user,
      password: mysqlTarget.password,
      allowed_roles: '*',
    });
    assert.equal(r0.status, 204, r0.text);
    const r1 = await pb.api('PUT', 'database/roles/myapp', {
      db_name: 'my',
      creation_statements: [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`],
      username_template: `{{ printf "${prefix}m%s" (random 8) }}`,
      ...TTL,
    });
    assert.equal(r1.status, 204, r1.text);
    const pool = await createMysqlPool({
      broker: { address: pb.broker.url, token: pb.root },
      role: 'myapp',
      pool: { host: mysqlTarget.host, port: mysqlTarget.port, connectionLimit: 4 },
      backoff: { minMs: 200, maxMs: 1000 },
    });
    try {
      const r = await load(
        async () => {
          const [rows] = await pool.query<RowDataPacket[]>('SELECT CURRENT_USER() AS u, SLEEP(0.03) AS s');
          return String(rows[0]!['u']).split('@')[0]!;
        },
        () => pool.stats.rotations >= ROTATIONS,
        90_000,
      );
      report('mysql', r, pool.stats, 0);
      assert.equal(r.failed, 0, `failed queries: ${r.errors.join(' | ')}`);
      assert.ok(pool.stats.rotations >= ROTATIONS);
      assert.ok(r.run >= r.seconds * RATE_PER_S * 0.85, `rate too low: ${r.run} in ${r.seconds}s`);
      assert.ok(r.users.size >= ROTATIONS);
      await eventually(
        async () => {
          const [rows] = await admin.query<RowDataPacket[]>('SELECT User AS u FROM mysql.user WHERE User LIKE ?', [`${prefix}m%`]);
          return rows.length === 1 && rows[0]!['u'] === pool.credentials!.username;
        },
        15_000,
        'only the current MySQL user left',
      );
    } finally {
      await pool.end();
    }
    assert.deepEqual(await userHosts(admin, pool.credentials?.username ?? ''), []);
    const [left] = await admin.query<RowDataPacket[]>('SELECT User FROM mysql.user WHERE User LIKE ?', [`${prefix}m%`]);
    assert.equal(left.length, 0, 'end() revokes the last lease');
  } finally {
    await dropLeftovers(admin, `${prefix}m`);
    await admin.end();
  }
});

test('createMongoClient: 20 operations/s across >= 5 rotations on FerretDB, 0 failed', async (t) => {
  const target: MongoTarget | string = await mongoTarget();
  if (typeof target === 'string') return t.skip(target);
  try {
    const config = mongoConfig(target);
    const r0 = await pb.api('PUT', 'database/config/mongo', {
      plugin_name: 'mongodb-database-plugin',
      connection_url: config.connectionUrl,
      username: config.username,
      password: config.password,
      allowed_roles: '*',
      ...config.options,
    });
    assertDone(target, r0, 'config mongo');
    const r1 = await pb.api('PUT', 'database/roles/mongoapp', {
      db_name: 'mongo',
      creation_statements: [JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: 'admin' }] })],
      username_template: `{{ printf "${prefix}g%s" (random 12) }}`,
      ...TTL,
    });
    assert.equal(r1.status, 204, r1.text);
    const mongo = await createMongoClient({
      broker: { address: pb.broker.url, token: pb.root },
      role: 'mongoapp',
      url: target.bareUrl,
      options: { maxPoolSize: 4, serverSelectionTimeoutMS: 10_000 },
      backoff: { minMs: 200, maxMs: 1000 },
    });
    try {
      const r = await load(
        async () => {
          const status = await mongo.run((client) => client.db('admin').command({ connectionStatus: 1 }));
          const users = (status['authInfo'] as { authenticatedUsers?: Array<{ user: string }> }).authenticatedUsers ?? [];
          return users[0]?.user ?? 'unknown';
        },
        () => mongo.stats.rotations >= ROTATIONS,
        90_000,
      );
      report('mongodb', r, mongo.stats, 0);
      assert.equal(r.failed, 0, `failed operations: ${r.errors.join(' | ')}`);
      assert.ok(mongo.stats.rotations >= ROTATIONS);
      assert.ok(r.run >= r.seconds * RATE_PER_S * 0.85, `rate too low: ${r.run} in ${r.seconds}s`);
    } finally {
      await mongo.end();
    }
  } finally {
    await dropUsersWithPrefix(target, prefix, ['admin']);
    await target.admin.close();
  }
});
