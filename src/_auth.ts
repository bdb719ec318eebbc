// The authentication exchange of startup: answers each Authentication* ('R') message.

import { cstringEnd, decodeText, protocolError, readInt32, truncated } from "./_backend.ts";
import * as frontend from "./_frontend.ts";
import type { Writer } from "./_writer.ts";
import type { ConnectionConfig } from "./config.ts";
import { ConnectionError } from "./errors.ts";
import { md5PasswordMessage } from "./md5.ts";
import { ScramClient } from "./scram.ts";

/** What the server asks for with each Authentication code, for messages. */
const METHODS: Record<number, string> = {
  0: "no password (AuthenticationOk)",
  2: "Kerberos V5",
  3: "a cleartext password",
  5: "MD5",
  6: "SCM credentials",
  7: "GSSAPI",
  8: "GSSAPI",
  9: "SSPI",
  10: "SASL (SCRAM-SHA-256)",
  11: "SASLContinue",
  12: "SASLFinal",
};

function method(code: number): string {
  return METHODS[code] ?? `authentication method ${code}`;
}

/**
 * The server asked for something other than the cleartext password that was sent ahead of
 * its request (pipelined connect): it would read that password as its own method's message,
 * so this connection cannot go on. `connect()` opens another one without pipelining.
 */
export class PipelineRejected extends ConnectionError {
  constructor(method: string) {
    super(
      "AUTH_FAILED",
      `Authentication failed: the password was sent ahead (pipelineConnect "password"), but the ` +
        `server asked for ${method} instead of a cleartext password; set pipelineConnect: false ` +
        "for this server",
    );
  }
}

/** Runs the client side of authentication for one connection. */
export class Authenticator {
  readonly #config: ConnectionConfig;
  readonly #writer: Writer;
  #scram: ScramClient | null = null;
  #scramVerified = false;
  #done = false;
  /** A cleartext password went out behind the StartupMessage and is not yet asked for. */
  #sentAhead = false;
  /**
   * The client's last authentication message is on its way (a password, or SCRAM's
   * SASLResponse): only SASLFinal and AuthenticationOk may follow, since queries pipelined
   * behind it (`pipelineConnect`) would be read as the answer to any other request.
   */
  #lastSent = false;

  constructor(config: ConnectionConfig, writer: Writer) {
    this.#config = config;
    this.#writer = writer;
  }

  /** Whether AuthenticationOk arrived. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * Whether the client has sent everything authentication needs from it: the password (sent
   * ahead, or asked for in clear or as MD5), or SCRAM's client-final message. Whatever the
   * client writes next reaches the server after the login, whatever its outcome.
   */
  get lastSent(): boolean {
    return this.#lastSent;
  }

  /**
   * Pipelined connect: the password to send right behind the StartupMessage (a password
   * function is called now), or `undefined` when none was given.
   */
  async passwordAhead(): Promise<string | undefined> {
    if (this.#config.password === undefined) return undefined;
    return await this.#password("cleartext, sent ahead");
  }

  /**
   * Writes a PasswordMessage with `password` from `passwordAhead()`, before the server asked;
   * its AuthenticationCleartextPassword then needs no answer, and any other request fails
   * with {@link PipelineRejected}.
   */
  writeAhead(password: string): void {
    frontend.password(this.#writer, password);
    this.#sentAhead = true;
  }

  /**
   * Handles one Authentication message; resolves `true` when it wrote an answer to flush.
   * The server waits for that answer, so no other message interleaves while this runs.
   */
  async message(buf: Uint8Array, start: number, end: number): Promise<boolean> {
    if (end - start < 4) throw truncated("Authentication message");
    const code = readInt32(buf, start);
    if (this.#sentAhead) {
      this.#sentAhead = false;
      // The password already on its way answers this request.
      if (code === 3) {
        this.#lastSent = true;
        return false;
      }
      throw new PipelineRejected(method(code));
    }
    const scram = this.#scram;
    if (this.#lastSent && code !== 0 && !(code === 12 && scram !== null)) {
      // PostgreSQL asks once (SASL: one exchange); a server asking again would take the bytes
      // behind the last answer, pipelined queries among them, for its answer.
      throw protocolError(
        `the server asked for ${method(code)} after the client's last authentication message`,
      );
    }
    if (code > 10 && code < 13 && scram === null) {
      throw protocolError(`${method(code)} without SASL`);
    }
    switch (code) {
      case 0: // AuthenticationOk
        if (scram !== null && !this.#scramVerified) {
          // A server that skips SCRAM's final message has not proven it knows the password.
          throw authFailed("the server accepted SCRAM authentication without proving itself");
        }
        this.#done = true;
        return false;
      case 3: // AuthenticationCleartextPassword
        frontend.password(this.#writer, await this.#password("cleartext"));
        this.#lastSent = true;
        return true;
      case 5: { // AuthenticationMD5Password
        if (end - start < 8) throw truncated("AuthenticationMD5Password");
        const salt = buf.slice(start + 4, start + 8);
        const password = await this.#password("md5");
        frontend.password(
          this.#writer,
          // Awaited: Workers bundles take `_md5_workers.ts`'s, on workerd's WebCrypto.
          await md5PasswordMessage(this.#config.user, password, salt),
        );
        this.#lastSent = true;
        return true;
      }
      case 10: { // AuthenticationSASL: the list of mechanisms
        const mechanisms: string[] = [];
        let pos = start + 4;
        while (pos < end && buf[pos] !== 0) {
          const stop = cstringEnd(buf, pos, end);
          mechanisms.push(decodeText(buf, pos, stop));
          pos = stop + 1;
        }
        if (!mechanisms.includes("SCRAM-SHA-256")) {
          throw authFailed(
            `the server offers SASL mechanisms ${mechanisms.join(", ") || "(none)"}; ` +
              "edgepool supports SCRAM-SHA-256 (without channel binding)",
          );
        }
        const password = await this.#password("SCRAM-SHA-256");
        const client = this.#scram = new ScramClient(password);
        frontend.saslInitialResponse(this.#writer, "SCRAM-SHA-256", client.clientFirstMessage());
        return true;
      }
      case 11: { // AuthenticationSASLContinue
        const serverFirst = decodeText(buf, start + 4, end);
        frontend.saslResponse(this.#writer, await scram!.clientFinalMessage(serverFirst));
        // SCRAM-SHA-256 has one round: the server's next word is its proof (or a refusal).
        this.#lastSent = true;
        return true;
      }
      case 12: // AuthenticationSASLFinal
        scram!.verifyServerFinal(decodeText(buf, start + 4, end));
        this.#scramVerified = true;
        return false;
      default:
        throw authFailed(
          `the server asked for ${method(code)}, which edgepool does not support`,
        );
    }
  }

  async #password(method: string): Promise<string> {
    const source = this.#config.password;
    const password = typeof source === "function" ? await source() : source;
    if (typeof password !== "string") {
      throw authFailed(
        `the server asked for a password (${method}) for user "${this.#config.user}" ` +
          "but none was given",
      );
    }
    return password;
  }
}

function authFailed(reason: string): ConnectionError {
  return new ConnectionError("AUTH_FAILED", `Authentication failed: ${reason}`);
}
