// PostgreSQL's per-object ACL row limit, and the group-role pattern that
// avoids it.
//
// A privilege granted ON an object TO a role adds an aclitem (12 bytes:
// grantee, grantor, privilege bits) to the object's ACL array, which lives in
// the object's own catalog row (PG manual, "Privileges", 5.7; "System
// Catalogs": relacl, nspacl, proacl, datacl, ...). Tables, views, sequences
// and materialized views are rows of pg_class, columns rows of pg_attribute,
// large objects rows of pg_largeobject_metadata: those catalogs have no TOAST
// table, so the row must fit in one 8 kB page. The array is compressed in
// place (pglz; about 3.3 bytes per entry, as grantor and privileges repeat),
// and the grant after which even that does not fit fails with `row is too
// big: size 8168, maximum size 8160` (SQLSTATE 54000, program_limit_exceeded).
//
// Measured on this project's PostgreSQL 15.20 (one transaction: CREATE ROLE
// r_i NOLOGIN; GRANT SELECT ON t TO r_i; until a grant fails): a plain table,
// a sequence and a view each took 2,443 grantees (plus the owner's own entry)
// and refused the 2,444th, the number vault-benchmark's runs stopped at (issue
// 11); as the list compresses a little less well, fewer: 2,442 with the same
// roles granted in random order, 2,438 for a column grant (pg_attribute),
// 2,429 with other objects' OIDs between the grantees', 2,421 for a table with
// storage options (WITH (fillfactor, autovacuum_enabled)). So a role whose
// creation statements grant directly to "{{name}}" stops issuing at about
// 2,400 live users per object (a dropped user's entry goes away).
//
// pg_namespace, pg_proc, pg_database (and pg_type, pg_language, pg_tablespace,
// pg_default_acl, ...) have TOAST tables on PostgreSQL 15 (their
// `reltoastrelid` is set; check it on older servers): 6,000 grants on one
// schema, one function and 3,000 on one database went through. Their ACL
// still grows by one entry per live user, and every privilege check on the
// object reads the whole list, so they are warned about too.
//
// ALTER DEFAULT PRIVILEGES ... GRANT ... TO "{{name}}" is worse: each live
// user's entry is copied into the ACL of every object created later in its
// scope, so past about 2,400 live users CREATE TABLE there fails, for everyone
// (measured: 2,500 such users, then CREATE TABLE: `row is too big: size
// 8360, maximum size 8160`).
//
// A role membership (GRANT app_users TO "{{name}}") is a row of
// pg_auth_members of its own: no object's ACL grows, so any number of users
// can be members of one group role that holds the privileges.
//
// Other engines: MySQL and MariaDB keep each account's privileges in rows of
// their own (mysql.db, mysql.tables_priv, mysql.columns_priv: one row per
// account and object), so no object accumulates grantees and there is no such
// limit (measured on MariaDB 10.11: 5,000 accounts granted SELECT on one
// table, no error, 5,000 rows in mysql.tables_priv); MongoDB keeps a user's
// roles in the user's own document. Only this engine implements
// EngineFactory.creationWarnings.

import { EngineLimitError, scrubSecrets, type Statements } from '../../src/engine/engine.ts';
import { findBlockCommentEnd, splitStatements } from '../sql-common/statements.ts';
import { postgresDialect } from './dialect.ts';

/** Most grantees one object's ACL took on PostgreSQL 15 (plain table, sequence or view; see above). */
export const MEASURED_TABLE_GRANTEES = 2443;

/** The fewest seen (a table with storage options); the limit depends on how well the list compresses. */
export const MEASURED_TABLE_GRANTEES_LOW = 2421;

const ABOUT =
  `about 2,400 live grantees per table (${MEASURED_TABLE_GRANTEES_LOW.toLocaleString('en-US')} to ` +
  `${MEASURED_TABLE_GRANTEES.toLocaleString('en-US')} measured on PostgreSQL 15; the list is stored compressed, so the exact number depends on its contents)`;

/** Where the README explains the limit and the pattern. */
const README_SECTION = 'README "PostgreSQL: grant a group role, not each user"';

/** The group role name the warnings' examples use. */
const EXAMPLE_GROUP = 'app_users';

type Scope =
  /** pg_class / pg_attribute / pg_largeobject_metadata: no TOAST, a hard limit per object. */
  | 'row'
  /** A catalog with TOAST (schemas, functions, databases, ...): no hard limit, a list that keeps growing. */
  | 'toasted'
  /** ALTER DEFAULT PRIVILEGES: copied into every object created later. */
  | 'default';

