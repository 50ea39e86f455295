// No secret at rest or in logs: a byte search of the SQLite file, its -wal
// and -shm, while the broker runs and after it stops, and of everything the
// broker wrote to stdout/stderr, for every secret the API handed out.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { combine } from 'shamir-secret-sharing';
import { startBroker, type BrokerProcess } from '../../support/broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

let broker: BrokerProcess;
let pgServer: TestPostgres;
const secrets = new Map<string, Buffer>();
const tag = randomBytes(4).toString('hex');
let leaseId = '';
let dynamicUser = '';

/** Remember a secret in the forms it could be written in. */
function remember(what: string, value: string): void {
  secrets.set(what, Buffer.from(value, 'utf8'));
}

before(async () => {
  pgServer = await trustPostgres();
  // trace: the most the broker ever logs.
  broker = await startBroker({ config: { log_level: 'trace' } });
  const init = await broker.api('PUT', 'sys/init', { body: { secret_shares: 3, secret_threshold: 2 } });
  assert.equal(init.status, 200);
  const root = init.body.root_token as string;
  remember('root token', root);
  const shares = init.body.keys as string[];
  for (const [i, k] of shares.entries()) {
    remember(`unseal key ${i} (hex)`, k);
    remember(`unseal key ${i} (base64)`, init.body.keys_base64[i]);
    secrets.set(`unseal key ${i} (raw bytes)`, Buffer.from(k, 'hex'));
  }
  // The root key itself, recombined here, must not be anywhere either.
  secrets.set('root key (raw bytes)', Buffer.from(await combine(shares.slice(0, 2).map((s) => new Uint8Array(Buffer.from(s, 'hex'))))));
  for (const key of shares.slice(0, 2)) assert.equal((await broker.api('PUT', 'sys/unseal', { body: { key } })).status, 200);

  for (const [i, body] of [
    { policies: ['default'], ttl: '1h' },
    { policies: ['default'], num_uses: 3, meta: { secret_note: `meta-${tag}-value` } },
    { policies: ['root'], display_name: 'admin' },
  ].entries()) {
    const r = await broker.api('PUT', 'auth/token/create', { token: root, body });
    assert.equal(r.status, 200);
    remember(`created token ${i}`, r.body.auth.client_token);
    remember(`accessor ${i}`, r.body.auth.accessor);
    // Use it, so its lookups and uses go through the store and the logs.
    assert.equal((await broker.api('GET', 'auth/token/lookup-self', { token: r.body.auth.client_token })).status, 200);
  }
  remember('token meta value', `meta-${tag}-value`);
  // A token given to a lookup in the body, and one refused: neither may be logged.
  const probe = `hvs.${randomBytes(24).toString('base64url')}`;
  remember('probed unknown token', probe);
  await broker.api('PUT', 'auth/token/lookup', { token: root, body: { token: probe } });
  await broker.api('GET', 'sys/mounts', { token: probe });

  // A database connection with an admin password, and a dynamic credential.
  const adminPassword = pgServer.checksPasswords ? pgServer.adminPassword : `admin-pw-${tag}-${randomBytes(8).toString('hex')}`;
  remember('connection admin password', adminPassword);
  const config = await broker.api('PUT', 'database/config/scan', {
    token: root,
    body: {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgresql://{{username}}:{{password}}@${pgServer.host}:${pgServer.port}/postgres`,
      username: pgServer.adminUser,
      password: adminPassword,
      allowed_roles: ['scan'],
    },
  });
  assert.equal(config.status, 204, config.text);
  const role = await broker.api('PUT', 'database/roles/scan', {
    token: root,
    body: { db_name: 'scan', creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`], default_ttl: '10m' },
  });
  assert.equal(role.status, 204, role.text);
  const creds = await broker.api('GET', 'database/creds/scan', { token: root });
  assert.equal(creds.status, 200, creds.text);
  leaseId = creds.body.lease_id;
  dynamicUser = creds.body.data.username;
  remember('dynamic password', creds.body.data.password);
  // A connection that fails, with its password in the URL: the error must not carry it.
  const badPassword = `bad-pw-${tag}-${randomBytes(8).toString('hex')}`;
  remember('password in a failing connection URL', badPassword);
  const failing = await broker.api('PUT', 'database/config/failing', {
    token: root,
    body: { plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://nobody:${badPassword}@127.0.0.1:1/postgres`, allowed_roles: ['x'] },
  });
  assert.ok(failing.status >= 400 && failing.status < 600, failing.text);
  assert.ok(!failing.text.includes(badPassword), `the error answer carries the password: ${failing.text}`);
  await broker.api('PUT', 'sys/rotate', { token: root });
});

