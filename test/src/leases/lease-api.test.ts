// sys/leases/* over HTTP against a real broker process and a real
// PostgreSQL (scram-sha-256, so VALID UNTIL is the one the server enforces):
// lookup, list, renew (moving VALID UNTIL, capped at max_ttl), revoke (sync
// and async, one lease only), revoke-prefix, revoke-force, count, the
// irrevocable listing, sudo, and the old sys/renew and sys/revoke aliases.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { eventually } from '../../support/broker.ts';
import { adminQuery, startScramPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import {
  configureConnection,
  createRole,
  dropRolesWithPrefix,
  issueCreds,
  prefixTemplate,
  roleExists,
  rolesWithPrefix,
  startPgBroker,
  tag,
  type PgBroker,
} from '../../support/pg-broker.ts';

const run = tag();
const userPrefix = `tl${run}`;
let server: TestPostgres;
let pb: PgBroker;

const validUntil = async (username: string): Promise<number> => {
  const [row] = await adminQuery<{ until: Date | null }>(server, 'SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [username]);
  assert.ok(row?.until, `no VALID UNTIL for ${username}`);
  return row.until.getTime();
};
const lookup = (leaseId: string) => pb.api('PUT', 'sys/leases/lookup', { lease_id: leaseId });
const near = (actual: number, expected: number, slackMs: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= slackMs, `${what}: ${new Date(actual).toISOString()} is not within ${slackMs} ms of ${new Date(expected).toISOString()}`);

before(async () => {
  [server, pb] = await Promise.all([startScramPostgres(), startPgBroker()]);
  await configureConnection(pb, server, 'main');
  const role = (name: string, fields: Record<string, unknown>) => createRole(pb, name, { db_name: 'main', username_template: prefixTemplate(`${userPrefix}${name}-`), ...fields });
  await role('app', { default_ttl: '10m', max_ttl: '1h' });
  await role('other', { default_ttl: '10m', max_ttl: '1h' });
  await role('app-admin', { default_ttl: '10m', max_ttl: '1h' });
  await role('app_x', { default_ttl: '10m', max_ttl: '1h' });
  await role('appyx', { default_ttl: '10m', max_ttl: '1h' });
  await role('tight', { default_ttl: '20s', max_ttl: '40s' });
  await role('brief', { default_ttl: '2s', max_ttl: '2s' });
});

after(async () => {
  await pb?.close();
  if (server) await dropRolesWithPrefix(server, userPrefix).catch(() => undefined);
  await server?.stop();
});

test('lookup: Vault fields; unknown, missing or malformed lease ids are 400', async () => {
  const creds = await issueCreds(pb, 'app');
  const r = await lookup(creds.leaseId);
  assert.equal(r.status, 200, r.text);
  const d = r.body.data;
  assert.equal(d.id, creds.leaseId);
  assert.equal(d.renewable, true);
  assert.equal(d.last_renewal, null);
  assert.ok(d.ttl > 590 && d.ttl <= 600, `ttl ${d.ttl}`);
  near(Date.parse(d.issue_time), Date.now(), 5000, 'issue_time');
  near(Date.parse(d.expire_time), Date.now() + 600_000, 5000, 'expire_time');
  assert.equal(d.revocation_attempts, undefined, 'no revocation has failed');

  const unknown = await lookup('database/creds/app/doesnotexist0000000000000');
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.errors[0], /lease not found/);
  const missing = await pb.api('PUT', 'sys/leases/lookup', {});
  assert.equal(missing.status, 400);
  assert.match(missing.body.errors[0], /lease_id/);
  const wrongType = await pb.api('PUT', 'sys/leases/lookup', { lease_id: 42 });
  assert.equal(wrongType.status, 400);
  assert.match(wrongType.body.errors[0], /lease_id/);
  // An unknown field is ignored with Vault's warning; the lookup still answers.
  const unknownField = await pb.api('PUT', 'sys/leases/lookup', { lease_id: creds.leaseId, bogus: 1 });
  assert.equal(unknownField.status, 200);
  assert.equal(unknownField.body.data.id, creds.leaseId);
  assert.deepEqual(unknownField.body.warnings, ['Endpoint ignored these unrecognized parameters: [bogus]']);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
});

test('lookup reads the row as stored now (no cache), never its sealed context; a pending lease stays invisible', async () => {
  // Rows written behind the broker's back through a second SQLite connection:
  // what lookup answers is what the store holds at that moment. The sealed
  // context is not ciphertext at all, so a lookup that tried to decrypt it would fail.
  const id = `database/creds/app/direct${run}`;
  const hour = Date.now() + 3_600_000;
  const db = new Database(pb.broker.storagePath);
  try {
    db.prepare(
      `INSERT INTO leases (id, mount, role, connection, state, issue_time, expire_time, max_expire_time, last_renewal, due_at, attempts, last_error, token_hash, sealed)
       VALUES (?, 'database/', 'app', 'main', 'pending', ?, ?, ?, NULL, ?, 0, NULL, NULL, x'00')`,
    ).run(id, Date.now(), hour, hour, hour);
    const pending = await lookup(id);
    assert.equal(pending.status, 400, pending.text);
    assert.match(pending.body.errors[0], /lease not found/, 'a lease whose issuance has not finished is not shown');

    db.prepare("UPDATE leases SET state = 'active' WHERE id = ?").run(id);
    const active = await lookup(id);
    assert.equal(active.status, 200, active.text);
    assert.equal(active.body.data.id, id);
    assert.equal(active.body.data.renewable, true);
    assert.equal(active.body.data.expire_time, new Date(hour).toISOString());
    assert.equal(active.body.data.revocation_attempts, undefined);

    db.prepare("UPDATE leases SET state = 'revoking', attempts = 5, last_error = 'boom', due_at = ? WHERE id = ?").run(hour, id);
    const failing = await lookup(id);
    assert.equal(failing.status, 200, failing.text);
    assert.deepEqual(
      [failing.body.data.renewable, failing.body.data.revocation_attempts, failing.body.data.last_revocation_error, failing.body.data.next_revocation_attempt, failing.body.data.irrevocable],
      [false, 5, 'boom', new Date(hour).toISOString(), true],
      'the next lookup sees the write at once',
    );

    db.prepare('DELETE FROM leases WHERE id = ?').run(id);
    const gone = await lookup(id);
    assert.equal(gone.status, 400, gone.text);
    assert.match(gone.body.errors[0], /lease not found/);
  } finally {
    db.prepare('DELETE FROM leases WHERE id = ?').run(id);
    db.close();
  }
});

test('list: directory-style keys under a prefix; an empty listing is a 404', async () => {
  const a = await issueCreds(pb, 'app');
  const b = await issueCreds(pb, 'app');
  const o = await issueCreds(pb, 'other');
  const underApp = await pb.list('sys/leases/lookup/database/creds/app/');
  assert.equal(underApp.status, 200, underApp.text);
  assert.deepEqual([...underApp.body.data.keys].sort(), [a.leaseId, b.leaseId].map((id) => id.split('/').pop()).sort());
  // Without the trailing slash too.
  assert.deepEqual((await pb.list('sys/leases/lookup/database/creds/app')).body.data.keys.length, 2);
  const roles = await pb.list('sys/leases/lookup/database/creds/');
  assert.ok(roles.body.data.keys.includes('app/') && roles.body.data.keys.includes('other/'), roles.text);
  assert.equal((await pb.list('sys/leases/lookup/database/creds/nobody/')).status, 404);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/app/')).status, 204);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: o.leaseId })).status, 204);
  assert.equal((await pb.list('sys/leases/lookup/database/creds/app/')).status, 404);
});

test('renew: moves expire_time and VALID UNTIL; no increment means the role default_ttl', async () => {
  const creds = await issueCreds(pb, 'app');
  const before = await validUntil(creds.username);
  near(before, Date.now() + 600_000 + 5000, 5000, 'VALID UNTIL at issue');

  const r = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: '30m' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.lease_id, creds.leaseId);
  assert.equal(r.body.renewable, true);
  assert.equal(r.body.lease_duration, 1800);
  assert.equal(r.body.warnings, null);
  const moved = await validUntil(creds.username);
  near(moved, Date.now() + 1800_000 + 5000, 5000, 'VALID UNTIL after renew');
  const l = (await lookup(creds.leaseId)).body.data;
  near(Date.parse(l.expire_time), Date.now() + 1800_000, 5000, 'expire_time after renew');
  near(Date.parse(l.last_renewal), Date.now(), 5000, 'last_renewal');

  // A shorter increment shortens the lease (counted from now, as Vault).
  const shorter = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: 120 });
  assert.equal(shorter.body.lease_duration, 120);
  near(await validUntil(creds.username), Date.now() + 125_000, 5000, 'VALID UNTIL after a shorter renew');
  const byDefault = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId });
  assert.equal(byDefault.body.lease_duration, 600);
  // The lease id in the path, as the Vault CLI sends it.
  const inPath = await pb.api('PUT', `sys/leases/renew/${creds.leaseId}`, { increment: '15m' });
  assert.equal(inPath.status, 200, inPath.text);
  assert.equal(inPath.body.lease_duration, 900);

  const bad = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: 'a while' });
  assert.equal(bad.status, 400);
  assert.match(bad.body.errors[0], /increment/);
  const negative = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: -5 });
  assert.equal(negative.status, 400);
  assert.match(negative.body.errors[0], /increment/);
  assert.equal((await pb.api('PUT', 'sys/leases/renew', { lease_id: 'database/creds/app/nope' })).status, 400);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
});

