// Which creation statements grant directly to the dynamic user (and so grow
// an object's ACL per live user), and which do not: plugins/postgres/acl-limit.ts.
// The limit itself is reached against a real server in test/src/database/acl-limit.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aclLimitError, creationWarnings, directGrants } from '../../../plugins/postgres/acl-limit.ts';

const found = (statement: string) => directGrants([statement]).map((g) => ({ scope: g.scope, target: g.target, forGroup: g.forGroup }));

test('direct grants on tables, sequences, columns and ALL TABLES IN SCHEMA: the row-limited ACLs', () => {
  assert.deepEqual(found(`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'; GRANT SELECT ON orders TO "{{name}}";`), [
    { scope: 'row', target: 'orders', forGroup: 'GRANT SELECT ON orders TO app_users' },
  ]);
  assert.deepEqual(found('grant all privileges on table "Orders" to "{{name}}" with grant option'), [
    { scope: 'row', target: 'table "Orders"', forGroup: 'grant all privileges on table "Orders" to app_users' },
  ]);
  assert.deepEqual(found('GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{ username }}"'), [
    { scope: 'row', target: 'ALL TABLES IN SCHEMA public', forGroup: 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_users' },
  ]);
  assert.deepEqual(found('GRANT USAGE, SELECT ON SEQUENCE s TO {{name}}').map((g) => g.scope), ['row']);
  assert.deepEqual(found('GRANT SELECT (a, b) ON t TO {{name}}').map((g) => g.scope), ['row']);
  assert.deepEqual(found('GRANT SELECT ON t TO app_x, "{{name}}"').map((g) => g.scope), ['row']);
});

test('schemas, functions and databases (catalogs with TOAST) and ALTER DEFAULT PRIVILEGES have scopes of their own', () => {
  assert.deepEqual(found('GRANT USAGE ON SCHEMA app TO "{{name}}"').map((g) => g.scope), ['toasted']);
  assert.deepEqual(found('GRANT EXECUTE ON FUNCTION f(int, text) TO "{{name}}" GRANTED BY CURRENT_USER').map((g) => [g.scope, g.target]), [['toasted', 'FUNCTION f(int, text)']]);
  assert.deepEqual(found('GRANT CONNECT ON DATABASE app TO "{{name}}"').map((g) => g.scope), ['toasted']);
  assert.deepEqual(found('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{{name}}"'), [
    { scope: 'default', target: 'TABLES', forGroup: 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app_users' },
  ]);
});

test('a GRANT in a DO block is seen; role memberships, comments, strings and grants to others are not direct grants', () => {
  assert.deepEqual(found('DO $$ BEGIN GRANT SELECT ON t TO "{{name}}"; END $$').map((g) => g.forGroup), ['GRANT SELECT ON t TO app_users']);
  for (const statement of [
    'GRANT app_read TO "{{name}}"',
    'GRANT app_read, app_write TO {{name}} WITH ADMIN OPTION',
    'GRANT SELECT ON t TO app_read; -- GRANT SELECT ON t TO "{{name}}"',
    '/* GRANT SELECT ON t TO "{{name}}" */ GRANT app TO "{{name}}"',
    `COMMENT ON ROLE "{{name}}" IS 'GRANT SELECT ON t TO "{{name}}"'`,
    `ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`,
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM "{{name}}"',
    'REVOKE SELECT ON t FROM "{{name}}"',
  ]) {
    assert.deepEqual(found(statement), [], statement);
  }
  assert.deepEqual(creationWarnings([`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`, 'GRANT app_read TO "{{name}}"']), []);
});

test('the warning names the statements, the reason for each kind, and the group-role version of them', () => {
  const warnings = creationWarnings(['GRANT SELECT ON orders TO "{{name}}"; GRANT USAGE ON SCHEMA app TO "{{name}}"']);
  assert.equal(warnings.length, 1);
  const warning = warnings[0]!;
  assert.ok(warning.startsWith('creation_statements grant privileges directly to each user (GRANT SELECT ON orders TO "{{name}}"; GRANT USAGE ON SCHEMA app TO "{{name}}")'), warning);
  assert.match(warning, /"row is too big" \(SQLSTATE 54000\)/);
  assert.match(warning, /no hard limit on PostgreSQL 15/);
  assert.ok(warning.includes('CREATE ROLE app_users NOLOGIN; GRANT SELECT ON orders TO app_users; GRANT USAGE ON SCHEMA app TO app_users;'), warning);
  assert.ok(warning.includes('GRANT app_users TO "{{name}}"'), warning);
  assert.match(warning, /README "PostgreSQL: grant a group role, not each user"/);
});

test('aclLimitError: only SQLSTATE 54000, scrubbed, with the fix for the role\'s direct grants', () => {
  assert.equal(aclLimitError({ code: '42501', message: 'permission denied' }, [], []), undefined);
  assert.equal(aclLimitError(new Error('boom'), [], []), undefined);
  const err = aclLimitError({ code: '54000', message: 'row is too big: size 8168, maximum size 8160 secret-pw' }, ['GRANT SELECT ON t TO "{{name}}"'], ['secret-pw'])!;
  assert.equal(err.name, 'EngineLimitError');
  assert.ok(!err.message.includes('secret-pw'), err.message);
  assert.match(err.message, /^PostgreSQL refused to create the user: row is too big: .* \(SQLSTATE 54000\)\. Nothing was created\. /);
  assert.ok(err.message.includes('CREATE ROLE app_users NOLOGIN; GRANT SELECT ON t TO app_users'), err.message);
  // A full ACL the role's own statements do not explain (another role's grants, default privileges).
  assert.match(aclLimitError({ code: '54000', message: 'row is too big: size 8360, maximum size 8160' }, ['GRANT app TO "{{name}}"'], [])!.message, /Grant a group role instead of each user/);
  assert.match(aclLimitError({ code: '54000', message: 'target lists can have at most 1664 entries' }, [], [])!.message, /PostgreSQL Limits/);
});
