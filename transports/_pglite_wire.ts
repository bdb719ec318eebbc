// Bytes of the PostgreSQL protocol as the PGlite transport reads and writes them, and its
// small error helpers.

import { ConnectionError } from "../src/errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** No bytes. */
export const EMPTY: Uint8Array = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------
// Protocol bytes.

export function cstring(text: string): Uint8Array {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

export function int16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

export function int32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, n);
  return out;
}

/** A Bind parameter in text: its length, then its bytes. */
export function textValue(text: string): Uint8Array {
  const bytes = encoder.encode(text);
  return concat([int32(bytes.length), bytes]);
}

export function readInt32(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) | 0;
}

/** A typed message: type byte, int32 length, then `parts`. */
export function frame(type: number, ...parts: Uint8Array[]): Uint8Array {
  const body = concat(parts);
  const out = new Uint8Array(5 + body.length);
  out[0] = type;
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  if (chunks.length === 0) return EMPTY;
  let size = 0;
  for (const chunk of chunks) size += chunk.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Calls `fn` with each whole backend message in `buf` (the message includes its header). */
export function forEachMessage(
  buf: Uint8Array,
  fn: (type: number, message: Uint8Array) => void,
): void {
  let at = 0;
  while (buf.length - at >= 5) {
    const next = at + 1 + readInt32(buf, at + 1);
    if (next > buf.length) break;
    fn(buf[at], buf.subarray(at, next));
    at = next;
  }
}

/** The first two text columns of a DataRow message. */
export function dataRow(message: Uint8Array): (string | null)[] {
  const values: (string | null)[] = [];
  const count = (message[5] << 8) | message[6];
  let at = 7;
  for (let i = 0; i < count && i < 2; i++) {
    const length = readInt32(message, at);
    at += 4;
    values.push(length < 0 ? null : decoder.decode(message.subarray(at, at + length)));
    if (length > 0) at += length;
  }
  return values;
}

/** The name/value pairs of a StartupMessage. */
export function startupParams(message: Uint8Array): Map<string, string> {
  const params = new Map<string, string>();
  const strings: string[] = [];
  let at = 8;
  while (at < message.length && message[at] !== 0) {
    const end = message.indexOf(0, at);
    if (end < 0) throw protocolError("unterminated string in the startup packet");
    strings.push(decoder.decode(message.subarray(at, end)));
    at = end + 1;
  }
  for (let i = 0; i + 1 < strings.length; i += 2) params.set(strings[i], strings[i + 1]);
  return params;
}

/** An ErrorResponse of severity FATAL. */
export function fatal(code: string, text: string): Uint8Array {
  const field = (name: string, value: string) => concat([encoder.encode(name), cstring(value)]);
  return frame(
    0x45,
    field("S", "FATAL"),
    field("V", "FATAL"),
    field("C", code),
    field("M", text),
    new Uint8Array([0]),
  );
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

export function protocolError(text: string): ConnectionError {
  return new ConnectionError("PROTOCOL_ERROR", `Protocol error from the client: ${text}`);
}

export function transportClosed(): ConnectionError {
  return new ConnectionError("CONNECT_FAILED", "Cannot connect: the PGlite transport is closed");
}

/** `promise`, or the signal's reason as soon as it aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** The message of an error, for the transport's messages. */
export { errorMessage as message } from "../src/errors.ts";

export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
