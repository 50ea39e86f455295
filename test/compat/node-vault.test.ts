// The npm `node-vault` client (the most used JavaScript Vault client) against
// a real broker and the shared PostgreSQL (127.0.0.1:5432, user postgres),
// unchanged and with its own methods only: health and seal status, mount()
// (which sends `mount_point` in the body of sys/mounts/:path, a field Vault
// does not know and answers with a warning), write() of the connection and
// roles, list() with the raw LIST method and with ?list=1, read() of creds,
// a login to PostgreSQL with them, renew(), revoke(), revokePrefix() (which
// stops at the role boundary), and unmount(). After each revocation the
// database role is checked gone from pg_roles.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import NodeVault from 'node-vault';
import { initAndUnseal, startBroker, type BrokerProcess } from '../support/broker.ts';
import { dropRolesWithPrefix, LOGIN_ROLE, rolesWithPrefix, templatedUrl } from '../support/pg-broker.ts';
import { adminQuery, loginAs, trustPostgres, type TestPostgres } from '../support/scram-postgres.ts';

const userPrefix = `nv${randomBytes(3).toString('hex')}`;
const MOUNT = 'nv';
let server: TestPostgres;
let broker: BrokerProcess;
let vault: NodeVault.client;
let rawVault: NodeVault.client;

before(async () => {
  [server, broker] = await Promise.all([trustPostgres(), startBroker()]);
  const { rootToken } = await initAndUnseal(broker);
  vault = NodeVault({ endpoint: broker.url, token: rootToken });
  // The same client as configured for proxies that refuse custom verbs: LIST becomes GET ?list=1.
  rawVault = NodeVault({ endpoint: broker.url, token: rootToken, noCustomHTTPVerbs: true });
});

after(async () => {
  await broker?.stop();
  broker?.remove();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
});

const roleExists = async (username: string): Promise<boolean> =>
  (await adminQuery(server, 'SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [username])).length === 1;

/** The status and first error of a rejected node-vault call. */
async function failure(call: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await call;
  } catch (err) {
    const e = err as NodeVault.ApiResponseError;
    return { status: e.response?.statusCode, message: e.message };
  }
  assert.fail('the call succeeded');
}

test('node-vault: health and seal status', async () => {
  const health = await vault.health();
  assert.deepEqual([health.initialized, health.sealed, health.standby], [true, false, false]);
  const status = await vault.status();
  assert.deepEqual([status.sealed, status.t, status.n, status.progress], [false, 1, 1, 0]);
});

test('node-vault: mount() a database engine (mount_point in the body is accepted, with a warning at most)', async () => {
  const mounted = await vault.mount({ mount_point: MOUNT, type: 'database', description: 'mounted by node-vault' });
  // 204 (no body) or 200 with warnings naming the field Vault does not know.
  if (mounted !== undefined && mounted !== '') {
    assert.ok(mounted.warnings === null || mounted.warnings.every((w: string) => /mount_point/.test(w)), JSON.stringify(mounted));
  }
  const mounts = await vault.mounts();
  assert.equal(mounts.data[`${MOUNT}/`].type, 'database');
  assert.equal(mounts.data[`${MOUNT}/`].description, 'mounted by node-vault');
  // Top-level copy too, as Vault answers (node-vault users read either).
  assert.equal(mounts[`${MOUNT}/`].type, 'database');
});

test('node-vault: connection and roles written, read back and listed (LIST and GET ?list=1)', async () => {
  await vault.write(`${MOUNT}/config/pg`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: 'ro,ro-admin',
  });
  const config = await vault.read(`${MOUNT}/config/pg`);
  assert.equal(config.data.plugin_name, 'postgresql-database-plugin');
  assert.deepEqual(config.data.allowed_roles, ['ro', 'ro-admin']);
  assert.equal(config.data.connection_details.password, undefined, 'the password is never read back');
  for (const name of ['ro', 'ro-admin']) {
    await vault.write(`${MOUNT}/roles/${name}`, {
      db_name: 'pg',
      creation_statements: [LOGIN_ROLE],
      default_ttl: '1m',
      max_ttl: '10m',
      username_template: `{{ printf "${userPrefix}${name.replace('-', '')}-%s" (random 16) }}`,
    });
  }
  const role = await vault.read(`${MOUNT}/roles/ro`);
  assert.deepEqual([role.data.db_name, role.data.default_ttl, role.data.max_ttl], ['pg', 60, 600]);
  assert.deepEqual((await vault.list(`${MOUNT}/roles`)).data.keys, ['ro', 'ro-admin']);
  assert.deepEqual((await rawVault.list(`${MOUNT}/roles`)).data.keys, ['ro', 'ro-admin']);
});

