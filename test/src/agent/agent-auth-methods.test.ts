// The agent's JWT-file and Kubernetes auto-auth against a real broker (and the
// shared PostgreSQL): a JWT signed by a test issuer (jose) read from a file
// that is removed after reading (Vault Agent's default), and a
// service-account-shaped token in a file verified by the broker's Kubernetes
// method in local mode (pem_keys; no Kubernetes API server runs here). Each
// agent renders credentials and writes a working token to its sink. When the
// agent's token is revoked on the broker, it logs in again (from the file, or
// the JWT it kept in memory) and replaces its credentials.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { eventually, freePort } from '../../support/broker.ts';
import { AgentProcess, writeAgentConfig } from '../../support/agent.ts';
import { newKey, type IssuerKey } from '../../support/jwt-issuer.ts';
import { configureConnection, createRole, dropRolesWithPrefix, roleExists, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const prefix = `am${tag()}`;
const dir = mkdtempSync(join(tmpdir(), 'dbroker-agent-auth-'));
let pb: PgBroker;
let server: TestPostgres;
let key: IssuerKey;
const agents: AgentProcess[] = [];

before(async () => {
  [server, pb, key] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } }), newKey('k1')]);
  await configureConnection(pb, server, 'main');
  await createRole(pb, 'app', { db_name: 'main', default_ttl: 6, max_ttl: 600, username_template: `{{ printf "${prefix}%s" (random 12) }}` });
  assert.equal((await pb.api('PUT', 'sys/policies/acl/app', { policy: 'path "database/creds/app" { capabilities = ["read"] }' })).status, 204);
  // JWT method: the test's key as a static public key.
  assert.equal((await pb.api('PUT', 'sys/auth/jwt', { type: 'jwt' })).status, 204);
  const jc = await pb.api('PUT', 'auth/jwt/config', { jwt_validation_pubkeys: [key.spki], bound_issuer: 'https://issuer.test' });
  assert.equal(jc.status, 204, jc.text);
  const jr = await pb.api('PUT', 'auth/jwt/role/svc', { role_type: 'jwt', bound_audiences: ['dbroker'], user_claim: 'sub', token_policies: ['app'], token_ttl: '1h' });
  assert.equal(jr.status, 204, jr.text);
  // Kubernetes method in local mode: service-account tokens signed by the same test key.
  assert.equal((await pb.api('PUT', 'sys/auth/kubernetes', { type: 'kubernetes' })).status, 204);
  const kc = await pb.api('PUT', 'auth/kubernetes/config', { kubernetes_host: 'https://kubernetes.invalid', pem_keys: [key.spki] });
  assert.equal(kc.status, 204, kc.text);
  const ks = await pb.api('PUT', 'auth/kubernetes/role/short', { bound_service_account_names: 'web', bound_service_account_namespaces: 'payments', audience: 'dbroker', token_policies: 'app', token_ttl: 3, token_max_ttl: 6 });
  assert.equal(ks.status, 204, ks.text);
  const kr = await pb.api('PUT', 'auth/kubernetes/role/web', { bound_service_account_names: 'web', bound_service_account_namespaces: 'payments', audience: 'dbroker', token_policies: 'app', token_ttl: '1h' });
  assert.equal(kr.status, 204, kr.text);
});

after(async () => {
  for (const a of agents) await a.stop();
  await pb?.close();
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function sign(claims: Record<string, unknown>): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: now, nbf: now, exp: now + 600, ...claims }).setProtectedHeader({ alg: key.alg, kid: key.kid }).sign(key.privateKey);
}

async function runAgent(name: string, method: Record<string, unknown>): Promise<{ agent: AgentProcess; user: () => string; sink: string }> {
  const port = await freePort();
  const config = join(dir, `${name}.json`);
  writeAgentConfig(config, {
    broker: { address: pb.broker.url, retry: { min_backoff: '200ms', max_backoff: '1s' } },
    auto_auth: { method, sinks: [{ type: 'file', config: { path: `${name}.token` } }] },
    listener: { address: `127.0.0.1:${port}` },
    templates: [{ contents: '{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}', destination: `${name}.user` }],
  });
  const agent = new AgentProcess(config, `http://127.0.0.1:${port}`);
  agents.push(agent);
  await agent.start();
  const file = join(dir, `${name}.user`);
  await eventually(async () => existsSync(file), 20_000, `${name}: credentials rendered`);
  return { agent, user: () => readFileSync(file, 'utf8'), sink: join(dir, `${name}.token`) };
}

