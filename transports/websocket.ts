/**
 * WebSocket transport: one WebSocket carries one raw PostgreSQL byte stream in binary frames,
 * as Neon's serverless driver does, through Neon's proxy, edgepool's gateway, or any relay that
 * passes the bytes on untouched (websockify, Neon's wsproxy). For runtimes without TCP (Vercel
 * Edge, browsers) or where a WebSocket is cheaper to open.
 *
 * There is no PostgreSQL-level TLS inside the WebSocket: a `wss:` proxy URL protects the
 * stream to the proxy, with the certificate verified by the runtime against its own roots.
 * `sslmode=require`, `verify-ca` and `verify-full` are satisfied by `wss:` only; `prefer` goes
 * on without TLS over `ws:`. `ca`/`sslrootcert` do not apply, and the PostgreSQL server's own
 * certificate is not seen: the proxy is trusted with the stream. A client certificate
 * (`sslcert`/`sslkey`, `cert`/`key`) cannot reach the server through the proxy: it is refused
 * with a TypeError.
 *
 * Each write is one binary frame (the connection writes everything issued in one tick at
 * once). The password is sent right behind the StartupMessage by default (`pipelineConnect`),
 * as the servers this transport is meant for ask for a cleartext password over WebSocket.
 * `keepAlive` does not apply: the WebSocket API cannot send pings (proxies send their own).
 * A CancelRequest goes over a new WebSocket, as any connect does.
 *
 * Backpressure: writes wait on the socket's `bufferedAmount` (looked at every few ms, as no
 * WebSocket API says when it drained), so `copyFrom` stays bounded. Reading can be paused with
 * the `ws` package (Node) only: the web platform's WebSocket (Deno, Bun, Workers, browsers) has
 * no way to stop reading, so a `copyTo` whose consumer is slower than the server buffers what
 * the proxy sends, as far as the proxy sends it.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * import { websocketTransport } from "@edgepool/edgepool/transports/websocket";
 * const transport = websocketTransport({ proxy: "wss://gateway.example.com/v2" });
 * await using conn = await connect("postgres://app:secret@db.internal/app", { transport });
 * ```
 *
 * @module
 */

import { ConnectionError, errorMessage } from "../src/errors.ts";
import {
  type ByteStream,
  hasClientCertificate,
  noUnixSockets,
  type StreamHandlers,
  type Transport,
  type TransportConnectOptions,
  unixSocketPath,
} from "../src/transport.ts";

/** What the transport uses of a WebSocket: the web platform's, or the `ws` package's. */
export interface WebSocketLike {
  /** Set to `"arraybuffer"` before anything arrives. */
  binaryType: string;
  /** Sends one binary frame. */
  send(data: Uint8Array): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /** Subscribes to `message` events. */
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  /** Subscribes to `close` events. */
  addEventListener(
    type: "close",
    listener: (event: { code: number; reason: string }) => void,
  ): void;
  /** Subscribes to `open` and `error` events. */
  addEventListener(type: "open" | "error", listener: (event: unknown) => void): void;
  /** Bytes sent and not yet handed to the network (both APIs have it). */
  readonly bufferedAmount?: number;
  /** Stops reading (the `ws` package has it; the web API does not). */
  pause?(): void;
  /** Reads again after `pause()` (`ws`). */
  resume?(): void;
}

/** A WebSocket constructor: the global `WebSocket`, or `ws`'s on Node 20. */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
) => WebSocketLike;

