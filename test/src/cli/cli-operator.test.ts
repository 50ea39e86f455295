// The operator commands on a fresh broker process: init, status while
// sealed (exit 2), unseal from an argument and from standard input, -reset,
// key-status, rotate, seal; step-down (a no-op without HA) and migrate's usage; formerly not in this
// build. Then TLS: VAULT_CACERT (and -ca-cert) verify the server,
// VAULT_SKIP_VERIFY skips it, and with neither a self-signed server fails.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, startBroker, type BrokerProcess } from '../../support/broker.ts';
import { runCli, type CliOptions } from '../../support/cli.ts';

const BIN = resolve(import.meta.dirname, '../../../bin/dbroker.mjs');
let home: string;
let broker: BrokerProcess;
const cli = (args: string[], opts: CliOptions = {}) => runCli(args, home, { ...opts, env: { VAULT_ADDR: broker.url, ...opts.env } });

before(async () => {
  home = mkdtempSync(join(tmpdir(), 'dbroker-cli-op-'));
  broker = await startBroker();
});

after(async () => {
  await broker?.stop();
  broker?.remove();
  if (home) rmSync(home, { recursive: true, force: true });
});

test('init, unseal (argument and stdin), key-status, rotate, seal, and the exit codes of status', async () => {
  const before = await cli(['status']);
  assert.equal(before.code, 2);
  assert.match(before.out, /Initialized\s+false/);

  const init = JSON.parse((await cli(['operator', 'init', '-key-shares=3', '-key-threshold=2', '-format=json'])).out);
  assert.equal(init.keys.length, 3);
  assert.ok(init.root_token);
  const again = await cli(['operator', 'init', '-key-shares=1', '-key-threshold=1']);
  assert.equal(again.code, 2);
  assert.match(again.err, /already initialized/i);

  const sealed = await cli(['status']);
  assert.equal(sealed.code, 2);
  assert.match(sealed.out, /Sealed\s+true\n/);
  assert.match(sealed.out, /Unseal Progress\s+0\/2\n/);

  const first = await cli(['operator', 'unseal', init.keys[0]]);
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /Unseal Progress\s+1\/2/);
  const reset = await cli(['operator', 'unseal', '-reset']);
  assert.match(reset.out, /Unseal Progress\s+0\/2/);
  assert.equal((await cli(['operator', 'unseal', init.keys_base64[1]])).code, 0);
  // The second share from standard input (not a terminal: one line is read).
  const second = await cli(['operator', 'unseal', '-format=json'], { input: `${init.keys[2]}\n` });
  assert.equal(second.code, 0, second.err);
  assert.equal(JSON.parse(second.out).sealed, false);
  const bad = await cli(['operator', 'unseal', 'zz']);
  assert.equal(bad.code, 0); // unsealed already: the share is not even looked at, as Vault
  const status = await cli(['status']);
  assert.equal(status.code, 0);
  assert.match(status.out, /Sealed\s+false\n/);

  const root = { VAULT_TOKEN: init.root_token };
  const keyStatus = await cli(['operator', 'key-status'], { env: root });
  assert.match(keyStatus.out, /Key Term\s+1\n/);
  const rotated = await cli(['operator', 'rotate'], { env: root });
  assert.equal(rotated.code, 0, rotated.err);
  assert.match(rotated.out, /^Success! Rotated key\n\n.*Key Term\s+2\n/s);
  assert.equal(JSON.parse((await cli(['operator', 'key-status', '-format=json'], { env: root })).out).data.term, 2);
  assert.equal((await cli(['operator', 'key-status', '-field=term'], { env: root })).out, '2\n');

  // A single broker has nobody to hand over to: step-down is a no-op success, as in Vault without HA.
  const stepDown = await cli(['operator', 'step-down'], { env: root });
  assert.equal(stepDown.code, 0, stepDown.err);
  assert.match(stepDown.out, /Success! Stepped down/);
  // migrate is an offline tool on stores (test/src/cli/operator-migrate.test.ts); without both ends it is a usage error.
  const migrate = await cli(['operator', 'migrate']);
  assert.equal(migrate.code, 2);
  assert.match(migrate.err, /operator migrate needs --from and --to/);

  const noToken = await cli(['operator', 'seal']);
  assert.equal(noToken.code, 2);
  assert.match(noToken.err, /permission denied/);
  assert.equal((await cli(['operator', 'seal'], { env: root })).out, 'Success! dbroker is sealed.\n');
  assert.equal((await cli(['status'])).code, 2);
  const whileSealed = await cli(['read', 'sys/mounts'], { env: root });
  assert.equal(whileSealed.code, 2);
  assert.match(whileSealed.err, /Code: 503/);
});

test('TLS: VAULT_CACERT or -ca-cert verify the server, VAULT_SKIP_VERIFY skips the check, neither fails', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-cli-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  // A TLS broker of our own (the test helper polls over plain HTTP).
  const port = await freePort();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ listen: `127.0.0.1:${port}`, storage: { path: join(dir, 'db.sqlite') }, tls: { cert_file: cert, key_file: key } }));
  const child = spawn(process.execPath, [BIN, 'server', '--config', join(dir, 'config.json')], { stdio: 'ignore' });
  try {
    const address = `https://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    while ((await runCli(['status', '-tls-skip-verify', '-format=json'], home, { env: { VAULT_ADDR: address } })).out === '') {
      assert.ok(Date.now() < deadline && child.exitCode === null, 'the TLS broker did not start');
      await new Promise((r) => setTimeout(r, 200));
    }
    const untrusted = await runCli(['status'], home, { env: { VAULT_ADDR: address } });
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.err, /self-signed certificate/);
    const withCa = await runCli(['status', '-format=json'], home, { env: { VAULT_ADDR: address, VAULT_CACERT: cert } });
    assert.equal(withCa.code, 2, withCa.err); // verified; exit 2 because the new broker is sealed
    assert.equal(JSON.parse(withCa.out).initialized, false);
    const withFlag = await runCli(['status', `-ca-cert=${cert}`, '-format=json'], home, { env: { VAULT_ADDR: address } });
    assert.equal(JSON.parse(withFlag.out).initialized, false);
    const skip = await runCli(['status', '-format=json'], home, { env: { VAULT_ADDR: address, VAULT_SKIP_VERIFY: 'true' } });
    assert.equal(JSON.parse(skip.out).initialized, false);
    const skipFlag = await runCli(['status', '-tls-skip-verify', '-format=json'], home, { env: { VAULT_ADDR: address } });
    assert.equal(JSON.parse(skipFlag.out).initialized, false);
    const noCaFile = await runCli(['status'], home, { env: { VAULT_ADDR: address, VAULT_CACERT: join(dir, 'missing.pem') } });
    assert.equal(noCaFile.code, 2);
    assert.match(noCaFile.err, /cannot read the CA certificate/);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});
