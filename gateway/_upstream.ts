// The WebSocket face's server connection: opened over TCP, logged in with the client's startup
// parameters and the password the gateway collected, then a plain byte pipe. Everything the
// server says from AuthenticationOk on (and any error) goes to the client as is.

import { Authenticator } from "../src/_auth.ts";
import { parseErrorFields, protocolError, Reader, typeName } from "../src/_backend.ts";
import * as frontend from "../src/_frontend.ts";
import { Writer } from "../src/_writer.ts";
import type { ConnectionConfig } from "../src/config.ts";
import { ConnectionError, PostgresError } from "../src/errors.ts";
import type { ByteStream, SslMode, TlsSettings, Transport } from "../src/transport.ts";
import type { Target } from "./_target.ts";

/** Largest message read during login; after it the bytes are not framed at all. */
const MAX_LOGIN_MESSAGE = 1024 * 1024;

/**
 * Opens a TCP stream to `target`, with TLS as `sslmode` says (falling back to plain TCP when
 * `prefer`red TLS fails, as libpq does).
 */
export async function openUpstream(
  transport: Transport,
  target: Target,
  sslmode: SslMode,
  signal: AbortSignal,
): Promise<ByteStream> {
  const tls: TlsSettings | null = sslmode === "disable"
    ? null
    : { mode: sslmode, serverName: target.host };
  const options = { host: target.host, port: target.port, signal };
  try {
    return await transport.connect({ ...options, tls });
  } catch (error) {
    if (
      tls?.mode !== "prefer" || !(error instanceof ConnectionError) ||
      error.code !== "TLS_FAILED" || signal.aborted
    ) throw error;
    return await transport.connect({ ...options, tls: null });
  }
}

/**
 * What a relay uses of a stream beyond `ByteStream`, where the transport has it (edgepool's TCP
 * transports do): stopping and restarting reading, and the bytes written but not yet sent.
 */
export interface StreamFlow {
  /** Stops reading, after the chunk being delivered. */
  pause?(): void;
  /** Reads again after `pause()`. */
  resume?(): void;
  /** Bytes handed to `write()` that the operating system has not taken yet. */
  readonly bufferedAmount?: number;
}

/** Receives what the server sends to the client, and the end of the stream. */
export interface UpstreamHandlers {
  /** Bytes for the client, valid during the call only (the transport may reuse them). */
  data(bytes: Uint8Array): void;
  close(error?: Error): void;
}

/** A server connection being logged in for a client, then relayed. */
export class Upstream {
  readonly #stream: ByteStream;
  readonly #handlers: UpstreamHandlers;
  readonly #writer = new Writer();
  readonly #auth: Authenticator;
  readonly #reader: Reader;
  readonly #queue: Uint8Array[] = [];
  #phase: "auth" | "session" | "relay" = "auth";
  #pumping = false;
  /** The stream closed while messages were still queued: finish them first. */
  #closedBy: { error?: Error } | null = null;
  /** Bytes go to the client unframed: login is over and no partial message is held. */
  #raw = false;
  #closed = false;
  #login: { resolve: () => void; reject: (error: unknown) => void } | null = null;
  /**
   * The settings the server reported during login (ParameterStatus): what tells a primary from
   * a standby (`in_hot_standby`, `default_transaction_read_only`, PostgreSQL 14 and later).
   */
  readonly parameters: Record<string, string> = {};

