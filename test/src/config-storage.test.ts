// Configuration of the PostgreSQL store and HA: every field from the file and
// from its DBROKER_* variable, the defaults, and refusals that name the field
// (loadConfig, and the real command's exit code 2).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.ts';

const BIN = resolve(import.meta.dirname, '../../bin/dbroker.mjs');
const dir = mkdtempSync(join(tmpdir(), 'dbroker-config-pg-'));
let n = 0;
after(() => rmSync(dir, { recursive: true, force: true }));

function configFile(content: unknown): string {
  const file = join(dir, `config-${++n}.json`);
  writeFileSync(file, JSON.stringify(content));
  return file;
}

function refused(field: string, problem: RegExp, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && err.field === field && problem.test(err.message), `${field} ${problem}`);
}

const pgStore = { type: 'postgresql', connection_url: 'postgres://dbroker:pw@db:5432/dbroker' };

test('storage.type postgresql: defaults and every field from the file', () => {
  const c = loadConfig(configFile({ storage: pgStore }), {});
  assert.equal(c.storagePath, '');
  assert.deepEqual(c.postgres, { connectionUrl: pgStore.connection_url, tablePrefix: 'dbroker_', maxConnections: 8 });
  assert.equal(c.ha, undefined);
  const full = loadConfig(
    configFile({
      storage: { ...pgStore, table_prefix: 'x_', max_connections: 20, tls_ca_file: '/ca.pem', tls_cert_file: '/c.pem', tls_key_file: '/k.pem', tls_skip_verify: false },
      ha: { enabled: true, lease_duration: '5s' },
      api_addr: 'https://node-1.internal:8200',
      cluster_addr: 'https://node-1.internal:8201/',
    }),
    {},
  );
  assert.deepEqual(full.postgres, { connectionUrl: pgStore.connection_url, tablePrefix: 'x_', maxConnections: 20, tlsCaFile: '/ca.pem', tlsCertFile: '/c.pem', tlsKeyFile: '/k.pem', tlsSkipVerify: false });
  assert.deepEqual(full.ha, { apiAddr: 'https://node-1.internal:8200', clusterAddr: 'https://node-1.internal:8201', leaseDuration: 5 });
  const defaults = loadConfig(configFile({ storage: pgStore, ha: { enabled: true }, api_addr: 'http://a:8200' }), {});
  assert.deepEqual(defaults.ha, { apiAddr: 'http://a:8200', clusterAddr: 'http://a:8200', leaseDuration: 8 });
});

test('every storage and HA field has its DBROKER_* variable', () => {
  const c = loadConfig(undefined, {
    DBROKER_STORAGE_TYPE: 'postgresql',
    DBROKER_STORAGE_CONNECTION_URL: 'postgresql://u@h/db',
    DBROKER_STORAGE_TABLE_PREFIX: 'env_',
    DBROKER_STORAGE_MAX_CONNECTIONS: '3',
    DBROKER_STORAGE_TLS_CA_FILE: '/ca',
    DBROKER_STORAGE_TLS_CERT_FILE: '/cert',
    DBROKER_STORAGE_TLS_KEY_FILE: '/key',
    DBROKER_STORAGE_TLS_SKIP_VERIFY: 'true',
    DBROKER_HA_ENABLED: 'true',
    DBROKER_HA_LEASE_DURATION: '4',
    DBROKER_API_ADDR: 'http://10.0.0.1:8200',
    DBROKER_CLUSTER_ADDR: 'http://10.0.0.1:8201',
  });
  assert.deepEqual(c.postgres, { connectionUrl: 'postgresql://u@h/db', tablePrefix: 'env_', maxConnections: 3, tlsCaFile: '/ca', tlsCertFile: '/cert', tlsKeyFile: '/key', tlsSkipVerify: true });
  assert.deepEqual(c.ha, { apiAddr: 'http://10.0.0.1:8200', clusterAddr: 'http://10.0.0.1:8201', leaseDuration: 4 });
});

