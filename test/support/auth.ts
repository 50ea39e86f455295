// Helpers for the auth method tests: requests from a chosen source address
// (127.0.0.2 vs 127.0.0.1, for CIDR bindings), and a database mount wired to
// the shared PostgreSQL with one role a policy allows and one it does not.

import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { ApiResponse, BrokerProcess } from './broker.ts';
import { configureConnection, createRole, rolesWithPrefix, type PgBroker } from './pg-broker.ts';
import type { TestPostgres } from './scram-postgres.ts';

/** One request to the broker with the socket bound to `localAddress` (the broker sees it as the client address). */
export function apiFrom(broker: BrokerProcess, localAddress: string, method: string, path: string, opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {}): Promise<ApiResponse> {
  const url = new URL(`${broker.url}/v1/${path}`);
  const body = opts.body !== undefined ? JSON.stringify(opts.body) : undefined;
  return new Promise((ok, fail) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        localAddress,
        headers: { ...opts.headers, ...(opts.token ? { 'x-vault-token': opts.token } : {}), ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          ok({ status: res.statusCode ?? 0, body: parsed, text });
        });
      },
    );
    req.on('error', fail);
    if (body) req.write(body);
    req.end();
  });
}

/**
 * `database/config/main` on `server`, roles `allowed` and `denied` whose
 * usernames are `<prefix>-<display name>-<random>`, and the policy `dbuser`
 * that may read database/creds/allowed only.
 */
export async function setupDatabase(pb: PgBroker, server: TestPostgres, prefix: string): Promise<void> {
  await configureConnection(pb, server, 'main');
  // The display name is cut so that the random part always fits in PostgreSQL's 63 characters (a template must keep 8+ random characters).
  const template = `{{ printf "${prefix}-%s-%s" (.DisplayName | truncate 30) (random 20) }}`;
  await createRole(pb, 'allowed', { db_name: 'main', default_ttl: '10m', username_template: template });
  await createRole(pb, 'denied', { db_name: 'main', default_ttl: '10m', username_template: template });
  const policy = 'path "database/creds/allowed" { capabilities = ["read"] }';
  const r = await pb.api('PUT', 'sys/policies/acl/dbuser', { policy });
  assert.equal(r.status, 204, r.text);
}

/**
 * With a login token: creds for `allowed` (200, a PostgreSQL role exists whose
 * name carries `displayName`), creds for `denied` refused (403). Returns the username.
 */
export async function assertCredsByPolicy(pb: PgBroker, server: TestPostgres, token: string, prefix: string, displayName: string): Promise<string> {
  const ok = await pb.broker.api('GET', 'database/creds/allowed', { token });
  assert.equal(ok.status, 200, ok.text);
  const username = ok.body.data.username as string;
  assert.ok(username.startsWith(`${prefix}-${displayName}-`), `username ${username} carries the display name ${displayName}`);
  assert.deepEqual(await rolesWithPrefix(server, username), [username], 'the database user exists');
  const denied = await pb.broker.api('GET', 'database/creds/denied', { token });
  assert.equal(denied.status, 403, denied.text);
  return username;
}
