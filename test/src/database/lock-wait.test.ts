// A creation that waits on a lock ends on the server, not only in the broker
// (plugins/postgres/engine.ts SERVER_TIMEOUTS): over HTTP against a real
// broker and PostgreSQL. Without a server-side bound the broker answered 502
// after 30 s while the transaction kept waiting, and it committed its user
// once the lock was free, after its lease had been settled as failed.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { configureConnection, dropRolesWithPrefix, LOGIN_ROLE, rolesWithPrefix, startPgBroker, tag, templatedUrl, type PgBroker } from '../../support/pg-broker.ts';

const run = tag();
const PREFIX = `lw${run}`;
const TABLE = `lw_t_${run}`;
const GROUP = `lw_g_${run}`;

let server: TestPostgres;
let pb: PgBroker;

const connection = (name: string, query: string): Promise<void> =>
  configureConnection(pb, server, name, { connection_url: `${templatedUrl(server)}${query}`, username_template: `{{ printf "${PREFIX}%s" (random 16) }}` });

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await adminQuery(server, `CREATE TABLE ${TABLE} (v int); CREATE ROLE ${GROUP} NOLOGIN`);
  await connection('default', '');
  // The URL's own value wins over the default (and keeps this test short).
  await connection('short', '?lock_timeout=1500');
});

after(async () => {
  await pb?.close();
  if (server) {
    await dropRolesWithPrefix(server, PREFIX);
    await adminQuery(server, `DROP TABLE IF EXISTS ${TABLE}; DROP ROLE IF EXISTS ${GROUP}`);
    await server.stop();
  }
});

test('admin sessions wait at most 25 s for a lock and run a statement at most 25 s, unless the URL says otherwise', async () => {
  // 4s: the value while the role's statements are tried at its write (plugins/postgres/try-role.ts).
  const check = (setting: string, want: string) =>
    `DO $$ BEGIN IF current_setting('${setting}') NOT IN ('${want}', '4s') THEN RAISE EXCEPTION '${setting} is %', current_setting('${setting}'); END IF; END $$`;
  const r = await pb.api('PUT', 'database/roles/settings', { db_name: 'default', creation_statements: [LOGIN_ROLE, check('lock_timeout', '25s'), check('statement_timeout', '25s')] });
  assert.equal(r.status, 204, r.text);
  const creds = await pb.api('GET', 'database/creds/settings');
  assert.equal(creds.status, 200, creds.text);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  const short = await pb.api('PUT', 'database/roles/short-settings', { db_name: 'short', creation_statements: [LOGIN_ROLE, check('lock_timeout', '1500ms')] });
  assert.equal(short.status, 204, short.text);
  const shortCreds = await pb.api('GET', 'database/creds/short-settings');
  assert.equal(shortCreds.status, 200, shortCreds.text);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: shortCreds.body.lease_id })).status, 204);
});

test('a creation stuck behind another session\'s lock fails on the server: an error naming it, and no user commits once the lock is free', async () => {
  const r = await pb.api('PUT', 'database/roles/direct', { db_name: 'short', creation_statements: [LOGIN_ROLE, `GRANT SELECT ON ${TABLE} TO "{{name}}"`] });
  assert.equal(r.status, 200, r.text);
  const before = await rolesWithPrefix(server, PREFIX);
  const blocker = new pg.Client({ connectionString: server.url });
  await blocker.connect();
  try {
    // An open transaction that changed the table's access list: a GRANT on it waits.
    await blocker.query(`BEGIN; GRANT SELECT ON ${TABLE} TO ${GROUP}`);
    const started = Date.now();
    const creds = await pb.api('GET', 'database/creds/direct');
    assert.equal(creds.status, 500, creds.text);
    assert.match(creds.body.errors[0], /lock timeout \(SQLSTATE 55P03\)/);
    assert.ok(Date.now() - started < 10_000, `answered after ${Date.now() - started} ms`);
  } finally {
    await blocker.query('COMMIT');
    await blocker.end();
  }
  // The lock is free now: nothing of the failed creation may commit after it.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  assert.deepEqual(await rolesWithPrefix(server, PREFIX), before);
});
