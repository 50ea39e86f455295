// The dbroker command line: `server` (and `version`) here; every client
// command (status, operator, read, write, lease, token, login, ...) in
// src/cli/program.ts.

import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.ts';
import { runDevServer } from './dev/dev-mode.ts';
import { closeOnSignals, startServer } from './server.ts';
import { VERSION } from './broker.ts';
import { migrateStore, MigrateError } from './cli/operator-migrate.ts';

const USAGE = `usage:
  dbroker server --config <file.json>
  dbroker server --dev [--listen ADDR] [--dev-root-token T] [--dev-pg-url URL]
  dbroker agent --config <agent.json> [--log-level LEVEL]
  dbroker operator migrate --from <sqlite file | postgres:// URL> --to <sqlite file | postgres:// URL>
                           [--from-table-prefix P] [--to-table-prefix P]
  dbroker version`;
import { runClient, SERVER_USAGE } from './cli/program.ts';


export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === 'version' || command === '--version') {
      console.log(`dbroker ${VERSION}`);
      return;
    }
    if (command === 'agent') {
      await (await import('./agent/run-agent.ts')).runAgent(rest);
      return;
    }
    // operator migrate works on stores, not through the API; the other operator commands are client commands.
    if (command === 'operator' && rest[0] === 'migrate') {
      await operator(rest);
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
    if (!values.config && !process.env.DBROKER_STORAGE_PATH && !process.env.DBROKER_STORAGE_CONNECTION_URL) throw new ConfigError('--config', 'give a config file (or --dev)');
    const config = loadConfig(values.config, process.env, { listen: values.listen, log_level: values['log-level'] });
    // Key shares stay out of the environment that anything we start would inherit.
    delete process.env.DBROKER_UNSEAL_KEYS;
    const server = await startServer(config);
    closeOnSignals(server.close, server.logger);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`dbroker: ${(err as Error).message}`);
      process.exit(2);
    }
    console.error(`dbroker: ${(err as Error).message}`);
    process.exit(1);
  }
}

class UsageError extends Error {}

/** `dbroker operator migrate`: copy a store between backends (see src/cli/operator-migrate.ts). */
async function operator(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub !== 'migrate') throw new UsageError(`unknown operator command "${sub ?? ''}"\n${USAGE}`);
  const { values } = parseArgs({
    args: rest,
    options: { from: { type: 'string' }, to: { type: 'string' }, 'from-table-prefix': { type: 'string' }, 'to-table-prefix': { type: 'string' } },
    strict: true,
  });
  if (!values.from || !values.to) throw new UsageError(`operator migrate needs --from and --to\n${USAGE}`);
  try {
    const counts = await migrateStore(
      { location: values.from, ...(values['from-table-prefix'] ? { tablePrefix: values['from-table-prefix'] } : {}) },
      { location: values.to, ...(values['to-table-prefix'] ? { tablePrefix: values['to-table-prefix'] } : {}) },
      (line) => console.log(line),
    );
    console.log(`migrated: ${Object.entries(counts).map(([t, n]) => `${n} ${t}`).join(', ')}; the same unseal keys open the copy`);
  } catch (err) {
    // A connection URL may carry a password: report the problem, not the URL.
    console.error(`dbroker operator migrate: ${err instanceof MigrateError ? err.message : (err as Error).message}`);
    process.exit(1);
  }
}
