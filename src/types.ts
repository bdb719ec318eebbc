/**
 * PostgreSQL text-format codecs: {@link textParser} turns the text of a column value into a JS
 * value, {@link serializeParam} turns a JS value into the text of a query parameter.
 *
 * Every value of every row goes through a parser, so parsers are picked once per column and are
 * plain charCode loops that allocate nothing beyond their result.
 *
 * @module
 */

import { arrayOf } from "./_array.ts";

import type { TypeParser } from "./result.ts";

/**
 * OIDs of the built-in types edgepool knows. Array types are the element name prefixed with
 * `_`, as in `pg_type`.
 *
 * @example
 * ```ts
 * import { Oid } from "@edgepool/edgepool";
 * console.assert(Oid.timestamptz === 1184 && Oid._int4 === 1007);
 * ```
 */
export const Oid = {
  bool: 16,
  bytea: 17,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
  _bool: 1000,
  _bytea: 1001,
  _name: 1003,
  _int2: 1005,
  _int4: 1007,
  _text: 1009,
  _bpchar: 1014,
  _varchar: 1015,
  _int8: 1016,
  _float4: 1021,
  _float8: 1022,
  _oid: 1028,
  _date: 1182,
  _timestamp: 1115,
  _timestamptz: 1185,
  _numeric: 1231,
  _uuid: 2951,
  _json: 199,
  _jsonb: 3807,
} as const;

/** Turns the text form of a value into a JS value. */
export type TextParser = (text: string) => unknown;

const BACKSLASH = 92;
const QUOTE = 34;

// ---------------------------------------------------------------------------------------------
// Scalars

const parseBool: TextParser = (text) => text === "t";
// Number() already reads "NaN", "Infinity" and "-Infinity", the float specials PostgreSQL prints.
const parseNumber: TextParser = (text) => +text;
const parseBigInt: TextParser = (text) => BigInt(text);
const parseJson: TextParser = (text) => JSON.parse(text);

// Hex digit values by char code, -1 for anything else.
const HEX_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUES[48 + i] = i;
for (let i = 0; i < 6; i++) HEX_VALUES[65 + i] = HEX_VALUES[97 + i] = 10 + i;

function hexValue(code: number): number {
  return code < 128 ? HEX_VALUES[code] : -1;
}

const parseBytea: TextParser = (text) => {
  if (text.charCodeAt(0) === BACKSLASH && text.charCodeAt(1) === 120) return parseByteaHex(text);
  return parseByteaEscape(text);
};

/** `\x0a1b...`, the default `bytea_output`. */
function parseByteaHex(text: string): Uint8Array {
  const n = text.length;
  if ((n & 1) !== 0) throw new SyntaxError("Malformed bytea: odd number of hex digits");
  const out = new Uint8Array((n - 2) >> 1);
  for (let i = 2, j = 0; i < n; i += 2, j++) {
    const hi = hexValue(text.charCodeAt(i));
    const lo = hexValue(text.charCodeAt(i + 1));
    if ((hi | lo) < 0) throw new SyntaxError(`Malformed bytea: not a hex digit at ${i}`);
    out[j] = (hi << 4) | lo;
  }
  return out;
}

/**
 * The legacy `bytea_output = escape`: `\\` is a backslash, `\ooo` an octal byte. Rare
 * enough that a plain array, copied once, serves.
 */
function parseByteaEscape(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c === BACKSLASH && text.charCodeAt(i + 1) === BACKSLASH) i++;
    else if (c === BACKSLASH) {
      const a = text.charCodeAt(i + 1) - 48, b = text.charCodeAt(i + 2) - 48;
      c = text.charCodeAt(i + 3) - 48;
      if ((a | b | c) >>> 0 > 7 || a > 3) {
        throw new SyntaxError(`Malformed bytea: bad escape at ${i}`);
      }
      c |= (a << 6) | (b << 3);
      i += 3;
    }
    out.push(c);
  }
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/** The two digits at `i` as a number, or -1 when they are not two digits. */
function twoDigits(text: string, i: number): number {
  const a = text.charCodeAt(i) - 48, b = text.charCodeAt(i + 1) - 48;
  return (a >>> 0) > 9 || (b >>> 0) > 9 ? -1 : a * 10 + b;
}

