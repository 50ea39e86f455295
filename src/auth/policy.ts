// ACL policies, Vault style: a policy is a list of path rules with
// capabilities. Written as Vault HCL (`path "x/*" { capabilities = ["read"] }`)
// or as the equivalent JSON. `root` allows everything; `default` lets a token
// look after itself and its leases.

import { errors } from '../errors.ts';
import type { Method } from '../http/route.ts';

export type Capability = 'create' | 'read' | 'update' | 'delete' | 'list' | 'sudo' | 'deny' | 'patch';
const CAPABILITIES = new Set<Capability>(['create', 'read', 'update', 'delete', 'list', 'sudo', 'deny', 'patch']);

export interface PathRule {
  path: string;
  capabilities: Capability[];
}

export const DEFAULT_POLICY = `
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "sys/leases/lookup" { capabilities = ["update"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/renew" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`;

/** Parse HCL (the `path` blocks subset) or JSON policy text. Throws a 400 naming the problem. */
export function parsePolicy(text: string): PathRule[] {
  const trimmed = text.trim();
  const rules: PathRule[] = [];
  if (trimmed.startsWith('{')) {
    let doc: { path?: Record<string, { capabilities?: unknown }> };
    try {
      doc = JSON.parse(trimmed) as typeof doc;
    } catch (err) {
      throw errors.BAD_FIELD('policy', `is not valid JSON: ${(err as Error).message}`);
    }
    for (const [path, body] of Object.entries(doc.path ?? {})) rules.push(rule(path, body?.capabilities));
    return rules;
  }
  const block = /path\s+"([^"]*)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}/g;
  const withoutComments = trimmed.replace(/^\s*#.*$/gm, '').replace(/^\s*\/\/.*$/gm, '');
  let consumed = withoutComments;
  for (const m of withoutComments.matchAll(block)) {
    const caps = [...m[2]!.matchAll(/"([^"]*)"/g)].map((c) => c[1]);
    rules.push(rule(m[1]!, caps));
    consumed = consumed.replace(m[0], '');
  }
  if (consumed.trim() !== '') throw errors.BAD_FIELD('policy', `cannot parse near "${consumed.trim().slice(0, 40)}" (expected path "..." { capabilities = [...] })`);
  return rules;
}

function rule(path: string, caps: unknown): PathRule {
  if (!Array.isArray(caps)) throw errors.BAD_FIELD('policy', `path "${path}" needs a capabilities list`);
  for (const c of caps) if (!CAPABILITIES.has(c as Capability)) throw errors.BAD_FIELD('policy', `unknown capability "${String(c)}" on path "${path}"`);
  return { path, capabilities: caps as Capability[] };
}

/** Does one rule's path (with `*` at the end and `+` per segment) match? */
function matches(rulePath: string, path: string): { ok: boolean; exact: boolean } {
  const glob = rulePath.endsWith('*');
  const ruleParts = (glob ? rulePath.slice(0, -1) : rulePath).split('/');
  const parts = path.split('/');
  const prefixLen = ruleParts.length;
  if (!glob && parts.length !== prefixLen) return { ok: false, exact: false };
  if (glob && parts.length < prefixLen) return { ok: false, exact: false };
  for (let i = 0; i < prefixLen; i++) {
    const r = ruleParts[i]!;
    const p = parts[i]!;
    if (r === '+') continue;
    if (glob && i === prefixLen - 1) {
      if (!p.startsWith(r)) return { ok: false, exact: false };
    } else if (r !== p) return { ok: false, exact: false };
  }
  return { ok: true, exact: !glob };
}

export function capabilityFor(method: Method): Capability {
  switch (method) {
    case 'GET':
    case 'HEAD':
      return 'read';
    case 'LIST':
      return 'list';
    case 'DELETE':
      return 'delete';
    default:
      return 'update';
  }
}

/**
 * Capabilities the rules grant on `path`: the most specific matching rule
 * wins (exact over glob, longer glob over shorter), as in Vault; `deny` wins
 * over everything.
 */
export function capabilitiesOn(policies: PathRule[][], path: string): Set<Capability> {
  let best: { rule: PathRule; score: number } | undefined;
  const caps = new Set<Capability>();
  let denied = false;
  for (const rules of policies) {
    for (const r of rules) {
      const m = matches(r.path, path);
      if (!m.ok) continue;
      if (r.capabilities.includes('deny')) denied = true;
      const score = (m.exact ? 1e6 : 0) + r.path.length;
      if (!best || score > best.score) best = { rule: r, score };
    }
  }
  if (denied) return new Set(['deny']);
  if (!best) return caps;
  // Rules at the same path from several policies merge.
  for (const rules of policies) for (const r of rules) if (r.path === best.rule.path) for (const c of r.capabilities) caps.add(c);
  return caps;
}

export function allows(policies: PathRule[][], path: string, method: Method, sudo: boolean): boolean {
  const caps = capabilitiesOn(policies, path);
  if (caps.has('deny')) return false;
  const need = capabilityFor(method);
  const ok = caps.has(need) || (need === 'update' && caps.has('create'));
  return ok && (!sudo || caps.has('sudo'));
}
