// The server process: graceful shutdown on SIGTERM/SIGINT, HTTPS with a
// self-signed certificate, sys/health in each state, auto-unseal from a 0600
// key file or DBROKER_UNSEAL_KEYS, and `npm run dbroker -- server --dev`.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { eventually, freePort, initAndUnseal, startBroker, unseal, type BrokerProcess } from '../support/broker.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/dbroker.mjs');
const cleanups: Array<() => Promise<void> | void> = [];

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function broker(opts: Parameters<typeof startBroker>[0] = {}): Promise<BrokerProcess> {
  const b = await startBroker(opts);
  cleanups.push(async () => {
    await b.stop();
    if (!opts.dir) b.remove();
  });
  return b;
}

interface Spawned {
  child: ChildProcess;
  readonly output: string;
  exited: Promise<number | null>;
}

/** `group`: the child leads a process group of its own, so a test can signal the group as a terminal's Ctrl-C does. */
function spawnProcess(command: string, args: string[], env: Record<string, string> = {}, cwd = ROOT, group = false): Spawned {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: group });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    child,
    get output() {
      return output;
    },
    exited,
  };
}

test('SIGTERM: exits 0 promptly with an idle keep-alive client, closes the store, and a new process reopens it', async () => {
  const b = await broker();
  const { rootToken, keys } = await initAndUnseal(b);
  const child = await b.api('PUT', 'auth/token/create', { token: rootToken, body: { policies: ['default'], ttl: '1h' } });
  // fetch keeps its connection open: shutdown must not wait for it.
  assert.equal((await b.api('GET', 'sys/health')).status, 200);
  assert.ok(existsSync(`${b.storagePath}-wal`), 'WAL in use while running');
  const started = Date.now();
  const code = await b.stop();
  const took = Date.now() - started;
  assert.equal(code, 0, b.logs);
  assert.ok(took < 10_000, `shutdown took ${took} ms`);
  assert.match(b.logs, /"msg":"shutting down"/);
  assert.match(b.logs, /"msg":"dbroker stopped"/);
  assert.ok(!existsSync(`${b.storagePath}-wal`), 'a cleanly closed SQLite store leaves no WAL behind');

  await b.start();
  await unseal(b, keys);
  const lookup = await b.api('GET', 'auth/token/lookup-self', { token: child.body.auth.client_token });
  assert.equal(lookup.status, 200);
});

test('SIGINT and a SIGTERM while sealed also exit 0', async () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'dbroker-signal-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ listen: `127.0.0.1:${port}`, storage: { path: join(dir, 'db.sqlite') } }));
    const p = spawnProcess(process.execPath, [BIN, 'server', '--config', join(dir, 'config.json')]);
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/v1/sys/health`).catch(() => undefined))?.status === 501, 30_000, 'the broker to listen');
    p.child.kill(signal);
    assert.equal(await p.exited, 0, `${signal}\n${p.output}`);
  }
});

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { cert, key };
}

function httpsGet(url: string, ca?: Buffer, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = httpsRequest(url, { method, ...(ca ? { ca } : {}), timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', fail);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

test('TLS: a self-signed certificate serves HTTPS (and not plain HTTP)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-tls-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = selfSigned(dir);
  const port = await freePort();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ listen: `127.0.0.1:${port}`, storage: { path: join(dir, 'db.sqlite') }, tls: { cert_file: cert, key_file: key } }));
  const p = spawnProcess(process.execPath, [BIN, 'server', '--config', join(dir, 'config.json')]);
  const ca = readFileSync(cert);
  let health = { status: 0, body: '' };
  await eventually(
    async () => {
      health = await httpsGet(`https://127.0.0.1:${port}/v1/sys/health`, ca).catch(() => ({ status: 0, body: '' }));
      return health.status !== 0 || p.child.exitCode !== null;
    },
    30_000,
    'the HTTPS listener',
  );
  assert.equal(health.status, 501, p.output);
  assert.equal(JSON.parse(health.body).initialized, false);
  assert.match(p.output, /"address":"https:\/\/127\.0\.0\.1:/);
  // Without trusting the certificate the client refuses; plain HTTP gets no answer.
  await assert.rejects(httpsGet(`https://127.0.0.1:${port}/v1/sys/health`), /self-signed|self signed/);
  await assert.rejects(fetch(`http://127.0.0.1:${port}/v1/sys/health`, { signal: AbortSignal.timeout(5000) }));
  // A raw LIST (answered outside Node's parser) works over TLS too.
  const list = await httpsGet(`https://127.0.0.1:${port}/v1/sys/policies/acl`, ca, 'LIST');
  assert.equal(list.status, 503, list.body);
  assert.deepEqual(JSON.parse(list.body), { errors: ['dbroker is sealed'] });
  p.child.kill('SIGTERM');
  assert.equal(await p.exited, 0);

  // A file that is not a certificate: refused at start, naming the field.
  writeFileSync(join(dir, 'bad.pem'), 'not a certificate');
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ listen: `127.0.0.1:${port}`, storage: { path: join(dir, 'db2.sqlite') }, tls: { cert_file: join(dir, 'bad.pem'), key_file: key } }));
  const bad = spawnProcess(process.execPath, [BIN, 'server', '--config', join(dir, 'bad.json')]);
  assert.equal(await bad.exited, 2, bad.output);
  assert.match(bad.output, /invalid configuration field "tls": cannot use the certificate and key/);
});

