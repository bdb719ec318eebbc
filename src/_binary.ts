// Binary result format: the columns of a prepared statement whose result is known before its
// Bind, of a type that costs the server less to send in binary or the client less to read, are
// asked for in binary. Each decoder here returns exactly the value the text parser in types.ts
// returns for the same value's text, so the format does not show in the rows; a column whose
// text would read otherwise in some session (a setting changes the text) is binary only in
// sessions where it reads the same (see `sessionFlags`).
//
// float4 stays text: its text is the shortest decimal that reads back as the same float4
// ("1.1"), which JS reads as the double nearest 1.1, while the binary float4 is
// 1.100000023841858. float8 stays text too: its text is exact with the default
// extra_float_digits (1), but rounded in a session that set it lower, and the server does not
// report that setting.

import { readInt16, readInt32 } from "./_backend.ts";
import type { FieldDescription } from "./result.ts";

/** Reads one value's bytes, `buf[start..end)`, into the JS value its text would give. */
export type BinaryDecoder = (buf: Uint8Array, start: number, end: number) => unknown;

/** The session reads timestamps as ISO DateStyle text (the text parser makes Dates of those). */
export const ISO_DATES = 1;
/** The session's TimeZone is UTC: a timestamptz out of Date's range reads as text with `+00`. */
export const UTC = 2;

/** A statement's binary columns in one kind of session: its Bind's codes, and their readers. */
export interface BinaryPlan {
  /** Result format codes for Bind, one per column: 1 binary, 0 text. */
  formats: number[];
  /** The statement's fields, `format` saying what the server sends. */
  fields: FieldDescription[];
  /** Per column, its binary decoder, or undefined for a text column. */
  decoders: (BinaryDecoder | undefined)[];
}

function badLength(type: string, length: number): TypeError {
  return new TypeError(`a binary ${type} value of ${length} bytes`);
}

const decodeInt2: BinaryDecoder = (buf, start, end) => {
  if (end - start !== 2) throw badLength("int2", end - start);
  return readInt16(buf, start);
};

const decodeInt4: BinaryDecoder = (buf, start, end) => {
  if (end - start !== 4) throw badLength("int4", end - start);
  return readInt32(buf, start);
};

/** 2^32, and the high words of int64s that a double holds exactly (|value| < 2^53). */
const TWO_32 = 4294967296;
const SAFE_HIGH = 0x200000;

/** The int64 at `start`, exact: a number when it fits in one, else a bigint. */
function int64(buf: Uint8Array, start: number): number | bigint {
  const high = readInt32(buf, start);
  const low = readInt32(buf, start + 4) >>> 0;
  if (high >= -SAFE_HIGH && high < SAFE_HIGH) return high * TWO_32 + low;
  return (BigInt(high) << 32n) | BigInt(low);
}

const decodeInt8: BinaryDecoder = (buf, start, end) => {
  if (end - start !== 8) throw badLength("int8", end - start);
  return String(int64(buf, start));
};

const decodeInt8BigInt: BinaryDecoder = (buf, start, end) => {
  if (end - start !== 8) throw badLength("int8", end - start);
  return BigInt(int64(buf, start));
};

const decodeBytea: BinaryDecoder = (buf, start, end) => {
  // A copy: `buf` is the transport's chunk (reused, and Node's own buffer type on Node).
  const out = new Uint8Array(end - start);
  out.set(buf.subarray(start, end));
  return out;
};

// Char codes of the two lowercase hex digits of each byte, at 2 * byte.
const HEX = new Uint8Array(512);
for (let b = 0; b < 256; b++) {
  HEX[2 * b] = "0123456789abcdef".charCodeAt(b >> 4);
  HEX[2 * b + 1] = "0123456789abcdef".charCodeAt(b & 15);
}
/** As uuid_out prints it: lowercase, dashes after bytes 4, 6, 8 and 10. */
const decodeUuid: BinaryDecoder = (buf, start, end) => {
  if (end - start !== 16) throw badLength("uuid", end - start);
  const s = start;
  return hex4(buf, s) + "-" + hex2(buf, s + 4) + "-" + hex2(buf, s + 6) + "-" +
    hex2(buf, s + 8) + "-" + hex2(buf, s + 10) + hex4(buf, s + 12);
};

function hex2(buf: Uint8Array, at: number): string {
  const a = buf[at] << 1, b = buf[at + 1] << 1;
  return String.fromCharCode(HEX[a], HEX[a + 1], HEX[b], HEX[b + 1]);
}

function hex4(buf: Uint8Array, at: number): string {
  const a = buf[at] << 1, b = buf[at + 1] << 1, c = buf[at + 2] << 1, d = buf[at + 3] << 1;
  return String.fromCharCode(
    HEX[a],
    HEX[a + 1],
    HEX[b],
    HEX[b + 1],
    HEX[c],
    HEX[c + 1],
    HEX[d],
    HEX[d + 1],
  );
}

// ---------------------------------------------------------------------------------------------
// Timestamps: int64 microseconds since 2000-01-01 00:00 UTC (integer_datetimes, PostgreSQL's
// only format since 10); the int64 extremes are infinity and -infinity.

/** 2000-01-01 in ms since 1970. */
const POSTGRES_EPOCH_MS = 946684800000;
/** The largest time of a Date, in ms either side of 1970. */
const MAX_DATE_MS = 8.64e15;

