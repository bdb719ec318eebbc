/**
 * In-process transport over PGlite (`@electric-sql/pglite`, PostgreSQL compiled to WebAssembly):
 * edgepool's own protocol client, and the pools on top of it, with no server at all — the role
 * SQLite plays for SQLAlchemy's tests and demos.
 *
 * - PGlite is loaded (`import()`) at the first `connect()`, so code that never uses this
 *   transport never loads its 15 MB of WebAssembly and data. Creating a new database takes a
 *   few seconds (it runs `initdb`).
 * - PGlite has one backend, so sessions take turns: one session owns the database from its
 *   StartupMessage until it closes, and a second session's startup waits until then (FIFO).
 *   `connect()` itself resolves at once, because a CancelRequest also arrives through
 *   `connect()` and must not wait behind the session it cancels. Between sessions the
 *   transport rolls back an open transaction and resets session state as `DISCARD ALL` does,
 *   so each session starts clean; the data is shared, as with any server.
 * - The host, port, user and database are ignored (there is one database); `sslmode` is too:
 *   no byte leaves the process, `encrypted` is `false`, and `sslmode=require` still connects.
 * - Cancelling cannot interrupt anything: PGlite runs each statement synchronously on the
 *   JavaScript thread, so by the time a CancelRequest is read nothing is running. The request
 *   is accepted and ignored.
 * - COPY FROM STDIN fails with SQLSTATE 57014 and leaves the session usable. COPY TO STDOUT
 *   works; PGlite answers a statement whole, in memory, so the stream has no `pause()`: there
 *   is nothing to hold back. `drained()` resolves once PGlite has taken what was written.
 * - If PGlite itself fails (a WebAssembly trap, out of memory), every session of that
 *   database closes with the error and new sessions are refused: PGlite cannot go on.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * import { pgliteTransport } from "@edgepool/edgepool/transports/pglite";
 *
 * const transport = pgliteTransport(); // in memory
 * await using conn = await connect("postgres://postgres@localhost/postgres", { transport });
 * const { rows } = await conn.query("select $1::int + 1 as n", [41]);
 * console.log(rows[0].n); // 42
 * await transport.close();
 * ```
 *
 * @module
 */

import { ConnectionError } from "../src/errors.ts";
import type {
  ByteStream,
  StreamHandlers,
  Transport,
  TransportConnectOptions,
} from "../src/transport.ts";
import { type Backend, backendOf, isPglite, open, type Pglite } from "./_pglite_backend.ts";
import {
  abortable,
  concat,
  cstring,
  EMPTY,
  fatal,
  frame,
  int32,
  message,
  protocolError,
  readInt32,
  startupParams,
  toError,
  transportClosed,
} from "./_pglite_wire.ts";

/** Options of {@link pgliteTransport}. */
export interface PgliteTransportOptions {
  /**
   * Where PGlite keeps the database: a directory (Node, Deno, Bun), `idb://name` (browsers),
   * or `undefined`/`"memory"` (the default) for an in-memory database that lives as long as
   * the transport. Ignored when `pglite` is given.
   */
  dataDir?: string;
  /**
   * An existing PGlite instance (`@electric-sql/pglite` 0.5 or later) to run the sessions on.
   * The transport never closes it. Every transport made over the same instance shares its
   * one-session-at-a-time queue. The instance's own `query()`/`exec()`/`transaction()` may run
   * between the transport's statements; while a transport session is inside a transaction
   * they wait for it to end.
   */
  pglite?: unknown;
}

/** A {@link Transport} whose sessions all run on one PGlite database, in this process. */
export interface PgliteTransport extends Transport {
  /**
   * Closes every session (pending queries reject with `CONNECTION_LOST`), then closes the
   * PGlite database if the transport created it. Later connects fail. Idempotent.
   */
  close(): Promise<void>;
  /** The PGlite instance, created (or loaded) on first use. */
  readonly db: Promise<unknown>;
}

/**
 * Makes a transport whose every `connect()` opens a session on one shared PGlite database.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * import { pgliteTransport } from "@edgepool/edgepool/transports/pglite";
 * const transport = pgliteTransport({ dataDir: "./.data/pg" });
 * const conn = await connect("postgres://postgres@localhost/postgres", { transport });
 * ```
 */
