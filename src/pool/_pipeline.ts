// Which `pool.query` statements may be pipelined onto a connection that is already running
// others. Each runs on its own (its own Sync, or its own simple Query message), so statements
// of different callers cannot affect each other, unless one opens a transaction or changes the
// session: those, and anything holding a `;` (a second statement), run on a connection alone.

/** First words of statements that open or end transactions, or change the session. */
const ALONE = new Set([
  "abort",
  "begin",
  "close",
  "commit",
  "copy",
  "declare",
  "discard",
  "end",
  "fetch",
  "listen",
  "lock",
  "move",
  "prepare",
  "release",
  "reset",
  "rollback",
  "savepoint",
  "set",
  "start",
  "unlisten",
]);

/**
 * Whether `sql` is one statement that may share a connection with other callers' statements:
 * no `;` before its end (a string holding one counts: when unsure, no), and a first word (after
 * comments) that is not in the list above.
 */
export function pipelineable(sql: string): boolean {
  const end = sql.length;
  let i = 0;
  // Skip blanks and comments (`--` to the end of the line, `/* */` nested).
  for (;;) {
    while (i < end && sql.charCodeAt(i) <= 32) i++;
    if (sql.startsWith("--", i)) {
      const nl = sql.indexOf("\n", i);
      if (nl === -1) return false;
      i = nl + 1;
    } else if (sql.startsWith("/*", i)) {
      let depth = 1;
      i += 2;
      while (i < end && depth > 0) {
        if (sql.startsWith("/*", i)) (depth++, i += 2);
        else if (sql.startsWith("*/", i)) (depth--, i += 2);
        else i++;
      }
      if (depth > 0) return false;
    } else break;
  }
  let j = i;
  while (j < end && isLetter(sql.charCodeAt(j))) j++;
  if (j === i || ALONE.has(sql.slice(i, j).toLowerCase())) return false;
  const semicolon = sql.indexOf(";", j);
  if (semicolon === -1) return true;
  for (let k = semicolon; k < end; k++) {
    const c = sql.charCodeAt(k);
    if (c !== 59 && c > 32) return false;
  }
  return true;
}

function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}
