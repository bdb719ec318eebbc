/**
 * TCP transport for Node and Bun: `node:net` with TCP keepalive, and `node:tls` after an
 * accepted SSLRequest. `sslmode=require` encrypts without verifying the certificate (as libpq
 * does); `verify-full` verifies the chain and the host name. A host that starts with `/` is the
 * directory of the server's Unix-domain socket (`.s.PGSQL.<port>` in it, as libpq reads it),
 * reached without TLS.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * import { nodeTcp } from "@edgepool/edgepool/transports/node";
 * const conn = await connect("postgres://app@localhost/app", { transport: nodeTcp });
 * ```
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import * as net from "node:net";
import * as tls from "node:tls";
import { ConnectionError } from "../src/errors.ts";
import {
  type ByteStream,
  readSslAnswer,
  SSL_REQUEST,
  type StreamHandlers,
  type TlsSettings,
  type Transport,
  type TransportConnectOptions,
  unixSocketPath,
} from "../src/transport.ts";

const KEEPALIVE_DELAY_MS = 60_000;
const CLOSE_GRACE_MS = 5_000;

/** The Node/Bun TCP transport. */
export const nodeTcp: Transport = {
  name: "node-tcp",
  connect,
};

async function connect(options: TransportConnectOptions): Promise<ByteStream> {
  const { host, port, signal } = options;
  signal?.throwIfAborted();
  const path = unixSocketPath(host, port);
  const where = path ?? `${host}:${port}`;
  let socket: net.Socket = path === undefined ? net.connect({ host, port }) : net.connect({ path });
  const onAbort = () => socket.destroy();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        socket.off("connect", onConnect).off("error", done).off("close", onClose);
        if (error === undefined) return resolve();
        reject(
          new ConnectionError(
            "CONNECT_FAILED",
            `Could not connect to ${where}: ${error.message}`,
            { cause: error },
          ),
        );
      };
      const onConnect = () => done();
      const onClose = () => done(new Error("the socket closed"));
      socket.on("connect", onConnect).on("error", done).on("close", onClose);
    });
    let encrypted = false;
    if (path === undefined) {
      socket.setNoDelay(true);
      if (options.keepAlive !== false) {
        socket.setKeepAlive(true, options.keepAliveInitialDelay ?? KEEPALIVE_DELAY_MS);
      }
    }
    // No TLS on a Unix-domain socket: PostgreSQL offers none there, and libpq asks for none.
    if (options.tls !== null && path === undefined) {
      if (readSslAnswer(await sslRequest(socket), options.tls, where)) {
        socket = await upgrade(socket, options.tls, where);
        encrypted = true;
      }
    }
    signal?.throwIfAborted();
    return new NodeStream(socket, encrypted);
  } catch (error) {
    socket.destroy();
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Sends the SSLRequest and resolves with the first chunk the server answers with. */
function sslRequest(socket: net.Socket): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const finish = (error: Error | undefined, answer?: Uint8Array) => {
      socket.off("data", onData).off("error", onError).off("close", onClose);
      if (error === undefined) resolve(answer);
      else reject(error);
    };
    const onData = (chunk: Uint8Array) => {
      socket.pause();
      finish(undefined, chunk);
    };
    const onError = (error: Error) =>
      finish(new ConnectionError("TLS_FAILED", `SSLRequest failed: ${error.message}`));
    const onClose = () => finish(undefined, undefined);
    socket.on("data", onData).on("error", onError).on("close", onClose);
    socket.write(SSL_REQUEST);
  });
}

async function upgrade(
  socket: net.Socket,
  settings: TlsSettings,
  where: string,
): Promise<tls.TLSSocket> {
  const ca = [...(settings.ca ?? [])];
  if (settings.caFile !== undefined) ca.push(await readFile(settings.caFile, "utf8"));
  const verify = settings.mode === "verify-full";
  const serverName = settings.serverName;
  return await new Promise<tls.TLSSocket>((resolve, reject) => {
    const secure = tls.connect({
      socket,
      host: serverName,
      // SNI takes host names only.
      servername: net.isIP(serverName) ? undefined : serverName,
      ca: ca.length > 0 ? ca : undefined,
      rejectUnauthorized: verify,
      checkServerIdentity: verify ? tls.checkServerIdentity : () => undefined,
    });
    const onError = (error: Error) => {
      secure.destroy();
      reject(
        new ConnectionError("TLS_FAILED", `TLS with ${where} failed: ${error.message}`, {
          cause: error,
        }),
      );
    };
    secure.once("secureConnect", () => {
      secure.off("error", onError);
      resolve(secure);
    });
    secure.once("error", onError);
  });
}

class NodeStream implements ByteStream {
  readonly encrypted: boolean;
  readonly #socket: net.Socket;
  #error: Error | undefined;
  #closing = false;

  constructor(socket: net.Socket, encrypted: boolean) {
    this.#socket = socket;
    this.encrypted = encrypted;
  }

  start(handlers: StreamHandlers): void {
    const socket = this.#socket;
    socket.on("data", (chunk: Uint8Array) => handlers.data(chunk));
    socket.on("error", (error) => {
      if (!this.#closing) this.#error ??= error;
    });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      handlers.close(this.#error);
    };
    // The server ended its side: the session is over (a PostgreSQL server never half-closes).
    // Said at once, not at "close", which waits for this side to end too: a query written
    // in between would fail with EPIPE instead of being refused as on a closed connection.
    socket.once("end", end);
    socket.once("close", end);
    socket.resume();
  }

  /** Bytes handed to `write()` and not yet taken by the operating system. */
  get bufferedAmount(): number {
    return this.#socket.writableLength;
  }

  /** Resolves once Node's write buffer has drained (or the socket closed). */
  drained(): Promise<void> {
    const socket = this.#socket;
    // Below its highWaterMark Node asked for no drain and will not emit one.
    if (!socket.writableNeedDrain || socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        socket.off("drain", done).off("close", done);
        resolve();
      };
      socket.on("drain", done).on("close", done);
    });
  }

  /** Stops reading (a relay whose reader is behind, a `copyTo` whose consumer is). */
  pause(): void {
    this.#socket.pause();
  }

  /** Reads again after `pause()`. */
  resume(): void {
    if (!this.#closing) this.#socket.resume();
  }

  write(data: Uint8Array): void {
    if (!this.#socket.destroyed) this.#socket.write(data);
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    // A paused socket reads on, to see the end of the connection.
    this.#socket.resume();
    // end() flushes queued writes first; a peer that never closes its side is cut off.
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), CLOSE_GRACE_MS).unref?.();
  }
}
