// The MongoDB engine against a real server: FerretDB (scripts/ferretdb.sh)
// or the mongod named by MONGODB_URL. Logins are real SCRAM logins by a
// separate client. FerretDB enforces no roles, so the least-privilege checks
// run only on a real mongod.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import mongodbEngine from '../../../plugins/mongodb/index.ts';
import { EngineConnectionError, EngineInputError, type Engine } from '../../../src/engine/engine.ts';
import { PASSWORD, canLogin, dropUsersWithPrefix, loginAs, mongoConfig, mongoTarget, tag, userDatabases, type MongoTarget } from './helpers.ts';

const found = await mongoTarget();
const skip = typeof found === 'string' ? found : false;
const target = found as MongoTarget;

const run = tag();
const PREFIX = `dbt-mg-${run}-`;
const APP = `dbt_app_${run}`;
const OTHER = `dbt_other_${run}`;
const DBS = ['admin', APP, OTHER];
let n = 0;
const nextUser = (): string => `${PREFIX}${++n}`;
const inAnHour = (): Date => new Date(Date.now() + 3600_000);
const READ_APP = JSON.stringify({ db: 'admin', roles: [{ role: 'read', db: APP }] });

let engine: Engine;
const engines: Engine[] = [];

async function newEngine(overrides: Parameters<typeof mongoConfig>[1] = {}): Promise<Engine> {
  const e = mongodbEngine.create();
  engines.push(e);
  await e.initialize(mongoConfig(target, overrides), { verify: true });
  return e;
}

function create(e: Engine, username: string, password: string, creationStatements = [READ_APP], rollbackStatements: string[] = []): Promise<void> {
  return e.newUser({ username, password, expiration: inAnHour(), creationStatements, rollbackStatements });
}

before(async () => {
  if (skip) return;
  engine = await newEngine();
  await target.admin.db(APP).collection('things').insertOne({ v: 42 });
  await target.admin.db(OTHER).collection('secrets').insertOne({ v: 7 });
});

after(async () => {
  if (skip) return;
  for (const e of engines) await e.close();
  await dropUsersWithPrefix(target, PREFIX, DBS);
  await target.admin.db(APP).dropDatabase().catch(() => undefined);
  await target.admin.db(OTHER).dropDatabase().catch(() => undefined);
  await target.admin.close();
});

test('initialize with verify: a good admin login works, a bad one is an EngineConnectionError without the password', { skip }, async (t) => {
  t.diagnostic(`server: ${target.ferretdb ? 'FerretDB' : 'mongod'}`);
  await newEngine(); // resolves: the admin login was proven
  const bad = `Wrong-admin-pw-${run}-x`;
  const e = mongodbEngine.create();
  await assert.rejects(e.initialize(mongoConfig(target, { password: bad }), { verify: true }), (err: Error) => {
    assert.ok(err instanceof EngineConnectionError, `${err.name}: ${err.message}`);
    assert.match(err.message, /AuthenticationFailed|Authentication failed/);
    assert.ok(!err.message.includes(bad) && !err.message.includes(encodeURIComponent(bad)));
    return true;
  });
  // Nothing listens on port 1: a connection error, quickly (the URL may shorten the timeout).
  const closed = target.templateUrl.replace(/@[^/?]+/, '@127.0.0.1:1');
  const withTimeout = `${closed}${closed.includes('?') ? '&' : '?'}serverSelectionTimeoutMS=1000`;
  await assert.rejects(e.initialize(mongoConfig(target, { connectionUrl: withTimeout, password: bad }), { verify: true }), (err: Error) => {
    assert.ok(err instanceof EngineConnectionError, `${err.name}: ${err.message}`);
    assert.ok(!err.message.includes(bad));
    return true;
  });
  await e.close();
});

test('new user: a real SCRAM login with its password works; a wrong password fails', { skip }, async () => {
  const username = nextUser();
  const password = PASSWORD();
  await create(engine, username, password);
  assert.deepEqual(await userDatabases(target, username, DBS), ['admin']);
  const client = await loginAs(target, username, password);
  try {
    const status = await client.db('admin').command({ connectionStatus: 1 });
    assert.deepEqual(status['authInfo'].authenticatedUsers.map((u: { user: string; db: string }) => [u.user, u.db]), [[username, 'admin']]);
  } finally {
    await client.close();
  }
  assert.equal(await canLogin(target, username, `${password}x`), false);
  await engine.deleteUser({ username, statements: [] });
});

