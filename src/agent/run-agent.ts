// The `dbroker agent` command: parse flags, load the config, start, stop on
// SIGTERM/SIGINT (the child first), exit with the child's code when it exits.

import { parseArgs } from 'node:util';
import { ConfigError } from '../config.ts';
import { createLogger } from '../logger.ts';
import { closeOnce } from '../util/shutdown.ts';
import { loadAgentConfig } from './agent-config.ts';
import { startAgent } from './agent.ts';

/** Run the agent until a signal or the exec child's exit. Throws ConfigError for bad flags/config. */
export async function runAgent(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, 'log-level': { type: 'string' } }, strict: true });
  if (!values.config) throw new ConfigError('--config', 'give the agent config file: dbroker agent --config agent.json');
  const config = loadAgentConfig(values.config);
  const log = createLogger(values['log-level'] ?? 'info').child({ component: 'agent' });
  const agent = await startAgent(config, log);
  // The child first (agent.close), once, whatever triggers it (closeOnce).
  const stop = closeOnce(log, 'agent shutting down', () => agent.close());
  void agent.exited.then((code) => stop(code, { childExit: code }));
}
