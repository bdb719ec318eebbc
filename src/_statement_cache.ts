// The prepared-statement cache (`statementCache`): one connection's named statements, by SQL,
// least recently used first. A statement that is evicted, or whose Parse failed, is closed on
// the server ahead of the next extended query. A query whose statement the server no longer
// has is one the connection may send again, unprepared (once, outside a transaction).

import * as frontend from "./_frontend.ts";
import type { Writer } from "./_writer.ts";
import { PostgresError } from "./errors.ts";
import type { FieldDescription } from "./result.ts";
import type { BinaryPlan } from "./_binary.ts";
import { anyBinary } from "./_binary_params.ts";

/**
 * A prepared statement: its name, and its result's columns and parameters' types once a run has
 * shown them.
 */
export interface Statement {
  name: string;
  fields: FieldDescription[] | null;
  /** Its parameters' type OIDs (with `fields`). */
  params: number[] | null;
  /** Some of `params` may be sent in binary (see _binary_params.ts). */
  binary: boolean;
  /** The names of `fields`. */
  names: string[];
  /**
   * Its runs' binary columns by the session's flags (see _binary.ts `sessionFlags`), made on
   * first use; null: all text.
   */
  plans: (BinaryPlan | null | undefined)[];
}

/** One connection's prepared statements. */
export class StatementCache {
  readonly #size: number;
  readonly #cautious: boolean;
  /** Names unique to this connection, so that a pooler's shared session never has them. */
  readonly #prefix = `edgepool_${Math.random().toString(36).slice(2, 8)}_`;
  /** Turned off: the cautious cache met a statement the server did not have. */
  #off = false;
  /** SQL → statement, least recently used first. */
  readonly #names = new Map<string, Statement>();
  #count = 0;
  /** Statements whose parameters may go in binary: none, and queries need not look. */
  #binary = 0;
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

  /**
   * The statement for `sql`, known (columns and parameter types) and with parameters that may
   * go in binary, if a query sent now would use it; looked up only while there are such ones.
   * It stays where it is among the least recently used: {@link use} moves it.
   */
  bindable(sql: string, idle: boolean): Statement | undefined {
    if (this.#binary === 0 || !this.usable(idle)) return undefined;
    const statement = this.#names.get(sql);
    return statement?.binary === true ? statement : undefined;
  }

  /**
   * The statement for `sql`, whether it still has to be parsed, and its result's columns when
   * a run of it has shown them (the query then need not ask for them: no Describe).
   */
  use(sql: string): [string, boolean, Statement | null] {
    const cache = this.#names;
    const known = cache.get(sql);
    if (known !== undefined) {
      cache.delete(sql); // most recently used last
      cache.set(sql, known);
      return [known.name, false, known.fields === null ? null : known];
    }
    if (cache.size >= this.#size) {
      const [oldest, old] = cache.entries().next().value!;
      this.#drop(oldest, old);
      this.#unwanted.push(old.name);
    }
    const name = this.#prefix + ++this.#count;
    cache.set(sql, { name, fields: null, params: null, binary: false, names: [], plans: [] });
    return [name, true, null];
  }

  /**
   * A run of statement `name` (for `sql`) returned `fields`, its parameters being of the types
   * `params` (null: not described): later runs take them as known. A statement whose result
   * changes shape fails with 0A000 (a cached plan must not change its result type) and is
   * dropped (see `failed`), so they cannot go stale; its parameters' types never change.
   */
  described(sql: string, name: string, fields: FieldDescription[], params: number[] | null): void {
    const statement = this.#names.get(sql);
    if (statement === undefined || statement.name !== name || statement.fields !== null) return;
    statement.fields = fields;
    statement.names = fields.map((field) => field.name);
    statement.params = params;
    if (params !== null && anyBinary(params)) {
      statement.binary = true;
      this.#binary++;
    }
  }

  /** Removes `sql`'s statement from the cache. */
  #drop(sql: string, statement: Statement): void {
    this.#names.delete(sql);
    if (statement.binary) this.#binary--;
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
      this.#binary = 0;
    }
    if (stale || parseFailed) {
      const statement = this.#names.get(sql);
      if (statement?.name === name) this.#drop(sql, statement);
      this.#unwanted.push(name);
    }
    return stale;
  }
}
