/**
 * The gateway's WebSocket face, over a minimal WebSocket-like interface so that any server can
 * carry it. One WebSocket carries one PostgreSQL byte stream in binary frames; frame boundaries
 * mean nothing.
 *
 * By default the gateway ends authentication itself, as Neon's proxy does: it asks the client
 * for a cleartext password (which is what lets Neon's driver send startup, password and first
 * query in one frame), then logs in to PostgreSQL with whatever the server asks for (SCRAM, MD5,
 * cleartext) and relays bytes from then on. In relay-only mode bytes pass through untouched, for
 * clients that speak TLS or SCRAM end to end.
 *
 * @module
 */

import { sessionRefusal, shuffled } from "../src/_session_attrs.ts";
import { parseConfig } from "../src/config.ts";
import { ConnectionError, errorMessage, PostgresError } from "../src/errors.ts";
import type { PoolLogger } from "../src/pool/options.ts";
import type { ByteStream, Transport } from "../src/transport.ts";
import type { TargetSessionAttrs } from "../src/url.ts";
import {
  cleartextPasswordRequest,
  ClientProtocolError,
  fatalError,
  negotiateProtocolVersion,
  passwordText,
  readFirstMessage,
  readTypedMessage,
  REFUSE_ENCRYPTION,
} from "./_startup.ts";
import { startupParameters } from "./_client_input.ts";
import type { ResolvedGatewayOptions } from "./options.ts";
import { formatTarget, type Target } from "./_target.ts";
import { openUpstream, type StreamFlow, Upstream } from "./_upstream.ts";

/** What the gateway needs of a server-side WebSocket; the runtime adapter wraps the real one. */
export interface GatewaySocket {
  /**
   * Sends one binary frame. `data` is only lent for the call (it may be a transport's read
   * buffer): the adapter copies it if its WebSocket keeps it after returning.
   */
  send(data: Uint8Array): void;
  /** Bytes sent and not yet written to the network, as `WebSocket.bufferedAmount`. */
  readonly bufferedAmount: number;
  /** Stops reading frames, where the WebSocket can (`ws` can; the web API cannot). */
  pause?(): void;
  /** Reads frames again after `pause()`. */
  resume?(): void;
  /** Closes the WebSocket. */
  close(code?: number, reason?: string): void;
  /** Set by the gateway: called with each frame (a string for a text frame). */
  onmessage: ((data: Uint8Array | string) => void) | null;
  /** Set by the gateway: called once when the WebSocket has closed. */
  onclose: (() => void) | null;
}

/**
 * Options of {@link serveWebSocket}: the gateway's own (`relay`, `upstreamSslmode`,
 * `connectTimeout` — the time limit for connecting and logging in, per host —, `logger`), how
 * to reach PostgreSQL (the runtime's TCP transport), and, for a target that is a host list,
 * which of its servers a session may stay with.
 */
export type WebSocketFaceOptions =
  & Pick<ResolvedGatewayOptions, "relay" | "upstreamSslmode" | "connectTimeout" | "logger">
  & {
    transport: Transport;
    /**
     * libpq's `target_session_attrs`, checked from the `in_hot_standby` and
     * `default_transaction_read_only` settings the server reports at login (PostgreSQL 14 and
     * later). Default `"any"`.
     */
    targetSessionAttrs?: TargetSessionAttrs;
    /** `"random"`: try the hosts in a random order. Default `"disable"`. */
    loadBalance?: "disable" | "random";
  };

/** A running WebSocket session. */
export interface WebSocketSession {
  /** Ends the session: closes the WebSocket (with `reason`) and the server connection. */
  close(reason?: string): void;
  /** Resolves when the session has ended. */
  readonly done: Promise<void>;
}

/** Bytes a client may pipeline behind its password before the server has logged in. */
const MAX_PENDING = 16 * 1024 * 1024;
/**
 * Relay flow control: past HIGH_WATER bytes waiting to be sent to one side, the relay stops
 * reading from the other, and reads again once they are down to LOW_WATER (checked every
 * FLOW_CHECK_MS, as neither WebSocket API says when it drained). A side that cannot be stopped
 * (Deno's WebSocket reads on: the web API has no pause) is cut off at MAX_BUFFERED instead,
 * generous so that a bulk COPY to a database slower than the client's link gets through.
 */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const MAX_BUFFERED = 64 * 1024 * 1024;