/** Options of {@link websocketTransport}. */
export interface WebSocketTransportOptions {
  /**
   * Where the proxy is. A string `ws://host:port/path` or `wss://...` gets
   * `?address=pghost:pgport` appended (Neon's `wsProxy` convention, which edgepool's gateway
   * and Neon's wsproxy read); a function of the PostgreSQL host and port returns the full URL.
   */
  proxy: string | ((host: string, port: number) => string);
  /**
   * The WebSocket constructor. Default: the global `WebSocket` (Deno, Bun, Workers, browsers,
   * Node 22+); on Node 20 pass the `ws` package's.
   */
  WebSocket?: WebSocketConstructor | (new (url: string) => WebSocketLike);
  /**
   * `"password"`: send the cleartext password right behind the StartupMessage, without waiting
   * to be asked; Neon's proxy and edgepool's gateway always ask for it over WebSocket, so this
   * saves a round trip. A server that asks for SCRAM or MD5 instead (PostgreSQL behind a plain
   * relay) costs one extra attempt, once per server and user. `false`: wait to be asked.
   * `connect()`'s `pipelineConnect` option overrides this. Default `"password"`.
   *
   * Security: the password sent ahead is protected only by the channel, so use `wss:` beyond
   * the local machine, and `false` for a relay in front of a SCRAM server (which would not
   * have needed the password in clear).
   */
  pipelineConnect?: "password" | false;
}

const CLOSE_GRACE_MS = 5_000;
/** How often `drained()` looks at `bufferedAmount`: no WebSocket API says when it drained. */
const DRAIN_CHECK_MS = 2;
const NORMAL_CLOSURE = 1000;
const NO_STATUS = 1005;

/**
 * Makes a transport that reaches PostgreSQL through a WebSocket proxy.
 *
 * @param options Where the proxy is, the WebSocket constructor, pipelined connect.
 * @returns The transport, to pass as `connect()`'s `transport` option.
 * @throws {TypeError} If `proxy` is not a `ws:`/`wss:` URL or a function, or no WebSocket
 *   constructor is given and the runtime has none.
 *
 * @example
 * ```ts
 * import { websocketTransport } from "./websocket.ts";
 * const transport = websocketTransport({
 *   proxy: (host, port) => `wss://proxy.example.com/v2?address=${host}:${port}`,
 *   pipelineConnect: false,
 * });
 * console.assert(transport.name === "websocket" && transport.pipelineConnect === undefined);
 * ```
 */
export function websocketTransport(options: WebSocketTransportOptions): Transport {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("websocketTransport needs an options object with a proxy");
  }
  const { proxy, pipelineConnect = "password" } = options;
  if (typeof proxy === "string") checkUrl(proxy, "options.proxy");
  else if (typeof proxy !== "function") {
    throw new TypeError("options.proxy must be a ws:// or wss:// URL or a function (host, port)");
  }
  if (pipelineConnect !== "password" && pipelineConnect !== false) {
    throw new TypeError(`options.pipelineConnect must be "password" or false`);
  }
  const Impl = (options.WebSocket ??
    (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket) as
      | WebSocketConstructor
      | undefined;
  if (typeof Impl !== "function") {
    throw new TypeError(
      "This runtime has no global WebSocket: pass one as options.WebSocket " +
        '(on Node 20: `WebSocket` from the "ws" package)',
    );
  }
  const urlFor = (host: string, port: number): string => {
    if (typeof proxy === "function") return checkUrl(proxy(host, port), "options.proxy()");
    const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    return `${proxy}${proxy.includes("?") ? "&" : "?"}address=${address}`;
  };
  const transport: Transport = {
    name: "websocket",
    connect: (connectOptions) => connect(Impl, urlFor, connectOptions),
  };
  return pipelineConnect === "password" ? { ...transport, pipelineConnect } : transport;
}

function checkUrl(url: unknown, what: string): string {
  let parsed: URL | undefined;
  try {
    parsed = typeof url === "string" ? new URL(url) : undefined;
  } catch {
    // Reported below.
  }
  if (parsed?.protocol !== "ws:" && parsed?.protocol !== "wss:") {
    throw new TypeError(
      `${what} must be a ws:// or wss:// URL, not ${
        typeof url === "string" ? JSON.stringify(redact(url)) : typeof url
      }`,
    );
  }
  return url as string;
}

