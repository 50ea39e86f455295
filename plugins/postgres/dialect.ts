// The PostgreSQL side of the statement templates: quoting rules, the
// expiration format and which placeholders each kind of statement gets.

import { EngineInputError, type StatementKind, type Statements } from '../../src/engine/engine.ts';
import {
  renderStatements,
  type PlaceholderName,
  type SqlDialect,
  type TemplateValues,
} from '../sql-common/statements.ts';

/**
 * Plain '...' strings have no backslash escapes: every connection is opened
 * with standard_conforming_strings=on (see config.ts), so this holds even on a
 * server configured otherwise.
 */
export const postgresDialect: SqlDialect = {
  escapeInQuotes(value, quote) {
    if (quote === '`') throw new EngineInputError('backtick quoting is not PostgreSQL syntax');
    return value.split(quote).join(quote + quote);
  },
  quoteIdentifier: (value) => `"${value.split('"').join('""')}"`,
  quoteLiteral: (value) => `'${value.split("'").join("''")}'`,
  backslashEscapes: false,
  escapeStrings: true,
  backtickQuotes: false,
  dollarQuotes: true,
};

export const DEFAULT_RENEW: Statements = [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`];
export const DEFAULT_ROTATION: Statements = [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`];
export const DEFAULT_ROOT_ROTATION: Statements = [`ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}'`];

/** The placeholders each kind of statement is rendered with. */
export function placeholdersFor(kind: StatementKind): PlaceholderName[] {
  switch (kind) {
    case 'creation':
    case 'rollback':
      return ['name', 'username', 'password', 'expiration'];
    case 'revocation':
      return ['name', 'username'];
    case 'renew':
      return ['name', 'username', 'expiration'];
    case 'rotation':
    case 'root_rotation':
      return ['name', 'username', 'password'];
  }
}

/** `YYYY-MM-DD HH:MM:SS+00`, in UTC: what VALID UNTIL takes unambiguously. */
export function formatExpiration(date: Date): string {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw new EngineInputError('expiration is not a valid date');
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) throw new EngineInputError('expiration is out of range');
  const p = (n: number, width = 2): string => String(n).padStart(width, '0');
  return (
    `${p(year, 4)}-${p(date.getUTCMonth() + 1)}-${p(date.getUTCDate())} ` +
    `${p(date.getUTCHours())}:${p(date.getUTCMinutes())}:${p(date.getUTCSeconds())}+00`
  );
}

/** Render templates for one kind of statement; only that kind's placeholders are available. */
export function renderFor(kind: StatementKind, templates: Statements, values: TemplateValues): string[] {
  const available: TemplateValues = {};
  for (const key of placeholdersFor(kind)) available[key] = values[key];
  try {
    return renderStatements(templates, available, postgresDialect);
  } catch (err) {
    if (err instanceof EngineInputError) throw new EngineInputError(`${kind}_statements: ${err.message}`);
    throw err;
  }
}

/** PostgreSQL's identifier limit is 63 bytes (NAMEDATALEN - 1); longer names would be silently truncated. */
export function checkUsername(username: string): void {
  if (typeof username !== 'string' || username.length === 0) throw new EngineInputError('username must not be empty');
  if (Buffer.byteLength(username, 'utf8') > 63) throw new EngineInputError('username is longer than 63 bytes');
  if (username.includes('\0')) throw new EngineInputError('username contains a NUL character');
}

export function checkPassword(password: string): void {
  if (typeof password !== 'string' || password.length === 0) throw new EngineInputError('password must not be empty');
  if (password.includes('\0')) throw new EngineInputError('password contains a NUL character');
}
