// The dbroker command line: `server` (and `version`) here; every client
// command (status, operator, read, write, lease, token, login, ...) in
// src/cli/program.ts.

import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.ts';
import { runDevServer } from './dev/dev-mode.ts';
import { closeOnSignals, startServer } from './server.ts';
import { VERSION } from './broker.ts';
import { runClient, SERVER_USAGE } from './cli/program.ts';


export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === 'version' || command === '--version') {
      console.log(`dbroker ${VERSION}`);
      return;
    }
    if (command !== 'server') {
      await runClient(argv, VERSION);
      return;
    }
    if (rest.some((a) => a === '-h' || a === '--help' || a === '-help')) {
      console.log(SERVER_USAGE);
      return;
    }
    const { values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string' },
        dev: { type: 'boolean' },
        listen: { type: 'string' },
        'dev-root-token': { type: 'string' },
        'dev-pg-url': { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
    });
    if (values.dev) {
      await runDevServer({
        ...(values.listen ? { listen: values.listen } : {}),
        rootToken: values['dev-root-token'] ?? 'root',
        ...(values['dev-pg-url'] ? { pgUrl: values['dev-pg-url'] } : {}),
        ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
      });
      return;
    }
    if (!values.config && !process.env.DBROKER_STORAGE_PATH) throw new ConfigError('--config', 'give a config file (or --dev)');
    const config = loadConfig(values.config, process.env, { listen: values.listen, log_level: values['log-level'] });
    // Key shares stay out of the environment that anything we start would inherit.
    delete process.env.DBROKER_UNSEAL_KEYS;
    const server = await startServer(config);
    closeOnSignals(server.close, server.logger);
  } catch (err) {
    if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`dbroker: ${(err as Error).message}`);
      process.exit(2);
    }
    console.error(`dbroker: ${(err as Error).message}`);
    process.exit(1);
  }
}