test('node-vault: creds log in to PostgreSQL; renew() moves the lease; revoke() drops the user from pg_roles', async () => {
  const creds = await vault.read(`${MOUNT}/creds/ro`);
  assert.match(creds.lease_id, new RegExp(`^${MOUNT}/creds/ro/[A-Za-z0-9]{24,}$`));
  assert.equal(creds.lease_duration, 60);
  assert.equal(creds.renewable, true);
  const { username, password } = creds.data as { username: string; password: string };
  assert.ok(username.startsWith(`${userPrefix}ro-`), username);

  const login = await loginAs(server, username, password);
  try {
    assert.equal((await login.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u, username);
  } finally {
    await login.end();
  }
  if (server.checksPasswords) await assert.rejects(loginAs(server, username, `${password}x`), 'a wrong password is refused');

  const renewed = await vault.renew({ lease_id: creds.lease_id, increment: 300 });
  assert.equal(renewed.lease_id, creds.lease_id);
  assert.equal(renewed.lease_duration, 300);
  assert.equal(renewed.renewable, true);
  const [row] = await adminQuery<{ until: Date }>(server, 'SELECT rolvaliduntil AS until FROM pg_catalog.pg_roles WHERE rolname = $1', [username]);
  assert.ok(row && Math.abs(row.until.getTime() - (Date.now() + 300_000)) < 15_000, `VALID UNTIL follows the renewal: ${row?.until.toISOString()}`);
  // Past max_ttl: capped, with a warning the client passes through.
  const capped = await vault.renew({ lease_id: creds.lease_id, increment: 3600 });
  assert.ok(capped.lease_duration <= 600 && capped.lease_duration > 590, String(capped.lease_duration));
  assert.match(capped.warnings[0], /max_ttl/);

  await vault.revoke({ lease_id: creds.lease_id });
  assert.equal(await roleExists(username), false, 'the revoked user is gone from pg_roles');
  const gone = await failure(vault.write('sys/leases/lookup', { lease_id: creds.lease_id }));
  assert.deepEqual(gone, { status: 400, message: 'lease not found' });
});

test('node-vault: revokePrefix() revokes one role\'s leases, not those of a role whose name merely starts the same', async () => {
  const [ro, admin] = [await vault.read(`${MOUNT}/creds/ro`), await vault.read(`${MOUNT}/creds/ro-admin`)];
  await vault.revokePrefix({ path_prefix: `${MOUNT}/creds/ro` });
  assert.equal(await roleExists(ro.data.username), false);
  assert.equal(await roleExists(admin.data.username), true, 'ro-admin is not under the prefix nv/creds/ro');
  assert.equal((await vault.write('sys/leases/lookup', { lease_id: admin.lease_id })).data.id, admin.lease_id);
  await vault.revoke({ lease_id: admin.lease_id });
  assert.equal(await roleExists(admin.data.username), false);
});

test('node-vault: errors reach the caller with Vault\'s status and message; unmount() removes the mount', async () => {
  const unknown = await failure(vault.read(`${MOUNT}/creds/no-such-role`));
  assert.ok(unknown.status === 400 || unknown.status === 404, JSON.stringify(unknown));
  assert.match(unknown.message, /no-such-role/);
  const denied = await failure(NodeVault({ endpoint: broker.url, token: 'not-a-token' }).read(`${MOUNT}/creds/ro`));
  assert.deepEqual(denied, { status: 403, message: 'permission denied' });

  await vault.unmount({ mount_point: MOUNT });
  assert.equal((await vault.mounts()).data[`${MOUNT}/`], undefined);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), [], 'no user of this file is left');
});
