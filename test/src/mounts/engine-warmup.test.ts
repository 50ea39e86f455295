// Warming the engines at unseal (src/mounts/engine-warmup.ts), on a real
// broker: a connection whose database is down neither fails nor blocks the
// unseal, and the others are opened (pool open, login proven) before their
// first request; the plugin names in use are left as the next start's hint.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { eventually, freePort, initAndUnseal, startBroker, unseal, type BrokerProcess } from '../../support/broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

let broker: BrokerProcess;
let target: TestPostgres;
let root = '';
let keys: string[] = [];
const prefix = `ew${Date.now() % 100000}`;

const api = (method: string, path: string, body?: unknown) => broker.api(method, path, { token: root, ...(body !== undefined ? { body } : {}) });

async function poolOpen(connection: string): Promise<boolean> {
  const r = await api('GET', `database/config/${connection}`);
  assert.equal(r.status, 200, r.text);
  return r.body.data.pool_status.open as boolean;
}

before(async () => {
  target = await trustPostgres();
  broker = await startBroker();
  ({ rootToken: root, keys } = await initAndUnseal(broker));
  const main = await api('PUT', 'database/config/main', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${target.host}:${target.port}/postgres`,
    username: target.adminUser,
    password: target.adminPassword,
    allowed_roles: '*',
  });
  assert.ok(main.status < 300, main.text);
  // Nothing listens on this port: the database is down.
  const down = await api('PUT', 'database/config/down', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@127.0.0.1:${await freePort()}/postgres`,
    username: 'admin',
    password: 'admin-password',
    verify_connection: false,
    allowed_roles: '*',
  });
  assert.ok(down.status < 300, down.text);
  for (const [name, db] of [
    ['app', 'main'],
    ['gone', 'down'],
  ] as const) {
    const role = await api('PUT', `database/roles/${name}`, {
      db_name: db,
      creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`],
      username_template: `{{ printf "${prefix}%s" (random 20) }}`,
      default_ttl: '1h',
    });
    assert.ok(role.status < 300, role.text);
  }
});

after(async () => {
  await broker?.stop();
  broker?.remove();
  if (target) {
    for (const r of await adminQuery<{ rolname: string }>(target, 'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix])) await adminQuery(target, `DROP ROLE IF EXISTS "${r.rolname}"`);
    await target.stop();
  }
});

test('after a restart, unseal succeeds with a database down; the reachable connection is opened before any request, the other at its first use', async () => {
  await broker.restart();
  const before = broker.logs.length;
  await unseal(broker, keys);
  const status = await broker.api('GET', 'sys/seal-status');
  assert.equal(status.body.sealed, false);

  await eventually(() => poolOpen('main'), 20_000, 'the reachable connection to be warmed without any request');
  await eventually(async () => broker.logs.slice(before).includes('warming the connection failed'), 20_000, 'the failed warm-up to be logged');
  assert.equal(await poolOpen('down'), false, 'a warm-up that failed leaves nothing open');
  assert.doesNotMatch(broker.logs.slice(before), /admin-password/, 'the log names no password');

  const creds = await api('GET', 'database/creds/app');
  assert.equal(creds.status, 200, creds.text);
  const rows = await adminQuery(target, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [creds.body.data.username]);
  assert.equal(rows.length, 1, 'the user exists');
  // The connection whose database is down answers as it always did: an error naming it, no crash.
  const refused = await api('GET', 'database/creds/gone');
  assert.ok(refused.status >= 400 && refused.status !== 500, refused.text);
  assert.match(refused.text, /down/);
  assert.equal((await broker.api('GET', 'sys/health')).status, 200);
  await api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id });
});

test('the plugin names in use are stored as the hint for the next start (plaintext metadata: names only)', async () => {
  const hint = (): string | undefined => {
    const db = new Database(broker.storagePath, { readonly: true });
    try {
      return (db.prepare("SELECT value FROM meta WHERE key = 'engines-in-use'").get() as { value: Buffer } | undefined)?.value.toString('utf8');
    } finally {
      db.close();
    }
  };
  await eventually(async () => hint() !== undefined, 20_000, 'the hint to be written');
  assert.deepEqual(JSON.parse(hint()!), ['postgresql-database-plugin']);
  // A restart loads the engine while sealed, and the unseal still serves credentials at once.
  await broker.restart();
  await unseal(broker, keys);
  const creds = await api('GET', 'database/creds/app');
  assert.equal(creds.status, 200, creds.text);
  await api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id });
});

test('sealing right after the unseal, while connections are being warmed, leaves the broker sound', async () => {
  await broker.restart();
  await unseal(broker, keys);
  assert.equal((await api('PUT', 'sys/seal')).status, 204);
  assert.equal((await broker.api('GET', 'sys/seal-status')).body.sealed, true);
  await unseal(broker, keys);
  const creds = await api('GET', 'database/creds/app');
  assert.equal(creds.status, 200, creds.text);
  await api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id });
});