/**
 * A timestamp as the text parser reads its ISO text: a Date of the time truncated to the ms
 * (the text's fraction is cut after three digits, so a time before 2000 or 1970 rounds down
 * too), or the text itself for infinity and for a time out of Date's range. `zone`: the
 * offset text a timestamptz ends in (`"+00"`), `""` for a timestamp.
 */
function decodeTimestamp(buf: Uint8Array, start: number, end: number, zone: string): unknown {
  if (end - start !== 8) throw badLength("timestamp", end - start);
  const us = int64(buf, start);
  if (typeof us === "number") {
    // Exact: % is exact on integers below 2^53, and (us - rest) is a multiple of 1000.
    let rest = us % 1000;
    if (rest < 0) rest += 1000;
    const ms = (us - rest) / 1000 + POSTGRES_EPOCH_MS;
    if (ms <= MAX_DATE_MS && ms >= -MAX_DATE_MS) return new Date(ms);
    return timestampText(BigInt(us), zone);
  }
  if (us === 0x7fffffffffffffffn) return "infinity";
  if (us === -0x8000000000000000n) return "-infinity";
  let ms = us / 1000n;
  if (ms * 1000n > us) ms--; // bigint division truncates; the text's fraction floors
  const time = Number(ms) + POSTGRES_EPOCH_MS;
  if (time <= MAX_DATE_MS && time >= -MAX_DATE_MS) return new Date(time);
  return timestampText(us, zone);
}

const decodeTimestampPlain: BinaryDecoder = (buf, start, end) =>
  decodeTimestamp(buf, start, end, "");
const decodeTimestampUtc: BinaryDecoder = (buf, start, end) =>
  decodeTimestamp(buf, start, end, "+00");

const US_PER_DAY = 86400000000n;
/** Days from 0000-03-01 (proleptic Gregorian) to 2000-01-01. */
const DAYS_TO_2000 = 730425;

/**
 * The ISO text of a timestamp out of Date's range (past the year 275760), as the server prints
 * it in ISO DateStyle: `YYYYYY-MM-DD HH:MM:SS[.ffffff]`, the fraction without trailing zeros,
 * then `zone`, then ` BC` for years before 1.
 */
function timestampText(us: bigint, zone: string): string {
  let days = us / US_PER_DAY;
  let rest = us - days * US_PER_DAY;
  if (rest < 0n) (rest += US_PER_DAY, days--);
  // Civil date from a day count (days since 0000-03-01, in 400-year eras of 146097 days).
  const z = Number(days) + DAYS_TO_2000;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) -
      Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const micros = Number(rest);
  const seconds = Math.floor(micros / 1e6);
  const fraction = micros - seconds * 1e6;
  const two = (n: number) => String(n).padStart(2, "0");
  let text = `${String(year > 0 ? year : 1 - year).padStart(4, "0")}-${two(month)}-${two(day)} ` +
    `${two(Math.floor(seconds / 3600))}:${two(Math.floor(seconds / 60) % 60)}:${two(seconds % 60)}`;
  if (fraction > 0) text += "." + String(fraction).padStart(6, "0").replace(/0+$/, "");
  text += zone;
  return year > 0 ? text : text + " BC";
}

// ---------------------------------------------------------------------------------------------
// The choice

/**
 * The types read in binary, by OID: int2, int4, int8, bytea, timestamp, timestamptz, uuid. Each
 * saved client or server CPU per value in a bench of 100-row results (int8 and the timestamps
 * both; uuid the server's, at about the client's cost); bool saved nothing measurable.
 */
const BINARY_TYPES: ReadonlySet<number> = new Set([17, 20, 21, 23, 1114, 1184, 2950]);

/** TimeZone settings that are UTC: the server prints timestamptz with `+00` in them. */
const UTC_ZONES = new Set([
  "UTC",
  "Etc/UTC",
  "GMT",
  "Etc/GMT",
  "UCT",
  "Etc/UCT",
  "Universal",
  "Etc/Universal",
  "Zulu",
  "Etc/Zulu",
  "Greenwich",
  "Etc/Greenwich",
  "GMT0",
  "Etc/GMT0",
  "GMT+0",
  "GMT-0",
  "Etc/GMT+0",
  "Etc/GMT-0",
]);

/**
 * What the session's reported settings (ParameterStatus) allow: timestamps only with ISO
 * DateStyle (the text parser keeps other styles' text) and integer datetimes; timestamptz only
 * with a UTC TimeZone as well, where a value past Date's range has a text the client can write.
 */
export function sessionFlags(parameters: Readonly<Record<string, string>>): number {
  if (parameters.integer_datetimes !== "on") return 0;
  if (parameters.DateStyle?.startsWith("ISO") !== true) return 0;
  return UTC_ZONES.has(parameters.TimeZone) ? ISO_DATES | UTC : ISO_DATES;
}

/**
 * The binary decoder of a column of type `oid` in a session of `flags`, or undefined to read
 * it as text. `bigint`: int8 as bigint rather than string (the connection's option).
 */
export function binaryDecoder(
  oid: number,
  bigint: boolean,
  flags: number,
): BinaryDecoder | undefined {
  if (!BINARY_TYPES.has(oid)) return undefined;
  switch (oid) {
    case 17:
      return decodeBytea;
    case 20:
      return bigint ? decodeInt8BigInt : decodeInt8;
    case 21:
      return decodeInt2;
    case 23:
      return decodeInt4;
    case 1114:
      return (flags & ISO_DATES) !== 0 ? decodeTimestampPlain : undefined;
    case 1184:
      return (flags & UTC) !== 0 ? decodeTimestampUtc : undefined;
    case 2950:
      return decodeUuid;
  }
  return undefined;
}
