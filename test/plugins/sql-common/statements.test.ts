import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineInputError } from '../../../src/engine/engine.ts';
import {
  renderStatement,
  renderStatements,
  splitStatements,
  validateSqlStatements,
  type SqlDialect,
} from '../../../plugins/sql-common/statements.ts';
import { postgresDialect as pgd } from '../../../plugins/postgres/dialect.ts';

// A MySQL-like dialect, defined here so these tests do not depend on the MySQL engine.
const backslashDialect: SqlDialect = {
  escapeInQuotes: (v, q) => v.replace(/\\/g, '\\\\').split(q).join(q + q),
  quoteIdentifier: (v) => '`' + v.split('`').join('``') + '`',
  quoteLiteral: (v) => "'" + v.replace(/\\/g, '\\\\').split("'").join("''") + "'",
  backslashEscapes: true,
};

const values = { name: 'alice', username: 'alice', password: 'pw', expiration: '2030-01-02 03:04:05+00' };

test('split: plain statements, trimming, empty pieces dropped', () => {
  assert.deepEqual(splitStatements(' A ; B;;\n C ;  '), ['A', 'B', 'C']);
  assert.deepEqual(splitStatements(''), []);
  assert.deepEqual(splitStatements(' ;\n; '), []);
});

test('split: semicolons inside quotes stay', () => {
  assert.deepEqual(splitStatements(`SELECT 'a;b'; SELECT "x;y"; SELECT 'it''s;'`), [
    `SELECT 'a;b'`,
    `SELECT "x;y"`,
    `SELECT 'it''s;'`,
  ]);
});

test('split: dollar quoting, tagged and untagged, with semicolons and quotes inside', () => {
  const doBlock = `DO $$ BEGIN CREATE ROLE "x"; RAISE NOTICE 'a;b'; END $$`;
  assert.deepEqual(splitStatements(`${doBlock}; SELECT 1`), [doBlock, 'SELECT 1']);
  const tagged = `CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $$ not the end; $fn$ LANGUAGE sql`;
  assert.deepEqual(splitStatements(`${tagged};SELECT 2`), [tagged, 'SELECT 2']);
  assert.deepEqual(splitStatements(`SELECT $a1$;$a1$; SELECT 3`), [`SELECT $a1$;$a1$`, 'SELECT 3']);
});

test('split: $ inside an identifier or a parameter is not a dollar quote', () => {
  assert.deepEqual(splitStatements('SELECT a$b$; SELECT 2'), ['SELECT a$b$', 'SELECT 2']);
});

test('split: line comments are dropped, block comments kept, semicolons in either ignored', () => {
  assert.deepEqual(splitStatements("SELECT 1; -- it's; a comment\nSELECT 2"), ['SELECT 1', 'SELECT 2']);
  assert.deepEqual(splitStatements("SELECT /* a; 'b */ 1; SELECT 2"), ["SELECT /* a; 'b */ 1", 'SELECT 2']);
  assert.deepEqual(splitStatements('SELECT /* outer /* nested; */ still; */ 1; SELECT 2'), [
    'SELECT /* outer /* nested; */ still; */ 1',
    'SELECT 2',
  ]);
  assert.throws(() => splitStatements('SELECT 1 /* never closed; SELECT 2'), EngineInputError);
});

test('split: backslash escapes follow the dialect', () => {
  // PostgreSQL standard strings: a backslash is a plain character.
  assert.deepEqual(splitStatements(String.raw`SELECT 'a\'; SELECT 2`, pgd), [String.raw`SELECT 'a\'`, 'SELECT 2']);
  // PostgreSQL E'' strings and MySQL strings: \' does not end the string.
  assert.deepEqual(splitStatements(String.raw`SELECT E'a\'; b'; SELECT 2`, pgd), [String.raw`SELECT E'a\'; b'`, 'SELECT 2']);
  assert.deepEqual(splitStatements(String.raw`SELECT 'a\'; b'; SELECT 2`, backslashDialect), [
    String.raw`SELECT 'a\'; b'`,
    'SELECT 2',
  ]);
});