test('sys/health: 501 uninitialised, 503 sealed, 200 active, and the code parameters', async () => {
  const b = await broker();
  const get = async (query = '') => b.api('GET', `sys/health${query}`);
  assert.equal((await get()).status, 501);
  assert.equal((await get('?uninitcode=200')).status, 200);
  const init = await b.api('PUT', 'sys/init', { body: { secret_shares: 1, secret_threshold: 1 } });
  const sealed = await get();
  assert.equal(sealed.status, 503);
  assert.deepEqual({ initialized: sealed.body.initialized, sealed: sealed.body.sealed }, { initialized: true, sealed: true });
  assert.equal((await get('?sealedcode=200')).status, 200);
  const head = await fetch(`${b.url}/v1/sys/health`, { method: 'HEAD' });
  assert.equal(head.status, 503);
  assert.equal(await head.text(), '');
  await unseal(b, init.body.keys);
  assert.equal((await get()).status, 200);
  assert.equal((await get('?activecode=204')).status, 204);
  assert.equal((await get('?uninitcode=abc')).status, 400);
});

test('auto-unseal from a 0600 key file; refused when group/others can read it, or when shares are missing or wrong', async () => {
  const first = await broker();
  const init = await first.api('PUT', 'sys/init', { body: { secret_shares: 5, secret_threshold: 3 } });
  const keys = init.body.keys as string[];
  const rootToken = init.body.root_token as string;
  await first.stop();
  const keysFile = join(first.dir, 'unseal-keys');
  const write = (lines: string[], mode: number): void => {
    writeFileSync(keysFile, lines.join('\n') + '\n');
    chmodSync(keysFile, mode);
  };

  write([keys[4]!, keys[0]!, keys[2]!], 0o600);
  const auto = await broker({ dir: first.dir, config: { unseal_keys_file: keysFile } });
  const health = await auto.api('GET', 'sys/health');
  assert.equal(health.status, 200, 'unsealed at start, with no sys/unseal call');
  assert.equal((await auto.api('GET', 'auth/token/lookup-self', { token: rootToken })).status, 200);
  assert.match(auto.logs, /dbroker auto-unsealed/);
  for (const k of keys) assert.ok(!auto.logs.includes(k), 'no share in the logs');
  await auto.stop();

  const refused = async (config: Record<string, unknown>, message: RegExp, env: Record<string, string> = {}): Promise<void> => {
    const err = await startBroker({ dir: first.dir, config, env }).then(
      async (b) => {
        await b.stop();
        return new Error('the broker started');
      },
      (e: Error) => e,
    );
    assert.match(err.message, /broker exited with 2/);
    assert.match(err.message, message);
    for (const k of keys) assert.ok(!err.message.includes(k.slice(0, 20)), 'no share in the error output');
  };
  write([keys[4]!, keys[0]!, keys[2]!], 0o640);
  await refused({ unseal_keys_file: keysFile }, /"unseal_keys_file".*must not be readable by group or others \(mode 640, want 600\)/);
  write([keys[4]!, keys[0]!], 0o600);
  await refused({ unseal_keys_file: keysFile }, /"unseal_keys_file": holds 2 key share\(s\); 3 are needed/);
  const corrupted = keys[1]!.slice(0, 20) + (keys[1]![20] === 'a' ? 'b' : 'a') + keys[1]!.slice(21);
  write([keys[4]!, corrupted, keys[2]!], 0o600);
  await refused({ unseal_keys_file: keysFile }, /"unseal_keys_file": key share 2: "key" is not one of this dbroker's key shares/);
  await refused({ unseal_keys_file: join(first.dir, 'missing') }, /"unseal_keys_file": cannot read/);

  // DBROKER_UNSEAL_KEYS (weaker still: the environment) works the same way.
  const fromEnv = await broker({ dir: first.dir, env: { DBROKER_UNSEAL_KEYS: `${keys[1]},${keysBase64(keys[3]!)} ${keys[0]}` } });
  assert.equal((await fromEnv.api('GET', 'sys/health')).status, 200);
  for (const k of keys) assert.ok(!fromEnv.logs.includes(k));
  await fromEnv.stop();
  await refused({}, /"DBROKER_UNSEAL_KEYS": key share 1: "key" must be hex or base64/, { DBROKER_UNSEAL_KEYS: 'not-a-key!' });
});

function keysBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/** The role the README quickstart writes on the dev `demo` connection: its name and the JSON body of its curl -d '…'. */
function readmeDevRole(): { name: string; body: Record<string, unknown> } {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = /127\.0\.0\.1:8200\/v1\/database\/roles\/(\w+) \\\n\s*-d '((?:[^']|'\\'')*)'/.exec(readme);
  assert.ok(m, 'the README quickstart writes a role on the demo connection');
  // Shell single quotes: '\'' is a literal quote.
  return { name: m[1]!, body: JSON.parse(m[2]!.replace(/'\\''/g, "'")) as Record<string, unknown> };
}

test('npm run dbroker -- server --dev: ready with the chosen root token, creds work, SIGTERM stops it', async () => {
  const pgUrl = process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
  } catch (err) {
    if (process.env.DBROKER_TEST_REQUIRE_ALL === '1') throw err;
    // Without the shared PostgreSQL the dev mode would start an embedded one: too slow for this file.
    return;
  }
  const database = `dbroker_devtest_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${database}`);
  let username = '';
  cleanups.push(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    if (username) await admin.query(`DROP ROLE IF EXISTS "${username}"`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  });
  const devUrl = new URL(pgUrl);
  devUrl.pathname = `/${database}`;
  const port = await freePort();
  const rootToken = `dev-${randomBytes(6).toString('hex')}`;
  const npm = spawnProcess('npm', ['run', '--silent', 'dbroker', '--', 'server', '--dev', '--listen', `127.0.0.1:${port}`, '--dev-root-token', rootToken, '--dev-pg-url', devUrl.toString()]);
  const base = `http://127.0.0.1:${port}/v1`;
  await eventually(async () => npm.output.includes('Press Ctrl-C to stop') || npm.child.exitCode !== null, 60_000, 'dev mode to be ready');
  assert.equal(npm.child.exitCode, null, npm.output);
  assert.match(npm.output, new RegExp(`Root token:\\s+${rootToken}`));

  const headers = { 'x-vault-token': rootToken };
  const creds = await fetch(`${base}/database/creds/readonly`, { headers });
  const body = (await creds.json()) as { lease_id: string; data: { username: string; password: string } };
  assert.equal(creds.status, 200, JSON.stringify(body));
  username = body.data.username;
  const login = new pg.Client({ connectionString: `postgres://${encodeURIComponent(username)}:${encodeURIComponent(body.data.password)}@${devUrl.host}/${database}` });
  await login.connect();
  try {
    assert.equal((await login.query('SELECT count(*)::int AS n FROM demo_items')).rows[0].n, 3);
    // The group-role pattern: the user reads through its membership, the table's ACL has no entry for it.
    assert.deepEqual((await login.query("SELECT pg_has_role(CURRENT_USER, 'dbroker_demo_read', 'MEMBER') AS member")).rows, [{ member: true }]);
    const acl = await login.query("SELECT coalesce(relacl::text, '') AS acl FROM pg_class WHERE relname = 'demo_items'");
    assert.ok(!String(acl.rows[0].acl).includes(username), acl.rows[0].acl);
  } finally {
    await login.end();
  }
  const role = await fetch(`${base}/database/roles/readonly`, { headers });
  const roleBody = (await role.json()) as { data: { creation_statements: string[] } };
  assert.match(roleBody.data.creation_statements.join(';'), /GRANT dbroker_demo_read TO "\{\{name\}\}"/);
  const revoke = await fetch(`${base}/sys/leases/revoke`, { method: 'PUT', headers, body: JSON.stringify({ lease_id: body.lease_id }) });
  assert.equal(revoke.status, 204);
  assert.equal((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [username])).rowCount, 0, 'the revoked user is gone');
  username = '';

  // A role of the user's own on the demo connection works at once (allowed_roles "*"; a
  // new-user trial got a 400): the README quickstart's example role, body as shown there.
  assert.match(npm.output, /accepts any role name/);
  const brief = readmeDevRole();
  const written = await fetch(`${base}/database/roles/${brief.name}`, { method: 'PUT', headers, body: JSON.stringify(brief.body) });
  assert.equal(written.status, 204, await written.text());
  const second = await fetch(`${base}/database/creds/${brief.name}`, { headers });
  const secondBody = (await second.json()) as { lease_id: string; lease_duration: number; data: { username: string; password: string } };
  assert.equal(second.status, 200, JSON.stringify(secondBody));
  username = secondBody.data.username;
  assert.equal(secondBody.lease_duration, 300);
  const login2 = new pg.Client({ connectionString: `postgres://${encodeURIComponent(username)}:${encodeURIComponent(secondBody.data.password)}@${devUrl.host}/${database}` });
  await login2.connect();
  try {
    assert.equal((await login2.query('SELECT count(*)::int AS n FROM demo_items')).rows[0].n, 3);
  } finally {
    await login2.end();
  }
  const revoke2 = await fetch(`${base}/sys/leases/revoke`, { method: 'PUT', headers, body: JSON.stringify({ lease_id: secondBody.lease_id }) });
  assert.equal(revoke2.status, 204);
  username = '';

  // SIGTERM to npm reaches the broker (the script execs node), which stops and frees the port.
  npm.child.kill('SIGTERM');
  await npm.exited;
  await eventually(async () => (await fetch(`${base}/sys/health`).catch(() => undefined)) === undefined, 15_000, 'the dev broker to stop');
});

