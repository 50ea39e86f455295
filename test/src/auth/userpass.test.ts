// userpass over real HTTP against a real broker: users with scrypt-hashed
// passwords, login/:name with Vault's auth block, password change, policies,
// token_bound_cidrs from 127.0.0.2 vs 127.0.0.1, end to end to
// database/creds, and no password at rest or in logs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiFrom, assertCredsByPolicy, setupDatabase } from '../../support/auth.ts';
import { dropRolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

let pb: PgBroker;
let server: TestPostgres;
const prefix = `up${tag()}`;
const password = `pw-${tag()}-correct-horse`;
const newPassword = `pw-${tag()}-battery-staple`;
const auditFile = join(mkdtempSync(join(tmpdir(), 'dbroker-userpass-audit-')), 'audit.log');

before(async () => {
  server = await trustPostgres();
  pb = await startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } });
  await setupDatabase(pb, server, prefix);
  assert.equal((await pb.api('PUT', 'sys/auth/userpass', { type: 'userpass' })).status, 204);
  assert.equal((await pb.api('PUT', 'sys/audit/file', { type: 'file', options: { file_path: auditFile } })).status, 204);
});

after(async () => {
  await pb?.close();
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
});

const login = (user: string, pw: string) => pb.broker.api('PUT', `auth/userpass/login/${user}`, { body: { password: pw } });

test('users: create, read (no password), list; login with Vault\'s auth block; creds by policy', async () => {
  const w = await pb.api('PUT', 'auth/userpass/users/Alice', { password, token_policies: 'dbuser', token_ttl: '30m' });
  assert.equal(w.status, 204, w.text);
  const r = await pb.api('GET', 'auth/userpass/users/alice');
  assert.equal(r.status, 200, 'usernames are case-insensitive (lowercased, as in Vault)');
  assert.deepEqual(r.body.data.token_policies, ['dbuser']);
  assert.equal(r.body.data.token_ttl, 1800);
  assert.equal(r.body.data.password, undefined);
  assert.ok(!r.text.includes(password));
  assert.deepEqual((await pb.list('auth/userpass/users')).body.data.keys, ['alice']);

  const ok = await login('alice', password);
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.body.auth.policies, ['dbuser', 'default']);
  assert.deepEqual(ok.body.auth.metadata, { username: 'alice' });
  assert.equal(ok.body.auth.lease_duration, 1800);
  assert.equal(ok.body.auth.renewable, true);
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: ok.body.auth.client_token });
  assert.equal(self.body.data.display_name, 'userpass-alice');
  assert.equal(self.body.data.path, 'auth/userpass/login/alice');
  await assertCredsByPolicy(pb, server, ok.body.auth.client_token, prefix, 'userpass-alice');
});

test('wrong password and unknown user are the same 400; password change; policies; delete', async () => {
  const wrong = await login('alice', 'nope');
  assert.equal(wrong.status, 400);
  assert.equal(wrong.body.auth, undefined);
  assert.match(wrong.body.errors[0], /invalid username or password/);
  const unknown = await login('mallory', password);
  assert.equal(unknown.status, 400);
  assert.deepEqual(unknown.body.errors, wrong.body.errors, 'no hint which usernames exist');
  assert.ok(pb.broker.logs.includes('unknown user \\"mallory\\"') || pb.broker.logs.includes('unknown user "mallory"'), 'the reason is logged');

  assert.equal((await pb.api('PUT', 'auth/userpass/users/alice/password', { password: newPassword })).status, 204);
  assert.equal((await login('alice', password)).status, 400, 'the old password stops working');
  assert.equal((await login('alice', newPassword)).status, 200);
  const r = await pb.api('GET', 'auth/userpass/users/alice');
  assert.equal(r.body.data.token_ttl, 1800, 'a password change keeps the token settings');

  assert.equal((await pb.api('PUT', 'auth/userpass/users/alice/policies', { token_policies: ['dbuser', 'ops'] })).status, 204);
  const again = await login('alice', newPassword);
  assert.deepEqual(again.body.auth.policies, ['dbuser', 'default', 'ops']);

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['users/bob', { token_policies: 'x' }, /password/],
    ['users/bob', { password: '' }, /password/],
    ['users/bob', { password: 'x', bound_cidrs: ['10.0.0.0/8'] }, /field "bound_cidrs" is not supported/],
    ['users/bob', { password: 'x', token_type: 'batch' }, /token_type/],
    ['users/bad name', { password: 'x' }, /username/],
    ['users/nobody/password', { password: 'x' }, /does not exist/],
  ];
  for (const [path, body, message] of bad) {
    const w = await pb.api('PUT', `auth/userpass/${path}`, body);
    assert.equal(w.status, 400, `${path}: ${w.text}`);
    assert.match(w.body.errors[0], message);
  }
  assert.equal((await pb.api('GET', 'auth/userpass/users/bob')).status, 404);
  assert.equal((await pb.broker.api('PUT', 'auth/userpass/login/alice', { body: {} })).status, 400);

  assert.equal((await pb.api('PUT', 'auth/userpass/users/carol', { password })).status, 204);
  assert.equal((await pb.api('DELETE', 'auth/userpass/users/carol')).status, 204);
  assert.equal((await login('carol', password)).status, 400);
});

