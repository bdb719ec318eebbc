/**
 * TCP transport for Deno: `Deno.connect`, with `Deno.startTls` after an accepted SSLRequest.
 * A host that starts with `/` is the directory of the server's Unix-domain socket
 * (`.s.PGSQL.<port>` in it, as libpq reads it), reached without TLS.
 *
 * Deno always verifies the certificate chain (against `ca`/`sslrootcert` and the system roots);
 * `sslmode=require` skips only the host-name check, and `prefer` falls back to plain TCP when
 * the handshake fails.
 *
 * `sslmode=verify-ca` and client certificates go through Deno's `node:tls` instead (the
 * `nodeTcp` transport): `Deno.startTls` trusts its built-in roots beside the given CAs, so a
 * chain check without the host name would pass any publicly trusted certificate, and it takes
 * no client certificate or key.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * import { denoTcp } from "@edgepool/edgepool/transports/deno";
 * const conn = await connect("postgres://app@localhost/app", { transport: denoTcp });
 * ```
 *
 * @module
 */

import { ConnectionError, errorMessage } from "../src/errors.ts";
import {
  type ByteStream,
  hasClientCertificate,
  readSslAnswer,
  SSL_REQUEST,
  type StreamHandlers,
  type Transport,
  type TransportConnectOptions,
  unixSocketPath,
} from "../src/transport.ts";

/** The Deno TCP transport. */
export const denoTcp: Transport = {
  name: "deno-tcp",
  connect,
};

