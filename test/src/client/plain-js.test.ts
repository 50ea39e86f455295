// The SDK as a package entry point for plain JavaScript: `npm run
// build:client` emits dist/client (JS + .d.ts), and a plain .mjs run by node
// without a TypeScript loader imports 'dbroker/client' (package.json
// "exports"), reads and revokes a lease, and queries PostgreSQL through
// createPgPool, against a real broker.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { configureConnection, createRole, dropRolesWithPrefix, rolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const prefix = `pj${tag()}`;
let pb: PgBroker;
let pg: TestPostgres;

before(async () => {
  [pg, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await configureConnection(pb, pg, 'main');
  await createRole(pb, 'plain', { db_name: 'main', default_ttl: 60, username_template: `{{ printf "${prefix}%s" (random 12) }}` });
});

after(async () => {
  await pb?.close();
  await dropRolesWithPrefix(pg, prefix);
  await pg?.stop();
});

test('dbroker/client from plain JavaScript: built entry point, read + revoke + createPgPool', () => {
  execFileSync('npm', ['run', '--silent', 'build:client'], { cwd: ROOT, stdio: 'pipe', timeout: 120_000 });
  assert.ok(existsSync(join(ROOT, 'dist/client/index.js')));
  assert.ok(existsSync(join(ROOT, 'dist/client/index.d.ts')), 'typed');
  const out = execFileSync(process.execPath, [join(import.meta.dirname, 'fixtures/plain.mjs'), pb.broker.url, pb.root, pg.host, String(pg.port)], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const result = JSON.parse(out.trim()) as { first: string; user: string; lease: string };
  assert.ok(result.first.startsWith(prefix));
  assert.ok(result.user.startsWith(prefix));
  assert.notEqual(result.user, result.first);
  assert.match(result.lease, /^database\/creds\/plain\//);
});

test('after the plain-JS run: every lease it took was revoked (no database user left)', async () => {
  assert.deepEqual(await rolesWithPrefix(pg, prefix), []);
});
