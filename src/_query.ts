// One query in flight: collects the messages between its first response and its
// ReadyForQuery into a QueryResult, decoding each value with the parser chosen for its column.

import {
  cstringEnd,
  decodeText,
  protocolError,
  readInt16,
  readInt32,
  readParameterTypes,
  truncated,
} from "./_backend.ts";
import { ConnectionError } from "./errors.ts";
import type { CommandTag, FieldDescription, QueryResult, RowMode, TypeParsers } from "./result.ts";
import { serializeParam, type TextParser } from "./types.ts";
import type { ColumnTypes } from "./_column_types.ts";
import type { BinaryDecoder } from "./_binary.ts";
import type { Statement } from "./_statement_cache.ts";

const NO_FIELDS: FieldDescription[] = [];
const NO_FORMATS: number[] = [];
const MAX_PARAMETERS = 65535;

/**
 * Serializes query parameters to their text form; `undefined` (no parameters) selects the
 * simple protocol. Throws TypeError/RangeError for what cannot be sent, naming the parameter
 * (`$2`), before anything is written.
 */
export function encodeParams(params: unknown): (string | null)[] | undefined {
  if (params === undefined || params === null) return undefined;
  if (!Array.isArray(params)) throw new TypeError("Query parameters must be an array");
  if (params.length > MAX_PARAMETERS) {
    throw new RangeError(
      `A query takes at most ${MAX_PARAMETERS} parameters, got ${params.length}`,
    );
  }
  const values: (string | null)[] = new Array(params.length);
  for (let i = 0; i < params.length; i++) {
    try {
      values[i] = serializeParam(params[i]);
    } catch (error) {
      throw atParameter(error, i);
    }
  }
  return values;
}

/** The error of serializing parameter `index`, of the same class, saying which one it is. */
function atParameter(error: unknown, index: number): Error {
  const message = `Query parameter $${index + 1}: ${
    error instanceof Error ? error.message : String(error)
  }`;
  return error instanceof RangeError
    ? new RangeError(message, { cause: error })
    : new TypeError(message, { cause: error });
}

/** Validates the `rowMode` option (default `"object"`). */
export function checkRowMode(rowMode: unknown): RowMode {
  if (rowMode === undefined) return "object";
  if (rowMode !== "object" && rowMode !== "array") {
    throw new TypeError(`rowMode must be "object" or "array", not ${String(rowMode)}`);
  }
  return rowMode;
}

/**
 * A column whose type is looked up before its values are decoded: the rows it is in, its key in
 * each row (index, name, or -1 when a later column of the same name took its place), its name
 * and its type.
 */
interface DeferredColumn {
  rows: unknown[];
  key: string | number;
  name: string;
  oid: number;
}

/** A query that has been written and waits for its ReadyForQuery. */
export class PendingQuery {
  readonly #rowMode: RowMode;
  /** The query's own parsers (pg's `types`), or `undefined` for edgepool's. */
  readonly #types: TypeParsers | undefined;
  /** The connection's parsers, for a query without its own. */
  readonly #columns: ColumnTypes;
  /** Sent with the extended protocol (Parse/Bind/Execute/Sync) rather than a simple Query. */
  readonly extended: boolean;
  readonly #resolve: (result: QueryResult) => void;
  readonly #reject: (error: unknown) => void;
  /** The caller has its answer (or gave up): later messages are consumed but not delivered. */
  settled = false;
  /** The first error seen; the query rejects with it at ReadyForQuery. */
  error: unknown = null;
  /** A ParseComplete arrived: a named statement this query prepared exists now. */
  parsed = false;
  /** Its statement's parameter types, when it was described (ParameterDescription). */
  paramTypes: number[] | null = null;
  /** Its portal has rows left (an Execute with a row limit stopped short of the end). */
  suspended = false;
  /** Set by an abort that happened while an earlier query was still running. */
  cancelWanted = false;
  /** Removes the abort listener, if any. */
  cleanup: (() => void) | null = null;
  /** Its `queryTimeout` in ms (0: none), and the clock time (`Date.now()`) it ends at. */
  timeout = 0;
  deadline = 0;
  /** The server entered COPY mode for this query, which `query()` does not take part in. */
  #copy: "in" | "out" | null = null;

