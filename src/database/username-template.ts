// username_template: the subset of Vault's Go-template language that username
// templates use: {{.DisplayName}}, {{.RoleName}}, pipelines with `|`,
// parentheses, and the functions below. Names from requests are sanitised
// before they enter the template, and the result is checked, so a display or
// role name can never smuggle quotes or separators into a database username.

import { createHash, randomUUID } from 'node:crypto';
import { errors } from '../errors.ts';
import { randomString } from '../util/random.ts';

export const DEFAULT_USERNAME_TEMPLATE = '{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) }}';

/** Characters a generated username may hold. */
export const USERNAME_CHARS = /^[A-Za-z0-9_.@-]+$/;

type Value = string | number;
type Token = { kind: 'str'; v: string } | { kind: 'num'; v: number } | { kind: 'field'; v: string } | { kind: 'ident'; v: string } | { kind: 'punct'; v: '(' | ')' | '|' };

interface Vars {
  DisplayName: string;
  RoleName: string;
}

function fail(problem: string): never {
  throw errors.BAD_FIELD('username_template', problem);
}

function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const ch = expr[i]!;
    if (/\s/.test(ch)) i++;
    else if (ch === '(' || ch === ')' || ch === '|') (out.push({ kind: 'punct', v: ch }), i++);
    else if (ch === '"') {
      let j = i + 1;
      let s = '';
      while (j < expr.length && expr[j] !== '"') {
        if (expr[j] === '\\' && j + 1 < expr.length) j++;
        s += expr[j];
        j++;
      }
      if (j >= expr.length) fail('unterminated string');
      out.push({ kind: 'str', v: s });
      i = j + 1;
    } else {
      const m = /^(\.[A-Za-z]+|-?\d+|[a-z_0-9]+)/.exec(expr.slice(i));
      if (!m) fail(`unexpected character "${ch}"`);
      const t = m[1]!;
      if (t.startsWith('.')) out.push({ kind: 'field', v: t.slice(1) });
      else if (/^-?\d+$/.test(t)) out.push({ kind: 'num', v: Number(t) });
      else out.push({ kind: 'ident', v: t });
      i += t.length;
    }
  }
  return out;
}

const FUNCTIONS: Record<string, (args: Value[]) => Value> = {
  printf: ([format, ...rest]) => {
    let k = 0;
    return String(format ?? '').replace(/%[sd]/g, () => String(rest[k++] ?? ''));
  },
  truncate: ([n, s]) => String(s ?? '').slice(0, num(n)),
  truncate_sha256: ([n, s]) => {
    const str = String(s ?? '');
    const max = num(n);
    if (str.length <= max) return str;
    // Vault's semantics: keep max-8 characters, replace the rest by 8 hex digits of its hash.
    if (max <= 8) return str.slice(0, max);
    const hash = createHash('sha256').update(str.slice(max - 8)).digest('hex');
    return str.slice(0, max - 8) + hash.slice(0, 8);
  },
  lowercase: ([s]) => String(s ?? '').toLowerCase(),
  uppercase: ([s]) => String(s ?? '').toUpperCase(),
  replace: ([from, to, s]) => String(s ?? '').split(String(from)).join(String(to)),
  random: ([n]) => randomString(Math.min(num(n), 128)),
  unix_time: () => Math.floor(Date.now() / 1000),
  unix_time_millis: () => Date.now(),
  uuid: () => randomUUID(),
  timestamp: () => new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z'),
  sha256: ([s]) => createHash('sha256').update(String(s ?? '')).digest('hex'),
};

function num(v: Value | undefined): number {
  if (typeof v !== 'number' || v < 0) fail('expected a non-negative number');
  return v;
}

class Parser {
  private i = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly vars: Vars,
  ) {}

  run(): Value {
    const v = this.pipeline();
    if (this.i < this.tokens.length) fail('unexpected text after expression');
    return v;
  }

  private pipeline(): Value {
    let value = this.command(undefined);
    while (this.peek()?.kind === 'punct' && this.peek()!.v === '|') {
      this.i++;
      value = this.command(value);
    }
    return value;
  }

  private command(piped: Value | undefined): Value {
    const head = this.tokens[this.i];
    if (!head) fail('empty expression');
    if (head.kind === 'ident') {
      this.i++;
      const fn = FUNCTIONS[head.v];
      if (!fn) fail(`unknown function "${head.v}"`);
      const args: Value[] = [];
      while (this.i < this.tokens.length && !(this.peek()!.kind === 'punct' && this.peek()!.v !== '(')) args.push(this.term());
      if (piped !== undefined) args.push(piped);
      return fn(args);
    }
    if (piped !== undefined) fail('only a function can follow "|"');
    return this.term();
  }

  private term(): Value {
    const t = this.tokens[this.i++];
    if (!t) fail('unexpected end of expression');
    if (t.kind === 'str' || t.kind === 'num') return t.v;
    if (t.kind === 'field') {
      if (t.v !== 'DisplayName' && t.v !== 'RoleName') fail(`unknown field ".${t.v}" (use .DisplayName or .RoleName)`);
      return this.vars[t.v];
    }
    if (t.kind === 'punct' && t.v === '(') {
      const v = this.pipeline();
      const close = this.tokens[this.i++];
      if (!close || close.kind !== 'punct' || close.v !== ')') fail('missing ")"');
      return v;
    }
    if (t.kind === 'ident') {
      const fn = FUNCTIONS[t.v];
      if (!fn) fail(`unknown function "${t.v}"`);
      return fn([]);
    }
    fail(`unexpected "${t.v}"`);
  }

  private peek(): Token | undefined {
    return this.tokens[this.i];
  }
}

/** Names from requests keep only username-safe characters. */
export function sanitizeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export function renderUsername(template: string, vars: Vars, maxLength: number): string {
  const safe: Vars = { DisplayName: sanitizeName(vars.DisplayName), RoleName: sanitizeName(vars.RoleName) };
  let out = '';
  let rest = template;
  while (rest.length > 0) {
    const open = rest.indexOf('{{');
    if (open === -1) {
      out += rest;
      break;
    }
    out += rest.slice(0, open);
    const close = rest.indexOf('}}', open);
    if (close === -1) fail('missing "}}"');
    out += String(new Parser(tokenize(rest.slice(open + 2, close).replace(/^-|-$/g, '')), safe).run());
    rest = rest.slice(close + 2);
  }
  out = out.slice(0, maxLength);
  if (out.length === 0) fail('renders an empty username');
  if (!USERNAME_CHARS.test(out)) fail('renders characters a username may not hold (allowed: letters, digits, "_", ".", "@", "-")');
  return out;
}
