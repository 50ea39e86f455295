// sys/internal/specs/openapi: the document a real broker serves is a valid
// OpenAPI 3.1 document (checked by @apidevtools/swagger-parser, and every
// request schema compiled by Ajv's 2020-12 validator), and it holds every
// route of the route table with each of its methods: core routes, and each
// mount's routes under its own path (a second mount included). Cross-checked
// against the route patterns written in the source, so a route added
// anywhere cannot be missing from it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import pino from 'pino';
import { initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';
import { Broker } from '../../../src/broker.ts';
import { loadConfig } from '../../../src/config.ts';
import { DatabaseBackend } from '../../../src/database/database-backend.ts';
import { openApiPath } from '../../../src/openapi/openapi.ts';
import { SqliteStorage } from '../../../src/storage/sqlite-storage.ts';
import type { Route } from '../../../src/http/route.ts';

// any: an OpenAPI document is arbitrary JSON; the test reads the parts it asserts on.
type Doc = any;

let broker: BrokerProcess;
let root: string;
let doc: Doc;

const SRC = resolve(import.meta.dirname, '../../../src');

/** Route patterns as written in the source (core under src/routes, mount routes under src/database). */
function sourcePatterns(dir: string): string[] {
  const out: string[] = [];
  for (const file of readdirSync(join(SRC, dir))) {
    if (!file.endsWith('.ts')) continue;
    for (const m of readFileSync(join(SRC, dir, file), 'utf8').matchAll(/pattern: '([A-Za-z0-9_:*\/-]+)'/g)) out.push(m[1]!);
  }
  return out;
}

/** The route table itself, from an in-process broker: its core routes and a database mount's routes. */
function routeTable(): { core: Route[]; mount: Route[] } {
  const config = loadConfig(undefined, { DBROKER_STORAGE_PATH: ':memory:' });
  const b = new Broker(config, new SqliteStorage(':memory:'), pino({ level: 'silent' }));
  const core = b.routeGroups()[0]!.routes;
  return { core, mount: new DatabaseBackend(b, 'database/').routes() };
}

before(async () => {
  broker = await startBroker();
  ({ rootToken: root } = await initAndUnseal(broker));
  assert.equal((await broker.api('PUT', 'sys/mounts/db2', { token: root, body: { type: 'database' } })).status, 204);
  for (const type of ['approle', 'userpass']) assert.equal((await broker.api('PUT', `sys/auth/${type}`, { token: root, body: { type } })).status, 204);
  const r = await broker.api('GET', 'sys/internal/specs/openapi', { token: root });
  assert.equal(r.status, 200, r.text);
  doc = r.body;
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

test('the document is valid OpenAPI 3.1 and its request schemas are valid JSON Schema', async () => {
  assert.equal(doc.openapi, '3.1.0');
  await SwaggerParser.validate(structuredClone(doc));
  // The validator does refuse a broken document (so the pass above means something).
  const broken = structuredClone(doc);
  broken.paths['/sys/seal'].post.responses = 'none';
  await assert.rejects(SwaggerParser.validate(broken), /responses/);
  const ajv = new Ajv2020({ strict: false });
  let schemas = 0;
  for (const [path, item] of Object.entries<Doc>(doc.paths)) {
    const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const [method, op] of Object.entries<Doc>(item)) {
      // Every template parameter is declared once as a required path parameter.
      const declared = (op.parameters ?? []).filter((p: Doc) => p.in === 'path').map((p: Doc) => p.name);
      assert.deepEqual([...declared].sort(), [...names].sort(), `${method} ${path}`);
      const schema = op.requestBody?.content?.['application/json']?.schema;
      if (schema) {
        ajv.compile(schema);
        schemas++;
      }
    }
  }
  assert.ok(schemas > 20, `${schemas} request schemas`);
  const ids = Object.values<Doc>(doc.paths).flatMap((item) => Object.values<Doc>(item).map((op) => op.operationId));
  assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
});

test('every route and method of the route table is in it, mounts under their own paths', () => {
  const { core, mount } = routeTable();
  const expect = (prefix: string, route: Route, siblings: Route[]) => {
    const { path } = openApiPath(prefix + route.pattern);
    const item = doc.paths[path];
    assert.ok(item, `${path} missing`);
    for (const m of route.methods) {
      if (m === 'GET') assert.ok(item.get && !item.get.parameters?.some((p: Doc) => p.name === 'list' && p.required), `GET ${path}`);
      if (m === 'LIST') assert.ok(item.get?.parameters?.some((p: Doc) => p.name === 'list' && p.in === 'query'), `LIST ${path}`);
      if (m === 'PUT') assert.ok(item.post, `PUT/POST ${path}`);
      if (m === 'DELETE') assert.ok(item.delete, `DELETE ${path}`);
    }
    // Routes may share a path with different methods (PUT sys/leases/lookup, LIST sys/leases/lookup/): one path item holds them all.
    const sharing = siblings.filter((r) => openApiPath(prefix + r.pattern).path === path);
    const methods = sharing.flatMap((r) => r.methods);
    const ops = Object.keys(item).length;
    const wanted = new Set(methods.map((m) => (m === 'LIST' ? 'GET' : m))).size;
    assert.equal(ops, wanted, `${path}: ${Object.keys(item).join(',')} for ${methods.join(',')}`);
    const opOf = (m: string): Doc | undefined => (m === 'PUT' ? item.post : m === 'DELETE' ? item.delete : item.get);
    if (route.auth === 'none') for (const m of route.methods) assert.equal(opOf(m)?.['x-vault-unauthenticated'], true, `${m} ${path}`);
    if (route.sudo) for (const m of route.methods) assert.equal(opOf(m)?.['x-vault-sudo'], true, `${m} ${path}`);
  };
  for (const route of core) expect('', route, core);
  for (const prefix of ['database/', 'db2/']) for (const route of mount) expect(prefix, route, mount);
  // Nothing else: the document has exactly these paths.
  const all = new Set([...core.map((r) => openApiPath(r.pattern).path), ...['database/', 'db2/'].flatMap((p) => mount.map((r) => openApiPath(p + r.pattern).path))]);
  const authPaths = Object.keys(doc.paths).filter((p) => p.startsWith('/auth/approle/') || p.startsWith('/auth/userpass/'));
  assert.deepEqual(Object.keys(doc.paths).filter((p) => !authPaths.includes(p)).sort(), [...all].sort());
  // Auth method mounts are in it too, under auth/<path>.
  for (const p of ['/auth/approle/login', '/auth/approle/role/{name}', '/auth/approle/role/{name}/secret-id', '/auth/userpass/login/{name}', '/auth/userpass/users/{name}']) {
    assert.ok(authPaths.includes(p), `${p} in ${authPaths.join(' ')}`);
  }
  assert.ok(doc.paths['/auth/approle/login'].post, 'approle login is a POST');

  // And the route table holds every pattern written in the source.
  const corePatterns = new Set(core.map((r) => r.pattern));
  for (const p of sourcePatterns('routes')) assert.ok(corePatterns.has(p), `core route ${p} not in the route table`);
  const mountPatterns = new Set(mount.map((r) => r.pattern));
  for (const p of sourcePatterns('database')) assert.ok(mountPatterns.has(p), `mount route ${p} not in the route table`);
});

test('request schemas are the ones the server validates with: a documented type is enforced', async () => {
  const role = doc.paths['/database/roles/{name}'].post.requestBody.content['application/json'].schema;
  assert.deepEqual(role.required, ['db_name']);
  assert.ok(role.properties.creation_statements);
  // The schema says db_name is required; the server refuses a body without it, naming the field.
  const r = await broker.api('PUT', 'database/roles/r1', { token: root, body: { creation_statements: 'SELECT 1' } });
  assert.equal(r.status, 400);
  assert.match(r.body.errors[0], /db_name/);
  const init = doc.paths['/sys/init'].post;
  assert.equal(init['x-vault-unauthenticated'], true);
  assert.deepEqual(init.security, []);
  assert.equal(doc.paths['/sys/leases/revoke-prefix/{prefix}'].post['x-vault-sudo'], true);
});

test('a non-root token sees the mounts its policies reach into, and the core paths', async () => {
  const policy = 'path "sys/internal/specs/openapi" { capabilities = ["read"] }\npath "db2/creds/*" { capabilities = ["read"] }\npath "database/*" { capabilities = ["deny"] }';
  assert.equal((await broker.api('PUT', 'sys/policies/acl/spec-db2', { token: root, body: { policy } })).status, 204);
  const token = (await broker.api('PUT', 'auth/token/create', { token: root, body: { policies: ['spec-db2'] } })).body.auth.client_token as string;
  const r = await broker.api('GET', 'sys/internal/specs/openapi', { token });
  assert.equal(r.status, 200, r.text);
  const paths = Object.keys(r.body.paths);
  assert.ok(paths.includes('/db2/creds/{name}'));
  assert.ok(paths.includes('/sys/seal-status'));
  assert.ok(!paths.some((p) => p.startsWith('/database/')), 'no path of a mount the token cannot reach');
  await SwaggerParser.validate(r.body);
  // A glob over every path reaches every mount.
  assert.equal((await broker.api('PUT', 'sys/policies/acl/spec-all', { token: root, body: { policy: 'path "*" { capabilities = ["read"] }' } })).status, 204);
  const all = (await broker.api('PUT', 'auth/token/create', { token: root, body: { policies: ['spec-all'] } })).body.auth.client_token as string;
  const everything = await broker.api('GET', 'sys/internal/specs/openapi', { token: all });
  assert.deepEqual(Object.keys(everything.body.paths).sort(), Object.keys(doc.paths).sort());
});

test('generic_mount_paths puts mounts under {mountPath}; a bad value is a 400; a token is required', async () => {
  const r = await broker.api('GET', 'sys/internal/specs/openapi?generic_mount_paths=true', { token: root });
  assert.equal(r.status, 200);
  assert.ok(r.body.paths['/{mountPath}/creds/{name}']);
  assert.ok(!r.body.paths['/database/creds/{name}']);
  await SwaggerParser.validate(r.body);
  const bad = await broker.api('GET', 'sys/internal/specs/openapi?generic_mount_paths=maybe', { token: root });
  assert.equal(bad.status, 400);
  assert.match(bad.body.errors[0], /generic_mount_paths/);
  assert.equal((await broker.api('GET', 'sys/internal/specs/openapi')).status, 403);
});