/** A creation statement that grants privileges on objects directly to the dynamic user. */
export interface DirectGrant {
  /** The statement as written (one statement of a template). */
  statement: string;
  /** What it grants on, as written after ON, e.g. `TABLE orders` or `ALL TABLES IN SCHEMA public`. */
  target: string;
  scope: Scope;
  /** The statement with the user replaced by the example group role (the fix). */
  forGroup: string;
}

interface Token {
  /** Lower-cased word, `"`-quoted identifier body, `{{placeholder}}` name, or a punctuation character. */
  kind: 'word' | 'ident' | 'placeholder' | 'punct' | 'string';
  value: string;
  start: number;
  end: number;
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;
const USER_PLACEHOLDER = /^\{\{\s*(name|username)\s*\}\}$/;

/**
 * PostgreSQL's lexical structure (PG manual 4.1), as far as finding GRANTs
 * needs: comments are skipped, string literals become one token, quoted
 * identifiers keep their body, and a dollar-quoted body (a DO block, a
 * function) is read as statements too. Offsets index `text`.
 */
function tokenize(text: string, from = 0, to = text.length, out: Token[] = []): Token[] {
  let i = from;
  while (i < to) {
    const ch = text[i]!;
    if (/\s/.test(ch)) {
      i++;
    } else if (text.startsWith('--', i)) {
      const nl = text.indexOf('\n', i);
      i = nl === -1 || nl > to ? to : nl;
    } else if (text.startsWith('/*', i)) {
      const end = findBlockCommentEnd(text, i);
      i = end === -1 || end > to ? to : end;
    } else if (text.startsWith('{{', i)) {
      const close = text.indexOf('}}', i);
      const end = close === -1 ? to : close + 2;
      out.push({ kind: 'placeholder', value: text.slice(i, end), start: i, end });
      i = end;
    } else if (ch === "'") {
      // E'...' takes backslash escapes; the E is the previous word token.
      const prev = out[out.length - 1];
      const backslash = prev?.kind === 'word' && prev.value === 'e' && prev.end === i;
      let j = i + 1;
      while (j < to) {
        if (backslash && text[j] === '\\') j += 2;
        else if (text[j] === "'" && text[j + 1] === "'") j += 2;
        else if (text[j] === "'") break;
        else j++;
      }
      out.push({ kind: 'string', value: '', start: i, end: Math.min(j + 1, to) });
      i = j + 1;
    } else if (ch === '"') {
      let j = i + 1;
      let body = '';
      while (j < to) {
        if (text[j] === '"' && text[j + 1] === '"') {
          body += '"';
          j += 2;
        } else if (text[j] === '"') {
          break;
        } else {
          body += text[j++];
        }
      }
      out.push({ kind: 'ident', value: body, start: i, end: Math.min(j + 1, to) });
      i = j + 1;
    } else if (ch === '$' && !(i > 0 && WORD_CHAR.test(text[i - 1]!)) && DOLLAR_TAG.test(text.slice(i, i + 200))) {
      const tag = DOLLAR_TAG.exec(text.slice(i, i + 200))![0];
      const close = text.indexOf(tag, i + tag.length);
      const bodyEnd = close === -1 || close > to ? to : close;
      // The body of a DO block or function is SQL too: a separator around it keeps its statements apart.
      out.push({ kind: 'punct', value: ';', start: i, end: i + tag.length });
      tokenize(text, i + tag.length, bodyEnd, out);
      out.push({ kind: 'punct', value: ';', start: bodyEnd, end: Math.min(bodyEnd + tag.length, to) });
      i = Math.min(bodyEnd + tag.length, to);
    } else if (WORD_START.test(ch)) {
      let j = i + 1;
      while (j < to && WORD_CHAR.test(text[j]!)) j++;
      out.push({ kind: 'word', value: text.slice(i, j).toLowerCase(), start: i, end: j });
      i = j;
    } else {
      out.push({ kind: 'punct', value: ch, start: i, end: i + 1 });
      i++;
    }
  }
  return out;
}

const isWord = (t: Token | undefined, ...words: string[]): boolean => t?.kind === 'word' && words.includes(t.value);

/** Whether a token names the dynamic user: `{{name}}`, `"{{name}}"`, or the same with username. */
function isUser(t: Token): boolean {
  return (t.kind === 'placeholder' || t.kind === 'ident') && USER_PLACEHOLDER.test(t.value);
}

/** Index of the first top-level (outside parentheses) word among `words` at or after `from`, or -1. */
function findTopLevel(tokens: Token[], from: number, ...words: string[]): number {
  let depth = 0;
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind === 'punct' && t.value === '(') depth++;
    else if (t.kind === 'punct' && t.value === ')') depth = Math.max(0, depth - 1);
    else if (depth === 0 && isWord(t, ...words)) return i;
  }
  return -1;
}

