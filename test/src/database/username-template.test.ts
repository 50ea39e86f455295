// Unit tests of username_template rendering: Vault's template language
// subset, the default template's shape, sanitising of request names, length
// cuts, and a 400 naming username_template for everything else.

import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_USERNAME_TEMPLATE, USERNAME_CHARS, checkUsernameTemplate, generateUsername, renderUsername, sanitizeName } from '../../../src/database/username-template.ts';
import type { EngineFactory } from '../../../src/engine/engine.ts';
import mongodb from '../../../plugins/mongodb/index.ts';
import mysql, { mysqlLegacy } from '../../../plugins/mysql/index.ts';
import postgres from '../../../plugins/postgres/index.ts';
import { BrokerError } from '../../../src/errors.ts';

const vars = { DisplayName: 'token-my-app', RoleName: 'readonly' };
const render = (template: string, v = vars, max = 63) => renderUsername(template, v, max);

function refused(template: string, problem: RegExp, v = vars, max = 63): void {
  assert.throws(
    () => renderUsername(template, v, max),
    (err: unknown) => {
      assert.ok(err instanceof BrokerError, `not a BrokerError: ${String(err)}`);
      assert.equal(err.statusCode, 400);
      assert.match(err.message, /^invalid field "username_template": /);
      assert.match(err.message, problem);
      return true;
    },
    `template ${JSON.stringify(template)} should be refused`,
  );
}

test('the default template: v-<display, 8>-<role, 8>-<20 random>-<unix time>', () => {
  const before = Math.floor(Date.now() / 1000);
  const name = render(DEFAULT_USERNAME_TEMPLATE);
  const m = /^v-token-my-readonly-([A-Za-z0-9]{20})-(\d+)$/.exec(name);
  assert.ok(m, name);
  assert.ok(Number(m[2]) >= before && Number(m[2]) <= before + 2);
  assert.notEqual(render(DEFAULT_USERNAME_TEMPLATE), name, 'the random part differs');
  // Long names are cut to 8 characters each.
  assert.match(render(DEFAULT_USERNAME_TEMPLATE, { DisplayName: 'token-averyverylongname', RoleName: 'areallylongrolename' }), /^v-token-av-areallyl-[A-Za-z0-9]{20}-\d+$/);
});

test('the result is cut to the engine limit', () => {
  assert.equal(render(DEFAULT_USERNAME_TEMPLATE, vars, 16).length, 16);
  assert.equal(render('{{ random 100 }}', vars, 32).length, 32);
  assert.equal(render('{{ random 100 }}').length, 63);
  assert.equal(render('x{{ random 1000 }}').length, 63, 'random is bounded, and the result cut');
});

