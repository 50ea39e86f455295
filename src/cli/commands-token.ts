// token create, lookup, renew, revoke, capabilities; login (Vault docs,
// "vault token", "vault login"). Login methods post to auth/<mount>/login as
// Vault's do; userpass (and ldap) put the username in the path.

import type { Command } from 'commander';
import { act, boolOption, clientCommand, type Ctx } from './context.ts';
import { parseData, UsageError } from './kv.ts';
import { authRows, cell, keyValueRows, table } from './output.ts';
import { promptSecret } from './prompt.ts';
import { storeToken } from './token-helper.ts';

// any: API envelopes.
const authTable = (b: any): string => table(['Key', 'Value'], Object.entries(authRows(b.auth)).map(([k, v]) => [k, cell(v)]));
const dataTable = (b: any): string => table(['Key', 'Value'], keyValueRows(b.data ?? {}));

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `token create|lookup|renew|revoke|capabilities` → auth/token/* and sys/capabilities*. */
export function registerToken(program: Command): void {
  const token = program.command('token').description('Create, look up, renew and revoke tokens; show capabilities');

  const create = clientCommand(token, 'create', 'Create a token (a child of the current token; -orphan for none)')
    .option('--policy <name>', 'a policy of the new token (repeatable)', collect)
    .option('--ttl <duration>', 'initial TTL (e.g. 1h)')
    .option('--explicit-max-ttl <duration>', 'hard limit the token can never be renewed past')
    .option('--period <duration>', 'a periodic token: each renewal gives this TTL')
    .option('--display-name <name>', 'display name')
    .option('--use-limit <n>', 'number of uses (0 = unlimited)')
    .option('--metadata <key=value>', 'metadata (repeatable)', collect);
  boolOption(create, 'orphan', 'create without a parent (needs sudo)');
  boolOption(create, 'renewable', 'allow renewing the token', true);
  create.option('--no-default-policy', 'do not attach the "default" policy');
  create.action(
    act('creating token', async (ctx) => {
      const o = ctx.opts;
      const meta = Object.fromEntries(((o.metadata as string[] | undefined) ?? []).map((kv) => {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new UsageError(`invalid -metadata "${kv}": expected key=value`);
        return [kv.slice(0, eq), kv.slice(eq + 1)];
      }));
      const body = {
        ...(o.policy ? { policies: o.policy } : {}),
        ...(o.ttl ? { ttl: o.ttl } : {}),
        ...(o.explicitMaxTtl ? { explicit_max_ttl: o.explicitMaxTtl } : {}),
        ...(o.period ? { period: o.period } : {}),
        ...(o.displayName ? { display_name: o.displayName } : {}),
        ...(o.useLimit !== undefined ? { num_uses: Number(o.useLimit) } : {}),
        ...(Object.keys(meta).length > 0 ? { meta } : {}),
        renewable: o.renewable !== false,
        ...(o.defaultPolicy === false ? { no_default_policy: true } : {}),
      };
      const { body: res } = await ctx.client().call('PUT', o.orphan ? 'auth/token/create-orphan' : 'auth/token/create', body);
      return ctx.print(res, authTable);
    }),
  );

  const lookup = clientCommand(token, 'lookup [token]', 'Show a token (the current one when none is given)');
  boolOption(lookup, 'accessor', 'the argument is an accessor');
  lookup.action(
    act('looking up token', async (ctx, [t]) => {
      const client = ctx.client();
      const res = ctx.opts.accessor
        ? await client.call('PUT', 'auth/token/lookup-accessor', { accessor: requireArg(t, 'an accessor') })
        : t
          ? await client.call('PUT', 'auth/token/lookup', { token: t })
          : await client.call('GET', 'auth/token/lookup-self');
      return ctx.print(res.body, dataTable);
    }),
  );

  const renew = clientCommand(token, 'renew [token]', 'Renew a token (the current one when none is given)').option('--increment <duration>', 'requested TTL from now');
  boolOption(renew, 'accessor', 'the argument is an accessor');
  renew.action(
    act('renewing token', async (ctx, [t]) => {
      const inc = ctx.opts.increment ? { increment: ctx.opts.increment } : {};
      const client = ctx.client();
      const res = ctx.opts.accessor
        ? await client.call('PUT', 'auth/token/renew-accessor', { accessor: requireArg(t, 'an accessor'), ...inc })
        : t
          ? await client.call('PUT', 'auth/token/renew', { token: t, ...inc })
          : await client.call('PUT', 'auth/token/renew-self', inc);
      return ctx.print(res.body, authTable);
    }),
  );

  const revoke = clientCommand(token, 'revoke [token]', 'Revoke a token and its children, with their leases', { output: false });
  boolOption(revoke, 'self', 'revoke the current token');
  boolOption(revoke, 'accessor', 'the argument is an accessor');
  revoke.action(
    act('revoking token', async (ctx, [t]) => {
      const client = ctx.client();
      if (ctx.opts.self) {
        if (t) throw new UsageError('-self takes no token argument');
        await client.call('PUT', 'auth/token/revoke-self');
      } else if (ctx.opts.accessor) await client.call('PUT', 'auth/token/revoke-accessor', { accessor: requireArg(t, 'an accessor') });
      else await client.call('PUT', 'auth/token/revoke', { token: requireArg(t, 'a token (or -self)') });
      ctx.io.out('Success! Revoked token (if it existed)');
    }),
  );

  clientCommand(token, 'capabilities <token_or_path> [path]', 'What a token (the current one when only a path is given) may do on a path', { field: false })
    .action(
      act('listing capabilities', async (ctx, args) => {
        const [first, second] = args;
        const client = ctx.client();
        const res = second === undefined
          ? await client.call('PUT', 'sys/capabilities-self', { paths: [first] })
          : await client.call('PUT', 'sys/capabilities', { token: first, paths: [second] });
        const path = second ?? first!;
        const caps = (res.body.data?.[path] ?? res.body.data?.capabilities ?? []) as string[];
        if (ctx.format === 'json') return ctx.print(res.body, () => '');
        ctx.io.out(caps.join(', '));
      }),
    );
}