test('render: placeholder contexts in PostgreSQL', () => {
  const v = { name: `o"b'e`, username: `o"b'e`, password: `p'w"d`, expiration: '2030-01-02 03:04:05+00' };
  assert.equal(renderStatement(`CREATE ROLE "{{name}}"`, v, pgd), `CREATE ROLE "o""b'e"`);
  assert.equal(renderStatement(`CREATE ROLE {{name}}`, v, pgd), `CREATE ROLE "o""b'e"`);
  assert.equal(renderStatement(`PASSWORD '{{password}}'`, v, pgd), `PASSWORD 'p''w"d'`);
  assert.equal(renderStatement(`PASSWORD {{password}}`, v, pgd), `PASSWORD 'p''w"d'`);
  assert.equal(renderStatement(`VALID UNTIL {{expiration}}`, v, pgd), `VALID UNTIL '2030-01-02 03:04:05+00'`);
  assert.equal(renderStatement(`GRANT r TO "{{username}}"`, v, pgd), `GRANT r TO "o""b'e"`);
  assert.equal(renderStatement(`X {{ name }}`, v, pgd), `X "o""b'e"`);
});

test('render: backslashes are plain in standard strings and doubled in E strings', () => {
  const v = { password: String.raw`a\'b` };
  assert.equal(renderStatement(`SELECT '{{password}}'`, v, pgd), String.raw`SELECT 'a\''b'`);
  assert.equal(renderStatement(`SELECT E'{{password}}'`, v, pgd), String.raw`SELECT E'a\\''b'`);
  // The E must be a token of its own: in "typE'...'" it ends a word.
  assert.equal(renderStatement(`SELECT "x"E'{{password}}'`, v, pgd), String.raw`SELECT "x"E'a\\''b'`);
  assert.equal(renderStatement(`SELECT typE'{{password}}'`, v, pgd), String.raw`SELECT typE'a\''b'`);
  assert.equal(renderStatement(String.raw`SELECT 'x\' || '{{password}}'`, v, pgd), String.raw`SELECT 'x\' || 'a\''b'`);
});

test('render: backslash dialect keeps template escapes and escapes values', () => {
  assert.equal(
    renderStatement(String.raw`SELECT 'it\'s {{password}}'`, { password: String.raw`x\'` }, backslashDialect),
    String.raw`SELECT 'it\'s x\\'''`,
  );
});

test('render: backticks are identifier quotes by default, plain characters in PostgreSQL', () => {
  assert.equal(renderStatement('GRANT ALL TO `{{name}}`', { name: 'a`b' }, backslashDialect), 'GRANT ALL TO `a``b`');
  // In PostgreSQL the quote after the backtick really opens a string.
  assert.equal(renderStatement("SELECT ` '{{password}}'", { password: "x'y" }, pgd), "SELECT ` 'x''y'");
});

test('render: values inside a dollar-quoted body are escaped for the inner context', () => {
  const t = `DO $$ BEGIN CREATE ROLE "{{name}}" PASSWORD '{{password}}'; EXECUTE {{password}}; END $$`;
  assert.equal(
    renderStatement(t, { name: 'a"b', password: "p'q" }, pgd),
    `DO $$ BEGIN CREATE ROLE "a""b" PASSWORD 'p''q'; EXECUTE 'p''q'; END $$`,
  );
});

test('render: a value that would close the dollar quote is refused', () => {
  const t = `DO $$ BEGIN CREATE ROLE "{{name}}"; END $$`;
  assert.throws(() => renderStatement(t, { name: 'x$$; DROP TABLE t; --' }, pgd), EngineInputError);
  assert.throws(() => renderStatement(`DO $f$ BEGIN PERFORM '{{password}}'; END $f$`, { password: '$f$' }, pgd), EngineInputError);
  // A value ending in '$' next to the closing tag would move the tag.
  assert.throws(() => renderStatement(`SELECT $$ '{{password}}$$`, { password: 'a$' }, pgd), /body/);
  // Other dollar signs are fine.
  assert.equal(renderStatement(`DO $f$ BEGIN PERFORM '{{password}}'; END $f$`, { password: 'a$$b' }, pgd), `DO $f$ BEGIN PERFORM 'a$$b'; END $f$`);
});

