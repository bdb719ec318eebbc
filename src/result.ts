/**
 * What a query returns.
 *
 * @module
 */

import type { SerializersOption } from "./_param_types.ts";
export type { ParamSerializer, SerializersOption } from "./_param_types.ts";

/** How rows are shaped: objects keyed by column name (default) or arrays in column order. */
export type RowMode = "object" | "array";

/** Per-query options. */
export interface QueryOptions {
  /**
   * Cancels the query: a CancelRequest goes to the server and the query rejects with the
   * signal's reason. A connection of your own stays usable; a pooled one is closed and its
   * place freed, since one whose query does not answer may never answer again.
   */
  signal?: AbortSignal;
  /**
   * Time limit in ms for this query, from when it is issued until its last answer; overrides
   * the connection's (or pool's) `queryTimeout`. Past it the query rejects with
   * `ConnectionError` `QUERY_TIMEOUT`, a CancelRequest is sent, and the connection is closed.
   * `0`: none.
   */
  queryTimeout?: number;
  /** Row shape; default `"object"`. */
  rowMode?: RowMode;
  /**
   * The parsers of this query's columns, as pg takes them: `getTypeParser(oid, "text")` is
   * asked once per column of the result, and its function reads each value's text (a parser
   * that returns its input keeps the server's text, as Drizzle asks for timestamps). Default:
   * edgepool's own (see {@link typeParsers}).
   */
  types?: TypeParsers;
  /**
   * This query's parameter serializers by type OID, `{ [oid]: (value) => text }` or a Map, over
   * the connection's (`serializers` of `connect()` and `createPool()`): entry by entry, this
   * query's win. See `ConnectOptions.serializers`. Not over HTTP.
   *
   * @example
   * ```ts
   * import { Oid, type QueryOptions } from "@edgepool/edgepool";
   * const options: QueryOptions = { serializers: { [Oid.numeric]: (n: number) => n.toFixed(2) } };
   * // await pool.query("select $1::numeric as price", [1.5], options); // { price: "1.50" }
   * console.assert(options.serializers !== undefined);
   * ```
   */
  serializers?: SerializersOption;
  /**
   * pg's prepared statement name: the statement is prepared once per connection and reused
   * (edgepool prepares repeated statements anyway, through its `statementCache`, and keys them
   * by text, so any name will do). Refused where the statement cache is off (behind a
   * transaction pooler), where a prepared statement would not outlive the transaction.
   */
  name?: string;
}

/** A column value's parser: reads the value's text. */
export type TypeParser = (text: string) => unknown;

/** pg's per-query type parsers (`query({ text, types })`): one parser per column type. */
export interface TypeParsers {
  /** The parser for values of type `oid`, in `format` (edgepool reads `"text"` only). */
  getTypeParser(oid: number, format?: "text" | "binary"): TypeParser;
}

/**
 * pg's query config object: `query({ text, values, rowMode, types, name })`, with the other
 * options of {@link QueryOptions}. Parameters passed beside it (`query(config, values)`)
 * take the place of `values`, as in pg. A template made by the `sql` tag is one.
 */
export interface QueryConfig extends QueryOptions {
  /** The SQL text. */
  text: string;
  /** The parameters, `$1`, `$2`, ... in the text. */
  values?: readonly unknown[];
}

/**
 * A cursor object, as pg-cursor's and Kysely's `.stream()` hand one to `query(cursor)`: rows
 * are read from it a batch at a time. edgepool reads its own `Cursor`'s; another
 * library's cursor (pg-cursor's) throws a TypeError.
 */
export interface QueryCursor {
  /** The next `rows` rows; fewer (none) at the end. */
  read(rows: number): Promise<unknown[]>;
  /** Ends the cursor. */
  close(): Promise<void>;
}

/** The TypeError of `query(cursor)` with a cursor that is not edgepool's own. */
export function cursorUnsupported(): TypeError {
  return new TypeError(
    "query(cursor): this cursor is not edgepool's; pass edgepool's Cursor (import { Cursor } " +
      "from edgepool; Kysely: new PostgresDialect({ pool, cursor: Cursor })), or use stream()",
  );
}