  constructor(stream: ByteStream, config: ConnectionConfig, handlers: UpstreamHandlers) {
    this.#stream = stream;
    this.#handlers = handlers;
    this.#auth = new Authenticator(config, this.#writer);
    this.#reader = new Reader(MAX_LOGIN_MESSAGE, (_type, buf, start, end) => {
      this.#queue.push(buf.slice(start - 5, end));
    });
  }

  /**
   * Sends the StartupMessage and answers the server's authentication requests. Resolves at the
   * first ReadyForQuery (which the client has been sent); rejects with the server's
   * PostgresError (which the client has been sent too) or a ConnectionError.
   */
  login(params: Record<string, string>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#login = { resolve, reject };
      this.#stream.start({
        data: (chunk) => this.#data(chunk),
        close: (error) => this.#onClose(error),
      });
      frontend.startup(this.#writer, params);
      this.#stream.write(this.#writer.take());
    });
  }

  /** The server stream's flow control, for the relay. */
  get flow(): StreamFlow {
    return this.#stream as ByteStream & StreamFlow;
  }

  /** Sends the client's bytes to the server. */
  write(bytes: Uint8Array): void {
    if (!this.#closed) this.#stream.write(bytes);
  }

  /** Closes the server connection; a pending login rejects with `reason`. */
  close(reason?: unknown): void {
    this.#fail(reason ?? new ConnectionError("CONNECTION_CLOSED", "The client went away"));
  }

  #data(chunk: Uint8Array): void {
    if (this.#closed) return;
    // Only borrowed, as the chunk is: the WebSocket copies what it keeps.
    if (this.#raw) return this.#handlers.data(chunk);
    try {
      this.#reader.push(chunk);
    } catch (error) {
      return this.#fail(error);
    }
    this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) await this.#message(this.#queue.shift()!);
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#pumping = false;
    }
    const closedBy = this.#closedBy;
    if (closedBy !== null && this.#queue.length === 0) {
      this.#closedBy = null;
      return this.#onClose(closedBy.error);
    }
    if (this.#phase === "relay" && this.#queue.length === 0 && this.#reader.buffered === 0) {
      this.#raw = true;
    }
  }

  async #message(message: Uint8Array): Promise<void> {
    const type = message[0];
    if (this.#phase !== "auth") {
      this.#handlers.data(message);
      if (this.#phase === "session") {
        if (type === 0x53) this.#parameter(message);
        if (type === 0x5a) { // Z: ReadyForQuery — the session is the client's now
          this.#phase = "relay";
          this.#login?.resolve();
          this.#login = null;
        } else if (type === 0x45) {
          this.#fail(new PostgresError(parseErrorFields(message, 5, message.length)));
        }
      }
      return;
    }
    switch (type) {
      case 0x52: { // R: Authentication*
        const wrote = await this.#auth.message(message, 5, message.length);
        if (wrote && !this.#closed) this.#stream.write(this.#writer.take());
        if (this.#auth.done) {
          this.#phase = "session";
          this.#handlers.data(message); // AuthenticationOk
        }
        return;
      }
      case 0x45: // E: wrong password, no such database...: the client reads it itself
        this.#handlers.data(message);
        return this.#fail(new PostgresError(parseErrorFields(message, 5, message.length)));
      case 0x4e: // N: NoticeResponse
        this.#handlers.data(message);
        return;
      case 0x76: // v: NegotiateProtocolVersion — we asked for 3.0 and no options: nothing to do
        return;
      default:
        throw protocolError(`unexpected message '${typeName(type)}' during authentication`);
    }
  }

  /** Keeps a ParameterStatus' name and value (two NUL-terminated strings after the header). */
  #parameter(message: Uint8Array): void {
    const nameEnd = message.indexOf(0, 5);
    const valueEnd = message.indexOf(0, nameEnd + 1);
    if (nameEnd < 0 || valueEnd < 0) return;
    const text = new TextDecoder();
    this.parameters[text.decode(message.subarray(5, nameEnd))] = text.decode(
      message.subarray(nameEnd + 1, valueEnd),
    );
  }

  #onClose(error?: Error): void {
    if (this.#closed) return;
    if (this.#pumping || this.#queue.length > 0) {
      // The server's last words (say, FATAL 3D000 right after AuthenticationOk) are still
      // queued behind an authentication step: let them reach the client first.
      this.#closedBy = { error };
      return;
    }
    this.#fail(
      new ConnectionError(
        "CONNECTION_LOST",
        `The server closed the connection${this.#login ? " during login" : ""}` +
          (error ? `: ${error.message}` : ""),
        { cause: error },
      ),
    );
  }

  #fail(error: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stream.close();
    const login = this.#login;
    this.#login = null;
    if (login !== null) login.reject(error);
    this.#handlers.close(error instanceof Error ? error : undefined);
  }
}
