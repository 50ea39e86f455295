// The token fields every auth method role shares (Vault's tokenutil:
// https://developer.hashicorp.com/vault/docs/auth/approle#token-fields and
// sdk/helper/tokenutil): token_policies, token_ttl, token_max_ttl,
// token_explicit_max_ttl, token_period, token_num_uses, token_bound_cidrs,
// token_no_default_policy, token_type. Durations are seconds.

import { errors } from '../errors.ts';
import { duration, durationField, listField, stringList } from '../http/schema.ts';
import { parseCidrs } from './cidr.ts';

export interface TokenParams {
  policies: string[];
  /** Seconds; 0 = the mount's default. */
  ttl: number;
  /** Seconds; 0 = the mount's max. */
  maxTtl: number;
  explicitMaxTtl: number;
  period: number;
  numUses: number;
  boundCidrs: string[];
  noDefaultPolicy: boolean;
}

export const EMPTY_TOKEN_PARAMS: TokenParams = { policies: [], ttl: 0, maxTtl: 0, explicitMaxTtl: 0, period: 0, numUses: 0, boundCidrs: [], noDefaultPolicy: false };

/** Schema properties for the token fields (merge into a role's `object()` schema). */
export const tokenParamsSchema = {
  token_policies: stringList,
  policies: stringList,
  token_ttl: duration,
  token_max_ttl: duration,
  token_explicit_max_ttl: duration,
  token_period: duration,
  period: duration,
  token_num_uses: { type: 'integer', minimum: 0, maximum: 1000000 },
  token_bound_cidrs: stringList,
  token_no_default_policy: { type: 'boolean' },
  token_type: { type: 'string', maxLength: 32 },
} as const;

/**
 * Read the token fields from a role write; fields absent keep `base` (Vault
 * updates roles field by field). `policies` and `period` are Vault's
 * deprecated aliases. token_type: only service tokens exist here, so
 * "batch" is refused (400) rather than silently issuing service tokens.
 */
export function parseTokenParams(body: Record<string, unknown>, base: TokenParams = EMPTY_TOKEN_PARAMS): TokenParams {
  const out: TokenParams = { ...base };
  const policies = listField(body, 'token_policies') ?? listField(body, 'policies');
  if (policies !== undefined) out.policies = [...new Set(policies)].sort();
  if (out.policies.includes('root')) throw errors.BAD_FIELD('token_policies', 'the "root" policy cannot be granted through an auth method');
  const d = (field: string): number | undefined => durationField(body, field);
  out.ttl = d('token_ttl') ?? out.ttl;
  out.maxTtl = d('token_max_ttl') ?? out.maxTtl;
  out.explicitMaxTtl = d('token_explicit_max_ttl') ?? out.explicitMaxTtl;
  out.period = d('token_period') ?? d('period') ?? out.period;
  if (typeof body.token_num_uses === 'number') out.numUses = body.token_num_uses;
  const cidrs = listField(body, 'token_bound_cidrs');
  if (cidrs !== undefined) out.boundCidrs = parseCidrs('token_bound_cidrs', cidrs);
  if (typeof body.token_no_default_policy === 'boolean') out.noDefaultPolicy = body.token_no_default_policy;
  const type = body.token_type;
  if (type !== undefined && type !== '' && type !== 'service' && type !== 'default' && type !== 'default-service') {
    if (type === 'batch' || type === 'default-batch') throw errors.UNSUPPORTED_FIELD('token_type', `"${type}": only service tokens are issued`);
    throw errors.BAD_FIELD('token_type', 'must be "service", "default" or "default-service"');
  }
  if (out.maxTtl > 0 && out.ttl > out.maxTtl) throw errors.BAD_FIELD('token_ttl', '"token_ttl" should not be greater than "token_max_ttl"');
  return out;
}

/** The token fields as Vault reads them back. */
export function tokenParamsView(p: TokenParams): Record<string, unknown> {
  return {
    token_policies: p.policies,
    policies: p.policies,
    token_ttl: p.ttl,
    token_max_ttl: p.maxTtl,
    token_explicit_max_ttl: p.explicitMaxTtl,
    token_period: p.period,
    period: p.period,
    token_num_uses: p.numUses,
    token_bound_cidrs: p.boundCidrs,
    token_no_default_policy: p.noDefaultPolicy,
    token_type: 'default',
  };
}
