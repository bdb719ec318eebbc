// The server side of a WebSocket (RFC 6455) over a byte stream the gateway reads and writes
// itself: the opening handshake of a clean upgrade request, and the framing after it. The Deno
// front listener (gateway/deno.ts) serves WebSocket sessions with it on the client's own
// connection, instead of passing every byte on to `Deno.serve` through a second socket.
//
// Everything the client sends is hostile until checked. The handshake takes only requests it
// can read without doubt (`upgradeRequest` returns null for anything else, which the front then
// leaves to `Deno.serve` to judge). Frames must be masked, carry no extension bits, use known
// opcodes, and keep control frames short and whole; any breach ends the connection with 1002.
// Binary payloads are handed on as they arrive, never gathered into a message: the gateway
// reads a byte stream, where frame boundaries mean nothing, so no frame size needs a cap.
// Text frames (the gateway refuses them) are gathered up to MAX_TEXT bytes.

import type { GatewaySocket } from "./websocket.ts";
import { type BytePipe, Reads, writeAll } from "./_request_heads.ts";

/** A clean WebSocket upgrade request. */
export interface UpgradeRequest {
  /** The request target, as sent (origin form: `/path?query`). */
  target: string;
  /** The Sec-WebSocket-Key header. */
  key: string;
}

const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*$/;
const KEY = /^[A-Za-z0-9+/]{22}==$/;
const TARGET = /^\/[\x21-\x7e]*$/;

/**
 * Reads `head` (a request line and headers, CRLF line ends, up to the blank line) as a
 * WebSocket upgrade that needs no judgment: `GET /... HTTP/1.1`, every header line well formed
 * and none repeated that matters, `Upgrade: websocket`, `Connection` naming `upgrade`, version
 * 13, a key of 16 bytes in base64, a `Host`, and no body. Anything else, null.
 */
export function upgradeRequest(head: Uint8Array): UpgradeRequest | null {
  const text = new TextDecoder("latin1").decode(head);
  const lines = text.split("\r\n");
  // The head ends at the blank line: the last two "lines" are empty.
  if (lines.length < 3 || lines.at(-1) !== "" || lines.at(-2) !== "") return null;
  const request = lines[0].split(" ");
  if (request.length !== 3 || request[0] !== "GET" || request[2] !== "HTTP/1.1") return null;
  if (!TARGET.test(request[1])) return null;
  const seen = new Map<string, string>();
  for (let i = 1; i < lines.length - 2; i++) {
    const match = HEADER_LINE.exec(lines[i]);
    if (match === null) return null; // also a folded line, a bare CR, a space before the colon
    const name = match[1].toLowerCase();
    if (
      seen.has(name) && name !== "sec-websocket-protocol" && name !== "sec-websocket-extensions"
    ) {
      if (RELEVANT.has(name)) return null;
      continue;
    }
    seen.set(name, match[2]);
  }
  const tokens = (name: string) =>
    (seen.get(name) ?? "").toLowerCase().split(",").map((token) => token.trim());
  const key = seen.get("sec-websocket-key") ?? "";
  if (
    !seen.has("host") || !tokens("upgrade").includes("websocket") ||
    !tokens("connection").includes("upgrade") || seen.get("sec-websocket-version") !== "13" ||
    !KEY.test(key) || seen.has("transfer-encoding") ||
    (seen.has("content-length") && seen.get("content-length") !== "0")
  ) {
    return null;
  }
  return { target: request[1], key };
}

/** Headers that decide how a request is read: one of each, or the request is not clean. */
const RELEVANT = new Set([
  "host",
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "content-length",
  "transfer-encoding",
]);

/** The 101 response accepting an upgrade whose Sec-WebSocket-Key is `key`. */
export async function acceptResponse(key: string): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  return new TextEncoder().encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
}

/** The longest text message gathered (the gateway refuses text anyway). */
const MAX_TEXT = 64 * 1024;
/**
 * Past this many bytes waiting to be sent, a ping gets no pong (the RFC lets an endpoint answer
 * only the latest): a client that pings and never reads cannot make the gateway hold its pongs.
 */