function requireArg(value: string | undefined, what: string): string {
  if (!value) throw new UsageError(`give ${what}`);
  return value;
}

/** Methods whose login path ends with the username (Vault's userpass and ldap). */
const USERNAME_IN_PATH = new Set(['userpass', 'ldap']);

async function tokenLogin(ctx: Ctx, args: string[]): Promise<{ token: string; body: unknown }> {
  let token: string | undefined;
  const rest: string[] = [];
  for (const a of args) {
    if (a.startsWith('token=')) token = a.slice(6);
    else if (!a.includes('=') && token === undefined && a !== '-') token = a;
    else if (a === '-') token = ctx.stdin.take('a token').trim();
    else rest.push(a);
  }
  if (rest.length > 0) throw new UsageError(`unexpected arguments for -method=token: ${rest.join(' ')}`);
  if (!token) token = await promptSecret(ctx, 'Token');
  if (!token) throw new UsageError('give a token (argument, token=..., or on standard input)');
  // The token is checked before it is stored.
  const { body } = await ctx.client(token).call('GET', 'auth/token/lookup-self');
  const d = body.data;
  return {
    token,
    body: { ...body, auth: { client_token: token, accessor: d.accessor, policies: d.policies, token_policies: d.policies, metadata: d.meta, lease_duration: d.ttl, renewable: d.renewable } },
  };
}

/** `login`: checks or obtains a token, then stores it with the token helper unless -no-store. */
export function registerLogin(program: Command): void {
  const login = clientCommand(program, 'login [data...]', 'Authenticate and store the token in ~/.vault-token: a token, or -method=approle|jwt|kubernetes|userpass with key=value credentials')
    .option('--method <method>', 'auth method: token, approle, jwt, kubernetes, userpass', 'token')
    .option('--path <mount>', 'mount path of the auth method (default: the method name)');
  login.option('--no-store', 'do not store the token in ~/.vault-token');
  login.action(
    act(
      () => 'authenticating',
      async (ctx, args) => {
        const method = String(ctx.opts.method);
        let token: string;
        // any: the login answer (an API envelope), read by field name.
        let body: any;
        if (method === 'token') ({ token, body } = await tokenLogin(ctx, args));
        else {
          const data = parseData(args, ctx.stdin);
          const mount = String(ctx.opts.path ?? method).replace(/^\/+|\/+$/g, '');
          let path = `auth/${mount}/login`;
          if (USERNAME_IN_PATH.has(method)) {
            const username = data.username;
            if (typeof username !== 'string' || username === '') throw new UsageError(`-method=${method} needs username=...`);
            delete data.username;
            path += `/${encodeURIComponent(username)}`;
          }
          // Logging in needs no token; a stale one in the environment must not be sent.
          ({ body } = await ctx.client('').call('PUT', path, data));
          token = body?.auth?.client_token;
          if (!token) throw new UsageError(`the server answered ${path} without a token`);
        }
        if (ctx.opts.store !== false) storeToken(token);
        if (ctx.field !== undefined || ctx.format === 'json') return ctx.print(body, authTable);
        ctx.io.out(
          (ctx.opts.store === false ? 'Success! You are now authenticated. The token was not stored (-no-store).\n\n' : 'Success! You are now authenticated. The token information displayed below\nis already stored in the token helper (~/.vault-token). You do NOT need to run\n"dbroker login" again. Future requests will use this token automatically.\n\n') +
            authTable(body),
        );
      },
    ),
  );
}
