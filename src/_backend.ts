// Backend (server → client) message framing and field parsing. Messages are cut out of the
// incoming chunks in place: a chunk that holds whole messages is parsed without any copy, and
// only a message split across chunks is assembled in one buffer that grows with the bytes
// received (never with the length a header merely declares).

import { ConnectionError, type PostgresErrorFields } from "./errors.ts";

/** Called once per complete message: `buf[start..end)` is the body (type and length removed). */
export type MessageHandler = (type: number, buf: Uint8Array, start: number, end: number) => void;

const EMPTY = new Uint8Array(0);
/** The smallest reassembly buffer: most split messages are small, and it is then reused. */
const MIN_BUFFER = 4096;
const decoder = new TextDecoder();

/** Frames backend messages out of a byte stream. */
export class Reader {
  #pending: Uint8Array = EMPTY;
  #pendingLength = 0;
  readonly #maxMessageSize: number;
  readonly #handle: MessageHandler;

  constructor(maxMessageSize: number, handle: MessageHandler) {
    this.#maxMessageSize = maxMessageSize;
    this.#handle = handle;
  }

  /** Bytes held while waiting for the rest of a message. */
  get buffered(): number {
    return this.#pendingLength;
  }

  /** Bytes allocated for reassembly: at most `max(4096, 2 × bytes received)`. */
  get capacity(): number {
    return this.#pending.length;
  }

  /**
   * Feeds bytes in; calls the handler for every complete message. Throws a `PROTOCOL_ERROR`
   * `ConnectionError` on a malformed frame, after which the reader must not be used again.
   */
  push(chunk: Uint8Array): void {
    if (this.#pendingLength === 0) {
      const used = this.#parse(chunk, 0, chunk.length);
      if (used < chunk.length) this.#keep(chunk, used, chunk.length);
      return;
    }
    this.#append(chunk);
    const buf = this.#pending;
    const used = this.#parse(buf, 0, this.#pendingLength);
    if (used === this.#pendingLength) {
      this.#pendingLength = 0;
      // Drop a large buffer once its message is done, so one big row does not pin memory.
      if (buf.length > 65536) this.#pending = EMPTY;
    } else if (used > 0) {
      buf.copyWithin(0, used, this.#pendingLength);
      this.#pendingLength -= used;
    }
  }

  // Parses whole messages in buf[pos..end) and returns where the first incomplete one starts.
  #parse(buf: Uint8Array, pos: number, end: number): number {
    while (end - pos >= 5) {
      const type = buf[pos];
      const length = readInt32(buf, pos + 1);
      this.#checkLength(type, length);
      const next = pos + 1 + length;
      if (next > end) break;
      this.#handle(type, buf, pos + 5, next);
      pos = next;
    }
    return pos;
  }

  #checkLength(type: number, length: number): void {
    if (length < 4) {
      throw protocolError(`message '${typeName(type)}' has an invalid length ${length}`);
    }
    if (length > this.#maxMessageSize) {
      throw protocolError(
        `message '${typeName(type)}' of ${length} bytes exceeds maxMessageSize ` +
          `(${this.#maxMessageSize} bytes)`,
      );
    }
  }

  // Room for the bytes that have arrived, never for the length a header declares: a header
  // can claim maxMessageSize bytes that never come, and many such connections would hold that
  // much each for a few bytes received. The buffer doubles as the rest arrives instead.
  #keep(chunk: Uint8Array, from: number, to: number): void {
    const rest = to - from;
    if (this.#pending.length < rest) this.#pending = new Uint8Array(Math.max(rest, MIN_BUFFER));
    this.#pending.set(chunk.subarray(from, to));
    this.#pendingLength = rest;
  }

  #append(chunk: Uint8Array): void {
    const have = this.#pendingLength;
    const need = have + chunk.length;
    let total = 0; // the first message's full size, once its header is known
    if (have >= 5) total = 1 + readInt32(this.#pending, 1);
    else if (need >= 5) {
      // The header is now complete: validate it before keeping any more of the message.
      const head = new Uint8Array(5);
      head.set(this.#pending.subarray(0, have));
      head.set(chunk.subarray(0, 5 - have), have);
      const length = readInt32(head, 1);
      this.#checkLength(head[0], length);
      total = 1 + length;
    }
    if (this.#pending.length < need) {
      // Doubling keeps the copies of a message split into many chunks linear in its size; the
      // declared size caps the doubling (not the bytes kept), so the buffer is never more than
      // twice what has arrived.
      const grown = Math.max(this.#pending.length * 2, MIN_BUFFER);
      const next = new Uint8Array(Math.max(need, total > 0 ? Math.min(grown, total) : grown));
      next.set(this.#pending.subarray(0, have));
      this.#pending = next;
    }
    this.#pending.set(chunk, have);
    this.#pendingLength = need;
  }
}

/** Reads a big-endian signed 32-bit integer. */
export function readInt32(buf: Uint8Array, at: number): number {
  return (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3];
}

/** Reads a big-endian signed 16-bit integer. */
export function readInt16(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16)) >> 16;
}

