// allowed_roles globs (issue 8 item 6): Vault matches each entry as a glob
// with a leading and/or trailing "*" (strutil.StrListContainsGlob), for
// dynamic creds and for static roles. Unit cases, then a real broker and
// PostgreSQL.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { roleAllowed } from '../../../src/database/allowed-roles.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { dropRolesWithPrefix, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';

test('roleAllowed: exact names, "*", leading/trailing/both globs; nothing else is a pattern', () => {
  const allowed = ['dev-*', 'ops', '*-ro', '*mid*'];
  for (const role of ['dev-app', 'dev-', 'ops', 'report-ro', '-ro', 'xmidx', 'mid']) assert.equal(roleAllowed(allowed, role), true, role);
  for (const role of ['dev', 'ops2', 'xops', 'ro', 'app', 'DEV-app', 'de-vapp']) assert.equal(roleAllowed(allowed, role), false, role);
  assert.equal(roleAllowed(['*'], 'anything'), true);
  assert.equal(roleAllowed([], 'anything'), false);
  // Only a leading or trailing "*" is special (Vault's GlobbedStringsMatch).
  assert.equal(roleAllowed(['d*p'], 'dev-app'), false);
  assert.equal(roleAllowed(['d*p'], 'd*p'), true);
  assert.equal(roleAllowed(['**'], 'x'), true, '"**": contains ""');
  assert.equal(roleAllowed(['?'], 'x'), false);
});

const run = tag();
const PREFIX = `ar${run}`;
let server: TestPostgres;
let pb: PgBroker;

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  const r = await pb.api('PUT', 'database/config/main', {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: ['dev-*', 'ops', '*-ro'],
    username_template: `{{ printf "${PREFIX}%s" (random 20) }}`,
  });
  assert.equal(r.status, 204, r.text);
  for (const role of ['dev-app', 'ops', 'report-ro', 'other', 'devapp']) {
    const w = await pb.api('PUT', `database/roles/${role}`, { db_name: 'main', creation_statements: `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'` });
    if (role === 'other' || role === 'devapp') {
      // Saved (as Vault does: the connection may allow it later), with a warning that creds are refused until then.
      assert.equal(w.status, 200, w.text);
      assert.deepEqual(w.body.warnings, ['connection "main" does not allow this role (allowed_roles): creds for it are refused until the role is added to the connection\'s allowed_roles']);
    } else assert.equal(w.status, 204, w.text);
  }
});

after(async () => {
  await pb?.api('PUT', 'sys/leases/revoke-prefix/database/creds/').catch(() => undefined);
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, PREFIX);
  await server?.stop();
});

test('the reported case: allowed_roles ["dev-*","ops"] lets role dev-app get creds (it answered 400 "not allowed")', async () => {
  for (const role of ['dev-app', 'ops', 'report-ro']) {
    const r = await pb.api('GET', `database/creds/${role}`);
    assert.equal(r.status, 200, `${role}: ${r.text}`);
    assert.ok(await roleExists(server, r.body.data.username));
    assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: r.body.lease_id })).status, 204);
  }
  for (const role of ['other', 'devapp']) {
    const r = await pb.api('GET', `database/creds/${role}`);
    assert.equal(r.status, 400, `${role}: ${r.text}`);
    assert.match(r.body.errors[0], new RegExp(`role "${role}" is not allowed by connection "main"`));
  }
});

test('static roles match the globs too', async () => {
  const user = `${PREFIX}static`;
  await adminQuery(server, `CREATE ROLE "${user}" LOGIN PASSWORD 'x'`);
  try {
    const refused = await pb.api('PUT', 'database/static-roles/static-x', { db_name: 'main', username: user, rotation_period: '1h' });
    assert.equal(refused.status, 400, refused.text);
    assert.match(refused.body.errors[0], /role "static-x" is not allowed by connection "main"/);
    const ok = await pb.api('PUT', 'database/static-roles/dev-static', { db_name: 'main', username: user, rotation_period: '1h' });
    assert.equal(ok.status, 204, ok.text);
    const creds = await pb.api('GET', 'database/static-creds/dev-static');
    assert.equal(creds.status, 200, creds.text);
    assert.equal(creds.body.data.username, user);
    assert.equal((await pb.api('DELETE', 'database/static-roles/dev-static')).status, 204);
  } finally {
    await adminQuery(server, `DROP ROLE IF EXISTS "${user}"`);
  }
});
