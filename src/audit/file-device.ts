// The `file` audit device: one JSON object per line, appended synchronously
// to a descriptor kept open (O_APPEND). Synchronous on purpose: the entry is
// in the file (the OS page cache) before the request goes on, a failure is
// seen at once (so the request can fail closed), and lines from concurrent
// requests never interleave. Before each line, the path is checked to still
// name the file held open (one stat instead of an open and a close per
// line): a log rotated away by logrotate, or removed, is created again at
// once (no reopen signal needed), and a path that can no longer be written
// fails the write (fail closed) rather than feeding a deleted file. A write
// that fails drops the descriptor, so the next one opens the file again.

import { appendFileSync, chmodSync, closeSync, fstatSync, openSync, statSync, writeSync } from 'node:fs';
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
  private fd: number | undefined;
  private held: { dev: number; ino: number } | undefined;
  /** After close(): writes (of requests still in flight) open, append and close each time, as nothing would close a kept descriptor. */
  private closed = false;

  constructor(private readonly opts: FileDeviceOptions) {}

  private get createMode(): number {
    return this.opts.mode === 0 ? 0o600 : this.opts.mode;
  }

  /** Create the file if needed and set its mode; throws the fs error when it cannot be appended to. */
  open(): void {
    if (this.opts.filePath === 'stdout') return;
    this.reopen();
    if (this.opts.mode !== 0) chmodSync(this.opts.filePath, this.opts.mode);
  }

  private reopen(): void {
    const fd = openSync(this.opts.filePath, 'a', this.createMode);
    const st = fstatSync(fd);
    this.drop();
    this.fd = fd;
    this.held = { dev: st.dev, ino: st.ino };
  }

  private drop(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // Already unusable: nothing more to release.
    }
  }

  /** Append one line; throws when it could not be written. */
  write(line: string): void {
    if (this.opts.filePath === 'stdout') {
      writeAllSync(1, Buffer.from(line + '\n', 'utf8'));
      return;
    }
    if (this.closed) {
      appendFileSync(this.opts.filePath, line + '\n', { mode: this.createMode });
      return;
    }
    try {
      const st = this.fd === undefined ? undefined : statSync(this.opts.filePath, { throwIfNoEntry: false });
      if (!st || st.ino !== this.held?.ino || st.dev !== this.held?.dev) this.reopen();
      writeAllSync(this.fd!, Buffer.from(line + '\n', 'utf8'));
    } catch (err) {
      this.drop();
      throw err;
    }
  }

  /** Let the descriptor go (device disabled, broker sealed). */
  close(): void {
    this.closed = true;
    this.drop();
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