  #fields: FieldDescription[] = NO_FIELDS;
  #names: string[] = [];
  #parsers: (TextParser | undefined)[] = [];
  /** Per column, the decoder of a column sent in binary; null when all are text. */
  #decoders: (BinaryDecoder | undefined)[] | null = null;
  #rows: unknown[] = [];
  #results: QueryResult[] | null = null;
  #last: QueryResult | null = null;
  /** Columns of types to look up first (see _column_types.ts), decoded as text for now. */
  #deferred: DeferredColumn[] | null = null;

  constructor(
    rowMode: RowMode,
    types: TypeParsers | undefined,
    columns: ColumnTypes,
    extended: boolean,
    resolve: (result: QueryResult) => void,
    reject: (error: unknown) => void,
  ) {
    this.#rowMode = rowMode;
    this.#types = types;
    this.#columns = columns;
    this.extended = extended;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Handles a message of this query's response; `false` when `type` is not one of those. */
  message(type: number, buf: Uint8Array, start: number, end: number): boolean {
    switch (type) {
      case 0x44: // D: DataRow
        this.#dataRow(buf, start, end);
        break;
      case 0x54: // T: RowDescription
        this.#rowDescription(buf, start, end);
        break;
      case 0x43: // C: CommandComplete
        this.#commandComplete(buf, start, end);
        break;
      case 0x6e: // n: NoData
        this.#fields = NO_FIELDS;
        this.#names = [];
        this.#parsers = [];
        this.#decoders = null;
        break;
      case 0x49: // I: EmptyQueryResponse
        this.#complete("", null);
        break;
      case 0x31: // 1: ParseComplete
        this.parsed = true;
        break;
      case 0x74: // t: ParameterDescription
        this.paramTypes = readParameterTypes(buf, start, end);
        break;
      case 0x48: // H: CopyOutResponse
        this.copying("out");
        break;
      case 0x64: // d: CopyData
      case 0x63: // c: CopyDone
        // COPY TO STDOUT's data: consumed, not kept (the query rejects at ReadyForQuery).
      case 0x32: // 2: BindComplete
      case 0x33: // 3: CloseComplete
        break;
      case 0x73: // s: PortalSuspended: the rows asked for came, and the portal has more
        this.suspended = true;
        this.#complete("", null);
        break;
      default:
        return false;
    }
    return true;
  }

  #rowDescription(buf: Uint8Array, start: number, end: number): void {
    if (end - start < 2) throw truncated("RowDescription");
    const count = readInt16(buf, start);
    if (count < 0) throw protocolError(`RowDescription has a negative column count ${count}`);
    const fields: FieldDescription[] = new Array(count);
    const names: string[] = new Array(count);
    let pos = start + 2;
    for (let i = 0; i < count; i++) {
      const stop = cstringEnd(buf, pos, end);
      if (stop + 19 > end) throw truncated("RowDescription");
      const name = decodeText(buf, pos, stop);
      pos = stop + 1;
      fields[i] = {
        name,
        tableID: readInt32(buf, pos) >>> 0,
        columnID: readInt16(buf, pos + 4),
        dataTypeID: readInt32(buf, pos + 6) >>> 0,
        dataTypeSize: readInt16(buf, pos + 10),
        dataTypeModifier: readInt32(buf, pos + 12),
        format: readInt16(buf, pos + 16) === 1 ? "binary" : "text",
      };
      names[i] = name;
      pos += 18;
    }
    this.describe(fields, names);
  }