test('npm start: once sys/health answers 200, the dev root token, connection and role work at once (no setup after readiness)', async () => {
  const pgUrl = process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
  } catch (err) {
    if (process.env.DBROKER_TEST_REQUIRE_ALL === '1') throw err;
    return;
  }
  const database = `dbroker_devready_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${database}`);
  const users: string[] = [];
  cleanups.push(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    for (const u of users) await admin.query(`DROP ROLE IF EXISTS "${u}"`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  });
  const devUrl = new URL(pgUrl);
  devUrl.pathname = `/${database}`;
  const port = await freePort();
  // Exactly what the README shows (root token "root"), plus the shared PostgreSQL.
  const npm = spawnProcess('npm', ['start', '--silent', '--', '--listen', `127.0.0.1:${port}`, '--dev-pg-url', devUrl.toString()], {}, ROOT, true);
  const base = `http://127.0.0.1:${port}/v1`;

  // A client that waits for health: poll as fast as it can, and every status seen before 200 must be a "not ready" one.
  const seen: number[] = [];
  const deadline = Date.now() + 60_000;
  for (;;) {
    assert.equal(npm.child.exitCode, null, npm.output);
    assert.ok(Date.now() < deadline, `dev mode never became healthy; statuses seen: ${seen.join(',')}\n${npm.output}`);
    const health = await fetch(`${base}/sys/health`).catch(() => undefined);
    if (health) {
      seen.push(health.status);
      await health.arrayBuffer();
      if (health.status === 200) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const creds = await fetch(`${base}/database/creds/readonly`, { headers: { 'x-vault-token': 'root' } });
  const body = (await creds.json()) as { lease_id: string; data: { username: string; password: string } };
  assert.equal(creds.status, 200, JSON.stringify(body));
  users.push(body.data.username);
  // The port opens only when the setup is done: nothing but the final 200 was ever answered.
  assert.deepEqual(seen, [200]);
  const login = new pg.Client({ connectionString: `postgres://${encodeURIComponent(body.data.username)}:${encodeURIComponent(body.data.password)}@${devUrl.host}/${database}` });
  await login.connect();
  try {
    assert.equal((await login.query('SELECT count(*)::int AS n FROM demo_items')).rows[0].n, 3);
  } finally {
    await login.end();
  }

  // Ctrl-C revokes what dev mode issued (its store is deleted on exit). A terminal sends it to the
  // whole process group, and npm forwards it to the broker too: the broker gets it twice.
  process.kill(-npm.child.pid!, 'SIGINT');
  await npm.exited;
  assert.match(npm.output, /another stop signal while shutting down: ignored|dbroker stopped/, npm.output);
  assert.doesNotMatch(npm.output, /revoking leases at exit failed/, npm.output);
  assert.equal((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [body.data.username])).rowCount, 0, 'the dev user is dropped at exit');
  // The demo table this run made in the (fresh) database is dropped too: the database is left as found.
  const inDatabase = new pg.Client({ connectionString: devUrl.toString() });
  await inDatabase.connect();
  try {
    assert.equal((await inDatabase.query("SELECT to_regclass('demo_items') AS t")).rows[0].t, null, 'demo_items dropped at exit');
  } finally {
    await inDatabase.end();
  }
});

