// PostgreSQL connection settings that need no server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConnectionConfig } from '../../../plugins/postgres/config.ts';
import { EngineInputError, type ConnectionConfig } from '../../../src/engine/engine.ts';

function cfg(connectionUrl: string, username = 'admin', password = 'pw'): ConnectionConfig {
  return { connectionUrl, username, password, maxOpenConnections: 3, options: {} };
}

// Issue 8 item 9: `a{b` with a raw space in the query reached the server as
// `a%7Bb` (pg-connection-string leaves userinfo encoded when the query is not
// strictly URL-encoded). The credentials are now set as pool fields verbatim.
test('credentials reach pg verbatim: odd characters, a raw space in the query', () => {
  const odd = ['a{b', 'a}b', 'a/b', 'a:b', 'a?b', 'a=b', 'a+b', 'a@b', 'a%41b', 'a#b', 'a b', `{}/:?=+@%# &x`];
  const urls = [
    'postgresql://{{username}}:{{password}}@db.example:5433/postgres?sslmode=disable&application_name=my app',
    'postgresql://{{username}}:{{password}}@db.example:5433/postgres?sslmode=disable',
    'postgres://{{username}}:{{password}}@db.example:5433/postgres',
  ];
  for (const url of urls) {
    for (const password of odd) {
      const s = parseConnectionConfig(cfg(url, 'us@r:x', password));
      assert.equal(s.adminPassword, password, `${url} ${JSON.stringify(password)}`);
      assert.equal(s.adminUser, 'us@r:x');
      assert.equal(s.pool.user, 'us@r:x');
      assert.equal(s.pool.password, undefined, 'the engine supplies the password');
      assert.deepEqual([s.pool.host, s.pool.port, s.pool.database], ['db.example', 5433, 'postgres']);
    }
  }
  const spaced = parseConnectionConfig(cfg(urls[0]!, 'admin', 'a{b'));
  assert.equal(spaced.pool.application_name, 'my app');
  // Placeholders in the query get the value verbatim too.
  const inQuery = parseConnectionConfig(cfg('postgresql://db.example/postgres?user={{username}}&password={{password}}', 'me', 'a&b=c'));
  assert.deepEqual([inQuery.pool.user, inQuery.adminPassword], ['me', 'a&b=c']);
  assert.throws(() => parseConnectionConfig(cfg('postgresql://{{username}}:{{pass}}@h/')), EngineInputError);
});
