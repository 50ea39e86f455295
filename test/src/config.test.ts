// Configuration: the JSON file, environment overrides, and refusals that
// name the field, both from loadConfig and from the real command.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { freePort } from '../support/broker.ts';

const BIN = resolve(import.meta.dirname, '../../bin/dbroker.mjs');
const dir = mkdtempSync(join(tmpdir(), 'dbroker-config-test-'));
let n = 0;

after(() => rmSync(dir, { recursive: true, force: true }));

function configFile(content: unknown): string {
  const file = join(dir, `config-${++n}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const storage = { path: join(dir, 'store.db') };

function refused(field: string, problem: RegExp, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && err.field === field && problem.test(err.message) && err.message.includes(`"${field}"`), `${field} ${problem}`);
}

test('a minimal file gets the documented defaults', () => {
  const c = loadConfig(configFile({ storage }), {});
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8200 });
  assert.equal(c.storagePath, storage.path);
  assert.equal(c.logLevel, 'info');
  assert.equal(c.revocationInterval, 1);
  assert.equal(c.defaultLeaseTtl, 768 * 3600);
  assert.equal(c.maxLeaseTtl, 768 * 3600);
  assert.equal(c.maxRequestSize, 1048576);
  assert.deepEqual(c.plugins, {});
  assert.equal(c.tls, undefined);
  assert.equal(c.unsealKeysFile, undefined);
  assert.equal(c.baseDir, dir);
});

test('every field is read, durations in both forms', () => {
  const c = loadConfig(
    configFile({
      listen: '[::1]:9999',
      storage,
      tls: { cert_file: '/c.pem', key_file: '/k.pem' },
      log_level: 'debug',
      unseal_keys_file: '/keys',
      revocation_interval: '5s',
      default_lease_ttl: 60,
      max_lease_ttl: '1h30m',
      max_request_size: 2048,
      plugins: { 'my-plugin': './my-plugin.js' },
    }),
    {},
  );
  assert.deepEqual(c.listen, { host: '::1', port: 9999 });
  assert.deepEqual(c.tls, { certFile: '/c.pem', keyFile: '/k.pem' });
  assert.equal(c.logLevel, 'debug');
  assert.equal(c.unsealKeysFile, '/keys');
  assert.equal(c.revocationInterval, 5);
  assert.equal(c.defaultLeaseTtl, 60);
  assert.equal(c.maxLeaseTtl, 5400);
  assert.equal(c.maxRequestSize, 2048);
  assert.deepEqual(c.plugins, { 'my-plugin': './my-plugin.js' });
});

test('unknown and invalid fields are refused with the field named', () => {
  refused('bogus', /unknown field/, () => loadConfig(configFile({ storage, bogus: 1 }), {}));
  refused('storage.bogus', /unknown field/, () => loadConfig(configFile({ storage: { ...storage, bogus: true } }), {}));
  refused('tls.cert', /unknown field/, () => loadConfig(configFile({ storage, tls: { cert: 'x' } }), {}));
  refused('tls', /must be an object/, () => loadConfig(configFile({ storage, tls: 'yes' }), {}));
  refused('storage', /must be an object/, () => loadConfig(configFile({ storage: '/tmp/x.db' }), {}));
  refused('storage.path', /is required/, () => loadConfig(configFile({}), {}));
  refused('storage.path', /non-empty string/, () => loadConfig(configFile({ storage: { path: '' } }), {}));
  refused('listen', /is not host:port/, () => loadConfig(configFile({ storage, listen: 'localhost' }), {}));
  refused('listen', /is not host:port/, () => loadConfig(configFile({ storage, listen: '127.0.0.1:99999' }), {}));
  refused('listen', /non-empty string/, () => loadConfig(configFile({ storage, listen: 8200 }), {}));
  refused('log_level', /must be one of/, () => loadConfig(configFile({ storage, log_level: 'loud' }), {}));
  refused('revocation_interval', /not a duration/, () => loadConfig(configFile({ storage, revocation_interval: 'often' }), {}));
  refused('default_lease_ttl', /non-negative/, () => loadConfig(configFile({ storage, default_lease_ttl: -1 }), {}));
  refused('default_lease_ttl', /must not exceed max_lease_ttl/, () => loadConfig(configFile({ storage, default_lease_ttl: '2h', max_lease_ttl: '1h' }), {}));
  refused('max_lease_ttl', /too large/, () => loadConfig(configFile({ storage, max_lease_ttl: 1e20 }), {}));
  refused('max_request_size', /at least 1024/, () => loadConfig(configFile({ storage, max_request_size: 10 }), {}));
  refused('max_request_size', /integer/, () => loadConfig(configFile({ storage, max_request_size: 'big' }), {}));
  refused('tls.key_file', /both cert_file and key_file/, () => loadConfig(configFile({ storage, tls: { cert_file: '/c' } }), {}));
  refused('plugins', /object of plugin_name/, () => loadConfig(configFile({ storage, plugins: ['a'] }), {}));
  refused('plugins', /object of plugin_name/, () => loadConfig(configFile({ storage, plugins: { a: 1 } }), {}));
  refused('unseal_keys_file', /non-empty string/, () => loadConfig(configFile({ storage, unseal_keys_file: 5 }), {}));
  refused('(file)', /must be a JSON object/, () => loadConfig(configFile('[1]'), {}));
  refused('(file)', /cannot read/, () => loadConfig(configFile('{"storage": '), {}));
  refused('(file)', /cannot read/, () => loadConfig(join(dir, 'missing.json'), {}));
});

test('environment variables override the file; command-line overrides beat both', () => {
  const file = configFile({ storage, listen: '127.0.0.1:1111', log_level: 'info', default_lease_ttl: '1h', max_lease_ttl: '2h' });
  const env = {
    DBROKER_LISTEN: '0.0.0.0:2222',
    DBROKER_STORAGE_PATH: '/var/lib/other.db',
    DBROKER_LOG_LEVEL: 'warn',
    DBROKER_MAX_LEASE_TTL: '3h',
    DBROKER_TLS_CERT_FILE: '/env/c.pem',
    DBROKER_TLS_KEY_FILE: '/env/k.pem',
    DBROKER_PLUGINS: '{"x":"./x.js"}',
    DBROKER_REVOCATION_INTERVAL: '3',
  };
  const c = loadConfig(file, env);
  assert.deepEqual(c.listen, { host: '0.0.0.0', port: 2222 });
  assert.equal(c.storagePath, '/var/lib/other.db');
  assert.equal(c.logLevel, 'warn');
  assert.equal(c.maxLeaseTtl, 3 * 3600);
  assert.deepEqual(c.tls, { certFile: '/env/c.pem', keyFile: '/env/k.pem' });
  assert.deepEqual(c.plugins, { x: './x.js' });
  assert.equal(c.revocationInterval, 3);
  // An empty variable does not override.
  assert.equal(loadConfig(file, { DBROKER_LOG_LEVEL: '' }).logLevel, 'info');
  const cli = loadConfig(file, env, { listen: '127.0.0.1:3333', log_level: 'error' });
  assert.deepEqual(cli.listen, { host: '127.0.0.1', port: 3333 });
  assert.equal(cli.logLevel, 'error');
  // No file at all: the environment is enough.
  assert.equal(loadConfig(undefined, { DBROKER_STORAGE_PATH: '/x.db' }).storagePath, '/x.db');
});

test('a bad environment value is refused with the field and the variable named', () => {
  const file = configFile({ storage });
  refused('log_level', /\(set by DBROKER_LOG_LEVEL\)/, () => loadConfig(file, { DBROKER_LOG_LEVEL: 'chatty' }));
  refused('listen', /\(set by DBROKER_LISTEN\)/, () => loadConfig(file, { DBROKER_LISTEN: 'nope' }));
  refused('plugins', /must be JSON/, () => loadConfig(file, { DBROKER_PLUGINS: '{oops' }));
  refused('max_request_size', /\(set by DBROKER_MAX_REQUEST_SIZE\)/, () => loadConfig(file, { DBROKER_MAX_REQUEST_SIZE: '12' }));
});

test('DBROKER_UNSEAL_KEYS: comma or space separated shares; not together with a keys file', () => {
  const file = configFile({ storage });
  assert.deepEqual(loadConfig(file, { DBROKER_UNSEAL_KEYS: 'aa, bb\ncc' }).unsealKeys, ['aa', 'bb', 'cc']);
  assert.equal(loadConfig(file, {}).unsealKeys, undefined);
  refused('DBROKER_UNSEAL_KEYS', /not both/, () => loadConfig(configFile({ storage, unseal_keys_file: '/k' }), { DBROKER_UNSEAL_KEYS: 'aa' }));
});

interface Spawned {
  child: ChildProcess;
  readonly output: string;
  exited: Promise<number | null>;
}

function spawnDbroker(args: string[], env: Record<string, string> = {}): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  return {
    child,
    get output() {
      return output;
    },
    exited,
  };
}

/** Run `dbroker ...` to its exit (killed after 30 s). */
async function runDbroker(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const run = spawnDbroker(args, env);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
  const code = await run.exited;
  clearTimeout(timer);
  return { code, output: run.output };
}

const healthStatus = (port: number): Promise<number> =>
  fetch(`http://127.0.0.1:${port}/v1/sys/health`).then(
    (r) => r.status,
    () => 0,
  );

test('the command exits non-zero with a message naming the field', async () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ storage, bogus_field: 1 }, /invalid configuration field "bogus_field": unknown field/],
    [{ storage, log_level: 'loud' }, /invalid configuration field "log_level"/],
    [{ storage, listen: 'nope' }, /invalid configuration field "listen"/],
    [{ storage, tls: { cert_file: join(dir, 'missing.pem'), key_file: join(dir, 'missing.key') } }, /invalid configuration field "tls.cert_file": cannot read/],
    [{ storage: { path: dir } }, /invalid configuration field "storage.path": cannot open/],
  ];
  const runs = await Promise.all(cases.map(([content]) => runDbroker(['server', '--config', configFile(content)])));
  for (const [i, run] of runs.entries()) {
    assert.equal(run.code, 2, run.output);
    assert.match(run.output, cases[i]![1]);
  }
  const noConfig = await runDbroker(['server'], { DBROKER_STORAGE_PATH: '' });
  assert.equal(noConfig.code, 2);
  assert.match(noConfig.output, /"--config"/);
  const badFlag = await runDbroker(['server', '--no-such-flag']);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.output, /no-such-flag/);
  const badEnv = await runDbroker(['server', '--config', configFile({ storage })], { DBROKER_LOG_LEVEL: 'chatty' });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.output, /"log_level".*DBROKER_LOG_LEVEL/);
});

