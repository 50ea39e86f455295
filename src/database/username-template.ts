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

type Fn = (args: Value[]) => Value;

function truncateSha256(str: string, max: number, hash: (s: string) => string): string {
  if (str.length <= max) return str;
  // Vault's semantics: keep max-8 characters, replace the rest by 8 hex digits of its hash.
  if (max <= 8) return str.slice(0, max);
  return str.slice(0, max - 8) + hash(str.slice(max - 8)).slice(0, 8);
}

const sha256Hex = (s: string): string => createHash('sha256').update(s).digest('hex');

const FUNCTIONS: Record<string, Fn> = {
  printf: ([format, ...rest]) => {
    let k = 0;
    return String(format ?? '').replace(/%[sd]/g, () => String(rest[k++] ?? ''));
  },
  truncate: ([n, s]) => String(s ?? '').slice(0, num(n)),
  truncate_sha256: ([n, s]) => truncateSha256(String(s ?? ''), num(n), sha256Hex),
  lowercase: ([s]) => String(s ?? '').toLowerCase(),
  uppercase: ([s]) => String(s ?? '').toUpperCase(),
  replace: ([from, to, s]) => String(s ?? '').split(String(from)).join(String(to)),
  random: ([n]) => randomString(Math.min(num(n), 128)),
  unix_time: () => Math.floor(Date.now() / 1000),
  unix_time_millis: () => Date.now(),
  uuid: () => randomUUID(),
  timestamp: () => new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z'),
  sha256: ([s]) => sha256Hex(String(s ?? '')),
};

// The randomness probe: the same template rendered with every random
// character replaced by a marker (private-use characters, which no name or
// template that passes the final check can hold), so the markers left after
// the cut measure the randomness the username keeps.
/** A character of `random` (62 letters and digits): log2(62) bits. */
const RANDOM_MARK = '\uE000';
/** A random hex digit (uuid, or the hash of random text): 4 bits. */
const HEX_MARK = '\uE001';
const BITS_PER_RANDOM = Math.log2(62);

/** The randomness (bits) the markers in `s` stand for. */
function markedBits(s: string): number {
  let bits = 0;
  for (const ch of s) bits += ch === RANDOM_MARK ? BITS_PER_RANDOM : ch === HEX_MARK ? 4 : 0;
  return bits;
}

/** A hash of probe text: as many random hex digits as the input's randomness fills (none for fixed text). */
function probeHash(s: string): string {
  const bits = markedBits(s);
  if (bits === 0) return sha256Hex(s);
  const random = Math.min(64, Math.ceil(bits / 4));
  return HEX_MARK.repeat(random) + '0'.repeat(64 - random);
}

const PROBE_FUNCTIONS: Record<string, Fn> = {
  ...FUNCTIONS,
  random: ([n]) => RANDOM_MARK.repeat(Math.min(num(n), 128)),
  uuid: () => `${HEX_MARK.repeat(8)}-${HEX_MARK.repeat(4)}-4${HEX_MARK.repeat(3)}-${HEX_MARK.repeat(4)}-${HEX_MARK.repeat(12)}`,
  sha256: ([s]) => probeHash(String(s ?? '')),
  truncate_sha256: ([n, s]) => truncateSha256(String(s ?? ''), num(n), probeHash),
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
    private readonly functions: Record<string, Fn>,
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
      const fn = this.functions[head.v];
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
      const fn = this.functions[t.v];
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

/** Expand the template's {{ }} actions with `functions`; the text is not yet cut. */
function expand(template: string, vars: Vars, functions: Record<string, Fn>): string {
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
    out += String(new Parser(tokenize(rest.slice(open + 2, close).replace(/^-|-$/g, '')), vars, functions).run());
    rest = rest.slice(close + 2);
  }
  return out;
}

export interface RenderedUsername {
  username: string;
  /** The randomness the username keeps after the cut, in bits (8 characters of `random` ≈ 47.6). */
  randomBits: number;
}

/**
 * Render `template` for `vars` and cut it to `maxLength`; a cut never leaves a
 * trailing "-". Throws a 400 naming username_template for a bad template or a
 * result that is empty or holds characters a username may not hold.
 */
export function renderUsernameDetailed(template: string, vars: Vars, maxLength: number): RenderedUsername {
  const safe: Vars = { DisplayName: sanitizeName(vars.DisplayName), RoleName: sanitizeName(vars.RoleName) };
  let out = expand(template, safe, FUNCTIONS);
  if (out.length > maxLength) out = out.slice(0, maxLength).replace(/-+$/, '');
  if (out.length === 0) fail('renders an empty username');
  if (!USERNAME_CHARS.test(out)) fail('renders characters a username may not hold (allowed: letters, digits, "_", ".", "@", "-")');
  const probe = expand(template, safe, PROBE_FUNCTIONS).slice(0, out.length);
  return { username: out, randomBits: markedBits(probe) };
}

/** renderUsernameDetailed without the randomness measure. */
export function renderUsername(template: string, vars: Vars, maxLength: number): string {
  return renderUsernameDetailed(template, vars, maxLength).username;
}

/**
 * The least randomness a generated username keeps: 8 characters of `random`
 * (62 letters and digits, 47.6 bits), what Vault's own tightest default
 * (mysql-database-plugin's, cut to 32) keeps; 12 hex digits qualify too.
 */
export const MIN_RANDOM_BITS = 47;

function requireRandomness(rendered: RenderedUsername, maxLength: number): void {
  if (rendered.randomBits >= MIN_RANDOM_BITS) return;
  const kept = Math.round(rendered.randomBits / BITS_PER_RANDOM);
  fail(
    `must make unique usernames, but its output ${kept === 0 ? 'keeps no random part' : `keeps only about ${kept} random characters`}` +
      ` once cut to the ${maxLength}-character limit of this plugin; keep at least 8 random characters within the limit` +
      ' (e.g. {{random 20}} near the start, or truncate .DisplayName and .RoleName)',
  );
}

/**
 * The username for one credential (`database/creds`): rendered, cut, and
 * refused (400 naming username_template) unless it keeps MIN_RANDOM_BITS of
 * randomness, so two credentials never ask the database for the same name.
 */
export function generateUsername(template: string, vars: Vars, maxLength: number): string {
  const rendered = renderUsernameDetailed(template, vars, maxLength);
  requireRandomness(rendered, maxLength);
  return rendered.username;
}

/** The longest display name a token can have ("token-" and 256 characters, see auth-token.ts). */
const WORST_DISPLAY_NAME = `token-${'x'.repeat(256)}`;
/** The longest role name (database-backend.ts). */
const WORST_ROLE_NAME = 'r'.repeat(128);

/**
 * At role write (with its `roleName`) and connection write (any role): refuse
 * (400 naming username_template) a template that is invalid, or whose output
 * could lose its randomness to the cut for some display name (up to the
 * longest a token can have) or role name.
 */
export function checkUsernameTemplate(template: string, maxLength: number, roleName?: string): void {
  for (const vars of [
    { DisplayName: 'token', RoleName: roleName ?? 'role' },
    { DisplayName: WORST_DISPLAY_NAME, RoleName: roleName ?? WORST_ROLE_NAME },
  ]) {
    requireRandomness(renderUsernameDetailed(template, vars, maxLength), maxLength);
  }
}