test('token_bound_cidrs: login and every use only from 127.0.0.1', async () => {
  assert.equal((await pb.api('PUT', 'auth/userpass/users/dba', { password, token_policies: 'dbuser', token_bound_cidrs: '127.0.0.1/32' })).status, 204);
  const from2 = await apiFrom(pb.broker, '127.0.0.2', 'PUT', 'auth/userpass/login/dba', { body: { password } });
  assert.equal(from2.status, 403);
  const from1 = await apiFrom(pb.broker, '127.0.0.1', 'PUT', 'auth/userpass/login/dba', { body: { password } });
  assert.equal(from1.status, 200);
  const token = from1.body.auth.client_token;
  assert.equal((await apiFrom(pb.broker, '127.0.0.2', 'GET', 'database/creds/allowed', { token })).status, 403);
  assert.equal((await apiFrom(pb.broker, '127.0.0.1', 'GET', 'auth/token/lookup-self', { token })).status, 200);
});

test('renewal asks the method, as Vault does: refused once the user\'s policies changed or the user is gone', async () => {
  assert.equal((await pb.api('PUT', 'auth/userpass/users/erin', { password, token_policies: 'dbuser', token_ttl: '10m', token_max_ttl: '30m' })).status, 204);
  const token = (await login('erin', password)).body.auth.client_token;
  const renewed = await pb.broker.api('PUT', 'auth/token/renew-self', { token, body: { increment: '20m' } });
  assert.equal(renewed.status, 200, renewed.text);
  assert.equal(renewed.body.auth.lease_duration, 1200);
  const capped = await pb.broker.api('PUT', 'auth/token/renew-self', { token, body: { increment: '2h' } });
  assert.ok(capped.body.auth.lease_duration <= 1800 && capped.body.auth.lease_duration > 1790, 'capped at token_max_ttl');
  assert.equal((await pb.api('PUT', 'auth/userpass/users/erin/policies', { token_policies: 'other' })).status, 204);
  const changed = await pb.broker.api('PUT', 'auth/token/renew-self', { token, body: {} });
  assert.equal(changed.status, 400);
  assert.match(changed.body.errors[0], /policies have changed/);
  assert.equal((await pb.api('DELETE', 'auth/userpass/users/erin')).status, 204);
  const gone = await pb.api('PUT', 'auth/token/renew', { token });
  assert.equal(gone.status, 400);
  assert.match(gone.body.errors[0], /does not exist/);
});

test('the audit log has logins with the password HMAC-hashed, failed ones with the error', async () => {
  const audit = readFileSync(auditFile, 'utf8');
  assert.ok(!audit.includes(password) && !audit.includes(newPassword), 'no plaintext password in the audit log');
  const hashed = (await pb.api('PUT', 'sys/audit-hash/file', { input: password })).body.data.hash as string;
  const lines = audit.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const logins = lines.filter((l) => l.request.path === 'auth/userpass/login/alice' && l.type === 'response');
  assert.ok(logins.some((l) => l.request.data.password === hashed), 'the password is there as its HMAC');
  assert.ok(logins.some((l) => l.error === 'invalid username or password'), 'a failed login is audited with its error');
  assert.ok(logins.every((l) => l.request.mount_type === 'userpass'));
  const ok = logins.find((l) => l.response?.auth);
  assert.ok(ok, 'a successful login is audited with its auth block');
  assert.match(ok.response.auth.client_token, /^hmac-sha256:/);
  assert.equal(ok.auth.display_name, 'userpass-alice', 'the entry names who logged in');
  assert.deepEqual(ok.auth.policies, ['dbuser', 'default']);
});

test('no password at rest or in the logs', async () => {
  const store = readFileSync(pb.broker.storagePath);
  let wal = Buffer.alloc(0);
  try {
    wal = readFileSync(pb.broker.storagePath + '-wal');
  } catch {
    // no WAL right now
  }
  for (const secret of [password, newPassword]) {
    for (const blob of [store, wal, Buffer.from(pb.broker.logs)]) assert.equal(blob.indexOf(Buffer.from(secret)), -1);
  }
});