/**
 * Reads ISO DateStyle output: `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]`, the year
 * possibly longer than four digits. Anything else (another DateStyle, `infinity`, a date out of
 * the range of Date) comes back as the original string, never as a wrong Date. A timestamp
 * without time zone has no offset and is read as UTC. Microseconds are truncated to
 * milliseconds.
 */
const parseTimestamp: TextParser = (text) => {
  const n = text.length;
  let year = 0, i = 0;
  for (; i < n; i++) {
    const d = text.charCodeAt(i) - 48;
    if ((d >>> 0) > 9) break;
    year = year * 10 + d;
  }
  if (i < 4 || text.charCodeAt(i) !== 45 || text.charCodeAt(i + 3) !== 45) return text;
  const month = twoDigits(text, i + 1);
  const day = twoDigits(text, i + 4);
  const sep = text.charCodeAt(i + 6);
  if (sep !== 32 && sep !== 84) return text; // ' ' or 'T'
  const hour = twoDigits(text, i + 7);
  const minute = twoDigits(text, i + 10);
  const second = twoDigits(text, i + 13);
  if (
    month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || minute < 0 || second < 0 ||
    text.charCodeAt(i + 9) !== 58 || text.charCodeAt(i + 12) !== 58
  ) return text;
  i += 15;

  let ms = 0;
  if (text.charCodeAt(i) === 46) { // '.'
    // Only the first three digits count: Date holds milliseconds.
    i++;
    for (let scale = 100; i < n; i++) {
      const d = text.charCodeAt(i) - 48;
      if ((d >>> 0) > 9) break;
      ms += d * scale;
      scale = (scale / 10) | 0;
    }
  }

  let offset = 0; // seconds east of UTC
  const sign = text.charCodeAt(i);
  if (sign === 43 || sign === 45) { // '+' or '-'
    // HH, then :MM and :SS if present.
    for (let unit = 3600; unit >= 1; unit /= 60) {
      const value = twoDigits(text, i + 1);
      if (value < 0) return text;
      offset += value * unit;
      i += 3;
      if (text.charCodeAt(i) !== 58) break;
    }
    if (sign === 45) offset = -offset;
  } else if (sign === 90) {
    i++; // 'Z': not PostgreSQL output, but what serializeParam sends, so values round-trip
  }

  if (i !== n) {
    // " BC" is the only suffix ISO output has. 1 BC is ISO year 0, 2 BC is -1.
    if (
      i + 3 !== n || text.charCodeAt(i) !== 32 || text.charCodeAt(i + 1) !== 66 ||
      text.charCodeAt(i + 2) !== 67
    ) return text;
    year = 1 - year;
  }

  let time = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  if (year >= 0 && year < 100) {
    // Date.UTC reads years 0..99 as 1900..1999.
    const date = new Date(time);
    date.setUTCFullYear(year, month - 1, day);
    time = date.getTime();
  }
  time -= offset * 1000;
  return time === time && Math.abs(time) <= 8.64e15 ? new Date(time) : text;
};

// ---------------------------------------------------------------------------------------------
// Parser tables, built once

// By type OID, as in {@link Oid}, written out so that a bundle that does not use Oid leaves it
// out: [type, its array type, the parser (none: the text as is)].
const TYPES: [number, number, TextParser?][] = [
  [16, 1000, parseBool], // bool
  [17, 1001, parseBytea], // bytea
  [21, 1005, parseNumber], // int2
  [23, 1007, parseNumber], // int4
  [26, 1028, parseNumber], // oid
  [700, 1021, parseNumber], // float4
  [701, 1022, parseNumber], // float8
  [114, 199, parseJson], // json
  [3802, 3807, parseJson], // jsonb
  [1114, 1115, parseTimestamp], // timestamp
  [1184, 1185, parseTimestamp], // timestamptz
  [20, 1016], // int8
  [1700, 1231], // numeric
  [1082, 1182], // date
  [25, 1009], // text
  [1043, 1015], // varchar
  [1042, 1014], // bpchar
  [19, 1003], // name
  [2950, 2951], // uuid
];
const INT8 = 20;
const INT8_ARRAY = 1016;

