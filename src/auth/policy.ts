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
  if (trimmed.startsWith('{')) return parseJsonPolicy(trimmed);
  const rules: PathRule[] = [];
  const block = /path\s+"([^"]*)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}/g;
  // Drop comments (#, //, /* */) but not inside quoted strings.
  const withoutComments = trimmed.replace(/("(?:[^"\\\n]|\\.)*")|#[^\n]*|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (m, quoted: string | undefined) => quoted ?? ' ');
  let consumed = withoutComments;
  for (const m of withoutComments.matchAll(block)) {
    const list = m[2]!;
    if (list.replace(/"[^"]*"/g, '').replace(/[\s,]/g, '') !== '') {
      throw errors.BAD_FIELD('policy', `capabilities of path "${m[1]}" must be a list of quoted names`);
    }
    rules.push(rule(m[1]!, [...list.matchAll(/"([^"]*)"/g)].map((c) => c[1])));
    consumed = consumed.replace(m[0], '');
  }
  if (consumed.trim() !== '') throw errors.BAD_FIELD('policy', `cannot parse near "${printable(consumed.trim().slice(0, 40))}" (expected path "..." { capabilities = [...] })`);
  return rules;
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

function parseJsonPolicy(text: string): PathRule[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw errors.BAD_FIELD('policy', `is not valid JSON: ${(err as Error).message}`);
  }
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(doc)) throw errors.BAD_FIELD('policy', 'must be a JSON object');
  for (const key of Object.keys(doc)) if (key !== 'path' && key !== 'name') throw errors.BAD_FIELD('policy', `unknown key "${printable(key.slice(0, 40))}" (expected "path")`);
  const paths = doc.path ?? {};
  if (!isObject(paths)) throw errors.BAD_FIELD('policy', '"path" must be an object of path → { "capabilities": [...] }');
  const rules: PathRule[] = [];
  for (const [path, body] of Object.entries(paths)) {
    if (!isObject(body)) throw errors.BAD_FIELD('policy', `path "${printable(path.slice(0, 80))}" must be an object with "capabilities"`);
    // Parameter constraints and wrapping limits would silently grant more than written if ignored.
    for (const key of Object.keys(body)) {
      if (key !== 'capabilities') throw errors.BAD_FIELD('policy', `"${printable(key.slice(0, 40))}" on path "${printable(path.slice(0, 80))}" is not supported (only "capabilities")`);
    }
    rules.push(rule(path, body.capabilities));
  }
  return rules;
}

function rule(path: string, caps: unknown): PathRule {
  if (!Array.isArray(caps)) throw errors.BAD_FIELD('policy', `path "${printable(path.slice(0, 80))}" needs a capabilities list`);
  for (const c of caps) {
    // Never String() an arbitrary value: a deeply nested array would recurse.
    if (typeof c !== 'string') throw errors.BAD_FIELD('policy', `capabilities on path "${printable(path.slice(0, 80))}" must be strings`);
    if (!CAPABILITIES.has(c as Capability)) throw errors.BAD_FIELD('policy', `unknown capability "${printable(c.slice(0, 40))}" on path "${printable(path.slice(0, 80))}"`);
  }
  return { path, capabilities: caps as Capability[] };
}

interface CompiledRulePath {
  glob: boolean;
  parts: string[];
}

/** Rule paths split once (rules live as long as their cached policy; see Broker.policiesOf). */
const compiledPaths = new Map<string, CompiledRulePath>();
const COMPILED_PATHS_MAX = 10_000;

function compileRulePath(rulePath: string): CompiledRulePath {
  let c = compiledPaths.get(rulePath);
  if (!c) {
    const glob = rulePath.endsWith('*');
    c = { glob, parts: (glob ? rulePath.slice(0, -1) : rulePath).split('/') };
    if (compiledPaths.size >= COMPILED_PATHS_MAX) compiledPaths.clear();
    compiledPaths.set(rulePath, c);
  }
  return c;
}

/** Does one rule's path (with `*` at the end and `+` per segment) match the request path, split on "/"? */
function matches(rulePath: string, parts: string[]): boolean {
  const { glob, parts: ruleParts } = compileRulePath(rulePath);
  const prefixLen = ruleParts.length;
  if (!glob && parts.length !== prefixLen) return false;
  if (glob && parts.length < prefixLen) return false;
  for (let i = 0; i < prefixLen; i++) {
    const r = ruleParts[i]!;
    const p = parts[i]!;
    if (r === '+') continue;
    if (glob && i === prefixLen - 1) {
      if (!p.startsWith(r)) return false;
    } else if (r !== p) return false;
  }
  return true;
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

/** Character index of the first `+` segment or trailing `*` (Infinity when none). */
function firstWildcard(rulePath: string): number {
  let at = rulePath.endsWith('*') ? rulePath.length - 1 : Infinity;
  let offset = 0;
  for (const seg of rulePath.split('/')) {
    if (seg === '+') {
      at = Math.min(at, offset);
      break;
    }
    offset += seg.length + 1;
  }
  return at;
}

/** Is rule path `a` more specific than `b`? Vault's priority rules, in order. */
function morePrecise(a: string, b: string): boolean {
  const wa = firstWildcard(a);
  const wb = firstWildcard(b);
  if (wa !== wb) return wa > wb;
  const ga = a.endsWith('*');
  const gb = b.endsWith('*');
  if (ga !== gb) return !ga;
  const pa = a.split('/').filter((s) => s === '+').length;
  const pb = b.split('/').filter((s) => s === '+').length;
  if (pa !== pb) return pa < pb;
  if (a.length !== b.length) return a.length > b.length;
  return a > b;
}

/**
 * Capabilities the rules grant on `path`, as in Vault: the most specific
 * matching rule path wins (rules at that same path in several policies
 * merge), and `deny` there wins over everything.
 */
export function capabilitiesOn(policies: PathRule[][], path: string): Set<Capability> {
  let best: string | undefined;
  const parts = path.split('/');
  for (const rules of policies) {
    for (const r of rules) if (matches(r.path, parts) && (best === undefined || morePrecise(r.path, best))) best = r.path;
  }
  const caps = new Set<Capability>();
  if (best === undefined) return caps;
  for (const rules of policies) for (const r of rules) if (r.path === best) for (const c of r.capabilities) caps.add(c);
  return caps.has('deny') ? new Set(['deny']) : caps;
}

export function allows(policies: PathRule[][], path: string, method: Method, sudo: boolean): boolean {
  // Vault checks a list on the path with its trailing slash ("database/roles/"),
  // and falls back to the path without it.
  let caps = method === 'LIST' ? capabilitiesOn(policies, `${path}/`) : undefined;
  if (caps === undefined || caps.size === 0) caps = capabilitiesOn(policies, path);
  if (caps.has('deny')) return false;
  const need = capabilityFor(method);
  const ok = caps.has(need) || (need === 'update' && caps.has('create'));
  return ok && (!sudo || caps.has('sudo'));
}