  /**
   * The columns of the result to come, `names` being their names: from its RowDescription, or
   * known from an earlier run of the same prepared statement (which the connection then does
   * not ask the server to describe again). Picks each column's parser.
   */
  describe(fields: FieldDescription[], names: string[]): void {
    const count = fields.length;
    const parsers: (TextParser | undefined)[] = new Array(count);
    const types = this.#types;
    const columns = this.#columns;
    for (let i = 0; i < count; i++) {
      const dataTypeID = fields[i].dataTypeID;
      if (types !== undefined) parsers[i] = this.#ownParser(types, dataTypeID);
      else {
        const parse = columns.parser(dataTypeID);
        if (parse === null) {
          (this.#deferred ??= []).push({
            rows: this.#rows,
            key: i,
            name: names[i],
            oid: dataTypeID,
          });
        } else parsers[i] = parse;
      }
    }
    this.#fields = fields;
    this.#names = names;
    this.#parsers = parsers;
    this.#decoders = null;
    if (this.#deferred !== null && this.#rowMode === "object") {
      for (const column of this.#deferred) {
        if (column.rows !== this.#rows || typeof column.key !== "number") continue;
        // Of columns with one name, the row keeps the last: an earlier one is not converted.
        column.key = names.lastIndexOf(names[column.key]) === column.key ? names[column.key] : -1;
      }
    }
  }

  /**
   * A run of prepared statement `statement`, whose columns are known before its Bind: sets them
   * up as {@link describe} does, asking for those of a type cheaper to read in binary in binary
   * (see _binary.ts), unless the query has its own parsers (pg's `types` read text). `session`:
   * the session's settings (ParameterStatus). Returns the Bind's result format codes (none: all
   * text).
   */
  bound(statement: Statement, session: Readonly<Record<string, string>>): number[] {
    const plan = this.#types === undefined ? this.#columns.binaryPlan(statement, session) : null;
    if (plan === null) {
      this.describe(statement.fields!, statement.names);
      return NO_FORMATS;
    }
    this.describe(plan.fields, statement.names);
    this.#decoders = plan.decoders;
    return plan.formats;
  }