const parsers = new Map<number, TextParser>();
for (const [oid, arrayOid, parse] of TYPES) {
  if (parse !== undefined) parsers.set(oid, parse);
  parsers.set(arrayOid, arrayOf(parse));
}

const int8BigInt = parseBigInt;
const int8ArrayBigInt = arrayOf(parseBigInt);

/**
 * The parser for a column of type `oid`, or `undefined` when the text is returned as is. Call it
 * once per column, not per value.
 *
 * | type | JS value |
 * |---|---|
 * | `bool` | boolean |
 * | `int2`, `int4`, `oid`, `float4`, `float8` | number (`NaN`, `Infinity`, `-Infinity` included) |
 * | `int8` | string, or bigint with `options.bigint` |
 * | `numeric` | string (no JS number holds it exactly) |
 * | `json`, `jsonb` | `JSON.parse` of the text |
 * | `bytea` | Uint8Array (hex or the legacy escape format) |
 * | `date` | string `YYYY-MM-DD` (a Date would shift with the local time zone) |
 * | `timestamptz` | Date |
 * | `timestamp` | Date, reading the value as UTC |
 * | arrays of the above | nested JS arrays, `NULL` elements as `null` |
 * | `text`, `varchar`, `bpchar`, `name`, `uuid`, unknown OIDs | `undefined`: keep the string |
 *
 * Timestamps keep milliseconds (microseconds are truncated). `infinity`, `-infinity`, dates
 * out of the range of Date, and output of a DateStyle other than ISO are returned as the
 * original string, never as a wrong Date.
 *
 * @param oid The type OID of the column, from RowDescription.
 * @param options `bigint`: parse `int8` as bigint instead of string. Default `false`.
 * @returns The parser, or `undefined` to keep the text.
 *
 * @example
 * ```ts
 * import { Oid, textParser } from "./types.ts";
 * const parseTs = textParser(Oid.timestamptz, { bigint: false })!;
 * const date = parseTs("2024-02-29 13:45:00.123+05:30") as Date;
 * console.assert(date.toISOString() === "2024-02-29T08:15:00.123Z");
 * const parseInts = textParser(Oid._int8, { bigint: true })!;
 * console.assert((parseInts("{1,NULL}") as unknown[])[0] === 1n);
 * console.assert(textParser(Oid.text, { bigint: false }) === undefined);
 * ```
 */
export function textParser(
  oid: number,
  options: { bigint?: boolean } = {},
): TextParser | undefined {
  if (options.bigint) {
    if (oid === INT8) return int8BigInt;
    if (oid === INT8_ARRAY) return int8ArrayBigInt;
  }
  return parsers.get(oid);
}

const keepText: TextParser = (text) => text;

/**
 * edgepool's parsers in pg's shape, for a query's `types` option: a query that wants the
 * server's text for a few types and edgepool's values for the rest (the table of
 * {@link textParser}; `int8` as a string) asks this one for the rest.
 *
 * @example
 * ```ts
 * import { Oid, typeParsers } from "@edgepool/edgepool";
 * const types = {
 *   getTypeParser: (oid: number) =>
 *     oid === Oid.timestamptz ? (text: string) => text : typeParsers.getTypeParser(oid),
 * };
 * console.assert(types.getTypeParser(Oid.int4)("42") === 42);
 * console.assert(types.getTypeParser(Oid.timestamptz)("2024-01-01 00:00:00+00") !== undefined);
 * // await pool.query({ text: "select now()", types });
 * ```
 */
