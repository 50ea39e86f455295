// The web UI's static files (src/http/ui-static.ts) without a browser: the
// asset table, and an install without ui/ that keeps serving the API. The
// browser test (test/ui/ui.test.ts) covers the real pages, headers and CSP.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { contentSecurityPolicy, loadUiAssets, registerUi } from '../../../src/http/ui-static.ts';

test('the asset table holds ui/ and the three vendor modules, with their content types', () => {
  const assets = loadUiAssets();
  assert.equal(assets.get('index.html')?.type, 'text/html; charset=utf-8');
  assert.equal(assets.get('app.css')?.type, 'text/css; charset=utf-8');
  for (const name of ['js/main.js', 'js/api.js', 'js/pages/leases.js', 'vendor/preact.mjs', 'vendor/preact-hooks.mjs', 'vendor/htm.mjs']) {
    assert.equal(assets.get(name)?.type, 'text/javascript; charset=utf-8', name);
  }
  // The hooks module imports the bare specifier "preact", which the import map resolves.
  assert.match(assets.get('vendor/preact-hooks.mjs')!.body.toString(), /from"preact"|from "preact"/);
  assert.match(assets.get('index.html')!.body.toString(), /"preact":"\/ui\/vendor\/preact\.mjs"/);
});

test('the CSP allows only our scripts and the inline import map by its sha256', () => {
  const csp = contentSecurityPolicy('<script type="importmap">{"imports":{}}</script>');
  // sha256 of {"imports":{}}, base64 (CSP Level 3 hash-source).
  assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/]{43}='/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(contentSecurityPolicy('<p>no map</p>').includes('sha256'), false);
});

test('without ui/ files the table is empty and /ui/ answers 404 in the API envelope, not a crash', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-noui-'));
  try {
    const assets = loadUiAssets(dir);
    assert.equal(assets.size, 0);
    const app = Fastify();
    registerUi(app, assets);
    const r = await app.inject({ method: 'GET', url: '/ui/' });
    assert.equal(r.statusCode, 404);
    assert.deepEqual(Object.keys(r.json()), ['errors']);
    assert.equal((await app.inject({ method: 'DELETE', url: '/ui/app.css' })).statusCode, 405);
    await app.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
