// status and operator: init, unseal, seal, rotate, key-status, step-down,
// migrate (Vault docs, "vault status", "vault operator").

import type { Command } from 'commander';
import { ApiError } from './client.ts';
import { act, boolOption, clientCommand, EXIT_API, type Ctx } from './context.ts';
import { UsageError } from './kv.ts';
import { table } from './output.ts';
import { promptSecret } from './prompt.ts';

// any: sys/seal-status as the API returns it.
function sealTable(s: any): string {
  const rows: string[][] = [
    ['Seal Type', s.type ?? 'shamir'],
    ['Initialized', String(s.initialized)],
    ['Sealed', String(s.sealed)],
    ['Total Shares', String(s.n)],
    ['Threshold', String(s.t)],
  ];
  if (s.sealed) rows.push(['Unseal Progress', `${s.progress}/${s.t}`], ['Unseal Nonce', s.nonce || 'n/a']);
  rows.push(['Version', s.version ?? 'n/a'], ['Storage Type', s.storage_type ?? 'sqlite'], ['HA Enabled', 'false']);
  return table(['Key', 'Value'], rows);
}

/** `status` and `operator *` → sys/seal-status, sys/init, sys/unseal, sys/seal, sys/rotate, sys/key-status, sys/step-down. */
export function registerOperator(program: Command): void {
  clientCommand(program, 'status', 'Print the seal status (exit code 2 while sealed, as Vault)', { field: false }).action(
    act('checking seal status', async (ctx) => {
      const { body } = await ctx.client().call('GET', 'sys/seal-status');
      ctx.print(body, sealTable);
      return body.sealed ? EXIT_API : 0;
    }),
  );

  const operator = program.command('operator').description('Operator tasks: init, unseal, seal, rotate, key-status, step-down, migrate');

  clientCommand(operator, 'init', 'Initialize a new dbroker: key shares and the initial root token', { field: false })
    .option('--key-shares <n>', 'number of key shares to split the root key into', '5')
    .option('--key-threshold <n>', 'number of key shares needed to unseal', '3')
    .action(
      act('initializing', async (ctx) => {
        const shares = Number(ctx.opts.keyShares);
        const threshold = Number(ctx.opts.keyThreshold);
        if (!Number.isInteger(shares) || !Number.isInteger(threshold)) throw new UsageError('-key-shares and -key-threshold must be integers');
        const { body } = await ctx.client().call('PUT', 'sys/init', { secret_shares: shares, secret_threshold: threshold });
        return ctx.print(body, (b) =>
          [
            ...b.keys.map((k: string, i: number) => `Unseal Key ${i + 1}: ${b.keys_base64?.[i] ?? k}`),
            '',
            `Initial Root Token: ${b.root_token}`,
            '',
            `dbroker initialized with ${shares} key shares and a key threshold of ${threshold}. Please securely`,
            'distribute the key shares printed above. When dbroker is re-sealed or',
            `restarted, at least ${threshold} of these keys are needed to unseal it.`,
          ].join('\n'),
        );
      }),
    );

  boolOption(clientCommand(operator, 'unseal [key]', 'Give one unseal key share (prompted for when not given)', { field: false }), 'reset', 'discard the key shares given so far').action(
    act('unsealing', async (ctx, [key]) => {
      const body = ctx.opts.reset ? { reset: true } : { key: key ?? (await promptSecret(ctx, 'Unseal Key')) };
      const res = await ctx.client().call('PUT', 'sys/unseal', body);
      return ctx.print(res.body, sealTable);
    }),
  );

  clientCommand(operator, 'seal', 'Seal dbroker (needs a root token)', { output: false }).action(
    act('sealing', async (ctx) => {
      await ctx.client().call('PUT', 'sys/seal');
      ctx.io.out('Success! dbroker is sealed.');
    }),
  );

  clientCommand(operator, 'rotate', 'Rotate the encryption key of the barrier', { field: false }).action(
    act('rotating key', async (ctx) => {
      const client = ctx.client();
      await client.call('PUT', 'sys/rotate');
      const { body } = await client.call('GET', 'sys/key-status');
      if (ctx.format === 'json') return ctx.print(body, () => '');
      ctx.io.out(`Success! Rotated key\n\n${table(['Key', 'Value'], [['Key Term', String(body.data.term)], ['Install Time', String(body.data.install_time)]])}`);
    }),
  );

  clientCommand(operator, 'key-status', 'Print the current encryption key term and install time').action(
    act('reading key status', async (ctx) => {
      const { body } = await ctx.client().call('GET', 'sys/key-status');
      return ctx.print(body, (b) => table(['Key', 'Value'], [['Key Term', String(b.data.term)], ['Install Time', String(b.data.install_time)]]));
    }),
  );

  clientCommand(operator, 'step-down', 'Make the active node step down (HA storage only)', { output: false }).action(
    act('stepping down', async (ctx) => {
      try {
        await ctx.client().call('PUT', 'sys/step-down');
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          ctx.io.err('Error stepping down: operator step-down is not available in this build (the server has no sys/step-down; it comes with HA storage)');
          return EXIT_API;
        }
        throw err;
      }
      ctx.io.out('Success! Stepped down: sys/step-down');
    }),
  );

  // Listed for help only: src/cli.ts runs `operator migrate` itself (src/cli/operator-migrate.ts), before this program.
  operator
    .command('migrate')
    .description('Copy a store to another backend, still encrypted (offline: stop the brokers first)')
    .requiredOption('--from <store>', 'source: a SQLite file or a postgres:// URL')
    .requiredOption('--to <store>', 'target (must be empty): a SQLite file or a postgres:// URL')
    .option('--from-table-prefix <prefix>', 'table prefix of a PostgreSQL source')
    .option('--to-table-prefix <prefix>', 'table prefix of a PostgreSQL target');
}
