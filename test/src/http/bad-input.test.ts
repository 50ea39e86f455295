// Bad input across the API: every refusal is a 4xx with {"errors":[...]}
// naming the field, never a 500; plus the envelope shapes of the contract
// (success envelope, sys/health, sys/mounts), LIST, 404/405/413.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { initAndUnseal, startBroker, type ApiResponse, type BrokerProcess } from '../../support/broker.ts';

let broker: BrokerProcess;
let root: string;

before(async () => {
  broker = await startBroker();
  ({ rootToken: root } = await initAndUnseal(broker));
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

/** A refusal: the status, the Vault error envelope, and a message matching `message`. */
function assertRefused(r: ApiResponse, status: number, message: RegExp, what: string): void {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  assert.ok(r.body && Array.isArray(r.body.errors), `${what}: error envelope, got ${r.text}`);
  assert.deepEqual(Object.keys(r.body), ['errors'], what);
  assert.equal(r.body.errors.length, 1, what);
  assert.equal(typeof r.body.errors[0], 'string', what);
  assert.match(r.body.errors[0], message, what);
}

type Case = [method: string, path: string, body: unknown, status: number, message: RegExp];

const FIELD = (name: string): RegExp => new RegExp(`"${name.replace(/[.]/g, '\\.')}"`);

const CASES: Case[] = [
  // sys/init and sys/unseal
  ['PUT', 'sys/init', { secret_shares: 3, secret_threshold: 5 }, 400, /invalid field "secret_threshold": must not exceed secret_shares/],
  ['PUT', 'sys/init', { secret_shares: 256, secret_threshold: 2 }, 400, /invalid field "secret_shares": must be <= 255/],
  ['PUT', 'sys/init', { secret_shares: 0, secret_threshold: 1 }, 400, /invalid field "secret_shares": must be >= 1/],
  ['PUT', 'sys/init', { secret_shares: 'five', secret_threshold: 3 }, 400, /invalid field "secret_shares": must be integer/],
  ['PUT', 'sys/init', { secret_shares: 5 }, 400, /missing required field "secret_threshold"/],
  ['PUT', 'sys/unseal', { key: 12 }, 400, /invalid field "key": must be string/],
  ['PUT', 'sys/unseal', { reset: 'yes' }, 400, /invalid field "reset": must be boolean/],
  ['PUT', 'sys/unseal', { key: 'k'.repeat(2000) }, 400, /invalid field "key": must NOT have more than 1024 characters/],
  // tokens
  ['PUT', 'auth/token/create', { ttl: 'soon' }, 400, /invalid field "ttl": "soon" is not a duration/],
  ['PUT', 'auth/token/create', { ttl: -5 }, 400, /invalid field "ttl": must be >= 0/],
  ['PUT', 'auth/token/create', { ttl: 1e300 }, 400, /invalid field "ttl": is too large/],
  ['PUT', 'auth/token/create', { ttl: { h: 1 } }, 400, /invalid field "ttl": must be integer,string/],
  ['PUT', 'auth/token/create', { explicit_max_ttl: true }, 400, FIELD('explicit_max_ttl')],
  ['PUT', 'auth/token/create', { num_uses: '3x' }, 400, /invalid field "num_uses": must be integer/],
  ['PUT', 'auth/token/create', { num_uses: '2.5' }, 400, /invalid field "num_uses": must be integer/],
  ['PUT', 'auth/token/create', { num_uses: -1 }, 400, /invalid field "num_uses": must be >= 0/],
  ['PUT', 'auth/token/create', { renewable: 'yes' }, 400, /invalid field "renewable": must be boolean/],
  ['PUT', 'auth/token/create', { policies: 5 }, 400, FIELD('policies')],
  ['PUT', 'auth/token/create', { policies: [1, 2] }, 400, FIELD('policies')],
  ['PUT', 'auth/token/create', { meta: 'team=blue' }, 400, /invalid field "meta": must be object/],
  ['PUT', 'auth/token/create', { meta: { team: 1 } }, 400, /invalid field "meta.team": must be string/],
  ['PUT', 'auth/token/create', { display_name: 7 }, 400, /invalid field "display_name"/],
  ['PUT', 'auth/token/create', { type: 'batch' }, 400, /invalid field "type"/],
  ['PUT', 'auth/token/lookup', { token: 5 }, 400, /invalid field "token": must be string/],
  ['PUT', 'auth/token/lookup', {}, 400, /missing required field "token"/],
  ['PUT', 'auth/token/lookup', { token: 'hvs.doesnotexist' }, 403, /^bad token$/],
  ['PUT', 'auth/token/renew-self', { increment: 'later' }, 400, /invalid field "increment"/],
  ['PUT', 'auth/token/revoke-accessor', {}, 400, /missing required field "accessor"/],
  ['PUT', 'auth/token/revoke-accessor', { accessor: 'nope' }, 400, /token not found/],
  ['PUT', 'auth/token/lookup-accessor', { accessor: ['a'] }, 400, /invalid field "accessor": must be string/],
  // policies
  ['PUT', 'sys/policies/acl/p1', {}, 400, /missing required field "policy"/],
  ['PUT', 'sys/policies/acl/p1', { policy: 5 }, 400, /invalid field "policy": must be string/],
  ['PUT', 'sys/policies/acl/p1', { policy: '' }, 400, /invalid field "policy"/],
  ['PUT', 'sys/policies/acl/p1', { policy: 'path "x" { capabilities = ["fly"] }' }, 400, /invalid field "policy": unknown capability "fly"/],
  ['PUT', "sys/policies/acl/a'b", { policy: 'path "x" { capabilities = ["read"] }' }, 400, /invalid field "name"/],
  ['PUT', 'sys/policies/acl/a%20b', { policy: 'path "x" { capabilities = ["read"] }' }, 400, /invalid field "name"/],
  ['GET', 'sys/policies/acl/nope', undefined, 404, /nope/],
  // mounts
  ['PUT', 'sys/mounts/m1', {}, 400, /invalid field "type": is required/],
  ['PUT', 'sys/mounts/m1', { type: 'kv' }, 400, /unsupported mount type "kv"/],
  ['PUT', 'sys/mounts/m1', { type: 'database', description: 5 }, 400, /invalid field "description"/],
  ['PUT', 'sys/mounts/sys', { type: 'database' }, 400, /reserved path "sys\/"/],
  ['PUT', 'sys/mounts/database', { type: 'database' }, 400, /already in use at "database\/"/],
  ['PUT', "sys/mounts/x'%3B%20DROP%20TABLE%20entries%3B--", { type: 'database' }, 400, /invalid field "path"/],
  ['GET', 'sys/mounts/not-mounted', undefined, 400, /no mount at "not-mounted"/],
  // leases
  ['PUT', 'sys/leases/lookup', {}, 400, /missing required field "lease_id"/],
  ['PUT', 'sys/leases/lookup', { lease_id: 5 }, 400, /invalid field "lease_id": must be string/],
  ['PUT', 'sys/leases/lookup', { lease_id: 'database/creds/x/nope' }, 400, /lease not found/],
  ['PUT', 'sys/leases/renew', { lease_id: 'database/creds/x/nope', increment: 'x' }, 400, /invalid field "increment"/],
  ['PUT', 'sys/leases/revoke', { lease_id: 'database/creds/x/nope', sync: 'yes' }, 400, /invalid field "sync": must be boolean/],
  ['GET', 'sys/leases?type=bogus', undefined, 400, /invalid field "type"/],
  ['GET', 'sys/leases/count?type=bogus', undefined, 400, /invalid field "type"/],
  ['GET', 'sys/leases?type=irrevocable&limit=abc', undefined, 400, /invalid field "limit"/],
  // health
  ['GET', 'sys/health?activecode=abc', undefined, 400, /invalid field "activecode"/],
  ['GET', 'sys/health?sealedcode=99', undefined, 400, /invalid field "sealedcode"/],
  // the database engine
  ['PUT', 'database/config/c1', {}, 400, /missing required field "plugin_name"/],
  ['PUT', 'database/config/c1', { plugin_name: 'no-such-plugin', connection_url: 'x' }, 400, /unknown plugin_name "no-such-plugin"/],
  ['PUT', 'database/config/c1', { plugin_name: 'postgresql-database-plugin', connection_url: 5 }, 400, /invalid field "connection_url"/],
  ['PUT', 'database/config/c1', { plugin_name: 'postgresql-database-plugin', max_open_connections: 0 }, 400, /invalid field "max_open_connections"/],
  ['PUT', "database/config/c'1", { plugin_name: 'postgresql-database-plugin' }, 400, /invalid field "name"/],
  ['PUT', 'database/roles/r1', {}, 400, /missing required field "db_name"/],
  ['PUT', 'database/roles/r1', { db_name: 'c1', default_ttl: true }, 400, /invalid field "default_ttl"/],
  ['PUT', 'database/roles/r1', { db_name: 'no-such-connection' }, 400, /invalid field "db_name": no connection named "no-such-connection"/],
  ['PUT', 'database/roles/r1', { db_name: 'c1', creation_statements: 5 }, 400, /invalid field "creation_statements"/],
  ['PUT', "database/roles/x'%3B%20DROP%20ROLE%20postgres%3B--", { db_name: 'c1' }, 400, /invalid field "name"/],
  ['GET', "database/roles/x'%3B%20DROP%20ROLE%20postgres%3B--", undefined, 400, /invalid field "name"/],
  ['GET', `database/roles/${'r'.repeat(200)}`, undefined, 400, /invalid field "name"/],
  ['GET', 'database/roles/%E2%9C%93', undefined, 400, /invalid field "name"/],
  ['GET', 'database/roles/a%00b', undefined, 400, /invalid field "name"/],
  ['GET', 'database/creds/no-such-role', undefined, 400, /unknown role: no-such-role/],
  ['GET', 'database/creds/...', undefined, 400, /unknown role: \.\.\./],
  // routing
  ['GET', 'no/such/mount', undefined, 404, /no handler for route "no\/such\/mount"/],
  ['GET', 'sys/no-such-endpoint', undefined, 404, /no handler for route "sys\/no-such-endpoint"/],
  ['GET', 'database/no-such-endpoint/x', undefined, 404, /no handler for route/],
  ['DELETE', 'sys/init', undefined, 405, /method DELETE is not supported on "sys\/init"/],
  ['GET', 'sys/unseal', undefined, 405, /method GET is not supported on "sys\/unseal"/],
  ['PATCH', 'sys/mounts', {}, 405, /method PATCH is not supported/],
  ['LIST', 'sys/mounts', undefined, 405, /method LIST is not supported on "sys\/mounts"/],
  ['GET', 'sys/%ZZ', undefined, 400, /not a valid URL/],
];

test('bad input: a 4xx naming the field, never a 500', async () => {
  for (const [method, path, body, status, message] of CASES) {
    const r = await broker.api(method, path, { token: root, ...(body !== undefined ? { body } : {}) });
    assertRefused(r, status, message, `${method} ${path} ${JSON.stringify(body) ?? ''}`);
  }
  // Nothing refused above was stored.
  assert.equal((await broker.api('GET', 'sys/policies/acl/p1', { token: root })).status, 404);
  assert.equal((await broker.api('LIST', 'database/roles', { token: root })).status, 404);
  assert.deepEqual(Object.keys((await broker.api('GET', 'sys/mounts', { token: root })).body.data), ['database/']);
});

/** Every PUT endpoint, with bodies that are not what it takes. */
const PUT_PATHS = [
  'sys/init',
  'sys/unseal',
  'sys/rotate',
  'sys/mounts/m2',
  'sys/policies/acl/p2',
  'sys/leases/lookup',
  'sys/leases/renew',
  'sys/leases/revoke',
  'sys/leases/revoke-prefix/database/creds/none/',
  'sys/leases/revoke-force/database/creds/none/',
  'auth/token/create',
  'auth/token/create-orphan',
  'auth/token/lookup',
  'auth/token/lookup-accessor',
  'auth/token/renew',
  'auth/token/renew-self',
  'auth/token/renew-accessor',
  'auth/token/revoke',
  'auth/token/revoke-accessor',
  'database/config/c2',
  'database/roles/r2',
  'database/reset/c2',
  'database/rotate-root/c2',
  'database/static-roles/s2',
  'database/rotate-role/s2',
];

test('malformed JSON, non-object bodies and oversized bodies on every PUT endpoint', async () => {
  const bodies: Array<[string, string, number, RegExp]> = [
    ['malformed JSON', '{"a": ', 400, /^malformed JSON body: /],
    ['trailing garbage', '{"a": 1} x', 400, /^malformed JSON body: /],
    ['an array', '[1,2]', 400, /^the request body must be a JSON object$/],
    ['a string', '"text"', 400, /^the request body must be a JSON object$/],
    ['a number', '42', 400, /^the request body must be a JSON object$/],
  ];
  for (const path of PUT_PATHS) {
    for (const [what, rawBody, status, message] of bodies) {
      for (const contentType of ['application/json', 'application/x-www-form-urlencoded']) {
        const r = await broker.api('PUT', path, { token: root, rawBody, headers: { 'content-type': contentType } });
        assertRefused(r, status, message, `PUT ${path} with ${what} (${contentType})`);
      }
    }
    // A body with wrongly typed everything: refused by the schema or the handler, never 500.
    const typed = await broker.api('PUT', path, { token: root, body: { key: 1, token: 1, lease_id: 1, type: 1, policy: 1, plugin_name: 1, db_name: 1, secret_shares: 'x', increment: [] } });
    // An endpoint that knows none of these fields ignores them all, with Vault's warning (sys/rotate, revoke-prefix, revoke-force, revoke-self).
    if (typed.status === 200) {
      assert.match(String(typed.body?.warnings?.[0]), /^Endpoint ignored these unrecognized parameters: \[/, `PUT ${path}: ${typed.text}`);
      continue;
    }
    assert.ok(typed.status >= 400 && typed.status < 500, `PUT ${path} with wrong types: ${typed.status} ${typed.text}`);
    assert.ok(Array.isArray(typed.body?.errors), `PUT ${path}: ${typed.text}`);
  }
  const big = 'x'.repeat(1024 * 1024 + 10);
  const oversized = await broker.api('PUT', 'auth/token/create', { token: root, rawBody: JSON.stringify({ display_name: big }), headers: { 'content-type': 'application/json' } });
  assertRefused(oversized, 413, /^request body is larger than 1048576 bytes$/, 'oversized body');
  // The broker is fine afterwards.
  assert.equal((await broker.api('GET', 'sys/health')).status, 200);
});

test('no token, a bad token, and a token in the wrong header are 403 before any input check', async () => {
  for (const token of [undefined, 'hvs.bogus', 'x'.repeat(5000)]) {
    const r = await broker.api('PUT', 'auth/token/create', { ...(token ? { token } : {}), rawBody: '{bad' });
    // The body is parsed first (fastify), so malformed JSON is a 400 even without a token; a valid body gets 403.
    assert.equal(r.status, 400);
    const ok = await broker.api('PUT', 'auth/token/create', { ...(token ? { token } : {}), body: { ttl: 'nonsense' } });
    assertRefused(ok, 403, /^permission denied$/, `token ${token?.slice(0, 10)}`);
  }
  const wrongScheme = await broker.api('GET', 'auth/token/lookup-self', { headers: { authorization: `Basic ${root}` } });
  assertRefused(wrongScheme, 403, /^permission denied$/, 'Basic auth is not a token');
});

test('success envelope: the contract keys, a request id, no-store', async () => {
  const res = await fetch(`${broker.url}/v1/auth/token/lookup-self`, { headers: { 'x-vault-token': root } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = (await res.json()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['auth', 'data', 'lease_duration', 'lease_id', 'renewable', 'request_id', 'warnings', 'wrap_info']);
  assert.match(String(body.request_id), /^[0-9a-f-]{36}$/);
  assert.equal(body.lease_id, '');
  assert.equal(body.lease_duration, 0);
  assert.equal(body.renewable, false);
  assert.equal(body.wrap_info, null);
  assert.equal(body.warnings, null);
  assert.equal(body.auth, null);
  assert.equal(typeof body.data, 'object');

  const created = await broker.api('PUT', 'auth/token/create', { token: root, body: { policies: ['default'], ttl: 60 } });
  assert.equal(created.body.data, null);
  assert.deepEqual(Object.keys(created.body.auth).sort(), [
    'accessor',
    'client_token',
    'entity_id',
    'lease_duration',
    'metadata',
    'num_uses',
    'orphan',
    'policies',
    'renewable',
    'token_policies',
    'token_type',
  ]);
  const empty = await broker.api('PUT', 'sys/policies/acl/envelope', { token: root, body: { policy: 'path "x" { capabilities = ["read"] }' } });
  assert.equal(empty.status, 204, 'a write with nothing to return');
  assert.equal(empty.text, '');
});

test('sys/health: codes and query parameters; HEAD has no body', async () => {
  const health = await broker.api('GET', 'sys/health');
  assert.equal(health.status, 200);
  assert.deepEqual(Object.keys(health.body).sort(), ['initialized', 'performance_standby', 'sealed', 'server_time_utc', 'standby', 'version']);
  assert.equal(health.body.initialized, true);
  assert.equal(health.body.sealed, false);
  assert.equal(health.body.standby, false);
  assert.ok(Math.abs(health.body.server_time_utc - Date.now() / 1000) < 60);
  assert.equal((await broker.api('GET', 'sys/health?activecode=299')).status, 299);
  assert.equal((await broker.api('GET', 'sys/health?standbyok=true&perfstandbyok=true')).status, 200);
  assert.equal((await broker.api('GET', 'sys/health?sealedcode=200')).status, 200, 'sealedcode only applies when sealed');
  const head = await fetch(`${broker.url}/v1/sys/health`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
});

test('sys/mounts: the mounts at the top level and under data, Vault style', async () => {
  assert.equal((await broker.api('PUT', 'sys/mounts/team-a/db', { token: root, body: { type: 'database', description: 'team A' } })).status, 204);
  const r = await broker.api('GET', 'sys/mounts', { token: root });
  assert.equal(r.status, 200);
  assert.deepEqual(Object.keys(r.body.data).sort(), ['database/', 'team-a/db/']);
  for (const [path, m] of Object.entries(r.body.data as Record<string, Record<string, unknown>>)) {
    assert.deepEqual(r.body[path], m, 'also at the top level');
    assert.equal(m.type, 'database');
    assert.equal(typeof m.accessor, 'string');
    assert.equal(typeof m.uuid, 'string');
    assert.deepEqual(Object.keys(m.config as object).sort(), ['default_lease_ttl', 'force_no_cache', 'max_lease_ttl']);
    assert.equal(m.local, false);
    assert.equal(m.seal_wrap, false);
  }
  assert.equal(r.body.data['team-a/db/'].description, 'team A');
  for (const key of ['request_id', 'lease_id', 'renewable', 'lease_duration', 'wrap_info', 'warnings', 'auth']) assert.ok(key in r.body, key);
  const one = await broker.api('GET', 'sys/mounts/team-a/db', { token: root });
  assert.equal(one.body.data.description, 'team A');
  assert.equal((await broker.api('DELETE', 'sys/mounts/team-a/db', { token: root })).status, 204);
});

/** Write raw bytes on one connection; `steps` are sent one after another, each after the previous answer. */
async function rawExchange(steps: string[]): Promise<string[]> {
  const socket = connect(Number(new URL(broker.url).port), '127.0.0.1');
  const answers: string[] = [];
  let buffer = '';
  let wake: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    buffer += d.toString('latin1');
    wake?.();
  });
  const closed = new Promise<void>((ok) => socket.once('close', () => ok()));
  socket.on('close', () => wake?.());
  try {
    for (const step of steps) {
      buffer = '';
      socket.write(step);
      const deadline = Date.now() + 10_000;
      // One answer: headers plus a body of content-length bytes.
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        const length = end === -1 ? NaN : Number(/content-length: (\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0);
        if (end !== -1 && buffer.length >= end + 4 + length) break;
        if (socket.destroyed || Date.now() > deadline) break;
        await new Promise<void>((ok) => {
          wake = ok;
          setTimeout(ok, 200);
        });
      }
      answers.push(buffer);
      if (socket.destroyed) break;
    }
  } finally {
    socket.destroy();
    await closed;
  }
  return answers;
}

test('LIST: the raw method works (hvac, node-vault, curl -X LIST), like GET ?list=true', async () => {
  assert.equal((await broker.api('PUT', 'sys/policies/acl/listed', { token: root, body: { policy: 'path "x" { capabilities = ["read"] }' } })).status, 204);
  const viaMethod = await broker.api('LIST', 'sys/policies/acl', { token: root });
  assert.equal(viaMethod.status, 200, viaMethod.text);
  const viaQuery = await broker.api('GET', 'sys/policies/acl?list=true', { token: root });
  assert.deepEqual(viaMethod.body.data, viaQuery.body.data);
  assert.ok(viaMethod.body.data.keys.includes('listed'));
  assertRefused(await broker.api('LIST', 'sys/policies/acl'), 403, /^permission denied$/, 'LIST without a token');
  assertRefused(await broker.api('LIST', 'database/roles', { token: root }), 404, /no handler|database\/roles/, 'an empty list is a 404');

  // On a keep-alive connection: a GET, then a LIST (answered, then the connection closes), as a Vault client does.
  const [get, list] = await rawExchange([
    `GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n`,
    `LIST /v1/sys/policies/acl HTTP/1.1\r\nHost: x\r\nX-Vault-Token: ${root}\r\n\r\n`,
  ]);
  assert.match(get!, /^HTTP\/1\.1 200 /);
  assert.match(list!, /^HTTP\/1\.1 200 /);
  assert.match(list!, /\r\nconnection: close\r\n/i);
  assert.match(list!, /"keys":\[[^\]]*"listed"/);

  const [withBody] = await rawExchange([`LIST /v1/sys/policies/acl HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}`]);
  assert.match(withBody!, /^HTTP\/1\.1 400 /);
  assert.match(withBody!, /\{"errors":\["a LIST request takes no body"\]\}/);
  const [unknown] = await rawExchange([`BREW /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n`]);
  assert.match(unknown!, /^HTTP\/1\.1 405 /);
  assert.match(unknown!, /\{"errors":\["HTTP method BREW is not supported/);
  const [garbage] = await rawExchange([`GET /v1/sys/health HTTP/1.1\r\nBad Header\r\n\r\n`]);
  assert.match(garbage!, /^HTTP\/1\.1 400 /);
  assert.match(garbage!, /\{"errors":\["malformed HTTP request/);
  assert.equal((await broker.api('GET', 'sys/health')).status, 200);
});
