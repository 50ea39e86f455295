// The dbroker CLI against a real spawned broker and the real PostgreSQL:
// every client command, its table output, -format=json (the API's JSON),
// -field (one raw value), @file and standard input, the exit codes (0, 1 for
// usage, 2 for API errors), the token helper file, the environment
// variables, and bash completion. Operator commands on a fresh broker and
// TLS are in cli-operator.test.ts.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { eventually } from '../../support/broker.ts';
import { runCli, type CliOptions } from '../../support/cli.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { configureConnection, dropRolesWithPrefix, LOGIN_ROLE, prefixTemplate, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';

const run = tag();
const userPrefix = `tc${run}`;
const admin = `tcadmin${run}`;
let server: TestPostgres;
let pb: PgBroker;
let home: string;

/** The CLI as root (VAULT_TOKEN), against the test broker (VAULT_ADDR). */
const cli = (args: string[], opts: CliOptions = {}) => runCli(args, home, { ...opts, env: { VAULT_ADDR: pb.broker.url, VAULT_TOKEN: pb.root, ...opts.env } });
/** The CLI with no token in the environment: only ~/.vault-token. */
const cliNoEnvToken = (args: string[], opts: CliOptions = {}) => runCli(args, home, { ...opts, env: { VAULT_ADDR: pb.broker.url, ...opts.env } });

before(async () => {
  server = await trustPostgres();
  await adminQuery(server, `CREATE ROLE "${admin}" WITH LOGIN CREATEROLE PASSWORD 'initial-pw-${run}'`);
  pb = await startPgBroker();
  await configureConnection(pb, { ...server, adminUser: admin, adminPassword: `initial-pw-${run}` }, 'main');
  home = mkdtempSync(join(tmpdir(), 'dbroker-cli-home-'));
});

after(async () => {
  await pb?.close();
  if (server) {
    await dropRolesWithPrefix(server, userPrefix);
    await adminQuery(server, `DROP ROLE IF EXISTS "${admin}"`).catch(() => undefined);
    await server.stop();
  }
  if (home) rmSync(home, { recursive: true, force: true });
});

test('status: a table, the API JSON with -format=json, exit 2 when the server cannot be reached', async () => {
  const r = await cli(['status']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^Key\s+Value\n---\s+-----\n/);
  assert.match(r.out, /Sealed\s+false/);
  assert.match(r.out, /Initialized\s+true/);
  const json = await cli(['status', '-format=json']);
  assert.equal(json.code, 0);
  assert.deepEqual(JSON.parse(json.out), (await pb.broker.api('GET', 'sys/seal-status')).body);
  // Two dashes work too.
  assert.deepEqual(JSON.parse((await cli(['status', '--format', 'json'])).out), JSON.parse(json.out));
  const down = await runCli(['status'], home, { env: { VAULT_ADDR: 'http://127.0.0.1:1' } });
  assert.equal(down.code, 2);
  assert.match(down.err, /error contacting http:\/\/127\.0\.0\.1:1/);
  const badFormat = await cli(['status', '-format=yaml']);
  assert.equal(badFormat.code, 1);
  assert.match(badFormat.err, /invalid output format "yaml"/);
});

