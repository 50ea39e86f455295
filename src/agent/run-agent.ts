// The `dbroker agent` command: parse flags, load the config, start, stop on
// SIGTERM/SIGINT (the child first), exit with the child's code when it exits.

import { parseArgs } from 'node:util';
import { ConfigError } from '../config.ts';
import { createLogger } from '../logger.ts';
import { loadAgentConfig } from './agent-config.ts';
import { startAgent } from './agent.ts';

/** Run the agent until a signal or the exec child's exit. Throws ConfigError for bad flags/config. */
export async function runAgent(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, 'log-level': { type: 'string' } }, strict: true });
  if (!values.config) throw new ConfigError('--config', 'give the agent config file: dbroker agent --config agent.json');
  const config = loadAgentConfig(values.config);
  const log = createLogger(values['log-level'] ?? 'info').child({ component: 'agent' });
  const agent = await startAgent(config, log);
  // Once: a terminal's Ctrl-C reaches every process of its group (and npm
  // forwards it too), and the child may exit meanwhile; a repeated signal
  // must not end the process before the agent closed (Node's default for an
  // unhandled SIGINT). SIGKILL still stops it at once.
  let closing = false;
  const stop = (code: number, signal?: NodeJS.Signals) => {
    if (closing) {
      if (signal) log.warn({ signal }, 'shutdown already under way (SIGKILL stops at once, skipping it)');
      return;
    }
    closing = true;
    log.info({ ...(signal ? { signal } : { childExit: code }) }, 'agent shutting down');
    agent.close().then(
      () => process.exit(code),
      (err: unknown) => {
        log.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop(0, 'SIGTERM'));
  process.on('SIGINT', () => stop(0, 'SIGINT'));
  void agent.exited.then((code) => stop(code));
}
