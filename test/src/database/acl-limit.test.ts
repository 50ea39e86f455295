// PostgreSQL's per-object ACL row limit (plugins/postgres/acl-limit.ts), over
// HTTP against a real broker and the shared PostgreSQL: the role write warns
// about direct grants and not about a group role; a group role really gives
// the privileges; and when a table's ACL is full, creds answer 409 with the
// explanation, keep no lease and leave no user.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { configureConnection, dropRolesWithPrefix, issueCreds, LOGIN_ROLE, prefixTemplate, rolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { MEASURED_TABLE_GRANTEES, MEASURED_TABLE_GRANTEES_LOW } from '../../../plugins/postgres/acl-limit.ts';

const run = tag();
const table = `acl_t_${run}`;
const full = `acl_full_${run}`;
const group = `acl_grp_${run}`;
/** Roles made with raw SQL to fill `full`'s ACL. */
const rawPrefix = `acl_raw_${run}_`;
/** Users the broker makes (username_template). */
const userPrefix = `acl${run}u`;
let server: TestPostgres;
let pb: PgBroker;

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker()]);
  await adminQuery(server, `CREATE TABLE ${table} (v int); INSERT INTO ${table} VALUES (7); CREATE TABLE ${full} (v int); CREATE ROLE ${group} NOLOGIN; GRANT SELECT ON ${table} TO ${group}`);
  await configureConnection(pb, server, 'main');
});