/** Decodes UTF-8 bytes; short ASCII runs skip the TextDecoder call. */
export function decodeText(buf: Uint8Array, start: number, end: number): string {
  if (end - start < 24) {
    let out = "";
    for (let i = start; i < end; i++) {
      const c = buf[i];
      if (c > 0x7f) return decoder.decode(buf.subarray(start, end));
      out += String.fromCharCode(c);
    }
    return out;
  }
  return decoder.decode(buf.subarray(start, end));
}

/** Index of the NUL ending the string at `start`; throws if there is none before `end`. */
export function cstringEnd(buf: Uint8Array, start: number, end: number): number {
  const at = buf.indexOf(0, start);
  if (at < 0 || at >= end) throw protocolError("a string in a message is not NUL-terminated");
  return at;
}

const ERROR_FIELDS: Record<number, keyof PostgresErrorFields> = {
  0x53: "severityLocalized", // S
  0x56: "severity", // V
  0x43: "code", // C
  0x4d: "message", // M
  0x44: "detail", // D
  0x48: "hint", // H
  0x50: "position", // P
  0x70: "internalPosition", // p
  0x71: "internalQuery", // q
  0x57: "where", // W
  0x73: "schema", // s
  0x74: "table", // t
  0x63: "column", // c
  0x64: "dataType", // d
  0x6e: "constraint", // n
  0x46: "file", // F
  0x4c: "line", // L
  0x52: "routine", // R
};

/** Parses the fields of an ErrorResponse or NoticeResponse body. */
export function parseErrorFields(buf: Uint8Array, start: number, end: number): PostgresErrorFields {
  const fields: Record<string, string | number> = {};
  let pos = start;
  while (pos < end && buf[pos] !== 0) {
    const code = buf[pos];
    const stop = cstringEnd(buf, pos + 1, end);
    const value = decodeText(buf, pos + 1, stop);
    const name = ERROR_FIELDS[code];
    // Unknown field codes are to be ignored, says the protocol: new ones may be added.
    if (name !== undefined) {
      // P, p, L: position, internalPosition, line.
      fields[name] = code === 0x50 || code === 0x70 || code === 0x4c ? Number(value) : value;
    }
    pos = stop + 1;
  }
  // Servers before 9.6 send no `V`: fall back to the localized severity.
  if (fields.severity === undefined) fields.severity = fields.severityLocalized ?? "ERROR";
  if (fields.code === undefined) fields.code = "XX000";
  if (fields.message === undefined) fields.message = "(no message)";
  return fields as unknown as PostgresErrorFields;
}

/** Reads ParameterDescription: the type OID of each parameter. */
export function readParameterTypes(buf: Uint8Array, start: number, end: number): number[] {
  if (end - start < 2) throw truncated("ParameterDescription");
  const count = readInt16(buf, start) & 0xffff; // up to 65535 parameters: unsigned
  if (start + 2 + 4 * count > end) throw truncated("ParameterDescription");
  const oids: number[] = new Array(count);
  for (let i = 0; i < count; i++) oids[i] = readInt32(buf, start + 2 + 4 * i) >>> 0;
  return oids;
}

/** A `PROTOCOL_ERROR` ConnectionError. */
export function protocolError(detail: string): ConnectionError {
  return new ConnectionError("PROTOCOL_ERROR", `Protocol error: ${detail}`);
}

/** The `PROTOCOL_ERROR` of a message too short for what it must hold. */
export function truncated(message: string): ConnectionError {
  return protocolError(`${message} is truncated`);
}

/** A message type as a printable character, or its code when it is not printable. */
export function typeName(type: number): string {
  return type >= 0x20 && type < 0x7f ? String.fromCharCode(type) : `0x${type.toString(16)}`;
}

/** Parses a ParameterStatus body into its name and value. */
export function parseParameterStatus(
  buf: Uint8Array,
  start: number,
  end: number,
): [name: string, value: string] {
  const nameEnd = cstringEnd(buf, start, end);
  return [
    decodeText(buf, start, nameEnd),
    decodeText(buf, nameEnd + 1, cstringEnd(buf, nameEnd + 1, end)),
  ];
}

/** Parses a NotificationResponse body. */
export function parseNotification(
  buf: Uint8Array,
  start: number,
  end: number,
): { processId: number; channel: string; payload: string } {
  if (end - start < 6) throw truncated("NotificationResponse");
  const processId = readInt32(buf, start);
  const channelEnd = cstringEnd(buf, start + 4, end);
  const channel = decodeText(buf, start + 4, channelEnd);
  const payload = decodeText(buf, channelEnd + 1, cstringEnd(buf, channelEnd + 1, end));
  return { processId, channel, payload };
}