export const typeParsers: {
  /** The parser of `oid`'s text (one that keeps the text for types edgepool leaves as text). */
  getTypeParser(oid: number, format?: "text" | "binary"): TypeParser;
} = {
  getTypeParser: (oid) => parsers.get(oid) ?? keepText,
};

// ---------------------------------------------------------------------------------------------
// Serialization

// Char codes of the two hex digits of each byte, at 2 * byte.
const HEX_CODES = new Uint8Array(512);
for (let b = 0; b < 256; b++) {
  HEX_CODES[2 * b] = "0123456789abcdef".charCodeAt(b >> 4);
  HEX_CODES[2 * b + 1] = "0123456789abcdef".charCodeAt(b & 15);
}
const asciiDecoder = new TextDecoder();

function serializeBytes(bytes: Uint8Array): string {
  const out = new Uint8Array(2 + 2 * bytes.length);
  out[0] = BACKSLASH;
  out[1] = 120; // 'x'
  for (let i = 0, j = 2; i < bytes.length; i++, j += 2) {
    const k = bytes[i] << 1;
    out[j] = HEX_CODES[k];
    out[j + 1] = HEX_CODES[k + 1];
  }
  return asciiDecoder.decode(out);
}

/**
 * ISO 8601, except that PostgreSQL wants years past 9999 without toISOString's `+0` padding,
 * and years before 1 AD as `BC` (ISO year 0 is 1 BC).
 */
function serializeDate(date: Date): string {
  const time = date.getTime();
  if (time !== time) throw new RangeError("Invalid Date parameter");
  const iso = date.toISOString();
  const year = date.getUTCFullYear();
  if (year >= 1 && year <= 9999) return iso;
  const rest = iso.slice(iso.indexOf("-", 1)); // after the year: "0000" or signed "-000043"
  return year > 0 ? year + rest : String(1 - year).padStart(4, "0") + rest + " BC";
}

/** Double-quotes an array element, backslash-escaping `"` and `\`. */
function quoteElement(text: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE || c === BACKSLASH) {
      out += text.slice(start, i) + "\\";
      start = i;
    }
  }
  return out + text.slice(start) + '"';
}

/**
 * The array literal of `values`, nested arrays as nested braces, `null` and `undefined` as
 * `NULL`, each other element's text by `element` (default: {@link serializeParam}).
 */
export function serializeArray(
  values: readonly unknown[],
  element: (value: unknown) => string | null = serializeParam,
): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ",";
    const value = values[i];
    if (value === null || value === undefined) out += "NULL";
    else if (Array.isArray(value)) out += serializeArray(value, element);
    else out += quoteElement(element(value)!);
  }
  return out + "}";
}

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const wellFormed: (text: string) => boolean = typeof "".isWellFormed === "function"
  ? (text) => text.isWellFormed()
  : (text) => !LONE_SURROGATE.test(text);

function loneSurrogate(text: string): TypeError {
  const at = LONE_SURROGATE.exec(text)!.index;
  const unit = text.charCodeAt(at).toString(16);
  return new TypeError(
    `Cannot send a string with a lone surrogate (\\u${unit} at index ${at}): UTF-8 has no ` +
      "form for it, and PostgreSQL would store U+FFFD instead",
  );
}

/** An object made by `{}`, `Object.create(null)` or another realm's `{}`. */
function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === null || proto === Object.prototype || Object.getPrototypeOf(proto) === null;
}

/** Names a value for an error message: "a Map", "a Promise", "an object". */
function describe(value: object): string {
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  if (typeof name !== "string" || name === "" || name === "Object") return "an object";
  return (/^[AEIO]/.test(name) ? "an " : "a ") + name;
}

function notSerializable(value: object, where: string): TypeError {
  const what = describe(value);
  const hint = value instanceof Promise
    ? "await it first"
    : "convert it to a plain object, array or string first, or give its class a toJSON()";
  return new TypeError(`Cannot serialize ${what}${where} as a query parameter: ${hint}`);
}

