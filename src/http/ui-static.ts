// The web UI at /ui/: the files of ui/ (repo root) and the three front-end
// modules it imports (preact, preact/hooks, htm) served straight from
// node_modules — no bundler, no CDN, nothing to build. The UI talks only to
// the public /v1/ API, like any other Vault client.
//
// Every file is read once at startup into a fixed table, so no request path
// ever reaches the file system (no traversal to guard against).

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../errors.ts';

/** The UI's source folder (ui/ at the repository root). */
export const UI_DIR = resolve(import.meta.dirname, '../../ui');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** URL path under /ui/vendor/ → the ES module entry node resolves for that package specifier. */
const VENDOR: Record<string, string> = {
  'preact.mjs': 'preact',
  'preact-hooks.mjs': 'preact/hooks',
  'htm.mjs': 'htm',
};

interface Asset {
  body: Buffer;
  type: string;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/**
 * The asset table: `"index.html"`, `"js/main.js"`, `"vendor/preact.mjs"`… → body and content type.
 * Files of ui/ with an extension not in CONTENT_TYPES are not served.
 */
export function loadUiAssets(dir = UI_DIR): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  // An install without the UI's files (a trimmed image) still runs the API.
  if (!existsSync(join(dir, 'index.html'))) return assets;
  for (const file of walk(dir)) {
    const type = CONTENT_TYPES[extname(file)];
    if (type) assets.set(relative(dir, file).split('\\').join('/'), { body: readFileSync(file), type });
  }
  for (const [name, specifier] of Object.entries(VENDOR)) {
    assets.set(`vendor/${name}`, { body: readFileSync(fileURLToPath(import.meta.resolve(specifier))), type: CONTENT_TYPES['.mjs']! });
  }
  return assets;
}

/**
 * Content-Security-Policy for the UI: only our own scripts, plus the inline
 * import map of index.html allowed by its hash (CSP Level 3, "hash-source").
 */
export function contentSecurityPolicy(indexHtml: string): string {
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(indexHtml)?.[1];
  const hash = importMap === undefined ? '' : ` 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`;
  return [
    "default-src 'self'",
    `script-src 'self'${hash}`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Register GET/HEAD /ui and /ui/* on `app`; other methods there are a 405. */
export function registerUi(app: FastifyInstance, assets: Map<string, Asset> = loadUiAssets()): void {
  if (!assets.has('index.html')) app.log.warn({ dir: UI_DIR }, 'web UI files not found: /ui/ answers 404');
  const csp = contentSecurityPolicy(assets.get('index.html')?.body.toString('utf8') ?? '');
  const serve = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const rest = (req.params as { '*'?: string })['*'] ?? '';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      void reply.code(405).header('allow', 'GET, HEAD').send({ errors: [errors.METHOD_NOT_ALLOWED(req.method, `ui/${rest}`).message] });
      return;
    }
    const asset = assets.get(rest === '' ? 'index.html' : rest);
    if (!asset) {
      void reply.code(404).send({ errors: [errors.NOT_FOUND(`/ui/${rest}`.slice(0, 200)).message] });
      return;
    }
    void reply
      .code(200)
      .header('content-type', asset.type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('content-security-policy', csp)
      .send(req.method === 'HEAD' ? undefined : asset.body);
  };
  const methods: Array<'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE' | 'PATCH' | 'OPTIONS'> = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'];
  app.route({ method: methods, url: '/ui', exposeHeadRoute: false, handler: async (req, reply) => (req.method === 'GET' || req.method === 'HEAD' ? void reply.redirect('/ui/', 301) : serve(req, reply)) });
  app.route({ method: methods, url: '/ui/*', exposeHeadRoute: false, handler: serve });
  // As Vault's server does (http/handler.go: "/" redirects to the UI when it is enabled).
  app.route({ method: ['GET', 'HEAD'], url: '/', exposeHeadRoute: false, handler: async (_req, reply) => void reply.redirect('/ui/', 307) });
}
