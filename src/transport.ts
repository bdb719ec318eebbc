/**
 * The transport contract: how the protocol client gets a byte stream to a server. Each runtime
 * file under `transports/` implements it the same way; the core never imports them.
 *
 * @module
 */

import { ConnectionError } from "./errors.ts";

/** `sslmode` as libpq spells it, restricted to the modes edgepool implements. */
export type SslMode = "disable" | "prefer" | "require" | "verify-ca" | "verify-full";

/** TLS settings handed to a transport. */
export interface TlsSettings {
  /**
   * - `prefer`: ask for TLS; use it if the server agrees, plain TCP otherwise. No verification.
   * - `require`: TLS or fail. The certificate is not verified where the runtime allows that
   *   (Node, Bun); Deno and Workers always verify.
   * - `verify-ca`: TLS or fail; the certificate chain is verified against `ca`/`caFile` alone
   *   (always given: libpq's verify-ca without a CA of the user's own proves nothing), the host
   *   name is not. A transport that cannot verify a chain without the name, or cannot trust
   *   these CAs alone, refuses it with a TypeError (Deno, Workers) rather than doing more or
   *   less than asked.
   * - `verify-full`: TLS or fail; the certificate chain and the host name are verified.
   */
  mode: "prefer" | "require" | "verify-ca" | "verify-full";
  /** Host name for SNI and verification (the connection's host). */
  serverName: string;
  /** Trusted CA certificates in PEM; the runtime's own roots when absent. */
  ca?: string[];
  /** Path of a PEM file of trusted CAs (`sslrootcert`), read by the transport. */
  caFile?: string;
  /**
   * The client certificate (chain) in PEM, presented when the server asks for one. With `key`
   * or `keyFile`. A transport that cannot present one refuses with a TypeError.
   */
  cert?: string;
  /** Path of the client certificate's PEM file (`sslcert`), read by the transport. */
  certFile?: string;
  /** The client certificate's private key in PEM, possibly encrypted (see `keyPassword`). */
  key?: string;
  /** Path of the private key's PEM file (`sslkey`), read by the transport. */
  keyFile?: string;
  /** Passphrase of an encrypted private key (`sslpassword`). Never shown in a message. */
  keyPassword?: string;
}

/** Whether `tls` asks the transport to present a client certificate. */
export function hasClientCertificate(tls: TlsSettings | null): boolean {
  return tls !== null &&
    (tls.cert !== undefined || tls.certFile !== undefined || tls.key !== undefined ||
      tls.keyFile !== undefined);
}

/** Where and how a transport connects. */
export interface TransportConnectOptions {
  /**
   * Host name or IP address; or, starting with `/`, the directory that holds the server's
   * Unix-domain socket (see {@link unixSocketPath}). Transports without Unix sockets reject
   * such a host with a TypeError.
   */
  host: string;
  /** TCP port; for a Unix-domain socket, the number in its file name. */
  port: number;
  /**
   * TLS negotiation (SSLRequest) to perform before returning, or `null` for none. Ignored on a
   * Unix-domain socket, as libpq does whatever `sslmode` says: the stream is local, and
   * PostgreSQL offers no TLS there.
   */
  tls: TlsSettings | null;
  /** Aborts connecting; the transport rejects with the signal's reason and closes. */
  signal?: AbortSignal;
  /** Turn on TCP keepalive where the runtime allows it. Default `true`. */
  keepAlive?: boolean;
  /** Idle ms before the first keepalive probe, where the runtime can set it. Default 60000. */
  keepAliveInitialDelay?: number;
}

/** Receives what a {@link ByteStream} reads. */
export interface StreamHandlers {
  /** Bytes arrived. The chunk may be reused by the transport after the call returns. */
  data(chunk: Uint8Array): void;
  /** The stream ended; `error` is set when it ended abnormally. Called once. */
  close(error?: Error): void;
}

/** A connected, possibly TLS-wrapped, byte stream. */
export interface ByteStream {
  /** Whether TLS protects this stream. */
  readonly encrypted: boolean;
  /** Starts reading. Called once; nothing is read before it. */
  start(handlers: StreamHandlers): void;
  /** Queues bytes for sending. The caller does not touch `data` afterwards. */
  write(data: Uint8Array): void;
  /** Closes the stream. Idempotent. `close` handlers still fire once. */
  close(): void;
  /**
   * Optional, for backpressure (`copyFrom`): bytes handed to `write()` that have not been
   * taken by the operating system (or the network library) yet. Without it, and without
   * `drained`, a writer cannot tell a slow peer from a fast one and memory grows with the
   * source.
   */
  readonly bufferedAmount?: number;
  /**
   * Optional, for backpressure (`copyFrom`): resolves once the bytes written so far have been
   * taken by the operating system (`bufferedAmount` back to about 0), at once when nothing
   * waits, and when the stream closes. Never rejects.
   */
  drained?(): Promise<void>;
  /**
   * Optional, for backpressure (`copyTo`): stops reading after the chunk being delivered, so
   * that the peer is held back by TCP's flow control while the reader is behind. A transport
   * that cannot stop reading (the web WebSocket API has no such thing) leaves it out.
   */
  pause?(): void;
  /** Optional, with `pause()`: reads again. Harmless when not paused. */
  resume?(): void;
}

