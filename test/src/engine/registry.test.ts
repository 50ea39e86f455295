// Third-party engines from the config file `plugins`: the example engine
// (test/support/example-engine) loaded by a real broker process from a path
// relative to the config file, from an absolute path and as a package name,
// issuing and revoking users in its database for real; its errors mapped by
// name; and every kind of bad plugin entry stopping the server at startup
// with an error naming the field.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BrokerProcess, eventually, initAndUnseal, startBroker, type ApiResponse } from '../../support/broker.ts';
import { access, createUserStore, listAccounts, login, openSession, openStore, sessionAlive, validUntil, type UserStore } from '../../support/example-engine/store.ts';
import exampleEngine, { EXAMPLE_TYPE } from '../../support/example-engine/index.ts';
import { EngineRegistry, factoryProblem } from '../../../src/engine/registry.ts';

const ENGINE = resolve(import.meta.dirname, '../../support/example-engine/index.ts');
const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-registry-'));
  dirs.push(dir);
  return dir;
}

after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function expectStatus(res: ApiResponse, status: number, what: string): void {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text}`);
}

/** A users database with one admin account, in `dir`. */
function newStore(dir: string): { file: string; admin: { username: string; password: string } } {
  const file = join(dir, 'users.db');
  const admin = { username: 'store_admin', password: `A-${randomBytes(12).toString('hex')}` };
  createUserStore(file, admin.username, admin.password);
  return { file, admin };
}

describe('an engine registered by a path relative to the config file', () => {
  const dir = tempDir();
  const { file, admin } = newStore(dir);
  let broker: BrokerProcess;
  let token: string;
  let db: UserStore;
  const api = (method: string, path: string, body?: unknown): Promise<ApiResponse> =>
    broker.api(method, path, { token, ...(body !== undefined ? { body } : {}) });

  before(async () => {
    const modulePath = relative(dir, ENGINE);
    assert.ok(modulePath.startsWith('..'), 'a relative path, resolved against the config file folder');
    broker = await startBroker({ dir, config: { log_level: 'warn', plugins: { [EXAMPLE_TYPE]: modulePath } } });
    token = (await initAndUnseal(broker)).rootToken;
    db = openStore(file);
  });

  after(async () => {
    db?.close();
    await broker?.stop();
  });

  test('a connection is verified with the engine: a wrong admin password is refused and nothing is saved', async () => {
    const wrong = await api('PUT', 'database/config/users', { plugin_name: EXAMPLE_TYPE, connection_url: file, username: admin.username, password: 'not-the-password' });
    expectStatus(wrong, 400, 'wrong admin password');
    assert.match(wrong.body.errors[0], /connection_url.*admin login refused for "store_admin"/);
    assert.ok(!wrong.text.includes('not-the-password'));
    expectStatus(await api('GET', 'database/config/users'), 404, 'nothing saved');

    const unknownOption = await api('PUT', 'database/config/users', { plugin_name: EXAMPLE_TYPE, connection_url: file, username: admin.username, password: admin.password, colour: 'blue' });
    expectStatus(unknownOption, 400, 'unknown engine option');
    assert.match(unknownOption.body.errors[0], /"colour"/);

    const relativeUrl = await api('PUT', 'database/config/users', { plugin_name: EXAMPLE_TYPE, connection_url: 'users.db', username: admin.username, password: admin.password });
    expectStatus(relativeUrl, 400, 'relative connection_url');
    assert.match(relativeUrl.body.errors[0], /connection_url/);

    const ok = await api('PUT', 'database/config/users', { plugin_name: EXAMPLE_TYPE, connection_url: file, username: admin.username, password: admin.password, allowed_roles: ['*'] });
    expectStatus(ok, 204, 'connection');
    const read = await api('GET', 'database/config/users');
    expectStatus(read, 200, 'read connection');
    assert.equal(read.body.data.plugin_name, EXAMPLE_TYPE);
    assert.ok(!read.text.includes(admin.password));
  });

  test("the engine's own EngineInputError (matched by name) is a 400 naming the field", async () => {
    const bad = await api('PUT', 'database/roles/bad', { db_name: 'users', creation_statements: ['GRANT EVERYTHING TO everyone'] });
    expectStatus(bad, 400, 'bad creation statement');
    assert.match(bad.body.errors[0], /creation_statements/);
    const revocation = await api('PUT', 'database/roles/bad', { db_name: 'users', creation_statements: ['GRANT READ ON orders'], revocation_statements: ['DROP it'] });
    expectStatus(revocation, 400, 'revocation statements');
    assert.match(revocation.body.errors[0], /revocation_statements/);
    expectStatus(await api('GET', 'database/roles/bad'), 404, 'no role was written');
  });

  test('creds create a real account with its grants; revoke deletes it and ends its session', async () => {
    expectStatus(await api('PUT', 'database/roles/reader', { db_name: 'users', creation_statements: ['GRANT READ ON orders; GRANT READ ON items'], default_ttl: '10m' }), 204, 'role');
    const res = await api('GET', 'database/creds/reader');
    expectStatus(res, 200, 'creds');
    const { username, password } = res.body.data as { username: string; password: string };
    assert.ok(username.length <= exampleEngine.maxUsernameLength);
    assert.ok(listAccounts(db).includes(username));
    assert.equal(login(db, username, password), true);
    assert.equal(login(db, username, `${password}x`), false);
    assert.equal(access(db, username, password, 'read', 'orders'), 'ok');
    assert.equal(access(db, username, password, 'read', 'items'), 'ok');
    assert.equal(access(db, username, password, 'write', 'orders'), 'denied');
    const expiry = validUntil(db, username);
    assert.ok(expiry && Math.abs(expiry.getTime() - (Date.now() + 600_000)) < 30_000, 'the lease end (plus grace) is the account expiry');
    const session = openSession(db, username, password);

    expectStatus(await api('PUT', 'sys/leases/revoke', { lease_id: res.body.lease_id }), 204, 'revoke');
    assert.equal(listAccounts(db).includes(username), false);
    assert.equal(sessionAlive(db, session), false);
    assert.equal(login(db, username, password), false);
    expectStatus(await api('PUT', 'sys/leases/revoke', { lease_id: res.body.lease_id }), 204, 'revoke again');
  });

  test('an expired lease deletes the account with no API call', async () => {
    expectStatus(await api('PUT', 'database/roles/brief', { db_name: 'users', creation_statements: ['GRANT READ ON orders'], default_ttl: 1, max_ttl: 1 }), 204, 'role');
    const res = await api('GET', 'database/creds/brief');
    expectStatus(res, 200, 'creds');
    const { username } = res.body.data as { username: string };
    assert.ok(listAccounts(db).includes(username));
    await eventually(async () => !listAccounts(db).includes(username), 20_000, 'the expired account to be deleted');
  });

  test('an unknown plugin_name is a 400', async () => {
    const res = await api('PUT', 'database/config/nope', { plugin_name: 'no-such-plugin', connection_url: file });
    expectStatus(res, 400, 'unknown plugin');
    assert.match(res.body.errors[0], /no-such-plugin/);
  });
});

describe('an engine registered as a package name, resolved from the config file folder', () => {
  test('loads, issues and revokes', async () => {
    const dir = tempDir();
    const pkg = join(dir, 'node_modules', 'dbroker-engine-example');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'dbroker-engine-example', type: 'module', exports: './index.mjs' }));
    writeFileSync(join(pkg, 'index.mjs'), `export { default } from ${JSON.stringify(pathToFileURL(ENGINE).href)};\n`);
    const { file, admin } = newStore(dir);
    const broker = await startBroker({ dir, config: { log_level: 'warn', plugins: { [EXAMPLE_TYPE]: 'dbroker-engine-example' } } });
    const db = openStore(file);
    try {
      const { rootToken } = await initAndUnseal(broker);
      const api = (method: string, path: string, body?: unknown) => broker.api(method, path, { token: rootToken, ...(body !== undefined ? { body } : {}) });
      expectStatus(await api('PUT', 'database/config/users', { plugin_name: EXAMPLE_TYPE, connection_url: file, username: admin.username, password: admin.password, allowed_roles: ['r'] }), 204, 'connection');
      expectStatus(await api('PUT', 'database/roles/r', { db_name: 'users', creation_statements: ['GRANT WRITE ON logs'] }), 204, 'role');
      const creds = await api('GET', 'database/creds/r');
      expectStatus(creds, 200, 'creds');
      const { username, password } = creds.body.data as { username: string; password: string };
      assert.equal(access(db, username, password, 'write', 'logs'), 'ok');
      expectStatus(await api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id }), 204, 'revoke');
      assert.deepEqual(listAccounts(db), [admin.username]);
    } finally {
      db.close();
      await broker.stop();
    }
  });
});

describe('bad plugin entries stop the server at startup, naming the field', () => {
  /** Start a broker that must fail; returns its output. */
  async function failedStart(plugins: unknown, files: Record<string, string> = {}): Promise<string> {
    const dir = tempDir();
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const broker = new BrokerProcess(dir, { config: { plugins } });
    const started = await broker.start().then(
      () => true,
      () => false,
    );
    if (started) {
      await broker.stop();
      assert.fail(`the broker started with plugins ${JSON.stringify(plugins)}`);
    }
    const code = await broker.waitForExit();
    assert.ok(code !== 0 && code !== null, `non-zero exit (got ${code})`);
    assert.doesNotMatch(broker.logs, /dbroker listening/);
    return broker.logs;
  }

  test('a module that does not exist', async () => {
    const out = await failedStart({ 'my-engine': './no-such-engine.ts' });
    assert.match(out, /invalid configuration field "plugins\.my-engine": cannot load module "\.\/no-such-engine\.ts"/);
  });

  test('a package that is not installed', async () => {
    const out = await failedStart({ 'my-engine': 'dbroker-engine-not-installed' });
    assert.match(out, /"plugins\.my-engine": cannot load module "dbroker-engine-not-installed"/);
  });

  test('a module without a default export (absolute path)', async () => {
    const dir = tempDir();
    const module = join(dir, 'no-default.mjs');
    writeFileSync(module, 'export const engine = {};\n');
    const out = await failedStart({ 'my-engine': module });
    assert.match(out, /"plugins\.my-engine": module ".*no-default\.mjs" has no default export/);
  });

  test('a default export that is not an EngineFactory', async () => {
    const out = await failedStart({ 'my-engine': './not-a-factory.mjs' }, { 'not-a-factory.mjs': "export default { type: 'my-engine', maxUsernameLength: 32 };\n" });
    assert.match(out, /"plugins\.my-engine": the default export of "\.\/not-a-factory\.mjs" is not an EngineFactory: "create" must be a function/);
  });

  test('a name that shadows a built-in engine', async () => {
    const out = await failedStart({ 'postgresql-database-plugin': ENGINE });
    assert.match(out, /"plugins\.postgresql-database-plugin": "postgresql-database-plugin" is a built-in engine and cannot be replaced/);
  });

  test('a factory registered under a name other than its type', async () => {
    const out = await failedStart({ 'other-name': ENGINE });
    assert.match(out, /"plugins\.other-name": the engine in ".*index\.ts" is of type "example-users-plugin", not "other-name"/);
  });

  test('plugins that is not an object of paths', async () => {
    const out = await failedStart(['./engine.ts']);
    assert.match(out, /invalid configuration field "plugins"/);
  });
});

describe('EngineRegistry', () => {
  test('factoryProblem explains what is missing', () => {
    assert.equal(factoryProblem(exampleEngine), undefined);
    assert.match(factoryProblem(null) ?? '', /null/);
    assert.match(factoryProblem({ ...exampleEngine, type: '' }) ?? '', /"type"/);
    assert.match(factoryProblem({ ...exampleEngine, maxUsernameLength: 0 }) ?? '', /"maxUsernameLength"/);
    assert.match(factoryProblem({ ...exampleEngine, defaultRootRotationStatements: 'x' }) ?? '', /"defaultRootRotationStatements"/);
    assert.match(factoryProblem({ ...exampleEngine, validateStatements: 1 }) ?? '', /"validateStatements"/);
    assert.match(factoryProblem({ ...exampleEngine, defaultUsernameTemplate: '' }) ?? '', /"defaultUsernameTemplate"/);
    assert.match(factoryProblem({ ...exampleEngine, poolSettings: ['max_idle'] }) ?? '', /"poolSettings"/);
    assert.equal(factoryProblem({ ...exampleEngine, poolSettings: ['max_connection_lifetime'], defaultUsernameTemplate: '{{random 20}}' }), undefined);
  });

  test('built-in and registered names resolve; others are an unknown plugin', async () => {
    const registry = new EngineRegistry({ [EXAMPLE_TYPE]: ENGINE }, tmpdir());
    await registry.loadThirdParty();
    assert.equal(await registry.get(EXAMPLE_TYPE), exampleEngine);
    assert.equal((await registry.get('mysql-legacy-database-plugin')).maxUsernameLength, 16);
    assert.equal((await registry.get('postgresql-database-plugin')).maxUsernameLength, 63);
    await assert.rejects(registry.get('nope'), /unknown plugin_name "nope"/);
    assert.deepEqual(registry.names().slice(-1), [EXAMPLE_TYPE]);
  });
});