test('bad storage and HA fields are refused with the field named', () => {
  refused('storage.type', /"sqlite" or "postgresql"/, () => loadConfig(configFile({ storage: { type: 'mysql' } }), {}));
  refused('storage.connection_url', /non-empty string/, () => loadConfig(configFile({ storage: { type: 'postgresql' } }), {}));
  refused('storage.connection_url', /postgres:\/\//, () => loadConfig(configFile({ storage: { type: 'postgresql', connection_url: 'mysql://x' } }), {}));
  refused('storage.table_prefix', /lower-case/, () => loadConfig(configFile({ storage: { ...pgStore, table_prefix: 'x; DROP TABLE y' } }), {}));
  refused('storage.max_connections', /integer from 2/, () => loadConfig(configFile({ storage: { ...pgStore, max_connections: 1 } }), {}));
  refused('storage.tls_key_file', /together/, () => loadConfig(configFile({ storage: { ...pgStore, tls_cert_file: '/c' } }), {}));
  refused('storage.tls_skip_verify', /true or false/, () => loadConfig(configFile({ storage: { ...pgStore, tls_skip_verify: 'maybe' } }), {}));
  refused('storage.path', /for storage.type "sqlite"/, () => loadConfig(configFile({ storage: { ...pgStore, path: '/x.db' } }), {}));
  refused('storage.connection_url', /for storage.type "postgresql"/, () => loadConfig(configFile({ storage: { path: join(dir, 's.db'), connection_url: 'postgres://x' } }), {}));
  refused('storage.bogus', /unknown field/, () => loadConfig(configFile({ storage: { ...pgStore, bogus: 1 } }), {}));
  refused('ha.bogus', /unknown field/, () => loadConfig(configFile({ storage: pgStore, ha: { bogus: 1 } }), {}));
  refused('ha', /must be an object/, () => loadConfig(configFile({ storage: pgStore, ha: true }), {}));
  refused('ha.enabled', /needs storage.type "postgresql"/, () => loadConfig(configFile({ storage: { path: join(dir, 's.db') }, ha: { enabled: true }, api_addr: 'http://a:1' }), {}));
  refused('ha.enabled', /true or false/, () => loadConfig(configFile({ storage: pgStore, ha: { enabled: 'yes' } }), {}));
  refused('api_addr', /is required with ha.enabled/, () => loadConfig(configFile({ storage: pgStore, ha: { enabled: true } }), {}));
  refused('api_addr', /http\(s\):\/\/host:port/, () => loadConfig(configFile({ storage: pgStore, ha: { enabled: true }, api_addr: 'node-1:8200' }), {}));
  refused('cluster_addr', /nothing after the port/, () => loadConfig(configFile({ storage: pgStore, ha: { enabled: true }, api_addr: 'http://a:1', cluster_addr: 'http://a:2/v1' }), {}));
  refused('ha.lease_duration', /from 2 to 300/, () => loadConfig(configFile({ storage: pgStore, ha: { enabled: true, lease_duration: '1s' } , api_addr: 'http://a:1' }), {}));
  refused('api_addr', /is for ha.enabled true/, () => loadConfig(configFile({ storage: pgStore, api_addr: 'http://a:1' }), {}));
  refused('storage.max_connections', /DBROKER_STORAGE_MAX_CONNECTIONS/, () => loadConfig(configFile({ storage: pgStore }), { DBROKER_STORAGE_MAX_CONNECTIONS: 'many' }));
});

test('the command exits 2 naming the field; an unreachable store names storage.connection_url, not the password', () => {
  const run = (config: unknown) => spawnSync(process.execPath, [BIN, 'server', '--config', configFile(config)], { encoding: 'utf8', timeout: 60_000 });
  const bad = run({ storage: { ...pgStore, bogus: true } });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /"storage.bogus": unknown field/);
  const down = run({ listen: '127.0.0.1:0', storage: { type: 'postgresql', connection_url: 'postgres://dbroker:s3cret-pw@127.0.0.1:1/dbroker' } });
  assert.equal(down.status, 2, down.stderr);
  assert.match(down.stderr, /"storage.connection_url": cannot open the PostgreSQL store/);
  assert.doesNotMatch(down.stderr, /s3cret-pw/);
});