test('fields, functions, pipelines and parentheses', () => {
  assert.equal(render('{{.RoleName}}'), 'readonly');
  assert.equal(render('{{ .DisplayName }}'), 'token-my-app');
  assert.equal(render('pre-{{ .RoleName }}-post'), 'pre-readonly-post');
  assert.equal(render('{{ .RoleName | uppercase }}'), 'READONLY');
  assert.equal(render('{{ .RoleName | uppercase | lowercase }}'), 'readonly');
  assert.equal(render('{{ .RoleName | truncate 4 }}'), 'read');
  assert.equal(render('{{ truncate 4 .RoleName }}'), 'read');
  assert.equal(render('{{ .DisplayName | replace "-" "_" }}'), 'token_my_app');
  assert.equal(render('{{ printf "%s.%s" .RoleName (.DisplayName | truncate 5) }}'), 'readonly.token');
  assert.equal(render('{{ printf "%s-%d" .RoleName 42 }}'), 'readonly-42');
  assert.equal(render('{{ ((( .RoleName ))) }}'), 'readonly');
  assert.equal(render('{{- .RoleName -}}'), 'readonly');
  assert.match(render('{{ random 12 }}'), /^[A-Za-z0-9]{12}$/);
  assert.match(render('{{ uuid }}'), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(render('{{ unix_time }}'), /^\d{10}$/);
  assert.match(render('{{ unix_time_millis }}'), /^\d{13}$/);
  assert.match(render('{{ timestamp }}'), /^\d{8}T\d{6}Z$/);
  assert.match(render('{{ .RoleName | sha256 }}'), /^[0-9a-f]{63}$/, 'cut to 63');
  assert.equal(render('{{ .RoleName | sha256 }}', vars, 64), createHash('sha256').update('readonly').digest('hex'));
});

test('truncate_sha256 keeps max-8 characters and replaces the rest with 8 hex digits of its hash (Vault)', () => {
  assert.equal(render('{{ .RoleName | truncate_sha256 20 }}'), 'readonly', 'short enough: unchanged');
  const out = render('{{ .RoleName | truncate_sha256 6 }}', { DisplayName: 'x', RoleName: 'abcdefghijklmnop' });
  assert.equal(out, 'abcdef', 'max of 8 or less: a plain cut');
  const hashed = render('{{ .RoleName | truncate_sha256 12 }}', { DisplayName: 'x', RoleName: 'abcdefghijklmnop' });
  assert.match(hashed, /^abcd[0-9a-f]{8}$/);
  assert.notEqual(render('{{ .RoleName | truncate_sha256 12 }}', { DisplayName: 'x', RoleName: 'abcdefghijklmnoq' }), hashed);
});

test('request names are sanitised before they reach the template', () => {
  const hostile = `a"b'c;d\\e$$f\u00e9g\u0000h i/j\nk😀`;
  assert.equal(sanitizeName(hostile), 'a_b_c_d_e__f_g_h_i_j_k__');
  const out = render('{{ .DisplayName }}-{{ .RoleName }}', { DisplayName: hostile, RoleName: hostile });
  assert.match(out, USERNAME_CHARS);
  assert.equal(out, `${sanitizeName(hostile)}-${sanitizeName(hostile)}`);
  // Template syntax inside a name is just text.
  assert.equal(render('{{ .RoleName }}', { DisplayName: 'x', RoleName: '{{ random 5 }}' }), '___random_5___');
});

test('template text that renders characters a username may not hold is refused', () => {
  for (const bad of [`x"y`, `x'y`, 'x;y', 'x\\y', 'x$$y', 'x y', 'ünï', 'x\u0000y', 'x\ny', 'a/b', '😀', '%', '{{ printf "a;b" }}', '{{ printf "%s" "a\\"b" }}', '{{ .RoleName | replace "o" "\'" }}']) {
    refused(bad, /may not hold/);
  }
});

test('syntax errors, unknown fields and functions are refused with what is wrong', () => {
  refused('{{ .RoleName', /missing "}}"/);
  refused('{{ "open }}', /unterminated string/);
  refused('{{ .Foo }}', /unknown field "\.Foo"/);
  refused('{{ .Env.HOME }}', /unknown field/);
  refused('{{ exec "ls" }}', /unknown function "exec"/);
  refused('{{ }}', /empty expression/);
  refused('{{ .RoleName | }}', /empty expression/);
  refused('{{ | .RoleName }}', /unexpected "\|"/);
  refused('{{ .RoleName | .DisplayName }}', /only a function can follow/);
  refused('{{ printf "%s" ( .RoleName }}', /missing "\)"/);
  refused('{{ ) }}', /unexpected "\)"/);
  refused('{{ "a" "b" }}', /unexpected text after expression/);
  refused('{{ random -1 }}', /non-negative number/);
  refused('{{ truncate "x" .RoleName }}', /non-negative number/);
  refused('{{ .RoleName ; }}', /unexpected character ";"/);
  refused('{{ truncate 0 .RoleName }}', /empty username/);
  refused('', /empty username/);
});

test('a deeply nested or very long template does not crash the renderer', () => {
  const nested = `{{ ${'('.repeat(300)}.RoleName${')'.repeat(300)} }}`;
  assert.equal(render(nested), 'readonly');
  const long = '{{ .RoleName }}'.repeat(60);
  assert.equal(render(long).length, 63);
});

// Issue 8 item 8: a generated username always keeps enough randomness to be unique.
test('generateUsername: 8 random characters must survive the cut, or it is a 400 naming username_template', () => {
  const unique = /must make unique usernames/;
  const refuse = (template: string, max: number, v = vars) =>
    assert.throws(() => generateUsername(template, v, max), (err: unknown) => err instanceof BrokerError && err.statusCode === 400 && /^invalid field "username_template": /.test(err.message) && unique.test(err.message), template);
  // The reported case: the broker default cut to 16 (mysql-legacy-database-plugin) kept no random part.
  refuse(DEFAULT_USERNAME_TEMPLATE, 16, { DisplayName: 'root', RoleName: 'rdonly12' });
  refuse('fixed-name', 63);
  refuse('{{ random 7 }}', 63);
  refuse('x{{ .RoleName | sha256 }}', 63, vars);
  refuse('{{ random 2 | sha256 }}', 63);
  assert.match(generateUsername('{{ random 8 }}', vars, 63), /^[A-Za-z0-9]{8}$/);
  assert.match(generateUsername('{{ uuid }}', vars, 16), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]$/, '12+ random hex digits qualify');
  assert.match(generateUsername('{{ random 20 | sha256 }}', vars, 16), /^[0-9a-f]{16}$/, 'the hash of random text is random');
  const a = generateUsername(DEFAULT_USERNAME_TEMPLATE, vars, 32);
  assert.notEqual(generateUsername(DEFAULT_USERNAME_TEMPLATE, vars, 32), a);
});

