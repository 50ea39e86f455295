// Audit devices over HTTP against a real broker and PostgreSQL: entries for
// requests and responses (denied ones too), no plaintext secret in the file,
// sys/audit-hash finds tokens and usernames, bad input, disable, restart,
// and fail-closed when no device can write.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../../support/broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import {
  configureConnection,
  createRole,
  dropRolesWithPrefix,
  issueCreds,
  prefixTemplate,
  startPgBroker,
  tag,
  type PgBroker,
} from '../../support/pg-broker.ts';

let pg: TestPostgres;
let pb: PgBroker;
let dir: string;
let auditFile: string;
const userPrefix = `va${tag()}`;
/** Every secret the API handed out or was given; none may appear in an audit file. */
const secrets = new Map<string, string>();

interface AuditLine {
  time: string;
  type: 'request' | 'response';
  // any: audit entries are free-form JSON; each test reads the fields it asserts on.
  auth: any;
  request: any;
  response?: any;
  error?: string;
}

function entries(file: string): AuditLine[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as AuditLine);
}

/** The request and response entries of one request id. */
function pairOf(file: string, id: string): { request: AuditLine; response: AuditLine } {
  const found = entries(file).filter((e) => e.request.id === id);
  const request = found.find((e) => e.type === 'request');
  const response = found.find((e) => e.type === 'response');
  assert.ok(request && response, `request and response entries for ${id}`);
  return { request, response };
}

function assertNoSecrets(file: string): void {
  const bytes = readFileSync(file);
  for (const [what, value] of secrets) assert.equal(bytes.indexOf(Buffer.from(value, 'utf8')), -1, `${what} appears in plaintext in ${file}`);
}

async function auditHash(device: string, input: string): Promise<string> {
  const r = await pb.api('PUT', `sys/audit-hash/${device}`, { input });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.hash, r.body.data.hash);
  assert.match(r.body.hash, /^hmac-sha256:[0-9a-f]{64}$/);
  return r.body.hash as string;
}

before(async () => {
  pg = await trustPostgres();
  pb = await startPgBroker();
  dir = mkdtempSync(join(tmpdir(), 'dbroker-audit-'));
  auditFile = join(dir, 'audit.log');
  secrets.set('root token', pb.root);
  pb.keys.forEach((k, i) => secrets.set(`unseal key ${i}`, k));
  await configureConnection(pb, pg, 'main');
  if (pg.adminPassword) secrets.set('admin password', pg.adminPassword);
  await createRole(pb, 'reader', { db_name: 'main', default_ttl: 120, username_template: prefixTemplate(userPrefix) });
  const policy = await pb.api('PUT', 'sys/policies/acl/creds-only', { policy: 'path "database/creds/*" { capabilities = ["read"] }' });
  assert.equal(policy.status, 204, policy.text);
});

