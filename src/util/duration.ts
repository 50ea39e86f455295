// Durations as Vault takes them: a number of seconds, a numeric string, or a
// Go duration string ("90s", "1h30m", "1.5h", "500ms"). Results are whole seconds.

const UNIT_SECONDS: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400 };
const GO_DURATION = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/;

/** Parse a duration to seconds, or return an error message. */
export function parseDuration(value: unknown): number | string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) return 'must be a non-negative number of seconds';
    if (value > 1e11) return 'is too large';
    return Math.floor(value);
  }
  if (typeof value !== 'string') return 'must be a number of seconds or a duration string like "1h30m"';
  const text = value.trim();
  if (text === '') return 0;
  if (/^\d+$/.test(text)) return Number(text) > 1e11 ? 'is too large' : Number(text);
  let rest = text;
  let total = 0;
  while (rest.length > 0) {
    const m = GO_DURATION.exec(rest);
    if (!m) return `"${value.slice(0, 40)}" is not a duration (use seconds or a string like "1h30m")`;
    total += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (!Number.isFinite(total) || total > 1e11) return 'is too large';
  return Math.floor(total);
}
