// A broker in this process for the perf scripts: a fresh SQLite store in a
// temporary directory, initialised (one key share) and unsealed, answering
// through fastify's inject() (no sockets). The production logger, silenced
// (its redaction paths still run).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RunningServer } from '../src/server.ts';

export interface Inject {
  method: 'GET' | 'PUT' | 'POST';
  url: string;
  headers?: Record<string, string>;
  payload?: string;
}

export interface InProcessBroker {
  server: RunningServer;
  /** The store's directory (removed by close). */
  dir: string;
  /** The root token's header. */
  root: Record<string, string>;
  /** inject() a request; resolves with the JSON body, throws on a status ≥ 300. */
  call(req: Inject): Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- answers of many shapes
  close(): Promise<void>;
}

/**
 * Start, initialise and unseal a broker in this process: this checkout's, or
 * the one at `checkout` (another worktree, for A/B comparisons; it needs its
 * own src/ and node_modules/).
 */
export async function startInProcessBroker(checkout = join(import.meta.dirname, '..')): Promise<InProcessBroker> {
  const from = (file: string) => pathToFileURL(join(checkout, 'src', file)).href;
  const { loadConfig } = (await import(from('config.ts'))) as typeof import('../src/config.ts');
  const { createLogger } = (await import(from('logger.ts'))) as typeof import('../src/logger.ts');
  const { startServer } = (await import(from('server.ts'))) as typeof import('../src/server.ts');
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-perf-'));
  const config = loadConfig(undefined, { DBROKER_STORAGE_PATH: join(dir, 'store.db'), DBROKER_LISTEN: '127.0.0.1:0' });
  const server = await startServer(config, { logger: createLogger('silent') });
  const call = async (req: Inject) => {
    const r = await server.app.inject(req);
    if (r.statusCode >= 300) throw new Error(`${req.method} ${req.url}: ${r.statusCode} ${r.body}`);
    return r.body ? r.json() : undefined;
  };
  const init = await call({ method: 'PUT', url: '/v1/sys/init', payload: JSON.stringify({ secret_shares: 1, secret_threshold: 1 }) });
  await call({ method: 'PUT', url: '/v1/sys/unseal', payload: JSON.stringify({ key: init.keys[0] }) });
  return {
    server,
    dir,
    root: { 'x-vault-token': init.root_token as string },
    call,
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
