// Capped exponential backoff with full jitter
// (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
// attempt n waits a random time in [min, min(max, min * 2^n)].

/** Backoff bounds in milliseconds. */
export interface BackoffOptions {
  /** First retry delay, ms (default 1000). */
  minMs?: number;
  /** Cap, ms (default 30000). */
  maxMs?: number;
}

export class Backoff {
  private attempt = 0;
  readonly minMs: number;
  readonly maxMs: number;

  constructor(opts: BackoffOptions = {}) {
    this.minMs = Math.max(1, opts.minMs ?? 1000);
    this.maxMs = Math.max(this.minMs, opts.maxMs ?? 30_000);
  }

  /** The delay before the next retry, in ms; each call doubles the ceiling up to maxMs. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return this.minMs + Math.random() * (ceiling - this.minMs);
  }

  /** Back to the first delay (after a success). */
  reset(): void {
    this.attempt = 0;
  }
}

/** Resolve after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
