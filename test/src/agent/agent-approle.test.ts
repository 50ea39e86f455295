// `dbroker agent` end to end with AppRole auto-auth, against a real broker and
// the shared PostgreSQL: it renders a credentials file (mode 0600, replaced
// atomically: a reader polling it every few ms never sees a partial file)
// and supervises a child that connects with the credentials from its
// environment and, on SIGHUP, from the file. Leases are renewed; a lease
// revoked on the broker is noticed at the next renewal and replaced; at
// max_ttl new credentials replace the old while the old still work, and the
// child is signalled each time. Prints the figures.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { eventually, freePort } from '../../support/broker.ts';
import { AgentProcess, writeAgentConfig } from '../../support/agent.ts';
import { configureConnection, createRole, dropRolesWithPrefix, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const prefix = `ag${tag()}`;
const dir = mkdtempSync(join(tmpdir(), 'dbroker-agent-approle-'));
const credsFile = join(dir, 'creds.json');
const childLog = join(dir, 'child.log');
const sink = join(dir, 'token');
let pb: PgBroker;
let pg: TestPostgres;
let agent: AgentProcess;

interface ChildEvent {
  event: string;
  user?: string;
  dbUser?: string;
  error?: string;
  pid: number;
}
const childEvents = (): ChildEvent[] =>
  existsSync(childLog)
    ? readFileSync(childLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as ChildEvent)
    : [];

// The file watcher: reads the credentials file every 2 ms for the whole test.
const seen: string[] = [];
/** When each username first appeared in the file (ms). */
const seenAt = new Map<string, number>();
let reads = 0;
let badReads = 0;
let watching = true;
async function watchFile(): Promise<void> {
  while (watching) {
    if (existsSync(credsFile)) {
      try {
        const text = readFileSync(credsFile, 'utf8');
        reads++;
        const parsed = JSON.parse(text) as { username: string };
        if (seen.at(-1) !== parsed.username) {
          seen.push(parsed.username);
          seenAt.set(parsed.username, Date.now());
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') badReads++;
      }
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}
let watcher: Promise<void>;

before(async () => {
  [pg, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } })]);
  await configureConnection(pb, pg, 'main');
  await createRole(pb, 'app', { db_name: 'main', default_ttl: 5, max_ttl: 12, username_template: `{{ printf "${prefix}%s" (random 12) }}` });
  assert.equal((await pb.api('PUT', 'sys/policies/acl/app', { policy: 'path "database/creds/app" { capabilities = ["read"] }' })).status, 204);
  assert.equal((await pb.api('PUT', 'sys/auth/approle', { type: 'approle' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/approle/role/web', { token_policies: ['app'], token_ttl: '1h' })).status, 204);
  const roleId = (await pb.api('GET', 'auth/approle/role/web/role-id')).body.data.role_id as string;
  const secretId = (await pb.api('PUT', 'auth/approle/role/web/secret-id', {})).body.data.secret_id as string;
  writeFileSync(join(dir, 'role_id'), roleId);
  writeFileSync(join(dir, 'secret_id'), secretId);
  const port = await freePort();
  writeAgentConfig(join(dir, 'agent.json'), {
    broker: { address: pb.broker.url, retry: { min_backoff: '200ms', max_backoff: '1s' } },
    auto_auth: {
      method: { type: 'approle', config: { role_id_file_path: 'role_id', secret_id_file_path: 'secret_id' } },
      sinks: [{ type: 'file', config: { path: 'token' } }],
    },
    listener: { address: `127.0.0.1:${port}` },
    templates: [
      {
        contents: '{{ with secret "database/creds/app" }}{"username": {{ .Data.username | toJSON }}, "password": {{ .Data.password | toJSON }}, "lease_id": {{ .LeaseID | toJSON }}}{{ end }}\n',
        destination: 'creds.json',
      },
    ],
    env_template: {
      PGUSER: { contents: '{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}' },
      PGPASSWORD: { contents: '{{ with secret "database/creds/app" }}{{ .Data.password }}{{ end }}' },
    },
    exec: { command: [process.execPath, resolve(import.meta.dirname, 'fixtures/pg-child.mjs')], change_signal: 'SIGHUP' },
  });
  agent = new AgentProcess(join(dir, 'agent.json'), `http://127.0.0.1:${port}`, { CHILD_LOG: childLog, CREDS_FILE: credsFile, PGHOST: pg.host, PGPORT: String(pg.port) });
  watcher = watchFile();
  await agent.start();
});

after(async () => {
  watching = false;
  await watcher;
  await agent?.stop();
  await pb?.close();
  await dropRolesWithPrefix(pg, prefix);
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const fileCreds = (): { username: string; password: string; lease_id: string } => JSON.parse(readFileSync(credsFile, 'utf8'));

async function lookup(leaseId: string): Promise<{ status: number; body: any }> {
  return pb.api('PUT', 'sys/leases/lookup', { lease_id: leaseId });
}

test('AppRole auto-auth: file (0600) + child on PostgreSQL; renewals; a revoked lease is replaced; at max_ttl new credentials, the child is signalled', async () => {
  // First credentials: file rendered, child started with them in its env and connected as that user.
  await eventually(async () => childEvents().some((e) => e.event === 'start'), 30_000, 'the child starts');
  const c1 = fileCreds();
  assert.ok(c1.username.startsWith(prefix));
  const start = childEvents().find((e) => e.event === 'start')!;
  assert.equal(start.error, undefined, start.error ?? "");
  assert.equal(start.user, c1.username, 'the child got the credentials in its environment');
  assert.equal(start.dbUser, c1.username, 'the child connected to PostgreSQL as that user');
  assert.equal(statSync(credsFile).mode & 0o777, 0o600);
  // Auto-auth: the secret ID file is removed once read (Vault Agent's default); the sink holds a working token (0600).
  assert.equal(existsSync(join(dir, 'secret_id')), false);
  assert.equal(statSync(sink).mode & 0o777, 0o600);
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: readFileSync(sink, 'utf8') });
  assert.equal(self.status, 200, self.text);
  assert.deepEqual(self.body.data.policies.sort(), ['app', 'default']);

  // Renewal of the first lease.
  await eventually(async () => (await lookup(c1.lease_id)).body?.data?.last_renewal != null, 15_000, 'the agent renews the lease');

  // Revoke it on the broker: noticed at the next renewal (400), replaced, the child signalled.
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: c1.lease_id })).status, 204);
  const revokedAt = Date.now();
  await eventually(async () => fileCreds().username !== c1.username, 15_000, 'new credentials after the revocation');
  const c2 = fileCreds();
  const noticedMs = Date.now() - revokedAt;
  await eventually(async () => childEvents().some((e) => e.event === 'hup' && e.user === c2.username), 10_000, 'the child is signalled with the new file');
  const hup2 = childEvents().find((e) => e.event === 'hup' && e.user === c2.username)!;
  assert.equal(hup2.error, undefined, hup2.error ?? "");
  assert.equal(hup2.dbUser, c2.username);
  assert.equal(await roleExists(pg, c1.username), false, 'the revoked user is gone');
  const s1 = await agent.status();
  assert.ok(s1.counters.refused_renewals >= 1, JSON.stringify(s1.counters));

  // max_ttl (12 s): renewed meanwhile, then replaced before it ends (the lease's
  // expire_time, polled from the broker, is later than the moment the file changed).
  let c2Expire = 0;
  let c2Renewed = false;
  await eventually(
    async () => {
      const l = await lookup(c2.lease_id);
      if (l.status === 200) {
        c2Expire = Date.parse(l.body.data.expire_time);
        c2Renewed ||= l.body.data.last_renewal !== null;
      }
      return fileCreds().username !== c2.username;
    },
    20_000,
    'new credentials at max_ttl',
  );
  const c3 = fileCreds();
  assert.ok(c2Renewed, 'the previous lease was renewed before being replaced');
  const changedAt = seenAt.get(c3.username)!;
  assert.ok(changedAt < c2Expire, `new credentials ${c2Expire - changedAt} ms before the old lease ends`);
  const marginMs = c2Expire - changedAt;
  await eventually(async () => childEvents().some((e) => e.event === 'hup' && e.user === c3.username), 10_000, 'the child is signalled again');
  const hup3 = childEvents().find((e) => e.event === 'hup' && e.user === c3.username)!;
  assert.equal(hup3.dbUser, c3.username, hup3.error ?? "");

  const s2 = await agent.status();
  assert.equal(s2.status, 'ok', JSON.stringify(s2.reasons));
  assert.equal(s2.auth.method, 'approle');
  assert.ok(s2.counters.replacements >= 2);
  assert.ok(s2.counters.renewals >= 2);
  const starts = childEvents().filter((e) => e.event === 'start');
  assert.equal(starts.length, 1, 'signalled, not restarted');
  assert.equal(badReads, 0, `a reader saw a partial credentials file ${badReads} times`);
  assert.ok(reads > 200, `the file was read ${reads} times`);
  assert.equal(statSync(credsFile).mode & 0o777, 0o600);
  console.log(
    `[agent approle] credentials seen in the file=${seen.length} renewals=${s2.counters.renewals} replacements=${s2.counters.replacements} ` +
      `refused_renewals=${s2.counters.refused_renewals} revoke_noticed_ms=${noticedMs} child_signals=${s2.exec.signals_sent} child_restarts=${s2.exec.restarts} ` +
      `file_reads=${reads} partial_reads=${badReads} logins=${s2.auth.logins} replaced_before_max_ttl_by_ms=${marginMs}`,
  );
});
