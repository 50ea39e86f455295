// How commands print: Vault's human tables by default, `-format=json` for the
// API's JSON unchanged, `-field=NAME` for one value printed raw (scripts).

import { UsageError } from './kv.ts';

export type Format = 'table' | 'json';

export interface OutputOptions {
  format?: string;
  field?: string;
}

/** The -format flag (or VAULT_FORMAT); only table and json are supported. */
export function formatOf(opts: OutputOptions, env: NodeJS.ProcessEnv = process.env): Format {
  const f = (opts.format ?? env.VAULT_FORMAT ?? 'table').toLowerCase();
  if (f !== 'table' && f !== 'json') throw new UsageError(`invalid output format "${f}": use table or json`);
  return f;
}

/** Seconds as Vault prints them: 768h, 1h30m, 45s, 0s. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) return '0s';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s || (!h && !m) ? `${s}s` : ''}`;
}

/** A value in a table cell, in the Vault CLI's Go-like style. */
export function cell(value: unknown): string {
  if (value === null || value === undefined) return 'n/a';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))).join(' ')}]`;
  if (typeof value === 'object') {
    return `map[${Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${k}:${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
      .join(' ')}]`;
  }
  return String(value);
}

/** Columns separated by four spaces, a dashed rule under the header (Vault's tables). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('    ')
      .trimEnd();
  return [line(header), line(header.map((h) => '-'.repeat(h.length))), ...rows.map(line)].join('\n');
}

/** Key/Value rows of an object, keys sorted. */
export function keyValueRows(data: Record<string, unknown>): string[][] {
  return Object.keys(data)
    .sort()
    .map((k) => [k, cell(data[k])]);
}

/** Where commands write; swapped in tests of the output helpers. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
};

/** A value printed raw for -field: strings as they are, anything else as JSON. */
export function raw(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// any: the API envelope; fields are read by name.
type Envelope = any;

/**
 * Vault's rules for -field on a secret: a field of `data`, else of `auth`
 * (with the CLI's names token, token_accessor, ...), else of the envelope
 * (lease_id, lease_duration, ...).
 */
export function fieldOf(body: Envelope, field: string): { found: boolean; value?: unknown } {
  const data = body?.data;
  if (data && typeof data === 'object' && Object.hasOwn(data, field)) return { found: true, value: data[field] };
  const auth = body?.auth;
  if (auth && typeof auth === 'object') {
    const view = authRows(auth);
    if (Object.hasOwn(view, field)) return { found: true, value: view[field] };
  }
  if (body && typeof body === 'object' && !Array.isArray(body) && Object.hasOwn(body, field) && field !== 'data' && field !== 'auth') return { found: true, value: body[field] };
  return { found: false };
}

/** The auth block as the Vault CLI names its rows. */
export function authRows(auth: Envelope): Record<string, unknown> {
  return {
    token: auth.client_token,
    token_accessor: auth.accessor,
    token_duration: auth.lease_duration === 0 ? '∞' : duration(auth.lease_duration),
    token_renewable: auth.renewable,
    token_policies: auth.token_policies ?? auth.policies,
    identity_policies: auth.identity_policies ?? [],
    policies: auth.policies,
    ...(auth.metadata && typeof auth.metadata === 'object' ? Object.fromEntries(Object.entries(auth.metadata).map(([k, v]) => [`token_meta_${k}`, v])) : {}),
  };
}

/** A secret (the API envelope) as Vault's `read` prints it: lease rows, then auth, then data. */
export function secretTable(body: Envelope): string {
  const rows: string[][] = [];
  if (body?.lease_id) {
    rows.push(['lease_id', body.lease_id], ['lease_duration', duration(body.lease_duration)], ['lease_renewable', String(body.renewable)]);
  } else if (body?.lease_duration > 0) rows.push(['refresh_interval', duration(body.lease_duration)]);
  if (body?.auth) for (const [k, v] of Object.entries(authRows(body.auth))) rows.push([k, cell(v)]);
  const data = body?.data;
  if (data && typeof data === 'object' && !Array.isArray(data)) rows.push(...keyValueRows(data));
  const warnings = Array.isArray(body?.warnings) && body.warnings.length > 0 ? `WARNING! The following warnings were returned from the server:\n${body.warnings.map((w: string) => `  * ${w}`).join('\n')}\n\n` : '';
  return warnings + table(['Key', 'Value'], rows);
}
