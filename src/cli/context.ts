// What every client command shares: the HTTP and output flags, the client
// built from them, and one error path with Vault's exit codes (Vault docs,
// "Vault CLI": 0 success, 1 local or usage error, 2 an error from the API
// or reaching it).

import { Command, Option } from 'commander';
import { ApiError, Client, TransportError } from './client.ts';
import { Stdin, UsageError } from './kv.ts';
import { fieldOf, formatOf, processIo, raw, type Format, type Io } from './output.ts';

export const EXIT_USAGE = 1;
export const EXIT_API = 2;

/** Boolean flags (any command): `-name=false` is rewritten to `--no-name` for commander. */
export const BOOLEAN_FLAGS = new Set<string>();

/** Add a boolean flag `--name` with its `--no-name` twin, so `-name=false` works as in Vault. */
export function boolOption(cmd: Command, name: string, description: string, fallback = false): Command {
  BOOLEAN_FLAGS.add(name);
  const option = new Option(`--${name}`, description);
  cmd.addOption(fallback ? option.default(true) : option);
  cmd.addOption(new Option(`--no-${name}`).hideHelp());
  return cmd;
}

/** -address, -ca-cert, -tls-skip-verify (Vault's "HTTP Options"). */
export function httpOptions(cmd: Command): Command {
  cmd.option('--address <url>', 'dbroker address (default: $DBROKER_ADDR, $VAULT_ADDR, http://127.0.0.1:8200)');
  cmd.option('--ca-cert <file>', 'PEM CA certificate to verify the server with (default: $VAULT_CACERT)');
  return boolOption(cmd, 'tls-skip-verify', 'do not verify the server certificate (also $VAULT_SKIP_VERIFY)');
}

/** -format and, where a command prints a secret, -field (Vault's "Output Options"). */
export function outputOptions(cmd: Command, withField = true): Command {
  cmd.option('--format <format>', 'output format: table or json (default: $VAULT_FORMAT or table)');
  if (withField) cmd.option('--field <name>', 'print only this field, raw (for scripts)');
  return cmd;
}

export interface Ctx {
  io: Io;
  stdin: Stdin;
  format: Format;
  field: string | undefined;
  opts: Record<string, unknown>;
  /** The API client (built on first use, so usage errors come first). */
  client(token?: string): Client;
  /**
   * Print an API answer: raw JSON for -format=json, one value for -field,
   * else `table(body)`. Returns the exit code (1 when -field names nothing).
   */
  // any: each command's table reads the API body's fields by name.
  print(body: unknown, table: (body: any) => string): number;
}

/** The context of one command run, from its parsed options. @throws UsageError for a bad -format. */
export function makeCtx(opts: Record<string, unknown>, io: Io = processIo, stdin = new Stdin()): Ctx {
  const format = formatOf(opts as { format?: string });
  const field = opts.field as string | undefined;
  return {
    io,
    stdin,
    format,
    field,
    opts,
    client: (token) =>
      new Client({
        ...(opts.address ? { address: opts.address as string } : {}),
        ...(opts.caCert ? { caCert: opts.caCert as string } : {}),
        tlsSkipVerify: opts.tlsSkipVerify === true,
        ...(token !== undefined ? { token } : {}),
      }),
    print(body, tableOf) {
      if (field !== undefined) {
        const hit = fieldOf(body, field);
        if (!hit.found) {
          io.err(`Field "${field}" not present in the response`);
          return EXIT_USAGE;
        }
        io.out(raw(hit.value));
        return 0;
      }
      if (format === 'json') io.out(JSON.stringify(body ?? null, null, 2));
      else io.out(tableOf(body));
      return 0;
    },
  };
}

/**
 * Wrap a command's work: positional arguments and options in, the exit code
 * out; API errors print Vault's "Error making API request" text and exit 2,
 * usage errors exit 1.
 */
export function act(doing: string | ((args: string[]) => string), work: (ctx: Ctx, args: string[], cmd: Command) => Promise<number | void>) {
  return async (...params: unknown[]): Promise<void> => {
    const cmd = params[params.length - 1] as Command;
    const args = (params.slice(0, -2) as Array<string | string[] | undefined>).flatMap((a) => (a === undefined ? [] : Array.isArray(a) ? a : [a]));
    const what = typeof doing === 'string' ? doing : doing(args);
    let ctx: Ctx;
    try {
      ctx = makeCtx(cmd.opts());
    } catch (err) {
      processIo.err(`Error: ${(err as Error).message}`);
      process.exitCode = EXIT_USAGE;
      return;
    }
    try {
      const code = await work(ctx, args, cmd);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      if (err instanceof ApiError) {
        ctx.io.err(`Error ${what}: ${err.describe()}`);
        process.exitCode = EXIT_API;
      } else if (err instanceof TransportError) {
        ctx.io.err(`Error ${what}: ${err.message}`);
        process.exitCode = EXIT_API;
      } else if (err instanceof UsageError) {
        ctx.io.err(`Error ${what}: ${err.message}`);
        process.exitCode = EXIT_USAGE;
      } else throw err;
    }
  };
}

/** A client command: HTTP options, output options, then the work. */
export function clientCommand(parent: Command, spec: string, description: string, opts: { field?: boolean; output?: boolean } = {}): Command {
  const cmd = parent.command(spec).description(description);
  if (opts.output !== false) outputOptions(cmd, opts.field !== false);
  httpOptions(cmd);
  return cmd;
}
