// Statement templates for the SQL engines: splitting and safe substitution.
//
// Templates are split into single statements *before* values are substituted,
// so a value can never add a statement. Each placeholder is then escaped for
// the quoting context it stands in: inside '...' as a string literal body,
// inside "..." or `...` as an identifier body, and bare as a complete quoted
// literal (or identifier, for the name). Values are also restricted to what
// the broker generates, but the escaping does not rely on that.
//
// The scanner follows the lexical rules that decide where a value can end up:
// quotes (with backslash escapes where the dialect has them, and PostgreSQL's
// E'...' strings), `--` and nested `/* */` comments, and PostgreSQL dollar
// quoting. A value substituted inside a dollar-quoted body may not contain the
// closing tag; a placeholder inside a comment is refused.

import { EngineInputError, type Statements } from '../../src/engine/engine.ts';

type Quote = "'" | '"' | '`';

export interface SqlDialect {
  /** Escape `value` to sit between the given quote characters. */
  escapeInQuotes(value: string, quote: Quote): string;
  /** A complete quoted identifier, for a bare `{{name}}`. */
  quoteIdentifier(value: string): string;
  /** A complete quoted string literal, for a bare `{{password}}` or `{{expiration}}`. */
  quoteLiteral(value: string): string;
  /** Whether `\` escapes the next character inside '...' (MySQL yes, PostgreSQL standard strings no). */
  backslashEscapes: boolean;
  /** PostgreSQL: `E'...'` strings take backslash escapes even where plain strings do not. Default false. */
  escapeStrings?: boolean;
  /** Whether backticks quote identifiers (MySQL). Default true; PostgreSQL: false. */
  backtickQuotes?: boolean;
  /** Whether `$tag$...$tag$` is a quoted body (PostgreSQL). Default true. */
  dollarQuotes?: boolean;
}

export type TemplateValues = Partial<Record<'name' | 'username' | 'password' | 'expiration', string>>;
export type PlaceholderName = keyof TemplateValues;

const PLACEHOLDER = /^\{\{\s*([a-z_]+)\s*\}\}/;
const KNOWN_PLACEHOLDERS = new Set<string>(['name', 'username', 'password', 'expiration']);
const IDENTIFIER_NAMES = new Set(['name', 'username']);
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
// C0 controls and DEL other than whitespace (tab, LF, VT, FF, CR): outside
// quotes neither PostgreSQL's nor MySQL's lexer has a token for them, so the
// statement is certain to fail with a syntax error.
const CONTROL = /[\x00-\x08\x0e-\x1f\x7f]/;

/** What starts at a position outside quotes and comments. */
type Opening =
  | { kind: 'quote'; quote: Quote; backslash: boolean }
  | { kind: 'dollar'; tag: string }
  | { kind: 'line-comment' }
  | { kind: 'block-comment' };

function openingAt(text: string, i: number, dialect: SqlDialect | undefined): Opening | null {
  const ch = text[i]!;
  const prev = i > 0 ? text[i - 1]! : '';
  if (ch === "'") {
    // E'...' (PostgreSQL): the E must be a token of its own, not the end of a word.
    const eString =
      dialect?.escapeStrings === true && (prev === 'E' || prev === 'e') && !(i > 1 && IDENT_CHAR.test(text[i - 2]!));
    return { kind: 'quote', quote: ch, backslash: dialect?.backslashEscapes === true || eString };
  }
  if (ch === '"') return { kind: 'quote', quote: ch, backslash: false };
  if (ch === '`' && dialect?.backtickQuotes !== false) return { kind: 'quote', quote: ch, backslash: false };
  if (ch === '-' && text[i + 1] === '-') return { kind: 'line-comment' };
  if (ch === '/' && text[i + 1] === '*') return { kind: 'block-comment' };
  if (ch === '$' && dialect?.dollarQuotes !== false && !(prev && IDENT_CHAR.test(prev))) {
    const tag = DOLLAR_TAG.exec(text.slice(i, i + 200));
    if (tag) return { kind: 'dollar', tag: tag[0] };
  }
  return null;
}

