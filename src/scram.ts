/**
 * The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), the password authentication PostgreSQL
 * uses by default, built on WebCrypto (`crypto.subtle`).
 *
 * @module
 */
import { ConnectionError } from "./errors.ts";

/** The largest iteration count accepted; PostgreSQL uses 4096 by default. */
const MAX_ITERATIONS = 10_000_000;

const encoder = new TextEncoder();
/** A nonce's characters: printable ASCII but `,`. */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;

/**
 * One SCRAM-SHA-256 exchange, without channel binding. The protocol layer sends
 * {@link ScramClient.clientFirstMessage} in SASLInitialResponse, passes the server's
 * AuthenticationSASLContinue data to {@link ScramClient.clientFinalMessage} and sends the result
 * in SASLResponse, then passes AuthenticationSASLFinal data to
 * {@link ScramClient.verifyServerFinal}.
 *
 * @example
 * ```ts
 * import { ScramClient } from "./scram.ts";
 * const scram = new ScramClient("pencil", "rOprNGfwEbeRWgbNEkqO");
 * console.assert(scram.clientFirstMessage() === "n,,n=,r=rOprNGfwEbeRWgbNEkqO");
 * const final = await scram.clientFinalMessage(
 *   "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
 * );
 * console.assert(final.startsWith("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYD"));
 * ```
 */
export class ScramClient {
  /** The SASL mechanism name sent in SASLInitialResponse. */
  readonly mechanism: "SCRAM-SHA-256" = "SCRAM-SHA-256";
  #password: string;
  #nonce: string;
  #clientFirstBare: string;
  #serverSignature: Uint8Array | undefined;

  /**
   * Starts an exchange.
   *
   * @param password The password in clear text. It is normalized with NFKC, an approximation of
   *   SASLprep (RFC 4013): it matches PostgreSQL except for passwords with non-ASCII spaces,
   *   characters SASLprep maps to nothing (soft hyphen, zero-width joiners) or prohibits.
   * @param nonce The client nonce, for tests; by default 18 random bytes in base64. Printable
   *   ASCII without `,`.
   * @param user The user name to put in the client-first message, for test vectors. PostgreSQL
   *   ignores it (it uses the startup message's user), and libpq sends it empty; so does the
   *   default.
   * @throws {TypeError} If the password is not a string or the nonce or user is not valid.
   */
  constructor(password: string, nonce?: string, user = "") {
    if (typeof password !== "string") {
      throw new TypeError("ScramClient expects the password as a string");
    }
    if (nonce === undefined) {
      nonce = toBase64(crypto.getRandomValues(new Uint8Array(18)));
    } else if (typeof nonce !== "string" || !PRINTABLE.test(nonce)) {
      throw new TypeError("The SCRAM nonce must be printable ASCII without ','");
    }
    if (typeof user !== "string") throw new TypeError("The SCRAM user name must be a string");
    // NFKC is SASLprep's main step (and leaves ASCII as it is).
    // PostgreSQL falls back to the raw password when SASLprep rejects it; we do not detect that.
    this.#password = password.normalize("NFKC");
    this.#nonce = nonce;
    this.#clientFirstBare = `n=${user.replaceAll("=", "=3D").replaceAll(",", "=2C")},r=${nonce}`;
  }

  /**
   * The client-first message: gs2 header `n,,` (no channel binding) and the bare message.
   *
   * @returns `n,,n=,r=<nonce>`.
   */
  clientFirstMessage(): string {
    return `n,,${this.#clientFirstBare}`;
  }

  /**
   * Computes the client-final message (with the proof) from the server-first message.
   *
   * @param serverFirst The server-first message, `r=<nonce>,s=<salt>,i=<iterations>`.
   * @returns `c=biws,r=<nonce>,p=<proof>`.
   * @throws {ConnectionError} `AUTH_FAILED` if the server-first message is malformed, its nonce
   *   does not extend the client nonce, or its salt or iteration count is not valid.
   */
  async clientFinalMessage(serverFirst: string): Promise<string> {
    const [nonceAttr, saltAttr, iterationsAttr] = serverFirst.split(",");
    if (nonceAttr.startsWith("m=")) fail("the server requires an unsupported extension");
    if (
      !nonceAttr.startsWith("r=") || !saltAttr?.startsWith("s=") ||
      !iterationsAttr?.startsWith("i=")
    ) fail("the server-first message is malformed");
    const serverNonce = nonceAttr.slice(2);
    if (
      serverNonce.length <= this.#nonce.length || !serverNonce.startsWith(this.#nonce) ||
      !PRINTABLE.test(serverNonce)
    ) {
      fail("the server nonce does not extend the client nonce");
    }
    const salt = fromBase64(saltAttr.slice(2));
    if (salt === undefined || salt.length === 0) fail("the salt is not valid base64");
    const iterationsText = iterationsAttr.slice(2);
    const iterations = /^\d{1,9}$/.test(iterationsText) ? Number(iterationsText) : 0;
    if (iterations < 1 || iterations > MAX_ITERATIONS) {
      fail(`the iteration count must be from 1 to ${MAX_ITERATIONS}`);
    }

    const passwordKey = await crypto.subtle.importKey(
      "raw",
      encoder.encode(this.#password),
      "PBKDF2",
      false,
      ["deriveBits"],
    );
    this.#password = "";
    const saltedPassword = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "PBKDF2", hash: "SHA-256", salt, iterations },
        passwordKey,
        256,
      ),
    );
    const clientKey = await hmac(saltedPassword, "Client Key");
    const storedKey = new Uint8Array(await crypto.subtle.digest("SHA-256", clientKey));
    const withoutProof = `c=biws,r=${serverNonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = await hmac(storedKey, authMessage);
    const proof = clientKey.map((byte, i) => byte ^ clientSignature[i]);
    this.#serverSignature = await hmac(await hmac(saltedPassword, "Server Key"), authMessage);
    return `${withoutProof},p=${toBase64(proof)}`;
  }

  /**
   * Checks the server-final message, proving that the server knows the password too.
   *
   * @param serverFinal The server-final message, `v=<signature>` or `e=<error>`.
   * @throws {ConnectionError} `AUTH_FAILED` if the signature does not match, the server reported
   *   an error, the message is malformed, or it came before
   *   {@link ScramClient.clientFinalMessage}.
   */
  verifyServerFinal(serverFinal: string): void {
    const expected = this.#serverSignature;
    if (expected === undefined) fail("the server sent its final message too early");
    const attr = serverFinal.split(",")[0];
    if (attr.startsWith("e=")) fail(`the server reported '${attr.slice(2)}'`);
    if (!attr.startsWith("v=")) fail("the server-final message is malformed");
    const signature = fromBase64(attr.slice(2));
    if (signature === undefined || !timingSafeEqual(signature, expected)) {
      fail("the server signature does not match (the server may not know the password)");
    }
  }
}

function fail(reason: string): never {
  throw new ConnectionError("AUTH_FAILED", `SCRAM-SHA-256 authentication failed: ${reason}`);
}

async function hmac(key: Uint8Array<ArrayBuffer>, data: string): Promise<Uint8Array<ArrayBuffer>> {
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", hmacKey, encoder.encode(data)));
}

/** Compares in time that depends only on the lengths. */
function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function toBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

/** Strict base64 (padded, nothing outside the alphabet), which atob never refuses. */
function fromBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return;
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}
