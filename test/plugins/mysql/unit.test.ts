// Connection URL / option parsing, quoting, and statement validation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import mysql from '../../../plugins/mysql/index.ts';
import { parseConnectionUrl, parseOptions, poolOptions } from '../../../plugins/mysql/config.ts';
import { mysqlDialect } from '../../../plugins/mysql/dialect.ts';
import { quotedTokens, renderMysql } from '../../../plugins/mysql/guard.ts';
import { mergeShape, plainName, renderMerged } from '../../../plugins/mysql/merge.ts';
import { EngineConnectionError, EngineInputError, type ConnectionConfig } from '../../../src/engine/engine.ts';
import { mysqlConfig } from '../../support/mariadb.ts';

function cfg(connectionUrl: string, username = 'admin', password = 'pw'): ConnectionConfig {
  return { connectionUrl, username, password, maxOpenConnections: 3, options: {} };
}

test('dialect escapes for every MySQL quoting context', () => {
  assert.equal(mysqlDialect.escapeInQuotes(`a'b\\c"d`, "'"), `a''b\\\\c"d`);
  assert.equal(mysqlDialect.escapeInQuotes(`a'b\\c"d`, '"'), `a'b\\\\c""d`);
  assert.equal(mysqlDialect.escapeInQuotes('a`b\\c', '`'), 'a``b\\c');
  assert.equal(mysqlDialect.quoteIdentifier('we`ird'), '`we``ird`');
  assert.equal(mysqlDialect.quoteLiteral(`it's\n`), `'it''s\\n'`);
  assert.equal(mysqlDialect.backslashEscapes, true);
});

test('Go DSN: values are substituted after parsing, so they cannot move its boundaries', () => {
  const p = parseConnectionUrl(cfg('{{username}}:{{password}}@tcp(db.example:3307)/app?tls=skip-verify&parseTime=true', 'u:s@r', 'p@ss/w:rd?(x)'));
  assert.equal(p.user, 'u:s@r');
  assert.equal(p.password, 'p@ss/w:rd?(x)');
  assert.equal(p.host, 'db.example');
  assert.equal(p.port, 3307);
  assert.equal(p.database, 'app');
  assert.equal(p.params.get('tls'), 'skip-verify');

  const sock = parseConnectionUrl(cfg('{{username}}:{{password}}@unix(/run/mysqld/mysqld.sock)/'));
  assert.equal(sock.socketPath, '/run/mysqld/mysqld.sock');
  assert.equal(sock.database, undefined);

  const v6 = parseConnectionUrl(cfg('{{username}}:{{password}}@tcp([::1])/'));
  assert.deepEqual([v6.host, v6.port], ['::1', 3306]);

  // No credentials in the DSN: the configured ones are used.
  const bare = parseConnectionUrl(cfg('tcp(127.0.0.1:3306)/', 'cfguser', 'cfgpass'));
  assert.deepEqual([bare.user, bare.password], ['cfguser', 'cfgpass']);

  assert.throws(() => parseConnectionUrl(cfg('{{username}}@tcp(h:1)')), EngineInputError);
  assert.throws(() => parseConnectionUrl(cfg('{{username}}@udp(h:1)/')), /unsupported network "udp"/);
});

test('URL style: values are URL-encoded in and decoded back', () => {
  const p = parseConnectionUrl(cfg('mysql://{{username}}:{{password}}@db.example:3310/my%20db', 'u@x', 'p@ss/w:rd#?%'));
  assert.deepEqual([p.user, p.password, p.host, p.port, p.database], ['u@x', 'p@ss/w:rd#?%', 'db.example', 3310, 'my db']);
  const d = parseConnectionUrl(cfg('mariadb://{{username}}:{{password}}@[::1]/', 'a', ''));
  assert.deepEqual([d.host, d.port, d.password], ['::1', 3306, '']);
  assert.throws(() => parseConnectionUrl(cfg('postgres://{{username}}@h/')), /unsupported scheme/);
});

// Issue 8 item 9: the credentials reach the driver (as its own user/password
// options) verbatim, whatever the rest of the URL holds.
test('credentials reach the driver verbatim: odd characters and a raw space in the query, URL style and Go DSN', () => {
  const odd = ['a{b', 'a}b', 'a/b', 'a:b', 'a?b', 'a=b', 'a+b', 'a@b', 'a%41b', 'a#b', 'a b', `{}/:?=+@%# &x`];
  const urls = [
    'mysql://{{username}}:{{password}}@127.0.0.1:3306/test?connectionAttributes=program_name:my app&charset=utf8mb4',
    '{{username}}:{{password}}@tcp(127.0.0.1:3306)/test?connectionAttributes=program_name:my app&charset=utf8mb4',
  ];
  for (const url of urls) {
    for (const password of odd) {
      const options = poolOptions(parseConnectionUrl(cfg(url, 'u@s:r', password)), parseOptions({}), 2);
      assert.deepEqual([options.user, options.password, options.host, options.port, options.database], ['u@s:r', password, '127.0.0.1', 3306, 'test'], `${url} ${JSON.stringify(password)}`);
    }
  }
});

