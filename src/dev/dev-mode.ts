// `dbroker server --dev`: a throwaway broker, initialised and unsealed, with a
// root token of your choosing, an embedded PostgreSQL (unless --dev-pg-url),
// connection `demo` and role `readonly`. Like `vault server -dev`: never for
// production (one unseal key, printed, and the store is deleted on exit).

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { loadConfig } from '../config.ts';
import { closeOnSignals, startServer } from '../server.ts';
import { generatePassword } from '../util/random.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.ts';

/** The group role that holds the demo table's privileges; the demo role's users are made members of it. */
export const DEMO_GROUP = 'dbroker_demo_read';

export interface DevOptions {
  listen?: string;
  rootToken: string;
  pgUrl?: string;
  logLevel?: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Call our own HTTP API, as any client would, but in process (fastify's
 * inject): the setup runs before the port opens. Throws on any non-2xx.
 */
async function api(app: FastifyInstance, token: string | undefined, method: 'GET' | 'PUT', path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await app.inject({
    method,
    url: `/v1/${path}`,
    headers: { 'content-type': 'application/json', ...(token ? { 'x-vault-token': token } : {}) },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  if (res.statusCode >= 300) throw new Error(`dev setup: ${method} ${path} → ${res.statusCode} ${res.body}`);
  return res.body ? (JSON.parse(res.body) as Record<string, unknown>) : {};
}

/** The connection devSetup writes (on the default `database/` mount) to the dev PostgreSQL. */
const DEMO_CONNECTION = 'demo';

/** What devSetup made in the database that was not there before (dropped at exit: demoTeardown). */
interface DemoObjects {
  table: boolean;
  group: boolean;
}

/**
 * Initialise and unseal, make `rootToken` the root token, create the demo
 * table, the DEMO_GROUP role that may read it, and the `demo` connection
 * (allowed_roles `*`: any role may use it) and `readonly` role (whose users
 * become DEMO_GROUP members). Returns the unseal key and what it created.
 */
async function devSetup(app: FastifyInstance, rootToken: string, pgUrl: string): Promise<{ unsealKey: string; created: DemoObjects }> {
  const init = await api(app, undefined, 'PUT', 'sys/init', { secret_shares: 1, secret_threshold: 1 });
  const [unsealKey] = init.keys_base64 as string[];
  await api(app, undefined, 'PUT', 'sys/unseal', { key: unsealKey });
  const initialRoot = init.root_token as string;
  await api(app, initialRoot, 'PUT', 'auth/token/create', { id: rootToken, policies: ['root'], display_name: 'root', no_parent: true });
  await api(app, rootToken, 'PUT', 'auth/token/revoke', { token: initialRoot });

  const demo = new pg.Client({ connectionString: pgUrl });
  await demo.connect();
  const created: DemoObjects = { table: false, group: false };
  try {
    created.table = (await demo.query<{ t: string | null }>("SELECT to_regclass('demo_items') AS t")).rows[0]?.t === null;
    await demo.query('CREATE TABLE IF NOT EXISTS demo_items (id serial PRIMARY KEY, name text NOT NULL)');
    await demo.query(`INSERT INTO demo_items (name) SELECT n FROM unnest(ARRAY['apple','banana','cherry']) AS n WHERE NOT EXISTS (SELECT 1 FROM demo_items)`);
    // The group-role pattern (README "PostgreSQL: grant a group role, not each user"): the table's
    // privileges go to one group role, each dynamic user only becomes a member. Roles are server-wide,
    // so with --dev-pg-url the group may exist already (or be created by another dev broker right now).
    created.group = (await demo.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [DEMO_GROUP])).rowCount === 0;
    await demo.query(
      `DO $$ BEGIN CREATE ROLE ${DEMO_GROUP} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`,
    );
    await demo.query(`GRANT SELECT ON demo_items TO ${DEMO_GROUP}`);
  } finally {
    await demo.end();
  }

  const admin = templatedUrl(pgUrl);
  await api(app, rootToken, 'PUT', `database/config/${DEMO_CONNECTION}`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: admin.connectionUrl,
    username: admin.username,
    password: admin.password,
    // Any role: a dev user's next step is writing a role of their own on `demo`
    // (a new-user trial got a 400 from allowed_roles ["readonly"]).
    allowed_roles: ['*'],
  });
  await api(app, rootToken, 'PUT', 'database/roles/readonly', {
    db_name: DEMO_CONNECTION,
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT ${DEMO_GROUP} TO "{{name}}";`],
    default_ttl: '1h',
    max_ttl: '24h',
  });
  return { unsealKey: unsealKey!, created };
}

/**
 * At exit with --dev-pg-url, after the dev users are dropped: drop the demo
 * table and group role if this run created them, so the database is left as
 * it was found. Another dev broker on the same server may still use them:
 * then DROP fails (dependent objects, members) and they stay, which is logged.
 */
async function demoTeardown(pgUrl: string, created: DemoObjects, logger: { info: (o: object, m: string) => void }): Promise<void> {
  if (!created.table && !created.group) return;
  const demo = new pg.Client({ connectionString: pgUrl });
  await demo.connect();
  try {
    if (created.table) await demo.query('DROP TABLE IF EXISTS demo_items').catch((err: unknown) => logger.info({ err: String(err) }, 'dev mode: the demo table stays'));
    if (created.group) await demo.query(`DROP ROLE IF EXISTS ${DEMO_GROUP}`).catch((err: unknown) => logger.info({ err: String(err) }, 'dev mode: the demo group role stays'));
  } finally {
    await demo.end();
  }
}

/** Split a postgres URL into the admin credentials and a templated URL. */
function templatedUrl(url: string): { connectionUrl: string; username: string; password: string } {
  const u = new URL(url);
  const username = decodeURIComponent(u.username || 'postgres');
  const password = decodeURIComponent(u.password);
  u.username = 'USERNAME';
  u.password = 'PASSWORD';
  const connectionUrl = u.toString().replace('USERNAME:PASSWORD', '{{username}}:{{password}}');
  return { connectionUrl, username, password };
}

export async function runDevServer(opts: DevOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-dev-'));
  let embedded: EmbeddedPostgres | undefined;
  const cleanup = async () => {
    await embedded?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const config = loadConfig(undefined, { ...process.env, DBROKER_STORAGE_PATH: join(dir, 'dbroker.db') }, { listen: opts.listen ?? '127.0.0.1:8200', log_level: opts.logLevel ?? 'info' });
    let pgUrl = opts.pgUrl;
    if (!pgUrl) {
      process.stderr.write('starting embedded PostgreSQL...\n');
      embedded = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), port: await freePort(), password: generatePassword() });
      pgUrl = embedded.url;
    }
    const devPgUrl = pgUrl;
    const external = opts.pgUrl !== undefined;
    let unsealKey = '';
    let created: DemoObjects = { table: false, group: false };
    // The setup runs before the port opens: once sys/health answers, the
    // root token, the demo connection and the role exist.
    await startServer(config, {
      beforeListen: async (server) => {
        closeOnSignals(async () => {
          // The store is deleted on exit, so nothing could revoke these later: drop every
          // user issued now (on connections the user added too: their databases outlive
          // this process), then, with --dev-pg-url, what the setup created. The embedded
          // PostgreSQL is deleted whole (and a terminal's Ctrl-C reaches it too, so it may
          // already be shutting down): the demo connection's leases are left to it.
          if (!server.broker.seal.sealed) {
            await server.broker.leases
              .revokeAll(external ? undefined : { mount: 'database/', connection: DEMO_CONNECTION })
              .catch((err: unknown) => server.logger.error({ err: String(err) }, 'dev mode: revoking leases at exit failed'));
            if (external) await demoTeardown(devPgUrl, created, server.logger).catch((err: unknown) => server.logger.error({ err: String(err) }, 'dev mode: dropping the demo table and group role failed'));
          }
          await server.close();
          await cleanup();
        }, server.logger);
        ({ unsealKey, created } = await devSetup(server.app, opts.rootToken, devPgUrl));
      },
    });
    const base = `http://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${config.listen.port}`;

    const pgTarget = new URL(pgUrl);
    const out = process.stdout;
    out.write(`
dbroker is running in dev mode at ${base} (sealed storage in ${dir}, deleted on exit).
Dev mode prints its only unseal key and keeps a throwaway store: never use it in production.

  Unseal key:  ${unsealKey}
  Root token:  ${opts.rootToken}

Get a short-lived PostgreSQL login:

  curl -s -H "X-Vault-Token: ${opts.rootToken}" ${base}/v1/database/creds/readonly

Then log in with the username and password it returns:

  psql "postgresql://USERNAME:PASSWORD@${pgTarget.hostname}:${pgTarget.port || 5432}${pgTarget.pathname}" -c "SELECT * FROM demo_items"

The connection \`demo\` accepts any role name (allowed_roles "*"): write your own
with PUT ${base}/v1/database/roles/<name> and "db_name": "demo".

Press Ctrl-C to stop.
`);
  } catch (err) {
    await cleanup();
    throw err;
  }
}