/**
 * The statement, its parameters and its options from either form of `query`: `(text, params,
 * options)`, or pg's `(config, values)`, whose config carries the options. Throws TypeError
 * for anything else.
 *
 * @internal
 */
export function fromConfig(
  config: QueryConfig,
  params: readonly unknown[] | undefined,
  options: QueryOptions | undefined,
): { sql: string; params: readonly unknown[] | undefined; options: QueryOptions } {
  if (config === null || typeof config !== "object" || typeof config.text !== "string") {
    throw new TypeError(
      `The query must be a string or a { text, values } object, not ${
        config === null ? "null" : typeof config
      }`,
    );
  }
  return {
    sql: config.text,
    params: params ?? config.values,
    options: options === undefined ? config : { ...config, ...options },
  };
}

/** A column of a result, from the server's RowDescription. */
export interface FieldDescription {
  /** Column name (or alias). */
  name: string;
  /** OID of the source table, or 0. */
  tableID: number;
  /** Attribute number in the source table, or 0. */
  columnID: number;
  /** OID of the column's type (see `Oid`). */
  dataTypeID: number;
  /** `pg_type.typlen`: negative for variable-width types. */
  dataTypeSize: number;
  /** Type modifier (`atttypmod`), e.g. a varchar length; -1 when none. */
  dataTypeModifier: number;
  /**
   * Wire format the server sent the values in: `"text"`, or `"binary"` for columns of some
   * built-in types (int2, int4, int8, bytea, uuid, timestamp, timestamptz) on the second and
   * later runs of a prepared statement, which read the same values their text would.
   */
  format: "text" | "binary";
}

/**
 * The first word of a statement's command tag, as PostgreSQL 15 names them (`CREATE TABLE` is
 * `CREATE`, `START TRANSACTION` is `START`), `""` for an empty query, and `"???"`, the tag the
 * server gives a statement it has no tag for.
 */
export type CommandTag =
  | "SELECT"
  | "INSERT"
  | "UPDATE"
  | "DELETE"
  | "MERGE"
  | "COPY"
  | "FETCH"
  | "MOVE"
  | "BEGIN"
  | "START"
  | "COMMIT"
  | "ROLLBACK"
  | "SAVEPOINT"
  | "RELEASE"
  | "PREPARE"
  | "EXECUTE"
  | "DEALLOCATE"
  | "DECLARE"
  | "CLOSE"
  | "CREATE"
  | "ALTER"
  | "DROP"
  | "TRUNCATE"
  | "COMMENT"
  | "GRANT"
  | "REVOKE"
  | "REASSIGN"
  | "SECURITY"
  | "IMPORT"
  | "REFRESH"
  | "REINDEX"
  | "CLUSTER"
  | "VACUUM"
  | "ANALYZE"
  | "CHECKPOINT"
  | "EXPLAIN"
  | "SET"
  | "RESET"
  | "SHOW"
  | "DISCARD"
  | "LISTEN"
  | "UNLISTEN"
  | "NOTIFY"
  | "LOCK"
  | "LOAD"
  | "DO"
  | "CALL"
  | "???"
  | "";

/** The result of one statement. */
export interface QueryResult<Row = Record<string, unknown>> {
  /** First word of the command tag: `SELECT`, `INSERT`, `UPDATE`, `CREATE`, ... (`""` for an empty query). */
  command: CommandTag;
  /** Rows affected or returned, from the command tag; `null` when the tag carries no count. */
  rowCount: number | null;
  /** The rows, shaped by `rowMode`. */
  rows: Row[];
  /** The columns; empty for statements that return no rows. */
  fields: FieldDescription[];
  /**
   * Set only when a simple-protocol query string held several statements: the result of each,
   * in order. The enclosing result is the last of them.
   */
  results?: QueryResult<Row>[];
}
