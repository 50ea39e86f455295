// A real dbroker process for tests: spawned from bin/dbroker.mjs with a
// config file in a temp dir, talked to over HTTP, restartable and killable.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/dbroker.mjs');

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
  });
}

export interface ApiResponse {
  status: number;
  // any: response bodies are arbitrary JSON and each test reads the fields it asserts on.
  body: any;
  text: string;
}

export interface ApiOptions {
  body?: unknown;
  /** Sent as is (for malformed JSON tests). */
  rawBody?: string;
  token?: string;
  headers?: Record<string, string>;
}

export interface BrokerOptions {
  /** Extra config file fields. */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  /** Reuse a directory (and so its store) from an earlier broker. */
  dir?: string;
  /** Config fields that depend on the listening port (HA: api_addr); merged after `config`. */
  configFor?: (port: number) => Record<string, unknown>;
  /** Keep the same port across restarts (HA nodes keep their api_addr). */
  stickyPort?: boolean;
}

/** Config fields for the PostgreSQL store at `url` (a database per test, see pg-store.ts). */
export function pgStoreConfig(url: string, tablePrefix = 'dbroker_'): Record<string, unknown> {
  return { storage: { type: 'postgresql', connection_url: url, table_prefix: tablePrefix } };
}

export class BrokerProcess {
  private child: ChildProcess | undefined;
  private output = '';
  private exited: Promise<number | null> = Promise.resolve(null);
  readonly storagePath: string;
  readonly configPath: string;
  url = '';
  port = 0;

  constructor(
    readonly dir: string,
    private readonly opts: BrokerOptions,
  ) {
    this.storagePath = join(dir, 'dbroker.db');
    this.configPath = join(dir, 'config.json');
  }

  /** Everything the process wrote to stdout and stderr so far. */
  get logs(): string {
    return this.output;
  }

  /** The process id of the running broker (undefined before start). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Start the process on a free port. The port is picked before the process
   * binds it, so a broker of a test running alongside may take it first: the
   * health check would then reach that other broker (a CI run's seal test saw
   * another broker's `initialized: true`). So the process's own "dbroker
   * listening" line is awaited before the health check (where its log level
   * shows it), and a start that lost its port (EADDRINUSE) is retried on another.
   */
  async start(env: Record<string, string> = {}, attempt = 1): Promise<void> {
    const port = this.opts.stickyPort && this.port ? this.port : await freePort();
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    const config = { listen: `127.0.0.1:${port}`, storage: { path: this.storagePath }, log_level: 'info', revocation_interval: 1, ...this.opts.config, ...this.opts.configFor?.(port) };
    const announces = ['trace', 'debug', 'info'].includes(String(config.log_level));
    writeFileSync(this.configPath, JSON.stringify(config));
    const from = this.output.length;
    const child = spawn(process.execPath, [...(process.env.DBROKER_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.DBROKER_CPU_PROF}`] : []), BIN, 'server', '--config', this.configPath], {
      env: { ...process.env, ...this.opts.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) {
        if (attempt < 3 && !this.opts.stickyPort && this.output.slice(from).includes('EADDRINUSE')) return this.start(env, attempt + 1);
        throw new Error(`broker exited with ${child.exitCode}:\n${this.output}`);
      }
      if (!announces || this.output.slice(from).includes('"dbroker listening"')) {
        try {
          await fetch(`${this.url}/v1/sys/health`);
          return;
        } catch {
          // not answering yet
        }
      }
      if (Date.now() > deadline) throw new Error(`broker did not start:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async api(method: string, path: string, opts: ApiOptions = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers['x-vault-token'] = opts.token;
    let body: string | undefined = opts.rawBody;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.url}/v1/${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  }

  /** SIGTERM and wait for a clean exit. */
  async stop(): Promise<number | null> {
    if (!this.child || this.child.exitCode !== null) return this.child?.exitCode ?? null;
    this.child.kill('SIGTERM');
    return this.exited;
  }

  /** SIGKILL: a crash. */
  async kill(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Send a signal (SIGSTOP/SIGCONT: a paused process). */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  /** Wait for the process to exit on its own (e.g. a fault point). */
  waitForExit(): Promise<number | null> {
    return this.exited;
  }

  async restart(env: Record<string, string> = {}): Promise<void> {
    await this.stop();
    await this.start(env);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startBroker(opts: BrokerOptions = {}): Promise<BrokerProcess> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'dbroker-test-'));
  const broker = new BrokerProcess(dir, opts);
  await broker.start();
  return broker;
}

/** Init with `shares`/`threshold` and unseal; returns the root token and keys. */
export async function initAndUnseal(broker: BrokerProcess, shares = 1, threshold = 1): Promise<{ rootToken: string; keys: string[] }> {
  const init = await broker.api('PUT', 'sys/init', { body: { secret_shares: shares, secret_threshold: threshold } });
  if (init.status !== 200) throw new Error(`init failed: ${init.text}`);
  const keys = init.body.keys as string[];
  await unseal(broker, keys.slice(0, threshold));
  return { rootToken: init.body.root_token as string, keys };
}

export async function unseal(broker: BrokerProcess, keys: string[]): Promise<void> {
  for (const key of keys) {
    const r = await broker.api('PUT', 'sys/unseal', { body: { key } });
    if (r.status !== 200) throw new Error(`unseal failed: ${r.text}`);
  }
}

/** Poll `check` until it returns true or `ms` pass. */
export async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