const FLOW_CHECK_MS = 10;
/** Bytes sent to the client between looks at its `bufferedAmount` (an op call on Deno). */
const CHECK_EVERY = 64 * 1024;
const MAX_PASSWORD_MESSAGE = 64 * 1024;
const CANCEL_WAIT_MS = 10_000;

/**
 * Serves one WebSocket whose destination (`target`) was already checked against the allowlist:
 * one server, or a host list (the gateway's upstream) tried in order until one takes the login
 * and has `targetSessionAttrs`. What a server says during a login that is not kept (a refused
 * standby, a host that fails) never reaches the client; when no host is kept, the client gets
 * the first server's own error if one answered the login with one (a wrong password), else a
 * FATAL 08001 that names none of the hosts.
 *
 * @example
 * ```ts ignore
 * import { serveWebSocket } from "./websocket.ts";
 * import { denoTcp } from "../transports/deno.ts";
 * // `serve` and `upgradeWebSocket`: the runtime's (Deno's, here).
 * serve((request) => {
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.binaryType = "arraybuffer";
 *   const gs = {
 *     send: (d: Uint8Array) => socket.send(d), // Deno's send copies `d`
 *     get bufferedAmount() { return socket.bufferedAmount; },
 *     close: () => socket.close(),
 *     onmessage: null,
 *     onclose: null,
 *   };
 *   const options = {
 *     transport: denoTcp,
 *     relay: false,
 *     upstreamSslmode: "prefer" as const,
 *     connectTimeout: 30_000,
 *     logger: console,
 *   };
 *   socket.onopen = () => serveWebSocket(gs, { host: "127.0.0.1", port: 5432 }, options);
 *   socket.onmessage = (e) => gs.onmessage?.(new Uint8Array(e.data));
 *   socket.onclose = () => gs.onclose?.();
 *   return response;
 * });
 * ```
 */
export function serveWebSocket(
  socket: GatewaySocket,
  target: Target | readonly Target[],
  options: WebSocketFaceOptions,
): WebSocketSession {
  return new Session(socket, target, options);
}

type Phase = "startup" | "password" | "connecting" | "relay" | "closed";

/** A server logged in for the session, and what it said (`null` once it goes to the client). */
interface Attempt {
  upstream: Upstream;
  said: Uint8Array[] | null;
}

/** A login that failed, and what the server said to it. */
interface Failure {
  error: unknown;
  said: Uint8Array[];
  timedOut?: boolean;
}

class Session implements WebSocketSession {
  readonly done: Promise<void>;
  readonly #socket: GatewaySocket;
  /** Where to connect: one host, or the upstream's list in the order to try it. */
  readonly #targets: readonly Target[];
  /** How messages and logs name the target: `host:port`, or "the upstream" for a list. */
  readonly #where: string;
  readonly #options: WebSocketFaceOptions;
  readonly #logger: PoolLogger;
  readonly #abort = new AbortController();
  #phase: Phase = "startup";
  #input: Uint8Array = new Uint8Array(0);
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #negotiations = 0;
  #params: Record<string, string> = {};
  /** Where the client's bytes go once relaying, and that stream's flow control. */
  #server: { write(bytes: Uint8Array): void } | null = null;
  #flow: StreamFlow = {};
  #serverPaused = false;
  #clientPaused = false;
  /** Bytes sent to the client since its `bufferedAmount` was last looked at. */
  #unchecked = 0;
  #flowTimer: ReturnType<typeof setTimeout> | undefined;
  #closeUpstream: (() => void) | null = null;
  #resolveDone!: () => void;