test('least privilege: the user reads app, cannot write it, cannot read another db', { skip }, async (t) => {
  if (target.ferretdb) {
    t.diagnostic('skipped on FerretDB: it neither stores nor enforces roles (every user may do everything); set MONGODB_URL to a real mongod to run it');
    t.skip('FerretDB does not enforce roles');
    return;
  }
  const username = nextUser();
  const password = PASSWORD();
  await create(engine, username, password);
  const info = await target.admin.db('admin').command({ usersInfo: { user: username, db: 'admin' } });
  assert.deepEqual(info['users'][0].roles, [{ role: 'read', db: APP }]);
  const client = await loginAs(target, username, password);
  try {
    assert.deepEqual((await client.db(APP).collection('things').find({}, { projection: { _id: 0 } }).toArray()), [{ v: 42 }]);
    await assert.rejects(client.db(APP).collection('things').insertOne({ v: 1 }), (err: { code?: number }) => err.code === 13);
    await assert.rejects(client.db(OTHER).collection('secrets').findOne({}), (err: { code?: number }) => err.code === 13);
    await assert.rejects(client.db('admin').command({ createUser: `${PREFIX}evil`, pwd: 'x-x-x-x-x', roles: ['root'] }), (err: { code?: number }) => err.code === 13);
  } finally {
    await client.close();
  }
  await engine.deleteUser({ username, statements: [] });
});

test('deleteUser: the login fails afterwards; deleting twice, or a user that never existed, is fine', { skip }, async () => {
  const username = nextUser();
  const password = PASSWORD();
  await create(engine, username, password);
  assert.equal(await canLogin(target, username, password), true);
  await engine.deleteUser({ username, statements: [] });
  assert.equal(await canLogin(target, username, password), false);
  assert.deepEqual(await userDatabases(target, username, DBS), []);
  await engine.deleteUser({ username, statements: [] });
  await engine.deleteUser({ username: `${PREFIX}never`, statements: [] });
  await engine.deleteUser({ username: `${PREFIX}never`, statements: [JSON.stringify({ db: APP })] });
});

test('a user made in another db: revocation statements drop it there, and so does the default (it searches)', { skip }, async () => {
  const inApp = JSON.stringify({ db: APP, roles: ['read'] });
  for (const statements of [[JSON.stringify({ db: APP })], []]) {
    const username = nextUser();
    const password = PASSWORD();
    await create(engine, username, password, [inApp]);
    assert.deepEqual(await userDatabases(target, username, DBS), [APP]);
    if (!target.ferretdb) {
      const info = await target.admin.db(APP).command({ usersInfo: username });
      assert.deepEqual(info['users'][0].roles, [{ role: 'read', db: APP }]);
    }
    assert.equal(await canLogin(target, username, password, APP), true);
    await engine.deleteUser({ username, statements });
    assert.deepEqual(await userDatabases(target, username, DBS), [], `statements ${JSON.stringify(statements)}`);
    assert.equal(await canLogin(target, username, password, APP), false);
  }
});

test('the default revocation refuses to guess when the name exists in several databases', { skip }, async () => {
  const username = nextUser();
  const password = PASSWORD();
  await create(engine, username, password, [JSON.stringify({ db: APP, roles: ['read'] })]);
  await create(engine, username, password, [JSON.stringify({ db: OTHER, roles: ['read'] })]);
  await assert.rejects(engine.deleteUser({ username, statements: [] }), (err: Error) => {
    assert.ok(!(err instanceof EngineInputError));
    assert.match(err.message, /several databases/);
    assert.match(err.message, /revocation_statements/);
    return true;
  });
  assert.deepEqual(await userDatabases(target, username, DBS), [APP, OTHER]);
  await engine.deleteUser({ username, statements: [JSON.stringify({ db: APP }), JSON.stringify({ db: OTHER })] });
  assert.deepEqual(await userDatabases(target, username, DBS), []);
});

