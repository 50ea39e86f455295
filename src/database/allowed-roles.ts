// Which roles a connection serves: its `allowed_roles`, matched as Vault does.

/**
 * Whether `role` may use a connection whose allowed_roles is `allowed`: "*"
 * allows every role; otherwise an entry matches the role name exactly, or as
 * a glob with a leading and/or trailing "*" ("dev-*", "*-ro", "*app*").
 * Source: Vault builtin/logical/database (path_creds_create.go, rotation.go):
 * StrListContains(allowed, "*") || StrListContainsGlob(allowed, role), with
 * go-secure-stdlib strutil.GlobbedStringsMatch.
 */
export function roleAllowed(allowed: readonly string[], role: string): boolean {
  return allowed.some((entry) => entry === '*' || globMatch(entry, role));
}

function globMatch(pattern: string, value: string): boolean {
  if (pattern.length < 2) return pattern === value;
  const leading = pattern.startsWith('*');
  const trailing = pattern.endsWith('*');
  if (leading && trailing) return value.includes(pattern.slice(1, -1));
  if (leading) return value.endsWith(pattern.slice(1));
  if (trailing) return value.startsWith(pattern.slice(0, -1));
  return pattern === value;
}
