// Root rotation as the broker does it: updateUser on the admin's own user,
// then a NEW engine verifies the new password. Uses a dedicated admin account
// (never the real root).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import mysql from '../../../plugins/mysql/index.ts';
import { EngineConnectionError, EngineInputError, type Engine } from '../../../src/engine/engine.ts';
import { adminConnection, createAdminUser, dropLeftovers, goDsn, mysqlConfig, sessionsOf, userHosts } from '../../support/mariadb.ts';

const P = 'dbt_rr_';
const ADMIN = `${P}admin`;
const P1 = 'Aa1-root-rotation-pass-00001';
const P2 = 'Aa1-root-rotation-pass-00002';
const P3 = 'Aa1-root-rotation-pass-00003';
const P4 = 'Aa1-root-rotation-pass-00004';

let root: Connection;
const engines: Engine[] = [];

async function engineAs(password: string, options: Record<string, unknown> = {}, connectionUrl?: string): Promise<Engine> {
  const e = mysql.create();
  engines.push(e);
  await e.initialize(mysqlConfig({ username: ADMIN, password, options, ...(connectionUrl ? { connectionUrl } : {}) }), { verify: true });
  return e;
}

/** Which of the admin's hosts have `password`, per host. */
async function hostsWithPassword(password: string): Promise<Array<[string, number]>> {
  const [rows] = await root.query<RowDataPacket[]>(
    'SELECT Host AS host, authentication_string = PASSWORD(?) AS ok FROM mysql.user WHERE User = ? ORDER BY Host',
    [password, ADMIN],
  );
  return rows.map((r) => [String(r['host']), Number(r['ok'])]);
}

async function roundTrip(e: Engine, name: string): Promise<void> {
  await e.newUser({
    username: name,
    password: 'Aa1-roundtrip-password-00000',
    expiration: new Date(),
    creationStatements: [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`],
    rollbackStatements: [],
  });
  assert.deepEqual(await userHosts(root, name), ['%']);
  await e.deleteUser({ username: name, statements: [] });
  assert.deepEqual(await userHosts(root, name), []);
}

before(async () => {
  root = await adminConnection();
  await dropLeftovers(root, P);
  await createAdminUser(root, ADMIN, P1, ['%', 'localhost']);
});

after(async () => {
  for (const e of engines) await e.close();
  await dropLeftovers(root, P);
  await root.end();
});

// Issue 8 item 10: the admin exists as 'adm'@'%' and 'adm'@'localhost' with
// different passwords; rotation changes only the account the broker logs in
// as ('%' here: TCP logins match it), never the local one.
test('default root rotation changes only the account the admin logs in as; the other host keeps its password', async () => {
  const old = await engineAs(P1, {}, goDsn());
  await old.updateUser({ username: ADMIN, password: { value: P2, statements: [] } });
  assert.deepEqual(await hostsWithPassword(P2), [['%', 1], ['localhost', 0]]);
  assert.deepEqual(await hostsWithPassword(P1), [['%', 0], ['localhost', 1]], "the 'localhost' account keeps its own password");

  const fresh = await engineAs(P2);
  await roundTrip(fresh, `${P}u1`);

  const err = await mysql
    .create()
    .initialize(mysqlConfig({ username: ADMIN, password: P1 }), { verify: true })
    .then(
      () => assert.fail('the old password must not work'),
      (e: unknown) => e as Error,
    );
  assert.ok(err instanceof EngineConnectionError);
  assert.ok(!err.message.includes(P1) && !err.message.includes(P2), err.message);

  // The old engine keeps working until closed, also on new connections.
  for (const id of await sessionsOf(root, ADMIN)) await root.query(`KILL CONNECTION ${id}`).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  await roundTrip(old, `${P}u2`);
});

test('root_host names the rotated account; one the connection does not log in as is refused, nothing changed', async () => {
  const wrong = await engineAs(P2, { root_host: 'localhost' });
  await assert.rejects(
    wrong.updateUser({ username: ADMIN, password: { value: P3, statements: [] } }),
    (e: Error) => e instanceof EngineInputError && /root_host is 'localhost'.*'%'/.test(e.message),
  );
  assert.deepEqual(await hostsWithPassword(P2), [['%', 1], ['localhost', 0]]);
  assert.deepEqual(await hostsWithPassword(P1), [['%', 0], ['localhost', 1]]);

  const e = await engineAs(P2, { root_host: '%' });
  await e.updateUser({ username: ADMIN, password: { value: P3, statements: [] } });
  assert.deepEqual(await hostsWithPassword(P3), [['%', 1], ['localhost', 0]]);
  assert.deepEqual(await hostsWithPassword(P1), [['%', 0], ['localhost', 1]]);
  await roundTrip(e, `${P}u3`);
});

test('explicit root rotation statements (the documented default) are used as given', async () => {
  const e = await engineAs(P3);
  await e.updateUser({ username: ADMIN, password: { value: P4, statements: mysql.defaultRootRotationStatements } });
  assert.deepEqual(await hostsWithPassword(P4), [['%', 1], ['localhost', 0]]);
  const fresh = await engineAs(P4);
  await roundTrip(fresh, `${P}u4`);
});

test('the engine refuses to delete its own admin user', async () => {
  const e = await engineAs(P4);
  await assert.rejects(e.deleteUser({ username: ADMIN, statements: [] }), EngineInputError);
  assert.deepEqual(await userHosts(root, ADMIN), ['%', 'localhost']);
});