  constructor(
    socket: GatewaySocket,
    target: Target | readonly Target[],
    options: WebSocketFaceOptions,
  ) {
    this.#socket = socket;
    const targets: readonly Target[] = Array.isArray(target) ? target : [target as Target];
    this.#targets = options.loadBalance === "random" ? shuffled(targets) : targets;
    this.#where = targets.length === 1 ? formatTarget(targets[0]) : "the upstream";
    this.#options = options;
    this.#logger = options.logger;
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    socket.onmessage = (data) => this.#message(data);
    socket.onclose = () => this.#end(undefined);
    if (options.relay) {
      this.#phase = "connecting";
      this.#relay();
    }
  }

  close(reason = "the gateway is shutting down"): void {
    this.#end(1001, reason);
  }

  #message(data: Uint8Array | string): void {
    if (typeof data === "string") {
      return this.#end(1003, "text frames are not supported: send the stream in binary frames");
    }
    switch (this.#phase) {
      case "startup":
      case "password":
        this.#input = concat(this.#input, data);
        try {
          this.#parse();
        } catch (error) {
          if (!(error instanceof ClientProtocolError)) throw error;
          this.#fatal(error.code, error.message);
        }
        return;
      case "connecting":
        this.#pendingBytes += data.length;
        if (this.#pendingBytes > MAX_PENDING) {
          return this.#fatal("53400", "too much data sent before the login completed");
        }
        this.#pending.push(data);
        return;
      case "relay":
        this.#server!.write(data);
        if ((this.#flow.bufferedAmount ?? 0) > HIGH_WATER) this.#backlog();
    }
  }

  /** Reads the startup exchange from the bytes received so far. */
  #parse(): void {
    while (this.#phase === "startup") {
      const first = readFirstMessage(this.#input);
      if (first === null) return;
      this.#input = this.#input.subarray(first.length);
      const message = first.message;
      switch (message.kind) {
        case "ssl":
        case "gssenc":
          if (++this.#negotiations > 2) {
            throw new ClientProtocolError("08P01", "too many encryption requests");
          }
          // The WebSocket is the encryption (wss); PostgreSQL-level TLS would need relay mode.
          this.#socket.send(REFUSE_ENCRYPTION);
          continue;
        case "cancel":
          this.#phase = "connecting";
          this.#cancel(message.bytes);
          return;
        case "unsupported":
          throw new ClientProtocolError(
            "0A000",
            `unsupported frontend protocol ${message.major}.${message.minor}: the gateway speaks 3.0`,
          );
        case "startup":
          if (!message.params.user) {
            throw new ClientProtocolError(
              "28000",
              "no PostgreSQL user name specified in startup packet",
            );
          }
          {
            // Checked before anything is sent or opened for this client.
            const checked = startupParameters(message.params);
            if ("refused" in checked) throw new ClientProtocolError("42501", checked.refused);
            this.#params = checked.params;
          }
          if (message.minor > 0 || message.unrecognized.length > 0) {
            this.#socket.send(negotiateProtocolVersion(message.unrecognized));
          }
          this.#phase = "password";
          this.#socket.send(cleartextPasswordRequest());
      }
    }
    if (this.#phase !== "password") return;
    const reply = readTypedMessage(this.#input, MAX_PASSWORD_MESSAGE);
    if (reply === null) return;
    if (reply.type === 0x58) return this.#end(1000, "the client terminated"); // X: Terminate
    if (reply.type !== 0x70) {
      throw new ClientProtocolError(
        "08P01",
        `expected a password response, got message type ${String.fromCharCode(reply.type)}`,
      );
    }
    const password = passwordText(reply.body);
    const rest = this.#input.subarray(reply.length);
    this.#input = new Uint8Array(0);
    this.#phase = "connecting";
    if (rest.length > 0) {
      this.#pending.push(rest);
      this.#pendingBytes = rest.length;
    }
    this.#login(password);
  }

  /**
   * Logs in to the server for the client, trying each host in turn; then relays, starting with
   * what the client pipelined. A session opened while no host qualifies (a failover under way)
   * fails at once, after one pass over the hosts, as libpq's connect does: the client's own
   * retry or pool decides how long to wait.
   */
  async #login(password: string): Promise<void> {
    const params = this.#params;
    const who = `${params.user}@${this.#where}/${params.database ?? params.user}`;
    const attrs = this.#options.targetSessionAttrs ?? "any";
    this.#logger.debug?.(`gateway ws: login for ${who}`);
    // One host and no attributes to check: the server's words go to the client as they come.
    const hold = this.#targets.length > 1 || attrs !== "any";
    const refusals: string[] = [];
    /** The first server's own refusal of the login, with what it said, for the client. */
    let answered: { error: PostgresError; said: Uint8Array[] } | null = null;
    let fallback: Attempt | null = null;
    let lastReason = "";
    let lastCode = "08001";
    for (const target of this.#targets) {
      const where = formatTarget(target);
      const outcome = await this.#attempt(target, password, hold);
      if (this.#ended()) {
        fallback?.upstream.close();
        if ("upstream" in outcome) outcome.upstream.close();
        return;
      }
      if (!("upstream" in outcome)) {
        const failure = outcome;
        if (failure.error instanceof PostgresError) {
          if (!hold) {
            // The client has the server's ErrorResponse already (28P01 for a wrong password).
            this.#logger.debug?.(`gateway ws: login for ${who} refused: ${failure.error.message}`);
            return this.#end(1000, "login failed");
          }
          answered ??= { error: failure.error, said: failure.said };
        }
        lastReason = failure.timedOut
          ? `timed out after ${this.#options.connectTimeout} ms`
          : errorMessage(failure.error);
        lastCode = (failure.error as { code?: unknown })?.code === "AUTH_FAILED"
          ? "28000"
          : "08001";
        refusals.push(`${where}: ${lastReason}`);
        continue;
      }
      const attempt = outcome;
      const { parameters } = attempt.upstream;
      const standby = parameters.in_hot_standby;
      const readOnly = parameters.default_transaction_read_only;
      const why = attrs === "any"
        ? null
        : standby === undefined || readOnly === undefined
        ? "does not report in_hot_standby (PostgreSQL 14 or later is needed to check " +
          "upstreamTargetSessionAttrs on the WebSocket face)"
        : sessionRefusal(attrs === "prefer-standby" ? "standby" : attrs, standby, readOnly);
      if (why === null) {
        fallback?.upstream.close();
        return this.#take(attempt);
      }
      if (attrs === "prefer-standby" && fallback === null) {
        fallback = attempt;
        continue;
      }
      attempt.upstream.close();
      refusals.push(`${where}: ${why}`);
      lastReason = why;
    }
    if (fallback !== null) return this.#take(fallback);
    this.#logger.warn?.(`gateway ws: login for ${who} failed: ${refusals.join("; ")}`);
    if (answered !== null) {
      // What the server said to this login (its ErrorResponse) is the client's to read.
      for (const bytes of answered.said) this.#send(bytes);
      this.#logger.debug?.(`gateway ws: login for ${who} refused: ${answered.error.message}`);
      return this.#end(1000, "login failed");
    }
    if (this.#targets.length === 1) {
      return this.#fatal(lastCode, `the gateway could not log in to ${this.#where}: ${lastReason}`);
    }
    // The hosts of the list are the operator's: the client learns none of them (the log does).
    this.#fatal(
      "08001",
      "the gateway could not log in to the upstream: no server of it took the connection" +
        (attrs === "any" ? "" : ` as a ${attrs} server (target_session_attrs=${attrs})`),
    );
  }

  /**
   * Logs in to one server. With `hold`, what it says is kept (`said`, of the attempt or of the
   * failure) until the session takes it; without, it goes to the client as it comes.
   */
  async #attempt(target: Target, password: string, hold: boolean): Promise<Attempt | Failure> {
    const params = this.#params;
    const said: Uint8Array[] = [];
    let upstream: Upstream | undefined;
    const signal = this.#connectSignal();
    const onTimeout = () => upstream?.close(signal.reason);
    signal.addEventListener("abort", onTimeout, { once: true });
    const attempt: Attempt = { upstream: undefined!, said: hold ? said : null };
    try {
      const stream = await openUpstream(
        this.#options.transport,
        target,
        this.#options.upstreamSslmode,
        signal,
      );
      if (this.#ended()) {
        stream.close();
        return { error: new ConnectionError("CONNECTION_CLOSED", "The client went away"), said };
      }
      const config = parseConfig(undefined, {
        host: target.host,
        port: target.port,
        user: params.user,
        password,
        database: params.database,
      });
      upstream = attempt.upstream = new Upstream(stream, config, {
        // Borrowed bytes: kept ones are copied.
        data: (bytes) => attempt.said ? attempt.said.push(bytes.slice()) : this.#deliver(bytes),
        // During login the rejected promise below reports the failure; a server the session
        // did not take closes without ending it.
        close: () =>
          this.#server === upstream && this.#end(1000, "the database closed the connection"),
      });
      this.#closeUpstream = () => upstream!.close();
      await upstream.login(params);
      return attempt;
    } catch (error) {
      return { error, said, timedOut: signal.aborted && !this.#abort.signal.aborted };
    } finally {
      signal.removeEventListener("abort", onTimeout);
    }
  }

  /** The session keeps this server: what it said so far goes to the client, then the relay. */
  #take(attempt: Attempt): void {
    const upstream = attempt.upstream;
    const said = attempt.said ?? [];
    attempt.said = null;
    this.#closeUpstream = () => upstream.close();
    // The login's messages first: the answers to what the client pipelined come after them.
    for (const bytes of said) this.#deliver(bytes);
    this.#startRelay(upstream, upstream.flow);
  }

