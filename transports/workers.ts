/**
 * TCP transport for Cloudflare Workers: `connect()` from `cloudflare:sockets`, with
 * `secureTransport: "starttls"` so the SSLRequest is answered before the TLS upgrade.
 *
 * Workers verify certificates against public roots only (no custom CA), and a socket cannot
 * outlive the request that opened it: open connections inside the handler. Refused with a
 * TypeError, before anything is sent: `sslmode=verify-ca` (`startTls` always checks the host
 * name, so it would do more than asked) and client certificates (`startTls` takes none; mTLS on
 * Workers is a binding for `fetch`, not for sockets).
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
  hasClientCertificate,
  noUnixSockets,
  readSslAnswer,
  SSL_REQUEST,
  type StreamHandlers,
  type Transport,
  type TransportConnectOptions,
  unixSocketPath,
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

async function connect(
  { host, port, tls, signal }: TransportConnectOptions,
): Promise<ByteStream> {
  signal?.throwIfAborted();
  if (unixSocketPath(host, port) !== undefined) {
    throw noUnixSockets("Workers TCP transport", host, port);
  }
  if (tls?.mode === "verify-ca") {
    throw new TypeError(
      "sslmode=verify-ca is not supported by the Workers transport: cloudflare:sockets " +
        "startTls always verifies the host name and takes no CA; use verify-full",
    );
  }
  if (hasClientCertificate(tls)) {
    throw new TypeError(
      "A client certificate (sslcert/sslkey, cert/key) cannot be presented by the Workers " +
        "transport: cloudflare:sockets startTls takes no certificate or key",
    );
  }
  const where = `${host}:${port}`;
  let socket = (cfConnect as (address: string, options: unknown) => CfSocket)(
    // An IPv6 literal needs brackets in the address string.
    host.includes(":") ? `[${host}]:${port}` : where,
    { secureTransport: tls === null ? "off" : "starttls", allowHalfOpen: false },
  );
  const close = () => socket.close().catch(() => {});
  signal?.addEventListener("abort", close, { once: true });
  try {
    await socket.opened.catch((error) => {
      throw new ConnectionError(
        "CONNECT_FAILED",
        `Could not connect to ${where}: ${errorMessage(error)}`,
        { cause: error },
      );
    });
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
        await socket.opened.catch((error) => {
          throw tlsFailed(where, error);
        });
        encrypted = true;
      }
    }
    signal?.throwIfAborted();
    return stream(socket, encrypted, where);
  } catch (error) {
    close();
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", close);
  }
}

function stream(socket: CfSocket, encrypted: boolean, where: string): ByteStream {
  const writer = socket.writable.getWriter();
  const closeSocket = () => socket.close().catch(() => {});
  let closing = false;
  let closed = false;
  let received = false;
  let handlers: StreamHandlers | undefined;
  /** Bytes of writes not yet done, and who waits for them to be (`drained()`). */
  let unwritten = 0;
  let drainWaiters: (() => void)[] = [];
  const wakeDrainWaiters = () => {
    const waiters = drainWaiters;
    drainWaiters = [];
    for (const resolve of waiters) resolve();
  };
  /** Set while paused: reading waits for it to be called. */
  let paused = false;
  let resumeRead: (() => void) | null = null;
  const resume = () => {
    paused = false;
    const go = resumeRead;
    resumeRead = null;
    go?.();
  };
  const finish = (error?: unknown) => {
    if (closed) return;
    closed = true;
    resume();
    wakeDrainWaiters();
    handlers?.close(
      error === undefined
        ? undefined
        // workerd runs the TLS handshake lazily, at the first read or write: a failure there
        // is a TLS failure (most often a certificate that public roots do not vouch for).
        : encrypted && !received
        ? tlsFailed(where, error)
        : error instanceof Error
        ? error
        : new Error(String(error)),
    );
  };
  return {
    encrypted,
    async start(given) {
      handlers = given;
      const reader = socket.readable.getReader();
      try {
        for (let chunk; !(chunk = await reader.read()).done;) {
          received = true;
          given.data(chunk.value);
          if (paused) await new Promise<void>((resolve) => resumeRead = resolve);
        }
        finish();
      } catch (error) {
        finish(closing ? undefined : error);
      }
    },
    write(data) {
      if (closing || closed) return;
      unwritten += data.length;
      writer.write(data).then(() => {
        unwritten -= data.length;
        if (unwritten === 0) wakeDrainWaiters();
      }, (error) => {
        finish(error);
        closeSocket();
      });
    },
    get bufferedAmount() {
      return unwritten;
    },
    drained() {
      if (unwritten === 0 || closed) return Promise.resolve();
      return new Promise<void>((resolve) => drainWaiters.push(resolve));
    },
    pause() {
      paused = true;
    },
    resume,
    close() {
      if (closing || closed) return;
      closing = true;
      resume();
      // Closing the writer waits for queued writes; then the socket goes.
      writer.close().catch(() => {}).finally(closeSocket);
    },
  };
}

function tlsFailed(where: string, error: unknown): ConnectionError {
  return new ConnectionError("TLS_FAILED", `TLS with ${where} failed: ${errorMessage(error)}`, {
    cause: error,
  });
}
