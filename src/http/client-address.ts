// The client address a request is judged by (token_bound_cidrs, CIDR-bound
// roles and secret IDs, the audit log's remote_address): the socket's peer,
// unless that peer is a configured trusted proxy (config `trusted_proxies`).
// Then X-Forwarded-For is read from the right, skipping trusted proxies, and
// the first address that is not one is the client (the left part of the header
// is whatever the client chose to send, so it is never believed).

import { isIP } from 'node:net';
import { addressAllowed } from '../auth/cidr.ts';

/**
 * `socket`: the peer address; `forwardedFor`: the X-Forwarded-For header(s);
 * `trusted`: normalized CIDR blocks (auth/cidr.ts parseCidrs). Returns an address.
 */
export function clientAddress(socket: string | undefined, forwardedFor: string | string[] | undefined, trusted: readonly string[]): string | undefined {
  if (!socket || trusted.length === 0 || forwardedFor === undefined || !addressAllowed(trusted, socket)) return socket;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map((h) => h.trim()).filter(Boolean);
  let client = socket;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) break; // a malformed hop: stop at the last address we could trust
    client = hop;
    if (!addressAllowed(trusted, hop)) break;
  }
  return client;
}