/** Index just past the closing quote (or text.length if unterminated). */
function findQuoteEnd(text: string, start: number, quote: string, backslash: boolean): number {
  let i = start + 1;
  while (i < text.length) {
    const ch = text[i]!;
    if (backslash && ch === '\\') {
      i += 2;
      continue;
    }
    if (ch === quote) {
      if (text[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return text.length;
}

/** Index just past a (nested) block comment starting at `start`, or -1 if unterminated. */
export function findBlockCommentEnd(text: string, start: number): number {
  let depth = 0;
  let i = start;
  while (i < text.length) {
    if (text.startsWith('/*', i)) {
      depth++;
      i += 2;
    } else if (text.startsWith('*/', i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return -1;
}

/**
 * Split on `;` outside quotes, comments and PostgreSQL dollar quoting. Line
 * comments are dropped; block comments are kept as written. Pass the dialect
 * for its quoting rules (backslash escapes, E'' strings, backticks).
 */
export function splitStatements(text: string, dialect?: SqlDialect): string[] {
  const out: string[] = [];
  let current = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    const open = openingAt(text, i, dialect);
    if (open?.kind === 'quote') {
      const end = findQuoteEnd(text, i, open.quote, open.backslash);
      current += text.slice(i, end);
      i = end;
    } else if (open?.kind === 'dollar') {
      const close = text.indexOf(open.tag, i + open.tag.length);
      const end = close === -1 ? text.length : close + open.tag.length;
      current += text.slice(i, end);
      i = end;
    } else if (open?.kind === 'line-comment') {
      const nl = text.indexOf('\n', i);
      i = nl === -1 ? text.length : nl;
    } else if (open?.kind === 'block-comment') {
      const end = findBlockCommentEnd(text, i);
      if (end === -1) throw new EngineInputError('unterminated /* comment in statement');
      current += text.slice(i, end);
      i = end;
    } else if (ch === ';') {
      if (current.trim()) out.push(current.trim());
      current = '';
      i++;
    } else {
      current += ch;
      i++;
    }
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

/**
 * Substitute placeholders in one statement, escaping each for its context.
 * Unknown placeholders, placeholders in comments, unterminated quotes,
 * values that would close a dollar-quoted body, NUL, and control characters
 * outside quotes (both are certain syntax errors) are refused.
 */
export function renderStatement(template: string, values: TemplateValues, dialect: SqlDialect): string {
  if (template.includes('\0')) throw new EngineInputError('statement contains a NUL character (U+0000), which the database refuses');
  let out = '';
  let quote: { quote: Quote; backslash: boolean } | null = null;
  let dollar: { tag: string; bodyStart: number } | null = null;
  let i = 0;
  while (i < template.length) {
    const ch = template[i]!;

    // PostgreSQL's lexer ends a dollar-quoted body at the first occurrence of
    // its tag, whatever the body looks like inside; so do we.
    if (dollar && template.startsWith(dollar.tag, i)) {
      const body = out.slice(dollar.bodyStart);
      if ((body + dollar.tag).indexOf(dollar.tag) < body.length) {
        throw new EngineInputError(`a substituted value would end the ${dollar.tag} quoted body early`);
      }
      out += dollar.tag;
      i += dollar.tag.length;
      dollar = null;
      quote = null;
      continue;
    }

    if (ch === '{' && template[i + 1] === '{') {
      const m = PLACEHOLDER.exec(template.slice(i));
      if (!m) throw new EngineInputError(`malformed placeholder in statement at "${template.slice(i, i + 20)}"`);
      const key = m[1]!;
      const value = values[key as PlaceholderName];
      if (value === undefined) {
        throw new EngineInputError(
          KNOWN_PLACEHOLDERS.has(key)
            ? `placeholder {{${key}}} is not available in these statements`
            : `unknown placeholder {{${key}}} in statement`,
        );
      }
      if (value.includes('\0')) throw new EngineInputError(`value for {{${key}}} contains a NUL character`);
      if (!quote) out += IDENTIFIER_NAMES.has(key) ? dialect.quoteIdentifier(value) : dialect.quoteLiteral(value);
      else if (quote.backslash && !dialect.backslashEscapes) {
        // An E'...' string in a dialect whose plain strings have no escapes.
        out += dialect.escapeInQuotes(value.replace(/\\/g, '\\\\'), quote.quote);
      } else out += dialect.escapeInQuotes(value, quote.quote);
      i += m[0].length;
      continue;
    }

    if (quote) {
      if (quote.backslash && ch === '\\') {
        out += template.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (ch === quote.quote) {
        if (template[i + 1] === quote.quote) {
          out += ch + ch;
          i += 2;
          continue;
        }
        quote = null;
      }
      out += ch;
      i++;
      continue;
    }

    const open = openingAt(template, i, dialect);
    if (open?.kind === 'quote') {
      quote = { quote: open.quote, backslash: open.backslash };
      out += ch;
      i++;
    } else if (open?.kind === 'dollar' && !dollar) {
      out += open.tag;
      i += open.tag.length;
      dollar = { tag: open.tag, bodyStart: out.length };
    } else if (open?.kind === 'line-comment' || open?.kind === 'block-comment') {
      let end: number;
      if (open.kind === 'line-comment') {
        const nl = template.indexOf('\n', i);
        end = nl === -1 ? template.length : nl;
      } else {
        end = findBlockCommentEnd(template, i);
      }
      // Inside a dollar-quoted body the closing tag wins over the comment.
      const tagAt = dollar ? template.indexOf(dollar.tag, i) : -1;
      if (tagAt !== -1 && (end === -1 || tagAt < end)) end = tagAt;
      if (end === -1) throw new EngineInputError('unterminated /* comment in statement');
      const comment = template.slice(i, end);
      if (comment.includes('{{')) throw new EngineInputError('placeholders are not allowed inside comments');
      out += comment;
      i = end;
    } else {
      if (!dollar && CONTROL.test(ch)) {
        throw new EngineInputError(`control character U+${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} outside a quoted value: the database's SQL parser refuses it`);
      }
      out += ch;
      i++;
    }
  }
  if (quote) throw new EngineInputError(`unterminated ${quote.quote} quote in statement`);
  if (dollar) throw new EngineInputError(`unterminated ${dollar.tag} quoted body in statement`);
  return out;
}

/** Split every template string into statements and render each. */
export function renderStatements(templates: Statements, values: TemplateValues, dialect: SqlDialect): string[] {
  return templates.flatMap((t) => splitStatements(t, dialect)).map((s) => renderStatement(s, values, dialect));
}

/**
 * Role-write validation shared by the SQL engines: every statement renders.
 * `available` limits the placeholders to those the statements will get
 * (e.g. revocation statements have no password); default: all of them.
 */
export function validateSqlStatements(
  templates: Statements,
  dialect: SqlDialect,
  available?: ReadonlyArray<PlaceholderName>,
): void {
  const all: Required<TemplateValues> = { name: 'n', username: 'n', password: 'p', expiration: '2000-01-01 00:00:00+00' };
  const sample: TemplateValues = {};
  for (const key of available ?? (Object.keys(all) as PlaceholderName[])) sample[key] = all[key];
  renderStatements(templates, sample, dialect);
}
