// Request data from the command line as the Vault CLI reads it (Vault docs,
// "vault write"): `key=value` pairs, where a value `@file` is the file's
// contents and `-` is standard input; a lone `-` argument is a JSON object
// on standard input, and `@file.json` a JSON object from a file.

import { readFileSync } from 'node:fs';

export class UsageError extends Error {}

/** Reads standard input once (a second `-` would get nothing). */
export class Stdin {
  private used = false;

  constructor(private readonly read: () => string = () => readFileSync(0, 'utf8')) {}

  take(what: string): string {
    if (this.used) throw new UsageError(`standard input is already used; it cannot also give ${what}`);
    this.used = true;
    return this.read();
  }
}

function jsonObject(text: string, source: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${source} must hold a JSON object`);
  return value as Record<string, unknown>;
}

function readFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Parse data arguments into a request body. Values stay strings (as the Vault
 * CLI sends them) unless they come from a JSON object (`-`, `@file.json`).
 * @throws UsageError for an argument without "=", an unreadable file or bad JSON.
 */
export function parseData(args: string[], stdin: Stdin): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const arg of args) {
    if (arg === '-') {
      Object.assign(out, jsonObject(stdin.take('a JSON object'), 'standard input'));
      continue;
    }
    if (arg.startsWith('@')) {
      Object.assign(out, jsonObject(readFile(arg.slice(1)), arg.slice(1)));
      continue;
    }
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid key/value pair "${arg}": expected key=value, @file.json or -`);
    const key = arg.slice(0, eq);
    const raw = arg.slice(eq + 1);
    let value: string;
    if (raw === '-') value = stdin.take(`the value of "${key}"`);
    else if (raw.startsWith('@')) value = readFile(raw.slice(1));
    else value = raw;
    // Text from a file or a pipe usually ends with a newline that is not part of the value.
    out[key] = raw === '-' || raw.startsWith('@') ? value.replace(/\r?\n$/, '') : value;
  }
  return out;
}
