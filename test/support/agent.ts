// A real `dbroker agent` process for tests (spawned from bin/dbroker.mjs with
// a JSON config), and a TCP forwarder whose target can change, so the agent
// keeps one broker address while the broker is stopped and started again
// (BrokerProcess picks a new port at each start).

import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';

const BIN = join(resolve(import.meta.dirname, '../..'), 'bin/dbroker.mjs');

export class AgentProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  output = '';

  constructor(
    readonly configPath: string,
    /** http://127.0.0.1:<port> of its listener. */
    readonly url: string,
    private readonly env: Record<string, string> = {},
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Start and wait until /agent/v1/status answers. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [BIN, 'agent', '--config', this.configPath], { env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode}:\n${this.output}`);
      try {
        const r = await fetch(`${this.url}/agent/v1/status`);
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`agent did not start:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  // any: the status document is JSON read field by field in the tests.
  async status(): Promise<any> {
    return (await fetch(`${this.url}/agent/v1/status`)).json();
  }

  /** A request through the agent's proxy. */
  async api(method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<{ status: number; body: any; cache: string | null; text: string }> {
    const headers: Record<string, string> = {};
    if (opts.token) headers['x-vault-token'] = opts.token;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(`${this.url}/v1/${path}`, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
    const text = await r.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { status: r.status, body, cache: r.headers.get('x-cache'), text };
  }

  /**
   * Send `signals` (default one SIGTERM), each after the agent logged that
   * it is shutting down (so a repeat reaches a shutdown under way, as a
   * second Ctrl-C does); resolves with the exit code (null: killed by a signal).
   */
  async stop(signals: NodeJS.Signals[] = ['SIGTERM']): Promise<number | null> {
    if (!this.child || this.child.exitCode !== null) return this.child?.exitCode ?? null;
    for (const [i, signal] of signals.entries()) {
      if (i > 0) {
        for (let t = 0; t < 500 && this.child.exitCode === null && !this.output.includes('agent shutting down'); t++) await new Promise((r) => setTimeout(r, 2));
      }
      if (this.child.exitCode === null) this.child.kill(signal);
    }
    return this.exited;
  }

  waitForExit(): Promise<number | null> {
    return this.exited;
  }
}

/** Write `config` to `path` as JSON. */
export function writeAgentConfig(path: string, config: Record<string, unknown>): void {
  writeFileSync(path, JSON.stringify(config, null, 2));
}

/** Forwards 127.0.0.1:<port> to a target that can be changed; down() refuses and cuts connections. */
export class Forwarder {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(public targetPort: number) {}

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(this.port, '127.0.0.1', () => ok());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((ok) => server.close(() => ok()));
  }
}
