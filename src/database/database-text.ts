// Text that no database accepts, refused when it is written rather than when
// it is used: NUL, and strings that are not valid Unicode.

import { errors } from '../errors.ts';

// An unpaired UTF-16 surrogate: JSON can carry one ("\ud800"), UTF-8 cannot
// encode it, and the drivers silently replace it with U+FFFD.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `value` cannot reach a database as text, or undefined when it can. */
export function databaseTextProblem(value: string): string | undefined {
  if (value.includes('\0')) return 'contains a NUL character (U+0000), which databases refuse in statements, names and passwords';
  if (LONE_SURROGATE.test(value)) return 'is not valid Unicode (an unpaired UTF-16 surrogate such as "\\ud800" cannot be sent as UTF-8)';
  return undefined;
}

/**
 * Refuse (400 naming `field`) a string that is certain to fail, or to be
 * silently changed, when sent to a database: PostgreSQL refuses NUL in
 * statements and names (the protocol's strings are NUL-terminated, PG manual
 * 55.7 "Message Formats"); MySQL and MongoDB refuse it in names; and
 * JSON's "\uD800" escapes give strings that no UTF-8 connection can carry.
 */
export function checkDatabaseText(field: string, value: string): void {
  const problem = databaseTextProblem(value);
  if (problem) throw errors.BAD_FIELD(field, problem);
}

/** checkDatabaseText over a list: the message says which item (1-based) is bad. */
export function checkDatabaseTexts(field: string, values: readonly string[]): void {
  values.forEach((value, i) => {
    const problem = databaseTextProblem(value);
    if (problem) throw errors.BAD_FIELD(field, values.length > 1 ? `item ${i + 1} ${problem}` : problem);
  });
}

/**
 * checkDatabaseText over every string in an engine option value (strings,
 * and strings inside arrays and objects, to a small depth; deeper values are
 * left to the engine, which refuses unknown shapes).
 */
export function checkOptionText(field: string, value: unknown, depth = 0): void {
  if (typeof value === 'string') checkDatabaseText(field, value);
  else if (depth < 4 && Array.isArray(value)) for (const v of value) checkOptionText(field, v, depth + 1);
  else if (depth < 4 && typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      checkDatabaseText(field, k);
      checkOptionText(field, v, depth + 1);
    }
  }
}