test('write with @file and stdin, read as table/json/-field, list, delete, and their errors', async () => {
  const sqlFile = join(home, 'create.sql');
  writeFileSync(sqlFile, LOGIN_ROLE + '\n');
  const w = await cli(['write', 'database/roles/r1', 'db_name=main', `creation_statements=@${sqlFile}`, 'default_ttl=1h', `username_template=${prefixTemplate(userPrefix)}`]);
  assert.equal(w.code, 0, w.err);
  assert.equal(w.out, 'Success! Data written to: database/roles/r1\n');
  // The file's text (less its final newline) is the statement.
  assert.deepEqual((await pb.api('GET', 'database/roles/r1')).body.data.creation_statements, [LOGIN_ROLE]);

  // A value from standard input (key=-).
  const viaStdin = await cli(['write', 'database/roles/r2', 'db_name=main', 'creation_statements=-', 'default_ttl=30m', `username_template=${prefixTemplate(userPrefix)}`], { input: LOGIN_ROLE });
  assert.equal(viaStdin.code, 0, viaStdin.err);
  assert.deepEqual((await pb.api('GET', 'database/roles/r2')).body.data.creation_statements, [LOGIN_ROLE]);
  // A whole JSON object from standard input (-), with typed values.
  const viaJson = await cli(['write', 'database/roles/r3', '-'], { input: JSON.stringify({ db_name: 'main', creation_statements: [LOGIN_ROLE], default_ttl: 60, max_ttl: 120 }) });
  assert.equal(viaJson.code, 0, viaJson.err);
  assert.equal((await pb.api('GET', 'database/roles/r3')).body.data.max_ttl, 120);
  // And from @file.json.
  const jsonFile = join(home, 'role.json');
  writeFileSync(jsonFile, JSON.stringify({ db_name: 'main', creation_statements: [LOGIN_ROLE], default_ttl: 90 }));
  assert.equal((await cli(['write', 'database/roles/r4', `@${jsonFile}`])).code, 0);
  assert.equal((await pb.api('GET', 'database/roles/r4')).body.data.default_ttl, 90);

  const table = await cli(['read', 'database/roles/r1']);
  assert.equal(table.code, 0);
  assert.match(table.out, /^Key\s+Value\n/);
  assert.match(table.out, /\ndb_name\s+main\n/);
  assert.match(table.out, /\ndefault_ttl\s+3600\n/);
  assert.equal((await cli(['read', '-field=db_name', 'database/roles/r1'])).out, 'main\n');
  assert.equal((await cli(['read', 'database/roles/r1', '-field=default_ttl'])).out, '3600\n');
  const json = JSON.parse((await cli(['read', '-format=json', 'database/roles/r1'])).out);
  const api = (await pb.api('GET', 'database/roles/r1')).body;
  assert.deepEqual({ ...json, request_id: '' }, { ...api, request_id: '' });
  const missingField = await cli(['read', '-field=nope', 'database/roles/r1']);
  assert.equal(missingField.code, 1);
  assert.match(missingField.err, /Field "nope" not present/);

  const list = await cli(['list', 'database/roles']);
  assert.equal(list.code, 0);
  assert.equal(list.out, 'Keys\n----\nr1\nr2\nr3\nr4\n');
  assert.deepEqual(JSON.parse((await cli(['list', '-format=json', 'database/roles'])).out).data.keys, ['r1', 'r2', 'r3', 'r4']);

  for (const r of ['r3', 'r4']) assert.equal((await cli(['delete', `database/roles/${r}`])).out, `Success! Data deleted (if it existed) at: database/roles/${r}\n`);
  const gone = await cli(['read', 'database/roles/r3']);
  assert.equal(gone.code, 2);
  assert.match(gone.err, /No value found at database\/roles\/r3/);
  const goneList = await cli(['list', 'database/static-roles']);
  assert.equal(goneList.code, 2);

  // The API's 400 message, exit 2.
  const bad = await cli(['write', 'database/roles/bad', 'db_name=nope', 'creation_statements=x']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /Code: 400/);
  assert.match(bad.err, /invalid field "db_name": no connection named "nope" on this mount/);
  assert.match(bad.err, /URL: PUT http:\/\/127\.0\.0\.1:\d+\/v1\/database\/roles\/bad/);
  // Usage errors, exit 1: no "=", an unreadable @file, no data, a missing argument, an unknown flag, stdin twice.
  for (const args of [
    ['write', 'database/roles/x', 'novalue'],
    ['write', 'database/roles/x', 'a=@/nonexistent/file'],
    ['write', 'database/roles/x'],
    ['read'],
    ['read', '-bogus', 'x'],
    ['write', 'database/roles/x', 'a=-', 'b=-'],
    ['nosuchcommand'],
  ]) {
    const r = await cli(args, { input: 'x' });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.code} ${r.err}`);
    assert.ok(r.err.length > 0);
  }
  // -f (-force) writes with no data.
  const forced = await cli(['write', '-f', 'database/reset/main']);
  assert.equal(forced.code, 0, forced.err);
  assert.equal(forced.out, 'Success! Data written to: database/reset/main\n');
  // A permission error from the API: exit 2 with its message.
  const limited = (await pb.api('PUT', 'auth/token/create', { policies: ['default'] })).body.auth.client_token as string;
  const denied = await cli(['read', 'database/roles/r1'], { env: { VAULT_TOKEN: limited } });
  assert.equal(denied.code, 2);
  assert.match(denied.err, /Code: 403/);
  assert.match(denied.err, /permission denied/);
});

test('creds and leases: read creds, lease lookup/renew/revoke, -sync=false, -prefix with progress on a TTY, -force', async () => {
  const creds = JSON.parse((await cli(['read', '-format=json', 'database/creds/r1'])).out);
  assert.ok(creds.lease_id.startsWith('database/creds/r1/'));
  assert.ok(await roleExists(server, creds.data.username));
  const password = await cli(['read', '-field=password', 'database/creds/r2']);
  assert.equal(password.code, 0);
  assert.match(password.out, /^\S{16,}\n$/);
  const table = await cli(['read', 'database/creds/r1']);
  assert.match(table.out, /^Key\s+Value\n---\s+-----\nlease_id\s+database\/creds\/r1\/\S+\nlease_duration\s+1h\nlease_renewable\s+true\npassword\s+\S+\nusername\s+\S+\n$/);

  const lookup = await cli(['lease', 'lookup', creds.lease_id]);
  assert.equal(lookup.code, 0, lookup.err);
  assert.match(lookup.out, new RegExp(`\\nid\\s+${creds.lease_id}\\n`));
  assert.equal(JSON.parse((await cli(['lease', 'lookup', '-format=json', creds.lease_id])).out).data.id, creds.lease_id);
  const renew = await cli(['lease', 'renew', '-increment=30m', creds.lease_id]);
  assert.equal(renew.code, 0, renew.err);
  assert.match(renew.out, /lease_duration\s+30m/);
  assert.equal((await cli(['lease', 'renew', '-increment=10m', '-field=lease_duration', creds.lease_id])).out, '600\n');

  const revoke = await cli(['lease', 'revoke', creds.lease_id]);
  assert.equal(revoke.out, `Success! Revoked lease: ${creds.lease_id}\n`);
  assert.equal(await roleExists(server, creds.data.username), false);
  const missing = await cli(['lease', 'lookup', creds.lease_id]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /Code: 400|Code: 404/);

  const queued = JSON.parse((await cli(['read', '-format=json', 'database/creds/r1'])).out);
  const q = await cli(['lease', 'revoke', '-sync=false', queued.lease_id]);
  assert.equal(q.out, 'All revocation operations queued successfully!\n');
  await eventually(async () => !(await roleExists(server, queued.data.username)), 15_000, 'the queued revocation');

  // -prefix on a terminal: progress over the leases under the prefix.
  const many: string[] = [];
  for (let i = 0; i < 12; i++) many.push((await pb.api('GET', 'database/creds/r2')).body.data.username);
  const tty = await cli(['lease', 'revoke', '-prefix', 'database/creds/r2/'], { tty: true });
  assert.equal(tty.code, 0, tty.out + tty.err);
  assert.match(tty.out, /Revoking database\/creds\/r2\/: \[\.+\] 0\/13/);
  assert.match(tty.out, /\[#+\] 13\/13/);
  assert.match(tty.out, /Success! Revoked any leases with prefix: database\/creds\/r2\//);
  for (const u of many) assert.equal(await roleExists(server, u), false);
  // Not a terminal: no progress line.
  const one = (await pb.api('GET', 'database/creds/r2')).body.data.username as string;
  const plain = await cli(['lease', 'revoke', '-prefix', 'database/creds/r2/']);
  assert.equal(plain.out, 'Success! Revoked any leases with prefix: database/creds/r2/\n');
  assert.equal(plain.err, '');
  assert.equal(await roleExists(server, one), false);

  // -force forgets the leases (the user stays); it needs -prefix.
  const kept = (await pb.api('GET', 'database/creds/r2')).body;
  assert.equal((await cli(['lease', 'revoke', '-force', kept.lease_id])).code, 1);
  const forced = await cli(['lease', 'revoke', '-prefix', '-force', 'database/creds/r2/']);
  assert.equal(forced.code, 0, forced.err);
  assert.match(forced.out, /NOT dropped/);
  assert.equal((await pb.api('PUT', 'sys/leases/lookup', { lease_id: kept.lease_id })).status >= 400, true);
  assert.equal(await roleExists(server, kept.data.username), true);
});

test('token create/lookup/renew/revoke/capabilities with -field and -format=json', async () => {
  assert.equal((await cli(['policy', 'write', 'scraper', '-'], { input: 'path "sys/metrics" { capabilities = ["read"] }\n' })).code, 0);
  const created = JSON.parse((await cli(['token', 'create', '-policy=scraper', '-policy=default', '-ttl=1h', '-display-name=ci', '-metadata=team=dba', '-format=json'])).out);
  const token = created.auth.client_token as string;
  assert.deepEqual([...created.auth.policies].sort(), ['default', 'scraper']);
  const table = await cli(['token', 'create', '-policy=scraper', '-renewable=false', '-ttl=10m']);
  assert.match(table.out, /\ntoken\s+\S+\ntoken_accessor\s+\S+\ntoken_duration\s+10m\ntoken_renewable\s+false\n/);
  const raw = await cli(['token', 'create', '-policy=scraper', '-field=token']);
  assert.match(raw.out, /^\S+\n$/);
  assert.equal((await pb.broker.api('GET', 'auth/token/lookup-self', { token: raw.out.trim() })).status, 200);

  const lookup = await cli(['token', 'lookup', token]);
  assert.equal(lookup.code, 0, lookup.err);
  assert.match(lookup.out, /\ndisplay_name\s+token-ci\n/);
  assert.match(lookup.out, /\nmeta\s+map\[team:dba\]\n/);
  assert.equal((await cli(['token', 'lookup', '-field=display_name'])).out, 'root\n');
  const byAccessor = await cli(['token', 'lookup', '-accessor', '-field=display_name', created.auth.accessor]);
  assert.equal(byAccessor.out, 'token-ci\n', `exit ${byAccessor.code}: ${byAccessor.err}`);
  assert.match((await cli(['token', 'renew', '-increment=2h', token])).out, /token_duration\s+(1h59m5\ds|2h)/);
  assert.equal((await cli(['token', 'capabilities', token, 'sys/metrics'])).out, 'read\n');
  assert.equal((await cli(['token', 'capabilities', token, 'database/creds/r1'])).out, 'deny\n');
  assert.equal((await cli(['token', 'capabilities', 'sys/metrics'])).out, 'root\n');
  assert.equal((await cli(['token', 'capabilities', 'sys/metrics'], { env: { VAULT_TOKEN: token } })).out, 'read\n');
  assert.equal((await cli(['token', 'revoke', token])).out, 'Success! Revoked token (if it existed)\n');
  const gone = await cli(['token', 'lookup', token]);
  assert.equal(gone.code, 2);
  assert.match(gone.err, /bad token/);
  const self = JSON.parse((await cli(['token', 'create', '-format=json'])).out).auth.client_token as string;
  assert.equal((await cli(['token', 'revoke', '-self'], { env: { VAULT_TOKEN: self } })).code, 0);
  assert.equal((await pb.broker.api('GET', 'auth/token/lookup-self', { token: self })).status, 403);
});

test('login writes ~/.vault-token (0600) after checking the token; other methods post to auth/<mount>/login', async () => {
  const helper = join(home, '.vault-token');
  rmSync(helper, { force: true });
  const token = JSON.parse((await cli(['token', 'create', '-display-name=ops', '-format=json'])).out).auth.client_token as string;
  // Without any token, a command is refused by the API.
  assert.equal((await cliNoEnvToken(['token', 'lookup'])).code, 2);
  const login = await cliNoEnvToken(['login', token]);
  assert.equal(login.code, 0, login.err);
  assert.match(login.out, /^Success! You are now authenticated/);
  assert.match(login.out, new RegExp(`\\ntoken\\s+${token.replace(/\./g, '\\.')}\\n`));
  assert.equal(readFileSync(helper, 'utf8'), token);
  assert.equal(statSync(helper).mode & 0o777, 0o600);
  // The helper file is what later commands use.
  assert.equal((await cliNoEnvToken(['token', 'lookup', '-field=display_name'])).out, 'token-ops\n');
  // VAULT_TOKEN wins over the file, DBROKER_TOKEN over VAULT_TOKEN.
  assert.equal((await cliNoEnvToken(['token', 'lookup', '-field=display_name'], { env: { VAULT_TOKEN: pb.root } })).out, 'root\n');
  assert.equal((await cliNoEnvToken(['token', 'lookup', '-field=display_name'], { env: { VAULT_TOKEN: 'bogus', DBROKER_TOKEN: pb.root } })).out, 'root\n');

  // A token that does not work is not stored.
  const bad = await cliNoEnvToken(['login', 'not-a-token']);
  assert.equal(bad.code, 2);
  assert.equal(readFileSync(helper, 'utf8'), token);
  // From standard input, and -no-store.
  const root = await cliNoEnvToken(['login', '-no-store', '-'], { input: pb.root + '\n' });
  assert.equal(root.code, 0, root.err);
  assert.equal(readFileSync(helper, 'utf8'), token);
  assert.equal(JSON.parse((await cliNoEnvToken(['login', '-format=json', pb.root])).out).auth.client_token, pb.root);
  assert.equal(readFileSync(helper, 'utf8'), pb.root);
  // A helper file that existed with a looser mode is tightened.
  writeFileSync(helper, 'x', { mode: 0o644 });
  assert.equal((await cliNoEnvToken(['login', token])).code, 0);
  assert.equal(statSync(helper).mode & 0o777, 0o600);

  // Other methods: the request goes to auth/<path>/login (userpass: .../login/<username>), with no token sent.
  const userpass = await cliNoEnvToken(['login', '-method=userpass', 'username=alice', 'password=pw']);
  assert.equal(userpass.code, 2);
  assert.match(userpass.err, /URL: PUT http:\/\/127\.0\.0\.1:\d+\/v1\/auth\/userpass\/login\/alice\n/);
  const approle = await cliNoEnvToken(['login', '-method=approle', '-path=ci-approle', 'role_id=r', 'secret_id=s']);
  assert.equal(approle.code, 2);
  assert.match(approle.err, /\/v1\/auth\/ci-approle\/login\n/);
  for (const method of ['jwt', 'kubernetes']) {
    const r = await cliNoEnvToken(['login', `-method=${method}`, 'role=r', 'jwt=x']);
    assert.equal(r.code, 2);
    assert.match(r.err, new RegExp(`/v1/auth/${method}/login\\n`));
  }
  assert.equal((await cliNoEnvToken(['login', '-method=userpass', 'password=pw'])).code, 1);
  assert.equal(readFileSync(helper, 'utf8'), token);
});

test('policy, secrets, audit and database rotate-root', async () => {
  const file = join(home, 'p.hcl');
  writeFileSync(file, 'path "database/creds/r1" { capabilities = ["read"] }\n');
  assert.equal((await cli(['policy', 'write', 'dev', file])).out, 'Success! Uploaded policy: dev\n');
  assert.match((await cli(['policy', 'list'])).out, /^default\ndev\nroot\nscraper\n$/);
  assert.equal((await cli(['policy', 'read', 'dev'])).out, 'path "database/creds/r1" { capabilities = ["read"] }\n');
  assert.equal(JSON.parse((await cli(['policy', 'read', '-format=json', 'dev'])).out).data.name, 'dev');
  assert.equal((await cli(['policy', 'delete', 'dev'])).out, 'Success! Deleted policy: dev\n');
  const badPolicy = await cli(['policy', 'write', 'broken', '-'], { input: 'path "x" { capabilities = ["fly"] }' });
  assert.equal(badPolicy.code, 2);
  assert.match(badPolicy.err, /fly/);

  assert.equal((await cli(['secrets', 'enable', '-path=db2', '-description=second', 'database'])).out, 'Success! Enabled the database secrets engine at: db2/\n');
  const mounts = await cli(['secrets', 'list']);
  assert.match(mounts.out, /^Path\s+Type\s+Accessor\s+Description\n----\s+----\s+--------\s+-----------\ndatabase\/\s+database\s+\S+\s+database secrets engine\ndb2\/\s+database\s+\S+\s+second\n$/);
  assert.ok(JSON.parse((await cli(['secrets', 'list', '-format=json'])).out).data['db2/']);
  assert.equal((await cli(['secrets', 'enable', 'kv'])).code, 2);
  assert.equal((await cli(['secrets', 'disable', 'db2'])).out, 'Success! Disabled the secrets engine (if it existed) at: db2/\n');

  const log = join(home, 'audit.log');
  assert.equal((await cli(['audit', 'enable', 'file', `file_path=${log}`])).out, 'Success! Enabled the file audit device at: file/\n');
  assert.match((await cli(['audit', 'list'])).out, /^Path\s+Type\s+Description\n-+\s+-+\s+-+\nfile\/\s+file\s+n\/a\n$/);
  assert.match((await cli(['audit', 'list', '-detailed'])).out, new RegExp(`file_path":"${log.replace(/\//g, '\\/')}`));
  assert.ok(readFileSync(log, 'utf8').includes('sys/audit'));
  assert.equal((await cli(['audit', 'disable', 'file'])).out, 'Success! Disabled audit device (if it was enabled) at: file/\n');
  assert.equal((await cli(['audit', 'list'])).out, 'No audit devices are enabled.\n');

  const rotated = await cli(['database', 'rotate-root', 'main']);
  assert.equal(rotated.code, 0, rotated.err);
  assert.equal(rotated.out, 'Success! Rotated the root credential of connection "main" (database/)\n');
  const last = (await cli(['read', '-field=last_root_rotation', 'database/config/main'])).out.trim();
  assert.ok(Math.abs(Date.parse(last) - Date.now()) < 60_000, last);
  const missing = await cli(['database', 'rotate-root', 'nope']);
  assert.equal(missing.code, 2);
});

test('DBROKER_ADDR wins over VAULT_ADDR, -address over both; bash completion lists commands and flags', async () => {
  const viaEnv = await runCli(['status', '-field=sealed'], home, { env: { VAULT_ADDR: 'http://127.0.0.1:1', DBROKER_ADDR: pb.broker.url } });
  assert.equal(viaEnv.code, 1); // status has no -field: a usage error before any request
  const ok = await runCli(['status', '-format=json'], home, { env: { VAULT_ADDR: 'http://127.0.0.1:1', DBROKER_ADDR: pb.broker.url } });
  assert.equal(ok.code, 0, ok.err);
  const flag = await runCli(['status', `-address=${pb.broker.url}`], home, { env: { DBROKER_ADDR: 'http://127.0.0.1:1' } });
  assert.equal(flag.code, 0, flag.err);

  const script = (await cli(['completion', 'bash'])).out;
  assert.match(script, /complete -o default -F _dbroker dbroker/);
  const file = join(home, 'completion.sh');
  writeFileSync(file, script);
  const complete = (words: string[]) =>
    execFileSync('bash', ['-c', `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _dbroker; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' }).trim();
  assert.equal(complete(['dbroker', 'lea']), 'lease');
  assert.equal(complete(['dbroker', 'lease', 're']), 'renew revoke');
  assert.equal(complete(['dbroker', 'operator', '']), 'init unseal seal rotate key-status step-down migrate');
  assert.deepEqual(complete(['dbroker', 'lease', 'revoke', '-']).split(' ').sort(), ['-address', '-ca-cert', '-force', '-format', '-prefix', '-sync', '-tls-skip-verify']);
  assert.equal((await cli(['completion', 'fish'])).code, 1);
});
