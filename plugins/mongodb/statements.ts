// MongoDB statements are JSON documents, not command text (Vault's format):
//
//   creation     exactly one {"db": "admin", "roles": [...]}: createUser in `db`
//                (default admin) with those roles. A role is "name" (a role in
//                `db`) or {"role": "name", "db": "other"}; at least one.
//   revocation,  any number of {"db": "..."}: dropUser in each db (default admin).
//   rollback
//   rotation,    at most one {"db": "..."}: updateUser (pwd) in that db.
//   root_rotation
//   renew        none: MongoDB has no in-database expiry.
//
// Values never enter a command as text: the username, password, db and role
// names are BSON string values of a fixed command document, so they cannot
// change which command runs. Unknown fields are refused (a typo such as
// "role" for "roles" would otherwise silently create a user without roles).

import { EngineInputError, type StatementKind, type Statements } from '../../src/engine/engine.ts';

export const DEFAULT_DB = 'admin';

export interface RoleRef {
  role: string;
  db: string;
}

export interface CreationStatement {
  db: string;
  roles: RoleRef[];
}

/** Where a revocation, rollback or password statement acts. */
export interface DbStatement {
  db: string;
}

// mongod refuses these in database names (on every platform), and names of
// 64 bytes or more.
const BAD_DB_CHARS = /[/\\. "$\0]/;

// JSON's "\ud800" escapes give strings BSON cannot carry as UTF-8 (the driver
// would silently send U+FFFD instead).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function checkDbName(db: unknown, where: string): string {
  if (typeof db !== 'string' || db === '') throw new EngineInputError(`${where} must be a non-empty string`);
  if (LONE_SURROGATE.test(db)) throw new EngineInputError(`${where} is not valid Unicode (an unpaired surrogate)`);
  if (BAD_DB_CHARS.test(db)) throw new EngineInputError(`${where} "${db.slice(0, 64)}" is not a valid database name (no / \\ . space " $ or NUL)`);
  if (Buffer.byteLength(db, 'utf8') >= 64) throw new EngineInputError(`${where} is too long (database names are under 64 bytes)`);
  return db;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJsonObject(text: string, where: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new EngineInputError(`${where} is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isPlainObject(value)) throw new EngineInputError(`${where} must be a JSON object`);
  return value;
}

function refuseUnknownFields(doc: Record<string, unknown>, allowed: readonly string[], where: string, shape: string): void {
  for (const key of Object.keys(doc)) {
    if (!allowed.includes(key)) throw new EngineInputError(`${where} has unknown field "${key.slice(0, 64)}" (expected ${shape})`);
  }
}

function roleName(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new EngineInputError(`${where} must be a non-empty role name`);
  if (value.includes('\0')) throw new EngineInputError(`${where} contains a NUL character`);
  if (LONE_SURROGATE.test(value)) throw new EngineInputError(`${where} is not valid Unicode (an unpaired surrogate)`);
  return value;
}

function parseRole(value: unknown, statementDb: string, where: string): RoleRef {
  if (typeof value === 'string') return { role: roleName(value, where), db: statementDb };
  if (!isPlainObject(value)) throw new EngineInputError(`${where} must be a role name or {"role": "...", "db": "..."}`);
  refuseUnknownFields(value, ['role', 'db'], where, '"role" and "db"');
  const role = roleName(value.role, `${where}.role`);
  const db = value.db === undefined ? statementDb : checkDbName(value.db, `${where}.db`);
  return { role, db };
}

const CREATION_SHAPE = '{"db": "admin", "roles": [{"role": "read", "db": "app"}]}';
const DB_SHAPE = '{"db": "<database>"}';

export function parseCreation(text: string, where = 'statement'): CreationStatement {
  const doc = parseJsonObject(text, where);
  refuseUnknownFields(doc, ['db', 'roles'], where, CREATION_SHAPE);
  const db = doc.db === undefined ? DEFAULT_DB : checkDbName(doc.db, `${where}: "db"`);
  if (doc.roles === undefined) throw new EngineInputError(`${where}: "roles" is required, e.g. ${CREATION_SHAPE}`);
  if (!Array.isArray(doc.roles)) throw new EngineInputError(`${where}: "roles" must be an array`);
  if (doc.roles.length === 0) throw new EngineInputError(`${where}: "roles" must name at least one role`);
  const roles = doc.roles.map((r, i) => parseRole(r, db, `${where}: roles[${i}]`));
  return { db, roles };
}

export function parseDbStatement(text: string, where = 'statement'): DbStatement {
  const doc = parseJsonObject(text, where);
  refuseUnknownFields(doc, ['db'], where, DB_SHAPE);
  return { db: doc.db === undefined ? DEFAULT_DB : checkDbName(doc.db, `${where}: "db"`) };
}

function statementList(kind: StatementKind, statements: Statements): string[] {
  if (!Array.isArray(statements) || statements.some((s) => typeof s !== 'string')) {
    throw new EngineInputError(`${kind}_statements must be a list of JSON strings`);
  }
  return statements.filter((s) => s.trim() !== '');
}

function where(kind: StatementKind, index: number, count: number): string {
  return count === 1 ? `${kind}_statements` : `${kind}_statements[${index}]`;
}

/** The one creation statement of a role. */
export function creationFrom(statements: Statements): CreationStatement {
  const list = statementList('creation', statements);
  if (list.length === 0) throw new EngineInputError(`creation_statements must hold one JSON statement, e.g. ${CREATION_SHAPE}`);
  if (list.length > 1) throw new EngineInputError(`creation_statements must hold exactly one JSON statement for MongoDB (got ${list.length})`);
  return parseCreation(list[0]!, 'creation_statements');
}

/** The databases revocation or rollback statements drop the user in ([] = the engine's default). */
export function dropTargetsFrom(kind: 'revocation' | 'rollback', statements: Statements): string[] {
  const list = statementList(kind, statements);
  const dbs = list.map((s, i) => parseDbStatement(s, where(kind, i, list.length)).db);
  return [...new Set(dbs)];
}

/** The database a password change runs in, or undefined for the default. */
export function passwordDbFrom(kind: 'rotation' | 'root_rotation', statements: Statements): string | undefined {
  const list = statementList(kind, statements);
  if (list.length === 0) return undefined;
  if (list.length > 1) throw new EngineInputError(`${kind}_statements must hold at most one JSON statement for MongoDB (got ${list.length})`);
  return parseDbStatement(list[0]!, `${kind}_statements`).db;
}

/** Role-write validation: the same parsing the engine does at run time. */
export function validateStatements(kind: StatementKind, statements: Statements): void {
  switch (kind) {
    case 'creation':
      creationFrom(statements);
      return;
    case 'revocation':
    case 'rollback':
      dropTargetsFrom(kind, statements);
      return;
    case 'rotation':
    case 'root_rotation':
      passwordDbFrom(kind, statements);
      return;
    case 'renew':
      if (statementList(kind, statements).length > 0) {
        throw new EngineInputError('renew_statements are not supported by the MongoDB engine: MongoDB has no in-database expiry (leases end by revocation)');
      }
      return;
  }
}