/** A way to reach a PostgreSQL server. */
export interface Transport {
  /** Short name for messages and logs: `deno-tcp`, `node-tcp`, `workers-tcp`, ... */
  readonly name: string;
  /**
   * `"password"`: the servers behind this transport ask for a cleartext password (Neon's
   * proxy and edgepool's gateway do, over WebSocket), so a connection sends the password right
   * behind its StartupMessage, without waiting to be asked: connect costs one round trip less.
   * A server that asks for another method (SCRAM, MD5) or for none costs a second connect
   * without pipelining. `connect()`'s own `pipelineConnect` option overrides this. Default:
   * off; the TCP transports leave it off.
   *
   * Security: a password sent ahead reaches the server in clear (protected by nothing but the
   * channel: TLS or `wss:`), even when the server would have used SCRAM, which never reveals
   * it. Set it only for servers that ask for a cleartext password anyway.
   */
  readonly pipelineConnect?: "password";
  /**
   * Opens a stream to `host:port`, performing the SSLRequest negotiation described by
   * `options.tls`. Rejects with a `ConnectionError` (`CONNECT_FAILED`, `TLS_UNAVAILABLE`,
   * `TLS_FAILED`) or with the signal's reason.
   */
  connect(options: TransportConnectOptions): Promise<ByteStream>;
}

/**
 * The Unix-domain socket that `host` names, as libpq reads it: a host that starts with `/` is
 * the directory holding the server's socket, `.s.PGSQL.<port>`. `undefined` for any other host
 * (a TCP host name or address). Linux's abstract sockets (libpq's `@name`) are not supported.
 *
 * @example
 * ```ts
 * import { unixSocketPath } from "./transport.ts";
 * console.assert(unixSocketPath("/var/run/postgresql", 5432) === "/var/run/postgresql/.s.PGSQL.5432");
 * console.assert(unixSocketPath("db.example.com", 5432) === undefined);
 * ```
 */
export function unixSocketPath(host: string, port: number): string | undefined {
  return host[0] === "/" ? `${host.replace(/\/+$/, "")}/.s.PGSQL.${port}` : undefined;
}

/**
 * Where a connection goes, for messages: the Unix-domain socket's path, or `host:port`.
 *
 * @example
 * ```ts
 * import { serverAddress } from "./transport.ts";
 * console.assert(serverAddress("/tmp", 5433) === "/tmp/.s.PGSQL.5433");
 * console.assert(serverAddress("db", 5432) === "db:5432");
 * ```
 */
export function serverAddress(host: string, port: number): string {
  return unixSocketPath(host, port) ?? `${host}:${port}`;
}

/**
 * The TypeError of a transport that cannot reach a Unix-domain socket (WebSocket, HTTP,
 * Workers): a setting that cannot work there, so a pool does not retry it.
 */
export function noUnixSockets(transport: string, host: string, port: number): TypeError {
  return new TypeError(
    `Cannot connect to the Unix-domain socket ${unixSocketPath(host, port)}: the ${transport} ` +
      "has none; Unix-domain sockets need a runtime with sockets of its own (Deno, Node or Bun " +
      "with their TCP transport). Give a TCP host name instead",
  );
}

/** The 8-byte SSLRequest message: length 8, code 80877103. */
export const SSL_REQUEST: Uint8Array = new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47]);

/**
 * Reads the server's answer to the SSLRequest: `true` to start TLS, `false` to go on without it
 * (`prefer` and the server said no). Throws a `ConnectionError` for everything else: no answer,
 * `N` when TLS is required, an unknown answer, or bytes after the answer, which would be
 * unencrypted data injected ahead of the TLS handshake (CVE-2021-23222).
 *
 * @example
 * ```ts
 * import { readSslAnswer } from "./transport.ts";
 * const tls = { mode: "prefer" as const, serverName: "db" };
 * console.assert(readSslAnswer(new Uint8Array([0x53]), tls, "db:5432") === true);
 * console.assert(readSslAnswer(new Uint8Array([0x4e]), tls, "db:5432") === false);
 * ```
 */
export function readSslAnswer(
  answer: Uint8Array | undefined,
  tls: TlsSettings,
  where: string,
): boolean {
  if (!answer?.length) {
    throw new ConnectionError("TLS_FAILED", `The server at ${where} closed the connection`);
  }
  if (answer.length > 1 || (answer[0] !== 0x53 && answer[0] !== 0x4e)) {
    throw new ConnectionError(
      "PROTOCOL_ERROR",
      `Protocol error: the server answered SSLRequest with ${answer.length} byte(s) from 0x${
        answer[0].toString(16)
      }, not one 'S' or 'N'`,
    );
  }
  if (answer[0] === 0x53) return true;
  if (tls.mode === "prefer") return false;
  throw new ConnectionError(
    "TLS_UNAVAILABLE",
    `The server at ${where} does not support TLS (sslmode=${tls.mode})`,
  );
}
