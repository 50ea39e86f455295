// Every route × {GET, HEAD, PUT, POST, DELETE, LIST} × {no token, read-only
// token, root}, against a real broker and the local PostgreSQL (issue 8):
// no answer is a 5xx, and HEAD never changes state (the store's entries,
// tokens and leases are byte-identical before and after each HEAD).
// The table of concrete paths is checked against the route patterns in the
// source, so a new route without a row here fails this test.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { compilePattern, matchPattern } from '../../../src/http/route.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { createRole, dropRolesWithPrefix, issueCreds, prefixTemplate, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';

const run = tag();
const userPrefix = `mx${run}`;
const admin = `${userPrefix}adm`;
const staticUser = `${userPrefix}static`;
let server: TestPostgres;
let pb: PgBroker;
let reader: string;
let readerAccessor: string;
let leaseId: string;

const SRC = resolve(import.meta.dirname, '../../../src');

/** Route patterns declared in the source: core routes as they are, database routes under `database/`. */
function declaredPatterns(): string[] {
  const out: string[] = [];
  const scan = (dir: string, prefix: string) => {
    for (const file of readdirSync(dir)) {
      if (!file.endsWith('.ts')) continue;
      for (const m of readFileSync(join(dir, file), 'utf8').matchAll(/pattern: '([A-Za-z0-9_:*\/-]+)'/g)) out.push(prefix + m[1]!);
    }
  };
  scan(join(SRC, 'routes'), '');
  scan(join(SRC, 'database'), 'database/');
  // Auth methods, mounted at auth/<type>/ in this test; patterns built at run time are listed in PATHS by hand.
  for (const file of readdirSync(join(SRC, 'auth/methods'))) {
    if (!file.endsWith('.ts')) continue;
    for (const m of readFileSync(join(SRC, 'auth/methods', file), 'utf8').matchAll(/pattern: '([A-Za-z0-9_:*\/-]+)'/g)) out.push(`auth/${file.slice(0, -3)}/${m[1]!}`);
  }
  return out;
}

/** Concrete paths covering every route; `<lease>` and `<accessor>` are filled in once known. */
const PATHS = [
  'sys/init',
  'sys/unseal',
  'sys/seal',
  'sys/seal-status',
  'sys/health',
  'sys/leader',
  'sys/step-down',
  'sys/rotate',
  'sys/key-status',
  'sys/mounts',
  'sys/mounts/mx',
  'sys/mounts/database/tune',
  'sys/policies/acl',
  'sys/policies/acl/p1',
  'sys/leases',
  'sys/leases/count',
  'sys/leases/lookup',
  'sys/leases/lookup/database/creds/',
  'sys/leases/renew',
  'sys/leases/renew/<lease>',
  'sys/leases/revoke',
  'sys/leases/revoke/database/creds/r1/none',
  'sys/renew',
  'sys/renew/<lease>',
  'sys/revoke',
  'sys/revoke/database/creds/r1/none',
  'sys/leases/revoke-prefix/database/creds/none',
  'sys/revoke-prefix/database/creds/none',
  'sys/leases/revoke-force/database/creds/none',
  'sys/audit',
  'sys/audit/ax',
  'sys/audit-hash/ax',
  'sys/capabilities',
  'sys/capabilities-self',
  'sys/capabilities-accessor',
  'sys/metrics',
  'sys/internal/specs/openapi',
  'auth/token/create',
  'auth/token/create-orphan',
  'auth/token/lookup',
  'auth/token/lookup-self',
  'auth/token/lookup-accessor',
  'auth/token/renew',
  'auth/token/renew-self',
  'auth/token/renew-accessor',
  'auth/token/revoke',
  'auth/token/revoke-self',
  'auth/token/revoke-accessor',
  'auth/token/roles',
  'auth/token/roles/tr',
  'auth/token/create/tr',
  'auth/token/revoke-orphan',
  'auth/token/accessors',
  'sys/auth',
  'sys/auth/scratch',
  'sys/auth/approle/tune',
  'auth/approle/login',
  'auth/approle/role',
  'auth/approle/role/ar',
  'auth/approle/role/ar/role-id',
  'auth/approle/role/ar/secret-id',
  'auth/approle/role/ar/custom-secret-id',
  'auth/approle/role/ar/secret-id/lookup',
  'auth/approle/role/ar/secret-id/destroy',
  'auth/approle/role/ar/secret-id-accessor/lookup',
  'auth/approle/role/ar/secret-id-accessor/destroy',
  'auth/approle/tidy/secret-id',
  'auth/jwt/login',
  'auth/jwt/config',
  'auth/jwt/role',
  'auth/jwt/role/jr',
  'auth/jwt/oidc/auth_url',
  'auth/jwt/oidc/callback',
  'auth/kubernetes/login',
  'auth/kubernetes/config',
  'auth/kubernetes/role',
  'auth/kubernetes/role/kr',
  'auth/userpass/login/u1',
  'auth/userpass/users',
  'auth/userpass/users/u1',
  'auth/userpass/users/u1/password',
  'auth/userpass/users/u1/policies',
  'database/config',
  'database/config/c1',
  'database/reset/c1',
  'database/rotate-root/c1',
  'database/roles',
  'database/roles/r1',
  'database/creds/r1',
  'database/static-roles',
  'database/static-roles/s1',
  'database/static-creds/s1',
  'database/rotate-role/s1',
];

