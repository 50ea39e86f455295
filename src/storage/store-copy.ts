// Raw record access for copying a store between backends (operator migrate).
// Records are copied as they are stored: sealed values stay ciphertext, so the
// same unseal keys open the copy. Both backends use the same table and column
// names (see migrations.ts and pg-migrations.ts).

/** The tables a store holds, with their primary key column, in copy order. */
export const STORE_TABLES = [
  { table: 'meta', key: 'key' },
  { table: 'entries', key: 'path' },
  { table: 'tokens', key: 'id_hash' },
  { table: 'leases', key: 'id' },
  { table: 'secret_ids', key: 'id_hash' },
] as const;

export type StoreTable = (typeof STORE_TABLES)[number]['table'];

/** A stored row: column name → value (string, number, null, or Buffer for sealed columns). */
export type RawRow = Record<string, string | number | null | Buffer>;

/** What `operator migrate` needs from a backend besides the Storage interface. */
export interface CopyableStore {
  /** True when no table holds a row. */
  isEmpty(): Promise<boolean>;
  /** Up to `limit` rows of `table` with a key after `after`, in key order (byte order). */
  readRows(table: StoreTable, after: string | undefined, limit: number): Promise<RawRow[]>;
  /** Insert rows into `table` (one transaction per call). */
  writeRows(table: StoreTable, rows: RawRow[]): Promise<void>;
  close(): Promise<void>;
}
