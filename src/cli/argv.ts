// Vault's flag style on top of commander: Vault (Go's flag package) writes
// long flags with one dash (`-format=json`, `-field=token`), takes booleans
// as `-sync=false`, and accepts two dashes too. Commander wants `--format`
// and `--no-sync`, so arguments are rewritten before parsing.

/**
 * Rewrite Vault-style flags for commander. `-name[=value]` with a name of two
 * or more characters becomes `--name[=value]`; for the boolean flags in
 * `booleans`, `--name=true` becomes `--name` and `--name=false` becomes
 * `--no-name` (a bad boolean value is left for commander to refuse). Single
 * letters (`-h`), a lone `-` (stdin), and everything after `--` are kept.
 */
export function normalizeArgs(argv: string[], booleans: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    let flag = arg;
    if (/^-[A-Za-z][A-Za-z0-9_-]+(=|$)/.test(flag)) flag = '-' + flag;
    const m = /^--([A-Za-z][A-Za-z0-9_-]*)=(.*)$/s.exec(flag);
    if (m && booleans.has(m[1]!)) {
      const v = m[2]!.toLowerCase();
      if (v === 'true' || v === '1') flag = `--${m[1]}`;
      else if (v === 'false' || v === '0') flag = `--no-${m[1]}`;
    }
    out.push(flag);
  }
  return out;
}
