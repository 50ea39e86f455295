// The agent with static credentials (database/static-creds/<role>, no lease)
// against a real broker and the shared PostgreSQL: the template renders the
// current password, the agent reads it again right after each scheduled
// rotation (its `ttl`), and the file follows the broker. Through the proxy, the
// same response with `ttl` counting down.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, freePort } from '../../support/broker.ts';
import { AgentProcess, writeAgentConfig } from '../../support/agent.ts';
import { configureConnection, dropRolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { adminQuery, trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

const prefix = `as${tag()}`;
const user = `${prefix}static`;
const dir = mkdtempSync(join(tmpdir(), 'dbroker-agent-static-'));
let pb: PgBroker;
let server: TestPostgres;
let agent: AgentProcess | undefined;

before(async () => {
  [server, pb] = await Promise.all([trustPostgres(), startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } })]);
  await configureConnection(pb, server, 'main');
  await adminQuery(server, `CREATE ROLE "${user}" WITH LOGIN PASSWORD 'initial-password-1'`);
  const r = await pb.api('PUT', 'database/static-roles/st', { db_name: 'main', username: user, rotation_period: 5 });
  assert.equal(r.status, 204, r.text);
});

after(async () => {
  await agent?.stop();
  await pb?.close();
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('static-creds: rendered, re-read after each rotation, served through the proxy', async () => {
  const token = (await pb.api('PUT', 'auth/token/create', { policies: ['root'], ttl: '1h' })).body.auth.client_token as string;
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'token'), token);
  const port = await freePort();
  writeAgentConfig(join(dir, 'agent.json'), {
    broker: { address: pb.broker.url, retry: { min_backoff: '200ms', max_backoff: '1s' } },
    auto_auth: { method: { type: 'token_file', config: { token_file_path: 'token' } } },
    listener: { address: `127.0.0.1:${port}` },
    api_proxy: { use_auto_auth_token: true },
    templates: [{ contents: '{{ with secret "database/static-creds/st" }}{{ .Data.username }} {{ .Data.password }}{{ end }}', destination: 'static.txt' }],
  });
  agent = new AgentProcess(join(dir, 'agent.json'), `http://127.0.0.1:${port}`);
  await agent.start();
  const file = join(dir, 'static.txt');
  await eventually(async () => existsSync(file), 20_000, 'rendered');
  const passwords = new Set<string>();
  const current = async (): Promise<string> => (await pb.api('GET', 'database/static-creds/st')).body.data.password as string;
  // Two rotations later, the file has followed each one.
  await eventually(
    async () => {
      const [name, password] = readFileSync(file, 'utf8').split(' ');
      assert.equal(name, user);
      if (password === (await current())) passwords.add(password!);
      return passwords.size >= 3;
    },
    40_000,
    'the file follows the rotations',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; saw ${passwords.size}\n${agent!.output.slice(-3000)}`);
  });
  const viaProxy = await agent.api('GET', 'database/static-creds/st');
  assert.equal(viaProxy.status, 200, viaProxy.text);
  assert.equal(viaProxy.body.data.username, user);
  assert.ok(viaProxy.body.data.ttl <= 5);
  const s = await agent.status();
  assert.ok(s.counters.replacements >= 2, JSON.stringify(s.counters));
  console.log(`[agent static-creds] passwords_followed=${passwords.size} password_changes=${s.counters.replacements} status=${s.status}`);
});