test('renew past max_ttl is capped at max_ttl from issue time, with a warning; VALID UNTIL follows the cap', async () => {
  const creds = await issueCreds(pb, 'tight');
  assert.equal(creds.leaseDuration, 20);
  const issuedAt = Date.parse((await lookup(creds.leaseId)).body.data.issue_time);
  const r = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: '1h' });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.body.lease_duration <= 40 && r.body.lease_duration >= 35, `lease_duration ${r.body.lease_duration}`);
  assert.ok(Array.isArray(r.body.warnings) && r.body.warnings.length === 1, r.text);
  assert.match(r.body.warnings[0], /max_ttl/);
  const l = (await lookup(creds.leaseId)).body.data;
  near(Date.parse(l.expire_time), issuedAt + 40_000, 1500, 'expire_time capped at max_ttl');
  near(await validUntil(creds.username), issuedAt + 45_000, 2500, 'VALID UNTIL capped at max_ttl');
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
});

test('a lease at its max_ttl cannot be renewed any further: 400', async () => {
  const creds = await issueCreds(pb, 'brief');
  // The TTL is already the max: renewing is capped to what is left.
  const capped = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: 60 });
  assert.equal(capped.status, 200, capped.text);
  assert.ok(capped.body.lease_duration <= 2);
  assert.match(capped.body.warnings[0], /max_ttl/);
  await eventually(async () => (await lookup(creds.leaseId)).status !== 200 || (await lookup(creds.leaseId)).body.data.ttl === 0, 5000, 'the lease to reach its end');
  const past = await pb.api('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: 60 });
  assert.equal(past.status, 400, past.text);
  assert.match(past.body.errors[0], /not renewable|max_ttl|not found/);
  await eventually(async () => !(await roleExists(server, creds.username)), 10_000, 'the expired lease to be revoked');
});