async function connect(options: TransportConnectOptions): Promise<ByteStream> {
  const { host, port, tls, signal } = options;
  signal?.throwIfAborted();
  const path = unixSocketPath(host, port);
  if (path !== undefined) return await connectUnix(path, signal);
  if (tls?.mode === "verify-ca" || hasClientCertificate(tls)) {
    // Deno.startTls cannot do either as libpq does: it trusts its built-in roots beside the
    // given CAs (so a chain check without the host name would pass any publicly trusted
    // certificate), and it presents no client certificate. Deno's node:tls does both.
    const { nodeTcp } = await import("./node.ts");
    return await nodeTcp.connect(options);
  }
  let conn: Deno.TcpConn | Deno.TlsConn;
  try {
    conn = await Deno.connect({ hostname: host, port, transport: "tcp", signal });
  } catch (error) {
    throw signal?.aborted ? signal.reason : new ConnectionError(
      "CONNECT_FAILED",
      `Could not connect to ${host}:${port}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  const tcp = conn;
  const onAbort = () => closeQuietly(conn);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (options.keepAlive !== false) tcp.setKeepAlive(true);
    tcp.setNoDelay(true);
    if (tls !== null) {
      // Read more than the one byte expected, to see injected bytes behind it.
      const buf = new Uint8Array(16);
      let n: number | null;
      try {
        await writeAll(tcp, SSL_REQUEST);
        n = await tcp.read(buf);
      } catch (error) {
        // A reset here (a pooler shutting down) is a connection error, as on Node.
        throw signal?.aborted ? signal.reason : new ConnectionError(
          "TLS_FAILED",
          `SSLRequest to ${host}:${port} failed: ${errorMessage(error)}`,
          { cause: error },
        );
      }
      if (readSslAnswer(buf.subarray(0, n ?? 0), tls, `${host}:${port}`)) {
        const caCerts = [...(tls.ca ?? [])];
        if (tls.caFile !== undefined) caCerts.push(await Deno.readTextFile(tls.caFile));
        try {
          conn = await Deno.startTls(tcp, {
            hostname: tls.serverName,
            caCerts: caCerts.length > 0 ? caCerts : undefined,
            unsafelyDisableHostnameVerification: tls.mode !== "verify-full",
          });
          await conn.handshake();
        } catch (error) {
          throw signal?.aborted ? signal.reason : new ConnectionError(
            "TLS_FAILED",
            `TLS with ${host}:${port} failed: ${errorMessage(error)}`,
            { cause: error },
          );
        }
      }
    }
    signal?.throwIfAborted();
    return new DenoStream(conn, tls !== null && conn !== tcp);
  } catch (error) {
    closeQuietly(conn);
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * A Unix-domain socket: no TLS (PostgreSQL offers none there, and libpq asks for none), no
 * keepalive or Nagle to set.
 */
async function connectUnix(path: string, signal: AbortSignal | undefined): Promise<ByteStream> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (error) {
    throw signal?.aborted ? signal.reason : new ConnectionError(
      "CONNECT_FAILED",
      `Could not connect to ${path}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  if (signal?.aborted) {
    closeQuietly(conn);
    throw signal.reason;
  }
  return new DenoStream(conn, false);
}

/**
 * How long `close()` lets queued writes go out (a Terminate, say) before it closes the
 * connection anyway: a peer that does not read would otherwise hold it, and every byte queued
 * for it, for as long as it stays connected.
 */
const CLOSE_GRACE_MS = 5_000;

/** Read buffer sizes, in bytes (see `#readLoop`). */
const READ_MIN = 4096;
const READ_MAX = 65536;

class DenoStream implements ByteStream {
  readonly encrypted: boolean;
  readonly #conn: Deno.Conn;
  #handlers: StreamHandlers | null = null;
  /** Bytes written while a write was in flight: they leave together when it completes. */
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** The bytes of the write in flight (null when none is). */
  #writing: Uint8Array | null = null;
  #closing = false;
  #closed = false;
  /** Closes the connection once `close()`'s grace for queued writes is over. */
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Reading stops after the current chunk while set; `resume()` calls it to go on. */
  #paused = false;
  #resumeRead: (() => void) | null = null;
  /** `drained()` callers, told once no write is in flight (or the stream closed). */
  #drainWaiters: (() => void)[] = [];
  // Bound once: a write costs one promise, the conn's own, and no closure.
  readonly #onWritten = (n: number) => this.#written(n);
  readonly #onWriteFailed = (error: unknown) => this.#writeFailed(error);

  constructor(conn: Deno.Conn, encrypted: boolean) {
    this.#conn = conn;
    this.encrypted = encrypted;
  }

  /** Bytes handed to `write()` and not yet taken by the operating system. */
  get bufferedAmount(): number {
    return (this.#writing?.length ?? 0) + this.#queued;
  }

  start(handlers: StreamHandlers): void {
    this.#handlers = handlers;
    this.#readLoop();
  }

  /** Resolves once every byte written so far was taken by the operating system. */
  drained(): Promise<void> {
    if (this.#writing === null || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #wakeDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    if (waiters.length === 0) return;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Stops reading after the chunk being delivered (a relay whose reader is behind). */
  pause(): void {
    this.#paused = true;
  }

  /** Reads again after `pause()`. */
  resume(): void {
    this.#paused = false;
    const resume = this.#resumeRead;
    this.#resumeRead = null;
    resume?.();
  }

  async #readLoop(): Promise<void> {
    // A pending read holds its buffer for as long as the connection sits idle: start small,
    // double while reads fill it (big results), and go back to small after a small read.
    let buf = new Uint8Array(READ_MIN);
    try {
      while (true) {
        if (this.#paused) {
          await new Promise<void>((resolve) => this.#resumeRead = resolve);
          if (this.#closed) return;
        }
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.#handlers!.data(buf.subarray(0, n));
        if (n === buf.length && n < READ_MAX) buf = new Uint8Array(n * 2);
        else if (n < READ_MIN && buf.length > READ_MIN) buf = new Uint8Array(READ_MIN);
      }
      this.#finish(undefined);
    } catch (error) {
      this.#finish(this.#closing ? undefined : asError(error));
    }
  }

  write(data: Uint8Array): void {
    if (this.#closed || this.#closing || data.length === 0) return;
    if (this.#writing === null) return this.#send(data);
    this.#queue.push(data);
    this.#queued += data.length;
  }

  #send(data: Uint8Array): void {
    this.#writing = data;
    let pending;
    try {
      pending = this.#conn.write(data);
    } catch (error) {
      return this.#writeFailed(error);
    }
    pending.then(this.#onWritten, this.#onWriteFailed);
  }

  #written(n: number): void {
    const data = this.#writing!;
    if (n < data.length) return this.#send(data.subarray(n));
    if (this.#queue.length > 0) {
      // Everything written since, in order, as one write.
      const next = this.#queue.length === 1 ? this.#queue[0] : concat(this.#queue);
      this.#queue = [];
      this.#queued = 0;
      return this.#send(next);
    }
    this.#writing = null;
    this.#wakeDrainWaiters();
    if (this.#closing) {
      clearTimeout(this.#closeTimer);
      closeQuietly(this.#conn);
    }
  }

  #writeFailed(error: unknown): void {
    this.#writing = null;
    this.#queue = [];
    this.#queued = 0;
    // Closed by close() once its grace was over: not a failure.
    this.#finish(this.#closing ? undefined : asError(error));
    closeQuietly(this.#conn);
    this.#wakeDrainWaiters();
  }

  close(): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    // A paused read loop reads on, to see the end of the connection.
    this.resume();
    // Queued writes (a Terminate, say) go out first, within CLOSE_GRACE_MS.
    if (this.#writing === null) return closeQuietly(this.#conn);
    this.#closeTimer = setTimeout(() => closeQuietly(this.#conn), CLOSE_GRACE_MS);
    Deno.unrefTimer(this.#closeTimer);
  }

  #finish(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#closeTimer);
    closeQuietly(this.#conn);
    // A paused read loop has nothing more to read.
    this.resume();
    this.#wakeDrainWaiters();
    this.#handlers?.close(error);
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  while (data.length > 0) {
    const n = await conn.write(data);
    data = data.subarray(n);
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
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

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
