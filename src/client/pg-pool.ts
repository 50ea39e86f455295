// createPgPool: a node-postgres pool that takes its login from the broker and
// re-keys itself (see credential-rotator.ts).
//
//   import { createPgPool } from 'dbroker/client';
//   const pool = await createPgPool({
//     broker: { address: 'http://127.0.0.1:8200', auth: { type: 'approle', roleId, secretId } },
//     role: 'app',
//     pool: { host: 'db.internal', database: 'app', max: 10 },
//   });
//   const { rows } = await pool.query('SELECT now()');
//   await pool.end();

import type { Pool, PoolClient, PoolConfig, QueryResult, QueryResultRow } from 'pg';
import { CredentialRotator, type CredentialSource, type LeasedCredentials, type RenewEvent, type RotateEvent, type RotatorStats } from './credential-rotator.ts';

export interface PgPoolOptions extends CredentialSource {
  /** node-postgres Pool settings, without `user`/`password` (they come from the broker). */
  pool?: Omit<PoolConfig, 'user' | 'password'>;
}

/** The part of pg.Pool an application uses, on whichever pool holds the current credentials. */
export interface RotatingPgPool {
  /** pool.query on the current pool; a rotation waits for it to finish before closing that pool. */
  query<Row extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<Row>>;
  /**
   * A client of the current pool (for transactions). `release()` it as with pg:
   * its pool is closed only after that, so hold clients briefly (not past the lease's TTL).
   */
  connect(): Promise<PoolClient>;
  /** Switch to new credentials now. */
  rotate(): Promise<void>;
  /** Drain and close, then revoke the lease. */
  end(): Promise<void>;
  /** The credentials in use (username, lease id). */
  readonly credentials: LeasedCredentials | undefined;
  readonly stats: RotatorStats;
  /** `rotate`, `renew`, `error` events: see CredentialRotator. */
  on(event: 'rotate', listener: (e: RotateEvent) => void): this;
  on(event: 'renew', listener: (e: RenewEvent) => void): this;
  on(event: 'error', listener: (e: Error) => void): this;
}

/** SQLSTATE 28000 (invalid_authorization_specification: no such role, NOLOGIN) and 28P01 (invalid_password): raised at connect, before any statement ran. */
const loginRefused = (err: unknown): boolean => ['28000', '28P01'].includes(String((err as { code?: unknown }).code));

/**
 * Obtain credentials for `role`, open a pg.Pool with them (checked with
 * `SELECT 1`) and keep them fresh. Throws what the broker or PostgreSQL answered
 * when the first credentials cannot be obtained or used.
 */
export async function createPgPool(opts: PgPoolOptions): Promise<RotatingPgPool> {
  const pg = (await import('pg')).default;
  const open = async (creds: LeasedCredentials): Promise<Pool> => {
    const pool = new pg.Pool({ ...opts.pool, user: creds.username, password: creds.password });
    // An idle client cut by the server (e.g. the old user's sessions ended at revoke) must not crash the process.
    pool.on('error', () => undefined);
    try {
      await pool.query('SELECT 1');
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return pool;
  };
  const rotator = new CredentialRotator<Pool>(opts, open, (pool) => pool.end());
  await rotator.start();
  const api: RotatingPgPool = {
    query: (text, values) => rotator.use((pool) => pool.query(text, values), loginRefused),
    async connect() {
      const lease = rotator.acquire();
      let client: PoolClient;
      try {
        client = await lease.resource.connect();
      } catch (err) {
        lease.release();
        throw err;
      }
      const release = client.release.bind(client);
      client.release = (err?: Error | boolean) => {
        release(err);
        lease.release();
      };
      return client;
    },
    rotate: () => rotator.rotate(),
    end: () => rotator.end(),
    get credentials() {
      return rotator.credentials;
    },
    stats: rotator.stats,
    on(event, listener) {
      rotator.on(event, listener as (...args: unknown[]) => void);
      return api;
    },
  };
  return api;
}