after(async () => {
  await pb?.close();
  if (pg) await dropRolesWithPrefix(pg, userPrefix);
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('bad input is refused with a 400 naming the field, and nothing is enabled', async () => {
  const regularFile = join(dir, 'not-a-dir');
  writeFileSync(regularFile, 'x');
  const cases: Array<[string, unknown, string]> = [
    ['bad', { type: 'socket', options: { address: '127.0.0.1:9090' } }, '"type"'],
    ['bad', { options: { file_path: auditFile } }, '"type"'],
    ['bad', { type: 'file', options: { file_path: 'relative/audit.log' } }, '"options.file_path"'],
    ['bad', { type: 'file', options: {} }, '"options.file_path"'],
    ['bad', { type: 'file' }, '"options.file_path"'],
    ['bad', { type: 'file', options: { file_path: auditFile, log_raw: true } }, '"options.log_raw"'],
    ['bad', { type: 'file', options: { file_path: auditFile, log_raw: 'true' } }, '"options.log_raw"'],
    ['bad', { type: 'file', options: { file_path: auditFile, mode: '999' } }, '"options.mode"'],
    ['bad', { type: 'file', options: { file_path: auditFile, surprise: 'x' } }, '"options.surprise"'],
    ['bad', { type: 'file', options: { file_path: join(regularFile, 'audit.log') } }, '"options.file_path"'],
    ['bad path!', { type: 'file', options: { file_path: auditFile } }, '"path"'],
  ];
  for (const [path, body, field] of cases) {
    const r = await pb.api('PUT', `sys/audit/${encodeURIComponent(path)}`, body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.ok(r.body.errors[0].includes(field), `${JSON.stringify(body)} should name ${field}: ${r.text}`);
  }
  const list = await pb.api('GET', 'sys/audit');
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(list.body.data, {});
  assert.equal(existsSync(auditFile), false, 'no refused device created its file');
});

test('enable a file device; it is listed as Vault lists it; the path cannot be reused', async () => {
  const r = await pb.api('PUT', 'sys/audit/file', { type: 'file', description: 'who got what', options: { file_path: auditFile } });
  assert.equal(r.status, 204, r.text);
  assert.equal(statSync(auditFile).mode & 0o777, 0o600);
  const list = await pb.api('GET', 'sys/audit');
  assert.equal(list.status, 200, list.text);
  const expected = { type: 'file', description: 'who got what', options: { file_path: auditFile, mode: '0600' }, path: 'file/', local: false };
  assert.deepEqual(list.body.data, { 'file/': expected });
  assert.deepEqual(list.body['file/'], expected);
  const again = await pb.api('PUT', 'sys/audit/file', { type: 'file', options: { file_path: join(dir, 'other.log') } });
  assert.equal(again.status, 400, again.text);
  assert.match(again.body.errors[0], /"path".*already in use/);
});

test('credentials and tokens are audited with every secret hashed; audit-hash finds them', async () => {
  const created = await pb.api('PUT', 'auth/token/create', { policies: ['creds-only'], ttl: '10m', display_name: 'app', meta: { team: `secret-team-${userPrefix}` } });
  assert.equal(created.status, 200, created.text);
  const appToken = created.body.auth.client_token as string;
  secrets.set('created token', appToken);
  secrets.set('created accessor', created.body.auth.accessor);
  secrets.set('token meta value', `secret-team-${userPrefix}`);

  const creds = await issueCreds(pb, 'reader', appToken);
  secrets.set('creds password', creds.password);
  secrets.set('creds username', creds.username);

  // Denied: the app token has no sudo on sys/audit.
  const denied = await pb.broker.api('GET', 'sys/audit', { token: appToken });
  assert.equal(denied.status, 403, denied.text);
  // An unseal key sent while unsealed, and a token probed by lookup: both only as hashes.
  assert.equal((await pb.broker.api('PUT', 'sys/unseal', { body: { key: pb.keys[0] } })).status, 200);
  const lookup = await pb.api('PUT', 'auth/token/lookup', { token: appToken });
  assert.equal(lookup.status, 200, lookup.text);

  const tokenHash = await auditHash('file', appToken);
  const usernameHash = await auditHash('file', creds.username);
  const passwordHash = await auditHash('file', creds.password);
  assert.equal(await auditHash('file/', appToken), tokenHash, 'the device path may be given with a trailing slash');

  const tokenEntries = pairOf(auditFile, created.body.request_id);
  assert.equal(tokenEntries.request.request.path, 'auth/token/create');
  assert.equal(tokenEntries.request.request.operation, 'update');
  assert.equal(tokenEntries.request.auth.display_name, 'root');
  assert.deepEqual(tokenEntries.request.auth.policies, ['root']);
  assert.equal(tokenEntries.response.response.auth.client_token, tokenHash);
  assert.deepEqual(tokenEntries.response.response.auth.policies, ['creds-only', 'default']);
  assert.equal(tokenEntries.request.request.data.display_name, await auditHash('file', 'app'));

  const credsEntries = pairOf(auditFile, creds.body.request_id);
  for (const e of [credsEntries.request, credsEntries.response]) {
    assert.equal(e.request.path, 'database/creds/reader');
    assert.equal(e.request.operation, 'read');
    assert.equal(e.request.mount_type, 'database');
    assert.equal(e.request.client_token, tokenHash);
    assert.equal(e.auth.client_token, tokenHash);
    assert.equal(e.auth.display_name, 'token-app');
    assert.deepEqual(e.auth.policies, ['creds-only', 'default']);
    assert.match(e.auth.accessor, /^hmac-sha256:/);
    assert.match(e.auth.metadata.team, /^hmac-sha256:/);
    assert.equal(e.request.remote_address, '127.0.0.1');
  }
  assert.ok(Date.parse(credsEntries.request.time) <= Date.parse(credsEntries.response.time));
  assert.equal(credsEntries.response.response.data.username, usernameHash);
  assert.equal(credsEntries.response.response.data.password, passwordHash);
  assert.equal(credsEntries.response.response.secret.lease_id, creds.leaseId);
  assert.equal(credsEntries.response.error, undefined);

  const all = entries(auditFile);
  const deniedEntries = all.filter((e) => e.request.path === 'sys/audit' && e.auth.client_token === tokenHash);
  assert.deepEqual(deniedEntries.map((e) => e.type).sort(), ['request', 'response']);
  for (const e of deniedEntries) assert.equal(e.error, 'permission denied');
  // The token's hashes are memoized per device after its first use (issue 11):
  // every later request's entries still carry exactly what audit-hash gives.
  const accessorHash = await auditHash('file', created.body.auth.accessor as string);
  const again = await pb.broker.api('GET', 'auth/token/lookup-self', { token: appToken });
  assert.equal(again.status, 200, again.text);
  const againEntries = pairOf(auditFile, again.body.request_id);
  for (const e of [credsEntries.request, credsEntries.response, ...deniedEntries, againEntries.request, againEntries.response]) {
    assert.equal(e.auth.client_token, tokenHash);
    assert.equal(e.request.client_token, tokenHash);
    assert.equal(e.auth.accessor, accessorHash);
    assert.equal(e.request.client_token_accessor, accessorHash);
  }

  const lookupEntries = pairOf(auditFile, lookup.body.request_id);
  assert.equal(lookupEntries.request.request.data.token, tokenHash);
  assert.equal(lookupEntries.response.response.data.id, tokenHash);

  const unsealEntry = all.find((e) => e.request.path === 'sys/unseal' && e.type === 'request');
  assert.ok(unsealEntry, 'sys/unseal is audited once unsealed');
  assert.match(unsealEntry.request.data.key, /^hmac-sha256:/);

  assertNoSecrets(auditFile);
  assert.equal(pb.broker.logs.includes(appToken), false, 'the created token is not in the broker log');
});

test('a stdout device writes to the process output, hashed', async () => {
  assert.equal((await pb.api('PUT', 'sys/audit/out', { type: 'file', options: { file_path: 'stdout' } })).status, 204);
  const r = await pb.api('GET', 'sys/key-status');
  assert.equal(r.status, 200, r.text);
  const rootHash = await auditHash('out', pb.root);
  // The test reads the broker's stdout through a pipe, so the line may arrive a moment after the reply.
  await eventually(async () => pb.broker.logs.includes(`"id":"${r.body.request_id}"`), 10_000, 'the stdout audit entry');
  assert.ok(pb.broker.logs.includes(`"client_token":"${rootHash}"`), 'the stdout entry carries the hashed root token');
  assert.equal(pb.broker.logs.includes(pb.root), false);
  assert.equal((await pb.api('DELETE', 'sys/audit/out')).status, 204);
});

test('a disabled device is no longer written; devices survive a restart with their keys', async () => {
  const second = join(dir, 'second.log');
  assert.equal((await pb.api('PUT', 'sys/audit/second', { type: 'file', options: { file_path: second, mode: '0640' } })).status, 204);
  assert.equal(statSync(second).mode & 0o777, 0o640);
  const first = await pb.api('GET', 'sys/key-status');
  pairOf(second, first.body.request_id);
  pairOf(auditFile, first.body.request_id);
  assert.equal((await pb.api('DELETE', 'sys/audit/second')).status, 204);
  const sizeAfterDisable = statSync(second).size;
  const later = await pb.api('GET', 'sys/key-status');
  assert.equal(later.status, 200);
  assert.equal(statSync(second).size, sizeAfterDisable, 'nothing written after disable');
  pairOf(auditFile, later.body.request_id);
  assert.equal((await pb.api('DELETE', 'sys/audit/second')).status, 204, 'disabling twice is a no-op');
  assert.equal((await pb.api('PUT', 'sys/audit-hash/second', { input: 'x' })).status, 400);

  const hashBefore = await auditHash('file', pb.root);
  await pb.restart();
  const list = await pb.api('GET', 'sys/audit');
  assert.deepEqual(Object.keys(list.body.data), ['file/']);
  assert.equal(await auditHash('file', pb.root), hashBefore, 'the HMAC key survives a restart');
  pairOf(auditFile, list.body.request_id);
  assertNoSecrets(auditFile);
  assert.equal(readFileSync(pb.broker.storagePath).indexOf(Buffer.from(auditFile)), -1, 'the device config is stored sealed');
});

test('a log rotated away (renamed, as logrotate does) is created again at the next entry', async () => {
  const rotated = `${auditFile}.1`;
  renameSync(auditFile, rotated);
  const r = await pb.api('GET', 'sys/key-status');
  assert.equal(r.status, 200, r.text);
  pairOf(auditFile, r.body.request_id);
  assert.equal(entries(rotated).some((e) => e.request.id === r.body.request_id), false, 'nothing more goes to the rotated file');
  assertNoSecrets(rotated);
});

test('fail closed: with no device able to write, requests get a 500 until it is fixed', async () => {
  const fragileDir = join(dir, 'fragile');
  mkdirSync(fragileDir);
  const fragile = join(fragileDir, 'audit.log');
  assert.equal((await pb.api('PUT', 'sys/audit/fragile', { type: 'file', options: { file_path: fragile } })).status, 204);
  assert.equal((await pb.api('DELETE', 'sys/audit/file')).status, 204);

  // Root may write anywhere, so break the path itself: the directory becomes a regular file.
  rmSync(fragileDir, { recursive: true });
  writeFileSync(fragileDir, 'in the way');
  const broken = await pb.api('GET', 'sys/mounts');
  assert.equal(broken.status, 500, broken.text);
  assert.match(broken.body.errors[0], /audit device/);
  const creds = await pb.broker.api('GET', 'database/creds/reader', { token: pb.root });
  assert.equal(creds.status, 500, 'no credential is handed out unaudited');
  assert.match(pb.broker.logs, /audit device failed to write an entry/);
  assert.equal(pb.broker.logs.includes(pb.root), false);

  rmSync(fragileDir);
  mkdirSync(fragileDir);
  const fixed = await pb.api('GET', 'sys/key-status');
  assert.equal(fixed.status, 200, fixed.text);
  pairOf(fragile, fixed.body.request_id);
  assert.equal((await pb.api('DELETE', 'sys/audit/fragile')).status, 204);
  const quiet = await pb.api('GET', 'sys/key-status');
  assert.equal(quiet.status, 200);
  assert.equal(entries(fragile).some((e) => e.request.id === quiet.body.request_id), false);
  assertNoSecrets(fragile);
});
