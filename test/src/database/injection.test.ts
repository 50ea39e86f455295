// Hostile names over HTTP against a real broker and a real PostgreSQL: role
// names, token display names (which feed the default username template) and
// username_template values full of quotes, semicolons, backslashes, dollar
// quotes, unicode and NUL. Each either gives a user with a sane name (and
// nothing else runs: a canary table survives) or a clean 400 naming the field.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import {
  configureConnection,
  createRole,
  dropRolesWithPrefix,
  issueCreds,
  roleExists,
  rolesWithPrefix,
  startPgBroker,
  tag,
  type PgBroker,
} from '../../support/pg-broker.ts';

const run = tag();
const canary = `canary_${run}`;
const userPrefix = `ti${run}`;
const LOGIN = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`];
const SAFE_USERNAME = /^[A-Za-z0-9_.@-]{1,63}$/;
let server: TestPostgres;
let pb: PgBroker;
const issued: string[] = [];

/** Strings that break naive quoting in SQL, shells, templates and C strings. */
const HOSTILE = [
  `a"b`,
  `a'b`,
  `x"; DROP TABLE ${'canary_' + run}; --`,
  `x'; DROP TABLE ${'canary_' + run}; --`,
  `back\\slash\\`,
  `\\'; SELECT 1; --`,
  '$$; DROP TABLE x; $$',
  '$tag$ inside $tag$',
  'semi;colon',
  'new\nline\r\ttab',
  'ünïcødé-ßø',
  'emoji-😀-ok',
  'nul\u0000byte',
  '{{name}}{{password}}',
  '{{ .RoleName }}',
  '%s%d%n',
  '   ',
  '...',
  'a'.repeat(200),
];

async function canaryAlive(): Promise<void> {
  assert.deepEqual(await adminQuery(server, `SELECT v FROM ${canary}`), [{ v: 1 }], 'the canary table must be untouched');
}

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await adminQuery(server, `CREATE TABLE ${canary} (v int); INSERT INTO ${canary} VALUES (1)`);
  await configureConnection(pb, server, 'main');
  // Default username template (v-<display>-<role>-<random>-<time>).
  await createRole(pb, 'plain', { db_name: 'main', default_ttl: '5m' });
});

after(async () => {
  await pb?.close();
  if (server) {
    for (const name of issued) await dropRolesWithPrefix(server, name).catch(() => undefined);
    await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
    await adminQuery(server, `DROP TABLE IF EXISTS ${canary}`).catch(() => undefined);
  }
  await server?.stop();
});

test('hostile role names are a clean 400 naming the field (or no such route), for roles and creds', async () => {
  for (const name of HOSTILE) {
    const path = encodeURIComponent(name);
    const put = await pb.api('PUT', `database/roles/${path}`, { db_name: 'main', creation_statements: [`CREATE ROLE "{{name}}"`] });
    assert.ok(put.status === 400 || put.status === 404, `role ${JSON.stringify(name)}: ${put.status} ${put.text}`);
    if (put.status === 400) assert.match(put.body.errors[0], /"name"/, put.text);
    const creds = await pb.api('GET', `database/creds/${path}`);
    assert.ok(creds.status === 400 || creds.status === 404, `creds ${JSON.stringify(name)}: ${creds.status} ${creds.text}`);
    const read = await pb.api('GET', `database/roles/${path}`);
    assert.ok(read.status === 400 || read.status === 404, `read ${JSON.stringify(name)}: ${read.status}`);
  }
  // A slash inside the name is a different path, never a role.
  assert.equal((await pb.api('PUT', `database/roles/a%2Fb`, { db_name: 'main', creation_statements: [`CREATE ROLE "{{name}}"`] })).status, 404);
  await canaryAlive();
  const list = await pb.list('database/roles');
  assert.deepEqual(list.body.data.keys, ['plain']);
});