test('revoke: sync drops the user before answering; sync=false answers 202 and the loop revokes; one lease only', async () => {
  const [a, b, c] = await Promise.all([issueCreds(pb, 'app'), issueCreds(pb, 'app'), issueCreds(pb, 'app')]);
  const sync = await pb.api('PUT', 'sys/leases/revoke', { lease_id: a.leaseId });
  assert.equal(sync.status, 204);
  assert.equal(await roleExists(server, a.username), false);
  assert.equal((await lookup(a.leaseId)).status, 400);

  // A partial lease id is not a prefix: revoke acts on one exact lease (prefixes need sudo).
  const partial = await pb.api('PUT', 'sys/leases/revoke', { lease_id: 'database/creds/app/', sync: false });
  assert.equal(partial.status, 202);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal((await lookup(b.leaseId)).status, 200);
  assert.ok(await roleExists(server, b.username));

  const async = await pb.api('PUT', 'sys/leases/revoke', { lease_id: b.leaseId, sync: false });
  assert.equal(async.status, 202);
  await eventually(async () => !(await roleExists(server, b.username)), 10_000, 'the async revocation');
  await eventually(async () => (await lookup(b.leaseId)).status === 400, 5000, 'the lease to be forgotten');
  // The id in the path.
  assert.equal((await pb.api('PUT', `sys/leases/revoke/${c.leaseId}`)).status, 204);
  assert.equal(await roleExists(server, c.username), false);
});