/** Which catalog the ACL of a GRANT's target lives in (PG manual, GRANT synopsis). */
function scopeOf(target: Token[], columnGrant: boolean): Scope {
  const words = target.filter((t) => t.kind === 'word').map((t) => t.value);
  const [first, second] = words;
  if (columnGrant) return 'row';
  if (first === 'all') return second === 'tables' || second === 'sequences' ? 'row' : 'toasted';
  if (first === 'large' && second === 'object') return 'row';
  if (first === 'table' || first === 'sequence') return 'row';
  const toasted = ['schema', 'function', 'procedure', 'routine', 'database', 'domain', 'type', 'language', 'foreign', 'tablespace', 'parameter'];
  if (first !== undefined && toasted.includes(first) && target.length > 1) return 'toasted';
  // `GRANT SELECT ON orders`: TABLE is the default object type.
  return 'row';
}

/** The direct grant a single statement's tokens make, if any. */
function directGrantIn(text: string, all: Token[]): DirectGrant | undefined {
  // In a PL/pgSQL body, a statement may follow BEGIN (or ELSE, LOOP) in the same `;`-separated piece.
  let skip = 0;
  while (isWord(all[skip], 'begin', 'else', 'loop')) skip++;
  const tokens = all.slice(skip);
  if (tokens.length === 0) return undefined;
  let grant = 0;
  let scopeOverride: Scope | undefined;
  if (isWord(tokens[0], 'alter') && isWord(tokens[1], 'default') && isWord(tokens[2], 'privileges')) {
    grant = findTopLevel(tokens, 3, 'grant', 'revoke');
    if (grant === -1 || tokens[grant]!.value !== 'grant') return undefined;
    scopeOverride = 'default';
  } else if (!isWord(tokens[0], 'grant')) {
    return undefined;
  }
  // A role membership (GRANT app_users TO ...) has no ON: it is not an ACL entry.
  const on = findTopLevel(tokens, grant + 1, 'on', 'to');
  if (on === -1 || tokens[on]!.value !== 'on') return undefined;
  const to = findTopLevel(tokens, on + 1, 'to');
  if (to === -1) return undefined;
  const end = findTopLevel(tokens, to + 1, 'with', 'granted');
  const grantees = tokens.slice(to + 1, end === -1 ? tokens.length : end);
  if (!grantees.some(isUser)) return undefined;
  const columnGrant = tokens.slice(grant + 1, on).some((t) => t.kind === 'punct' && t.value === '(');
  const target = tokens.slice(on + 1, to);
  const statement = text.slice(tokens[0]!.start, tokens[tokens.length - 1]!.end);
  return {
    statement,
    target: target.length > 0 ? text.slice(target[0]!.start, target[target.length - 1]!.end) : '',
    scope: scopeOverride ?? scopeOf(target, columnGrant),
    forGroup: `${text.slice(tokens[0]!.start, tokens[to]!.end)} ${EXAMPLE_GROUP}`,
  };
}

/**
 * The statements of `templates` (a role's creation statements, with their
 * `{{...}}` placeholders) that GRANT privileges ON an object TO the dynamic
 * user (`{{name}}` or `{{username}}`, quoted or not), including ALTER DEFAULT
 * PRIVILEGES ... TO it and GRANTs inside dollar-quoted bodies (a DO block's
 * plain statements).
 * Role memberships (`GRANT app_users TO "{{name}}"`) are not direct grants.
 * Grants built at run time (EXECUTE format(...)) are not seen. Never throws:
 * text it cannot make sense of yields nothing.
 */
export function directGrants(templates: Statements): DirectGrant[] {
  const found: DirectGrant[] = [];
  for (const template of templates) {
    let statements: string[];
    try {
      statements = splitStatements(template, postgresDialect);
    } catch {
      continue;
    }
    for (const statement of statements) {
      const tokens = tokenize(statement);
      let start = 0;
      for (let i = 0; i <= tokens.length; i++) {
        if (i < tokens.length && !(tokens[i]!.kind === 'punct' && tokens[i]!.value === ';')) continue;
        const grant = directGrantIn(statement, tokens.slice(start, i));
        if (grant) found.push(grant);
        start = i + 1;
      }
    }
  }
  return found;
}

