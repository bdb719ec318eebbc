// The startup phase of a connection: the StartupMessage, authentication, BackendKeyData and
// the first ReadyForQuery. Messages that arrive while an authentication step is still working
// are held back and replayed after it, in order.

import { Authenticator } from "./_auth.ts";
import { parseErrorFields, protocolError, readInt32 } from "./_backend.ts";
import * as frontend from "./_frontend.ts";
import type { Writer } from "./_writer.ts";
import type { ConnectionConfig } from "./config.ts";
import { PostgresError } from "./errors.ts";

/** What the startup phase needs from its connection. */
export interface StartupHost {
  readonly writer: Writer;
  /** Sends what the writer holds. */
  flush(): void;
  /**
   * Like `flush()`, for the last bytes the client sends for the login: the StartupMessage and
   * the password sent ahead, the password asked for, or SCRAM's client-final message. What is
   * written after them reaches the server after the login, so the host may hold them back for
   * the first query to join (`pipelineConnect`), or send them at once.
   */
  loginWritten(): void;
  /** Ends the connection at once with `error`. */
  fail(error: unknown): void;
  /** Whether the connection is still starting (neither ready nor closed). */
  starting(): boolean;
  /** Whether the connection is closed. */
  closed(): boolean;
  /** BackendKeyData: the key for CancelRequests. */
  keyData(processId: number, secretKey: Uint8Array): void;
  /** The first ReadyForQuery, with its transaction status byte. */
  ready(status: number): void;
  /** A message valid in any phase (ParameterStatus, NoticeResponse, ...). */
  common(type: number, buf: Uint8Array, start: number, end: number): void;
  /** A message of the session, once it is ready (replayed from the held-back ones). */
  session(type: number, buf: Uint8Array, start: number, end: number): void;
}

/** Runs the startup phase for one connection. */
export class Startup {
  readonly #config: ConnectionConfig;
  readonly #host: StartupHost;
  readonly #auth: Authenticator;
  /**
   * Messages that arrived while an authentication step was still working (whole messages,
   * type byte first). The server may send AuthenticationOk and more right behind a SASL
   * message; nothing may be read until that step is done, or a server could skip the proof.
   */
  #held: Uint8Array[] | null = null;

  constructor(config: ConnectionConfig, host: StartupHost) {
    this.#config = config;
    this.#host = host;
    this.#auth = new Authenticator(config, host.writer);
  }

  /** Resolves the password to send ahead of being asked (`pipelineConnect`). */
  passwordAhead(): Promise<string | undefined> {
    return this.#auth.passwordAhead();
  }

  /**
   * Writes the StartupMessage and, with `ahead`, `password` right behind it: one flight, and,
   * with `ahead`, all the client sends for the login (a server that asks for anything but a
   * cleartext password, or for one when none was given, fails the connection).
   */
  send(password: string | undefined, ahead: boolean): void {
    frontend.startup(this.#host.writer, frontend.startupParameters(this.#config));
    if (!ahead) return this.#host.flush();
    if (password !== undefined) this.#auth.writeAhead(password);
    this.#host.loginWritten();
  }

  /** Takes one message (or holds it back while an authentication step runs). */
  receive(type: number, buf: Uint8Array, start: number, end: number): void {
    if (this.#held !== null) this.#held.push(buf.slice(start - 5, end));
    else if (this.#host.starting()) this.#handle(type, buf, start, end);
    else this.#host.session(type, buf, start, end);
  }

  #handle(type: number, buf: Uint8Array, start: number, end: number): void {
    const host = this.#host;
    switch (type) {
      case 0x52: // R: Authentication*
        this.#held = [];
        this.#auth.message(buf, start, end).then(
          (wrote) => {
            if (wrote && this.#auth.lastSent) host.loginWritten();
            else if (wrote) host.flush();
            this.#replay();
          },
          (error) => host.fail(error),
        );
        return;
      case 0x4b: // K: BackendKeyData
        if (end - start < 8) throw protocolError("BackendKeyData is too short");
        host.keyData(readInt32(buf, start), buf.slice(start + 4, end));
        return;
      case 0x5a: // Z: ReadyForQuery — the session is ready
        if (!this.#auth.done) throw protocolError("ReadyForQuery before authentication completed");
        if (end - start !== 1) throw protocolError("ReadyForQuery has no transaction status");
        host.ready(buf[start]);
        return;
      case 0x45: // E: the server refused (wrong password, no such database, ...)
        host.fail(new PostgresError(parseErrorFields(buf, start, end)));
        return;
      case 0x76: // v: NegotiateProtocolVersion — we ask for 3.0 with no options; accept.
        return;
      default:
        host.common(type, buf, start, end);
    }
  }

  /** Handles the messages held back during an authentication step, until the next such step. */
  #replay(): void {
    const held = this.#held!;
    this.#held = null;
    for (let i = 0; i < held.length; i++) {
      if (this.#host.closed()) return;
      // A message replayed below may begin another authentication step (TypeScript cannot
      // see that the field changes behind its back, hence the cast).
      const again = this.#held as Uint8Array[] | null;
      if (again !== null) {
        // Keep the rest for after that step.
        again.push(...held.slice(i));
        return;
      }
      const message = held[i];
      try {
        this.receive(message[0], message, 5, message.length);
      } catch (error) {
        return this.#host.fail(error);
      }
    }
  }
}