test('render: dollar body ends at its tag even inside an inner quote or comment', () => {
  assert.throws(() => renderStatement(`SELECT $$ ' $$ '{{password}}`, { password: 'x' }, pgd), /unterminated ' quote/);
  assert.equal(renderStatement(`SELECT $$ /* $$ , {{password}}`, { password: 'x' }, pgd), `SELECT $$ /* $$ , 'x'`);
});

test('render: placeholders in comments are refused; comments without them pass through', () => {
  assert.throws(() => renderStatement('SELECT 1 /* {{name}} */', values, pgd), /comments/);
  assert.throws(() => renderStatement('SELECT 1 -- {{name}}', values, pgd), /comments/);
  assert.equal(renderStatement(`SELECT /* it's */ '{{password}}'`, values, pgd), `SELECT /* it's */ 'pw'`);
  // A quote inside a comment does not open a string.
  assert.equal(renderStatement(`SELECT 1 -- it's\n, {{password}}`, values, pgd), `SELECT 1 -- it's\n, 'pw'`);
});

test('render: unknown, unavailable and malformed placeholders', () => {
  assert.throws(() => renderStatement('SELECT {{nope}}', values, pgd), /unknown placeholder \{\{nope\}\}/);
  assert.throws(() => renderStatement('SELECT {{password}}', { name: 'n' }, pgd), /\{\{password\}\} is not available/);
  assert.throws(() => renderStatement('SELECT {{Name-x}}', values, pgd), /malformed placeholder/);
  assert.throws(() => renderStatement('SELECT {{name', values, pgd), EngineInputError);
});

test('render: unterminated quotes and dollar quotes', () => {
  assert.throws(() => renderStatement(`SELECT '{{password}}`, values, pgd), /unterminated ' quote/);
  assert.throws(() => renderStatement(`CREATE ROLE "{{name}}`, values, pgd), /unterminated " quote/);
  assert.throws(() => renderStatement(`DO $$ BEGIN NULL; END`, values, pgd), /unterminated \$\$/);
  assert.throws(() => renderStatement(`SELECT 1 /* open`, values, pgd), /unterminated/);
});

test('render: NUL characters in values are refused', () => {
  assert.throws(() => renderStatement(`SELECT '{{password}}'`, { password: 'a\0b' }, pgd), /NUL/);
});

test('renderStatements: splits before substituting, so a value cannot add a statement', () => {
  const out = renderStatements(
    [`CREATE ROLE "{{name}}" PASSWORD '{{password}}'; GRANT r TO "{{name}}"`],
    { name: 'a"; DROP TABLE t; --', password: "x'; DROP TABLE t; --" },
    pgd,
  );
  assert.deepEqual(out, [
    `CREATE ROLE "a""; DROP TABLE t; --" PASSWORD 'x''; DROP TABLE t; --'`,
    `GRANT r TO "a""; DROP TABLE t; --"`,
  ]);
});

test('validateSqlStatements: limits placeholders to those available', () => {
  validateSqlStatements([`DROP ROLE "{{name}}"`], pgd, ['name', 'username']);
  assert.throws(() => validateSqlStatements([`ALTER ROLE "{{name}}" PASSWORD '{{password}}'`], pgd, ['name']), /password/);
  validateSqlStatements([`ALTER ROLE "{{name}}" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`], pgd);
  assert.throws(() => validateSqlStatements([`SELECT '{{name}}`], pgd), EngineInputError);
});

// Issue 8 item 3: what the database is certain to refuse is refused when the statement is checked.
test('NUL anywhere, and control characters outside quotes, are refused; inside quotes and comments they stay', () => {
  for (const dialect of [pgd, backslashDialect]) {
    const bad = [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' \u0000`,
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{pass\u0000word}}'`,
      `CREATE ROLE "{{name}}"\u0001 WITH LOGIN`,
      `GRANT SELECT ON t TO "{{name}}"\u001b`,
      `\u007fSELECT 1`,
    ];
    for (const statement of bad) {
      assert.throws(() => validateSqlStatements([statement], dialect), (err: unknown) => err instanceof EngineInputError && /NUL|control character U\+00/.test((err as Error).message), JSON.stringify(statement));
    }
    // Whitespace controls (tab, LF, VT, FF, CR) are whitespace to both lexers; anything goes inside quotes.
    validateSqlStatements([`CREATE ROLE "{{name}}"\t\r\n\u000b\u000cWITH LOGIN PASSWORD '{{password}}'`], dialect);
    validateSqlStatements([`COMMENT ON ROLE "{{name}}" IS 'bell \u0007 inside a literal'`], dialect);
    validateSqlStatements([`SELECT 1 /* \u0001 in a comment */`], dialect);
  }
  assert.match(renderStatement(`SELECT $$ \u0002 $$`, values, pgd), /\u0002/, 'inside a dollar-quoted body');
});
