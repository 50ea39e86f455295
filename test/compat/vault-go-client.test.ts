// HashiCorp's official Vault Go client (github.com/hashicorp/vault/api) against
// a real broker, unchanged: test/compat/vault-go-client/main.go runs a scenario
// with the library's normal methods (mounts, database config/roles/creds,
// LIST, lease renew/lookup/revoke, a LifetimeWatcher, tokens, error parsing,
// seal/unseal) and prints what it saw as JSON; this file builds it, runs it
// against the broker and the shared PostgreSQL, and checks the results and
// the database.
//
// The binary is built once per source version into
// ${DBROKER_CACHE_DIR:-~/.cache/dbroker}/vault-go-client-<hash>. Without Go (or
// when the build fails) the test is skipped, except with
// DBROKER_TEST_REQUIRE_ALL=1, where it fails with the build output.

import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { eventually, initAndUnseal, startBroker, type BrokerProcess } from '../support/broker.ts';
import { dropRolesWithPrefix, rolesWithPrefix, templatedUrl } from '../support/pg-broker.ts';
import { adminQuery, loginAs, trustPostgres, type TestPostgres } from '../support/scram-postgres.ts';

const REQUIRE_ALL = process.env.DBROKER_TEST_REQUIRE_ALL === '1';
const SOURCE_DIR = resolve(import.meta.dirname, 'vault-go-client');
const BUILD_TIMEOUT_MS = 600_000;
const RUN_TIMEOUT_MS = 120_000;

const userPrefix = `vgc${randomBytes(3).toString('hex')}`;
let server: TestPostgres | undefined;
let broker: BrokerProcess | undefined;

after(async () => {
  if (server) await dropRolesWithPrefix(server, userPrefix);
  await broker?.stop();
  broker?.remove();
  await server?.stop();
});

type Built = { path: string; buildMs: number | null } | { failure: string };

function findGo(): string | undefined {
  for (const candidate of ['go', '/usr/local/go/bin/go']) {
    if (spawnSync(candidate, ['version'], { encoding: 'utf8' }).status === 0) return candidate;
  }
  return undefined;
}

