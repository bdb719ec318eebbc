// What Prisma's query engine wants for each PostgreSQL type: the column type it is told (the
// numbers of `ColumnTypeEnum` in @prisma/driver-adapter-utils, the same in Prisma 6 and 7),
// and each value in the form it reads; and the reverse for query arguments.
//
// A query asks for the server's text of the types in RAW_TEXT_OIDS (see `queryTypes`) and
// takes edgepool's parsed values for the rest (src/types.ts): a string for int8 and numeric,
// a Uint8Array for bytea, arrays for the array types edgepool parses.

import type { TypeParser, TypeParsers } from "../src/result.ts";
import { typeParsers } from "../src/types.ts";
import { arrayOf } from "../src/_array.ts";
import type { ArgType, ColumnType } from "./types.ts";

/** `ColumnTypeEnum` of @prisma/driver-adapter-utils, by name. */
export const Column = {
  Int32: 0,
  Int64: 1,
  Float: 2,
  Double: 3,
  Numeric: 4,
  Boolean: 5,
  Character: 6,
  Text: 7,
  Date: 8,
  Time: 9,
  DateTime: 10,
  Json: 11,
  Enum: 12,
  Bytes: 13,
  Uuid: 15,
  Int32Array: 64,
  Int64Array: 65,
  FloatArray: 66,
  DoubleArray: 67,
  NumericArray: 68,
  BooleanArray: 69,
  CharacterArray: 70,
  TextArray: 71,
  DateArray: 72,
  TimeArray: 73,
  DateTimeArray: 74,
  JsonArray: 75,
  BytesArray: 77,
  UuidArray: 78,
} as const satisfies Record<string, ColumnType>;

/** Turns one value (never null) of a column into what Prisma reads. */
export type Convert = (value: unknown) => unknown;

/** How a column of one type reaches Prisma. */
export interface ColumnKind {
  type: ColumnType;
  /** None: the value as edgepool gives it. */
  convert?: Convert;
}

/**
 * The types whose values a parser would spoil: timestamps (a Date holds milliseconds;
 * PostgreSQL keeps microseconds) and JSON (`JSON.parse` rounds numbers past 2^53 and past 17
 * digits, and puts keys that look like integers first). Prisma gets their text.
 */
export const RAW_TEXT_OIDS: readonly number[] = [
  1114, // timestamp
  1115, // _timestamp
  1184, // timestamptz
  1185, // _timestamptz
  114, // json
  199, // _json
  3802, // jsonb
  3807, // _jsonb
];

const keepText: TypeParser = (text) => text;
const rawText = new Set(RAW_TEXT_OIDS);

/**
 * A query's `types`: the server's text for {@link RAW_TEXT_OIDS}, edgepool's parsers for the
 * rest (whatever the pool's `bigint` option, int8 comes as a string).
 */
export const queryTypes: TypeParsers = {
  getTypeParser: (oid) => rawText.has(oid) ? keepText : typeParsers.getTypeParser(oid),
};

// PostgreSQL's first OID for objects made after initdb: enums, domains, composite types.
const FIRST_NORMAL_OID = 16384;

const TIMESTAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?$/;

/**
 * `timestamp`: its text, read as UTC (it has no zone: the digits are the UTC ones), with every
 * fractional digit. `+00:00` rather than `Z`: the form Prisma's own PostgreSQL adapter gives.
 */
export const timestamp: Convert = (value) => {
  const text = value as string;
  return TIMESTAMP.test(text) ? text.replace(" ", "T") + "+00:00" : text;
};

const TIMESTAMPTZ =
  /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d)(?::(\d\d))?(?::(\d\d))?$/;

/**
 * `timestamptz`: its text in the session's time zone (`...+05:30`), moved to UTC with every
 * fractional digit kept.
 */
export const timestamptz: Convert = (value) => {
  const text = value as string;
  const m = TIMESTAMPTZ.exec(text);
  if (m === null) return text; // infinity, BC, years past 9999: as PostgreSQL wrote them
  const [, date, time, fraction = "", hours, minutes = "00", seconds = "00"] = m;
  const sign = hours[0] === "-" ? -1 : 1;
  const offset = sign * (Math.abs(+hours) * 3600 + +minutes * 60 + +seconds);
  const at = new Date(Date.parse(`${date}T${time}Z`) - offset * 1000);
  return at.toISOString().slice(0, 19) + fraction + "+00:00";
};

// `timetz`: Prisma reads a time without its zone, as Prisma's own adapter gives it.
const timetz: Convert = (value) => (value as string).replace(/[+-]\d\d(:\d\d){0,2}$/, "");

// `money` prints with the currency symbol and group separators of `lc_monetary`.
const money: Convert = (value) => (value as string).replace(/[^0-9.-]/g, "");

function each(convert: Convert): Convert {
  const walk: Convert = (value) =>
    Array.isArray(value) ? value.map((v) => v === null ? null : walk(v)) : convert(value);
  return walk;
}

// An array read as its text (`{"a",NULL}`): its elements' text, each converted.
function textArray(convert?: Convert): Convert {
  const parse = arrayOf(undefined) as Convert;
  if (convert === undefined) return parse;
  const elements = each(convert);
  return (value) => elements(parse(value));
}

// Prisma 6 reads Bytes as arrays of numbers; Prisma 7 takes a Uint8Array as it is.
const byteArray: Convert = (value) => Array.from(value as Uint8Array);

/**
 * The column kinds by type OID, for values read with {@link queryTypes}; `prisma`: the major
 * version of Prisma.
 */