test('parse errors never quote the password', () => {
  const secret = 'Sup3r-secret-pw-value';
  for (const url of ['mysql://{{username}}:{{password}}@h:99999/', '{{username}}:{{password}}@bogus(h)/', 'mysql://{{username}}:{{password}}@h/?x=1']) {
    assert.throws(
      () => poolOptions(parseConnectionUrl(cfg(url, 'u', secret)), parseOptions({}), 2),
      (e: unknown) => e instanceof EngineInputError && !e.message.includes(secret),
    );
  }
});

test('options: unknown ones are named, TLS settings are mapped', () => {
  assert.throws(() => parseOptions({ tls_server_nam: 'x' }), /unknown option "tls_server_nam"/);
  assert.throws(() => parseOptions({ root_host: 5 }), /root_host must be a string/);
  assert.throws(() => parseOptions({ tls_skip_verify: 'yes' }), /tls_skip_verify must be a boolean/);
  assert.deepEqual(parseOptions({ tls_skip_verify: 'true', root_host: 'localhost' }), { tlsSkipVerify: true, rootHost: 'localhost' });

  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----';
  const parsed = parseConnectionUrl(cfg('mysql://{{username}}:{{password}}@h/'));
  const pool = poolOptions(parsed, parseOptions({ tls_ca: cert, tls_certificate_key: `${cert}\n${key}` }), 7);
  assert.equal(pool.connectionLimit, 7);
  assert.equal(pool.multipleStatements, false);
  assert.ok(pool.ssl && typeof pool.ssl === 'object');
  assert.equal(pool.ssl.ca, cert);
  assert.equal(pool.ssl.cert, cert);
  assert.equal(pool.ssl.key, key.trim());
  assert.equal(pool.ssl.rejectUnauthorized, true);
  assert.equal(pool.ssl.verifyIdentity, true);
  assert.throws(() => poolOptions(parsed, parseOptions({ tls_certificate_key: cert }), 1), /tls_certificate_key/);
  assert.throws(() => poolOptions(parsed, parseOptions({ tls_ca: 'not a pem' }), 1), /tls_ca/);

  const skip = poolOptions(parseConnectionUrl(cfg('u:p@tcp(h)/?tls=skip-verify&timeout=5s')), parseOptions({}), 0);
  assert.deepEqual([skip.ssl && typeof skip.ssl === 'object' && skip.ssl.rejectUnauthorized, skip.connectTimeout, skip.connectionLimit], [false, 5000, 4]);
  assert.equal(poolOptions(parsed, parseOptions({}), 2).ssl, undefined);
  assert.throws(() => poolOptions(parseConnectionUrl(cfg('u:p@tcp(h)/?sslmode=require')), parseOptions({}), 1), /parameter "sslmode"/);
});

test('TLS is really requested: against a server without TLS the login fails', async (t) => {
  const e = mysql.create();
  const err = await e.initialize(mysqlConfig({ options: { tls_skip_verify: true } }), { verify: true }).then(
    () => null,
    (x: unknown) => x,
  );
  await e.close();
  if (err === null) {
    t.diagnostic('the test server speaks TLS; nothing to refute');
    return;
  }
  assert.ok(err instanceof EngineConnectionError, String(err));
  assert.match(err.message, /secure|ssl|tls/i);
});

test('unknown option is an input error at initialize, before connecting', async () => {
  const e = mysql.create();
  await assert.rejects(e.initialize(mysqlConfig({ options: { revocation_owner: 'x' } }), { verify: true }), /unknown option "revocation_owner"/);
});

