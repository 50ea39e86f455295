// The template language of the agent: a small, safe subset of
// consul-template's (what Vault Agent templates use):
//
//   {{ with secret "database/creds/app" }}user={{ .Data.username }} pass={{ .Data.password }}{{ end }}
//
// Actions: `with secret "<path>"` ... `end` (not nested); inside, a field
// reference `.Data.<key>[.<key>...]`, `.LeaseID`, `.LeaseDuration` (seconds),
// `.Renewable`, optionally piped through `toJSON` (JSON-encode: for JSON
// files) or `urlquery` (percent-encode: for URLs). Nothing else runs: no
// functions, files or commands, so a template can't do more than print secrets.
// A field that does not exist is an error at render time (the file is not written).

import { ConfigError } from '../config.ts';

interface TextNode {
  kind: 'text';
  text: string;
}

interface FieldNode {
  kind: 'field';
  secret: string;
  path: string[];
  pipes: Array<'toJSON' | 'urlquery'>;
}

export interface Template {
  nodes: Array<TextNode | FieldNode>;
  /** The secret paths the template reads, e.g. database/creds/app. */
  secrets: string[];
}

/** What a field reference reads: the broker's response for the secret. */
export interface SecretView {
  lease_id: string;
  lease_duration: number;
  renewable: boolean;
  data: Record<string, unknown> | null;
}

const WITH = /^with\s+secret\s+"([^"\\]+)"$/;
const FIELD = /^\.(Data(?:\.[A-Za-z0-9_-]+)+|LeaseID|LeaseDuration|Renewable)((?:\s*\|\s*[A-Za-z]+)*)$/;

/** Parse `text`; throws ConfigError naming `field` and the offending action. */
export function parseTemplate(text: string, field: string): Template {
  const nodes: Template['nodes'] = [];
  const secrets = new Set<string>();
  let current: string | undefined;
  let last = 0;
  const re = /\{\{(.*?)\}\}/gs;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) nodes.push({ kind: 'text', text: text.slice(last, m.index) });
    last = m.index + m[0].length;
    const action = m[1]!.trim();
    const w = WITH.exec(action);
    if (w) {
      if (current) throw new ConfigError(field, `"{{ ${action} }}" inside another "with secret" (nesting is not supported)`);
      current = w[1]!.replace(/^\/+/, '');
      secrets.add(current);
      continue;
    }
    if (action === 'end') {
      if (!current) throw new ConfigError(field, '"{{ end }}" without "{{ with secret ... }}"');
      current = undefined;
      continue;
    }
    const f = FIELD.exec(action);
    if (!f) throw new ConfigError(field, `unsupported action "{{ ${action.slice(0, 60)} }}" (use with secret "path", .Data.<key>, .LeaseID, .LeaseDuration, .Renewable, | toJSON, | urlquery, end)`);
    if (!current) throw new ConfigError(field, `"{{ ${action} }}" outside "{{ with secret "path" }}"`);
    const pipes = f[2]!.split('|').map((p) => p.trim()).filter(Boolean);
    for (const p of pipes) if (p !== 'toJSON' && p !== 'urlquery') throw new ConfigError(field, `unknown function "${p}" (toJSON, urlquery)`);
    nodes.push({ kind: 'field', secret: current, path: f[1]!.split('.'), pipes: pipes as FieldNode['pipes'] });
  }
  if (current) throw new ConfigError(field, `"{{ with secret "${current}" }}" has no "{{ end }}"`);
  if (last < text.length) nodes.push({ kind: 'text', text: text.slice(last) });
  return { nodes, secrets: [...secrets] };
}

export class TemplateRenderError extends Error {
  override name = 'TemplateRenderError';
}

function fieldValue(view: SecretView, path: string[], secret: string): unknown {
  const [head, ...rest] = path;
  let value: unknown = head === 'Data' ? view.data : head === 'LeaseID' ? view.lease_id : head === 'LeaseDuration' ? view.lease_duration : view.renewable;
  for (const key of rest) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) {
      throw new TemplateRenderError(`secret "${secret}" has no field .${path.join('.')}`);
    }
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/**
 * Render with `lookup` giving each secret's current response. Throws
 * TemplateRenderError when a secret is missing or a field does not exist
 * (the message names the field, never a value).
 */
export function renderTemplate(t: Template, lookup: (path: string) => SecretView | undefined): string {
  let out = '';
  for (const node of t.nodes) {
    if (node.kind === 'text') {
      out += node.text;
      continue;
    }
    const view = lookup(node.secret);
    if (!view) throw new TemplateRenderError(`secret "${node.secret}" is not available`);
    const value = fieldValue(view, node.path, node.secret);
    let text = typeof value === 'string' ? value : value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
    for (const pipe of node.pipes) text = pipe === 'toJSON' ? JSON.stringify(value) : encodeURIComponent(text);
    out += text;
  }
  return out;
}