after(async () => {
  if (pb) {
    await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/', {});
    await pb.close();
  }
  if (server) {
    // Dropping the tables first removes the raw roles' ACL entries, so each DROP ROLE is plain.
    await adminQuery(server, `DROP TABLE IF EXISTS ${full}; DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    await adminQuery(server, `DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE starts_with(rolname, '${rawPrefix}') LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END $$`).catch(() => undefined);
    await dropRolesWithPrefix(server, userPrefix);
    await adminQuery(server, `DROP ROLE IF EXISTS ${group}`).catch(() => undefined);
    await server.stop();
  }
});

const roleBody = (grant: string, extra: Record<string, unknown> = {}) => ({
  db_name: 'main',
  creation_statements: [LOGIN_ROLE, grant],
  username_template: prefixTemplate(userPrefix),
  default_ttl: '10m',
  ...extra,
});

test('role write with a direct table grant: 200, saved, one warning explaining the ACL limit and the group-role pattern', async () => {
  const grant = `GRANT SELECT ON ${table} TO "{{name}}"`;
  const r = await pb.api('PUT', 'database/roles/direct', roleBody(grant));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.warnings.length, 1, r.text);
  const warning: string = r.body.warnings[0];
  assert.ok(warning.includes(grant), warning);
  assert.match(warning, /row is too big/);
  assert.match(warning, /SQLSTATE 54000/);
  assert.match(warning, /about 2,400 live grantees per table \(2,421 to 2,443 measured on PostgreSQL 15/);
  // The fix, with this role's own privileges and table.
  assert.ok(warning.includes(`CREATE ROLE app_users NOLOGIN; GRANT SELECT ON ${table} TO app_users`), warning);
  assert.ok(warning.includes('GRANT app_users TO "{{name}}"'), warning);
  const saved = await pb.api('GET', 'database/roles/direct');
  assert.equal(saved.status, 200, saved.text);
  assert.deepEqual(saved.body.data.creation_statements, [LOGIN_ROLE, grant]);
});

test('role write: ALL TABLES IN SCHEMA and ALTER DEFAULT PRIVILEGES to the user warn too, each with its own reason', async () => {
  const all = await pb.api('PUT', 'database/roles/all-tables', roleBody('GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{username}}"'));
  assert.equal(all.status, 200, all.text);
  assert.match(all.body.warnings[0], /row is too big/);
  assert.match(all.body.warnings[0], /GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_users/);
  const defaults = await pb.api('PUT', 'database/roles/defaults', roleBody('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {{name}}'));
  assert.equal(defaults.status, 200, defaults.text);
  assert.match(defaults.body.warnings[0], /every object created later/);
  assert.match(defaults.body.warnings[0], /CREATE TABLE in that scope fails/);
  const schema = await pb.api('PUT', 'database/roles/schema', roleBody('GRANT USAGE ON SCHEMA public TO "{{name}}"'));
  assert.equal(schema.status, 200, schema.text);
  assert.match(schema.body.warnings[0], /no hard limit/);
  assert.doesNotMatch(schema.body.warnings[0], /row is too big/);
});

test('role write with a group-role grant: 204, no warning; the user gets the privileges through the group', async () => {
  const r = await pb.api('PUT', 'database/roles/grouped', roleBody(`GRANT ${group} TO "{{name}}"`));
  assert.equal(r.status, 204, r.text);
  const creds = await issueCreds(pb, 'grouped');
  const client = new pg.Client({ connectionString: server.urlFor(creds.username, creds.password) });
  client.on('error', () => undefined);
  await client.connect();
  try {
    assert.deepEqual((await client.query(`SELECT v FROM ${table}`)).rows, [{ v: 7 }]);
  } finally {
    await client.end();
  }
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
});

/** Create `count` NOLOGIN roles granted SELECT on `full`, a few transactions of server-side loops. */
async function fillAcl(count: number): Promise<void> {
  const step = 500;
  for (let from = 1; from <= count; from += step) {
    const to = Math.min(count, from + step - 1);
    await adminQuery(
      server,
      `DO $$ BEGIN FOR i IN ${from}..${to} LOOP
         EXECUTE format('CREATE ROLE %I NOLOGIN', '${rawPrefix}' || i);
         EXECUTE format('GRANT SELECT ON ${full} TO %I', '${rawPrefix}' || i);
       END LOOP; END $$`,
    );
  }
}

test('a full ACL at creds: the next creds answer 409 saying what happened and what to do, keep no lease and leave no user', async () => {
  const role = 'fills';
  const users = `${userPrefix}f`;
  const r = await pb.api('PUT', `database/roles/${role}`, roleBody(`GRANT SELECT ON ${full} TO "{{name}}"`, { username_template: prefixTemplate(users) }));
  assert.equal(r.status, 200, r.text);
  const raw = 2400;
  await fillAcl(raw);

  // Issue until the table's ACL row is full (about 2,400 grantees; the exact number depends on how the list compresses).
  const issued: string[] = [];
  let refused: Awaited<ReturnType<PgBroker['api']>> | undefined;
  for (let i = 0; i < 100 && !refused; i++) {
    const c = await pb.api('GET', `database/creds/${role}`);
    if (c.status === 200) issued.push(c.body.lease_id);
    else refused = c;
  }
  assert.ok(refused, `still issuing after ${raw + issued.length} grantees`);
  assert.equal(refused.status, 409, refused.text);
  const total = raw + issued.length;
  assert.ok(total >= MEASURED_TABLE_GRANTEES_LOW - 50 && total <= MEASURED_TABLE_GRANTEES, `the ACL took ${total} grantees`);
  const message: string = refused.body.errors[0];
  assert.match(message, /^database connection "main" is at a limit of the database: PostgreSQL refused to create the user: row is too big: size \d+, maximum size \d+ \(SQLSTATE 54000\)\. Nothing was created\./);
  assert.ok(message.includes(`GRANT SELECT ON ${full} TO "{{name}}"`), message);
  assert.ok(message.includes(`CREATE ROLE app_users NOLOGIN; GRANT SELECT ON ${full} TO app_users`), message);
  assert.ok(message.includes('GRANT app_users TO "{{name}}"'), message);

  // The failed issuance left nothing: only the issued leases, only their users.
  const prefix = `database/creds/${role}/`;
  const leases = await pb.list(`sys/leases/lookup/${prefix}`);
  assert.equal(leases.status, 200, leases.text);
  assert.deepEqual((leases.body.data.keys as string[]).map((k) => prefix + k).sort(), [...issued].sort());
  const grantees = await adminQuery<{ n: number }>(server, `SELECT cardinality(relacl) AS n FROM pg_class WHERE oid = '${full}'::regclass`);
  assert.equal(grantees[0]!.n, total + 1, 'the grantees and the owner');
  assert.equal((await rolesWithPrefix(server, users)).length, issued.length);

  // Revoking one lease makes room again; revoking them all leaves no user.
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: issued.pop() })).status, 204);
  issued.push((await issueCreds(pb, role)).leaseId);
  assert.equal((await pb.api('PUT', `sys/leases/revoke-prefix/${prefix}`, {})).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, users), []);
});
