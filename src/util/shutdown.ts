// Closing once on SIGTERM/SIGINT, for the server and the agent.

import type { Logger } from 'pino';

/** Why a shutdown started: a signal, or (the agent) its exec child's exit code. */
export type ShutdownCause = { signal: NodeJS.Signals } | { childExit: number };

/** A repeated signal this soon (ms) after the first is the same Ctrl-C delivered twice. */
const ECHO_MS = 1_000;

/**
 * Run `close` once, on SIGTERM/SIGINT or when the returned function is called,
 * then exit the process with the given code (signals: 0), or 1 when `close`
 * rejects. A repeated trigger while closing is ignored (a repeated signal is
 * logged, unless it is the same one within ECHO_MS): a terminal's Ctrl-C reaches every process of its group and
 * `npm start` forwards it as well, so the process gets two; with no listener
 * left, Node's default for the second would end the process at once, cutting
 * the shutdown short (in dev mode, the revocation of the users it issued).
 * SIGKILL still stops it at once. `message` is logged with the cause.
 */
export function closeOnce(logger: Logger, message: string, close: () => Promise<void>): (code: number, cause: ShutdownCause) => void {
  let closing = false;
  let first: { signal?: NodeJS.Signals; at: number } = { at: 0 };
  const stop = (code: number, cause: ShutdownCause): void => {
    if (closing) {
      // The same signal within ECHO_MS is the one Ctrl-C reaching us twice (the terminal and npm): not worth a line.
      const echo = 'signal' in cause && cause.signal === first.signal && Date.now() - first.at < ECHO_MS;
      if ('signal' in cause && !echo) logger.info(cause, 'another stop signal while shutting down: ignored, the shutdown goes on (SIGKILL would stop at once, skipping it)');
      return;
    }
    closing = true;
    first = { ...('signal' in cause ? { signal: cause.signal } : {}), at: Date.now() };
    logger.info(cause, message);
    close().then(
      () => process.exit(code),
      (err: unknown) => {
        logger.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop(0, { signal: 'SIGTERM' }));
  process.on('SIGINT', () => stop(0, { signal: 'SIGINT' }));
  return stop;
}