export function pgliteTransport(options: PgliteTransportOptions = {}): PgliteTransport {
  const { dataDir, pglite } = options;
  if (dataDir !== undefined && typeof dataDir !== "string") {
    throw new TypeError(`dataDir must be a string, not ${typeof dataDir}`);
  }
  if (pglite !== undefined && !isPglite(pglite)) {
    throw new TypeError("pglite must be a PGlite instance (@electric-sql/pglite 0.5 or later)");
  }
  let database: Promise<Pglite> | null = null;
  let closed: Promise<void> | null = null;
  const streams = new Set<PgliteStream>();
  const load = (): Promise<Pglite> => {
    if (database === null) {
      database = open(dataDir, pglite);
      database.catch(() => database = null); // a later connect tries again
    }
    return database;
  };

  return {
    name: "pglite",
    get db(): Promise<unknown> {
      return load();
    },
    async connect(connectOptions: TransportConnectOptions): Promise<ByteStream> {
      const { signal } = connectOptions;
      signal?.throwIfAborted();
      if (closed !== null) throw transportClosed();
      let db: Pglite;
      try {
        db = await abortable(load(), signal);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        throw new ConnectionError("CONNECT_FAILED", `Could not start PGlite: ${message(error)}`, {
          cause: error,
        });
      }
      if (closed !== null) throw transportClosed();
      const stream = new PgliteStream(backendOf(db), signal, () => streams.delete(stream));
      streams.add(stream);
      return stream;
    },
    close(): Promise<void> {
      return closed ??= (async () => {
        const error = new Error("the PGlite transport was closed");
        for (const stream of [...streams]) stream.destroy(error);
        const db = await database?.catch(() => null);
        if (db === null || db === undefined) return;
        await backendOf(db).settled();
        if (pglite === undefined && !db.closed) await db.close();
      })();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The byte stream of one session.

const PROTOCOL_3_0 = 196608;
const CANCEL_REQUEST_CODE = 80877102;
const SSL_REQUEST_CODE = 80877103;
const GSSENC_REQUEST_CODE = 80877104;
const QUERY = 0x51;
const SYNC = 0x53;
const TERMINATE = 0x58;
/**
 * Follows every Query and Sync passed on. Outside COPY, PostgreSQL ignores a CopyFail; a COPY
 * FROM STDIN reads it as its data and fails (57014). Without it the COPY would read the next
 * query (a protocol violation) or end-of-file, and PGlite exits on either.
 */
const COPY_FAIL = frame(
  0x66,
  cstring("COPY FROM STDIN is not supported by the PGlite transport"),
);

class PgliteStream implements ByteStream {
  readonly encrypted = false;
  readonly #backend: Backend;
  readonly #signal: AbortSignal | undefined;
  readonly #onEnd: () => void;
  #handlers: StreamHandlers | null = null;
  #input: Uint8Array[] = [];
  #startup = true;
  #pumping = false;
  #closed = false;
  #error: Error | undefined;
  #drainWaiters: (() => void)[] = [];

  constructor(backend: Backend, signal: AbortSignal | undefined, onEnd: () => void) {
    this.#backend = backend;
    this.#signal = signal;
    this.#onEnd = onEnd;
  }

  start(handlers: StreamHandlers): void {
    this.#handlers = handlers;
    if (this.#closed) queueMicrotask(() => handlers.close(this.#error));
    else this.#schedule();
  }

  write(data: Uint8Array): void {
    if (this.#closed) return;
    this.#input.push(data);
    this.#schedule();
  }

  /** Bytes written that PGlite has not taken yet. */
  get bufferedAmount(): number {
    let n = 0;
    for (const chunk of this.#input) n += chunk.length;
    return n;
  }

  /** Resolves once PGlite has taken every byte written so far (or the stream closed). */
  drained(): Promise<void> {
    if (this.#closed || (!this.#pumping && this.#input.length === 0)) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #wakeDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  close(): void {
    this.#end(undefined);
  }

  /** Ends the session with `error`, which the reader's `close` handler receives. */
  destroy(error: Error): void {
    this.#end(error);
  }

  #schedule(): void {
    if (this.#pumping || this.#handlers === null || this.#closed) return;
    this.#pumping = true;
    // Never answer inside the caller's write().
    queueMicrotask(() => this.#pump());
  }

  async #pump(): Promise<void> {
    try {
      while (!this.#closed) {
        if (this.#startup) {
          const message = this.#takeStartup();
          if (message === null) break;
          await this.#startSession(message);
          continue;
        }
        const batch = this.#takeBatch();
        if (batch === null) break;
        if (batch.bytes.length > 0) {
          await this.#backend.exec(batch.bytes, (chunk) => this.#deliver(chunk));
        }
        if (batch.terminate) this.#end(undefined);
      }
    } catch (error) {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#pumping = false;
      this.#wakeDrainWaiters();
    }
  }

  async #startSession(message: Uint8Array): Promise<void> {
    const code = readInt32(message, 4);
    if (code === CANCEL_REQUEST_CODE) return this.#end(undefined); // nothing runs: see above
    if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
      return this.#deliver(new Uint8Array([0x4e])); // 'N': no encryption in-process
    }
    if (code >>> 16 !== 3) {
      this.#deliver(
        fatal("0A000", `unsupported frontend protocol ${code >>> 16}.${code & 0xffff}`),
      );
      return this.#end(undefined);
    }
    if (code !== PROTOCOL_3_0) {
      // NegotiateProtocolVersion: 3.0, no protocol options recognized.
      this.#deliver(frame(0x76, int32(PROTOCOL_3_0), int32(0)));
    }
    const signal = this.#signal;
    const onAbort = () => this.#end(toError(signal!.reason));
    signal?.addEventListener("abort", onAbort, { once: true });
    let granted: boolean;
    try {
      granted = await this.#backend.acquire(this);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    if (!granted || this.#closed) return;
    const { reply, ok } = await this.#backend.startSession(startupParams(message));
    this.#deliver(reply);
    if (ok) this.#startup = false;
    else this.#end(undefined);
  }

  /** The first message (length first, no type byte), or `null` until it is whole. */
  #takeStartup(): Uint8Array | null {
    const input = this.#joinInput();
    if (input.length < 4) return null;
    const length = readInt32(input, 0);
    if (length < 8 || length > 10_000) throw protocolError("invalid startup packet length");
    if (input.length < length) return null;
    this.#input = input.length === length ? [] : [input.slice(length)];
    return input.subarray(0, length);
  }

  /**
   * Every whole message buffered, up to a Terminate (`terminate`: PGlite would exit on it, so
   * the stream ends instead), with a CopyFail after each Query and Sync and at the end; `null`
   * if there is none.
   */
  #takeBatch(): { bytes: Uint8Array; terminate: boolean } | null {
    const input = this.#joinInput();
    const parts: Uint8Array[] = [];
    let from = 0;
    let end = 0;
    let terminate = false;
    while (input.length - end >= 5) {
      const type = input[end];
      const length = readInt32(input, end + 1);
      if (type === 0 || length < 4) throw protocolError(`invalid message type ${type}`);
      if (input.length - end - 1 < length) break;
      if (type === TERMINATE) {
        terminate = true;
        break;
      }
      end += 1 + length;
      if (type === QUERY || type === SYNC) {
        parts.push(input.subarray(from, end), COPY_FAIL);
        from = end;
      }
    }
    if (end === 0 && !terminate) return null;
    // A batch cut before its Sync gets one too: in PGlite, the end of the input is end-of-file.
    if (from < end) parts.push(input.subarray(from, end), COPY_FAIL);
    this.#input = terminate || end === input.length ? [] : [input.slice(end)];
    return { bytes: concat(parts), terminate };
  }

  #joinInput(): Uint8Array {
    if (this.#input.length === 0) return EMPTY;
    const input = this.#input.length === 1 ? this.#input[0] : concat(this.#input);
    this.#input = [input];
    return input;
  }

  #deliver(chunk: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.#handlers!.data(chunk);
    } catch (error) {
      // Never throw into PGlite, which calls this from inside WebAssembly.
      queueMicrotask(() => this.#end(toError(error)));
    }
  }

  #end(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#error = error;
    this.#input = [];
    this.#wakeDrainWaiters();
    this.#backend.leave(this);
    this.#onEnd();
    const handlers = this.#handlers;
    if (handlers !== null) queueMicrotask(() => handlers.close(error));
  }
}