// New-user trials: Ctrl-C on `npm start` (embedded PostgreSQL) logged "lease
// revocation failed … the database system is shutting down" and "revoking
// leases at exit failed": the terminal's SIGINT reaches the embedded server
// too. Its users go with it (the whole server is deleted), so its leases are
// not revoked. But a user who adds a connection to a database of their own
// gets users there that outlive the process: those are revoked at exit (a
// later trial found them left behind, their leases deleted with the store).
test('npm start with the embedded PostgreSQL: Ctrl-C to the process group drops the users issued on the user\'s own database, and stops cleanly with no failure logged', async () => {
  const port = await freePort();
  const npm = spawnProcess('npm', ['start', '--silent', '--', '--listen', `127.0.0.1:${port}`], {}, ROOT, true);
  const base = `http://127.0.0.1:${port}/v1`;
  await eventually(async () => (await fetch(`${base}/sys/health`).catch(() => undefined))?.status === 200, 90_000, `dev mode to be ready\n${npm.output}`);
  const call = async (method: string, path: string, payload?: unknown): Promise<{ status: number; body: any }> => { // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON answers of several shapes
    const r = await fetch(`${base}/${path}`, { method, headers: { 'x-vault-token': 'root' }, ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
  const creds = await call('GET', 'database/creds/readonly');
  assert.equal(creds.status, 200, JSON.stringify(creds.body));
  // A connection of the user's own: the local PostgreSQL (not deleted at exit).
  const own = new URL(process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres');
  const conn = await call('PUT', 'database/config/mine', { plugin_name: 'postgresql-database-plugin', connection_url: `postgres://{{username}}:{{password}}@${own.host}${own.pathname}`, username: decodeURIComponent(own.username), password: decodeURIComponent(own.password) || 'unused', allowed_roles: '*' });
  assert.equal(conn.status, 204, JSON.stringify(conn.body));
  const role = await call('PUT', 'database/roles/mine', { db_name: 'mine', creation_statements: [`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`], default_ttl: '1h' });
  assert.equal(role.status, 204, JSON.stringify(role.body));
  const mine = await call('GET', 'database/creds/mine');
  assert.equal(mine.status, 200, JSON.stringify(mine.body));
  const exists = async (user: string): Promise<boolean> => {
    const c = new pg.Client({ connectionString: own.href });
    await c.connect();
    try {
      return (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [user])).rowCount === 1;
    } finally {
      await c.end();
    }
  };
  const user = mine.body.data.username as string;
  assert.equal(await exists(user), true);
  const dir = /sealed storage in (\S+),/.exec(npm.output)?.[1];
  assert.ok(dir && existsSync(dir), npm.output);
  process.kill(-npm.child.pid!, 'SIGINT');
  assert.equal(await npm.exited, 0, npm.output);
  assert.equal(await exists(user), false, `the user issued on the user's own database is dropped at exit\n${npm.output}`);
  assert.doesNotMatch(npm.output, /failed|"level":50|ERROR/i, npm.output);
  assert.doesNotMatch(npm.output, /another stop signal/, 'one Ctrl-C, delivered twice (terminal and npm), is not reported as a second signal');
  assert.equal(existsSync(dir), false, 'the store and the embedded server are deleted');
});
