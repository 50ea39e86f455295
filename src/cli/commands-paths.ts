// read, write, list, delete: any API path, with data as key=value pairs,
// @file and - for standard input (Vault docs, "vault read/write/list/delete").

import { Option, type Command } from 'commander';
import { ApiError } from './client.ts';
import { act, BOOLEAN_FLAGS, clientCommand, EXIT_API } from './context.ts';
import { parseData, UsageError } from './kv.ts';
import { secretTable, table } from './output.ts';

const clean = (path: string): string => path.replace(/^\/+/, '');

/** Query parameters for `read PATH k=v`: values must be plain strings. */
function queryOf(data: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return out;
}

/** `read|write|list|delete PATH`: GET, PUT, LIST (GET ?list=true) and DELETE on any API path. */
export function registerPaths(program: Command): void {
  clientCommand(program, 'read <path> [data...]', 'Read data at a path (key=value pairs are sent as query parameters)').action(
    act(
      (a) => `reading ${a[0]}`,
      async (ctx, [path, ...data]) => {
        try {
          const { body } = await ctx.client().call('GET', clean(path!), undefined, queryOf(parseData(data, ctx.stdin)));
          return ctx.print(body, secretTable);
        } catch (err) {
          if (err instanceof ApiError && err.status === 404 && ctx.format === 'table' && ctx.field === undefined) {
            ctx.io.err(`No value found at ${clean(path!)}`);
            return EXIT_API;
          }
          throw err;
        }
      },
    ),
  );

  const write = clientCommand(program, 'write <path> [data...]', 'Write data to a path: key=value pairs, key=@file, key=- (stdin), @file.json, or - (a JSON object on stdin)');
  BOOLEAN_FLAGS.add('force');
  write
    .addOption(new Option('-f, --force', 'allow writing with no data').default(false))
    .addOption(new Option('--no-force').hideHelp())
    .action(
      act(
        (a) => `writing data to ${a[0]}`,
        async (ctx, [path, ...data]) => {
          const body = parseData(data, ctx.stdin);
          if (Object.keys(body).length === 0 && !ctx.opts.force) throw new UsageError('must supply data or use -force');
          const res = await ctx.client().call('PUT', clean(path!), body);
          if (res.body === null && ctx.field === undefined) {
            if (ctx.format === 'json') return 0;
            ctx.io.out(`Success! Data written to: ${clean(path!)}`);
            return 0;
          }
          return ctx.print(res.body, secretTable);
        },
      ),
    );

  clientCommand(program, 'list <path>', 'List the keys under a path', { field: false }).action(
    act(
      (a) => `listing ${a[0]}`,
      async (ctx, [path]) => {
        try {
          const { body } = await ctx.client().call('LIST', clean(path!));
          return ctx.print(body, (b) => table(['Keys'], ((b.data?.keys ?? []) as string[]).map((k) => [k])));
        } catch (err) {
          if (err instanceof ApiError && err.status === 404 && ctx.format === 'table') {
            ctx.io.err(`No value found at ${clean(path!).replace(/\/?$/, '/')}`);
            return EXIT_API;
          }
          throw err;
        }
      },
    ),
  );

  clientCommand(program, 'delete <path>', 'Delete the data at a path', { output: false }).action(
    act(
      (a) => `deleting ${a[0]}`,
      async (ctx, [path]) => {
        await ctx.client().call('DELETE', clean(path!));
        ctx.io.out(`Success! Data deleted (if it existed) at: ${clean(path!)}`);
      },
    ),
  );
}
