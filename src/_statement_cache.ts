// The prepared-statement cache (`statementCache`): one connection's named statements, by SQL,
// least recently used first. A statement that is evicted, or whose Parse failed, is closed on
// the server ahead of the next extended query. A query whose statement the server no longer
// has is one the connection may send again, unprepared (once, outside a transaction).

import * as frontend from "./_frontend.ts";
import type { Writer } from "./_writer.ts";
import { PostgresError } from "./errors.ts";

/** One connection's prepared statements. */
export class StatementCache {
  readonly #size: number;
  readonly #cautious: boolean;
  /** Names unique to this connection, so that a pooler's shared session never has them. */
  readonly #prefix = `edgepool_${Math.random().toString(36).slice(2, 8)}_`;
  /** Turned off: the cautious cache met a statement the server did not have. */
  #off = false;
  /** SQL → statement name, least recently used first. */
  readonly #names = new Map<string, string>();
  #count = 0;
  /** Statements to close with the next extended query (evicted, or of a failed Parse). */
  readonly #unwanted: string[] = [];

  /**
   * A cache of at most `size` statements (at least 1). `cautious` (on by default under a
   * guessed pooler): never inside a transaction, and off for good at the first statement the
   * server does not have.
   */
  constructor(size: number, cautious: boolean) {
    this.#size = size;
    this.#cautious = cautious;
  }

  /** Whether a query sent now may use a named statement (`idle`: outside a transaction). */
  usable(idle: boolean): boolean {
    return !this.#off && (idle || !this.#cautious);
  }

  /** The statement for `sql`, and whether it still has to be parsed. */
  use(sql: string): [string, boolean] {
    const cache = this.#names;
    const known = cache.get(sql);
    if (known !== undefined) {
      cache.delete(sql); // most recently used last
      cache.set(sql, known);
      return [known, false];
    }
    if (cache.size >= this.#size) {
      const [oldest, oldName] = cache.entries().next().value!;
      cache.delete(oldest);
      this.#unwanted.push(oldName);
    }
    const name = this.#prefix + ++this.#count;
    cache.set(sql, name);
    return [name, true];
  }

  /**
   * Writes a Close for each statement no longer wanted. Ahead of an extended query only: its
   * Sync ends them, whatever happens.
   */
  closeUnwanted(writer: Writer): void {
    for (const unwanted of this.#unwanted.splice(0)) frontend.closeStatement(writer, unwanted);
  }

  /**
   * A query of statement `name` failed with `error`. The statement is dropped (and closed with
   * the next query, if it exists) when the server no longer has it, or when the query's Parse
   * did not complete (`parseFailed`); one that exists and only failed to run is kept. Returns
   * whether the query may work sent again, unprepared.
   */
  failed(sql: string, name: string, parseFailed: boolean, error: unknown): boolean {
    // The server no longer has the statement (`DEALLOCATE`, `DISCARD ALL`, a pooler that
    // switched sessions) or its plan no longer fits (a table changed): sent unprepared, it works.
    const code = error instanceof PostgresError ? error.code : "";
    const stale = code === "26000" ||
      (code === "0A000" &&
        /cached plan must not change result type/.test((error as PostgresError).message));
    if (stale && this.#cautious && code === "26000") {
      // A statement prepared on this connection is gone without a DEALLOCATE from it: most
      // likely a transaction pooler hands each transaction another session. Stop preparing.
      this.#off = true;
      this.#names.clear();
    }
    if (stale || parseFailed) {
      if (this.#names.get(sql) === name) this.#names.delete(sql);
      this.#unwanted.push(name);
    }
    return stale;
  }
}
