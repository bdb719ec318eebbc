// Reading Neon's HTTP answers: a result ({fields, rows, command, rowCount}, rows as arrays of
// text) into the QueryResult a socket connection gives for the same query, and an error answer
// into the same PostgresError, or a ConnectionError that says what the HTTP status means.

import { ConnectionError, PostgresError, type PostgresErrorFields } from "./errors.ts";
import type { CommandTag, FieldDescription, QueryResult, RowMode, TypeParsers } from "./result.ts";
import { type TextParser, textParser } from "./types.ts";

/**
 * Turns one result of a Neon HTTP answer into a {@link QueryResult}, its values read by
 * `types` (pg's per-query parsers) when given, else by edgepool's.
 */
export function decodeHttpResult(
  answer: unknown,
  rowMode: RowMode,
  bigint: boolean,
  types?: TypeParsers,
): QueryResult {
  const a = answer as Record<string, unknown> | null;
  if (typeof a !== "object" || a === null || !Array.isArray(a.rows)) {
    throw new ConnectionError(
      "PROTOCOL_ERROR",
      "Unexpected answer from the SQL endpoint: no rows in the result",
    );
  }
  const fields = (Array.isArray(a.fields) ? a.fields : []).map(field);
  const names = fields.map((f) => f.name);
  const options = { bigint };
  const parsers = fields.map((f) =>
    types === undefined ? textParser(f.dataTypeID, options) : ownParser(types, f.dataTypeID)
  );
  const rows: unknown[] = new Array(a.rows.length);
  for (let r = 0; r < rows.length; r++) {
    const values = rowValues(a.rows[r], names);
    for (let i = 0; i < values.length; i++) values[i] = decode(values[i], parsers[i], names[i]);
    rows[r] = rowMode === "array" ? values : rowObject(names, values);
  }
  const rowCount = typeof a.rowCount === "number" ? a.rowCount : null;
  return {
    command: (typeof a.command === "string" ? a.command : "") as CommandTag,
    rowCount,
    rows: rows as QueryResult["rows"],
    fields,
  };
}

/** The query's own parser for `oid`, as a socket connection asks for it (src/_query.ts). */
function ownParser(types: TypeParsers, oid: number): TextParser {
  const parse: unknown = types.getTypeParser(oid, "text");
  if (typeof parse === "function") return parse as TextParser;
  throw new TypeError(
    `types.getTypeParser(${oid}, "text") returned ${typeof parse}, not a function`,
  );
}

function field(raw: unknown): FieldDescription {
  const f = (raw ?? {}) as Record<string, unknown>;
  return {
    name: String(f.name ?? ""),
    tableID: integer(f.tableID, 0),
    columnID: integer(f.columnID, 0),
    dataTypeID: integer(f.dataTypeID, 0),
    dataTypeSize: integer(f.dataTypeSize, -1),
    dataTypeModifier: integer(f.dataTypeModifier, -1),
    format: f.format === "binary" ? "binary" : "text",
  };
}

function integer(value: unknown, fallback: number): number {
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isInteger(n) ? n : fallback;
}

/** A row's values in column order: rows are arrays (Array-Mode), or objects if it was ignored. */
function rowValues(row: unknown, names: string[]): unknown[] {
  if (Array.isArray(row)) return [...row];
  if (typeof row === "object" && row !== null) {
    return names.map((name) => (row as Record<string, unknown>)[name] ?? null);
  }
  throw new ConnectionError(
    "PROTOCOL_ERROR",
    "Unexpected answer from the SQL endpoint: a row is neither an array nor an object",
  );
}

function decode(value: unknown, parse: TextParser | undefined, name: string): unknown {
  // A server that ignored Neon-Raw-Text-Output sends numbers and booleans: keep them.
  if (typeof value !== "string" || parse === undefined) return value ?? null;
  try {
    return parse(value);
  } catch (error) {
    // As on a socket connection: a value the parser cannot read fails the query.
    throw new TypeError(
      `Cannot decode the value of column '${name}': ` +
        (error instanceof Error ? error.message : String(error)),
      { cause: error },
    );
  }
}

function rowObject(names: string[], values: unknown[]): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) {
    if (names[i] === "__proto__") {
      // Assignment would replace the row's prototype: define an own property instead.
      Object.defineProperty(row, "__proto__", {
        value: values[i],
        enumerable: true,
        writable: true,
      });
    } else {
      row[names[i]] = values[i];
    }
  }
  return row;
}

const TEXT_FIELDS = [
  "detail",
  "hint",
  "internalQuery",
  "where",
  "schema",
  "table",
  "column",
  "dataType",
  "constraint",
  "file",
  "routine",
] as const;
const NUMBER_FIELDS = ["position", "internalPosition", "line"] as const;
const SHOWN_BODY = 500;

/**
 * The error for a non-2xx answer. `text` is the body, already scrubbed of the password;
 * `endpoint` is the endpoint as shown in messages.
 *
 * - 400 with a SQLSTATE: the server's error, as a {@link PostgresError} with every field.
 * - other 4xx (and a 400 without one: bad connection string, refused login): the request was
 *   refused before anything ran, `CONNECT_FAILED`.
 * - 5xx and anything else: the statement may or may not have run (500: an internal error or a
 *   cancelled query; 507: the result is over the server's limit), `CONNECTION_LOST`.
 */
export function decodeHttpError(status: number, text: string, endpoint: string): Error {
  let body: Record<string, unknown> | null = null;
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) body = parsed;
  } catch {
    // not JSON: shown as text below
  }
  const code = typeof body?.code === "string" ? body.code : "";
  const serverMessage = typeof body?.message === "string" ? body.message : undefined;
  if (status === 400 && body !== null && code !== "" && serverMessage !== undefined) {
    return new PostgresError(postgresFields(body, code, serverMessage));
  }
  let said = serverMessage ?? text.trim();
  if (said.length > SHOWN_BODY) said = said.slice(0, SHOWN_BODY) + "…";
  if (said === "") said = "(empty body)";
  if (status === 507) said += " (the result is larger than the server's response limit)";
  const what = `HTTP ${status} from ${endpoint}: ${said}`;
  return status >= 400 && status < 500
    ? new ConnectionError("CONNECT_FAILED", what)
    : new ConnectionError("CONNECTION_LOST", what);
}

function postgresFields(
  body: Record<string, unknown>,
  code: string,
  message: string,
): PostgresErrorFields {
  const fields: PostgresErrorFields = {
    severity: typeof body.severity === "string" && body.severity !== "" ? body.severity : "ERROR",
    code,
    message,
  };
  for (const name of TEXT_FIELDS) {
    const value = body[name];
    if (typeof value === "string") fields[name] = value;
  }
  for (const name of NUMBER_FIELDS) {
    const value = body[name];
    // Neon sends these as strings ("position": "8"); PostgresError holds numbers.
    const n = typeof value === "string" && value !== "" ? Number(value) : value;
    if (typeof n === "number" && Number.isFinite(n)) fields[name] = n;
  }
  return fields;
}