/** The client binary from the cache, built first if this version of the sources has none. */
function buildClient(): Built {
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum', 'main.go']) hash.update(readFileSync(join(SOURCE_DIR, file)));
  const cacheDir = process.env.DBROKER_CACHE_DIR || join(homedir(), '.cache', 'dbroker');
  const path = join(cacheDir, `vault-go-client-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(path)) return { path, buildMs: null };

  const go = findGo();
  if (!go) return { failure: 'Go is not installed (neither `go` on PATH nor /usr/local/go/bin/go)' };
  mkdirSync(cacheDir, { recursive: true });
  // Built under a temporary name and renamed: test files running at once never see half a binary.
  const partial = `${path}.partial-${process.pid}`;
  const started = Date.now();
  const build = spawnSync(go, ['build', '-trimpath', '-o', partial, '.'], {
    cwd: SOURCE_DIR,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
    // readonly: a go.sum that does not match fails the build instead of being rewritten in the checkout.
    // local: never download another toolchain.
    env: { ...process.env, GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local' },
  });
  if (build.status !== 0) {
    rmSync(partial, { force: true });
    const why = build.error ? String(build.error) : `exit ${build.status}`;
    return { failure: `go build failed (${why}) after ${Date.now() - started} ms:\n${build.stdout}${build.stderr}` };
  }
  renameSync(partial, path);
  return { path, buildMs: Date.now() - started };
}

// any: the scenario's JSON summary; each assertion reads the fields it checks.
type Summary = Record<string, any>;

interface LiveCheck {
  currentUser: string;
  validUntil: Date;
  wrongPasswordRefused: boolean | 'not checked (trust auth)';
  usersAtPause: string[];
}

interface Run {
  exitCode: number | null;
  creds: Summary;
  summary: Summary;
  live: LiveCheck;
  stderr: string;
}

/** Run the client; at its pause (lease renewed, not yet revoked) check the creds in PostgreSQL. */
async function runClient(bin: string, pg: TestPostgres, b: BrokerProcess, rootToken: string, unsealKey: string): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('VAULT_')) env[k] = v;
  Object.assign(env, {
    VAULT_ADDR: b.url,
    VAULT_TOKEN: rootToken,
    // Trust auth ignores it, but it lets the client check that reading the config back hides it.
    COMPAT_DB_PASSWORD: pg.adminPassword || 'ignored-under-trust-auth',
    COMPAT_UNSEAL_KEY: unsealKey,
  });
  const args = ['-connection-url', templatedUrl(pg), '-db-username', pg.adminUser, '-username-prefix', userPrefix, '-mount', 'dbx', '-wait'];
  const child = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);

  let creds: Summary | undefined;
  let summary: Summary | undefined;
  let live: LiveCheck | undefined;
  let liveError: unknown;
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      const msg = JSON.parse(line) as Summary;
      if (msg.event === 'creds') creds = msg.creds;
      else if (msg.event === 'waiting') {
        try {
          live = await checkLive(pg, creds!, msg.lookup);
        } catch (err) {
          liveError = err;
        }
        child.stdin.end('go on\n');
      } else if (msg.event === 'summary') summary = msg;
    }
  } finally {
    clearTimeout(killer);
  }
  const exitCode = await exited;
  if (liveError) throw liveError;
  assert.ok(summary, `the client printed no summary (exit ${exitCode}); stderr:\n${stderr}`);
  assert.ok(creds && live, `the client stopped before its pause: ${JSON.stringify(summary)}\n${stderr}`);
  return { exitCode, creds, summary, live, stderr };
}

async function checkLive(pg: TestPostgres, creds: Summary, lookup: Summary): Promise<LiveCheck> {
  const client = await loginAs(pg, creds.username, creds.password);
  let currentUser: string;
  try {
    currentUser = (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u;
  } finally {
    await client.end();
  }
  let wrongPasswordRefused: LiveCheck['wrongPasswordRefused'] = 'not checked (trust auth)';
  if (pg.checksPasswords) {
    wrongPasswordRefused = await loginAs(pg, creds.username, `${creds.password}x`).then(
      async (c) => (await c.end(), false),
      () => true,
    );
  }
  const [row] = await adminQuery<{ until: Date }>(pg, 'SELECT rolvaliduntil AS until FROM pg_catalog.pg_roles WHERE rolname = $1', [creds.username]);
  assert.ok(row, `role ${creds.username} does not exist during the lease`);
  assert.ok(lookup?.expire_time, 'the pause line carries the lease lookup');
  return { currentUser, validUntil: row.until, wrongPasswordRefused, usersAtPause: await rolesWithPrefix(pg, userPrefix) };
}

test('the official Vault Go client (vault/api v1.23.0) works against dbroker unchanged', { timeout: BUILD_TIMEOUT_MS + 180_000 }, async (t: TestContext) => {
  const built = buildClient();
  if ('failure' in built) {
    if (REQUIRE_ALL) assert.fail(`DBROKER_TEST_REQUIRE_ALL=1 and the Vault Go client could not be built: ${built.failure}`);
    t.skip(built.failure.replace(/\s*\n\s*/g, ' | ').slice(0, 400));
    return;
  }
  t.diagnostic(built.buildMs === null ? `client binary from the cache: ${built.path}` : `built the client in ${built.buildMs} ms: ${built.path}`);

  [server, broker] = await Promise.all([trustPostgres(), startBroker()]);
  const pg = server;
  const { rootToken, keys } = await initAndUnseal(broker);
  const started = Date.now();
  const run = await runClient(built.path, pg, broker, rootToken, keys[0]!);
  t.diagnostic(`scenario ran in ${Date.now() - started} ms`);
  const s = run.summary;
  const context = (): string => `client exit ${run.exitCode}, failed step ${s.failed_step ?? 'none'}: ${JSON.stringify({ ...s, creds: '(omitted)', token_creds: '(omitted)' })}\n${run.stderr}`;
  assert.equal(run.exitCode, 0, context());
  assert.equal(s.ok, true, context());

  await t.test('sys/health, sys/seal-status and sys/mounts decode into the client types', () => {
    assert.deepEqual([s.health.initialized, s.health.sealed, s.health.standby], [true, false, false]);
    assert.equal(typeof s.health.version, 'string');
    assert.ok(Math.abs(s.health.server_time_utc - Date.now() / 1000) < 120);
    assert.deepEqual(s.seal_status, { ok: true, type: 'shamir', initialized: true, sealed: false, t: 1, n: 1, progress: 0 });
    assert.deepEqual(s.mount.mounts, ['database/', 'dbx/']);
    assert.equal(s.mount.type, 'database');
    assert.equal(s.mount.description, 'mounted by the Vault Go client');
    assert.deepEqual(s.unmount.mounts, ['database/']);
  });

  await t.test('config and roles written with Logical().Write read back; the password is never returned', () => {
    assert.equal(s.config.plugin_name, 'postgresql-database-plugin');
    assert.deepEqual(s.config.allowed_roles, ['ro', 'short']);
    assert.equal(s.config.password_visible, false);
    assert.deepEqual([s.role.db_name, s.role.default_ttl, s.role.max_ttl], ['pg', 30, 3600]);
    assert.equal(s.policy.round_trip, true);
  });

  await t.test('LIST: Logical().List (GET ?list=true) and the raw LIST method; an empty list is (nil, nil)', () => {
    assert.deepEqual(s.list_roles.keys, ['ro']);
    assert.equal(s.list_roles_raw_method.status, 200);
    assert.deepEqual(s.list_roles_raw_method.keys, ['ro']);
    assert.equal(s.list_empty.nil_secret, true);
    assert.deepEqual(s.delete_role, { ok: true, read_nil: true, keys: ['ro'] });
  });

  await t.test('creds read by the client log in to PostgreSQL while the lease lives', () => {
    assert.match(run.creds.lease_id, /^dbx\/creds\/ro\/[A-Za-z0-9]{24,}$/);
    assert.equal(run.creds.lease_duration, 30);
    assert.equal(run.creds.renewable, true);
    assert.ok(run.creds.username.startsWith(userPrefix));
    assert.ok(run.creds.password.length >= 20);
    assert.equal(run.live.currentUser, run.creds.username);
    if (pg.checksPasswords) assert.equal(run.live.wrongPasswordRefused, true);
    // The watched short-lived user exists at the same time; nothing else with our prefix.
    assert.deepEqual(run.live.usersAtPause, [run.creds.username, s.watcher_start.username].sort());
  });

  await t.test('Sys().Renew gives the new duration; the lookup and VALID UNTIL follow it', () => {
    assert.equal(s.renew.lease_id, run.creds.lease_id);
    assert.equal(s.renew.lease_duration, 60);
    assert.equal(s.renew.renewable, true);
    assert.equal(s.lookup.id, run.creds.lease_id);
    assert.ok(s.lookup.ttl > 50 && s.lookup.ttl <= 60, `lookup ttl ${s.lookup.ttl}`);
    assert.equal(s.lookup.renewable, true);
    const expire = Date.parse(s.lookup.expire_time);
    const until = run.live.validUntil.getTime();
    assert.ok(until >= expire - 1000 && until - expire < 15_000, `VALID UNTIL ${run.live.validUntil.toISOString()} vs lease end ${s.lookup.expire_time}`);
  });

  await t.test('Sys().Revoke drops the user at once; the lease is gone for Sys().Lookup', async () => {
    assert.equal(s.revoke.ok, true);
    assert.equal(s.lookup_after_revoke.status, 400);
    assert.deepEqual(s.lookup_after_revoke.errors, ['lease not found']);
    const [row] = await adminQuery(pg, 'SELECT 1 AS present FROM pg_catalog.pg_roles WHERE rolname = $1', [run.creds.username]);
    assert.equal(row, undefined, `role ${run.creds.username} survived the client's revoke`);
  });

  await t.test('a LifetimeWatcher renews until the max_ttl cap and then reports done', () => {
    assert.match(s.watcher_start.lease_id, /^dbx\/creds\/short\/[A-Za-z0-9]{24,}$/);
    assert.equal(s.watcher_start.lease_duration, 5);
    const renewals: number[] = s.watcher.renewals;
    assert.ok(renewals.length >= 2, `renewals ${JSON.stringify(renewals)}`);
    assert.ok(renewals.every((d) => d > 0 && d <= 5), `renewals ${JSON.stringify(renewals)}`);
    // The last renewal hit the cap (10 s from issue): shorter than asked, with a warning.
    assert.ok(renewals[renewals.length - 1]! < 5, `renewals ${JSON.stringify(renewals)}`);
    assert.ok(s.watcher.warnings.some((w: string) => /max_ttl/.test(w)), JSON.stringify(s.watcher.warnings));
  });

  await t.test('tokens: Create with policies and ttl, Lookup/LookupSelf, RenewSelf, policy enforced, RevokeTree, then 403', () => {
    assert.deepEqual(s.token_create.policies, ['compat-ro', 'default']);
    assert.equal(s.token_create.lease_duration, 600);
    assert.equal(s.token_create.renewable, true);
    assert.equal(typeof s.token_create.accessor, 'string');
    assert.deepEqual(s.token_lookup.policies, ['compat-ro', 'default']);
    assert.ok(s.token_lookup.ttl > 590 && s.token_lookup.ttl <= 600, `ttl ${s.token_lookup.ttl}`);
    assert.equal(s.token_lookup.accessor, s.token_create.accessor);
    assert.equal(s.token_lookup.parent_accessor, s.token_create.accessor);
    assert.equal(s.token_lookup.display_name, 'token-compat');
    assert.equal(s.token_lookup.id_matches, true);
    assert.equal(s.token_renew_self.lease_duration, 300);
    assert.match(s.token_creds.lease_id, /^dbx\/creds\/ro\//);
    assert.equal(s.token_denied.status, 403);
    assert.equal(s.token_revoke.ok, true);
    assert.equal(s.token_after_revoke.status, 403);
    assert.deepEqual(s.token_after_revoke.errors, ['permission denied']);
  });

  await t.test('an error answer parses as *api.ResponseError with our status and message', () => {
    const e = s.error_response;
    assert.ok(e.status === 400 || e.status === 404, `status ${e.status}`);
    assert.deepEqual(e.errors, ['unknown role: no-such-role']);
    assert.equal(e.raw_error, false);
    assert.equal(e.method, 'GET');
    assert.match(e.url, /\/v1\/dbx\/creds\/no-such-role$/);
    assert.match(e.message, /unknown role: no-such-role/);
  });

  await t.test('Seal() answers 503 to reads, Unseal(key) brings the mounts back', () => {
    assert.equal(s.seal.sealed, true);
    assert.equal(s.seal.health_sealed, true);
    assert.equal(s.seal.read_while_sealed.status, 503);
    assert.deepEqual(s.seal.read_while_sealed.errors, ['dbroker is sealed']);
    assert.deepEqual(s.unseal, { ok: true, sealed: false, progress: 0, health_sealed: false, default_mount: true });
  });

  await t.test('every user the client was given is dropped: by revoke, token revoke (leases follow the token), prefix revoke and the watcher', async () => {
    assert.deepEqual(s.revoke_prefix.left, []);
    const issued = [run.creds.username, s.token_creds.username, s.prefix_creds.username, s.watcher_start.username];
    assert.equal(new Set(issued).size, 4);
    assert.ok(issued.every((u) => u.startsWith(userPrefix)));
    // The token's lease is revoked in the background once the token is; the rest synchronously.
    await eventually(async () => (await rolesWithPrefix(pg, userPrefix)).length === 0, 30_000, `no users starting with ${userPrefix} left`);
  });
});
