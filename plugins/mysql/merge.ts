// Creation statements that several users can share in one statement.
//
// MySQL and MariaDB take many accounts in one CREATE USER or GRANT:
//   CREATE USER 'a'@'%' IDENTIFIED BY 'x', 'b'@'%' IDENTIFIED BY 'y'
//   GRANT SELECT ON db.* TO 'a'@'%', 'b'@'%'
// (MySQL 8.0 manual 15.7.1.3 and 15.7.1.6; MariaDB CREATE USER and GRANT
// pages). The server takes its privilege lock once per statement, so one
// statement for a batch of users costs it far less than one per user, and
// the broker saves the round trips. Only two exact shapes are merged, each
// naming `{{name}}` as the only account; anything else (options after the
// account, comments, other placeholders) runs once per user as written.

import { renderStatement, type TemplateValues } from '../sql-common/statements.ts';
import { mysqlDialect } from './dialect.ts';

/**
 * A statement template that can take a list of accounts: `head` + the
 * accounts rendered from `account` joined by ", " + `tail`. `create` marks a
 * single-account `CREATE USER` (no IF NOT EXISTS, no OR REPLACE): it fails
 * without creating anything when the account exists (ER_CANNOT_USER, 1396),
 * so it is its own existence check.
 */
export interface MergeShape {
  kind: 'create' | 'grant';
  head: string;
  account: string;
  tail: string;
}

const P = (names: string): string => `\\{\\{\\s*(?:${names})\\s*\\}\\}`;
const NAME = `(?:'${P('name|username')}'|"${P('name|username')}"|\`${P('name|username')}\`|${P('name|username')})`;
const HOST = `(?:\\s*@\\s*(?:'[^'\\\\{}]*'|"[^"\\\\{}]*"|\`[^\`{}]*\`|[A-Za-z0-9_.%-]+))?`;
const PASSWORD = `(?:'${P('password')}'|"${P('password')}"|${P('password')})`;

const CREATE = new RegExp(`^\\s*(CREATE\\s+USER)\\s+(${NAME}${HOST}\\s+IDENTIFIED\\s+(?:WITH\\s+[A-Za-z0-9_]+\\s+)?BY\\s+${PASSWORD})\\s*$`, 'i');
const GRANT = new RegExp(`^\\s*(GRANT\\s+[^{};#'"]*?(?:(?:'[^'{}]*'|"[^"{}]*"|\`[^\`{}]*\`)[^{};#'"]*?)*\\s+TO)\\s+(${NAME}${HOST})(\\s+WITH\\s+(?:GRANT|ADMIN)\\s+OPTION)?\\s*$`, 'i');

/** The merge shape of one (split, checked) statement template, or undefined when it must run per user. */
export function mergeShape(template: string): MergeShape | undefined {
  // Comments could hide or change what the regular expressions see.
  if (/--|#|\/\*/.test(template)) return undefined;
  const create = CREATE.exec(template);
  if (create) return { kind: 'create', head: create[1]!, account: create[2]!, tail: '' };
  const grant = GRANT.exec(template);
  if (grant) return { kind: 'grant', head: grant[1]!, account: grant[2]!, tail: grant[3] ?? '' };
  return undefined;
}

/** One statement for every user of `values`, in order. Throws EngineInputError as renderStatement. */
export function renderMerged(shape: MergeShape, values: TemplateValues[]): string {
  return `${shape.head} ${values.map((v) => renderStatement(shape.account, v, mysqlDialect)).join(', ')}${shape.tail}`;
}

/**
 * Whether a user name can be found reliably in a server message such as
 * "Operation CREATE USER failed for 'a'@'%','b'@'%'": generated names are
 * letters, digits and `_ . -`; a batch with other names is not merged.
 */
export function plainName(username: string): boolean {
  return /^[A-Za-z0-9_.-]+$/.test(username);
}