const MAX_PONG_BACKLOG = 1024 * 1024;
/** Time after a close frame is sent for the client to end the connection, in ms. */
const CLOSE_WAIT_MS = 5_000;

const CONTINUATION = 0x0;
const TEXT = 0x1;
const BINARY = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/**
 * A server-side WebSocket on a client's connection (`pipe`), after the handshake, as the
 * gateway's {@link GatewaySocket}. `preamble` is written first (the 101 response); `input` is
 * what the client sent after its request head, read before anything else. `idleTimeout` (ms)
 * pings a client heard nothing from for that long and drops it if the next period is silent
 * too, as Deno's own WebSocket does every 120 s; 0 never pings. `end` closes the connection.
 */
export class FramedWebSocket implements GatewaySocket {
  onmessage: ((data: Uint8Array | string) => void) | null = null;
  onclose: (() => void) | null = null;

  readonly #pipe: BytePipe;
  readonly #end: () => void;
  /** What the client sent with its request head. */
  readonly #input: Uint8Array;
  readonly #idleTimeout: number;
  /** Frames waiting for the write under way. */
  #out: Uint8Array[] = [];
  #buffered = 0;
  #writing = false;
  /** A close frame was queued: nothing more is sent. */
  #closing = false;
  #closed = false;
  #paused: { promise: Promise<void>; resolve: () => void } | null = null;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Cuts off a client that does not end the connection after a close frame. */
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #heard = false;
  #pinged = false;

  // The frame being read.
  /** Header bytes of a frame split across reads. */
  #header = new Uint8Array(14);
  #headerLength = 0;
  #opcode = 0;
  #fin = false;
  /** Payload bytes of the current frame not read yet. */
  #remaining = 0;
  #mask = new Uint8Array(4);
  /** Payload bytes of the current frame read so far (for the mask's phase). */
  #offset = 0;
  /** The opcode of a fragmented message under way (TEXT or BINARY), 0 if none. */
  #message = 0;
  /** A control frame's payload, or a text message's, being gathered. */
  #gathered: Uint8Array[] = [];
  #gatheredLength = 0;

  constructor(
    pipe: BytePipe,
    end: () => void,
    preamble: Uint8Array,
    input: Uint8Array,
    idleTimeout: number,
  ) {
    this.#pipe = pipe;
    this.#end = end;
    this.#queue(preamble);
    this.#input = input.slice();
    this.#idleTimeout = idleTimeout;
  }

