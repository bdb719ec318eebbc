// The server side of a connection's start, as the WebSocket face plays it: reading what a
// client sends before it is authenticated (StartupMessage, SSLRequest, CancelRequest,
// PasswordMessage), and the few backend messages the gateway itself answers with.

import { cstringEnd, decodeText, readInt32 } from "../src/_backend.ts";
import { Writer } from "../src/_writer.ts";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
/** PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH). */
const MAX_STARTUP_PACKET = 10000;

/** The first message of a connection. */
export type FirstMessage =
  | { kind: "ssl" | "gssenc" }
  | { kind: "cancel"; bytes: Uint8Array }
  | { kind: "startup"; minor: number; params: Record<string, string>; unrecognized: string[] }
  | { kind: "unsupported"; major: number; minor: number };

/** A violation of the protocol by the client: answered with a FATAL ErrorResponse. */
export class ClientProtocolError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/**
 * Reads the untyped first message at the start of `buf`: `null` while it is incomplete,
 * else the message and its length. Throws a ClientProtocolError for an impossible length.
 */
export function readFirstMessage(
  buf: Uint8Array,
): { message: FirstMessage; length: number } | null {
  if (buf.length < 8) return null;
  const length = readInt32(buf, 0);
  if (length < 8 || length > MAX_STARTUP_PACKET) {
    throw new ClientProtocolError("08P01", `invalid length of startup packet (${length})`);
  }
  if (buf.length < length) return null;
  const code = readInt32(buf, 4);
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    if (length !== 8) throw new ClientProtocolError("08P01", "invalid length of SSL/GSS request");
    return { message: { kind: code === SSL_REQUEST ? "ssl" : "gssenc" }, length };
  }
  if (code === CANCEL_REQUEST) {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
    if (length < 16 || length > 12 + 256) {
      throw new ClientProtocolError("08P01", "invalid length of cancel request");
    }
    return { message: { kind: "cancel", bytes: buf.slice(0, length) }, length };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) return { message: { kind: "unsupported", major, minor }, length };
  const params: Record<string, string> = {};
  const unrecognized: string[] = [];
  let pos = 8;
  try {
    while (pos < length && buf[pos] !== 0) {
      const keyEnd = cstringEnd(buf, pos, length);
      const valueEnd = cstringEnd(buf, keyEnd + 1, length);
      const key = decodeText(buf, pos, keyEnd);
      const value = decodeText(buf, keyEnd + 1, valueEnd);
      // Protocol options (`_pq_.*`) are the gateway's to negotiate, and it takes none.
      if (key.startsWith("_pq_.")) unrecognized.push(key);
      else params[key] = value;
      pos = valueEnd + 1;
    }
  } catch {
    throw new ClientProtocolError("08P01", "invalid startup packet layout");
  }
  return { message: { kind: "startup", minor, params, unrecognized }, length };
}

/**
 * Reads one typed message at the start of `buf`: `null` while it is incomplete. Throws a
 * ClientProtocolError for a length out of [4, maxLength].
 */
export function readTypedMessage(
  buf: Uint8Array,
  maxLength: number,
): { type: number; body: Uint8Array; length: number } | null {
  if (buf.length < 5) return null;
  const length = readInt32(buf, 1);
  if (length < 4 || length > maxLength) {
    throw new ClientProtocolError("08P01", `invalid message length ${length}`);
  }
  if (buf.length < length + 1) return null;
  return { type: buf[0], body: buf.subarray(5, length + 1), length: length + 1 };
}

/** The text of a PasswordMessage body. */
export function passwordText(body: Uint8Array): string {
  try {
    return decodeText(body, 0, cstringEnd(body, 0, body.length));
  } catch {
    throw new ClientProtocolError("08P01", "invalid password packet");
  }
}

/** The single byte that refuses an SSLRequest or GSSENCRequest. */
export const REFUSE_ENCRYPTION: Uint8Array = new Uint8Array([0x4e]); // N

/** AuthenticationCleartextPassword: R, length 8, code 3. */
export function cleartextPasswordRequest(): Uint8Array {
  return new Writer(16).begin(0x52).int32(3).end().take();
}

/** NegotiateProtocolVersion: the newest minor version the gateway speaks (0) and the options it ignores. */
export function negotiateProtocolVersion(unrecognized: string[]): Uint8Array {
  const w = new Writer(64).begin(0x76).int32(3 << 16).int32(unrecognized.length);
  for (const option of unrecognized) w.cstring(option);
  return w.end().take();
}

/** A FATAL ErrorResponse. */
export function fatalError(code: string, message: string): Uint8Array {
  return new Writer(256).begin(0x45)
    .byte(0x53).cstring("FATAL")
    .byte(0x56).cstring("FATAL")
    .byte(0x43).cstring(code)
    .byte(0x4d).cstring(message)
    .byte(0)
    .end().take();
}
