// The MongoDB engine's checks that need no server: the factory, statement
// validation (what a role write answers 400 with) and connection settings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import mongodbEngine from '../../../plugins/mongodb/index.ts';
import { parseMongoConfig, parseWriteConcern } from '../../../plugins/mongodb/config.ts';
import { creationFrom, dropTargetsFrom, passwordDbFrom } from '../../../plugins/mongodb/statements.ts';
import { EngineInputError, type ConnectionConfig, type StatementKind } from '../../../src/engine/engine.ts';

const URL_TEMPLATE = 'mongodb://{{username}}:{{password}}@127.0.0.1:27017/admin';

function config(overrides: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return { connectionUrl: URL_TEMPLATE, username: 'admin', password: 'pw', maxOpenConnections: 3, options: {}, ...overrides };
}

test('the factory has the Vault plugin name and its limits', () => {
  assert.equal(mongodbEngine.type, 'mongodb-database-plugin');
  assert.equal(mongodbEngine.maxUsernameLength, 100);
  assert.deepEqual(mongodbEngine.defaultRootRotationStatements, []);
  assert.equal(typeof mongodbEngine.validateStatements, 'function');
  assert.equal(mongodbEngine.create().type, 'mongodb-database-plugin');
});

test('statements parse to what the commands get', () => {
  assert.deepEqual(creationFrom(['{"db":"admin","roles":[{"role":"read","db":"app"}]}']), { db: 'admin', roles: [{ role: 'read', db: 'app' }] });
  // A plain role name, or one without db, is a role of the statement's db (default admin).
  assert.deepEqual(creationFrom(['{"roles":["readWrite",{"role":"read"}]}']), { db: 'admin', roles: [{ role: 'readWrite', db: 'admin' }, { role: 'read', db: 'admin' }] });
  assert.deepEqual(creationFrom([' ', '{"db":"app","roles":["read"]}']), { db: 'app', roles: [{ role: 'read', db: 'app' }] });
  assert.deepEqual(dropTargetsFrom('revocation', ['{"db":"app"}', '{}', '{"db":"app"}']), ['app', 'admin']);
  assert.deepEqual(dropTargetsFrom('revocation', []), []);
  assert.equal(passwordDbFrom('rotation', []), undefined);
  assert.equal(passwordDbFrom('root_rotation', ['{"db":"ops"}']), 'ops');
});

test('statement validation: bad JSON and shapes are EngineInputErrors naming the problem', () => {
  const cases: Array<[kind: StatementKind, statements: string[], message: RegExp]> = [
    ['creation', [], /creation_statements must hold one JSON statement/],
    ['creation', ['{"db": "admin", "roles": ['], /creation_statements is not valid JSON/],
    ['creation', ['CREATE USER x'], /not valid JSON/],
    ['creation', ['[]'], /must be a JSON object/],
    ['creation', ['null'], /must be a JSON object/],
    ['creation', ['{"db": "admin"}'], /"roles" is required/],
    ['creation', ['{"roles": []}'], /"roles" must name at least one role/],
    ['creation', ['{"roles": "read"}'], /"roles" must be an array/],
    ['creation', ['{"roles": [42]}'], /roles\[0\] must be a role name/],
    ['creation', ['{"roles": [""]}'], /roles\[0\] must be a non-empty role name/],
    ['creation', ['{"roles": [{"db": "app"}]}'], /roles\[0\]\.role must be a non-empty role name/],
    ['creation', ['{"roles": [{"role": "read", "db": "a.b"}]}'], /roles\[0\]\.db "a\.b" is not a valid database name/],
    ['creation', ['{"roles": [{"role": "read", "db": "app", "x": 1}]}'], /unknown field "x"/],
    ['creation', ['{"db": 5, "roles": ["read"]}'], /"db" must be a non-empty string/],
    ['creation', ['{"db": "$external", "roles": ["read"]}'], /not a valid database name/],
    ['creation', [`{"db": "${'d'.repeat(64)}", "roles": ["read"]}`], /too long/],
    ['creation', ['{"db": "admin", "role": ["read"]}'], /unknown field "role"/],
    ['creation', ['{"roles": ["read"]}', '{"roles": ["read"]}'], /exactly one JSON statement/],
    ['revocation', ['{"db": "admin", "roles": ["read"]}'], /revocation_statements has unknown field "roles"/],
    ['revocation', ['{"db": "ok"}', 'nope'], /revocation_statements\[1\] is not valid JSON/],
    ['rollback', ['{"db": ""}'], /rollback_statements: "db" must be a non-empty string/],
    ['rotation', ['{"db": "a"}', '{"db": "b"}'], /at most one JSON statement/],
    ['root_rotation', ['"admin"'], /must be a JSON object/],
    ['renew', ['{"db": "admin"}'], /renew_statements are not supported/],
  ];
  for (const [kind, statements, message] of cases) {
    assert.throws(() => mongodbEngine.validateStatements!(kind, statements), (err: Error) => {
      assert.ok(err instanceof EngineInputError, `${kind} ${JSON.stringify(statements)}: ${err.name}`);
      assert.match(err.message, message, `${kind} ${JSON.stringify(statements)}`);
      return true;
    });
  }
  mongodbEngine.validateStatements!('creation', ['{"db":"admin","roles":[{"role":"read","db":"app"}]}']);
  mongodbEngine.validateStatements!('revocation', ['{"db":"app"}', '{}']);
  mongodbEngine.validateStatements!('rollback', []);
  mongodbEngine.validateStatements!('rotation', []);
  mongodbEngine.validateStatements!('renew', []);
});

