// The JSON of Neon's SQL-over-HTTP protocol: parameters in, results and errors out, with the
// key order and value shapes of Neon's proxy (proxy/src/serverless/json.rs, sql_over_http.rs).

import type { PostgresError } from "../src/errors.ts";
import type { FieldDescription, QueryResult } from "../src/result.ts";

/**
 * Query parameters as Neon decodes them: JSON null is SQL NULL, a string is sent as is,
 * booleans, numbers and objects as their JSON text, arrays as array literals (`{1,"a",NULL}`).
 */
export function paramsFromJson(params: unknown, where: string): (string | null)[] {
  if (params === undefined) return [];
  if (!Array.isArray(params)) {
    throw new TypeError(`${where}: "params" must be an array, not ${jsonType(params)}`);
  }
  return params.map(paramText);
}

function paramText(value: unknown): string | null {
  if (value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return arrayLiteral(value);
  return JSON.stringify(value);
}

function arrayLiteral(values: unknown[]): string {
  const items = values.map((value) => {
    if (value === null) return "NULL";
    if (Array.isArray(value)) return arrayLiteral(value);
    // Strings and objects (as JSON text) are quoted; numbers and booleans go bare. Neon quotes
    // with JSON.stringify's rules, which garble a newline or a control character (`\n` reads
    // back as `n`); only `"` and `\` need escaping in an array literal.
    if (typeof value === "string") return quote(value);
    if (typeof value === "object") return quote(JSON.stringify(value));
    return JSON.stringify(value);
  });
  return `{${items.join(",")}}`;
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** Column descriptions in Neon's key order. */
function fieldsJson(fields: readonly FieldDescription[]): Record<string, unknown>[] {
  return fields.map((f) => ({
    name: f.name,
    dataTypeID: f.dataTypeID,
    tableID: f.tableID,
    columnID: f.columnID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    format: "text",
  }));
}

/**
 * One query's result: `rows` hold the server's text (`raw`) or Neon's JSON conversion of it,
 * as arrays (`arrayMode`) or objects keyed by column name.
 */
export function resultJson(
  result: QueryResult<unknown[]>,
  fields: readonly FieldDescription[],
  raw: boolean,
  arrayMode: boolean,
): Record<string, unknown> {
  const convert = raw ? undefined : fields.map((f) => converter(f.dataTypeID));
  const rows = result.rows.map((row) => {
    const values = convert === undefined
      ? row
      : row.map((value, i) => value === null ? null : convert[i](value as string));
    if (arrayMode) return values;
    // No prototype: a column named `__proto__` stays an ordinary key.
    const object: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < fields.length; i++) object[fields[i].name] = values[i];
    return object;
  });
  return {
    rowAsArray: arrayMode,
    fields: fieldsJson(fields),
    rows,
    command: result.command,
    rowCount: result.rowCount,
  };
}

/**
 * The error body of Neon's proxy, which Neon's driver reads on a 400: every server field for a
 * PostgresError; for the gateway's own errors the message, its SQLSTATE `code` (`""` when none)
 * and null for the rest.
 */
export function errorJson(
  message: string,
  error?: PostgresError,
  code = "",
): Record<string, unknown> {
  const text = (value: string | number | undefined) => value === undefined ? null : String(value);
  return {
    message: error?.message ?? message,
    code: error?.code ?? code,
    detail: text(error?.detail),
    hint: text(error?.hint),
    position: text(error?.position),
    internalPosition: text(error?.internalPosition),
    internalQuery: text(error?.internalQuery),
    severity: error?.severity ?? "",
    where: text(error?.where),
    table: text(error?.table),
    column: text(error?.column),
    schema: text(error?.schema),
    dataType: text(error?.dataType),
    constraint: text(error?.constraint),
    file: text(error?.file),
    line: text(error?.line),
    routine: text(error?.routine),
  };
}

// ---------------------------------------------------------------------------------------------
// Without Neon-Raw-Text-Output: bool → boolean, int2/int4 → number, finite floats → number,
// json/jsonb → JSON, arrays of those → JSON arrays, everything else stays text.

type Convert = (text: string) => unknown;

const text: Convert = (value) => value;
const bool: Convert = (value) => value === "t";
const integer: Convert = (value) => Number(value);
const float: Convert = (value) => {
  const n = Number(value);
  return Number.isFinite(n) ? n : value; // NaN and ±Infinity stay strings, as with Neon
};
const json: Convert = (value) => JSON.parse(value);

const SCALARS = new Map<number, Convert>([
  [16, bool],
  [21, integer],
  [23, integer],
  [700, float],
  [701, float],
  [114, json],
  [3802, json],
]);

// Array type OID → element type OID, for the built-in types.
const ARRAYS = new Map<number, number>([
  [1000, 16], // bool
  [1001, 17], // bytea
  [1002, 18], // char
  [1003, 19], // name
  [1005, 21], // int2
  [1007, 23], // int4
  [1009, 25], // text
  [1014, 1042], // bpchar
  [1015, 1043], // varchar
  [1016, 20], // int8
  [1021, 700], // float4
  [1022, 701], // float8
  [1028, 26], // oid
  [1115, 1114], // timestamp
  [1182, 1082], // date
  [1183, 1083], // time
  [1185, 1184], // timestamptz
  [1187, 1186], // interval
  [1231, 1700], // numeric
  [1270, 1266], // timetz
  [2951, 2950], // uuid
  [199, 114], // json
  [3807, 3802], // jsonb
  [651, 650], // cidr
  [1041, 869], // inet
  [791, 790], // money
  [143, 142], // xml
]);

function converter(oid: number): Convert {
  const element = ARRAYS.get(oid);
  if (element === undefined) return SCALARS.get(oid) ?? text;
  const convert = SCALARS.get(element) ?? text;
  return (value) => parseArray(value, convert);
}

/** A PostgreSQL array literal as nested JSON arrays; bounds decoration is dropped, as Neon does. */
function parseArray(literal: string, convert: Convert): unknown[] {
  let i = literal.startsWith("[") ? literal.indexOf("=") + 1 : 0;
  const n = literal.length;
  const malformed = () => new SyntaxError("could not parse postgres response: malformed array");
  const read = (): unknown[] => {
    if (literal[i] !== "{") throw malformed();
    i++;
    const out: unknown[] = [];
    if (literal[i] === "}") {
      i++;
      return out;
    }
    for (;;) {
      while (literal[i] === " ") i++;
      if (literal[i] === "{") out.push(read());
      else if (literal[i] === '"') {
        let value = "";
        for (i++; i < n && literal[i] !== '"'; i++) {
          if (literal[i] === "\\") i++;
          value += literal[i];
        }
        if (i >= n) throw malformed();
        i++;
        out.push(convert(value));
      } else {
        const start = i;
        while (i < n && literal[i] !== "," && literal[i] !== "}") i++;
        const token = literal.slice(start, i).trim();
        out.push(token === "NULL" ? null : convert(token));
      }
      while (literal[i] === " ") i++;
      if (literal[i] === ",") i++;
      else if (literal[i] === "}") {
        i++;
        return out;
      } else throw malformed();
    }
  };
  return read();
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
