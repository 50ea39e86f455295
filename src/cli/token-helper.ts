// Vault's default token helper: the token of the last `login` in
// ~/.vault-token (Vault docs, "Token helpers"), readable by its owner only.

import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The helper file: $HOME/.vault-token. */
export function tokenHelperPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.HOME || homedir(), '.vault-token');
}

/** The stored token, or undefined when there is none. */
export function readStoredToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  try {
    const token = readFileSync(tokenHelperPath(env), 'utf8').trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** Store a token (mode 0600, also when the file already existed with another mode). */
export function storeToken(token: string, env: NodeJS.ProcessEnv = process.env): string {
  const path = tokenHelperPath(env);
  writeFileSync(path, token, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

export function eraseStoredToken(env: NodeJS.ProcessEnv = process.env): void {
  rmSync(tokenHelperPath(env), { force: true });
}