const ROW_LIMIT_TEXT =
  `PostgreSQL keeps an object's access list (ACL) in the object's own catalog row, one entry per grantee; for tables, views and sequences ` +
  `(pg_class) that row has no TOAST, so once it would pass 8 kB even compressed, the next GRANT fails with "row is too big" (SQLSTATE 54000): ` +
  `at ${ABOUT}. ` +
  'Every user of this role is such a grantee until it is revoked, so creds for this role start failing at about that many live leases';

const TOASTED_TEXT =
  'Schemas, functions and databases have no hard limit on PostgreSQL 15 (their catalogs have TOAST), but each live user of this role adds ' +
  'an entry to their access list (ACL) too, which keeps growing and is read by every privilege check on the object';

const DEFAULT_TEXT =
  'ALTER DEFAULT PRIVILEGES ... TO the user copies one entry per live user into the ACL of every object created later: past about ' +
  `2,400 live users, CREATE TABLE in that scope fails with "row is too big" (SQLSTATE 54000) for everyone`;

/**
 * EngineFactory.creationWarnings for PostgreSQL: one warning when the
 * creation statements grant directly to the user (see directGrants), naming
 * the statements, explaining the limit that applies (see the file comment)
 * and giving the group-role version of the same statements. [] otherwise.
 */
export function creationWarnings(templates: Statements): string[] {
  const grants = directGrants(templates);
  if (grants.length === 0) return [];
  const scopes = new Set(grants.map((g) => g.scope));
  const why: string[] = [];
  if (scopes.has('row')) why.push(ROW_LIMIT_TEXT);
  if (scopes.has('toasted')) why.push(TOASTED_TEXT);
  if (scopes.has('default')) why.push(DEFAULT_TEXT);
  const listed = grants.map((g) => g.statement).join('; ');
  return [
    `creation_statements grant privileges directly to each user (${listed}). ${why.join('. ')}. ` +
      `Grant the privileges once to a group role and make each user a member instead: run once, as an admin, ` +
      `CREATE ROLE ${EXAMPLE_GROUP} NOLOGIN; ${grants.map((g) => g.forGroup).join('; ')}; ` +
      `then replace those statements in creation_statements with GRANT ${EXAMPLE_GROUP} TO "{{name}}" ` +
      `(members inherit the group's privileges; a membership is a row of pg_auth_members, so no ACL grows). See ${README_SECTION}`,
  ];
}

/**
 * For newUser's failure: when PostgreSQL refused the creation with SQLSTATE
 * 54000 (program_limit_exceeded, e.g. "row is too big" for an object's ACL),
 * an EngineLimitError saying what happened and what to do; undefined for any
 * other failure. `creation` are the role's creation statement templates (to
 * name the direct grants). The caller must know the creation's transaction
 * was rolled back (EngineLimitError means nothing was created). The message
 * is scrubbed of `secrets`.
 */
export function aclLimitError(err: unknown, creation: Statements, secrets: ReadonlyArray<string | undefined>): EngineLimitError | undefined {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown };
  if (e.code !== '54000') return undefined;
  const message = typeof e.message === 'string' ? e.message : 'program limit exceeded';
  const grants = directGrants(creation);
  let advice: string;
  if (/row is too big/i.test(message) && grants.length > 0) {
    advice =
      `The role's creation statements grant directly to each user (${grants.map((g) => g.statement).join('; ')}), and every live user is an entry in the ` +
      `access list (ACL) of each object granted on, kept in one catalog row without TOAST: PostgreSQL refuses more grants at ${ABOUT}. ` +
      `To issue more: grant the privileges once to a group role (CREATE ROLE ${EXAMPLE_GROUP} NOLOGIN; ${grants.map((g) => g.forGroup).join('; ')}) ` +
      `and change the role's creation_statements to GRANT ${EXAMPLE_GROUP} TO "{{name}}" (${README_SECTION}). ` +
      `Until then, creds for this role succeed again only as its leases are revoked`;
  } else if (/row is too big/i.test(message)) {
    advice =
      `A catalog row would exceed one 8 kB page; most often an object's access list (ACL) is full because too many roles are granted on it ` +
      `directly (${ABOUT}), e.g. by other roles or by ALTER DEFAULT PRIVILEGES. ` +
      `Grant a group role instead of each user (${README_SECTION})`;
  } else {
    advice = 'The creation statements exceed one of PostgreSQL\'s limits (PG manual, "PostgreSQL Limits"); change them';
  }
  return new EngineLimitError(
    scrubSecrets(`PostgreSQL refused to create the user: ${message} (SQLSTATE 54000). Nothing was created. ${advice}.`, secrets),
  );
}