after(async () => {
  // Drop the dynamic user whatever happened (the broker may be stopped by now).
  if (dynamicUser) await adminQuery(pgServer, `DROP ROLE IF EXISTS "${dynamicUser.replace(/"/g, '""')}"`).catch(() => undefined);
  await broker?.stop();
  broker?.remove();
  await pgServer?.stop();
});

function scan(label: string, bytes: Buffer): string[] {
  const found: string[] = [];
  for (const [what, secret] of secrets) if (bytes.includes(secret)) found.push(`${what} in ${label}`);
  return found;
}

function scanStore(): { found: string[]; files: string[] } {
  const files = [broker.storagePath, `${broker.storagePath}-wal`, `${broker.storagePath}-shm`].filter((f) => existsSync(f));
  return { found: files.flatMap((f) => scan(f.slice(f.lastIndexOf('/') + 1), readFileSync(f))), files };
}

test('while running: no secret in the SQLite file, its WAL or its shared memory', () => {
  assert.ok(secrets.size >= 15, `secrets to look for: ${secrets.size}`);
  const { found, files } = scanStore();
  assert.ok(files.some((f) => f.endsWith('-wal')), 'the WAL exists while running (so it is really scanned)');
  assert.deepEqual(found, []);
});

test('the store does hold the records (the scan is not vacuous)', () => {
  const db = readFileSync(broker.storagePath);
  const wal = existsSync(`${broker.storagePath}-wal`) ? readFileSync(`${broker.storagePath}-wal`) : Buffer.alloc(0);
  const all = Buffer.concat([db, wal]);
  // Plaintext metadata that is meant to be there: table names and the lease id (an identifier, not a secret).
  assert.ok(all.includes(Buffer.from('CREATE TABLE tokens')));
  assert.ok(all.includes(Buffer.from(leaseId)), 'lease ids are stored in the clear');
});

test('after a clean stop: no secret in the files either', async () => {
  const code = await broker.stop();
  assert.equal(code, 0);
  const { found } = scanStore();
  assert.deepEqual(found, []);
});

test('logs: no secret anywhere in what the broker printed', () => {
  assert.ok(broker.logs.length > 500, 'the broker logged something');
  assert.ok(broker.logs.includes('"level":10') || broker.logs.includes('"level":20') || broker.logs.includes('"level":30'));
  assert.deepEqual(scan('logs', Buffer.from(broker.logs, 'utf8')), []);
});

test('revoking the dynamic credential afterwards still works (cleanup path)', async () => {
  await broker.start();
  const root = secrets.get('root token')!.toString();
  const keys = [...secrets.entries()].filter(([k]) => /unseal key \d \(hex\)/.test(k)).map(([, v]) => v.toString());
  for (const key of keys.slice(0, 2)) await broker.api('PUT', 'sys/unseal', { body: { key } });
  const revoke = await broker.api('PUT', 'sys/leases/revoke', { token: root, body: { lease_id: leaseId } });
  assert.equal(revoke.status, 204, revoke.text);
  const rows = await adminQuery(pgServer, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [dynamicUser]);
  assert.deepEqual(rows, []);
  leaseId = '';
  assert.deepEqual(scan('logs after restart', Buffer.from(broker.logs, 'utf8')), []);
});