/** Calls that would end the test's own session, not bugs: skipped for the token that would lose its access. */
const SELF_DESTRUCTIVE = new Set(['PUT sys/seal', 'POST sys/seal', 'PUT auth/token/revoke-self', 'POST auth/token/revoke-self']);

const METHODS = ['GET', 'HEAD', 'LIST', 'PUT', 'POST', 'DELETE'] as const;

/** A digest of everything the broker stores (entries, tokens, leases, meta), read from its SQLite file. */
function storeDigest(): string {
  const db = new Database(pb.broker.storagePath, { readonly: true, fileMustExist: true });
  try {
    const h = createHash('sha256');
    for (const table of ['meta', 'entries', 'tokens', 'leases']) {
      for (const row of db.prepare(`SELECT * FROM ${table} ORDER BY 1`).all()) h.update(JSON.stringify(row, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v)));
    }
    return h.digest('hex');
  } finally {
    db.close();
  }
}

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  // Its own admin and static user, so rotate-root and rotate-role touch nothing shared.
  await adminQuery(server, `CREATE ROLE "${admin}" WITH LOGIN SUPERUSER PASSWORD 'matrix-admin-pw'`);
  await adminQuery(server, `CREATE ROLE "${staticUser}" WITH LOGIN PASSWORD 'matrix-static-pw'`);
  const conn = await pb.api('PUT', 'database/config/c1', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: admin,
    password: 'matrix-admin-pw',
    allowed_roles: '*',
  });
  assert.equal(conn.status, 204, conn.text);
  await createRole(pb, 'r1', { db_name: 'c1', username_template: prefixTemplate(`${userPrefix}-`), default_ttl: '1h' });
  const st = await pb.api('PUT', 'database/static-roles/s1', { db_name: 'c1', username: staticUser, rotation_period: '1h' });
  assert.equal(st.status, 204, st.text);
  assert.equal((await pb.api('PUT', 'sys/policies/acl/p1', { policy: 'path "*" { capabilities = ["read", "list"] }' })).status, 204);
  const t = await pb.api('PUT', 'auth/token/create', { policies: ['p1'], ttl: '1h' });
  reader = t.body.auth.client_token;
  readerAccessor = t.body.auth.accessor;
  leaseId = (await issueCreds(pb, 'r1')).leaseId;
  for (const type of ['approle', 'jwt', 'kubernetes', 'userpass']) {
    const r = await pb.api('PUT', `sys/auth/${type}`, { type });
    assert.equal(r.status, 204, r.text);
  }
  assert.equal((await pb.api('PUT', 'auth/approle/role/ar', { token_policies: ['p1'] })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/userpass/users/u1', { password: 'matrix-user-pw', token_policies: ['p1'] })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/token/roles/tr', { allowed_policies: ['p1'] })).status, 204);
});

after(async () => {
  await pb?.close();
  if (server) {
    await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  }
});

test('the path table covers every route pattern in the source', () => {
  const concrete = PATHS.map((p) => p.replace('<lease>', 'database/creds/r1/x'));
  const missing = declaredPatterns().filter((pattern) => !concrete.some((p) => matchPattern(compilePattern(pattern), p.replace(/\/$/, '')) !== undefined));
  assert.deepEqual(missing, [], 'routes without a row in PATHS');
});

test('every route × method × token: never a 5xx, and HEAD changes nothing', async () => {
  const tokens: Array<[string, string | undefined]> = [
    ['no token', undefined],
    ['read-only', reader],
    ['root', pb.root],
  ];
  const body = JSON.stringify({});
  let calls = 0;
  const fiveHundreds: string[] = [];
  for (const [who, token] of tokens) {
    for (const raw of PATHS) {
      const path = raw.replace('<lease>', leaseId).replace('<accessor>', readerAccessor);
      for (const method of METHODS) {
        if (token && SELF_DESTRUCTIVE.has(`${method} ${raw}`)) continue;
        const before = method === 'HEAD' ? storeDigest() : '';
        const headers: Record<string, string> = token ? { 'x-vault-token': token } : {};
        const init: RequestInit = { method: method === 'LIST' ? 'GET' : method, headers };
        if (method === 'PUT' || method === 'POST') {
          headers['content-type'] = 'application/json';
          init.body = body;
        }
        const url = `${pb.broker.url}/v1/${path}${method === 'LIST' ? '?list=true' : ''}`;
        const res = await fetch(url, init);
        const text = await res.text();
        calls++;
        if (res.status >= 500) fiveHundreds.push(`${who} ${method} ${path} → ${res.status} ${text}`);
        if (method === 'HEAD') {
          assert.equal(text, '', `${who} HEAD ${path} has no body`);
          assert.equal(storeDigest(), before, `${who} HEAD ${path} (${res.status}) changed the store`);
        }
      }
    }
  }
  assert.deepEqual(fiveHundreds, []);
  assert.ok(calls > 900, `ran ${calls} calls`);
  // The broker is still up and unsealed, and the lease it issued is still there.
  assert.equal((await pb.broker.api('GET', 'sys/health')).status, 200);
  assert.equal((await pb.api('PUT', 'sys/leases/lookup', { lease_id: leaseId })).status, 200);
});
