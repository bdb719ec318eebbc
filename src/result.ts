/**
 * What a query returns.
 *
 * @module
 */

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
  /** Wire format of the values: always `"text"` for now. */
  format: "text" | "binary";
}

/** The result of one statement. */
export interface QueryResult<Row = Record<string, unknown>> {
  /** First word of the command tag: `SELECT`, `INSERT`, `UPDATE`, `CREATE`, ... (`""` for an empty query). */
  command: string;
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
