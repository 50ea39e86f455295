// The "database" behind the example engine: a SQLite file of accounts
// (scrypt password hashes, an expiry), their grants on named objects, and
// open sessions. It enforces what a real server would: a login needs the
// right password and an unexpired account; an access needs a grant; a
// session lasts only while its account exists. Tests use the same functions
// as the client side, so they observe the engine's effects for real.

import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import Database from 'better-sqlite3';

export type UserStore = Database.Database;
export type Privilege = 'read' | 'write';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS accounts (
  name TEXT PRIMARY KEY,
  salt BLOB NOT NULL,
  hash BLOB NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0,
  valid_until INTEGER -- epoch ms; NULL: no expiry
);
CREATE TABLE IF NOT EXISTS grants (
  account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
  privilege TEXT NOT NULL CHECK (privilege IN ('read', 'write')),
  object TEXT NOT NULL,
  PRIMARY KEY (account, privilege, object)
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
  opened_at INTEGER NOT NULL
);`;

/** Open an existing store (or create one with `create`). */
export function openStore(file: string, options: { create?: boolean } = {}): UserStore {
  const db = new Database(file, { fileMustExist: !options.create });
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  if (options.create) db.exec(SCHEMA);
  return db;
}

export function hashPassword(password: string, salt: Buffer = randomBytes(16)): { salt: Buffer; hash: Buffer } {
  return { salt, hash: scryptSync(password, salt, 32) };
}

interface AccountRow {
  name: string;
  salt: Buffer;
  hash: Buffer;
  is_admin: number;
  valid_until: number | null;
}

/** Whether `name` may log in with `password` now. */
export function login(db: UserStore, name: string, password: string, admin = false): boolean {
  const row = db.prepare('SELECT * FROM accounts WHERE name = ?').get(name) as AccountRow | undefined;
  if (!row || (admin && row.is_admin !== 1)) return false;
  if (row.valid_until !== null && row.valid_until <= Date.now()) return false;
  return timingSafeEqual(hashPassword(password, row.salt).hash, row.hash);
}

/** Create a store file with one admin account (what an operator does before configuring the broker). */
export function createUserStore(file: string, adminName: string, adminPassword: string): void {
  const db = openStore(file, { create: true });
  try {
    const { salt, hash } = hashPassword(adminPassword);
    db.prepare('INSERT INTO accounts (name, salt, hash, is_admin) VALUES (?, ?, ?, 1)').run(adminName, salt, hash);
  } finally {
    db.close();
  }
}

export function listAccounts(db: UserStore): string[] {
  return (db.prepare('SELECT name FROM accounts ORDER BY name').all() as Array<{ name: string }>).map((r) => r.name);
}

export function validUntil(db: UserStore, name: string): Date | null {
  const row = db.prepare('SELECT valid_until FROM accounts WHERE name = ?').get(name) as { valid_until: number | null } | undefined;
  return row?.valid_until != null ? new Date(row.valid_until) : null;
}

/** Log in and use `privilege` on `object`: 'ok', 'denied', or throws when the login is refused. */
export function access(db: UserStore, name: string, password: string, privilege: Privilege, object: string): 'ok' | 'denied' {
  if (!login(db, name, password)) throw new Error(`login refused for "${name}"`);
  const hit = db.prepare('SELECT 1 FROM grants WHERE account = ? AND privilege = ? AND object = ?').get(name, privilege, object);
  return hit ? 'ok' : 'denied';
}

/** Log in and keep a session open; returns its id. */
export function openSession(db: UserStore, name: string, password: string): string {
  if (!login(db, name, password)) throw new Error(`login refused for "${name}"`);
  const id = randomBytes(8).toString('hex');
  db.prepare('INSERT INTO sessions (id, account, opened_at) VALUES (?, ?, ?)').run(id, name, Date.now());
  return id;
}

export function sessionAlive(db: UserStore, id: string): boolean {
  return db.prepare('SELECT 1 FROM sessions WHERE id = ?').get(id) !== undefined;
}
