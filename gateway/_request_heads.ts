// Where HTTP/1.1 request heads begin and end in what a client sends on one connection, so
// that a front listener can time them (Deno.serve has no header timeout: gateway/deno.ts), and
// the front's pipe that does (`pipeTimingHeads`).
// It follows only the request side: a head, then a body by Content-Length or chunked
// encoding, then the next head; after an upgrade request, everything is someone else's bytes.
// It judges nothing: a request it cannot frame (the server will refuse it) ends the tracking
// (`raw`), as an upgrade does.

import { MAX_HEAD_BYTES } from "./_adapter.ts";

type State = "head" | "body" | "chunk-size" | "chunk-data" | "chunk-end" | "trailer" | "raw";

/** Longest chunk-size line followed (hex digits and extensions). */
const MAX_CHUNK_LINE = 1024;

/** Follows the requests on one connection. */
export class RequestHeads {
  readonly #maxHead: number;
  #state: State = "head";
  /** Bytes of the head being read (a head starts at its first byte, blank lines aside). */
  #head: number[] = [];
  /** Non-CR bytes on the current line of a head, trailer or chunk-size line. */
  #line = 0;
  #chunkLine = "";
  #remaining = 0;
  /** Heads begun so far; the first counts from the connection's start. */
  #heads = 1;
  /** Bytes fed before the current call of `feed`, while the first head is read. */
  #fed = 0;
  /** Where the first head ends: the number of bytes up to it, -1 until it has. */
  firstEnd = -1;

  /** @param maxHead The longest head accepted, in bytes. */
  constructor(maxHead: number) {
    this.#maxHead = maxHead;
  }

  /**
   * Whether a head is expected but incomplete. True from the connection's start until the first
   * head ends; later, from a head's first byte until its end.
   */
  get waiting(): boolean {
    return this.#state === "head" && (this.#heads === 1 || this.#head.length > 0);
  }

  /** Numbers the head being waited for, so that a timer is armed once per head. */
  get head(): number {
    return this.#heads;
  }

  /** No more heads will be framed on this connection (an upgrade, or a body it cannot frame). */
  get raw(): boolean {
    return this.#state === "raw";
  }

