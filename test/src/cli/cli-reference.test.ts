// The README's CLI reference is the CLI's own help: regenerating it must not
// change README.md (run `npm run docs:cli` after changing a command). Also the
// Vault flag rewriting the CLI parses with.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { VERSION } from '../../../src/broker.ts';
import { normalizeArgs } from '../../../src/cli/argv.ts';
import { buildProgram } from '../../../src/cli/program.ts';
import { cliReference, withReference } from '../../../src/cli/reference.ts';

test('README.md holds the current CLI reference, with a block for every command', () => {
  const readme = readFileSync(resolve(import.meta.dirname, '../../../README.md'), 'utf8');
  const reference = cliReference(VERSION);
  assert.equal(withReference(readme, reference), readme, 'README.md is stale: run npm run docs:cli');
  const leaves: string[] = [];
  const walk = (cmd: ReturnType<typeof buildProgram>, path: string[]) => {
    for (const sub of cmd.commands) {
      if (sub.name() === 'help') continue;
      if (sub.commands.length > 0) walk(sub, [...path, sub.name()]);
      else leaves.push([...path, sub.name()].join(' '));
    }
  };
  walk(buildProgram(VERSION), ['dbroker']);
  assert.ok(leaves.length >= 30, `${leaves.length} commands`);
  for (const leaf of leaves) assert.ok(reference.includes(`#### \`${leaf}\``), `no reference block for ${leaf}`);
  for (const cmd of ['dbroker lease revoke', 'dbroker token capabilities', 'dbroker login', 'dbroker database rotate-root', 'dbroker operator step-down']) assert.ok(leaves.includes(cmd), cmd);
});

test('Vault-style flags are rewritten for commander; values, stdin and -- are left alone', () => {
  const booleans = new Set(['sync', 'prefix']);
  assert.deepEqual(normalizeArgs(['-format=json', '-field', 'x', '--address=http://a:1'], booleans), ['--format=json', '--field', 'x', '--address=http://a:1']);
  assert.deepEqual(normalizeArgs(['-sync=false', '-prefix=true', '-sync=FALSE', '-sync=0'], booleans), ['--no-sync', '--prefix', '--no-sync', '--no-sync']);
  assert.deepEqual(normalizeArgs(['-h', '-', 'a=-x', '-5', '--', '-format=json'], booleans), ['-h', '-', 'a=-x', '-5', '--', '-format=json']);
  // A bad boolean value is left for commander to refuse.
  assert.deepEqual(normalizeArgs(['-sync=maybe'], booleans), ['--sync=maybe']);
});
