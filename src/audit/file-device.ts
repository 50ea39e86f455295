// The `file` audit device: one JSON object per line, appended synchronously
// with appendFileSync (open, write, close per entry). Synchronous on purpose:
// the entry is in the file (the OS page cache) before the request goes on, a
// failure is seen at once (so the request can fail closed), lines from
// concurrent requests never interleave, and a log rotated away by logrotate is
// simply created again on the next write (no reopen signal needed).

import { appendFileSync, chmodSync, writeSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { errors } from '../errors.ts';

export interface FileDeviceOptions {
  /** An absolute path, or `stdout`. */
  filePath: string;
  /** File mode for a created file, octal; 0 = leave the mode alone. */
  mode: number;
}

const KNOWN_OPTIONS = new Set(['file_path', 'mode', 'log_raw', 'hmac_accessor', 'format']);

function asText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  return undefined;
}

/** Check the `options` of a file device; throws a 400 naming the field. */
export function parseFileOptions(options: Record<string, unknown>): FileDeviceOptions {
  for (const [name, value] of Object.entries(options)) {
    if (!KNOWN_OPTIONS.has(name)) throw errors.BAD_FIELD(`options.${name}`, `unknown option for a file audit device (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    if (asText(value) === undefined) throw errors.BAD_FIELD(`options.${name}`, 'must be a string');
  }
  if (['true', '1', 't'].includes(asText(options.log_raw)?.toLowerCase() ?? '')) {
    throw errors.BAD_FIELD('options.log_raw', 'is refused: the audit log never holds plaintext secrets');
  }
  if (['false', '0', 'f'].includes(asText(options.hmac_accessor)?.toLowerCase() ?? '')) {
    throw errors.BAD_FIELD('options.hmac_accessor', 'is refused: token accessors are always hashed');
  }
  if (options.format !== undefined && asText(options.format) !== 'json') throw errors.BAD_FIELD('options.format', 'only "json" is supported');
  const filePath = asText(options.file_path);
  if (filePath === undefined || filePath === '') throw errors.BAD_FIELD('options.file_path', 'is required (an absolute path, or "stdout")');
  if (filePath !== 'stdout' && !isAbsolute(filePath)) throw errors.BAD_FIELD('options.file_path', 'must be an absolute path (or "stdout")');
  const modeText = asText(options.mode) ?? '0600';
  if (!/^0?[0-7]{3}$/.test(modeText)) throw errors.BAD_FIELD('options.mode', 'must be an octal file mode such as "0600"');
  return { filePath, mode: parseInt(modeText, 8) };
}

export class FileDevice {
  constructor(private readonly opts: FileDeviceOptions) {}

  /** Create the file if needed and set its mode; throws the fs error when it cannot be appended to. */
  open(): void {
    if (this.opts.filePath === 'stdout') return;
    appendFileSync(this.opts.filePath, '', { mode: this.opts.mode === 0 ? 0o600 : this.opts.mode });
    if (this.opts.mode !== 0) chmodSync(this.opts.filePath, this.opts.mode);
  }

  /** Append one line; throws when it could not be written. */
  write(line: string): void {
    if (this.opts.filePath === 'stdout') {
      writeAllSync(1, Buffer.from(line + '\n', 'utf8'));
      return;
    }
    appendFileSync(this.opts.filePath, line + '\n', { mode: this.opts.mode === 0 ? 0o600 : this.opts.mode });
  }
}

/** writeSync until every byte is out; a non-blocking pipe that is full (EAGAIN) is retried a bounded number of times. */
function writeAllSync(fd: number, buf: Buffer): void {
  let offset = 0;
  let retries = 0;
  while (offset < buf.length) {
    try {
      offset += writeSync(fd, buf, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++retries > 1000) throw err;
    }
  }
}
