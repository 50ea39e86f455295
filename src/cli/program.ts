// The client side of the dbroker command line: Vault's command names and flag
// style on commander. `dbroker server` and `dbroker version` stay in
// src/cli.ts; everything else is built here.

import { Command, CommanderError } from 'commander';
import { normalizeArgs } from './argv.ts';
import { registerAdmin } from './commands-admin.ts';
import { registerLease } from './commands-lease.ts';
import { registerOperator } from './commands-operator.ts';
import { registerPaths } from './commands-paths.ts';
import { registerLogin, registerToken } from './commands-token.ts';
import { bashCompletion } from './completion.ts';
import { BOOLEAN_FLAGS, EXIT_USAGE } from './context.ts';

export const SERVER_USAGE = `Usage: dbroker server --config <file.json>
       dbroker server --dev [--listen ADDR] [--dev-root-token T] [--dev-pg-url URL] [--log-level L]

Run the broker. --config reads a JSON config file (every field can also be
set with its DBROKER_* environment variable); --dev starts an in-memory,
unsealed broker with a root token for trying things out.`;

/** Build the command tree (also used to write the README's CLI reference). */
export function buildProgram(version: string): Command {
  const program = new Command('dbroker');
  program
    .description('dbroker: dynamic database credentials with a Vault-compatible API.')
    .addHelpText(
      'after',
      '\nFlags take one dash or two (-format=json, --format json); booleans take =false (-sync=false).\nAddress: -address, $DBROKER_ADDR or $VAULT_ADDR (default http://127.0.0.1:8200).\nToken: $DBROKER_TOKEN, $VAULT_TOKEN or ~/.vault-token (written by "dbroker login").\nTLS: -ca-cert or $VAULT_CACERT; -tls-skip-verify or $VAULT_SKIP_VERIFY.\nExit codes: 0 success, 1 usage error, 2 error from the API (and "status" while sealed).',
    )
    .version(version, '-v, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .showHelpAfterError('(run with -h for help)')
    .exitOverride()
    .configureHelp({ sortSubcommands: false, helpWidth: 110 });
  program.addHelpCommand(true);

  program
    .command('server')
    .description('Run the broker (see "dbroker server -h")')
    .allowUnknownOption()
    .helpOption(false)
    .action(() => {
      // Reached only for "dbroker help server": src/cli.ts runs the server itself.
      process.stdout.write(SERVER_USAGE + '\n');
    });
  registerOperator(program);
  registerPaths(program);
  registerLease(program);
  registerToken(program);
  registerLogin(program);
  registerAdmin(program);
  program
    .command('completion')
    .description('Print a shell completion script (bash; zsh through bashcompinit)')
    .argument('[shell]', 'bash', 'bash')
    .action((shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') {
        process.stderr.write(`Error: no completion for "${shell}" (bash, or zsh with bashcompinit)\n`);
        process.exitCode = EXIT_USAGE;
        return;
      }
      process.stdout.write((shell === 'zsh' ? 'autoload -U +X bashcompinit && bashcompinit\n' : '') + bashCompletion(program));
    });
  return program;
}

/** Run a client command; sets process.exitCode (0, 1 usage, 2 API). */
export async function runClient(argv: string[], version: string): Promise<void> {
  const program = buildProgram(version);
  try {
    await program.parseAsync(normalizeArgs(argv, BOOLEAN_FLAGS), { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; anything commander refused is a usage error.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    throw err;
  }
}