test('hostile token display names feed the default username template and still give sane, working users', async () => {
  for (const displayName of HOSTILE) {
    const tok = await pb.api('PUT', 'auth/token/create', { policies: ['root'], display_name: displayName, ttl: '10m' });
    if (tok.status === 400) {
      assert.match(tok.body.errors[0], /display_name/, tok.text);
      continue;
    }
    assert.equal(tok.status, 200, tok.text);
    const creds = await issueCreds(pb, 'plain', tok.body.auth.client_token);
    issued.push(creds.username);
    assert.match(creds.username, SAFE_USERNAME, `display name ${JSON.stringify(displayName)} gave ${JSON.stringify(creds.username)}`);
    assert.match(creds.username, /^v-token[A-Za-z0-9_.-]{0,3}-plain-[A-Za-z0-9]{20}-\d{10}$/);
    assert.ok(await roleExists(server, creds.username), `the pg role is exactly ${creds.username}`);
  }
  await canaryAlive();
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/plain/')).status, 204);
  for (const name of issued) assert.equal(await roleExists(server, name), false);
});

test('hostile username_template values: a 400 naming username_template, or a user with a sane name; on roles and on connections', async () => {
  const mustFail = [
    `{{.RoleName}}"; DROP TABLE ${canary}; --`,
    `{{ printf "%s" "\\"; DROP TABLE ${canary}; --" }}`,
    `{{ printf "x'||pg_sleep(5)||'" }}`,
    '{{ exec "rm -rf /" }}',
    '{{ .Env.HOME }}',
    '{{ printf "%s" (',
    '{{ random 8 }',
    '{{ random -1 }}',
    '{{ truncate 0 .RoleName }}',
  ];
  const templates = [...HOSTILE.map((h) => `${userPrefix}${h}{{random 8}}`), ...mustFail];
  let accepted = 0;
  for (const template of templates) {
    const r = await pb.api('PUT', 'database/roles/tmpl', { db_name: 'main', creation_statements: LOGIN, username_template: template, default_ttl: '1m' });
    const what = `template ${JSON.stringify(template)}`;
    if (r.status === 204) {
      assert.ok(!mustFail.includes(template), `${what} was accepted`);
      accepted++;
      const creds = await pb.api('GET', 'database/creds/tmpl');
      if (creds.status === 400) {
        assert.match(creds.body.errors[0], /username_template/, `${what}: ${creds.text}`);
      } else {
        assert.equal(creds.status, 200, `${what}: ${creds.text}`);
        assert.match(creds.body.data.username, SAFE_USERNAME, what);
        assert.ok(creds.body.data.username.startsWith(userPrefix), what);
        assert.ok(await roleExists(server, creds.body.data.username), what);
      }
    } else {
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
      assert.match(r.body.errors[0], /username_template/, what);
    }
    const c = await pb.api('PUT', 'database/config/tmplconn', {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
      username: server.adminUser,
      password: server.adminPassword,
      username_template: template,
    });
    // A connection's template must hold for every role name (up to 128
    // characters), so one that puts .RoleName first may be refused there only.
    if (template.includes('.RoleName') && r.status === 204) assert.ok(c.status === 204 || c.status === 400, `connection ${what}: ${c.text}`);
    else assert.equal(c.status, r.status, `connection ${what}: ${c.text}`);
    if (c.status === 400) assert.match(c.body.errors[0], /username_template/, what);
    else assert.equal((await pb.api('DELETE', 'database/config/tmplconn')).status, 204);
    await canaryAlive();
  }
  // Some of the hostile strings are harmless inside a template (dots, letters, a long run of "a").
  assert.ok(accepted >= 2 && accepted < HOSTILE.length, `accepted ${accepted}`);
  assert.equal((await pb.api('GET', 'database/config/tmplconn')).status, 404);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/tmpl/')).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
});

