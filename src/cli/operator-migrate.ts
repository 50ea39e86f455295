// `dbroker operator migrate --from <store> --to <store>`: copy a store between
// backends, SQLite file ⇄ PostgreSQL, record by record and still encrypted
// (sealed columns are copied as ciphertext), so the same unseal keys open the
// copy. A store is a file path (SQLite) or a postgres:// URL (PostgreSQL).
// Both stores must be closed: the SQLite lock file and the PostgreSQL store
// lock refuse a store a broker has open. A target that holds anything is
// refused, so a copy never mixes two stores.

import { existsSync } from 'node:fs';
import pg from 'pg';
import { PostgresStorage, TABLE_PREFIX } from '../storage/postgres-storage.ts';
import { SqliteStorage } from '../storage/sqlite-storage.ts';
import { STORE_TABLES, type CopyableStore } from '../storage/store-copy.ts';

const PAGE = 500;

export class MigrateError extends Error {
  override name = 'MigrateError';
}

export interface StoreSpec {
  /** A SQLite file path or a postgres:// / postgresql:// URL. */
  location: string;
  /** PostgreSQL table prefix (default "dbroker_"). */
  tablePrefix?: string;
}

const isPostgres = (location: string): boolean => /^postgres(ql)?:\/\//.test(location);

/**
 * Refuse a source that does not exist, before opening it (opening would create an empty store there).
 * @throws MigrateError
 */
async function checkSourceExists(spec: StoreSpec): Promise<void> {
  if (!isPostgres(spec.location)) {
    if (!existsSync(spec.location)) throw new MigrateError(`the source store ${spec.location} does not exist`);
    return;
  }
  const prefix = spec.tablePrefix ?? 'dbroker_';
  if (!TABLE_PREFIX.test(prefix)) throw new MigrateError(`table prefix "${prefix}" must match ${TABLE_PREFIX.source}`);
  const client = new pg.Client({ connectionString: spec.location });
  await client.connect();
  try {
    const found = (await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`${prefix}schema_version`])).rows[0]?.t;
    if (!found) throw new MigrateError(`the source database holds no dbroker store with table prefix "${prefix}"`);
  } finally {
    await client.end();
  }
}

/** Open a store for copying; holds its lock (a running broker makes this fail). */
export async function openForCopy(spec: StoreSpec): Promise<CopyableStore> {
  if (isPostgres(spec.location)) return PostgresStorage.open({ connectionUrl: spec.location, tablePrefix: spec.tablePrefix ?? 'dbroker_', mode: 'single' });
  return new SqliteStorage(spec.location);
}

/**
 * Copy every record of `from` into the empty store `to`.
 * @returns rows copied per table.
 * @throws MigrateError when the target is not empty or the counts differ after the copy.
 */
export async function migrateStore(from: StoreSpec, to: StoreSpec, log: (line: string) => void = () => undefined): Promise<Record<string, number>> {
  if (from.location === to.location && (from.tablePrefix ?? 'dbroker_') === (to.tablePrefix ?? 'dbroker_')) throw new MigrateError('--from and --to name the same store');
  await checkSourceExists(from);
  const source = await openForCopy(from);
  let target: CopyableStore | undefined;
  try {
    if ((await source.readRows('meta', undefined, 1)).length === 0) throw new MigrateError('the source store is empty (never initialised); nothing to migrate');
    target = await openForCopy(to);
    if (!(await target.isEmpty())) throw new MigrateError('the target store is not empty; refusing to overwrite it (give an empty database or table prefix, or a new file)');
    const counts: Record<string, number> = {};
    for (const { table, key } of STORE_TABLES) {
      let after: string | undefined;
      let n = 0;
      for (;;) {
        const rows = await source.readRows(table, after, PAGE);
        if (rows.length === 0) break;
        await target.writeRows(table, rows);
        n += rows.length;
        after = String(rows[rows.length - 1]![key]);
      }
      counts[table] = n;
      log(`${table}: ${n} record(s) copied`);
    }
    // Read the target back: every table holds exactly what was copied.
    for (const { table, key } of STORE_TABLES) {
      let after: string | undefined;
      let n = 0;
      for (;;) {
        const rows = await target.readRows(table, after, PAGE);
        if (rows.length === 0) break;
        n += rows.length;
        after = String(rows[rows.length - 1]![key]);
      }
      if (n !== counts[table]) throw new MigrateError(`${table}: ${counts[table]} record(s) copied but the target holds ${n}`);
    }
    return counts;
  } finally {
    await target?.close();
    await source.close();
  }
}
