// Which rendered statements need the user-change lock (plugins/postgres/lock-scope.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firstLockedStatement, needsUserChangeLock } from '../../../plugins/postgres/lock-scope.ts';

test('role creation, role drops and role membership grants need no lock', () => {
  for (const statement of [
    `CREATE ROLE "v-a" WITH LOGIN PASSWORD 'x ON y' VALID UNTIL '2030-01-01 00:00:00+00'`,
    `create user "v-a" in role app_read`,
    `CREATE GROUP g`,
    `GRANT app_read TO "v-a"`,
    `GRANT app_read, "ON" TO "v-a" WITH ADMIN OPTION`,
    `REVOKE app_read FROM "v-a"`,
    `DROP ROLE IF EXISTS "v-a", "v-b"`,
    `/* ON */ GRANT app_read TO "v-a" -- ON t`,
    `GRANT app_read TO "v-a" GRANTED BY CURRENT_USER`,
  ]) {
    assert.equal(needsUserChangeLock(statement), false, statement);
  }
});

test('object privileges, owned-object statements and anything else need the lock', () => {
  for (const statement of [
    `GRANT SELECT ON t TO "v-a"`,
    `grant select on all tables in schema public to "v-a"`,
    `GRANT USAGE ON SCHEMA s TO "v-a"`,
    `REVOKE ALL ON t FROM "v-a"`,
    `GRANT/**/SELECT/**/ON/**/t TO x`,
    `DROP OWNED BY "v-a"`,
    `REASSIGN OWNED BY "v-a" TO CURRENT_USER`,
    `ALTER ROLE "v-a" NOLOGIN`,
    `ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO "v-a"`,
    `CREATE USER MAPPING FOR "v-a" SERVER s`,
    `DROP USER MAPPING FOR "v-a" SERVER s`,
    `DO $$ BEGIN EXECUTE 'GRANT app TO x'; END $$`,
    `SELECT 1`,
  ]) {
    assert.equal(needsUserChangeLock(statement), true, statement);
  }
});

test('firstLockedStatement: the lock is taken before the first statement that needs it', () => {
  assert.equal(firstLockedStatement([`CREATE ROLE a`, `GRANT g TO a`, `GRANT SELECT ON t TO a`, `GRANT h TO a`]), 2);
  assert.equal(firstLockedStatement([`CREATE ROLE a`, `GRANT g TO a`]), 2);
  assert.equal(firstLockedStatement([`ALTER ROLE a VALID UNTIL 'infinity'`]), 0);
});
