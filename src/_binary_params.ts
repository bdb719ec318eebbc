// Binary query parameters: a cached statement's parameters of a type the server reads cheaper in
// binary, sent so from its second run on, when its parameter types are known (its first run
// described it). Only three types gain enough to be worth it: bytea (the server's hex decoding
// and the client's hex encoding: most of a query's cost at 64 KiB), timestamptz and uuid (the
// server's text parsing, about 0.3 µs each). Integers and floats save the server a few tens of
// nanoseconds and stay text.
//
// Each binary value is exactly the value the server reads from the text `serializeParam` makes
// of it; where that cannot hold, or is not worth checking, the parameter stays text, so the
// server accepts, rejects or converts it exactly as before: a Date outside the years 1 to 9999
// (its text is not ISO there), a uuid string in any but the canonical 8-4-4-4-12 form (the
// server's text input takes braces and other groupings, and rejects garbage with its message), a
// value of another JS type. A user serializer for the type wins: its text is sent.

import { serializeParam } from "./types.ts";
import type { Serializers } from "./_param_types.ts";

/** A parameter's value for Bind: text, binary bytes (format 1), or null for NULL. */
export type BindValue = string | Uint8Array | null;

const BYTEA = 17;
const TIMESTAMPTZ = 1184;
const UUID = 2950;

/** Whether any of a statement's parameter types (`oids`) may be sent in binary. */
export function anyBinary(oids: readonly number[]): boolean {
  for (const oid of oids) if (oid === BYTEA || oid === TIMESTAMPTZ || oid === UUID) return true;
  return false;
}

/**
 * The values of `params` for the Bind of a statement whose parameter types are `oids`: binary
 * where the type and the value allow it and neither `own` nor `shared` has a serializer for the
 * type; the others as `text` makes them of the whole list (its errors thrown as they are, the
 * binary values being NULL to it). A list whose length is not the statement's is all text, for
 * the server to refuse as before.
 */
export function encodeBound(
  params: readonly unknown[],
  oids: readonly number[],
  own: Serializers | undefined,
  shared: Serializers | undefined,
  text: (params: readonly unknown[]) => (string | null)[],
): BindValue[] {
  if (params.length !== oids.length) return text(params);
  let rest: unknown[] | null = null;
  let binary: (Uint8Array | undefined)[] | null = null;
  for (let i = 0; i < params.length; i++) {
    const oid = oids[i];
    if (oid !== BYTEA && oid !== TIMESTAMPTZ && oid !== UUID) continue;
    if (own?.has(oid) || shared?.has(oid)) continue;
    const bytes = binaryParam(oid, params[i]);
    if (bytes === undefined) continue;
    (rest ??= params.slice())[i] = null;
    (binary ??= new Array(params.length))[i] = bytes;
  }
  const values: BindValue[] = text(rest ?? params);
  if (binary !== null) {
    for (let i = 0; i < binary.length; i++) if (binary[i] !== undefined) values[i] = binary[i]!;
  }
  return values;
}

/**
 * `values` (of {@link encodeBound}) all text: each binary one as `serializeParam` makes it of its
 * parameter in `params`. For a query sent again unprepared, whose parameter types the server
 * infers anew.
 */
export function textOnly(
  values: readonly BindValue[],
  params: readonly unknown[],
): (string | null)[] {
  return values.map((value, i) => value instanceof Uint8Array ? serializeParam(params[i]) : value);
}

/** The binary form of `value` as a parameter of type `oid`, or `undefined`: text. */
export function binaryParam(oid: number, value: unknown): Uint8Array | undefined {
  if (typeof value === "string") return oid === UUID ? uuidBytes(value) : undefined;
  if (typeof value !== "object" || value === null) return undefined;
  if (oid === BYTEA) {
    if (value instanceof Uint8Array) return value;
    if (ArrayBuffer.isView(value)) {
      return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    }
    return value instanceof ArrayBuffer ? new Uint8Array(value) : undefined;
  }
  return oid === TIMESTAMPTZ && value instanceof Date ? timestamptzBytes(value) : undefined;
}

/** 2000-01-01 (the server's epoch), 0001-01-01 and 10000-01-01, in ms from 1970 (UTC). */
const EPOCH_2000 = 946_684_800_000;
const YEAR_1 = -62_135_596_800_000;
const YEAR_10000 = 253_402_300_800_000;
const TWO_32 = 4294967296;

/**
 * A timestamptz's binary: microseconds from 2000-01-01 UTC as an int64, of a Date in the years
 * 1 to 9999 (where its text is ISO 8601, which reads as the same instant); else `undefined`
 * (an Invalid Date too: its text refuses it).
 */
function timestamptzBytes(date: Date): Uint8Array | undefined {
  const time = date.getTime();
  if (!(time >= YEAR_1 && time < YEAR_10000)) return undefined;
  // ms * 1000 passes 2^53 past 285 years from 2000: multiplied word by word, exactly.
  const ms = time - EPOCH_2000;
  const high = Math.floor(ms / TWO_32);
  const low = (ms - high * TWO_32) * 1000; // below 2^42
  const carry = Math.floor(low / TWO_32);
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setInt32(0, high * 1000 + carry);
  view.setUint32(4, low - carry * TWO_32);
  return out;
}

/** A hex digit's value, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  const lower = c | 0x20;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1; // a-f, A-F
}

/** A uuid's 16 bytes, of its canonical text (8-4-4-4-12 hex digits, either case); else `undefined`. */
function uuidBytes(text: string): Uint8Array | undefined {
  if (text.length !== 36) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0, j = 0; i < 36; j++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (text.charCodeAt(i) !== 45) return undefined; // '-'
      i++;
    }
    const high = hexDigit(text.charCodeAt(i));
    const low = hexDigit(text.charCodeAt(i + 1));
    if (high < 0 || low < 0) return undefined;
    out[j] = (high << 4) | low;
    i += 2;
  }
  return out;
}
