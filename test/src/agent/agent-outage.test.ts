// `dbroker agent` when the broker goes away, against a real broker and the
// shared PostgreSQL: token-file auto-auth, an encrypted persistent cache and
// the API proxy. Stop the broker: the proxy keeps serving the cached
// credentials and the status says degraded; restart the AGENT while the
// broker is still down: it serves them from the encrypted cache; a byte scan
// of the cache file finds no password, token, username or lease id; start the
// broker again: the agent renews (or replaces) and reports ok. Also: exec mode
// restarting a child with new environment credentials after a revocation.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { eventually, freePort, unseal } from '../../support/broker.ts';
import { AgentProcess, Forwarder, writeAgentConfig } from '../../support/agent.ts';
import { configureConnection, createRole, dropRolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import pg from 'pg';

const prefix = `ao${tag()}`;
const dir = mkdtempSync(join(tmpdir(), 'dbroker-agent-outage-'));
let pb: PgBroker;
let server: TestPostgres;
let forwarder: Forwarder;
const agents: AgentProcess[] = [];

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } })]);
  await configureConnection(pb, server, 'main');
  await createRole(pb, 'app', { db_name: 'main', default_ttl: 30, max_ttl: 600, username_template: `{{ printf "${prefix}%s" (random 12) }}` });
  await createRole(pb, 'short', { db_name: 'main', default_ttl: 6, max_ttl: 600, username_template: `{{ printf "${prefix}s%s" (random 12) }}` });
  assert.equal((await pb.api('PUT', 'sys/policies/acl/app', { policy: 'path "database/creds/*" { capabilities = ["read"] }' })).status, 204);
  forwarder = new Forwarder(Number(new URL(pb.broker.url).port));
  await forwarder.up();
});

