/**
 * TCP transport for Cloudflare Workers: `connect()` from `cloudflare:sockets`, with
 * `secureTransport: "starttls"` so the SSLRequest is answered before the TLS upgrade.
 *
 * Workers verify certificates against public roots only (no custom CA), and a socket cannot
 * outlive the request that opened it: open connections inside the handler.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * import { workersTcp } from "@edgepool/edgepool/transports/workers";
 * const conn = await connect(env.DATABASE_URL, { transport: workersTcp });
 * ```
 *
 * @module
 */

import { connect as cfConnect } from "cloudflare:sockets";
import { ConnectionError, errorMessage } from "../src/errors.ts";
import {
  type ByteStream,
  readSslAnswer,
  SSL_REQUEST,
  type StreamHandlers,
  type Transport,
  type TransportConnectOptions,
} from "../src/transport.ts";

/** The subset of a `cloudflare:sockets` Socket that this transport uses. */
interface CfSocket {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly opened: Promise<unknown>;
  readonly closed: Promise<void>;
  close(): Promise<void>;
  startTls(options?: { expectedServerHostname?: string }): CfSocket;
}

/** The Cloudflare Workers TCP transport. */
export const workersTcp: Transport = {
  name: "workers-tcp",
  connect,
};

async function connect(options: TransportConnectOptions): Promise<ByteStream> {
  const { host, port, tls, signal } = options;
  signal?.throwIfAborted();
  const where = `${host}:${port}`;
  let socket = (cfConnect as (address: string, options: unknown) => CfSocket)(
    // An IPv6 literal needs brackets in the address string.
    host.includes(":") ? `[${host}]:${port}` : where,
    { secureTransport: tls === null ? "off" : "starttls", allowHalfOpen: false },
  );
  const onAbort = () => socket.close().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    try {
      await socket.opened;
    } catch (error) {
      throw new ConnectionError(
        "CONNECT_FAILED",
        `Could not connect to ${where}: ${errorMessage(error)}`,
        {
          cause: error,
        },
      );
    }
    let encrypted = false;
    if (tls !== null) {
      const writer = socket.writable.getWriter();
      await writer.write(SSL_REQUEST);
      writer.releaseLock();
      const reader = socket.readable.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      if (readSslAnswer(value, tls, where)) {
        socket = socket.startTls({ expectedServerHostname: tls.serverName });
        try {
          await socket.opened;
        } catch (error) {
          throw new ConnectionError(
            "TLS_FAILED",
            `TLS with ${where} failed: ${errorMessage(error)}`,
            {
              cause: error,
            },
          );
        }
        encrypted = true;
      }
    }
    signal?.throwIfAborted();
    return new WorkersStream(socket, encrypted, where);
  } catch (error) {
    socket.close().catch(() => {});
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

class WorkersStream implements ByteStream {
  readonly encrypted: boolean;
  readonly #socket: CfSocket;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #where: string;
  #closing = false;
  #closed = false;
  #received = false;
  #handlers: StreamHandlers | null = null;

  constructor(socket: CfSocket, encrypted: boolean, where: string) {
    this.#socket = socket;
    this.encrypted = encrypted;
    this.#where = where;
    this.#writer = socket.writable.getWriter();
  }

  start(handlers: StreamHandlers): void {
    this.#handlers = handlers;
    this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const reader = this.#socket.readable.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#received = true;
        this.#handlers!.data(value);
      }
      this.#finish(undefined);
    } catch (error) {
      this.#finish(this.#closing ? undefined : asError(error));
    }
  }

  write(data: Uint8Array): void {
    if (this.#closing || this.#closed) return;
    this.#writer.write(data).catch((error) => {
      this.#finish(asError(error));
      this.#socket.close().catch(() => {});
    });
  }

  close(): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    // Closing the writer waits for queued writes; then the socket goes.
    this.#writer.close().catch(() => {}).finally(() => {
      this.#socket.close().catch(() => {});
    });
  }

  #finish(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    if (error !== undefined && this.encrypted && !this.#received) {
      // workerd runs the TLS handshake lazily, at the first read or write: a failure there is
      // a TLS failure (most often a certificate that public roots do not vouch for).
      error = new ConnectionError(
        "TLS_FAILED",
        `TLS with ${this.#where} failed: ${error.message}`,
        {
          cause: error,
        },
      );
    }
    this.#handlers?.close(error);
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
