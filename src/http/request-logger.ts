// fastify's per-request logger (request.log, reply.log), made only when
// something is logged through it. fastify makes one for every request with
// pino's child(), which serialises the bindings ({reqId}) through the
// logger's redaction paths (logger.ts; its wildcard paths apply to every
// binding): a few microseconds per request for a logger that fastify uses
// only on rare failures (a reply sent twice, a stream error), and that the
// broker itself never uses (it logs through its own logger, with requestId).

import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, Logger } from 'pino';

type Log = (...args: unknown[]) => void;

/**
 * A FastifyBaseLogger that calls `parent.child(bindings, options)` at its
 * first use and forwards every call to that child, so what is logged (and
 * redacted) is exactly what the child would log.
 */
export class LazyRequestLogger implements FastifyBaseLogger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  private get log(): Logger {
    return (this.made ??= this.parent.child(this.bindings, this.options));
  }

  get level(): string {
    return this.log.level;
  }

  set level(level: string) {
    this.log.level = level;
  }

  fatal(...args: unknown[]): void {
    const log = this.log;
    (log.fatal as Log).apply(log, args);
  }

  error(...args: unknown[]): void {
    const log = this.log;
    (log.error as Log).apply(log, args);
  }

  warn(...args: unknown[]): void {
    const log = this.log;
    (log.warn as Log).apply(log, args);
  }

  info(...args: unknown[]): void {
    const log = this.log;
    (log.info as Log).apply(log, args);
  }

  debug(...args: unknown[]): void {
    const log = this.log;
    (log.debug as Log).apply(log, args);
  }

  trace(...args: unknown[]): void {
    const log = this.log;
    (log.trace as Log).apply(log, args);
  }

  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.log.child(bindings, options);
  }
}
