// Statement rendering for MySQL, with a cross-check against MySQL's lexer.
//
// The shared template scanner (sql-common) does not know every MySQL lexical
// rule: `#` comments, `/*! ... */` comments whose content is executed, and
// backslash escapes inside "..." strings. Where a template uses them, the
// scanner and the server can disagree about whether a placeholder sits inside
// a quoted value. So each statement is first rendered with a random probe
// containing every quote character, and the result lexed the way MySQL does:
// unless every probe comes out whole inside one quoted token, the statement
// is refused. A value escaped for the wrong context cannot pass this.

import { randomBytes } from 'node:crypto';
import { EngineInputError, type Statements } from '../../src/engine/engine.ts';
import { renderStatement, splitStatements, type TemplateValues } from '../sql-common/statements.ts';
import { mysqlDialect } from './dialect.ts';

const PLACEHOLDER = /\{\{\s*[a-z_]+\s*\}\}/g;
const UNESCAPE: Record<string, string> = { n: '\n', r: '\r', t: '\t', '0': '\0', b: '\b', Z: '\x1a', '%': '\\%', _: '\\_' };

/** The decoded bodies of the quoted tokens ('...', "...", `...`) of `sql`, lexed as MySQL does. */
export function quotedTokens(sql: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i]!;
    if (ch === "'" || ch === '"' || ch === '`') {
      let body = '';
      let j = i + 1;
      let closed = false;
      while (j < sql.length) {
        const c = sql[j]!;
        if (c === '\\' && ch !== '`') {
          const next = sql[j + 1] ?? '';
          body += UNESCAPE[next] ?? next;
          j += 2;
        } else if (c === ch && sql[j + 1] === ch) {
          body += ch;
          j += 2;
        } else if (c === ch) {
          closed = true;
          j++;
          break;
        } else {
          body += c;
          j++;
        }
      }
      if (!closed) throw new EngineInputError(`unterminated ${ch} quote in statement (as MySQL reads it)`);
      out.push(body);
      i = j;
    } else if (ch === '#' || (ch === '-' && sql[i + 1] === '-' && /^$|[\s\x00-\x1f]/.test(sql[i + 2] ?? ''))) {
      const nl = sql.indexOf('\n', i);
      i = nl === -1 ? sql.length : nl;
    } else if (ch === '/' && sql[i + 1] === '*') {
      const executable = /^\/\*M?!\d*/.exec(sql.slice(i, i + 12));
      if (executable) {
        i += executable[0].length; // its content is SQL
      } else {
        const end = sql.indexOf('*/', i + 2);
        i = end === -1 ? sql.length : end + 2;
      }
    } else {
      i++;
    }
  }
  return out;
}

function assertPlaceholdersQuoted(statement: string): void {
  const expected = (statement.match(PLACEHOLDER) ?? []).length;
  if (expected === 0) return;
  const probe = `p${randomBytes(8).toString('hex')}'"\`\\q`;
  const rendered = renderStatement(statement, { name: probe, username: probe, password: probe, expiration: probe }, mysqlDialect);
  let found = 0;
  try {
    for (const body of quotedTokens(rendered)) found += body.split(probe).length - 1;
  } catch {
    found = -1; // the probe's quote characters broke out of where the scanner put them
  }
  if (found !== expected) {
    throw new EngineInputError(
      'a placeholder in a statement would not stay inside one quoted value as MySQL reads it ' +
        '(avoid # and /*! */ comments and backslash-escaped double quotes around placeholders)',
    );
  }
}

// Template -> its statements, split and checked. The check depends on the
// template only (the probe is random, so no template can contain it), and a
// role's templates are rendered once per credential: check each once. Bounded
// by the number of distinct templates in use; the oldest is forgotten first.
const CHECKED = new Map<string, string[]>();
const CHECKED_LIMIT = 512;

function checkedStatements(template: string): string[] {
  let statements = CHECKED.get(template);
  if (statements === undefined) {
    statements = splitStatements(template, mysqlDialect);
    for (const statement of statements) assertPlaceholdersQuoted(statement);
    if (CHECKED.size >= CHECKED_LIMIT) CHECKED.delete(CHECKED.keys().next().value!);
    CHECKED.set(template, statements);
  }
  return statements;
}

/** Split and check templates for MySQL: the statement templates, in order. Throws EngineInputError for bad templates. */
export function checkMysql(templates: Statements): string[] {
  return templates.flatMap(checkedStatements);
}

/** Split, check and render templates for MySQL. Throws EngineInputError for bad templates. */
export function renderMysql(templates: Statements, values: TemplateValues): string[] {
  return checkMysql(templates).map((statement) => renderStatement(statement, values, mysqlDialect));
}