test('connection settings: credentials as the driver\'s auth option, one bounded pool, URL timeouts respected', () => {
  const s = parseMongoConfig(config({ username: 'ad@m:n', password: 'p@ss:/w?rd%' }));
  assert.equal(s.url, 'mongodb://127.0.0.1:27017/admin', 'the userinfo with the placeholders is cut out');
  assert.equal(s.clientOptions.maxPoolSize, 3);
  assert.equal(s.clientOptions.serverSelectionTimeoutMS, 10_000);
  assert.deepEqual(s.clientOptions.auth, { username: 'ad@m:n', password: 'p@ss:/w?rd%' });
  assert.deepEqual(s.secrets, ['p@ss:/w?rd%', encodeURIComponent('p@ss:/w?rd%')]);
  const t = parseMongoConfig(config({ connectionUrl: 'mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=500&maxPoolSize=99', maxOpenConnections: 2 }));
  assert.equal(t.clientOptions.serverSelectionTimeoutMS, undefined, 'the URL value stays in force');
  assert.equal(t.clientOptions.maxPoolSize, 2, 'max_open_connections wins');
  assert.deepEqual(t.clientOptions.auth, { username: 'admin', password: 'pw' }, 'credentials without placeholders are passed as options');
  assert.equal(parseMongoConfig(config({ maxOpenConnections: 0 })).clientOptions.maxPoolSize, 4);
});

test('write_concern takes Vault\'s shape', () => {
  assert.deepEqual(parseWriteConcern('{"wmode": "majority", "wtimeout": 5000, "j": true}'), { w: 'majority', wtimeout: 5000, j: true });
  assert.deepEqual(parseWriteConcern({ w: 2, wmode: 'majority' }), { w: 'majority' });
  assert.deepEqual(parseWriteConcern({ wmode: 'majority', w: 2 }), { w: 'majority' });
  assert.deepEqual(parseWriteConcern('{"w": 1, "fsync": true}'), { w: 1, j: true });
  assert.equal(parseWriteConcern(''), undefined);
  assert.equal(parseWriteConcern('{}'), undefined);
});