  /** The query's own parser for `oid`; one that is not a function fails the query. */
  #ownParser(types: TypeParsers, oid: number): TextParser | undefined {
    let parse: unknown;
    try {
      parse = types.getTypeParser(oid, "text");
    } catch (error) {
      this.error ??= error;
      return undefined;
    }
    if (typeof parse === "function") return parse as TextParser;
    this.error ??= new TypeError(
      `types.getTypeParser(${oid}, "text") returned ${typeof parse}, not a function`,
    );
    return undefined;
  }

  #dataRow(buf: Uint8Array, start: number, end: number): void {
    if (this.error !== null || this.settled) return;
    if (end - start < 2) throw truncated("DataRow");
    const count = readInt16(buf, start);
    const parsers = this.#parsers;
    const decoders = this.#decoders;
    if (count !== parsers.length) {
      throw protocolError(`DataRow has ${count} columns, RowDescription had ${parsers.length}`);
    }
    const names = this.#names;
    const array = this.#rowMode === "array";
    const row: Record<string, unknown> | unknown[] = array ? new Array(count) : {};
    let pos = start + 2;
    let i = 0;
    try {
      for (; i < count; i++) {
        if (pos + 4 > end) throw truncated("DataRow");
        const length = readInt32(buf, pos);
        pos += 4;
        let value: unknown = null;
        if (length < -1) throw protocolError(`DataRow has a value of length ${length}`);
        if (length >= 0) {
          if (pos + length > end) throw truncated("DataRow");
          const decode = decoders === null ? undefined : decoders[i];
          if (decode !== undefined) value = decode(buf, pos, pos += length);
          else {
            const text = decodeText(buf, pos, pos += length);
            const parse = parsers[i];
            value = parse === undefined ? text : parse(text);
          }
        }
        if (array) (row as unknown[])[i] = value;
        else if (names[i] === "__proto__") {
          // Assignment would replace the row's prototype: define an own property instead.
          Object.defineProperty(row, names[i], { value, enumerable: true, writable: true });
        } else (row as Record<string, unknown>)[names[i]] = value;
      }
      this.#rows.push(row);
    } catch (error) {
      if (error instanceof ConnectionError) throw error;
      // A value the parser cannot read (say, malformed JSON) fails this query, not the connection.
      this.error = new TypeError(
        `Cannot decode the value of column '${names[i]}': ` +
          (error instanceof Error ? error.message : String(error)),
        { cause: error },
      );
    }
  }

  #commandComplete(buf: Uint8Array, start: number, end: number): void {
    const tag = decodeText(buf, start, cstringEnd(buf, start, end));
    const space = tag.indexOf(" ");
    const command = (space < 0 ? tag : tag.slice(0, space)) as CommandTag;
    let rowCount: number | null = null;
    const lastSpace = tag.lastIndexOf(" ");
    if (lastSpace > 0) {
      const count = tag.slice(lastSpace + 1);
      if (count.length > 0 && count.charCodeAt(0) >= 48 && count.charCodeAt(0) <= 57) {
        rowCount = Number(count);
      }
    }
    this.#complete(command, rowCount);
  }

  #complete(command: CommandTag, rowCount: number | null): void {
    const result: QueryResult = {
      command,
      rowCount,
      rows: this.#rows as QueryResult["rows"],
      fields: this.#fields,
    };
    if (this.#last !== null) (this.#results ??= [this.#last]).push(result);
    this.#last = result;
    this.#rows = [];
    this.#fields = NO_FIELDS;
  }

  /**
   * The server answered CopyInResponse (`in`) or CopyOutResponse (`out`): the query rejects
   * with `UNSUPPORTED` at its ReadyForQuery, whatever else it returns.
   */
  copying(direction: "in" | "out"): void {
    this.#copy ??= direction;
  }

  /**
   * The server waits for COPY data: `true` if this query sends it itself (`copyFrom`), `false`
   * for the connection to end the COPY with CopyFail.
   */
  copyIn(): boolean {
    return false;
  }

  /** A transport read of `bytes` bytes (with what the reader held) is about to be parsed. */
  readStarts(_bytes: number): void {}

  /** That read's messages have all been handled. */
  readEnds(): void {}

  /** ReadyForQuery arrived: deliver the result or the error. */
  finish(): void {
    this.cleanup?.();
    if (this.settled) return;
    this.settled = true;
    if (this.#copy !== null) return this.#reject(copyUnsupported(this.#copy, this.error));
    if (this.error !== null) return this.#reject(this.error);
    const deferred = this.#deferred;
    if (deferred === null) return this.#deliver();
    this.#columns.whenKnown(deferred.map((column) => column.oid)).then(() => {
      try {
        this.#convert(deferred);
      } catch (error) {
        return this.#reject(error);
      }
      this.#deliver();
    });
  }

  /** Decodes the values of the deferred columns, now that their types have been looked up. */
  #convert(deferred: DeferredColumn[]): void {
    for (const { rows, key, name, oid } of deferred) {
      const parse = this.#columns.parser(oid);
      if (typeof parse !== "function" || key === -1) continue;
      for (const row of rows as Record<string | number, unknown>[]) {
        const text = row[key];
        if (typeof text !== "string") continue;
        try {
          row[key] = parse(text);
        } catch (error) {
          throw new TypeError(
            `Cannot decode the value of column '${name}': ${
              error instanceof Error ? error.message : String(error)
            }`,
            { cause: error },
          );
        }
      }
    }
  }

  #deliver(): void {
    const last = this.#last ?? { command: "", rowCount: null, rows: [], fields: NO_FIELDS };
    if (this.#results !== null) last.results = this.#results;
    this.#resolve(last);
  }

  /** Rejects now (abort, connection lost); messages still due are consumed silently. */
  fail(error: unknown): void {
    this.cleanup?.();
    if (this.settled) return;
    this.settled = true;
    this.#reject(error);
  }
}

/** The `UNSUPPORTED` error of a COPY to or from the client; `cause`: the server's own error. */
function copyUnsupported(direction: "in" | "out", cause: unknown): ConnectionError {
  const [what, done, instead] = direction === "in"
    ? [
      "FROM STDIN",
      "nothing was copied",
      "Use copyFrom(sql, source)",
    ]
    : ["TO STDOUT", "its data was discarded", "Use copyTo(sql)"];
  return new ConnectionError(
    "UNSUPPORTED",
    `COPY ... ${what} is not supported by query(): ${done}, and the connection stays ` +
      `usable. ${instead} instead`,
    cause === null ? undefined : { cause },
  );
}