test('validateStatements: per kind, with the placeholders that kind gets', () => {
  const v = mysql.validateStatements!;
  assert.throws(() => v('creation', []), /creation_statements: must not be empty/);
  assert.throws(() => v('creation', ['  ;  ']), /must not be empty/);
  v('creation', [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON db.* TO '{{name}}'@'%'`]);
  v('revocation', []);
  v('revocation', [`DROP USER '{{name}}'@'%'`]);
  assert.throws(() => v('revocation', [`ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`]), /revocation_statements: .*\{\{password\}\}/);
  assert.throws(() => v('rotation', [`ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{expiration}}'`]), /\{\{expiration\}\}/);
  v('renew', [`DO '{{expiration}}'`]);
  assert.throws(() => v('creation', [`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{pass}}'`]), /\{\{pass\}\}/);
  assert.throws(() => v('creation', [`CREATE USER '{{name}}@'%'`]), EngineInputError);
});

test('templates the shared scanner would misread as MySQL are refused', () => {
  const values = { name: 'n', username: 'n', password: 'p', expiration: 'e' };
  // MySQL reads each of these so that a placeholder's value is bare SQL, or in another quote.
  const misread = [
    "SELECT 1 # '\n, {{password}} -- '",
    `ALTER USER '{{name}}'@'%' IDENTIFIED BY "a\\" {{password}} "x"`,
    "SELECT 1 /*! , '*/ {{password}} /*' */",
    "SELECT 1 /*M!100000 , '*/ {{password}} /*' */",
  ];
  for (const t of misread) assert.throws(() => renderMysql([t], values), /would not stay inside one quoted value/, t);

  // Ordinary uses of the same characters are fine.
  const fine = [
    "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}' -- it's a comment",
    "GRANT SELECT ON `db#1`.* TO '{{name}}'@'%' /* a 'comment' */",
    `CREATE USER "{{name}}"@"%" IDENTIFIED BY "it\\'s {{password}}"`,
    "CREATE USER {{name}}@'%' IDENTIFIED BY {{password}}",
  ];
  for (const t of fine) assert.equal(renderMysql([t], values).length, 1, t);

  // Issue 11: the check is done once per template, the rendering every time:
  // a refused template stays refused, a checked one gets each call's values.
  for (const t of misread) assert.throws(() => renderMysql([t], values), /would not stay inside one quoted value/, t);
  const tpl = `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON db.* TO {{name}}@'%'`;
  assert.deepEqual(renderMysql([tpl], { name: 'a', password: "x'y" }), ["CREATE USER 'a'@'%' IDENTIFIED BY 'x''y'", "GRANT SELECT ON db.* TO `a`@'%'"]);
  assert.deepEqual(renderMysql([tpl], { name: 'b`', password: 'z\\' }), ["CREATE USER 'b`'@'%' IDENTIFIED BY 'z\\\\'", "GRANT SELECT ON db.* TO `b```@'%'"]);
});

test('quotedTokens reads quotes the way MySQL does', () => {
  assert.deepEqual(quotedTokens(`'a''b' "c\\"d" \`e\`\`f\` # 'g'\n -- 'h'\n /* 'i' */ 'j\\nk'`), ["a'b", 'c"d', 'e`f', 'j\nk']);
  assert.throws(() => quotedTokens(`"a\\"`), EngineInputError);
});

test('merge shapes: only a single-account CREATE USER … IDENTIFIED BY and GRANT … TO {{name}} are shared by a batch', () => {
  const two = [{ name: 'a1', password: "p'1" }, { name: 'b2', password: 'p2\\' }];
  const cases: Array<[string, string | undefined]> = [
    ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", "CREATE USER 'a1'@'%' IDENTIFIED BY 'p''1', 'b2'@'%' IDENTIFIED BY 'p2\\\\'"],
    ['CREATE USER {{name}} IDENTIFIED BY {{password}}', "CREATE USER `a1` IDENTIFIED BY 'p''1', `b2` IDENTIFIED BY 'p2\\\\'"],
    ["CREATE USER '{{name}}'@'%' IDENTIFIED WITH mysql_native_password BY '{{password}}'", "CREATE USER 'a1'@'%' IDENTIFIED WITH mysql_native_password BY 'p''1', 'b2'@'%' IDENTIFIED WITH mysql_native_password BY 'p2\\\\'"],
    ["GRANT SELECT ON `test`.* TO '{{name}}'@'%'", "GRANT SELECT ON `test`.* TO 'a1'@'%', 'b2'@'%'"],
    ["GRANT SELECT, INSERT ON `te'st`.* TO '{{name}}'@'localhost' WITH GRANT OPTION", "GRANT SELECT, INSERT ON `te'st`.* TO 'a1'@'localhost', 'b2'@'localhost' WITH GRANT OPTION"],
    ["GRANT `grp` TO '{{name}}'@'%'", "GRANT `grp` TO 'a1'@'%', 'b2'@'%'"],
    // Per user: options after the account, IF NOT EXISTS / OR REPLACE, other accounts, placeholders elsewhere, comments.
    ["CREATE USER IF NOT EXISTS '{{name}}'@'%' IDENTIFIED BY '{{password}}'", undefined],
    ["CREATE OR REPLACE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", undefined],
    ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}' PASSWORD EXPIRE", undefined],
    ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}', 'x'@'%'", undefined],
    ["SET DEFAULT ROLE `g` FOR '{{name}}'@'%'", undefined],
    ["GRANT SELECT ON x.* TO '{{name}}'@'%', 'bob'@'%'", undefined],
    ["GRANT SELECT ON `a{{name}}`.* TO '{{name}}'@'%'", undefined],
    ["GRANT SELECT ON x.* TO '{{name}}'@'%' -- note", undefined],
    ["GRANT SELECT ON x.* TO 'v_{{name}}'@'%'", undefined],
  ];
  for (const [template, merged] of cases) {
    const shape = mergeShape(template);
    assert.equal(shape === undefined ? undefined : renderMerged(shape, two), merged, template);
  }
  assert.equal(mergeShape("CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'")?.kind, 'create');
  assert.equal(plainName('v-root-r-AbC123_x.y'), true);
  assert.equal(plainName("o'brien"), false);
  assert.equal(plainName('trailing '), false);
});
