// The README as a newcomer runs it, checked statically: every shell variable
// an example uses is set by an earlier example (it once used $ADDR and
// $TOKEN, never defined), npm is handed dbroker's options after `--` (`npm
// start --listen …` fails with "Unexpected argument"), every dev-mode option
// shown exists, and the way to stop what `npm test` leaves running exists.
// (`npm start -- --listen …` itself runs in test/src/server.test.ts.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
/** The shell examples, in order. */
const shellBlocks = [...readme.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)].map((m) => m[1]!);
const shellLines = shellBlocks.flatMap((b) => b.split('\n')).filter((l) => !/^\s*#/.test(l));

test('every shell variable a README example uses is set by an earlier example', () => {
  assert.ok(shellBlocks.length > 5, 'the README has shell examples');
  const defined = new Set<string>();
  const undefinedUses: string[] = [];
  for (const line of shellLines) {
    const code = line.replace(/\s#.*$/, '');
    // Uses first: `export X=$X:more` needs X before.
    for (const m of code.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (!defined.has(m[1]!)) undefinedUses.push(`$${m[1]} in: ${line.trim()}`);
    }
    for (const m of code.matchAll(/(?:^|\s|export\s+)([A-Za-z_][A-Za-z0-9_]*)=/g)) defined.add(m[1]!);
  }
  assert.deepEqual(undefinedUses, []);
  assert.ok(defined.has('VAULT_ADDR') && defined.has('VAULT_TOKEN'), 'the examples use the Vault CLI variables');
});

test('npm gets dbroker options after "--", and every dev-mode option shown exists', () => {
  // An option between the script and "--" (or with no "--" at all) is npm's, not dbroker's.
  const npmWithBareOption = shellLines.filter((l) => {
    const m = /\bnpm (?:start|run [\w:-]+)(.*)$/.exec(l.replace(/\s#.*$/, ''));
    if (!m) return false;
    const args = m[1]!.split(/\s+/).filter(Boolean);
    const separator = args.indexOf('--');
    return args.slice(0, separator === -1 ? args.length : separator).some((a) => a.startsWith('-') && !['&&', '||'].includes(a));
  });
  assert.deepEqual(npmWithBareOption, [], 'npm would take these options for itself');
  const devOptions = new Set(shellLines.filter((l) => /\bnpm start -- /.test(l)).flatMap((l) => [...l.matchAll(/\s--([a-z][a-z-]*)/g)].map((m) => m[1]!)));
  assert.ok(devOptions.has('listen'), 'the README shows how to pass --listen');
  // Each option is one dbroker's dev mode accepts. Running it would start a server, so an unknown option
  // after it makes the parser stop there: the error must name that one, not the option under test.
  for (const option of devOptions) {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/dbroker.mjs'), 'server', '--dev', `--${option}`, 'x', '--no-such-option'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.match(r.stderr, /Unknown option '--no-such-option'/, `--${option}: ${r.stderr}`);
  }
  const bare = spawnSync('npm', ['start', '--silent', '--listen', '127.0.0.1:1'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(bare.status, 0, 'npm start --listen without "--" does fail, as the README says');
  assert.match(bare.stderr, /Unexpected argument/);
});

test('the README says npm test leaves FerretDB running, and the stop command it shows works', () => {
  assert.match(readme, /`npm test` leaves FerretDB running/);
  assert.ok(shellLines.some((l) => l.trim() === 'bash scripts/ferretdb.sh stop'));
  const usage = spawnSync('bash', [join(ROOT, 'scripts/ferretdb.sh'), 'no-such-command'], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /\|stop\|/, 'ferretdb.sh has a stop subcommand');
});