test('revoke-prefix revokes every lease under the prefix, synchronously, and nothing else', async () => {
  const apps = await Promise.all([issueCreds(pb, 'app'), issueCreds(pb, 'app'), issueCreds(pb, 'app')]);
  const other = await issueCreds(pb, 'other');
  const r = await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/app/');
  assert.equal(r.status, 204, r.text);
  for (const l of apps) assert.equal(await roleExists(server, l.username), false);
  assert.equal((await pb.list('sys/leases/lookup/database/creds/app/')).status, 404);
  assert.equal((await lookup(other.leaseId)).status, 200);
  assert.ok(await roleExists(server, other.username));

  // sync=false: 202, the loop does it.
  const later = await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/other', { sync: false });
  assert.equal(later.status, 202);
  await eventually(async () => !(await roleExists(server, other.username)), 10_000, 'the async revoke-prefix');
  const empty = await pb.api('PUT', 'sys/leases/revoke-prefix/');
  assert.equal(empty.status, 400);
  assert.match(empty.body.errors[0], /prefix/);
  // The old alias.
  const d = await issueCreds(pb, 'app');
  assert.equal((await pb.api('PUT', 'sys/revoke-prefix/database/creds/app/')).status, 204);
  assert.equal(await roleExists(server, d.username), false);
});