  /** Starts reading frames: once the gateway has set `onmessage` and `onclose`. */
  start(): void {
    if (this.#idleTimeout > 0) this.#watchIdle(this.#idleTimeout);
    this.#read(this.#input);
  }

  get bufferedAmount(): number {
    return this.#buffered;
  }

  send(data: Uint8Array): void {
    if (this.#closing) return;
    this.#queue(frame(BINARY, data));
  }

  pause(): void {
    if (this.#paused !== null) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => resolve = r);
    this.#paused = { promise, resolve };
  }

  resume(): void {
    const paused = this.#paused;
    this.#paused = null;
    paused?.resolve();
  }

  close(code = 1000, reason = ""): void {
    if (this.#closing || this.#closed) return;
    const text = new TextEncoder().encode(reason);
    const payload = new Uint8Array(2 + text.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(text, 2);
    // Nothing is sent after it, and what the client sends after it is not read.
    this.#closing = true;
    this.#queue(frame(CLOSE, payload.subarray(0, Math.min(payload.length, 125))));
    // The client answers with its own close frame and ends the connection; one that does not
    // is cut off.
    this.#closeTimer = setTimeout(() => this.#shut(), CLOSE_WAIT_MS);
  }

  /** Ends the connection, once, and says so. */
  #shut(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#closeTimer);
    this.#out = [];
    this.#buffered = 0;
    this.resume();
    this.#end();
    this.onclose?.();
  }

  #watchIdle(period: number): void {
    this.#idleTimer = setTimeout(() => {
      if (this.#closed) return;
      if (this.#heard || this.#paused !== null) {
        this.#heard = false;
        this.#pinged = false;
      } else if (this.#pinged) {
        return this.#shut(); // silent through a ping and a whole period
      } else if (!this.#closing) {
        this.#pinged = true;
        this.#queue(frame(PING, new Uint8Array(0)));
      }
      this.#watchIdle(period);
    }, period);
  }

  /** Queues `bytes` for writing; writes at once when no write is under way. */
  #queue(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#buffered += bytes.length;
    this.#out.push(bytes);
    if (!this.#writing) this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length > 0 && !this.#closed) {
        // What was queued while the last write was under way goes out in one write.
        const bytes = concat(this.#out);
        this.#out = [];
        await writeAll(this.#pipe, bytes);
        this.#buffered -= bytes.length;
      }
      // A close frame sent: the client is told no more bytes come.
      if (this.#closing && !this.#closed) await this.#pipe.closeWrite();
    } catch {
      this.#shut();
    } finally {
      this.#writing = false;
    }
  }

  async #read(first: Uint8Array): Promise<void> {
    // Handed-on payloads are copies (see `unmask`): the read buffer is reused.
    const reads = new Reads();
    try {
      this.#frames(first);
      while (!this.#closed) {
        if (this.#paused !== null) {
          await this.#paused.promise;
          continue;
        }
        const n = await this.#pipe.read(reads.buffer);
        if (n === null) break;
        this.#heard = true;
        const bytes = reads.took(n);
        // After a close frame, the client's bytes are only waited out (to its end).
        if (!this.#closing) this.#frames(bytes);
      }
    } catch {
      // The connection went away.
    }
    this.#shut();
  }

  /** Reads the frames in `bytes`, up to a close (sent or received). */
  #frames(bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length && !this.#closing) {
      if (this.#remaining === 0) {
        // Reading a header.
        const need = this.#headerNeed();
        const take = Math.min(need - this.#headerLength, bytes.length - i);
        this.#header.set(bytes.subarray(i, i + take), this.#headerLength);
        this.#headerLength += take;
        i += take;
        if (this.#headerLength >= 2 && (this.#header[1] & 0x80) === 0) {
          // Refused at its second byte: an unmasked frame's header is shorter than this waits for.
          this.#breach("a client's frames must be masked");
          continue;
        }
        if (this.#headerLength < need || this.#headerNeed() > need) continue;
        if (this.#startFrame() && this.#remaining === 0) this.#endFrame();
        continue;
      }
      const take = Math.min(this.#remaining, bytes.length - i);
      this.#payload(bytes.subarray(i, i + take));
      i += take;
      this.#remaining -= take;
      if (this.#remaining === 0) this.#endFrame();
    }
  }

  /** Header bytes needed, as far as those read so far tell. */
  #headerNeed(): number {
    if (this.#headerLength < 2) return 2;
    const length = this.#header[1] & 0x7f;
    return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + 4;
  }

  /** A complete header is read: checks it and starts its payload; false after a breach. */
  #startFrame(): boolean {
    const h = this.#header;
    this.#headerLength = 0;
    this.#fin = (h[0] & 0x80) !== 0;
    const opcode = h[0] & 0x0f;
    if ((h[0] & 0x70) !== 0) return this.#breach("no extension was negotiated");
    let length = h[1] & 0x7f;
    let at = 2;
    if (length === 126) {
      length = (h[2] << 8) | h[3];
      at = 4;
    } else if (length === 127) {
      // At most 2^53 - 1 bytes: the top 11 bits must be zero (the RFC asks for the top one).
      if (h[2] !== 0 || (h[3] & 0xe0) !== 0) return this.#breach("a frame too long");
      length = ((h[2] << 24 | h[3] << 16 | h[4] << 8 | h[5]) >>> 0) * 2 ** 32 +
        ((h[6] << 24 | h[7] << 16 | h[8] << 8 | h[9]) >>> 0);
      at = 10;
    }
    this.#mask.set(h.subarray(at, at + 4));
    this.#remaining = length;
    this.#offset = 0;
    this.#opcode = opcode;
    if (opcode >= CLOSE) {
      if (opcode > PONG) return this.#breach(`unknown opcode ${opcode}`);
      if (!this.#fin || length > 125) {
        return this.#breach("a control frame must be whole and short");
      }
      return true;
    }
    if (opcode === CONTINUATION) {
      if (this.#message === 0) return this.#breach("a continuation frame without a message");
    } else if (opcode === TEXT || opcode === BINARY) {
      if (this.#message !== 0) return this.#breach("a new message inside a fragmented one");
      this.#message = opcode;
    } else return this.#breach(`unknown opcode ${opcode}`);
    if (this.#message === TEXT && this.#gatheredLength + length > MAX_TEXT) {
      this.close(1009, "text message too long");
      return false;
    }
    return true;
  }

  /** Some payload bytes of the current frame, still masked. */
  #payload(masked: Uint8Array): void {
    const bytes = unmask(masked, this.#mask, this.#offset);
    this.#offset += masked.length;
    if (this.#opcode < CLOSE && this.#message === BINARY) {
      if (bytes.length > 0) this.onmessage?.(bytes);
    } else {
      this.#gathered.push(bytes);
      this.#gatheredLength += bytes.length;
    }
  }

  /** The current frame's payload is all read. */
  #endFrame(): void {
    const opcode = this.#opcode;
    if (opcode < CLOSE) {
      if (!this.#fin) return;
      const message = this.#message;
      this.#message = 0;
      if (message === TEXT) {
        const bytes = this.#take();
        let text: string;
        try {
          text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
        } catch {
          return this.close(1007, "a text message that is not UTF-8");
        }
        this.onmessage?.(text);
      }
      return;
    }
    const payload = this.#take();
    if (opcode === PING) {
      if (this.#buffered <= MAX_PONG_BACKLOG) this.#queue(frame(PONG, payload));
      return;
    }
    if (opcode === PONG) return;
    // CLOSE: answered with the client's code (when it gave a valid one), then the end.
    let code = 1000;
    if (payload.length === 1) code = 1002;
    else if (payload.length >= 2) {
      const given = payload[0] << 8 | payload[1];
      code = validCloseCode(given) ? given : 1002;
    }
    this.close(code); // then waits for the client to end the connection
  }

  /** The gathered payload, in one piece. */
  #take(): Uint8Array {
    const bytes = concat(this.#gathered);
    this.#gathered = [];
    this.#gatheredLength = 0;
    return bytes;
  }

  #breach(why: string): boolean {
    this.close(1002, why);
    return false;
  }
}

function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
    (code >= 3000 && code <= 4999);
}

/** An unmasked frame (the server's frames are never masked) of `payload`, copied. */
export function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    const view = new DataView(out.buffer);
    view.setUint32(2, Math.floor(n / 2 ** 32));
    view.setUint32(6, n >>> 0);
  }
  out.set(payload, head);
  return out;
}

/** A copy of `masked` unmasked with `mask`, starting at `offset` bytes into the payload. */
export function unmask(masked: Uint8Array, mask: Uint8Array, offset: number): Uint8Array {
  const n = masked.length;
  const out = new Uint8Array(n);
  out.set(masked);
  // Four bytes at a time over the copy (a fresh buffer: aligned), then the tail.
  const s = offset & 3;
  const m0 = mask[s], m1 = mask[(s + 1) & 3], m2 = mask[(s + 2) & 3], m3 = mask[(s + 3) & 3];
  const words = n >>> 2;
  if (words > 0) {
    const word = new Uint32Array(out.buffer, 0, words);
    const m = LITTLE_ENDIAN
      ? (m0 | m1 << 8 | m2 << 16 | m3 << 24) >>> 0
      : (m3 | m2 << 8 | m1 << 16 | m0 << 24) >>> 0;
    for (let i = 0; i < words; i++) word[i] ^= m;
  }
  const tail = [m0, m1, m2, m3];
  for (let i = words << 2; i < n; i++) out[i] ^= tail[i & 3];
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