/** Revoke the agent's token on the broker; it must log in again and replace its credentials. */
async function revokeAndRecover(run: { agent: AgentProcess; user: () => string; sink: string }): Promise<void> {
  const before = run.user();
  const token = readFileSync(run.sink, 'utf8');
  assert.equal((await pb.api('PUT', 'auth/token/revoke', { token })).status, 204);
  await eventually(async () => (await run.agent.status()).auth.logins >= 2, 30_000, 'a new login after the revocation');
  await eventually(async () => run.user() !== before, 30_000, 'new credentials with the new token');
  await eventually(async () => readFileSync(run.sink, 'utf8') !== token, 10_000, 'the sink holds the new token');
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: readFileSync(run.sink, 'utf8') });
  assert.equal(self.status, 200, self.text);
  assert.equal(await roleExists(server, run.user()), true);
}

test('JWT file auto-auth: login with role + jwt, the file is removed after reading, re-login from memory after a revocation', async () => {
  writeFileSync(join(dir, 'jwt'), await sign({ iss: 'https://issuer.test', sub: 'svc-a', aud: 'dbroker' }));
  const run = await runAgent('jwt', { type: 'jwt', config: { path: 'jwt', role: 'svc' } });
  assert.equal(existsSync(join(dir, 'jwt')), false, 'remove_jwt_after_reading defaults to true');
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: readFileSync(run.sink, 'utf8') });
  assert.equal(self.status, 200, self.text);
  assert.ok(self.body.data.policies.includes('app'));
  assert.ok(run.user().startsWith(prefix));
  const s = await run.agent.status();
  assert.equal(s.auth.method, 'jwt');
  assert.equal(s.status, 'ok', JSON.stringify(s.reasons));
  // The revoked token's lease dies with it ("children"); the agent logs in again and replaces the credentials.
  await revokeAndRecover(run);
  await run.agent.stop();
});

test('Kubernetes auto-auth: the service-account token file (left in place) is sent with the role; re-login after a revocation', async () => {
  const sa = join(dir, 'sa-token');
  writeFileSync(sa, await sign({
    iss: 'https://kubernetes.default.svc.cluster.local',
    sub: 'system:serviceaccount:payments:web',
    aud: ['dbroker'],
    'kubernetes.io': { namespace: 'payments', pod: { name: 'web-5d8f', uid: 'p1' }, serviceaccount: { name: 'web', uid: 'sa1' } },
  }));
  const run = await runAgent('k8s', { type: 'kubernetes', config: { role: 'web', token_path: 'sa-token' } });
  assert.equal(existsSync(sa), true, 'the service-account token file is not removed');
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: readFileSync(run.sink, 'utf8') });
  assert.equal(self.status, 200, self.text);
  assert.equal(self.body.data.display_name, 'kubernetes-payments-web');
  assert.equal((await run.agent.status()).auth.method, 'kubernetes');
  await revokeAndRecover(run);
  await run.agent.stop();
});

test('Kubernetes auto-auth with a short token (TTL 3 s, max 6 s): renewed, then a new login before it ends; credentials stay available', async () => {
  const run = await runAgent('k8s-short', { type: 'kubernetes', config: { role: 'short', token_path: 'sa-token' } });
  const first = readFileSync(run.sink, 'utf8');
  // The login counter moves before the sink file is rewritten, so wait for both.
  await eventually(async () => (await run.agent.status()).auth.logins >= 2 && readFileSync(run.sink, 'utf8') !== first, 30_000, 'new logins as tokens reach their max TTL, written to the sink');
  const s = await run.agent.status();
  const next = readFileSync(run.sink, 'utf8');
  assert.notEqual(next, first);
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: next });
  assert.equal(self.status, 200, `the sink holds a live token: ${self.text}`);
  assert.ok(existsSync(join(dir, 'k8s-short.user')));
  console.log(`[agent k8s short token] logins=${s.auth.logins} status=${s.status} replacements=${s.counters.replacements}`);
  await run.agent.stop();
});