// JSON.stringify turns a Map, a Set or a class instance into "{}" or into its own fields:
// inside a JSON parameter those are refused, as they are outside one. A walk ahead of
// JSON.stringify costs less than a replacer called for every value. Values with a toJSON() are
// left to it, and cycles to JSON.stringify's own TypeError. `key`: undefined for the parameter
// itself (never an array: serializeParam takes those).
function checkJson(value: object, key: string | undefined, depth: number): void {
  if (depth > 1000) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === "object" && item !== null) checkJson(item, String(i), depth + 1);
    }
    return;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return;
  if (!isPlainObject(value)) {
    throw notSerializable(value, key === undefined ? "" : ` (at key ${JSON.stringify(key)})`);
  }
  for (const name in value) {
    const item = (value as Record<string, unknown>)[name];
    if (typeof item === "object" && item !== null) checkJson(item, name, depth + 1);
  }
}

/**
 * Serializes a JS value into the text form of a query parameter; `null` for SQL NULL.
 *
 * | JS value | text |
 * |---|---|
 * | `null`, `undefined` | `null` (SQL NULL) |
 * | string | itself |
 * | number, bigint | decimal; `NaN`, `Infinity`, `-Infinity` as PostgreSQL spells them |
 * | boolean | `t` / `f` |
 * | Date | ISO 8601 in UTC, `BC` for years before 1 AD |
 * | Uint8Array, any ArrayBufferView, ArrayBuffer | bytea hex, `\x0a1b...` |
 * | array | array literal `{"a","b",NULL}`, nested arrays as nested braces |
 * | plain object, object with a `toJSON()` method | `JSON.stringify` |
 *
 * Values that have no PostgreSQL meaning are refused rather than sent as something else: a
 * `Map`, `Set`, `WeakMap`, `Promise` or other class instance without `toJSON()` (which
 * `JSON.stringify` would send as `{}` or as its own fields), also inside an array or a JSON
 * object; a function; a symbol; and a string with a lone surrogate, which UTF-8 cannot encode
 * (a lone surrogate inside a JSON object is fine: `JSON.stringify` escapes it as `\udxxx`).
 * Inside a JSON object, JSON's own rules hold otherwise (`undefined` and functions are left
 * out, a bigint throws).
 *
 * @param value The parameter.
 * @returns Its text form, or `null` for SQL NULL.
 * @throws {RangeError} For an invalid Date.
 * @throws {TypeError} For a value with no PostgreSQL meaning (see above).
 *
 * @example
 * ```ts
 * import { serializeParam } from "./types.ts";
 * console.assert(serializeParam(new Uint8Array([1, 255])) === "\\x01ff");
 * console.assert(serializeParam([["a\"b", null], [1n]]) === '{{"a\\"b",NULL},{"1"}}');
 * console.assert(serializeParam({ a: 1 }) === '{"a":1}');
 * console.assert(serializeParam(undefined) === null);
 * try {
 *   serializeParam(new Map([["a", 1]]));
 *   console.assert(false);
 * } catch (error) {
 *   console.assert(error instanceof TypeError);
 * }
 * ```
 */
export function serializeParam(value: unknown): string | null {
  switch (typeof value) {
    case "string":
      if (!wellFormed(value)) throw loneSurrogate(value);
      return value;
    case "number":
    case "bigint":
      return String(value);
    case "boolean":
      return value ? "t" : "f";
    case "undefined":
      return null;
    case "object":
      if (value === null) return null;
      if (value instanceof Date) return serializeDate(value);
      if (Array.isArray(value)) return serializeArray(value);
      if (ArrayBuffer.isView(value)) {
        return serializeBytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      }
      if (value instanceof ArrayBuffer) return serializeBytes(new Uint8Array(value));
      checkJson(value, undefined, 0);
      return JSON.stringify(value);
    default:
      throw new TypeError(`Cannot serialize a ${typeof value} as a query parameter`);
  }
}