test('a cut never leaves a trailing "-"', () => {
  assert.equal(render('{{ printf "v-%s-%s-" .DisplayName .RoleName }}x', { DisplayName: 'root', RoleName: 'rdonly12' }, 16), 'v-root-rdonly12');
  assert.equal(render('ab---cd', vars, 4), 'ab');
  assert.equal(render('ab-', vars, 63), 'ab-', 'not cut: as written');
});

test("each engine's default template keeps its randomness at its limit (Vault's defaults)", () => {
  const cases: Array<[EngineFactory, RegExp]> = [
    [mysqlLegacy, /^v-rdon-[A-Za-z0-9]{9}$/],
    [mysql, /^v-root-rdonly12-[A-Za-z0-9]{16}$/],
    [postgres, /^v-root-rdonly12-[A-Za-z0-9]{20}-\d{10}$/],
    [mongodb, /^v-root-rdonly12-[A-Za-z0-9]{20}-\d{10}$/],
  ];
  for (const [factory, shape] of cases) {
    const template = factory.defaultUsernameTemplate ?? DEFAULT_USERNAME_TEMPLATE;
    const one = generateUsername(template, { DisplayName: 'root', RoleName: 'rdonly12' }, factory.maxUsernameLength);
    const two = generateUsername(template, { DisplayName: 'root', RoleName: 'rdonly12' }, factory.maxUsernameLength);
    assert.match(one, shape, factory.type);
    assert.notEqual(one, two, factory.type);
    // The longest names: still 8+ random characters (checkUsernameTemplate's worst case).
    checkUsernameTemplate(template, factory.maxUsernameLength);
    const long = generateUsername(template, { DisplayName: `token-${'d'.repeat(256)}`, RoleName: 'r'.repeat(128) }, factory.maxUsernameLength);
    assert.ok(long.length <= factory.maxUsernameLength && !long.endsWith('-'), `${factory.type}: ${long}`);
  }
  assert.match(generateUsername(mysql.defaultUsernameTemplate!, { DisplayName: `token-${'d'.repeat(30)}`, RoleName: 'r'.repeat(30) }, 32), /^v-token-dddd-rrrrrrrrrr-[A-Za-z0-9]{8}$/);
});

test('checkUsernameTemplate: refused when the longest display name or (for connections) role name cuts the randomness away', () => {
  const fails = (template: string, max: number, role?: string) =>
    assert.throws(() => checkUsernameTemplate(template, max, role), /username_template.*must make unique usernames/, template);
  fails('{{ .DisplayName }}-{{ random 20 }}', 63);
  fails('{{ .RoleName }}-{{ random 20 }}', 63, 'r'.repeat(60));
  fails('{{ .RoleName }}-{{ random 20 }}', 63);
  checkUsernameTemplate('{{ .RoleName }}-{{ random 20 }}', 63, 'short');
  checkUsernameTemplate('{{ random 20 }}-{{ .DisplayName }}', 16);
  checkUsernameTemplate('{{ .DisplayName | truncate 20 }}-{{ random 20 }}', 63);
  fails('{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 12 }}', 16);
});
