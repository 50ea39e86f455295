// Hostile usernames and passwords in every quoting context: either the engine
// refuses them (EngineInputError), the server refuses them, or the user is
// created with exactly that name and password — and never does a second
// statement run (the canary table and its single row survive).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import mysql from '../../../plugins/mysql/index.ts';
import { EngineInputError, type Engine } from '../../../src/engine/engine.ts';
import { adminConnection, canLogin, dropLeftovers, mysqlConfig, target, userHosts } from '../../support/mariadb.ts';

const P = 'dbt_inj_';
const CANARY = `${target.database}.${P}canary`;

const PAYLOADS = [
  `q'uote`,
  `dq"uote`,
  'back`tick',
  `back\\slash`,
  `trail\\`,
  `\\'; DROP TABLE ${CANARY}; -- `,
  `'; INSERT INTO ${CANARY} VALUES (2); -- `,
  `"); DROP TABLE ${CANARY}; #`,
  '`; DROP TABLE ' + CANARY + '; #',
  `semi;colon`,
  `uni-ü-名前-ß`,
  `{{password}}`,
  `line\nbreak # -- x`,
  `cr\r\x1a`,
  `emoji-😀`,
  `nul\u0000byte`,
];

const TEMPLATES: Record<string, string> = {
  single: `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'`,
  double: `CREATE USER "{{name}}"@'%' IDENTIFIED BY "{{password}}"`,
  bare: `CREATE USER {{name}}@'%' IDENTIFIED BY {{password}}`,
  backtick: "CREATE USER `{{name}}`@'%' IDENTIFIED BY '{{password}}'",
};

let admin: Connection;
let engine: Engine;

async function canaryRows(): Promise<number[]> {
  const [rows] = await admin.query<RowDataPacket[]>(`SELECT id FROM ${CANARY} ORDER BY id`);
  return rows.map((r) => Number(r['id']));
}

before(async () => {
  admin = await adminConnection();
  await dropLeftovers(admin, P);
  await admin.query(`CREATE TABLE ${CANARY} (id INT PRIMARY KEY)`);
  await admin.query(`INSERT INTO ${CANARY} VALUES (1)`);
  engine = mysql.create();
  await engine.initialize(mysqlConfig(), { verify: true });
});

after(async () => {
  await engine.close();
  await dropLeftovers(admin, P);
  await admin.end();
});

for (const [style, template] of Object.entries(TEMPLATES)) {
  test(`hostile values in ${style} context`, async () => {
    let created = 0;
    for (const [i, payload] of PAYLOADS.entries()) {
      // Usernames carry the payload after a prefix (so cleanup finds them) and stay short.
      const username = `${P}${i}${payload}`.slice(0, 32);
      const password = `Pw-${payload}-end`;
      try {
        await engine.newUser({
          username,
          password,
          expiration: new Date(),
          creationStatements: [template],
          rollbackStatements: [],
        });
      } catch (err) {
        assert.ok(err instanceof Error);
        // Refused by the engine or the server is fine; no password in the message, no user left.
        assert.ok(!String(err.message).includes(password), err.message);
        assert.deepEqual(await userHosts(admin, username), [], `${style}/${i}: left a user behind`);
        assert.deepEqual(await canaryRows(), [1], `${style}/${i}: canary changed`);
        continue;
      }
      created++;
      assert.deepEqual(await userHosts(admin, username), ['%'], `${style}/${i}: exact username`);
      await engine.deleteUser({ username: `${username}-😀`, statements: [] }); // cannot exist: a no-op
      assert.equal(await canLogin(username, password), true, `${style}/${i}: exact password`);
      assert.equal(await canLogin(username, password + 'x'), false);
      await engine.updateUser({ username, password: { value: password + '2', statements: [] } });
      assert.equal(await canLogin(username, password + '2'), true, `${style}/${i}: rotated password`);
      await engine.deleteUser({ username, statements: [] });
      assert.deepEqual(await userHosts(admin, username), [], `${style}/${i}: deleted`);
      assert.deepEqual(await canaryRows(), [1], `${style}/${i}: canary changed`);
    }
    // The escaping must actually let them through, not just refuse them: only NUL
    // (anywhere) and emoji (in user names, stored as utf8mb3) are refused.
    assert.equal(created, PAYLOADS.length - 2);
  });
}

test('hostile values in custom revocation, rotation and rollback statements', async () => {
  for (const [i, payload] of PAYLOADS.entries()) {
    const username = `${P}r${i}${payload}`.slice(0, 32);
    const password = `Pw-${payload}-end`;
    if (payload.includes('\0') || payload.includes('😀')) {
      // Refused before anything runs (NUL anywhere; emoji in a user name).
      await assert.rejects(
        engine.newUser({ username, password, expiration: new Date(), creationStatements: [TEMPLATES['single']!], rollbackStatements: [] }),
        EngineInputError,
      );
      continue;
    }
    await engine.newUser({
      username,
      password,
      expiration: new Date(),
      creationStatements: [TEMPLATES['single']!],
      rollbackStatements: [],
    });
    await engine.updateUser({
      username,
      password: { value: password + '3', statements: [`ALTER USER '{{name}}'@'%' IDENTIFIED BY "{{password}}"`] },
    });
    assert.equal(await canLogin(username, password + '3'), true, `rotation ${i}`);
    await engine.deleteUser({ username, statements: ['DROP USER {{name}}@"%"'] });
    assert.deepEqual(await userHosts(admin, username), [], `revocation ${i}`);
    // A creation that fails after creating the user: the custom rollback drops it.
    await assert.rejects(
      engine.newUser({
        username,
        password,
        expiration: new Date(),
        creationStatements: [TEMPLATES['single']!, `GRANT SELECT ON ${target.database}.${P}missing TO '{{name}}'@'%'`],
        rollbackStatements: ["DROP USER `{{name}}`@'%'"],
      }),
      (err: unknown) => err instanceof Error && !(err instanceof EngineInputError) && !err.message.includes(password),
    );
    assert.deepEqual(await userHosts(admin, username), [], `rollback ${i}`);
  }
  assert.deepEqual(await canaryRows(), [1]);
});

test('an unterminated quote or unknown placeholder is an input error that runs nothing', async () => {
  for (const creation of [`CREATE USER '{{name}}@'%'`, `CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{secret}}'`]) {
    await assert.rejects(
      engine.newUser({ username: `${P}bad`, password: 'Aa1-x-0000000000000000', expiration: new Date(), creationStatements: [creation], rollbackStatements: [] }),
      EngineInputError,
    );
  }
  assert.deepEqual(await userHosts(admin, `${P}bad`), []);
  assert.deepEqual(await canaryRows(), [1]);
});
