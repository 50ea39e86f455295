// The bench's command line (bench/options.ts): the default is the full run,
// --quick shortens it, explicit options win, and bad input is refused with
// the option named. (The bench itself is a measurement, never a test.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOptions, PARTS } from '../../bench/options.ts';

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