after(async () => {
  for (const a of agents) await a.stop();
  await forwarder?.down();
  await pb?.close();
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Start (and unseal) the broker again if an earlier test left it stopped. */
async function ensureBrokerUp(): Promise<void> {
  const up = await fetch(`${pb.broker.url}/v1/sys/health`).then(() => true, () => false);
  if (up) return;
  await pb.broker.start();
  await unseal(pb.broker, pb.keys);
  forwarder.targetPort = Number(new URL(pb.broker.url).port);
}

async function tokenFor(policies: string[], ttl = '1h'): Promise<string> {
  const r = await pb.api('PUT', 'auth/token/create', { policies, ttl });
  assert.equal(r.status, 200, r.text);
  return r.body.auth.client_token as string;
}

async function login(username: string, password: string): Promise<string> {
  const client = new pg.Client({ host: server.host, port: server.port, database: 'postgres', user: username, password });
  await client.connect();
  try {
    return (await client.query('SELECT current_user AS u')).rows[0].u as string;
  } finally {
    await client.end();
  }
}

test('outage: cached credentials through the proxy, agent restart from the encrypted cache while the broker is down, catch-up when it returns', async () => {
  const token = await tokenFor(['app']);
  writeFileSync(join(dir, 'token-in'), token);
  writeFileSync(join(dir, 'cache.key'), randomBytes(32).toString('hex'));
  const port = await freePort();
  const config = join(dir, 'agent.json');
  writeAgentConfig(config, {
    broker: { address: `http://127.0.0.1:${forwarder.port}`, timeout: '2s', retry: { min_backoff: '200ms', max_backoff: '1s' } },
    auto_auth: { method: { type: 'token_file', config: { token_file_path: 'token-in' } } },
    cache: { persist: { path: 'cache', key_file: 'cache.key' } },
    listener: { address: `127.0.0.1:${port}` },
    api_proxy: { use_auto_auth_token: true },
    templates: [{ contents: '{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}', destination: 'user.txt' }],
  });
  let agent = new AgentProcess(config, `http://127.0.0.1:${port}`);
  agents.push(agent);
  await agent.start();

  // Through the proxy, without a token (use_auto_auth_token): the agent's credentials, the same at each read.
  await eventually(async () => existsSync(join(dir, 'user.txt')), 20_000, 'the template is rendered');
  const first = await agent.api('GET', 'database/creds/app');
  assert.equal(first.status, 200, first.text);
  const creds = first.body.data as { username: string; password: string };
  const leaseId = first.body.lease_id as string;
  assert.equal(readFileSync(join(dir, 'user.txt'), 'utf8'), creds.username, 'one set of credentials for templates and proxy clients');
  const again = await agent.api('GET', 'database/creds/app', { token });
  assert.equal(again.cache, 'HIT');
  assert.equal(again.body.lease_id, leaseId, 'same token + path: the cached lease');
  assert.ok(again.body.lease_duration <= 30 && again.body.lease_duration > 0);
  assert.equal(await login(creds.username, creds.password), creds.username);
  // Another client token gets its own lease (cached for it), not the agent's.
  const other = await tokenFor(['app']);
  const theirs = await agent.api('GET', 'database/creds/app', { token: other });
  assert.equal(theirs.status, 200, theirs.text);
  assert.notEqual(theirs.body.lease_id, leaseId, 'cache entries are per token');
  const theirsAgain = await agent.api('GET', 'database/creds/app', { token: other });
  assert.equal(theirsAgain.cache, 'HIT');
  assert.equal(theirsAgain.body.lease_id, theirs.body.lease_id);
  // Pass-through of anything else, with Vault's error shapes.
  const denied = await agent.api('GET', 'sys/policies/acl/app');
  assert.equal(denied.status, 403);
  assert.ok(Array.isArray(denied.body.errors));
  assert.equal((await agent.status()).status, 'ok');

  // Broker down.
  await pb.broker.stop();
  const down = await agent.api('GET', 'database/creds/app');
  assert.equal(down.status, 200, down.text);
  assert.equal(down.cache, 'HIT');
  assert.equal(down.body.data.password, creds.password, 'the cached credentials are served');
  assert.equal((await agent.api('GET', 'sys/health')).status, 502, 'what is not cached is a 502');
  const degraded = await agent.status();
  assert.equal(degraded.status, 'degraded');
  assert.equal(degraded.broker.reachable, false);

  // Restart the agent while the broker is still down: served from the encrypted cache.
  await agent.stop();
  agent = new AgentProcess(config, `http://127.0.0.1:${port}`);
  agents.push(agent);
  await agent.start();
  const restored = await agent.api('GET', 'database/creds/app');
  assert.equal(restored.status, 200, restored.text);
  assert.equal(restored.cache, 'HIT');
  assert.equal(restored.body.lease_id, leaseId);
  assert.equal(restored.body.data.password, creds.password);
  assert.equal((await agent.api('GET', 'database/creds/app', { token: other })).body.lease_id, theirs.body.lease_id, 'proxy entries of other tokens are restored too');
  assert.equal(await login(restored.body.data.username, restored.body.data.password), creds.username, 'and they still work');
  await eventually(async () => (await agent.status()).broker.reachable === false, 10_000, 'the restarted agent notices the broker is down');
  const s1 = await agent.status();
  assert.equal(s1.status, 'degraded');
  assert.equal(s1.restored_from_cache, true);

  // The cache file: encrypted, 0600, no plaintext secret.
  const cacheFile = join(dir, 'cache', 'agent-cache.bin');
  assert.equal(statSync(cacheFile).mode & 0o777, 0o600);
  const bytes = readFileSync(cacheFile);
  assert.equal(bytes.subarray(0, 8).toString('latin1'), 'DBRAGC01');
  const secrets = { password: creds.password, token, otherToken: other, otherPassword: theirs.body.data.password, username: creds.username, leaseId };
  for (const [what, value] of Object.entries(secrets)) {
    for (const encoding of ['utf8', 'utf16le', 'base64', 'hex'] as const) {
      assert.equal(bytes.indexOf(Buffer.from(encoding === 'utf8' || encoding === 'utf16le' ? Buffer.from(value, encoding) : Buffer.from(Buffer.from(value).toString(encoding)))), -1, `${what} found in the cache file (${encoding})`);
    }
  }

  // Broker back (new process, same store, unsealed): the agent renews or replaces, and is ok again.
  const backAt = Date.now();
  await pb.broker.start();
  await unseal(pb.broker, pb.keys);
  forwarder.targetPort = Number(new URL(pb.broker.url).port);
  const upAt = Date.now();
  // Renewed on the broker after it came back (same lease), or replaced; and ok again.
  let renewedOnBroker = false;
  let after = await agent.api('GET', 'database/creds/app');
  await eventually(
    async () => {
      after = await agent.api('GET', 'database/creds/app');
      if (after.status !== 200) return false;
      if (after.body.lease_id === leaseId) {
        const l = await pb.api('PUT', 'sys/leases/lookup', { lease_id: leaseId });
        renewedOnBroker = l.status === 200 && l.body.data.last_renewal !== null && Date.parse(l.body.data.last_renewal) >= backAt - 1000;
        if (!renewedOnBroker) return false;
      }
      return (await agent.status()).status === 'ok';
    },
    30_000,
    'the agent renews or replaces its lease and is ok again',
  );
  assert.equal(await login(after.body.data.username, after.body.data.password), after.body.data.username);
  // Revoking through the proxy drops the cached lease: the next read is a new one.
  const revoke = await agent.api('PUT', 'sys/leases/revoke', { token: pb.root, body: { lease_id: theirs.body.lease_id } });
  assert.equal(revoke.status, 204, revoke.text);
  const fresh = await agent.api('GET', 'database/creds/app', { token: other });
  assert.equal(fresh.status, 200, fresh.text);
  assert.notEqual(fresh.body.lease_id, theirs.body.lease_id);
  assert.notEqual(fresh.cache, 'HIT');
  const s2 = await agent.status();
  console.log(
    `[agent outage] served_while_down=yes restart_while_down=served_from_cache cache_scan=${Object.keys(secrets).length}x4 encodings clean ` +
      `caught_up=${renewedOnBroker ? 'renewed' : 'replaced'} broker_restart_ms=${upAt - backAt} catch_up_after_unseal_ms=${Date.now() - upAt} renewals=${s2.counters.renewals} ` +
      `replacements=${s2.counters.replacements} proxy_hits=${s2.counters.proxy_cache_hits} broker_failures=${s2.counters.broker_failures}`,
  );
  // Ctrl-C in a terminal (and npm's forwarding) delivers SIGINT twice: the second must not cut the shutdown short.
  assert.equal(await agent.stop(['SIGINT', 'SIGINT']), 0, 'a clean exit despite the repeated SIGINT');
});

test('exec restart mode: a lease revoked on the broker is replaced and the child restarted with the new environment', async () => {
  await ensureBrokerUp();
  const token = await tokenFor(['app']);
  writeFileSync(join(dir, 'token-exec'), token);
  const log = join(dir, 'exec-child.log');
  const port = await freePort();
  const config = join(dir, 'agent-exec.json');
  writeAgentConfig(config, {
    broker: { address: pb.broker.url, retry: { min_backoff: '200ms', max_backoff: '1s' } },
    auto_auth: { method: { type: 'token_file', config: { token_file_path: 'token-exec' } } },
    cache: { persist: { path: 'cache-exec', key_env: 'AGENT_CACHE_KEY' } },
    listener: { address: `127.0.0.1:${port}` },
    env_template: {
      PGUSER: { contents: '{{ with secret "database/creds/short" }}{{ .Data.username }}{{ end }}' },
      PGPASSWORD: { contents: '{{ with secret "database/creds/short" }}{{ .Data.password }}{{ end }}' },
    },
    exec: { command: [process.execPath, resolve(import.meta.dirname, 'fixtures/pg-child.mjs')], restart_on_secret_changes: 'always' },
  });
  const agent = new AgentProcess(config, `http://127.0.0.1:${port}`, { CHILD_LOG: log, PGHOST: server.host, PGPORT: String(server.port), AGENT_CACHE_KEY: randomBytes(32).toString('hex') });
  agents.push(agent);
  await agent.start();
  const events = (): Array<{ event: string; user?: string; dbUser?: string; pid: number; cacheKeyInEnv?: boolean }> =>
    existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  await eventually(async () => events().some((e) => e.event === 'start'), 20_000, 'the child starts').catch((err: Error) => {
    throw new Error(`${err.message}\n${agent.output.slice(-3000)}`);
  });
  const firstStart = events().find((e) => e.event === 'start')!;
  assert.equal(firstStart.dbUser, firstStart.user);
  assert.equal(events().find((e) => e.event === 'env')?.cacheKeyInEnv, false, 'the cache key (key_env) is not passed to the child');
  // The agent's own token through the proxy: the very credentials the child has.
  const creds = await agent.api('GET', 'database/creds/short', { token });
  assert.equal(creds.status, 200, creds.text);
  assert.equal(creds.body.data.username, firstStart.user);
  assert.equal((await pb.api('PUT', 'sys/leases/revoke', { lease_id: creds.body.lease_id })).status, 204);
  await eventually(async () => events().filter((e) => e.event === 'start').length >= 2, 20_000, 'the child is restarted');
  const starts = events().filter((e) => e.event === 'start');
  const second = starts[1]!;
  assert.notEqual(second.user, firstStart.user);
  assert.equal(second.dbUser, second.user, 'the restarted child connects with the new credentials');
  assert.notEqual(second.pid, firstStart.pid);
  assert.ok(events().some((e) => e.event === 'term' && e.pid === firstStart.pid), 'the old child got SIGTERM');
  const s = await agent.status();
  assert.equal(s.exec.restarts, 1);
  console.log(`[agent exec] restarts=${s.exec.restarts} refused_renewals=${s.counters.refused_renewals} replacements=${s.counters.replacements}`);
  await agent.stop();
  await eventually(async () => events().filter((e) => e.event === 'term').length >= 2, 10_000, 'the child is stopped with the agent');
});
