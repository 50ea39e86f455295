// Vault's string-slice encodings, decoded by the shared field helpers
// (src/http/schema.ts): statement lists (TypeStringSlice, then each block as
// strutil.ParseArbitraryStringSlice reads it: base64, JSON-array string) and
// comma lists (TypeCommaStringSlice: allowed_roles, policies).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeBase64Text, decodeStatementBlock, jsonStringArray, listField, statementsField } from '../../../src/http/schema.ts';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const CREATE = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`;
const GRANT = 'GRANT SELECT, INSERT ON t TO "{{name}}"';

test('statements: a JSON array, one string (never split on commas), and empty ones dropped', () => {
  assert.deepEqual(statementsField({ s: [CREATE, GRANT] }, 's'), [CREATE, GRANT]);
  assert.deepEqual(statementsField({ s: `${CREATE}; ${GRANT}` }, 's'), [`${CREATE}; ${GRANT}`]);
  assert.deepEqual(statementsField({ s: GRANT }, 's'), [GRANT], 'the comma in GRANT SELECT, INSERT stays');
  assert.deepEqual(statementsField({ s: ['  ', '', ` ${CREATE} `] }, 's'), [CREATE]);
  assert.deepEqual(statementsField({ s: '' }, 's'), []);
  assert.equal(statementsField({}, 's'), undefined);
  assert.equal(statementsField({ s: null }, 's'), undefined);
});

test('statements: base64 is decoded, in a string or in an array item, with CR/LF inside as Go allows', () => {
  assert.deepEqual(statementsField({ s: b64(CREATE) }, 's'), [CREATE]);
  assert.deepEqual(statementsField({ s: [b64(CREATE), GRANT] }, 's'), [CREATE, GRANT]);
  const wrapped = b64(`${CREATE};\n${GRANT}`).replace(/(.{20})/g, '$1\r\n');
  assert.deepEqual(statementsField({ s: wrapped }, 's'), [`${CREATE};\n${GRANT}`]);
  // MongoDB statements are JSON documents; base64 of one decodes to it.
  const mongo = JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: 'app' }] });
  assert.deepEqual(statementsField({ s: b64(mongo) }, 's'), [mongo]);
  assert.deepEqual(statementsField({ s: mongo }, 's'), [mongo], 'a JSON object is one statement, not a list');
});

test('statements: a JSON-array string is a list, also inside base64; null and [] are none', () => {
  const list = JSON.stringify([CREATE, GRANT]);
  assert.deepEqual(statementsField({ s: list }, 's'), [CREATE, GRANT]);
  assert.deepEqual(statementsField({ s: [list] }, 's'), [CREATE, GRANT]);
  assert.deepEqual(statementsField({ s: b64(list) }, 's'), [CREATE, GRANT]);
  assert.deepEqual(statementsField({ s: [` ${list} `, 'SELECT 1'] }, 's'), [CREATE, GRANT, 'SELECT 1']);
  assert.deepEqual(statementsField({ s: 'null' }, 's'), []);
  assert.deepEqual(statementsField({ s: '[]' }, 's'), []);
  // Not an array of strings: the text is the statement (the engine validates it).
  assert.deepEqual(decodeStatementBlock('[1, 2]'), ['[1, 2]']);
  assert.deepEqual(decodeStatementBlock('[not json'), ['[not json']);
});

test('statements: text that only looks like base64 stays as written (Vault would run the decoded garbage)', () => {
  // "ROLLBACK" and "COMMIT;;" are valid base64 whose bytes are not UTF-8 text.
  assert.deepEqual(decodeStatementBlock('ROLLBACK'), ['ROLLBACK']);
  assert.equal(decodeBase64Text('ROLLBACK'), undefined);
  // Decoding to control characters: not text either.
  assert.equal(decodeBase64Text(Buffer.from([1, 2, 3]).toString('base64')), undefined);
  // Invalid base64 (bad padding, other alphabet): not decoded.
  assert.equal(decodeBase64Text('abc'), undefined);
  assert.equal(decodeBase64Text('YWJj-_8='), undefined);
  assert.equal(decodeBase64Text(b64('héllo wörld')), 'héllo wörld');
});

test('comma lists: JSON array, comma string and JSON-array string, trimmed, empties dropped', () => {
  assert.deepEqual(listField({ r: ['dev-*', ' ops '] }, 'r'), ['dev-*', 'ops']);
  assert.deepEqual(listField({ r: 'dev-*, ops,,' }, 'r'), ['dev-*', 'ops']);
  assert.deepEqual(listField({ r: '["dev-*","ops"]' }, 'r'), ['dev-*', 'ops']);
  assert.deepEqual(listField({ r: ' ["a, b"] ' }, 'r'), ['a, b'], 'a JSON item keeps its comma');
  assert.deepEqual(listField({ r: '*' }, 'r'), ['*']);
  assert.deepEqual(listField({ r: '' }, 'r'), []);
  // Names are never base64-decoded ("abcd" is valid base64).
  assert.deepEqual(listField({ r: 'abcd' }, 'r'), ['abcd']);
  assert.equal(jsonStringArray('["a", 1]'), undefined);
  assert.deepEqual(listField({ r: '["a", 1]' }, 'r'), ['["a"', '1]'], 'not a list of strings: split on commas as Vault does');
});
