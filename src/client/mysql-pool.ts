// createMysqlPool: a mysql2 (promise) pool that takes its login from the
// broker and re-keys itself (see credential-rotator.ts).
//
//   import { createMysqlPool } from 'dbroker/client';
//   const pool = await createMysqlPool({ broker: { address, token }, role: 'app', pool: { host: 'db', database: 'app' } });
//   const [rows] = await pool.query('SELECT NOW() AS now');

import type { Pool, PoolConnection, PoolOptions } from 'mysql2/promise';
import { CredentialRotator, type CredentialSource, type LeasedCredentials, type RenewEvent, type RotateEvent, type RotatorStats } from './credential-rotator.ts';

export interface MysqlPoolOptions extends CredentialSource {
  /** mysql2 pool settings, without `user`/`password` (they come from the broker). */
  pool?: Omit<PoolOptions, 'user' | 'password'>;
}

export interface RotatingMysqlPool {
  /** pool.query on the current pool (resolves [rows, fields] as mysql2 does). */
  query: Pool['query'];
  /** pool.execute (prepared statement) on the current pool. */
  execute: Pool['execute'];
  /** A connection of the current pool; `release()` it promptly (its pool closes only after). */
  getConnection(): Promise<PoolConnection>;
  rotate(): Promise<void>;
  end(): Promise<void>;
  readonly credentials: LeasedCredentials | undefined;
  readonly stats: RotatorStats;
  on(event: 'rotate', listener: (e: RotateEvent) => void): this;
  on(event: 'renew', listener: (e: RenewEvent) => void): this;
  on(event: 'error', listener: (e: Error) => void): this;
}

/** ER_ACCESS_DENIED_ERROR (1045): the login was refused at connect, before any statement ran. */
const loginRefused = (err: unknown): boolean => (err as { errno?: unknown }).errno === 1045;

/**
 * Obtain credentials for `role`, open a mysql2 pool with them (checked with
 * `SELECT 1`) and keep them fresh. Throws what the broker or MySQL answered
 * when the first credentials cannot be obtained or used.
 */
export async function createMysqlPool(opts: MysqlPoolOptions): Promise<RotatingMysqlPool> {
  const mysql = await import('mysql2/promise');
  const open = async (creds: LeasedCredentials): Promise<Pool> => {
    const pool = mysql.createPool({ ...opts.pool, user: creds.username, password: creds.password });
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
  // mysql2's overloaded signatures: forward the arguments as given.
  const query = ((...args: Parameters<Pool['query']>) => rotator.use((pool) => (pool.query as (...a: unknown[]) => Promise<unknown>)(...args), loginRefused)) as Pool['query'];
  const execute = ((...args: Parameters<Pool['execute']>) => rotator.use((pool) => (pool.execute as (...a: unknown[]) => Promise<unknown>)(...args), loginRefused)) as Pool['execute'];
  const api: RotatingMysqlPool = {
    query,
    execute,
    async getConnection() {
      const lease = rotator.acquire();
      let conn: PoolConnection;
      try {
        conn = await lease.resource.getConnection();
      } catch (err) {
        lease.release();
        throw err;
      }
      const release = conn.release.bind(conn);
      conn.release = () => {
        release();
        lease.release();
      };
      return conn;
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
