// Whether the broker answers: fed with the outcome of every request the agent
// makes (BrokerClient's `observe`). A network error, timeout, 5xx or 429
// (sealed, overloaded) counts as unreachable; any other answer as reachable.

import { isTransient } from '../client/errors.ts';

export class BrokerHealth {
  /** undefined until the first request. */
  reachable: boolean | undefined;
  lastError: string | undefined;
  lastErrorAt: number | undefined;
  lastSuccessAt: number | undefined;
  consecutiveFailures = 0;
  failuresTotal = 0;
  requestsTotal = 0;

  /** Record one request's outcome (undefined = success). */
  readonly observe = (err: Error | undefined): void => {
    this.requestsTotal++;
    if (err && isTransient(err)) {
      this.reachable = false;
      this.lastError = err.message;
      this.lastErrorAt = Date.now();
      this.consecutiveFailures++;
      this.failuresTotal++;
      return;
    }
    this.reachable = true;
    this.lastSuccessAt = Date.now();
    this.consecutiveFailures = 0;
  };
}
