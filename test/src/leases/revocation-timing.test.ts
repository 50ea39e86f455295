// A lease is revoked when it ends, not up to revocation_interval later: the
// loop sleeps until the next lease is due (the due_at index's first entry),
// and an issued lease due sooner than the loop's next pass brings it forward
// (src/leases/revocation-loop.ts). A broker process with a long interval
// (10 s) against the real PostgreSQL.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../../support/broker.ts';
import { configureConnection, createRole, dropRolesWithPrefix, LOGIN_ROLE, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const run = tag();
const PREFIX = `rt${run}`;
let server: TestPostgres;
let pb: PgBroker;

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { revocation_interval: '10s' } })]);
  await configureConnection(pb, server, 'main');
  for (const [name, ttl] of [['short', 2], ['shorter', 1]] as const) {
    await createRole(pb, name, { db_name: 'main', creation_statements: [LOGIN_ROLE], default_ttl: ttl, username_template: `{{ printf "${PREFIX}${name}%s" (random 12) }}` });
  }
});

after(async () => {
  await pb?.close();
  if (server) {
    await dropRolesWithPrefix(server, PREFIX);
    await server.stop();
  }
});

test('leases are revoked within about a second of their end, with revocation_interval 10 s; a later, shorter lease is not held up by an earlier one', async () => {
  const first = await pb.api('GET', 'database/creds/short');
  assert.equal(first.status, 200, first.text);
  const second = await pb.api('GET', 'database/creds/shorter');
  assert.equal(second.status, 200, second.text);
  const issued = Date.now();
  for (const [creds, ttl] of [[second, 1], [first, 2]] as const) {
    const user = creds.body.data.username as string;
    assert.equal(await roleExists(server, user), true);
    await eventually(async () => !(await roleExists(server, user)), 15_000, `${user} dropped`);
    const after = (Date.now() - issued) / 1000;
    // The interval alone would have left each up to 10 s past its end.
    assert.ok(after < ttl + 2.5, `a ${ttl} s lease was revoked ${after.toFixed(1)} s after issue`);
    assert.equal((await pb.api('PUT', 'sys/leases/lookup', { lease_id: creds.body.lease_id })).status, 400);
  }
});