test('a name that already exists is refused (input error) and the existing user is left alone', { skip }, async () => {
  const username = nextUser();
  const password = PASSWORD();
  await create(engine, username, password);
  const other = PASSWORD();
  await assert.rejects(create(engine, username, other), (err: Error) => {
    assert.ok(err instanceof EngineInputError, `${err.name}: ${err.message}`);
    assert.match(err.message, /already exists/);
    assert.ok(!err.message.includes(other));
    return true;
  });
  assert.equal(await canLogin(target, username, password), true);
  await engine.deleteUser({ username, statements: [] });
});

test('updateUser: a new password replaces the old one; renewal is a no-op', { skip }, async () => {
  const username = nextUser();
  const first = PASSWORD();
  await create(engine, username, first);
  await engine.updateUser({ username, expiration: { value: inAnHour(), statements: [] } });
  assert.equal(await canLogin(target, username, first), true);
  const second = PASSWORD();
  await engine.updateUser({ username, password: { value: second, statements: [] } });
  assert.equal(await canLogin(target, username, first), false);
  assert.equal(await canLogin(target, username, second), true);
  // In another db, named by the statement.
  const third = PASSWORD();
  const inApp = nextUser();
  await create(engine, inApp, first, [JSON.stringify({ db: APP, roles: ['read'] })]);
  await engine.updateUser({ username: inApp, password: { value: third, statements: [JSON.stringify({ db: APP })] } });
  assert.equal(await canLogin(target, inApp, third, APP), true);
  // A user that does not exist: a failure (not an input error), without the password.
  const fourth = PASSWORD();
  await assert.rejects(engine.updateUser({ username: `${PREFIX}missing`, password: { value: fourth, statements: [] } }), (err: Error) => {
    assert.ok(!(err instanceof EngineInputError));
    assert.match(err.message, /does not exist/);
    assert.ok(!err.message.includes(fourth));
    return true;
  });
  await engine.deleteUser({ username, statements: [] });
  await engine.deleteUser({ username: inApp, statements: [JSON.stringify({ db: APP })] });
});

test('root rotation: the admin password changes and the engine keeps working with the new one', { skip }, async () => {
  // A dedicated admin, never the server's own.
  const adminName = nextUser();
  const oldPassword = PASSWORD();
  await target.admin.db('admin').command({ createUser: adminName, pwd: oldPassword, roles: target.ferretdb ? [] : ['root'] });
  const e = await newEngine({ username: adminName, password: oldPassword });
  const newPassword = PASSWORD();
  await e.updateUser({ username: adminName, password: { value: newPassword, statements: mongodbEngine.defaultRootRotationStatements } });
  assert.equal(await canLogin(target, adminName, oldPassword), false);
  assert.equal(await canLogin(target, adminName, newPassword), true);
  // The pool was reopened: its new connections log in with the new password.
  const username = nextUser();
  await create(e, username, PASSWORD());
  await e.deleteUser({ username, statements: [] });
  await assert.rejects(e.deleteUser({ username: adminName, statements: [] }), EngineInputError);
  assert.deepEqual(await userDatabases(target, adminName, DBS), ['admin']);
  await e.close();
  await target.admin.db('admin').command({ dropUser: adminName });
});

test('bad statements are refused at run time too (a role stored before validation existed), and nothing is made', { skip }, async () => {
  const username = nextUser();
  await assert.rejects(create(engine, username, PASSWORD(), ['{"db": "admin"}']), EngineInputError);
  await assert.rejects(create(engine, username, PASSWORD(), [READ_APP], ['not json']), EngineInputError);
  await assert.rejects(engine.deleteUser({ username, statements: ['{"db": 1}'] }), EngineInputError);
  await assert.rejects(engine.updateUser({ username, password: { value: PASSWORD(), statements: ['{"db": "a.b"}'] } }), EngineInputError);
  assert.deepEqual(await userDatabases(target, username, DBS), []);
});

test('a write_concern option is sent with the user commands', { skip }, async (t) => {
  const e = await newEngine({ options: { ...mongoConfig(target).options, write_concern: '{"wmode": "majority", "wtimeout": 5000, "j": true}' } });
  const username = nextUser();
  const password = PASSWORD();
  await create(e, username, password);
  assert.equal(await canLogin(target, username, password), true);
  await e.deleteUser({ username, statements: [] });
  assert.equal(await canLogin(target, username, password), false);
  // A write concern mode the server does not know fails the command on
  // mongod (proof that it is sent); FerretDB ignores write concerns.
  if (target.ferretdb) {
    t.diagnostic('FerretDB ignores writeConcern, so only mongod proves it is sent');
    return;
  }
  const strict = await newEngine({ options: { write_concern: '{"wmode": "dbroker-no-such-mode"}' } });
  const other = nextUser();
  await assert.rejects(create(strict, other, password), (err: Error) => !err.message.includes(password));
});

