// exec mode (Vault Agent's `exec` block): the agent starts the application
// with its credentials as environment variables, and when they change either
// restarts it (stop signal, wait, start with the new env) or sends it a
// signal (change_signal: the application re-reads its rendered files). When
// the child exits on its own, the agent exits with its code, as Vault Agent does.

import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { ExecConfig } from './agent-config.ts';

/** How long a child gets to stop before SIGKILL, ms. */
const STOP_TIMEOUT_MS = 10_000;

export class ExecSupervisor {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  restarts = 0;
  signalsSent = 0;

  constructor(
    private readonly cfg: ExecConfig,
    private readonly log: Logger,
    /** The child exited on its own with `code`. */
    private readonly onExit: (code: number) => void,
  ) {}

  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  /** Start the child with the agent's environment plus `env`. */
  start(env: Record<string, string>): void {
    const [file, ...args] = this.cfg.command;
    const child = spawn(file!, args, { env: { ...process.env, ...env }, stdio: 'inherit' });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        resolve();
        if (this.child !== child || this.stopping) return;
        this.log.info({ code, signal }, 'exec: child exited; the agent stops too');
        this.onExit(code ?? 1);
      });
      child.once('error', (err) => {
        this.log.error({ err: err.message }, 'exec: cannot start the child');
        resolve();
        if (this.child === child && !this.stopping) this.onExit(1);
      });
    });
    this.log.info({ pid: child.pid }, 'exec: child started');
  }

  /** Credentials changed: signal or restart the child as configured (no-op before start). */
  async secretsChanged(env: Record<string, string>): Promise<void> {
    if (!this.child || this.stopping) return;
    if (this.cfg.changeSignal) {
      if (this.child.exitCode === null) {
        this.child.kill(this.cfg.changeSignal);
        this.signalsSent++;
        this.log.info({ signal: this.cfg.changeSignal }, 'exec: child signalled');
      }
      return;
    }
    if (this.cfg.restartOnSecretChanges === 'never') return;
    this.stopping = true;
    await this.stopChild(this.cfg.restartStopSignal);
    this.stopping = false;
    this.restarts++;
    this.start(env);
  }

  private async stopChild(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stop the child (agent shutdown). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.stopChild(this.cfg.restartStopSignal);
  }
}
