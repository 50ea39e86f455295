// MySQL/MariaDB quoting for statement templates (default sql_mode: '...' and
// "..." are strings in which `\` escapes, `...` is an identifier). The engine
// clears NO_BACKSLASH_ESCAPES and ANSI_QUOTES on its sessions so this holds.

import type { SqlDialect } from '../sql-common/statements.ts';

const STRING_ESCAPES: Record<string, string> = { '\\': '\\\\', '\0': '\\0', '\n': '\\n', '\r': '\\r', '\x1a': '\\Z' };

function escapeString(value: string, quote: "'" | '"'): string {
  // Backslash, NUL, CR, LF and Ctrl-Z escaped as mysql_real_escape_string does; the quote doubled.
  return value.replace(/[\\\0\n\r\x1a]/g, (c) => STRING_ESCAPES[c]!).split(quote).join(quote + quote);
}

export const mysqlDialect: SqlDialect = {
  escapeInQuotes(value, quote) {
    if (quote === '`') return value.split('`').join('``');
    return escapeString(value, quote);
  },
  quoteIdentifier(value) {
    return '`' + value.split('`').join('``') + '`';
  },
  quoteLiteral(value) {
    return "'" + escapeString(value, "'") + "'";
  },
  backslashEscapes: true,
  escapeStrings: false,
  backtickQuotes: true,
  dollarQuotes: false,
};

/** `{{expiration}}` as a MySQL DATETIME literal body, in UTC. */
export function formatExpiration(date: Date): string {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}
