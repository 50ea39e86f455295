// Run the dbroker CLI as a user would: a child process of bin/dbroker.mjs,
// with its own HOME (so ~/.vault-token is the test's), no VAULT_* or
// DBROKER_* variables inherited from the test's environment, and optional
// standard input.

import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const BIN = resolve(import.meta.dirname, '../../bin/dbroker.mjs');

export interface CliRun {
  code: number | null;
  out: string;
  err: string;
}

export interface CliOptions {
  /** Variables to set (on top of HOME); a variable set to undefined is left out. */
  env?: Record<string, string | undefined>;
  input?: string;
  /** Run under a pseudo-terminal (script(1)), for what a TTY shows; stdout then holds both streams. */
  tty?: boolean;
}

export function runCli(args: string[], home: string, opts: CliOptions = {}): Promise<CliRun> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(VAULT_|DBROKER_)/.test(k)) env[k] = v;
  env.HOME = home;
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;
  const quote = (s: string) => `'${s.split("'").join(`'\\''`)}'`;
  const [cmd, argv] = opts.tty
    ? ['script', ['-qec', [process.execPath, BIN, ...args].map(quote).join(' '), '/dev/null']]
    : [process.execPath, [BIN, ...args]];
  return new Promise((ok, fail) => {
    const child = spawn(cmd, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', fail);
    child.once('close', (code) => ok({ code, out, err }));
    child.stdin.end(opts.input ?? '');
  });
}