  /** Takes the next bytes; returns false when a head is longer than the limit. */
  feed(bytes: Uint8Array): boolean {
    for (let i = 0; i < bytes.length && this.#state !== "raw"; i++) {
      const byte = bytes[i];
      switch (this.#state) {
        case "head":
          if (this.#head.length === 0 && (byte === 0x0d || byte === 0x0a)) {
            continue; // blank lines between requests are allowed
          }
          this.#head.push(byte);
          if (this.#head.length > this.#maxHead) return false;
          if (this.#endOfLines(byte)) {
            if (this.#heads === 1) this.firstEnd = this.#fed + i + 1;
            this.#headDone();
          }
          break;
        case "body": {
          const take = Math.min(this.#remaining, bytes.length - i);
          this.#remaining -= take;
          i += take - 1;
          if (this.#remaining === 0) this.#nextHead();
          break;
        }
        case "chunk-size":
          if (byte === 0x0a) {
            const size = this.#chunkLine.split(";")[0].trim();
            this.#chunkLine = "";
            if (!/^[0-9a-fA-F]{1,15}$/.test(size)) {
              this.#state = "raw";
            } else if (Number.parseInt(size, 16) === 0) {
              this.#state = "trailer";
              this.#line = 0;
            } else {
              this.#remaining = Number.parseInt(size, 16);
              this.#state = "chunk-data";
            }
          } else if (byte !== 0x0d) {
            this.#chunkLine += String.fromCharCode(byte);
            if (this.#chunkLine.length > MAX_CHUNK_LINE) this.#state = "raw";
          }
          break;
        case "chunk-data": {
          const take = Math.min(this.#remaining, bytes.length - i);
          this.#remaining -= take;
          i += take - 1;
          if (this.#remaining === 0) this.#state = "chunk-end";
          break;
        }
        case "chunk-end":
          if (byte === 0x0a) this.#state = "chunk-size";
          break;
        case "trailer":
          // The trailer section ends, as a head does, at an empty line.
          if (byte === 0x0a && this.#line === 0) this.#nextHead();
          else if (byte === 0x0a) this.#line = 0;
          else if (byte !== 0x0d) this.#line++;
          break;
      }
    }
    if (this.firstEnd < 0) this.#fed += bytes.length;
    return true;
  }

  /** Whether `byte` ends the head: a line feed after an empty line (CRLF or bare LF). */
  #endOfLines(byte: number): boolean {
    if (byte === 0x0a) {
      if (this.#line === 0) return true;
      this.#line = 0;
    } else if (byte !== 0x0d) {
      this.#line++;
    }
    return false;
  }

  #headDone(): void {
    const text = new TextDecoder("latin1").decode(new Uint8Array(this.#head));
    this.#head = [];
    this.#line = 0;
    let length: number | undefined;
    let chunked = false;
    let upgrade = false;
    for (const line of text.split(/\r?\n/).slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim().toLowerCase();
      if (name === "content-length") {
        if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) {
          return void (this.#state = "raw");
        }
        length = Number(value);
      } else if (name === "transfer-encoding") {
        chunked = value.split(",").at(-1)!.trim() === "chunked";
        if (!chunked) return void (this.#state = "raw");
      } else if (name === "upgrade") {
        upgrade = true;
      }
    }
    if (upgrade) this.#state = "raw";
    else if (chunked) {
      this.#state = "chunk-size";
      this.#chunkLine = "";
    } else if (length !== undefined && length > 0) {
      this.#state = "body";
      this.#remaining = length;
    } else this.#nextHead();
  }

  #nextHead(): void {
    this.#state = "head";
    this.#heads++;
    this.#line = 0;
  }
}

/**
 * A byte stream both ways, as `Deno.Conn` reads and writes: a client's connection, or one to
 * the server behind the front.
 */
export interface BytePipe {
  /** Reads into `buffer`: the bytes read, or null at the end of the stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `bytes` (at least one): how many. */
  write(bytes: Uint8Array): Promise<number>;
  /** Ends the writing side (the other side reads the end of the stream). */
  closeWrite(): Promise<void>;
}

/**
 * Read sizes of the pipe, in bytes. A direction reads into one buffer, reused once what it read
 * is written: no allocation per chunk. A pending read holds its buffer for as long as the
 * connection sits idle (most of a WebSocket session's life), so it starts small, doubles while
 * reads fill it, up to websockify's 64 KiB, and goes back to small after a small read.
 */
const READ_MIN = 4096;
const READ_MAX = 64 * 1024;

/**
 * Passes a client's bytes to the server `connect` opens, and the server's back, calling `close`
 * (which closes both) when the client's request head is late by `headerTimeout` ms or longer
 * than {@link MAX_HEAD_BYTES}, or when either side ends. A head's time counts from the
 * connection's start for the first, from its first byte for later ones; after an upgrade the
 * pipe only passes bytes.
 *
 * With `take`, the first head is read before the server is connected to, and offered to
 * `take` (the head's bytes, and those read after it): when it returns true, it has taken the
 * client's connection, and nothing is piped.
 *
 * Each direction is a loop of a read and the writes of what it read: one read and usually one
 * write per chunk, without a web stream's queue and promise hops in between.
 */
export async function pipeTimingHeads(
  client: BytePipe,
  connect: () => Promise<BytePipe>,
  headerTimeout: number,
  close: () => void,
  take?: (head: Uint8Array, rest: Uint8Array) => boolean,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const end = () => {
    clearTimeout(timer);
    close();
  };
  const heads = new RequestHeads(MAX_HEAD_BYTES);
  let timed = 0;
  const time = () => {
    if (!heads.waiting) {
      clearTimeout(timer);
      timer = undefined;
    } else if (timed !== heads.head) {
      // Armed once per head, at its start: a trickle of bytes does not push it back.
      clearTimeout(timer);
      timed = heads.head;
      timer = setTimeout(end, headerTimeout);
    }
  };
  time();
  const reads = new Reads();
  let first: Uint8Array | undefined;
  if (take !== undefined) {
    let input = new Uint8Array(0);
    try {
      while (heads.firstEnd < 0) {
        const n = await client.read(reads.buffer);
        if (n === null) return end();
        const bytes = reads.took(n);
        const more = new Uint8Array(input.length + n);
        more.set(input);
        more.set(bytes, input.length);
        input = more;
        if (!heads.feed(bytes)) return end(); // a head past MAX_HEAD_BYTES
      }
    } catch {
      return end();
    }
    const at = heads.firstEnd;
    if (at > 0 && take(input.subarray(0, at), input.subarray(at))) return clearTimeout(timer);
    if (heads.raw) clearTimeout(timer);
    else time();
    first = input;
  }
  let inner: BytePipe;
  try {
    inner = await connect();
    if (first !== undefined) await writeAll(inner, first);
  } catch {
    return end();
  }
  // The inner server ending the connection ends it for the client too.
  const toClient = copy(inner, client).catch(() => {}).finally(end);
  try {
    while (true) {
      const n = await client.read(reads.buffer);
      if (n === null) break;
      const bytes = reads.took(n);
      if (!heads.raw) {
        if (!heads.feed(bytes)) return end(); // a head past MAX_HEAD_BYTES
        if (heads.raw) clearTimeout(timer);
        else time();
      }
      await writeAll(inner, bytes);
    }
    // The client is done sending: the server answers what it has, then ends too.
    await inner.closeWrite();
    await toClient;
  } catch {
    // Either side went away.
  } finally {
    end();
  }
}

/** Copies `from` to `to` until `from` ends. */
async function copy(from: BytePipe, to: BytePipe): Promise<void> {
  const reads = new Reads();
  while (true) {
    const n = await from.read(reads.buffer);
    if (n === null) return;
    await writeAll(to, reads.took(n));
  }
}

/** One direction's read buffer, sized as READ_MIN says. */
export class Reads {
  /** Where the next read goes. */
  buffer = new Uint8Array(READ_MIN);

  /** The `n` bytes just read into `buffer` (valid until the next read); sizes the next one. */
  took(n: number): Uint8Array {
    const bytes = this.buffer.subarray(0, n);
    if (n === this.buffer.length && n < READ_MAX) this.buffer = new Uint8Array(n * 2);
    else if (n < READ_MIN && this.buffer.length > READ_MIN) this.buffer = new Uint8Array(READ_MIN);
    return bytes;
  }
}

/** Writes all of `bytes` to `to`. */
export async function writeAll(to: BytePipe, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await to.write(bytes.subarray(done));
}
