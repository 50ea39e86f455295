// policy, secrets, audit and database commands (Vault docs, "vault policy",
// "vault secrets", "vault audit"; `database rotate-root` is dbroker's
// shorthand for `write -f <mount>/rotate-root/NAME`).

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { act, boolOption, clientCommand } from './context.ts';
import { parseData, UsageError } from './kv.ts';
import { table } from './output.ts';

const trimSlashes = (p: string): string => p.replace(/^\/+|\/+$/g, '');

// any: sys/mounts and sys/audit answers (mounts at the top level and under data).
function entries(body: any): Array<[string, any]> {
  const data = body?.data && typeof body.data === 'object' ? body.data : {};
  return Object.entries<any>(data).sort(([a], [b]) => a.localeCompare(b));
}

/** `policy`, `secrets`, `audit` and `database` commands → sys/policies/acl, sys/mounts, sys/audit, <mount>/rotate-root. */
export function registerAdmin(program: Command): void {
  const policy = program.command('policy').description('List, read, write and delete ACL policies');
  clientCommand(policy, 'list', 'List policy names', { field: false }).action(
    act('listing policies', async (ctx) => {
      const { body } = await ctx.client().call('LIST', 'sys/policies/acl');
      return ctx.print(body, (b) => ((b.data?.keys ?? []) as string[]).join('\n'));
    }),
  );
  clientCommand(policy, 'read <name>', 'Print a policy', { field: false }).action(
    act(
      (a) => `reading policy ${a[0]}`,
      async (ctx, [name]) => {
        const { body } = await ctx.client().call('GET', `sys/policies/acl/${name}`);
        return ctx.print(body, (b) => String(b.data?.policy ?? ''));
      },
    ),
  );
  clientCommand(policy, 'write <name> <file>', 'Upload a policy from a file, or - for standard input', { output: false }).action(
    act(
      (a) => `uploading policy ${a[0]}`,
      async (ctx, [name, file]) => {
        let text: string;
        if (file === '-') text = ctx.stdin.take('the policy');
        else {
          try {
            text = readFileSync(file!, 'utf8');
          } catch (err) {
            throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
          }
        }
        await ctx.client().call('PUT', `sys/policies/acl/${name}`, { policy: text });
        ctx.io.out(`Success! Uploaded policy: ${name}`);
      },
    ),
  );
  clientCommand(policy, 'delete <name>', 'Delete a policy', { output: false }).action(
    act(
      (a) => `deleting policy ${a[0]}`,
      async (ctx, [name]) => {
        await ctx.client().call('DELETE', `sys/policies/acl/${name}`);
        ctx.io.out(`Success! Deleted policy: ${name}`);
      },
    ),
  );

  const secrets = program.command('secrets').description('Enable, disable and list secrets engines (mounts)');
  clientCommand(secrets, 'enable <type>', 'Mount a secrets engine (type: database) at -path (default: the type)', { field: false })
    .option('--path <path>', 'where to mount it')
    .option('--description <text>', 'a description')
    .action(
      act(
        (a) => `enabling ${a[0]}`,
        async (ctx, [type]) => {
          const path = trimSlashes(String(ctx.opts.path ?? type));
          await ctx.client().call('PUT', `sys/mounts/${path}`, { type, ...(ctx.opts.description ? { description: ctx.opts.description } : {}) });
          ctx.io.out(`Success! Enabled the ${type} secrets engine at: ${path}/`);
        },
      ),
    );
  clientCommand(secrets, 'disable <path>', 'Unmount a secrets engine (its leases are revoked first)', { output: false }).action(
    act(
      (a) => `disabling ${a[0]}`,
      async (ctx, [path]) => {
        await ctx.client().call('DELETE', `sys/mounts/${trimSlashes(path!)}`);
        ctx.io.out(`Success! Disabled the secrets engine (if it existed) at: ${trimSlashes(path!)}/`);
      },
    ),
  );
  boolOption(clientCommand(secrets, 'list', 'List mounted secrets engines', { field: false }), 'detailed', 'show more columns').action(
    act('listing secrets engines', async (ctx) => {
      const { body } = await ctx.client().call('GET', 'sys/mounts');
      return ctx.print(body, (b) =>
        ctx.opts.detailed
          ? table(['Path', 'Type', 'Accessor', 'UUID', 'Description'], entries(b).map(([p, m]) => [p, m.type, m.accessor, m.uuid, m.description || 'n/a']))
          : table(['Path', 'Type', 'Accessor', 'Description'], entries(b).map(([p, m]) => [p, m.type, m.accessor, m.description || 'n/a'])),
      );
    }),
  );

  const audit = program.command('audit').description('Enable, disable and list audit devices');
  clientCommand(audit, 'enable <type> [options...]', 'Enable an audit device (type: file) with key=value options, e.g. file_path=/var/log/dbroker/audit.log', { field: false })
    .option('--path <path>', 'where to enable it (default: the type)')
    .option('--description <text>', 'a description')
    .action(
      act(
        (a) => `enabling audit device ${a[0]}`,
        async (ctx, [type, ...options]) => {
          const path = trimSlashes(String(ctx.opts.path ?? type));
          await ctx.client().call('PUT', `sys/audit/${path}`, { type, options: parseData(options, ctx.stdin), ...(ctx.opts.description ? { description: ctx.opts.description } : {}) });
          ctx.io.out(`Success! Enabled the ${type} audit device at: ${path}/`);
        },
      ),
    );
  clientCommand(audit, 'disable <path>', 'Disable an audit device', { output: false }).action(
    act(
      (a) => `disabling audit device ${a[0]}`,
      async (ctx, [path]) => {
        await ctx.client().call('DELETE', `sys/audit/${trimSlashes(path!)}`);
        ctx.io.out(`Success! Disabled audit device (if it was enabled) at: ${trimSlashes(path!)}/`);
      },
    ),
  );
  boolOption(clientCommand(audit, 'list', 'List audit devices', { field: false }), 'detailed', 'show the options too').action(
    act('listing audit devices', async (ctx) => {
      const { body } = await ctx.client().call('GET', 'sys/audit');
      if (ctx.format === 'table' && entries(body).length === 0) {
        ctx.io.out('No audit devices are enabled.');
        return;
      }
      return ctx.print(body, (b) =>
        ctx.opts.detailed
          ? table(['Path', 'Type', 'Description', 'Options'], entries(b).map(([p, d]) => [p, d.type, d.description || 'n/a', JSON.stringify(d.options ?? {})]))
          : table(['Path', 'Type', 'Description'], entries(b).map(([p, d]) => [p, d.type, d.description || 'n/a'])),
      );
    }),
  );

  const database = program.command('database').description('Database secrets engine shortcuts');
  clientCommand(database, 'rotate-root <connection>', 'Rotate the root credential of a connection now', { output: false })
    .option('--mount <path>', 'the database mount', 'database')
    .action(
      act(
        (a) => `rotating the root credential of ${a[0]}`,
        async (ctx, [name]) => {
          const mount = trimSlashes(String(ctx.opts.mount));
          await ctx.client().call('PUT', `${mount}/rotate-root/${name}`);
          ctx.io.out(`Success! Rotated the root credential of connection "${name}" (${mount}/)`);
        },
      ),
    );
}