test('engine options and URLs are validated, naming the field, without echoing the password', () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ nonsense: 1 }, /unknown field "nonsense"/],
    [{ write_concern: '{"w": ' }, /write_concern is not valid JSON/],
    [{ write_concern: '[1]' }, /write_concern must be a JSON object/],
    [{ write_concern: '{"w": -1}' }, /write_concern\.w must be a non-negative integer/],
    [{ write_concern: '{"wmode": 3}' }, /write_concern\.wmode/],
    [{ write_concern: '{"j": "yes"}' }, /write_concern\.j must be a boolean/],
    [{ write_concern: '{"bogus": true}' }, /write_concern has unknown field "bogus"/],
    [{ tls_ca: 'not a pem' }, /tls_ca must hold one or more PEM certificates/],
    [{ tls_ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }, /tls_ca must hold/],
    [{ tls_certificate_key: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }, /tls_certificate_key must be a PEM/],
    [{ skip_unsupported_roles: 'maybe' }, /skip_unsupported_roles must be a boolean/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => parseMongoConfig(config({ options })), (err: Error) => {
      assert.ok(err instanceof EngineInputError, `${JSON.stringify(options)}: ${err.name}`);
      assert.match(err.message, message);
      return true;
    });
  }
  assert.equal(parseMongoConfig(config({ options: { skip_unsupported_roles: 'true' } })).skipUnsupportedRoles, true);
  const urls: Array<[string, RegExp]> = [
    ['', /connection_url is required/],
    ['postgres://{{username}}:{{password}}@127.0.0.1/admin', /connection_url must be a mongodb:\/\//],
    ['mongodb://{{username}}:{{secret}}@127.0.0.1/admin', /unknown placeholder \{\{secret\}\}/],
  ];
  for (const [connectionUrl, message] of urls) {
    assert.throws(() => parseMongoConfig(config({ connectionUrl })), (err: Error) => err instanceof EngineInputError && message.test(err.message));
  }
});

test('a connection string the driver refuses is an EngineInputError without the password', async () => {
  const password = 'Very-secret-admin-pw-1';
  const e = mongodbEngine.create();
  await assert.rejects(
    e.initialize(config({ password, connectionUrl: `${URL_TEMPLATE}?authMechanism=BOGUS` }), { verify: false }),
    (err: Error) => {
      assert.ok(err instanceof EngineInputError, `${err.name}: ${err.message}`);
      assert.match(err.message, /connection_url is not a valid MongoDB connection string/);
      assert.ok(!err.message.includes(password) && !err.message.includes(encodeURIComponent(password)));
      return true;
    },
  );
  await e.close();
  await assert.rejects(e.newUser({ username: 'u', password: 'p', expiration: new Date(), creationStatements: [], rollbackStatements: [] }), /not initialized/);
});

// Issue 8 item 9: the credentials reach the driver verbatim whatever the rest
// of the URL holds (a raw space in the query here), never URL-encoded into it.
test('credentials reach the driver verbatim: odd characters, a raw space in the query, text around the placeholders', async () => {
  const odd = ['a{b', 'a}b', 'a/b', 'a:b', 'a?b', 'a=b', 'a+b', 'a@b', 'a%41b', 'a#b', 'a b', `{}/:?=+@%# &x`];
  for (const password of odd) {
    const s = parseMongoConfig(config({ connectionUrl: `${URL_TEMPLATE}?authMechanism=SCRAM-SHA-256&appName=my app`, password }));
    assert.deepEqual(s.clientOptions.auth, { username: 'admin', password }, JSON.stringify(password));
    assert.equal(s.url, 'mongodb://127.0.0.1:27017/admin?authMechanism=SCRAM-SHA-256&appName=my app');
    const e = mongodbEngine.create();
    await e.initialize(config({ connectionUrl: s.url.replace('mongodb://', 'mongodb://{{username}}:{{password}}@'), password }), { verify: false });
    await e.close();
  }
  // Literal (URL-encoded) text around a placeholder is decoded, the value is not.
  const mixed = parseMongoConfig(config({ connectionUrl: 'mongodb://svc%40x:{{password}}@127.0.0.1/admin', password: 'p%40q' }));
  assert.deepEqual(mixed.clientOptions.auth, { username: 'svc@x', password: 'p%40q' });
  assert.throws(() => parseMongoConfig(config({ connectionUrl: 'mongodb://127.0.0.1/admin?user={{username}}' })), /may only appear before the "@"/);
});