test('a prefix stops at a path boundary (Vault): "database/creds/app" never reaches "app-admin"; a whole lease id still names one lease', async () => {
  const gone = async (l: { leaseId: string; username: string }) => !(await roleExists(server, l.username)) && (await lookup(l.leaseId)).status === 400;
  const alive = async (l: { leaseId: string; username: string }, what: string) => {
    assert.equal((await lookup(l.leaseId)).status, 200, `${what}: lease ${l.leaseId} must stay`);
    assert.ok(await roleExists(server, l.username), `${what}: user ${l.username} must stay`);
  };

  // LIST: the prefix without a slash lists under "<prefix>/" only.
  const [app, admin] = await Promise.all([issueCreds(pb, 'app'), issueCreds(pb, 'app-admin')]);
  const listed = await pb.list('sys/leases/lookup/database/creds/app');
  assert.equal(listed.status, 200, listed.text);
  assert.deepEqual(listed.body.data.keys, [app.leaseId.split('/').pop()]);
  // Raw LIST too.
  const raw = await pb.broker.api('LIST', 'sys/leases/lookup/database/creds/app', { token: pb.root });
  assert.deepEqual(raw.body.data.keys, [app.leaseId.split('/').pop()]);
  assert.equal((await pb.list('sys/leases/lookup/database/creds/ap')).status, 404, 'a partial segment lists nothing');

  // revoke-prefix, sync, without the trailing slash.
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/app')).status, 204);
  assert.ok(await gone(app), 'the app lease is revoked');
  await alive(admin, 'revoke-prefix database/creds/app');
  // A partial segment names nothing.
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/app-adm')).status, 204);
  await alive(admin, 'revoke-prefix database/creds/app-adm');

  // The old alias and sync=false follow the same rule.
  const app2 = await issueCreds(pb, 'app');
  assert.equal((await pb.api('PUT', 'sys/revoke-prefix/database/creds/app')).status, 204);
  assert.ok(await gone(app2));
  await alive(admin, 'sys/revoke-prefix database/creds/app');
  const app3 = await issueCreds(pb, 'app');
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/app', { sync: false })).status, 202);
  await eventually(() => gone(app3), 10_000, 'the async revoke-prefix');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await alive(admin, 'async revoke-prefix database/creds/app');

  // "_" is no wildcard: app_x does not reach appyx.
  const [under, lookalike] = await Promise.all([issueCreds(pb, 'app_x'), issueCreds(pb, 'appyx')]);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/app_x')).status, 204);
  assert.ok(await gone(under));
  await alive(lookalike, 'revoke-prefix database/creds/app_x');
  assert.equal((await pb.api('PUT', `sys/leases/revoke/${lookalike.leaseId}`)).status, 204);

  // A whole lease id as the prefix: that lease, sync and async.
  const [one, two] = await Promise.all([issueCreds(pb, 'app-admin'), issueCreds(pb, 'app-admin')]);
  assert.equal((await pb.api('PUT', `sys/leases/revoke-prefix/${one.leaseId}`)).status, 204);
  assert.ok(await gone(one));
  await alive(two, 'revoke-prefix of another lease id');
  assert.equal((await pb.api('PUT', `sys/leases/revoke-prefix/${two.leaseId}`, { sync: false })).status, 202);
  await eventually(() => gone(two), 10_000, 'the async revoke-prefix of one lease id');
  await alive(admin, 'revoke-prefix of other lease ids');

  // revoke-force: forgets under "<prefix>/" only; the app-admin lease (and its user) stay tracked.
  const app4 = await issueCreds(pb, 'app');
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-force/database/creds/app')).status, 204);
  assert.equal((await lookup(app4.leaseId)).status, 400, 'the app lease is forgotten');
  assert.ok(await roleExists(server, app4.username), 'revoke-force does not drop users');
  await alive(admin, 'revoke-force database/creds/app');
  await dropRolesWithPrefix(server, app4.username);
  // revoke-force of one whole lease id.
  const other = await issueCreds(pb, 'app-admin');
  assert.equal((await pb.api('PUT', `sys/leases/revoke-force/${other.leaseId}`)).status, 204);
  assert.equal((await lookup(other.leaseId)).status, 400);
  assert.ok(await roleExists(server, other.username), 'revoke-force does not drop users');
  await alive(admin, 'revoke-force of another lease id');
  await dropRolesWithPrefix(server, other.username);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: admin.leaseId })).status, 204);
  assert.ok(await gone(admin));
});