test('templates that pass give exactly the name they render, cut to 63 bytes', async () => {
  const cases: Array<[string, RegExp]> = [
    [`${userPrefix}-{{ .RoleName | uppercase }}-{{ random 8 }}`, new RegExp(`^${userPrefix}-TMPL-[A-Za-z0-9]{8}$`)],
    [`{{ printf "${userPrefix}_%s_%s" (.RoleName | truncate 2) (random 10) }}`, new RegExp(`^${userPrefix}_tm_[A-Za-z0-9]{10}$`)],
    [`${userPrefix}{{ random 100 }}`, new RegExp(`^${userPrefix}[A-Za-z0-9]{${63 - userPrefix.length}}$`)],
    [`${userPrefix}.{{ .DisplayName | truncate 8 | replace "-" "." }}.{{ unix_time }}{{ random 8 }}`, new RegExp(`^${userPrefix}\\.root\\.\\d{10}[A-Za-z0-9]{8}$`)],
  ];
  for (const [template, shape] of cases) {
    const r = await pb.api('PUT', 'database/roles/tmpl', { db_name: 'main', creation_statements: LOGIN, username_template: template, default_ttl: '1m' });
    assert.equal(r.status, 204, `${template}: ${r.text}`);
    const creds = await issueCreds(pb, 'tmpl');
    assert.match(creds.username, shape);
    assert.ok(Buffer.byteLength(creds.username) <= 63);
    assert.ok(await roleExists(server, creds.username));
  }
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/tmpl/')).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
  await canaryAlive();
});

test('a template that cannot make unique names is a 400 at role and connection write, and nothing is written', async () => {
  // Fixed, too little random, or random cut away by the 63-character limit
  // (for the longest display name a token can have): the second creds would
  // ask PostgreSQL for a name that exists. (The engine's refusal to take over
  // an existing role is tested in test/plugins/postgres/engine.test.ts.)
  const cannot = [
    `${userPrefix}fixed`,
    `${userPrefix}{{ random 7 }}`,
    `${userPrefix}{{ .DisplayName }}{{ random 20 }}`,
    `{{ printf "%s-%s" ("x" | printf "%s%s%s%s%s%s%s%s" "aaaaaaaa" "aaaaaaaa" "aaaaaaaa" "aaaaaaaa" "aaaaaaaa" "aaaaaaaa" "aaaaaaaa") (random 20) }}`,
  ];
  assert.equal((await pb.api('DELETE', 'database/roles/tmpl')).status, 204);
  for (const template of cannot) {
    const r = await pb.api('PUT', 'database/roles/tmpl', { db_name: 'main', creation_statements: LOGIN, username_template: template, default_ttl: '5m' });
    assert.equal(r.status, 400, `${template}: ${r.text}`);
    assert.match(r.body.errors[0], /^invalid field "username_template": must make unique usernames/, template);
    const c = await pb.api('PUT', 'database/config/tmplconn', {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
      username: server.adminUser,
      password: server.adminPassword,
      username_template: template,
    });
    assert.equal(c.status, 400, `connection ${template}: ${c.text}`);
    assert.match(c.body.errors[0], /^invalid field "username_template": must make unique usernames/, template);
  }
  assert.equal((await pb.api('GET', 'database/roles/tmpl')).status, 404);
  assert.equal((await pb.api('GET', 'database/config/tmplconn')).status, 404);
  // Eight random characters within the limit are enough, and two creds differ.
  assert.equal((await pb.api('PUT', 'database/roles/tmpl', { db_name: 'main', creation_statements: LOGIN, username_template: `${userPrefix}{{ random 8 }}`, default_ttl: '5m' })).status, 204);
  const [a, b] = [await issueCreds(pb, 'tmpl'), await issueCreds(pb, 'tmpl')];
  assert.match(a.username, new RegExp(`^${userPrefix}[A-Za-z0-9]{8}$`));
  assert.notEqual(a.username, b.username);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/tmpl/')).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
  await canaryAlive();
});
