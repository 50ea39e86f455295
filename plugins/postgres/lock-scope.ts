// Which statements need the user-change lock (sql.ts USER_CHANGE_LOCK).
//
// The lock exists because PostgreSQL keeps an object's privileges (its ACL)
// in the object's one catalog row, and GRANT/REVOKE on it (also DROP OWNED,
// which revokes, and REASSIGN OWNED, which rewrites owners and ACLs) update
// that row in place: a second concurrent update fails with "tuple concurrently
// updated" (XX000) instead of waiting (PG manual, "Privileges": the ACL is
// stored with the object; the error is heap_update's on a concurrently
// modified catalog tuple).
//
// Statements that only insert or delete rows of their own do not touch a row
// another session updates, so they need no lock:
//   - CREATE ROLE/USER/GROUP (a new pg_authid row; IN ROLE/ROLE/ADMIN clauses
//     insert pg_auth_members rows),
//   - role membership GRANT/REVOKE, i.e. without an ON clause
//     (`GRANT app_read TO "{{name}}"`: a pg_auth_members row per pair),
//   - DROP ROLE/USER/GROUP (deletes the role's rows; it refuses, rather than
//     rewrites, a role that still has privileges or owns objects).
// Verified on PostgreSQL 15.20 (dev machine, bench/pg-lock-scope-experiment.ts,
// 3 runs): 8 sessions, 480 × (BEGIN; CREATE ROLE; GRANT grp TO role; COMMIT)
// without a lock: 0 errors; 8 sessions dropping those members 5 per DROP
// ROLE: 0 errors. The same with `GRANT SELECT ON <one table>` instead:
// 235-239 of 480 failed with "tuple concurrently updated", and so did 2-26
// of the concurrent DROP OWNED + DROP ROLE transactions.
// test/plugins/postgres/batch.test.ts repeats the membership case on the
// embedded PostgreSQL 18.
//
// Advisory locks are per database (the lock tag includes the database OID),
// so the lock never serialises work on different databases of one server.

/** The words of a statement outside quotes, dollar-quoted bodies and comments, upper-cased; a quoted identifier counts as the word `"`. */
function bareWords(statement: string): string[] {
  const words: string[] = [];
  let i = 0;
  const text = statement;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === "'" || ch === '"') {
      // '' and "" inside are the quote doubled; E'..\'..' strings: the backslash escapes.
      const escapes = ch === "'" && i > 0 && /[Ee]/.test(text[i - 1]!);
      let j = i + 1;
      while (j < text.length) {
        if (escapes && text[j] === '\\') j += 2;
        else if (text[j] === ch && text[j + 1] === ch) j += 2;
        else if (text[j] === ch) break;
        else j++;
      }
      if (ch === '"') words.push('"');
      i = j + 1;
    } else if (ch === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i);
      i = nl === -1 ? text.length : nl;
    } else if (ch === '/' && text[i + 1] === '*') {
      let depth = 0;
      while (i < text.length) {
        if (text.startsWith('/*', i)) (depth++, (i += 2));
        else if (text.startsWith('*/', i)) {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else i++;
      }
    } else if (ch === '$') {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 200));
      if (!tag) {
        i++;
        continue;
      }
      const close = text.indexOf(tag[0], i + tag[0].length);
      words.push("'");
      i = close === -1 ? text.length : close + tag[0].length;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(ch)) {
      let j = i + 1;
      while (j < text.length && /[A-Za-z0-9_$\u0080-\uffff]/.test(text[j]!)) j++;
      words.push(text.slice(i, j).toUpperCase());
      i = j;
    } else i++;
  }
  return words;
}

/**
 * Whether one rendered statement may update a catalog row that a concurrent
 * dbroker transaction updates too, so it must run under the user-change
 * lock. False only for CREATE ROLE/USER/GROUP, DROP ROLE/USER/GROUP and role
 * membership GRANT/REVOKE (no ON clause); everything else, including what
 * this cannot parse, is true. See the file comment for the source.
 */
export function needsUserChangeLock(statement: string): boolean {
  const words = bareWords(statement);
  const [first, second, third] = words;
  const roleKind = second === 'ROLE' || second === 'GROUP' || (second === 'USER' && third !== 'MAPPING');
  if ((first === 'CREATE' || first === 'DROP') && roleKind) return false;
  if ((first === 'GRANT' || first === 'REVOKE') && !words.includes('ON')) return false;
  return true;
}

/** Index of the first statement that needs the lock (statements.length when none does). */
export function firstLockedStatement(statements: ReadonlyArray<string>): number {
  const i = statements.findIndex(needsUserChangeLock);
  return i === -1 ? statements.length : i;
}
