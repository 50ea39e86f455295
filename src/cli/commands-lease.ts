// lease lookup, renew, revoke (-prefix, -force, -sync=false) (Vault docs,
// "vault lease"). A synchronous revoke-prefix on a terminal shows progress:
// the leases still under the prefix, counted while the request runs.

import type { Command } from 'commander';
import type { Client } from './client.ts';
import { act, boolOption, clientCommand, type Ctx } from './context.ts';
import { UsageError } from './kv.ts';
import { duration, keyValueRows, table } from './output.ts';

const POLL_MS = 500;

async function countUnder(client: Client, prefix: string): Promise<number | undefined> {
  try {
    return (await client.call('GET', 'sys/leases/count', undefined, { type: 'all', prefix })).body.data.lease_count as number;
  } catch {
    return undefined;
  }
}

/** Run `work` while showing "revoked N of TOTAL" on stderr (a TTY only). */
async function withProgress<T>(ctx: Ctx, client: Client, prefix: string, work: Promise<T>): Promise<T> {
  if (!process.stderr.isTTY) return work;
  const total = await countUnder(client, prefix);
  if (!total) return work;
  let done = false;
  const draw = (left: number) => {
    const revoked = Math.max(0, total - left);
    const width = 30;
    const filled = Math.round((revoked / total) * width);
    process.stderr.write(`\rRevoking ${prefix}: [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${revoked}/${total}`);
  };
  draw(total);
  const poller = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (done) break;
      const left = await countUnder(client, prefix);
      if (left !== undefined && !done) draw(left);
    }
  })();
  try {
    return await work;
  } finally {
    done = true;
    await poller;
    const left = await countUnder(client, prefix);
    if (left !== undefined) draw(left);
    process.stderr.write('\n');
  }
}

/** `lease lookup|renew|revoke` → sys/leases/lookup, renew, revoke, revoke-prefix, revoke-force. */
export function registerLease(program: Command): void {
  const lease = program.command('lease').description('Look up, renew and revoke leases');

  clientCommand(lease, 'lookup <lease_id>', 'Show a lease: issue and expire time, TTL, revocation attempts').action(
    act('looking up lease', async (ctx, [id]) => {
      const { body } = await ctx.client().call('PUT', 'sys/leases/lookup', { lease_id: id });
      return ctx.print(body, (b) => table(['Key', 'Value'], keyValueRows(b.data)));
    }),
  );

  clientCommand(lease, 'renew <lease_id>', 'Renew a lease')
    .option('--increment <duration>', 'new TTL from now (e.g. 1h); default: the role TTL')
    .action(
      act('renewing lease', async (ctx, [id]) => {
        const { body } = await ctx.client().call('PUT', 'sys/leases/renew', { lease_id: id, ...(ctx.opts.increment ? { increment: ctx.opts.increment } : {}) });
        return ctx.print(body, (b) =>
          table(['Key', 'Value'], [
            ['lease_id', b.lease_id],
            ['lease_duration', duration(b.lease_duration)],
            ['lease_renewable', String(b.renewable)],
          ]),
        );
      }),
    );

  const revoke = clientCommand(lease, 'revoke <lease_id_or_prefix>', 'Revoke a lease, or every lease under a prefix (-prefix)', { field: false });
  boolOption(revoke, 'prefix', 'revoke every lease whose id starts with the argument (needs sudo)');
  boolOption(revoke, 'force', 'with -prefix: forget the leases WITHOUT dropping their database users (revoke-force)');
  boolOption(revoke, 'sync', 'wait for the revocation; -sync=false queues it and returns', true);
  revoke.action(
    act('revoking', async (ctx, [id]) => {
      const client = ctx.client();
      const { prefix, force, sync } = ctx.opts as { prefix: boolean; force: boolean; sync: boolean };
      if (force && !prefix) throw new UsageError('-force requires -prefix');
      if (force) {
        await client.call('PUT', `sys/leases/revoke-force/${id}`);
        ctx.io.out(`Success! Force revoked any leases with prefix: ${id}\nWARNING: their database users were NOT dropped.`);
        return;
      }
      if (prefix) {
        const work = client.call('PUT', `sys/leases/revoke-prefix/${id}`, { sync });
        await (sync ? withProgress(ctx, client, id!, work) : work);
        ctx.io.out(sync ? `Success! Revoked any leases with prefix: ${id}` : 'All revocation operations queued successfully!');
        return;
      }
      await client.call('PUT', 'sys/leases/revoke', { lease_id: id, sync });
      ctx.io.out(sync ? `Success! Revoked lease: ${id}` : 'All revocation operations queued successfully!');
    }),
  );
}