/** The URL without its query string and credentials, for messages. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return url.replace(/[?#].*$/s, "").replace(/\/\/[^/]*@/, "//***@");
  }
}

async function connect(
  Impl: WebSocketConstructor,
  urlFor: (host: string, port: number) => string,
  options: TransportConnectOptions,
): Promise<ByteStream> {
  const { host, port, tls, signal } = options;
  signal?.throwIfAborted();
  // A socket file on this machine: no proxy can reach it, and none should be asked to.
  if (unixSocketPath(host, port) !== undefined) {
    throw noUnixSockets("WebSocket transport", host, port);
  }
  const url = urlFor(host, port);
  const where = `${host}:${port} through ${redact(url)}`;
  const secure = url.startsWith("wss:");
  if (hasClientCertificate(tls)) {
    throw new TypeError(
      `A client certificate (sslcert/sslkey, cert/key) cannot be presented to ${where}: the ` +
        "WebSocket transport has no TLS of its own with the server",
    );
  }
  if (tls !== null && tls.mode !== "prefer" && !secure) {
    throw new ConnectionError(
      "TLS_UNAVAILABLE",
      `Cannot connect to ${where} with sslmode=${tls.mode}: the WebSocket transport has no ` +
        "TLS inside the WebSocket; use a wss:// proxy URL, which encrypts the stream to the proxy",
    );
  }
  let socket: WebSocketLike;
  try {
    socket = new Impl(url);
  } catch (error) {
    throw new ConnectionError(
      "CONNECT_FAILED",
      `Could not connect to ${where}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  try {
    socket.binaryType = "arraybuffer";
  } catch {
    // A runtime that only ever delivers ArrayBuffers may not let it be set.
  }
  const stream = new WebSocketStream(socket, secure, where);
  await stream.opened(signal);
  return stream;
}

type Phase = "connecting" | "open" | "closing" | "closed";

class WebSocketStream implements ByteStream {
  readonly encrypted: boolean;
  readonly #socket: WebSocketLike;
  readonly #where: string;
  #phase: Phase = "connecting";
  #handlers: StreamHandlers | null = null;
  /** What arrived before `start()`. */
  #early: Uint8Array[] = [];
  /** Whether any byte came from the server: a proxy that closes before that never reached it. */
  #received = false;
  #error: Error | undefined;
  /** Settles the `opened()` promise. */
  #settle: ((error?: Error) => void) | null = null;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Stops reading: only where the WebSocket can (the `ws` package), else left out. */
  readonly pause?: () => void;
  /** Reads again after `pause()`. */
  readonly resume?: () => void;

  constructor(socket: WebSocketLike, encrypted: boolean, where: string) {
    this.#socket = socket;
    this.encrypted = encrypted;
    this.#where = where;
    if (typeof socket.pause === "function" && typeof socket.resume === "function") {
      this.pause = () => socket.pause!();
      this.resume = () => {
        if (this.#phase !== "closed") socket.resume!();
      };
    }
    socket.addEventListener("open", () => {
      if (this.#phase !== "connecting") return;
      this.#phase = "open";
      this.#settle?.();
    });
    socket.addEventListener("message", (event) => this.#onMessage(event.data));
    socket.addEventListener("error", (event) => {
      const detail = event as { message?: unknown; error?: unknown } | null;
      const text = typeof detail?.message === "string" && detail.message
        ? detail.message
        : detail?.error instanceof Error
        ? detail.error.message
        : "WebSocket error";
      this.#error ??= new Error(text, { cause: detail?.error ?? event });
    });
    socket.addEventListener("close", (event) => this.#onClose(event.code, event.reason));
  }

  /** Resolves on `open`; rejects with CONNECT_FAILED or the signal's reason. */
  opened(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#phase !== "connecting") {
        return this.#phase === "open" ? resolve() : reject(this.#connectFailed(undefined));
      }
      const onAbort = () => {
        this.#closeSocket();
        finish(signal!.reason);
      };
      const finish = (error?: unknown) => {
        if (this.#settle === null) return;
        this.#settle = null;
        signal?.removeEventListener("abort", onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      this.#settle = (error) => finish(error && this.#connectFailed(error));
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #connectFailed(error: Error | undefined): ConnectionError {
    return new ConnectionError(
      "CONNECT_FAILED",
      `Could not connect to ${this.#where}: ${error?.message ?? "the WebSocket closed"}`,
      { cause: error },
    );
  }

  start(handlers: StreamHandlers): void {
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = [];
    for (const chunk of early) handlers.data(chunk);
    if (this.#phase === "closed") handlers.close(this.#error);
  }

  /** Bytes sent and not yet handed to the network. */
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount ?? 0;
  }

  /** Resolves once `bufferedAmount` is back to 0, or the stream is closed. */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.#phase !== "open" || !(this.bufferedAmount > 0)) resolve();
        else setTimeout(check, DRAIN_CHECK_MS);
      };
      check();
    });
  }

  write(data: Uint8Array): void {
    if (this.#phase !== "open") return;
    try {
      this.#socket.send(data);
    } catch (error) {
      this.#error ??= error instanceof Error ? error : new Error(String(error));
      this.#closeSocket();
    }
  }

  close(): void {
    if (this.#phase === "closing" || this.#phase === "closed") return;
    this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#phase === "closed") return;
    this.#phase = "closing";
    try {
      // Frames sent before this go out first.
      this.#socket.close(NORMAL_CLOSURE);
    } catch {
      // Already closing.
    }
    // A peer that never completes the closing handshake does not hold the stream open.
    this.#graceTimer ??= setTimeout(() => this.#finish(undefined), CLOSE_GRACE_MS);
  }

  #onMessage(data: unknown): void {
    if (this.#phase === "closed") return;
    let chunk: Uint8Array;
    if (data instanceof ArrayBuffer) chunk = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) {
      chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      // PostgreSQL bytes come in binary frames only (Neon's proxy also rejects text frames).
      this.#error ??= new ConnectionError(
        "PROTOCOL_ERROR",
        `Protocol error: the WebSocket proxy for ${this.#where} sent a ${
          typeof data === "string" ? "text" : "non-binary"
        } message`,
      );
      this.#closeSocket();
      return;
    }
    if (chunk.length === 0) return;
    this.#received = true;
    if (this.#handlers === null) this.#early.push(chunk.slice());
    else this.#handlers.data(chunk);
  }

  #onClose(code: number, reason: string): void {
    if (this.#phase === "closed") return;
    const wanted = this.#phase === "closing";
    const shown = `code ${code}${reason ? `: ${reason}` : ""}`;
    if (this.#phase === "connecting") {
      const cause = this.#error;
      this.#finish(undefined);
      const detail = cause ? `${cause.message}; ` : "";
      this.#settle?.(
        new Error(`${detail}the WebSocket closed before it opened (${shown})`, {
          cause,
        }),
      );
      return;
    }
    let error = wanted ? this.#error : this.#error ?? (
      code === NORMAL_CLOSURE || code === NO_STATUS
        ? undefined
        : new Error(`the WebSocket closed with ${shown}`)
    );
    if (!this.#received && error !== undefined && !(error instanceof ConnectionError)) {
      // The proxy gave up before the server said a word: it could not reach the server (a
      // relay reports that with a close code after the upgrade, as websockify does with 1011).
      error = new ConnectionError(
        "CONNECT_FAILED",
        `Could not connect to ${this.#where}: the proxy closed the WebSocket (${shown}) before ` +
          "the server answered",
        { cause: error },
      );
    }
    this.#finish(error);
  }

  #finish(error: Error | undefined): void {
    if (this.#phase === "closed") return;
    this.#phase = "closed";
    clearTimeout(this.#graceTimer);
    this.#error = error;
    this.#handlers?.close(error);
  }
}