export function columnKinds(prisma: 6 | 7 = 7): Map<number, ColumnKind> {
  const bytes = prisma === 6 ? byteArray : undefined;
  const kinds: [number[], ColumnType, Convert?][] = [
    [[21, 23], Column.Int32], // int2, int4
    [[20, 26], Column.Int64], // int8 (a string), oid
    [[700], Column.Float],
    [[701], Column.Double],
    [[16], Column.Boolean],
    [[1700], Column.Numeric],
    [[790], Column.Numeric, money],
    [[18], Column.Character], // "char"
    // text, varchar, bpchar, name, xml, inet, cidr, bit, varbit
    [[25, 1043, 1042, 19, 142, 869, 650, 1560, 1562], Column.Text],
    [[2950], Column.Uuid],
    [[1082], Column.Date],
    [[1083], Column.Time],
    [[1266], Column.Time, timetz],
    [[1114], Column.DateTime, timestamp],
    [[1184], Column.DateTime, timestamptz],
    [[114, 3802], Column.Json],
    [[17], Column.Bytes, bytes],
    // Arrays that edgepool parses.
    [[1005, 1007], Column.Int32Array],
    [[1016, 1028], Column.Int64Array], // int8 (strings), oid
    [[1021], Column.FloatArray],
    [[1022], Column.DoubleArray],
    [[1000], Column.BooleanArray],
    [[1231], Column.NumericArray],
    [[1009, 1015, 1014, 1003], Column.TextArray],
    [[2951], Column.UuidArray],
    [[1182], Column.DateArray],
    [[1001], Column.BytesArray, bytes && each(bytes)],
    // Arrays read as text: by the query (RAW_TEXT_OIDS), or because edgepool has no parser.
    [[1115], Column.DateTimeArray, textArray(timestamp)],
    [[1185], Column.DateTimeArray, textArray(timestamptz)],
    [[199, 3807], Column.JsonArray, textArray()],
    [[791], Column.NumericArray, textArray(money)],
    [[1002], Column.CharacterArray, textArray()],
    [[143, 1041, 651, 1561, 1563], Column.TextArray, textArray()], // xml, inet, cidr, bit, varbit
    [[1183], Column.TimeArray, textArray()],
  ];
  const map = new Map<number, ColumnKind>();
  for (const [oids, type, convert] of kinds) {
    for (const oid of oids) map.set(oid, convert === undefined ? { type } : { type, convert });
  }
  return map;
}

/** Enums, domains and other types made by users: Prisma reads their text. */
export const USER_TYPE: ColumnKind = { type: Column.Text };

/** Whether `oid` is a type made after initdb (an enum, say), read as text. */
export function isUserType(oid: number): boolean {
  return oid >= FIRST_NORMAL_OID;
}

/**
 * Names the built-in types Prisma cannot read (`interval`, `point`...), for its
 * `UnsupportedNativeDataType` error.
 */
export const TYPE_NAMES: Readonly<Record<number, string>> = {
  22: "int2vector",
  24: "regproc",
  27: "tid",
  28: "xid",
  29: "cid",
  30: "oidvector",
  600: "point",
  601: "lseg",
  602: "path",
  603: "box",
  604: "polygon",
  628: "line",
  718: "circle",
  774: "macaddr8",
  829: "macaddr",
  1186: "interval",
  2205: "regclass",
  2206: "regtype",
  2249: "record",
  2278: "void",
  3220: "pg_lsn",
  3614: "tsvector",
  3615: "tsquery",
  3904: "int4range",
  3906: "numrange",
  3908: "tsrange",
  3910: "tstzrange",
  3912: "daterange",
  3926: "int8range",
  4072: "jsonpath",
  5069: "xid8",
};

const pad = (n: number, width = 2): string => String(n).padStart(width, "0");

function dateOnly(date: Date): string {
  return `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1)}-${
    pad(date.getUTCDate())
  }`;
}

function timeOnly(date: Date): string {
  return `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.` +
    pad(date.getUTCMilliseconds(), 3);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * A query argument from Prisma in the form edgepool sends: DateTime by its database type (a
 * Date for a timestamp with an explicit UTC offset, so that the session's time zone cannot
 * shift it, an ISO string as it is: a `timestamp` column ignores the offset); Bytes from base64 (Prisma 7)
 * or an array of numbers (Prisma 6); lists element by element.
 */
export function mapArg(arg: unknown, type: ArgType | undefined): unknown {
  if (arg === null || arg === undefined) return null;
  if (Array.isArray(arg) && type?.arity === "list") {
    // Elements are scalars (Prisma has no nested lists): a Prisma 6 Bytes element is an array.
    const element: ArgType = { ...type, arity: "scalar" };
    return arg.map((a) => mapArg(a, element));
  }
  switch (type?.scalarType) {
    case "datetime": {
      const dbType = type.dbType?.toUpperCase();
      const timeOnlyType = dbType === "TIME" || dbType === "TIMETZ";
      // An ISO string for a timestamp goes as it is, with every digit and its zone.
      if (typeof arg === "string" && dbType !== "DATE" && !timeOnlyType) return arg;
      const date = arg instanceof Date ? arg : typeof arg === "string" ? new Date(arg) : null;
      if (date === null || Number.isNaN(date.getTime())) return arg;
      if (dbType === "DATE") return dateOnly(date);
      if (timeOnlyType) return timeOnly(date);
      return date.toISOString().slice(0, -1) + "+00:00";
    }
    case "bytes":
      if (typeof arg === "string") return fromBase64(arg);
      if (Array.isArray(arg)) return Uint8Array.from(arg as number[]);
      return arg;
    default:
      return arg;
  }
}
