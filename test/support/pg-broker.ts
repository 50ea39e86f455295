// A real broker wired to a real PostgreSQL for the broker-level tests of
// dynamic credentials and leases: start + init + unseal, a connection, roles,
// creds, and the queries the tests assert with.

import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { adminQuery, type TestPostgres } from './scram-postgres.ts';
import { initAndUnseal, startBroker, unseal, type ApiResponse, type BrokerOptions, type BrokerProcess } from './broker.ts';

export const tag = (): string => randomBytes(4).toString('hex');

export interface PgBroker {
  broker: BrokerProcess;
  root: string;
  keys: string[];
  /** Call the API with the root token. */
  api(method: string, path: string, body?: unknown): Promise<ApiResponse>;
  /** LIST `path` as `GET ?list=true` (what Vault's Go client sends; raw LIST is covered in test/src/http). */
  list(path: string): Promise<ApiResponse>;
  /** Restart the process (SIGTERM, or SIGKILL with `crash`) and unseal it again. */
  restart(opts?: { crash?: boolean; env?: Record<string, string> }): Promise<void>;
  close(): Promise<void>;
}

export async function startPgBroker(opts: BrokerOptions = {}): Promise<PgBroker> {
  const broker = await startBroker(opts);
  const { rootToken, keys } = await initAndUnseal(broker);
  const api = (method: string, path: string, body?: unknown) => broker.api(method, path, { token: rootToken, ...(body !== undefined ? { body } : {}) });
  return {
    broker,
    root: rootToken,
    keys,
    api,
    list: (path: string) => api('GET', `${path}?list=true`),
    async restart({ crash = false, env = {} } = {}) {
      if (crash) await broker.kill();
      else await broker.stop();
      await broker.start(env);
      await unseal(broker, keys);
    },
    async close() {
      await broker.stop();
      broker.remove();
    },
  };
}

/** The admin URL of `server` with `{{username}}`/`{{password}}` placeholders, as Vault users write it. */
export function templatedUrl(server: TestPostgres): string {
  return `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`;
}

/** Write `database/config/<name>` for `server`; asserts 204. */
export async function configureConnection(pb: PgBroker, server: TestPostgres, name: string, extra: Record<string, unknown> = {}): Promise<void> {
  const r = await pb.api('PUT', `database/config/${name}`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: templatedUrl(server),
    username: server.adminUser,
    password: server.adminPassword,
    allowed_roles: '*',
    ...extra,
  });
  assert.equal(r.status, 204, r.text);
}

export const LOGIN_ROLE = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`;

/**
 * Write `database/roles/<name>`; asserts 204, or 200 with only warnings (a
 * role that grants on a table directly to the user gets the ACL row limit
 * warning: test/src/database/acl-limit.test.ts checks it).
 */
export async function createRole(pb: PgBroker, name: string, fields: Record<string, unknown>): Promise<void> {
  const r = await pb.api('PUT', `database/roles/${name}`, { creation_statements: [LOGIN_ROLE], ...fields });
  if (r.status === 200) assert.ok(r.body.data === null && r.body.warnings.length > 0, r.text);
  else assert.equal(r.status, 204, r.text);
}

export interface Creds {
  leaseId: string;
  leaseDuration: number;
  username: string;
  password: string;
  body: ApiResponse['body'];
}

/** GET `database/creds/<role>`; asserts 200. */
export async function issueCreds(pb: PgBroker, role: string, token = pb.root): Promise<Creds> {
  const r = await pb.broker.api('GET', `database/creds/${role}`, { token });
  assert.equal(r.status, 200, r.text);
  return { leaseId: r.body.lease_id, leaseDuration: r.body.lease_duration, username: r.body.data.username, password: r.body.data.password, body: r.body };
}

export async function roleExists(server: TestPostgres, username: string): Promise<boolean> {
  return (await adminQuery(server, 'SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [username])).length === 1;
}

/** Roles whose name starts with `prefix` (taken literally). */
export async function rolesWithPrefix(server: TestPostgres, prefix: string): Promise<string[]> {
  const rows = await adminQuery<{ rolname: string }>(
    server,
    "SELECT rolname FROM pg_catalog.pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname",
    [prefix],
  );
  return rows.map((r) => r.rolname);
}

/** Drop leftover roles starting with `prefix` (cleanup after a failed test). */
export async function dropRolesWithPrefix(server: TestPostgres, prefix: string): Promise<void> {
  for (const name of await rolesWithPrefix(server, prefix)) {
    const quoted = `"${name.split('"').join('""')}"`;
    await adminQuery(server, `REASSIGN OWNED BY ${quoted} TO CURRENT_USER; DROP OWNED BY ${quoted}; DROP ROLE IF EXISTS ${quoted}`).catch(() => undefined);
  }
}

/** A username template that gives every user of a test a unique, greppable prefix. */
export const prefixTemplate = (prefix: string): string => `{{ printf "${prefix}%s" (random 16) }}`;
