// CIDR lists (token_bound_cidrs, secret_id_bound_cidrs, cidr_list): parsed
// once at write time (a bad block is a 400 naming the field) and checked with
// node:net's BlockList, which also matches IPv4-mapped IPv6 addresses
// ("::ffff:127.0.0.1", what a dual-stack socket reports).

import { BlockList, isIP } from 'node:net';
import { errors } from '../errors.ts';

/**
 * Validate a list of CIDR blocks or bare addresses (a bare address is a /32
 * or /128, as Vault's parseutil takes it). Returns them normalized
 * ("10.0.0.1" → "10.0.0.1/32"). Throws BAD_FIELD naming `field`.
 */
export function parseCidrs(field: string, items: string[]): string[] {
  return items.map((item) => {
    const [addr, bits, extra] = item.split('/');
    const family = isIP(addr ?? '');
    const max = family === 4 ? 32 : 128;
    const prefix = bits === undefined ? max : Number(bits);
    if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(String(prefix)) || prefix > max) {
      throw errors.BAD_FIELD(field, `"${item.slice(0, 64)}" is not a CIDR block or IP address`);
    }
    return `${addr}/${prefix}`;
  });
}

/** Is `address` inside one of `cidrs` (normalized by parseCidrs)? An empty list allows any address. */
export function addressAllowed(cidrs: readonly string[] | undefined, address: string | undefined): boolean {
  if (!cidrs || cidrs.length === 0) return true;
  if (!address) return false;
  const family = isIP(address);
  if (family === 0) return false;
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    list.addSubnet(addr!, Number(bits), isIP(addr!) === 4 ? 'ipv4' : 'ipv6');
  }
  return list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}
