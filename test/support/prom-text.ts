// A strict parser of the Prometheus text exposition format 0.0.4
// (prometheus.io/docs/instrumenting/exposition_formats): # HELP and # TYPE
// lines, and samples `name{label="value",...} value [timestamp]` with the
// escapes \\, \" and \n in label values. Anything else is an error, so a
// malformed exposition fails the test instead of being half read.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** TYPE of each metric family. */
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, line: number): number {
  // Values are read as Go's strconv.ParseFloat does: Inf and NaN in any case.
  if (/^\+?inf(inity)?$/i.test(text)) return Infinity;
  if (/^-inf(inity)?$/i.test(text)) return -Infinity;
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`line ${line}: bad value "${text}"`);
  return Number(text);
}

function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let s = text.slice(1);
  for (;;) {
    s = s.trimStart();
    if (s.startsWith('}')) return { labels, rest: s.slice(1) };
    const m = LABEL.exec(s);
    if (!m) throw new Error(`line ${line}: bad label name at "${s.slice(0, 20)}"`);
    const name = m[0];
    s = s.slice(name.length);
    if (!s.startsWith('="')) throw new Error(`line ${line}: expected ="`);
    s = s.slice(2);
    let value = '';
    for (;;) {
      const c = s[0];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const e = s[1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else throw new Error(`line ${line}: bad escape \\${e}`);
        s = s.slice(2);
      } else {
        value += c;
        s = s.slice(1);
      }
    }
    s = s.slice(1);
    if (Object.hasOwn(labels, name)) throw new Error(`line ${line}: label ${name} repeated`);
    labels[name] = value;
    s = s.trimStart();
    if (s.startsWith(',')) s = s.slice(1);
    else if (!s.startsWith('}')) throw new Error(`line ${line}: expected , or }`);
  }
}

/** Parse an exposition; throws on the first malformed line. */
export function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: [], types: new Map(), help: new Map() };
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(raw);
      if (!m) {
        if (/^# (HELP|TYPE)/.test(raw)) throw new Error(`line ${line}: bad ${raw}`);
        return; // a plain comment
      }
      if (m[1] === 'TYPE') {
        if (!TYPES.has(m[3]!)) throw new Error(`line ${line}: unknown type ${m[3]}`);
        if (out.types.has(m[2]!)) throw new Error(`line ${line}: second TYPE for ${m[2]}`);
        out.types.set(m[2]!, m[3]!);
      } else out.help.set(m[2]!, m[3]!);
      return;
    }
    const m = NAME.exec(raw);
    if (!m) throw new Error(`line ${line}: bad metric name in "${raw}"`);
    let rest = raw.slice(m[0].length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, line));
    const parts = rest.trim().split(/\s+/);
    if (!rest.startsWith(' ') || parts.length < 1 || parts.length > 2) throw new Error(`line ${line}: expected " value [timestamp]" in "${raw}"`);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1]!)) throw new Error(`line ${line}: bad timestamp`);
    out.samples.push({ name: m[0], labels, value: parseValue(parts[0]!, line) });
  });
  return out;
}

/** Samples of `name` whose labels include `labels`. */
export function find(exp: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return exp.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The value of the one sample of `name` with exactly these labels (for the given label names); undefined if absent. */
export function value(exp: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = find(exp, name, labels);
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value;
}
