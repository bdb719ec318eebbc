/**
 * COPY with the client: `copyFrom` pumps a source into CopyData messages, as fast as the
 * transport takes them; `copyTo` hands the server's CopyData to a consumer in chunks, reading
 * from the transport only as fast as the consumer takes them.
 *
 * @module
 */

import { ConnectionError, errorMessage, PostgresError } from "./errors.ts";
import { PendingQuery } from "./_query.ts";
import type { ColumnTypes } from "./_column_types.ts";
import type { ByteStream } from "./transport.ts";

/**
 * What `copyFrom` reads: chunks of the COPY's data (text, CSV or binary, as the statement
 * says), strings sent as UTF-8. Chunks need not hold whole rows.
 */
export type CopySource =
  | AsyncIterable<Uint8Array | string>
  | Iterable<Uint8Array | string>
  | ReadableStream<Uint8Array | string>;

/** Options of `copyFrom`. */
export interface CopyFromOptions {
  /** Ends the COPY (CopyFail: nothing is copied); the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Bytes written and not yet taken by the network past which the source is not pulled until
   * they have drained (where the transport can say so: see `ByteStream.drained`). Default
   * 262144 (256 KiB).
   */
  highWaterMark?: number;
}

/** Options of `copyTo`. */
export interface CopyToOptions {
  /** Cancels the COPY; the iteration rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Bytes received and not yet consumed past which the transport stops reading until the
   * consumer is down to half of it (where the transport can pause: see `ByteStream.pause`).
   * Default 1048576 (1 MiB).
   */
  highWaterMark?: number;
}

/** The largest CopyData message `copyFrom` writes, and the largest chunk `copyTo` hands out. */
const MAX_CHUNK = 65536;
/**
 * Bytes `copyFrom` writes between turns of the event loop. A source that answers in microtasks
 * and a transport that writes at once (both TCP transports, on a fast network) would otherwise
 * never let a read in: the server's error would be seen only at the source's end.
 */