test('LIST sys/leases/lookup/ lists the top level (sudo), one key per mount; a whole lease id lists nothing', async () => {
  const [a, b] = await Promise.all([issueCreds(pb, 'app'), issueCreds(pb, 'other')]);
  for (const r of [await pb.list('sys/leases/lookup/'), await pb.broker.api('LIST', 'sys/leases/lookup/', { token: pb.root }), await pb.list('sys/leases/lookup')]) {
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.data.keys, ['database/']);
  }
  assert.deepEqual((await pb.list('sys/leases/lookup/database')).body.data.keys, ['creds/']);
  const roles = (await pb.list('sys/leases/lookup/database/creds')).body.data.keys as string[];
  assert.deepEqual([...roles].sort(), ['app/', 'other/']);
  // As in Vault, a listing is always of "<prefix>/": a whole lease id has nothing under it.
  assert.equal((await pb.list(`sys/leases/lookup/${a.leaseId}`)).status, 404);

  // Sudo: a token that may list but not sudo is refused; with sudo it lists.
  const policy = (name: string, caps: string[]) => pb.api('PUT', `sys/policies/acl/${name}`, { policy: `path "sys/leases/lookup/*" { capabilities = ${JSON.stringify(caps)} }` });
  assert.equal((await policy('lookup-list', ['list'])).status, 204);
  assert.equal((await policy('lookup-sudo', ['list', 'sudo'])).status, 204);
  const tokenWith = async (p: string) => (await pb.api('PUT', 'auth/token/create', { policies: [p], ttl: '10m' })).body.auth.client_token as string;
  const plain = await tokenWith('lookup-list');
  const sudo = await tokenWith('lookup-sudo');
  assert.equal((await pb.broker.api('LIST', 'sys/leases/lookup/', { token: plain })).status, 403);
  const bySudo = await pb.broker.api('LIST', 'sys/leases/lookup/', { token: sudo });
  assert.equal(bySudo.status, 200, bySudo.text);
  assert.deepEqual(bySudo.body.data.keys, ['database/']);
  // PUT sys/leases/lookup (a lease id in the body) shares the path and is unchanged.
  assert.equal((await lookup(a.leaseId)).status, 200);
  // Methods other than LIST and PUT on the bare path are still 405.
  assert.equal((await pb.api('DELETE', 'sys/leases/lookup')).status, 405);

  for (const l of [a, b]) assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: l.leaseId })).status, 204);
});

test('revoke-prefix racing with issuance: every database user ends up either with a live lease or dropped', async () => {
  const results: Array<{ leaseId: string; username: string }> = [];
  const issuing = Array.from({ length: 24 }, async (_, i) => {
    await new Promise((resolve) => setTimeout(resolve, i * 15));
    const r = await pb.api('GET', 'database/creds/other');
    assert.equal(r.status, 200, r.text);
    results.push({ leaseId: r.body.lease_id, username: r.body.data.username });
  });
  const revoking = (async () => {
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 80));
      const r = await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/other/');
      assert.ok(r.status === 204 || r.status === 500, r.text);
    }
  })();
  await Promise.all([...issuing, revoking]);
  // Let deferred revocations and the loop settle, then check the invariant.
  await eventually(
    async () => {
      for (const { leaseId, username } of results) {
        const live = (await lookup(leaseId)).status === 200;
        if (live !== (await roleExists(server, username))) return false;
      }
      return true;
    },
    15_000,
    'each user to exist exactly while its lease does',
  );
  const known = new Set(results.map((r) => r.username));
  for (const name of await rolesWithPrefix(server, `${userPrefix}other-`)) assert.ok(known.has(name), `orphaned role ${name}`);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-prefix/database/creds/other/')).status, 204);
  assert.deepEqual(await rolesWithPrefix(server, `${userPrefix}other-`), []);
});

test('revoke-force forgets leases without touching the database (sudo only)', async () => {
  const leases = await Promise.all([issueCreds(pb, 'other'), issueCreds(pb, 'other')]);
  const r = await pb.api('PUT', 'sys/leases/revoke-force/database/creds/other/');
  assert.equal(r.status, 204, r.text);
  assert.equal((await pb.list('sys/leases/lookup/database/creds/other/')).status, 404);
  for (const l of leases) assert.ok(await roleExists(server, l.username), 'revoke-force must not drop users');
  await dropRolesWithPrefix(server, `${userPrefix}other-`);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke-force/')).status, 400);
});

