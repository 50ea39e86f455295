// A fresh PostgreSQL database per test file for the PostgreSQL store (on the
// shared server, DBROKER_TEST_PG_URL or 127.0.0.1:5432), dropped afterwards.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { DEFAULT_TRUST_URL } from './scram-postgres.ts';

export interface StoreDatabase {
  /** postgres:// URL of the new database. */
  url: string;
  name: string;
  /** Run SQL in that database as the superuser. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

const serverUrl = (): string => process.env.DBROKER_TEST_PG_URL ?? DEFAULT_TRUST_URL;

async function onServer<T>(work: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: serverUrl() });
  await c.connect();
  try {
    return await work(c);
  } finally {
    await c.end();
  }
}

export async function createStoreDatabase(label = 'store'): Promise<StoreDatabase> {
  const name = `dbroker_${label}_${randomBytes(5).toString('hex')}`;
  await onServer((c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(serverUrl());
  u.pathname = `/${name}`;
  const url = u.toString();
  return {
    url,
    name,
    async query(sql, values = []) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return (await c.query(sql, values)).rows;
      } finally {
        await c.end();
      }
    },
    async drop() {
      await onServer((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