const YIELD_EVERY = 1048576;
export const FROM_HIGH_WATER = 262144;
export const TO_HIGH_WATER = 1048576;
/** SQLSTATE of a statement cancelled on request: how a cancelled `copyTo` ends. */
const QUERY_CANCELED = "57014";
const encoder = new TextEncoder();
const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/** Throws a TypeError for a `copyFrom` source that is not one. */
export function checkSource(source: unknown): void {
  if (
    source !== null && typeof source === "object" && !ArrayBuffer.isView(source) &&
    (typeof (source as ReadableStream).getReader === "function" ||
      typeof (source as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function" ||
      typeof (source as Iterable<unknown>)[Symbol.iterator] === "function")
  ) return;
  throw new TypeError(
    "copyFrom's source must be an AsyncIterable, an Iterable or a ReadableStream of " +
      `Uint8Array or string chunks, not ${describe(source)}` +
      (typeof source === "string" || ArrayBuffer.isView(source) ? " (wrap it in an array)" : ""),
  );
}

/** Throws for bad `copyFrom`/`copyTo` arguments; returns the high-water mark. */
export function checkCopy(
  what: string,
  sql: unknown,
  options: CopyFromOptions | CopyToOptions | undefined,
  fallback: number,
): number {
  if (typeof sql !== "string") {
    throw new TypeError(`${what}'s sql must be a string, not ${describe(sql)}`);
  }
  if (options !== undefined && (options === null || typeof options !== "object")) {
    throw new TypeError(`${what}'s options must be an object`);
  }
  const mark = options?.highWaterMark ?? fallback;
  if (!Number.isInteger(mark) || mark < 1) {
    throw new RangeError(`highWaterMark must be a positive integer of bytes, got ${String(mark)}`);
  }
  return mark;
}

function describe(value: unknown): string {
  return value === null
    ? "null"
    : ArrayBuffer.isView(value)
    ? value.constructor.name
    : typeof value;
}

/** The source's chunks as one iterator; a ReadableStream's is cancelled by `return()`. */
function iterate(source: CopySource): AsyncIterator<unknown> | Iterator<unknown> {
  if (typeof (source as ReadableStream).getReader === "function") {
    const reader = (source as ReadableStream<unknown>).getReader();
    return {
      next: () => reader.read() as Promise<IteratorResult<unknown>>,
      return: async () => {
        await reader.cancel();
        return DONE;
      },
    };
  }
  const iterable = source as AsyncIterable<unknown> & Iterable<unknown>;
  return typeof iterable[Symbol.asyncIterator] === "function"
    ? iterable[Symbol.asyncIterator]()
    : iterable[Symbol.iterator]();
}

/**
 * `copyFrom`'s query: at CopyInResponse it pulls the source, writes its chunks as CopyData of
 * up to 64 KiB straight to the stream (the connection's writer holds what was issued after the
 * COPY until its ReadyForQuery), and ends with CopyDone, or CopyFail if the source throws or
 * the signal aborts. A server error, or the end of the connection, stops the pulling and
 * closes the source. It settles once the source is closed too (unless the source is stuck in
 * a pull: then at once, its `return()` queued behind that pull).
 */
export class CopyIn extends PendingQuery {
  readonly #stream: ByteStream;
  readonly #source: CopySource;
  readonly #highWater: number;
  /** Why the client ended the COPY (the source's error, the signal's reason). */
  #failure: { reason: unknown } | null = null;
  /** The server entered COPY-in (or COPY-out) mode. */
  #mode: "in" | "out" | null = null;
  /** The client may write COPY messages: in COPY-in mode, and nobody ended it yet. */
  #open = false;
  #iterator: AsyncIterator<unknown> | Iterator<unknown> | null = null;
  /** The pump waits for the source's `next()`. */
  #pulling = false;
  /** Wakes the pump out of a wait for the transport. */
  #wake: (() => void) | null = null;
  /** The pump's end (its source closed). */
  #pumped: Promise<void> = Promise.resolve();
  /** Bytes written since the pump last let the event loop turn. */
  #sinceYield = 0;
  /** All the data and CopyDone were sent: the COPY can no longer be called off. */
  #doneSent = false;

  constructor(
    stream: ByteStream,
    source: CopySource,
    highWater: number,
    columns: ColumnTypes,
    resolve: (rowCount: number) => void,
    reject: (error: unknown) => void,
  ) {
    super(
      "object",
      undefined,
      columns,
      false,
      (result) => this.#afterPump(() => resolve(result.rowCount ?? 0)),
      (error) => this.#afterPump(() => reject(error)),
    );
    this.#stream = stream;
    this.#source = source;
    this.#highWater = highWater;
  }

  /**
   * The signal aborted: end the COPY with CopyFail, now or as soon as it starts. Once CopyDone
   * is sent it is too late: the server decides, and the outcome (rows committed) is reported.
   */
  abort(reason: unknown): void {
    if (this.settled || this.#doneSent) return;
    this.#fail(reason, `COPY aborted by the client: ${errorMessage(reason)}`);
  }

  override copying(direction: "in" | "out"): void {
    this.#mode ??= direction;
  }

  override copyIn(): boolean {
    this.#mode = "in";
    if (this.#failure !== null) this.#stream.write(copyFail("COPY aborted by the client"));
    else {
      this.#open = true;
      this.#pumped = this.#pump();
    }
    return true;
  }

  override message(type: number, buf: Uint8Array, start: number, end: number): boolean {
    // An error ends COPY-in mode: what the client writes from now on is dropped.
    if (type === 0x45) this.#close();
    return super.message(type, buf, start, end);
  }

  override finish(): void {
    this.#close();
    if (this.#failure !== null) this.error = this.#failure.reason;
    else if (this.#mode !== "in" && this.error === null) {
      this.error = notCopy("copyFrom", "COPY ... FROM STDIN", this.#mode);
    }
    super.finish();
  }

  override fail(error: unknown): void {
    this.#close();
    super.fail(error);
  }

  /** The client ends the COPY: CopyFail (if it is still open), and `reason` to reject with. */
  #fail(reason: unknown, message: string): void {
    this.#failure ??= { reason };
    if (this.#open) this.#stream.write(copyFail(message));
    this.#close();
  }

  /** No more COPY messages: the server or the client ended the COPY, or the connection ended. */
  #close(): void {
    this.#open = false;
    this.#wake?.();
  }

  /** Settles with `settle` once the source is closed (see the class's comment). */
  #afterPump(settle: () => void): void {
    if (this.#pulling) {
      this.#closeSource();
      settle();
    } else this.#pumped.then(settle);
  }

  #closeSource(): Promise<void> {
    const iterator = this.#iterator;
    this.#iterator = null;
    if (typeof iterator?.return !== "function") return Promise.resolve();
    return Promise.resolve().then(() => iterator.return!()).then(() => {}, () => {});
  }

  async #pump(): Promise<void> {
    const stream = this.#stream;
    let out = new CopyData();
    try {
      const iterator = this.#iterator = iterate(this.#source);
      while (this.#open) {
        // A sync iterator's step needs no await: 1M rows in a plain array cost no promise each.
        let step = iterator.next() as IteratorResult<unknown> | Promise<IteratorResult<unknown>>;
        if (step instanceof Promise) {
          this.#pulling = true;
          try {
            step = await step;
          } finally {
            this.#pulling = false;
          }
        }
        if (!this.#open) break;
        if (step.done) {
          this.#iterator = null;
          this.#open = false;
          this.#doneSent = true;
          stream.write(out.finish(true));
          return;
        }
        out.add(step.value);
        if (out.length < MAX_CHUNK) continue;
        stream.write(out.finish(false));
        out = new CopyData();
        await this.#backpressure();
      }
    } catch (error) {
      // The source threw (it needs no closing then), or yielded what is not a chunk.
      if (!(error instanceof BadChunk)) this.#iterator = null;
      this.#fail(error, `copyFrom's source failed: ${errorMessage(error)}`);
    }
    await this.#closeSource();
  }

  /**
   * Waits while more than the high-water mark waits in the transport, and lets the event loop
   * turn every YIELD_EVERY bytes (a transport that cannot say how much waits: every time).
   */
  async #backpressure(): Promise<void> {
    const stream = this.#stream;
    let wait: Promise<unknown>;
    this.#sinceYield += MAX_CHUNK;
    if (stream.drained !== undefined && (stream.bufferedAmount ?? Infinity) > this.#highWater) {
      wait = stream.drained();
    } else if (stream.drained === undefined || this.#sinceYield >= YIELD_EVERY) {
      wait = new Promise((resolve) => setTimeout(resolve, 0));
    } else return;
    this.#sinceYield = 0;
    if (!this.#open) return;
    await new Promise<unknown>((resolve) => {
      this.#wake = () => resolve(undefined);
      wait.then(resolve);
    });
    this.#wake = null;
  }
}

/** A chunk that is neither a Uint8Array nor a string (the source itself is fine). */
class BadChunk extends TypeError {}

/** One CopyData message being filled, its 5-byte header written last. */
class CopyData {
  #buf = new Uint8Array(5 + MAX_CHUNK + 5);
  #pos = 5;

  /** Payload bytes so far. */
  get length(): number {
    return this.#pos - 5;
  }

  add(chunk: unknown): void {
    if (typeof chunk === "string") {
      // A UTF-16 code unit never takes more than 3 bytes of UTF-8.
      if (chunk.length * 3 > MAX_CHUNK) return this.#bytes(encoder.encode(chunk));
      this.#ensure(chunk.length * 3);
      this.#pos += encoder.encodeInto(chunk, this.#buf.subarray(this.#pos)).written;
    } else if (chunk instanceof Uint8Array) this.#bytes(chunk);
    else {
      throw new BadChunk(
        `copyFrom's source yielded ${describe(chunk)}: chunks must be Uint8Array or string`,
      );
    }
  }

  #bytes(chunk: Uint8Array): void {
    this.#ensure(chunk.length);
    this.#buf.set(chunk, this.#pos);
    this.#pos += chunk.length;
  }

  #ensure(extra: number): void {
    // Room for a CopyDone behind it too.
    const need = this.#pos + extra + 5;
    if (need <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(need, this.#buf.length * 2));
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
  }

  /** The message (none if empty), with a CopyDone behind it if `done`; for the transport. */
  finish(done: boolean): Uint8Array {
    const buf = this.#buf;
    let start = 0;
    let end = this.#pos;
    if (end === 5) start = 5;
    else {
      buf[0] = 0x64; // d: CopyData
      writeInt32(buf, 1, end - 1);
    }
    if (done) {
      buf[end] = 0x63; // c: CopyDone
      writeInt32(buf, end + 1, 4);
      end += 5;
    }
    return buf.subarray(start, end);
  }
}

function writeInt32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = value >>> 16;
  buf[at + 2] = value >>> 8;
  buf[at + 3] = value;
}

/** A CopyFail message with `reason` (the server's error message quotes it). */
function copyFail(reason: string): Uint8Array {
  const text = encoder.encode(reason.slice(0, 1000));
  const out = new Uint8Array(6 + text.length);
  out[0] = 0x66; // f: CopyFail
  writeInt32(out, 1, 5 + text.length);
  out.set(text, 5);
  return out;
}

/** The error of `copyFrom`/`copyTo` for a statement that started no COPY of its kind. */
function notCopy(method: string, wanted: string, mode: "in" | "out" | null): ConnectionError {
  const what = mode === null
    ? "it is not a COPY (it ran)"
    : mode === "in"
    ? "it is COPY ... FROM STDIN (ended with CopyFail: nothing was copied); use copyFrom()"
    : "it is COPY ... TO STDOUT (its data was dropped); use copyTo()";
  return new ConnectionError(
    "UNSUPPORTED",
    `${method}() runs ${wanted} only, and ${what}; the connection stays usable`,
  );
}

/**
 * `copyTo`'s query, and the iterator over its data: each transport read's CopyData payloads are
 * copied into one chunk (up to 64 KiB at a time); past the high-water mark of chunks not yet
 * consumed the transport is paused, and resumed once the consumer is down to half of it.
 * `return()` (a `break`, a consumer that throws) and the signal cancel the COPY: a
 * CancelRequest, the rest of the data dropped, the server's 57014 swallowed; the iterator ends
 * once the server is done (ReadyForQuery), so the connection's next query is the caller's.
 */
export class CopyOut extends PendingQuery implements AsyncIterator<Uint8Array> {
  readonly #stream: ByteStream;
  readonly #highWater: number;
  /** Asks for a CancelRequest for this query (now if it runs, else once it does). */
  readonly #cancel: () => void;
  #mode: "in" | "out" | null = null;
  /** Chunks not yet consumed, from `#head` on, and their bytes. */
  #chunks: Uint8Array[] = [];
  #head = 0;
  #buffered = 0;
  /** The chunk being filled by this read, and how far. */
  #staging: Uint8Array | null = null;
  #staged = 0;
  /** Bytes of this read not yet parsed (an upper bound for the chunk to allocate). */
  #readLeft = 0;
  #paused = false;
  /** Set by the consumer's `return()` or the signal: the rest of the data is dropped. */
  #cancelled = false;
  #failure: { reason: unknown } | null = null;
  /** The end: `undefined` while running, then `null` (done) or the error to throw. */
  #outcome: { error: unknown } | null | undefined = undefined;
  /** A consumer's `next()` waiting for data or the end. */
  #waiter:
    | { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (e: unknown) => void }
    | null = null;
  #ended: Promise<void>;
  #markEnded!: () => void;

  constructor(stream: ByteStream, highWater: number, columns: ColumnTypes, cancel: () => void) {
    super("object", undefined, columns, false, () => {}, () => {});
    this.#stream = stream;
    this.#highWater = highWater;
    this.#cancel = cancel;
    this.#ended = new Promise((resolve) => this.#markEnded = resolve);
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.#buffered + this.#staged;
  }

  override copying(direction: "in" | "out"): void {
    this.#mode ??= direction;
  }

  override readStarts(bytes: number): void {
    this.#readLeft = bytes;
  }

  override readEnds(): void {
    this.#readLeft = 0;
    this.#flushStaging();
  }

  override message(type: number, buf: Uint8Array, start: number, end: number): boolean {
    if (type === 0x64) { // d: CopyData
      this.#readLeft -= end - start + 5;
      if (this.#cancelled || this.#outcome !== undefined) return true;
      const length = end - start;
      if (this.#staging !== null && this.#staged + length > this.#staging.length) {
        this.#flushStaging();
      }
      if (this.#staging === null) {
        // Sized for the rest of this read, so that a chunk is one copy and no waste.
        const size = Math.max(length, Math.min(this.#readLeft + length, MAX_CHUNK));
        this.#staging = new Uint8Array(size);
      }
      this.#staging.set(buf.subarray(start, end), this.#staged);
      this.#staged += length;
      return true;
    }
    if (type === 0x48) { // H: CopyOutResponse
      this.#mode ??= "out";
      return true;
    }
    return super.message(type, buf, start, end);
  }

  #flushStaging(): void {
    if (this.#staged === 0) return;
    const chunk = this.#staging!.subarray(0, this.#staged);
    this.#staging = null;
    this.#staged = 0;
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      return waiter.resolve({ done: false, value: chunk });
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered > this.#highWater && !this.#paused && this.#stream.pause !== undefined) {
      this.#paused = true;
      this.#stream.pause();
    }
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#stream.resume?.();
  }

  override finish(): void {
    this.#flushStaging();
    let error = this.error;
    if (this.#failure !== null) error = this.#failure.reason;
    else if (this.#mode === "in" || (this.#mode === null && error === null)) {
      error = notCopy("copyTo", "COPY ... TO STDOUT", this.#mode);
    } else if (this.#cancelled && (error === null || isCancel(error))) error = null;
    this.#end(error);
  }

  override fail(error: unknown): void {
    this.#end(this.#failure?.reason ?? error);
  }

  #end(error: unknown): void {
    this.cleanup?.();
    if (this.#outcome !== undefined) return;
    this.settled = true;
    this.#outcome = error === null ? null : { error };
    this.#resume();
    this.#markEnded();
    const waiter = this.#waiter;
    if (waiter === null) return;
    this.#waiter = null;
    this.next().then(waiter.resolve, waiter.reject);
  }

  /** The signal aborted: cancel, and throw its reason once the server is done. */
  abort(reason: unknown): void {
    if (this.#outcome !== undefined) return;
    this.#failure ??= { reason };
    this.#stop();
  }

  #stop(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#chunks = [];
    this.#head = 0;
    this.#buffered = 0;
    this.#staging = null;
    this.#staged = 0;
    this.#resume();
    this.#cancel();
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#head < this.#chunks.length) {
      const chunk = this.#chunks[this.#head++];
      this.#buffered -= chunk.length;
      if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
        this.#chunks = this.#chunks.slice(this.#head);
        this.#head = 0;
      }
      if (this.#paused && this.#buffered <= this.#highWater / 2) this.#resume();
      return Promise.resolve({ done: false, value: chunk });
    }
    const outcome = this.#outcome;
    if (outcome === null) return Promise.resolve(DONE);
    if (outcome !== undefined) {
      // Thrown once; the iterator is done after that.
      this.#outcome = null;
      return Promise.reject(outcome.error);
    }
    if (this.#waiter !== null) {
      return Promise.reject(new TypeError("copyTo: next() called while another next() waits"));
    }
    return new Promise((resolve, reject) => this.#waiter = { resolve, reject });
  }

  /** Stops early: cancels the COPY if it runs, and resolves once the server is done. */
  async return(): Promise<IteratorResult<Uint8Array>> {
    if (this.#outcome === undefined) {
      this.#stop();
      await this.#ended;
    }
    this.#outcome = null;
    this.#chunks = [];
    return DONE;
  }

  /** Same as `return()`. */
  throw(): Promise<IteratorResult<Uint8Array>> {
    return this.return();
  }
}

function isCancel(error: unknown): boolean {
  return error instanceof PostgresError && error.code === QUERY_CANCELED;
}

/**
 * What `copyTo` returns: the COPY's data, as an async iterable of `Uint8Array` chunks or as a
 * `ReadableStream` (`readable`); one of the two, once. Nothing runs until the consumption
 * starts. Each chunk is the consumer's own (a copy, never reused).
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * await using conn = await connect("postgres://app:secret@localhost/app");
 * let bytes = 0;
 * for await (const chunk of conn.copyTo("copy items to stdout (format csv)")) {
 *   bytes += chunk.length;
 * }
 * ```
 */
export class CopyToStream implements AsyncIterable<Uint8Array> {
  #open: (() => AsyncIterator<Uint8Array>) | null;
  #iterator: AsyncIterator<Uint8Array> | null = null;

  /** Made by `copyTo`; `open` starts the COPY, at the first `next()`. */
  constructor(open: () => AsyncIterator<Uint8Array>) {
    this.#open = open;
  }

  /** The data as an async iterator; `break` cancels the COPY. A second consumer: TypeError. */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    const open = this.#take();
    let iterator: AsyncIterator<Uint8Array> | null = null;
    let finished = false;
    return {
      next: () => {
        if (finished) return Promise.resolve(DONE);
        try {
          iterator ??= this.#iterator = open();
        } catch (error) {
          finished = true;
          return Promise.reject(error);
        }
        return iterator.next();
      },
      return: () => {
        finished = true;
        return iterator?.return?.() ?? Promise.resolve(DONE);
      },
    };
  }

  /**
   * The data as a `ReadableStream` (a byte count of one chunk per pull: nothing is read
   * ahead of the consumer but what the COPY buffers). Cancelling it cancels the COPY.
   */
  get readable(): ReadableStream<Uint8Array> {
    const iterator = this[Symbol.asyncIterator]();
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        const step = await iterator.next();
        if (step.done) controller.close();
        else controller.enqueue(step.value);
      },
      async cancel() {
        await iterator.return!();
      },
    }, { highWaterMark: 0 });
  }

  /** Bytes received and not yet consumed (0 before the COPY starts). */
  get bufferedAmount(): number {
    return (this.#iterator as { buffered?: number } | null)?.buffered ?? 0;
  }

  #take(): () => AsyncIterator<Uint8Array> {
    const open = this.#open;
    if (open === null) {
      throw new TypeError("copyTo's data can be consumed once: it is already being consumed");
    }
    this.#open = null;
    return open;
  }
}
