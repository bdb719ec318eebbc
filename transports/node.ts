/**
 * TCP transport for Node and Bun: `node:net` with TCP keepalive, and `node:tls` after an
 * accepted SSLRequest. As libpq: `sslmode=require` encrypts without verifying the certificate,
 * unless a CA is given (`ca`, `sslrootcert`), which makes it `verify-ca`; `verify-ca` verifies
 * the chain against the given CAs alone, not the host name; `verify-full` verifies both. A
 * client certificate (`cert`/`sslcert` with `key`/`sslkey`, `sslpassword` for an encrypted
 * key) is presented when the server asks for one. A host that starts with `/` is the directory
 * of the server's Unix-domain socket (`.s.PGSQL.<port>` in it, as libpq reads it), reached
 * without TLS.
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

import { createPrivateKey } from "node:crypto";
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
    const tls = path === undefined ? options.tls : null;
    // Files and keys are loaded before anything is sent: a bad one is the caller's to fix, and
    // must not look like a handshake failure (which `prefer` answers by going on without TLS).
    const files = tls === null ? null : await readTlsFiles(tls);
    if (tls !== null) {
      if (readSslAnswer(await sslRequest(socket), tls, where)) {
        socket = await upgrade(socket, tls, files!, where);
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

/** The PEM texts of `settings`, files read; a TypeError naming the file if one cannot be. */
async function readTlsFiles(settings: TlsSettings): Promise<TlsFiles> {
  const read = async (setting: string, path: string): Promise<string> => {
    try {
      return await readFile(path, "utf8");
    } catch (error) {
      throw new TypeError(
        `Cannot read the ${setting} file '${path}': ${(error as { code?: string }).code ?? error}`,
        { cause: error },
      );
    }
  };
  const ca = [...(settings.ca ?? [])];
  if (settings.caFile !== undefined) ca.push(await read("sslrootcert", settings.caFile));
  const key = settings.keyFile === undefined
    ? settings.key
    : await read("sslkey", settings.keyFile);
  if (key !== undefined) {
    // Loaded here, as node:tls would: Deno's node:tls leaves out a key it cannot load (a
    // wrong passphrase) and connects without a certificate, for the server to refuse.
    try {
      createPrivateKey({ key, format: "pem", passphrase: settings.keyPassword ?? "" });
    } catch (error) {
      throw keyNotLoaded(settings, error);
    }
  }
  return {
    ca: ca.length > 0 ? ca : undefined,
    cert: settings.certFile === undefined
      ? settings.cert
      : await read("sslcert", settings.certFile),
    key,
  };
}

/** The key did not load: the reason ("bad decrypt"), never the key or the passphrase. */
function keyNotLoaded(settings: TlsSettings, error: unknown): TypeError {
  const where = settings.keyFile === undefined ? "options.key" : `sslkey '${settings.keyFile}'`;
  const reason = settings.keyPassword === undefined ? " (no sslpassword given)" : "";
  return new TypeError(
    `Cannot load the TLS client key (${where})${reason}: ${(error as Error).message}`,
    { cause: error },
  );
}

interface TlsFiles {
  ca: string[] | undefined;
  cert: string | undefined;
  key: string | undefined;
}

async function upgrade(
  socket: net.Socket,
  settings: TlsSettings,
  { ca, cert, key }: TlsFiles,
  where: string,
): Promise<tls.TLSSocket> {
  // libpq's require verifies the chain when a root CA is given, as verify-ca does.
  const checkChain = settings.mode === "verify-full" || settings.mode === "verify-ca" ||
    (settings.mode === "require" && ca !== undefined);
  const serverName = settings.serverName;
  return await new Promise<tls.TLSSocket>((resolve, reject) => {
    let secure: tls.TLSSocket;
    try {
      secure = tls.connect({
        socket,
        host: serverName,
        // SNI takes host names only.
        servername: net.isIP(serverName) ? undefined : serverName,
        // Given CAs replace the runtime's roots: verify-ca trusts them alone, as libpq does.
        ca,
        cert,
        key,
        // An encrypted key without a passphrase fails to load rather than prompting.
        passphrase: key === undefined ? undefined : settings.keyPassword ?? "",
        rejectUnauthorized: checkChain,
        checkServerIdentity: settings.mode === "verify-full"
          ? tls.checkServerIdentity
          : () => undefined,
      });
    } catch (error) {
      // The certificates or key did not load: OpenSSL's reason ("bad decrypt", "key values
      // mismatch"), never the key or passphrase. The caller's to fix, so not a TLS_FAILED,
      // which `prefer` would answer by going on without TLS.
      return reject(
        new TypeError(
          `Cannot load the TLS ${
            key === undefined ? "CA certificates" : "client certificate and key"
          } for ${where}: ${(error as Error).message}`,
          { cause: error },
        ),
      );
    }
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
