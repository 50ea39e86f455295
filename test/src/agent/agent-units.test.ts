// The agent's pieces without servers: config errors name their field; the
// template subset parses, renders and refuses what it does not support; the
// persistent cache round-trips, uses a fresh nonce per write, is 0600, and
// refuses a wrong key or a flipped byte; keys load from a file or the
// environment; atomic writes leave no temp file and set the mode.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { ConfigError } from '../../../src/config.ts';
import { createLogger } from '../../../src/logger.ts';
import { startAgent } from '../../../src/agent/agent.ts';
import { parseAgentConfig } from '../../../src/agent/agent-config.ts';
import { writeFileAtomic } from '../../../src/agent/atomic-file.ts';
import { CacheDecryptError, EncryptedCache, loadCacheKey } from '../../../src/agent/persistent-cache.ts';
import { parseTemplate, renderTemplate, TemplateRenderError, type SecretView } from '../../../src/agent/template.ts';
import { Backoff } from '../../../src/client/backoff.ts';

const dir = mkdtempSync(join(tmpdir(), 'dbroker-agent-units-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const base = { broker: { address: 'http://127.0.0.1:8200' } };
const tokenAuth = { method: { type: 'token_file', config: { token_file_path: '/tmp/t' } } };

test('config: defaults, Vault-style fields, relative paths from the config folder', () => {
  const c = parseAgentConfig(
    {
      ...base,
      auto_auth: {
        method: { type: 'approle', mount_path: 'auth/ci-approle', config: { role_id_file_path: 'role', secret_id_file_path: '/abs/secret', remove_secret_id_file_after_reading: false } },
        sinks: [{ type: 'file', config: { path: 'sink' } }],
      },
      cache: { persist: { type: 'kubernetes', path: 'cache', key_env: 'K' } },
      listener: { address: '127.0.0.1:8100', tls_disable: true },
      api_proxy: { use_auto_auth_token: 'force' },
      templates: [{ contents: '{{ with secret "database/creds/a" }}{{ .Data.username }}{{ end }}', destination: 'out', command: 'true' }],
      env_template: { DB_USER: { contents: '{{ with secret "database/static-creds/b" }}{{ .Data.username }}{{ end }}' } },
      exec: { command: ['app'], restart_on_secret_changes: 'never', change_signal: 'SIGHUP' },
    },
    '/etc/agent',
  );
  assert.deepEqual(c.autoAuth?.method, { type: 'approle', mount: 'ci-approle', roleIdFilePath: '/etc/agent/role', secretIdFilePath: '/abs/secret', removeSecretIdFileAfterReading: false });
  assert.deepEqual(c.autoAuth?.sinks, ['/etc/agent/sink']);
  assert.deepEqual(c.persist, { dir: '/etc/agent/cache', keyEnv: 'K' });
  assert.deepEqual(c.listener, { type: 'tcp', host: '127.0.0.1', port: 8100 });
  assert.equal(c.apiProxy.useAutoAuthToken, 'force');
  assert.equal(c.templates[0]!.destination, '/etc/agent/out');
  assert.deepEqual(c.templates[0]!.template.secrets, ['database/creds/a']);
  assert.deepEqual(c.envTemplates['DB_USER']!.secrets, ['database/static-creds/b']);
  assert.equal(c.exec?.changeSignal, 'SIGHUP');
  assert.equal(c.broker.minBackoffMs, 1000);
  assert.equal(c.broker.maxBackoffMs, 30_000);
  const k = parseAgentConfig({ ...base, auto_auth: { method: { type: 'kubernetes', config: { role: 'web' } } } }, '/');
  assert.deepEqual(k.autoAuth?.method, { type: 'kubernetes', mount: 'kubernetes', role: 'web', tokenPath: '/var/run/secrets/kubernetes.io/serviceaccount/token' });
  const j = parseAgentConfig({ ...base, auto_auth: { method: { type: 'jwt', config: { role: 'r', path: 'jwt' } } } }, '/x');
  assert.deepEqual(j.autoAuth?.method, { type: 'jwt', mount: 'jwt', role: 'r', path: '/x/jwt', removeJwtAfterReading: true });
  const r = parseAgentConfig({ ...base, broker: { address: 'https://b:8200/', retry: { min_backoff: '250ms', max_backoff: 2 } } }, '/');
  assert.equal(r.broker.address, 'https://b:8200');
  assert.equal(r.broker.minBackoffMs, 250);
  assert.equal(r.broker.maxBackoffMs, 2000);
});

test('config: each bad field is a ConfigError naming it', () => {
  const cases: Array<[unknown, string]> = [
    [{}, 'broker'],
    [{ broker: { address: 'ftp://x' } }, 'broker.address'],
    [{ broker: { address: 'http://x/path' } }, 'broker.address'],
    [{ ...base, bogus: 1 }, 'config.bogus'],
    [{ broker: { address: 'http://x', retry: { min_backoff: '5s', max_backoff: '1s' } } }, 'broker.retry.max_backoff'],
    [{ broker: { address: 'http://x', retry: { min_backoff: 'soon' } } }, 'broker.retry.min_backoff'],
    [{ ...base, auto_auth: { method: { type: 'ldap', config: {} } } }, 'auto_auth.method.type'],
    [{ ...base, auto_auth: { method: { type: 'approle', config: { role_id_file_path: 'r' } } } }, 'auto_auth.method.config.secret_id_file_path'],
    [{ ...base, auto_auth: { method: { type: 'approle', config: { role_id_file_path: 'r', secret_id_file_path: 's', remove_secret_id_file_after_reading: 'no' } } } }, 'auto_auth.method.config.remove_secret_id_file_after_reading'],
    [{ ...base, auto_auth: { method: { type: 'jwt', config: { path: 'p' } } } }, 'auto_auth.method.config.role'],
    [{ ...base, auto_auth: { ...tokenAuth, sinks: [{ type: 'socket', config: {} }] } }, 'auto_auth.sinks[0].type'],
    [{ ...base, cache: { persist: { path: 'x' } } }, 'cache.persist'],
    [{ ...base, listener: { address: '0.0.0.0:8100' } }, 'listener.address'],
    [{ ...base, listener: { address: '127.0.0.1:99999' } }, 'listener.address'],
    [{ ...base, listener: { type: 'udp', address: 'x' } }, 'listener.type'],
    [{ ...base, api_proxy: { use_auto_auth_token: 'yes' } }, 'api_proxy.use_auto_auth_token'],
    [{ ...base, api_proxy: { use_auto_auth_token: true } }, 'auto_auth'],
    [{ ...base, auto_auth: tokenAuth, templates: [{ contents: '{{ .Data.x }}', destination: 'o' }] }, 'templates[0].contents'],
    [{ ...base, auto_auth: tokenAuth, templates: [{ contents: 'x' }] }, 'templates[0].destination'],
    [{ ...base, auto_auth: tokenAuth, templates: [{ source: '/nonexistent/t.tpl', destination: 'o' }] }, 'templates[0].source'],
    [{ ...base, auto_auth: tokenAuth, templates: [{ contents: 'x', destination: 'o', command: [] }] }, 'templates[0].command'],
    [{ ...base, auto_auth: tokenAuth, env_template: { '1X': { contents: '' } }, exec: { command: ['a'] } }, 'env_template.1X'],
    [{ ...base, auto_auth: tokenAuth, env_template: { X: { contents: '' } } }, 'env_template'],
    [{ ...base, exec: { command: 'node app.js' } }, 'exec.command'],
    [{ ...base, exec: { command: ['a'], restart_on_secret_changes: 'sometimes' } }, 'exec.restart_on_secret_changes'],
    [{ ...base, exec: { command: ['a'], change_signal: 'HUP' } }, 'exec.change_signal'],
  ];
  for (const [raw, field] of cases) {
    assert.throws(
      () => parseAgentConfig(raw, '/'),
      (err: unknown) => err instanceof ConfigError && err.field === field,
      `${JSON.stringify(raw)} should be refused naming ${field}`,
    );
  }
});

const creds: SecretView = { lease_id: 'database/creds/a/xyz', lease_duration: 300, renewable: true, data: { username: 'v-app-1', password: 'p@ss "w/rd"', nested: { k: 1 } } };

test('templates: fields, pipes, several secrets; unsupported actions refused; missing fields fail the render', () => {
  const t = parseTemplate(
    '{{ with secret "database/creds/a" }}user={{ .Data.username }} pass={{.Data.password|urlquery}} json={{ .Data.password | toJSON }} ' +
      'lease={{ .LeaseID }} ttl={{ .LeaseDuration }} r={{ .Renewable }} n={{ .Data.nested }}{{ end }};{{ with secret "/database/creds/b" }}{{ .Data.username }}{{ end }}',
    'f',
  );
  assert.deepEqual(t.secrets, ['database/creds/a', 'database/creds/b']);
  const out = renderTemplate(t, (p) => (p === 'database/creds/a' ? creds : { ...creds, data: { username: 'other' } }));
  assert.equal(out, `user=v-app-1 pass=${encodeURIComponent('p@ss "w/rd"')} json="p@ss \\"w/rd\\"" lease=database/creds/a/xyz ttl=300 r=true n={"k":1};other`);
  for (const bad of ['{{ .Data.x }}', '{{ with secret "a" }}{{ with secret "b" }}{{ end }}{{ end }}', '{{ end }}', '{{ with secret "a" }}', '{{ with secret "a" }}{{ env "HOME" }}{{ end }}', '{{ with secret "a" }}{{ .Data.x | printf }}{{ end }}', '{{ with secret "a" }}{{ file "/etc/passwd" }}{{ end }}']) {
    assert.throws(() => parseTemplate(bad, 'templates[0].contents'), (err: unknown) => err instanceof ConfigError && err.field === 'templates[0].contents', bad);
  }
  const missing = parseTemplate('{{ with secret "database/creds/a" }}{{ .Data.nope }}{{ end }}', 'f');
  assert.throws(() => renderTemplate(missing, () => creds), (err: unknown) => err instanceof TemplateRenderError && !String((err as Error).message).includes('p@ss'));
  assert.throws(() => renderTemplate(missing, () => undefined), /not available/);
});

test('persistent cache: AES-256-GCM round trip, fresh nonce per write, 0600, no plaintext; wrong key or a flipped byte refused', async () => {
  const key = randomBytes(32);
  const cacheDir = join(dir, 'cache');
  const cache = new EncryptedCache<{ secret: string }>(cacheDir, key);
  assert.equal(cache.load(), undefined);
  const secret = `s3cret-${randomBytes(8).toString('hex')}`;
  await cache.save({ secret });
  const first = readFileSync(cache.path);
  assert.deepEqual(cache.load(), { secret });
  await cache.save({ secret });
  const second = readFileSync(cache.path);
  assert.notDeepEqual(first.subarray(8, 20), second.subarray(8, 20), 'a new nonce at each write');
  assert.notDeepEqual(first, second);
  assert.equal(first.indexOf(Buffer.from(secret)), -1);
  assert.equal(statSync(cache.path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(cacheDir), ['agent-cache.bin'], 'no temp file left');
  assert.throws(() => new EncryptedCache(cacheDir, randomBytes(32)).load(), CacheDecryptError);
  const flipped = Buffer.from(second);
  flipped[flipped.length - 1]! ^= 1;
  writeFileSync(cache.path, flipped);
  assert.throws(() => cache.load(), CacheDecryptError);
  writeFileSync(cache.path, 'plain text');
  assert.throws(() => cache.load(), CacheDecryptError);
  // A burst of saves: the last value wins.
  await Promise.all([cache.save({ secret: 'a' }), cache.save({ secret: 'b' }), cache.save({ secret: 'c' })]);
  assert.deepEqual(cache.load(), { secret: 'c' });
});

test('cache keys: raw 32 bytes, hex or base64 from a file; hex from the environment; anything else refused', () => {
  const key = randomBytes(32);
  const f = (name: string, content: string | Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  assert.deepEqual(loadCacheKey({ keyFile: f('raw', key) }), key);
  assert.deepEqual(loadCacheKey({ keyFile: f('hex', `${key.toString('hex')}\n`) }), key);
  assert.deepEqual(loadCacheKey({ keyFile: f('b64', key.toString('base64')) }), key);
  assert.deepEqual(loadCacheKey({ keyEnv: 'K' }, { K: key.toString('hex') }), key);
  assert.throws(() => loadCacheKey({ keyFile: f('short', 'abc') }), (e: unknown) => e instanceof ConfigError && e.field === 'cache.persist.key_file');
  assert.throws(() => loadCacheKey({ keyFile: join(dir, 'none') }), (e: unknown) => e instanceof ConfigError && e.field === 'cache.persist.key_file');
  assert.throws(() => loadCacheKey({ keyEnv: 'K' }, {}), (e: unknown) => e instanceof ConfigError && e.field === 'cache.persist.key_env');
});

test('atomic write: mode 0600 whatever the umask, replaces, no temp file left', async () => {
  const p = join(dir, 'atomic', 'f');
  (await import('node:fs')).mkdirSync(join(dir, 'atomic'));
  writeFileSync(p, 'old', { mode: 0o644 });
  await writeFileAtomic(p, 'new');
  assert.equal(readFileSync(p, 'utf8'), 'new');
  assert.equal(statSync(p).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(join(dir, 'atomic')), ['f']);
});

test('backoff: capped exponential with jitter, reset', () => {
  const b = new Backoff({ minMs: 100, maxMs: 1000 });
  const delays = Array.from({ length: 12 }, () => b.next());
  for (const d of delays) assert.ok(d >= 100 && d <= 1000, String(d));
  assert.ok(delays.slice(0, 2).every((d) => d <= 200), 'small at first');
  b.reset();
  assert.ok(b.next() <= 100);
});

// any: the status document is JSON read field by field.
function getOverSocket(socketPath: string, path: string): Promise<{ status: number; body: any; text: string }> {
  return new Promise((ok, fail) => {
    const req = request({ socketPath, path, method: 'GET' }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        ok({ status: res.statusCode ?? 0, body, text });
      });
    });
    req.on('error', fail);
    req.end();
  });
}

test('Unix socket listener (mode 0600): status, and a 502 with a Vault error body while the broker is unreachable (status degraded)', async () => {
  const sock = join(dir, 'agent.sock');
  const config = parseAgentConfig({ broker: { address: 'http://127.0.0.1:9', timeout: '1s' }, listener: { type: 'unix', address: sock } }, dir);
  const agent = await startAgent(config, createLogger('silent'));
  try {
    assert.equal(agent.address, sock);
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    const s0 = await getOverSocket(sock, '/agent/v1/status');
    assert.equal(s0.status, 200);
    assert.equal(s0.body.status, 'ok', 'nothing configured, nothing failed yet');
    const r = await getOverSocket(sock, '/v1/sys/health');
    assert.equal(r.status, 502);
    assert.match(r.body.errors[0], /broker unreachable/);
    const s1 = await getOverSocket(sock, '/agent/v1/status');
    assert.equal(s1.body.status, 'degraded');
    assert.equal(s1.body.broker.reachable, false);
    assert.equal((await getOverSocket(sock, '/nope')).status, 404);
    const m = await getOverSocket(sock, '/agent/v1/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /^dbroker_agent_degraded 1$/m);
    assert.match(m.text, /^dbroker_agent_broker_reachable 0$/m);
    assert.match(m.text, /^# TYPE dbroker_agent_lease_renewals_total counter$/m);
  } finally {
    await agent.close();
  }
});