  /**
   * Relay-only mode: connect (to the first host of a list that takes a TCP connection: the
   * session is not read, so no attributes are checked), then pass bytes both ways untouched.
   */
  async #relay(): Promise<void> {
    this.#logger.debug?.(`gateway ws: relay to ${this.#where}`);
    const failures: string[] = [];
    for (const target of this.#targets) {
      try {
        const stream = await openUpstream(
          this.#options.transport,
          target,
          "disable",
          this.#connectSignal(),
        );
        if (this.#phase === "closed") return stream.close();
        return this.#pipe(stream);
      } catch (error) {
        if (this.#phase === "closed") return;
        failures.push(`${formatTarget(target)}: ${errorMessage(error)}`);
      }
    }
    this.#logger.warn?.(`gateway ws: relay to ${this.#where} failed: ${failures.join("; ")}`);
    this.#end(1011, "could not connect to the database");
  }

  /**
   * Forwards a CancelRequest on a new server connection; closes when the server has read it.
   * To a host list, it goes to every host: the gateway does not know which one holds the
   * session, and a server ignores a key that is not one of its own.
   */
  async #cancel(request: Uint8Array): Promise<void> {
    await Promise.all(this.#targets.map((target) => this.#cancelAt(target, request)));
    this.#end(1000, "cancel request forwarded");
  }

  async #cancelAt(target: Target, request: Uint8Array): Promise<void> {
    try {
      const stream = await openUpstream(
        this.#options.transport,
        target,
        this.#options.upstreamSslmode,
        this.#connectSignal(),
      );
      if (this.#phase === "closed") return stream.close();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => stream.close(), CANCEL_WAIT_MS);
        stream.start({
          data() {},
          close() {
            clearTimeout(timer);
            resolve();
          },
        });
        stream.write(request);
      });
    } catch (error) {
      this.#logger.warn?.(
        `gateway ws: cancel request to ${formatTarget(target)} failed: ${errorMessage(error)}`,
      );
    }
  }

  #pipe(stream: ByteStream & StreamFlow): void {
    this.#closeUpstream = () => stream.close();
    stream.start({
      data: (chunk) => this.#deliver(chunk),
      close: () => this.#end(1000, "the database closed the connection"),
    });
    this.#startRelay(stream, stream);
  }

  #startRelay(server: { write(bytes: Uint8Array): void }, flow: StreamFlow): void {
    this.#phase = "relay";
    this.#server = server;
    this.#flow = flow;
    const pending = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    for (const bytes of pending) server.write(bytes);
    if ((flow.bufferedAmount ?? 0) > HIGH_WATER) this.#backlog();
  }

  /** Sends the server's bytes to the client, holding the server back while the client is behind. */
  #deliver(bytes: Uint8Array): void {
    this.#send(bytes);
    this.#unchecked += bytes.length;
    if (this.#unchecked < CHECK_EVERY) return;
    this.#unchecked = 0;
    if (this.#phase === "relay" && this.#socket.bufferedAmount > HIGH_WATER) this.#backlog();
  }

  /**
   * One side has more than HIGH_WATER bytes waiting: stop reading from the other until it is
   * down to LOW_WATER, or end the session past MAX_BUFFERED where reading cannot stop.
   */
  #backlog(): void {
    if (this.#phase !== "relay") return;
    const toClient = this.#socket.bufferedAmount;
    if (toClient > HIGH_WATER && !this.#serverPaused) {
      if (this.#flow.pause !== undefined) {
        this.#flow.pause();
        this.#serverPaused = true;
      } else if (toClient > MAX_BUFFERED) {
        return this.#end(1011, "the client does not read what the database sends");
      }
    }
    const toServer = this.#flow.bufferedAmount ?? 0;
    if (toServer > HIGH_WATER && !this.#clientPaused) {
      if (this.#socket.pause !== undefined) {
        this.#socket.pause();
        this.#clientPaused = true;
      } else if (toServer > MAX_BUFFERED) {
        return this.#end(1011, "the database does not read what the client sends");
      }
    }
    if ((this.#serverPaused || this.#clientPaused) && this.#flowTimer === undefined) {
      this.#flowTimer = setTimeout(() => this.#checkFlow(), FLOW_CHECK_MS);
    }
  }

  #checkFlow(): void {
    this.#flowTimer = undefined;
    if (this.#phase !== "relay") return;
    if (this.#serverPaused && this.#socket.bufferedAmount <= LOW_WATER) {
      this.#serverPaused = false;
      this.#flow.resume!();
    }
    if (this.#clientPaused && (this.#flow.bufferedAmount ?? 0) <= LOW_WATER) {
      this.#clientPaused = false;
      this.#socket.resume!();
    }
    if (this.#serverPaused || this.#clientPaused) {
      this.#flowTimer = setTimeout(() => this.#checkFlow(), FLOW_CHECK_MS);
    }
  }

  /** Whether the session ended (a check after an await, which TypeScript cannot narrow). */
  #ended(): boolean {
    return this.#phase === "closed";
  }

  #connectSignal(): AbortSignal {
    return AbortSignal.any([
      this.#abort.signal,
      AbortSignal.timeout(this.#options.connectTimeout),
    ]);
  }

  #send(bytes: Uint8Array): void {
    if (this.#phase === "closed") return;
    try {
      this.#socket.send(bytes);
    } catch {
      this.#end(undefined);
    }
  }

  #fatal(code: string, message: string): void {
    // As PostgreSQL does: the error, then the end of the connection.
    this.#send(fatalError(code, message));
    this.#end(1000, message);
  }

  /** Ends the session once; `code` undefined when the WebSocket is already closed. */
  #end(code: number | undefined, reason = ""): void {
    if (this.#phase === "closed") return;
    this.#phase = "closed";
    clearTimeout(this.#flowTimer);
    // A paused WebSocket reads on, to see the closing handshake.
    if (this.#clientPaused) this.#socket.resume?.();
    this.#abort.abort();
    this.#closeUpstream?.();
    this.#pending = [];
    if (code !== undefined) {
      try {
        // A close reason may be at most 123 bytes.
        this.#socket.close(code, truncate(reason, 120));
      } catch {
        // Already closing.
      }
    }
    this.#resolveDone();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function truncate(text: string, bytes: number): string {
  const encoded = new TextEncoder().encode(text);
  if (encoded.length <= bytes) return text;
  return new TextDecoder().decode(encoded.subarray(0, bytes - 3)).replace(/\uFFFD$/, "") + "...";
}