test('count and the irrevocable listing', async () => {
  const before = (await pb.api('GET', 'sys/leases/count')).body.data.lease_count as number;
  const leases = await Promise.all([issueCreds(pb, 'app'), issueCreds(pb, 'other')]);
  const count = await pb.api('GET', 'sys/leases/count');
  assert.equal(count.status, 200);
  assert.equal(count.body.data.lease_count, before + 2);
  const irrevocable = await pb.api('GET', 'sys/leases/count?type=irrevocable');
  assert.equal(irrevocable.body.data.lease_count, 0);
  const listing = await pb.api('GET', 'sys/leases?type=irrevocable');
  assert.equal(listing.status, 200);
  assert.deepEqual(listing.body.data, { lease_count: 0, leases: [] });
  const noType = await pb.api('GET', 'sys/leases');
  assert.equal(noType.status, 400);
  assert.match(noType.body.errors[0], /type/);
  for (const limit of ['-1', '0', 'abc', '1.5']) {
    const bad = await pb.api('GET', `sys/leases?type=irrevocable&limit=${limit}`);
    assert.equal(bad.status, 400, `limit=${limit}: ${bad.text}`);
    assert.match(bad.body.errors[0], /limit/);
  }
  assert.equal((await pb.api('GET', 'sys/leases?type=irrevocable&limit=none')).status, 200);
  for (const l of leases) assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: l.leaseId })).status, 204);
  assert.equal((await pb.api('GET', 'sys/leases/count')).body.data.lease_count, before);
});

test('policies: a token without sudo can look up, renew and revoke a lease, but not revoke by prefix, force, list or count', async () => {
  const policy = `path "sys/leases/*" { capabilities = ["create", "read", "update", "list"] }\npath "sys/leases" { capabilities = ["read"] }`;
  assert.equal((await pb.api('PUT', 'sys/policies/acl/leases-no-sudo', { policy })).status, 204);
  const tok = await pb.api('PUT', 'auth/token/create', { policies: ['leases-no-sudo'], ttl: '10m' });
  assert.equal(tok.status, 200, tok.text);
  const token = tok.body.auth.client_token as string;
  const as = (method: string, path: string, body?: unknown) => pb.broker.api(method, path, { token, ...(body !== undefined ? { body } : {}) });

  const creds = await issueCreds(pb, 'app');
  assert.equal((await as('PUT', 'sys/leases/lookup', { lease_id: creds.leaseId })).status, 200);
  assert.equal((await as('PUT', 'sys/leases/renew', { lease_id: creds.leaseId, increment: 60 })).status, 200);
  assert.equal((await as('PUT', 'sys/leases/revoke-prefix/database/creds/app/')).status, 403);
  assert.equal((await as('PUT', 'sys/leases/revoke-force/database/creds/app/')).status, 403);
  assert.equal((await as('GET', 'sys/leases/lookup/database/creds/app/?list=true')).status, 403);
  assert.equal((await as('GET', 'sys/leases/count')).status, 403);
  assert.ok(await roleExists(server, creds.username));
  assert.equal((await as('PUT', 'sys/leases/revoke', { lease_id: creds.leaseId })).status, 204);
  assert.equal(await roleExists(server, creds.username), false);
  // No token at all.
  assert.equal((await pb.broker.api('PUT', 'sys/leases/lookup', { body: { lease_id: creds.leaseId } })).status, 403);
});

test('the old aliases: sys/renew and sys/revoke', async () => {
  const creds = await issueCreds(pb, 'app');
  const renewed = await pb.api('PUT', 'sys/renew', { lease_id: creds.leaseId, increment: 300 });
  assert.equal(renewed.status, 200, renewed.text);
  assert.equal(renewed.body.lease_duration, 300);
  assert.equal((await pb.api('PUT', `sys/renew/${creds.leaseId}`, { increment: 400 })).body.lease_duration, 400);
  assert.equal((await pb.api('PUT', 'sys/revoke', { lease_id: creds.leaseId })).status, 204);
  assert.equal(await roleExists(server, creds.username), false);
});

test('nothing of this file is left', async () => {
  assert.deepEqual(await rolesWithPrefix(server, userPrefix), []);
});
