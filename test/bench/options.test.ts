// The bench's command line (bench/options.ts): the default is the full run,
// --quick shortens it, explicit options win, and bad input is refused with
// the option named, and --help/-h prints the usage and exits 0 (it was an
// "unknown option" error with exit 2, found by a new-user trial). (The bench
// itself is a measurement, never a test.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { HELP, parseOptions, PARTS, USAGE, wantsHelp } from '../../bench/options.ts';

const ROOT = resolve(import.meta.dirname, '../..');

test('no option: every engine, every part, the full figures', () => {
  const o = parseOptions([]);
  assert.deepEqual(o.targets.map((t) => t.engine), ['postgres', 'mysql', 'mongodb']);
  assert.deepEqual([...o.parts], [...PARTS]);
  assert.deepEqual({ rounds: o.rounds, seconds: o.seconds, clients: o.clients, leases: o.leases, live: o.live }, { rounds: 3, seconds: 3, clients: 8, leases: 5000, live: 10_000 });
});

test('--quick shortens the run; explicit options override it', () => {
  const quick = parseOptions(['--quick']);
  assert.ok(quick.leases < 5000 && quick.live < 10_000 && quick.rounds >= 2, 'quick is shorter but still interleaves rounds');
  const o = parseOptions(['--quick', '--leases', '1234', '--rounds', '5']);
  assert.equal(o.leases, 1234);
  assert.equal(o.rounds, 5);
  assert.equal(o.live, quick.live);
});

test('engines by name, alias or --engines, without duplicates; --only picks parts', () => {
  const o = parseOptions(['pg', '--engines', 'mariadb,postgresql', '--only', 'drain,issue']);
  assert.deepEqual(o.targets.map((t) => t.engine), ['postgres', 'mysql']);
  assert.deepEqual([...o.parts].sort(), ['drain', 'issue']);
  assert.deepEqual(parseOptions(['ferretdb']).targets.map((t) => t.engine), ['mongodb']);
});

test('bad input names the option or the value', () => {
  assert.throws(() => parseOptions(['oracle']), /unknown engine "oracle"/);
  assert.throws(() => parseOptions(['--only', 'issue,nap']), /--only: unknown part "nap"/);
  assert.throws(() => parseOptions(['--leases', '0']), /--leases must be a positive integer, got "0"/);
  assert.throws(() => parseOptions(['--rounds', '2.5']), /--rounds must be a positive integer/);
  assert.throws(() => parseOptions(['--no-such-option']), /no-such-option/);
});

test('--help and -h are asked for anywhere before "--", next to other options too', () => {
  assert.equal(wantsHelp(['--help']), true);
  assert.equal(wantsHelp(['-h']), true);
  assert.equal(wantsHelp(['pg', '--quick', '-h']), true);
  assert.equal(wantsHelp(['--leases', '0', '--help']), true, 'help wins over a bad value');
  assert.equal(wantsHelp([]), false);
  assert.equal(wantsHelp(['pg', '--', '--help']), false, 'after "--" it is a positional');
  assert.doesNotThrow(() => parseOptions(['--help']), 'never an "unknown option"');
  assert.ok(HELP.startsWith(USAGE));
  for (const option of ['--engines', '--only', '--quick', '--rounds', '--seconds', '--clients', '--leases', '--live', '-h, --help']) {
    assert.ok(HELP.includes(`  ${option}`), `${option} is described`);
  }
});

test('npm run bench -- --help and bench/run.ts -h print the usage on stdout and exit 0; a bad option exits 2', () => {
  const npm = spawnSync('npm', ['run', '--silent', 'bench', '--', '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(npm.status, 0, npm.stderr);
  assert.equal(npm.stdout.trim(), HELP);
  assert.doesNotMatch(npm.stderr, /unknown option/i);
  const short = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '-h'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(short.status, 0, short.stderr);
  assert.equal(short.stdout.trim(), HELP);
  assert.equal(short.stderr, '');
  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--no-such-option'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no-such-option/);
  assert.ok(bad.stderr.includes(USAGE), bad.stderr);
  assert.equal(bad.stdout, '');
});
