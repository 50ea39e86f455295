// Ctrl-C: stop starting new work, let what is in flight finish, then clean up
// once (run.ts). Long waits poll this so they end promptly.

export const interrupt = new AbortController();

export function throwIfInterrupted(): void {
  if (interrupt.signal.aborted) throw new Error('interrupted');
}

/** Sleep that ends early (by throwing) on interrupt. */
export async function pause(ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    throwIfInterrupted();
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, end - Date.now()))));
  }
  throwIfInterrupted();
}