test('DBROKER_LISTEN, DBROKER_STORAGE_PATH and DBROKER_LOG_LEVEL override the file in the real server', async () => {
  const [filePort, envPort] = [await freePort(), await freePort()];
  const fileStore = join(dir, 'from-file.db');
  const envStore = join(dir, 'from-env.db');
  const file = configFile({ listen: `127.0.0.1:${filePort}`, storage: { path: fileStore }, log_level: 'info' });
  const run = spawnDbroker(['server', '--config', file], { DBROKER_LISTEN: `127.0.0.1:${envPort}`, DBROKER_STORAGE_PATH: envStore, DBROKER_LOG_LEVEL: 'warn' });
  try {
    let status = 0;
    for (let i = 0; i < 150 && status === 0 && run.child.exitCode === null; i++) {
      status = await healthStatus(envPort);
      if (status === 0) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(status, 501, `the broker answers on the DBROKER_LISTEN port (uninitialised: 501)\n${run.output}`);
    assert.equal(await healthStatus(filePort), 0, 'nothing listens on the file port');
  } finally {
    run.child.kill('SIGTERM');
  }
  assert.equal(await run.exited, 0);
  assert.ok(existsSync(envStore), 'the store is at DBROKER_STORAGE_PATH');
  assert.ok(!existsSync(fileStore), 'not at the file path');
  assert.ok(!run.output.includes('"level":30'), `log_level warn: no info lines\n${run.output}`);
});