test('usernames with quotes, $, dots, commas and unicode work as plain names, or are refused', { skip }, async (t) => {
  const names = [
    `${PREFIX}q'uo"te`,
    `${PREFIX}$where`,
    `${PREFIX}a.b.c`,
    `${PREFIX}a,b=c`,
    `${PREFIX}{"$ne":1}`,
    `${PREFIX}drop\\"); db.dropDatabase(); //`,
    `${PREFIX}ünï-漢字-🙂`,
  ];
  for (const username of names) {
    const password = PASSWORD();
    await create(engine, username, password);
    assert.deepEqual(await userDatabases(target, username, DBS), ['admin'], username);
    if (target.ferretdb && /[,=]/.test(username)) {
      // SCRAM sends "," and "=" in a name as "=2C"/"=3D"; FerretDB 1.x does not decode them.
      t.diagnostic(`FerretDB: no SCRAM login possible for ${JSON.stringify(username)} (server does not unescape , and =); creation and deletion checked`);
    } else {
      assert.equal(await canLogin(target, username, password), true, username);
    }
    await engine.deleteUser({ username, statements: [] });
    assert.deepEqual(await userDatabases(target, username, DBS), [], username);
    assert.equal(await canLogin(target, username, password), false, username);
  }
  for (const username of ['', `${PREFIX}nul\0byte`]) {
    await assert.rejects(create(engine, username, PASSWORD()), EngineInputError);
    await assert.rejects(engine.deleteUser({ username, statements: [] }), EngineInputError);
  }
  // The data the names tried to reach is untouched, and no stray user appeared.
  assert.equal(await target.admin.db(APP).collection('things').countDocuments(), 1);
  const all = await target.admin.db('admin').command({ usersInfo: 1 });
  const numbered = new RegExp(`^${PREFIX}\\d+$`); // other tests' users
  assert.deepEqual(all['users'].map((u: { user: string }) => u.user).filter((u: string) => u.startsWith(PREFIX) && !numbered.test(u)), []);
});

test('sessions of a revoked user end (mongod: killAllSessionsByPattern); FerretDB lacks the command', { skip }, async (t) => {
  const username = nextUser();
  const password = PASSWORD();
  await create(engine, username, password);
  const client = await loginAs(target, username, password);
  try {
    assert.equal((await client.db(APP).collection('things').countDocuments()), 1);
    const result = await engine.deleteUser({ username, statements: [] });
    if (target.ferretdb) {
      // Issue 8 item 11: not a clean revocation, and it says so.
      assert.match(String(result?.warnings?.[0]), /cannot end the sessions of revoked users.*killAllSessionsByPattern.*may outlive its revocation/);
      // Only recorded: FerretDB keeps an authenticated connection usable.
      const still = await client.db(APP).collection('things').countDocuments().then(() => true, () => false);
      t.diagnostic(`FerretDB: an open connection of the dropped user ${still ? 'still works' : 'stopped working'}; new logins fail`);
    } else {
      assert.deepEqual(result?.warnings ?? [], []);
      await assert.rejects(client.db(APP).collection('things').countDocuments());
    }
    assert.equal(await canLogin(target, username, password), false);
  } finally {
    await client.close();
  }
});

test('FerretDB: without skip_unsupported_roles, a role statement is refused with a clear message', { skip }, async (t) => {
  if (!target.ferretdb) {
    t.skip('only FerretDB refuses roles in createUser');
    return;
  }
  const e = await newEngine({ options: {} });
  const username = nextUser();
  await assert.rejects(create(e, username, PASSWORD()), (err: Error) => {
    assert.ok(err instanceof EngineInputError, `${err.name}: ${err.message}`);
    assert.match(err.message, /skip_unsupported_roles/);
    return true;
  });
  assert.deepEqual(await userDatabases(target, username, DBS), []);
});
