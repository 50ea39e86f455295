// What a newcomer meets before any code runs: the install. Every package in
// package-lock.json must accept the Node versions package.json (and the
// README) promise, so `npm ci` prints no EBADENGINE warning (it once warned
// about cookie@2.0.2, which wants node >=22, pulled in by fastify's
// light-my-request; package.json overrides it to cookie 1.x).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import semver from 'semver';

const ROOT = resolve(import.meta.dirname, '..');

interface LockEntry {
  version?: string;
  engines?: Record<string, string> | string[];
  optional?: boolean;
  os?: string[];
  cpu?: string[];
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

test('every locked package accepts the oldest Node that package.json allows, and the README states that version', () => {
  const oldest = semver.minVersion(pkg.engines.node);
  assert.ok(oldest, `package.json engines.node "${pkg.engines.node}" is not a range`);
  assert.ok(semver.gte(oldest, '20.0.0'), 'the README promises Node 20');
  const refused: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || !entry.engines || Array.isArray(entry.engines) || !entry.engines.node) continue;
    if (!semver.satisfies(oldest, entry.engines.node, { includePrerelease: true })) refused.push(`${path}@${entry.version}: node ${entry.engines.node}`);
  }
  assert.deepEqual(refused, [], `packages that refuse Node ${oldest.version}`);
  const cookies = Object.entries(lock.packages).filter(([path]) => path.endsWith('node_modules/cookie'));
  assert.ok(cookies.length > 0, 'fastify still pulls in cookie');
  for (const [path, entry] of cookies) assert.equal(semver.major(entry.version ?? '0.0.0'), 1, `${path} stays on 1.x (2.x needs node >=22)`);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(`Node ${oldest.major}.${oldest.minor}`), `the README names the real minimum, Node ${oldest.major}.${oldest.minor}`);
});

test('npm ci on this Node prints no EBADENGINE warning', { timeout: 180_000 }, () => {
  const r = spawnSync('npm', ['ci', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: ROOT, encoding: 'utf8', timeout: 170_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.doesNotMatch(`${r.stdout}${r.stderr}`, /EBADENGINE/);
});
