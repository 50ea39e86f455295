// Reading a secret the user types: not echoed on a terminal (Vault's "(will
// be hidden)" prompts), one line of standard input otherwise.

import type { Ctx } from './context.ts';
import { UsageError } from './kv.ts';

/** Read keystrokes in raw mode until Enter; Ctrl-C aborts, Backspace erases. */
function readHidden(label: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(`${label} (will be hidden): `);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  let value = '';
  return new Promise((resolve, reject) => {
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          finish();
          resolve(value.trim());
          return;
        }
        if (ch === '\u0003' || ch === '\u0004') {
          finish();
          reject(new UsageError(`no ${label} given`));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** A secret typed at a hidden prompt on a TTY, or the first line of standard input. */
export async function promptSecret(ctx: Ctx, label: string): Promise<string> {
  const value = process.stdin.isTTY ? await readHidden(label) : (ctx.stdin.take(label).split(/\r?\n/)[0] ?? '').trim();
  if (!value) throw new UsageError(`no ${label} given`);
  return value;
}
