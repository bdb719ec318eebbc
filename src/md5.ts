/**
 * MD5 (RFC 1321), for PostgreSQL's `md5` password authentication. WebCrypto has no MD5, so this
 * is a small portable implementation. MD5 is broken as a hash; it is here only because old
 * servers still ask for it.
 *
 * @module
 */

// Left-rotation amounts: four per round, each used in turn.
const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

// K[i] = floor(abs(sin(i + 1)) * 2^32), computed rather than written out (64 numbers were most
// of this file's weight in a bundle). Safe on any platform: the nearest of the 64 products is
// 0.015 from an integer, so only a sin off by 3.6e-12 (over 30,000 units in the last place;
// engines are within 1 or 2) could change one. The RFC 1321 vectors in tests/md5_test.ts agree.
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.abs(Math.sin(i + 1)) * 2 ** 32;

const encoder = new TextEncoder();

/**
 * The MD5 digest of `data`.
 *
 * @param data The bytes to hash.
 * @returns The 16-byte digest.
 * @throws {TypeError} If `data` is not a Uint8Array.
 *
 * @example
 * ```ts
 * import { md5 } from "./md5.ts";
 * console.assert(md5(new Uint8Array()).length === 16);
 * ```
 */
export function md5(data: Uint8Array): Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError("md5() expects a Uint8Array");
  }
  // The message, 0x80, zeros, then its bit length as a 64-bit little-endian: whole 64-byte
  // blocks. A copy, which costs nothing for the short texts hashed here.
  const length = data.length;
  const size = length + 72 - ((length + 72) % 64);
  const message = new Uint8Array(size);
  message.set(data);
  message[length] = 0x80;
  const view = new DataView(message.buffer);
  view.setUint32(size - 8, (length * 8) >>> 0, true);
  view.setUint32(size - 4, Math.floor(length / 0x20000000), true);

  const state = new Int32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  for (let block = 0; block < size; block += 64) {
    let [a, b, c, d] = state;
    for (let i = 0; i < 64; i++) {
      let f: number, g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const x = (a + f + K[i] + view.getInt32(block + 4 * g, true)) | 0;
      const s = SHIFTS[((i >> 4) << 2) | (i & 3)];
      a = d;
      d = c;
      c = b;
      b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
    }
    // Int32Array stores wrap to 32 bits.
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
  }

  const digest = new DataView(new ArrayBuffer(16));
  for (let j = 0; j < 4; j++) digest.setInt32(4 * j, state[j], true);
  return new Uint8Array(digest.buffer);
}

/**
 * The MD5 digest of `data` as 32 lowercase hex digits. Strings are hashed as UTF-8.
 *
 * @param data The bytes or text to hash.
 * @returns The digest in lowercase hex.
 * @throws {TypeError} If `data` is neither a Uint8Array nor a string.
 *
 * @example
 * ```ts
 * import { md5Hex } from "./md5.ts";
 * console.assert(md5Hex("abc") === "900150983cd24fb0d6963f7d28e17f72");
 * ```
 */
export function md5Hex(data: Uint8Array | string): string {
  const digest = md5(typeof data === "string" ? encoder.encode(data) : data);
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/**
 * PostgreSQL's answer to an MD5 password request (AuthenticationMD5Password):
 * `"md5" + md5hex(md5hex(password + user) + salt)`.
 *
 * @param user The user name sent in the startup message.
 * @param password The password in clear text.
 * @param salt The 4-byte salt from the server's request.
 * @returns The text to send in the PasswordMessage.
 * @throws {TypeError} If an argument has the wrong type.
 * @throws {RangeError} If `salt` is not 4 bytes long.
 *
 * @example
 * ```ts
 * import { md5PasswordMessage } from "./md5.ts";
 * const answer = md5PasswordMessage("alice", "secret", new Uint8Array([1, 2, 3, 4]));
 * console.assert(answer.startsWith("md5") && answer.length === 35);
 * ```
 */
export function md5PasswordMessage(user: string, password: string, salt: Uint8Array): string {
  if (typeof user !== "string" || typeof password !== "string") {
    throw new TypeError("md5PasswordMessage() expects the user name and password as strings");
  }
  if (!(salt instanceof Uint8Array)) {
    throw new TypeError("md5PasswordMessage() expects the salt as a Uint8Array");
  }
  if (salt.length !== 4) {
    throw new RangeError(`The MD5 salt must be 4 bytes long, got ${salt.length}`);
  }
  const inner = encoder.encode(md5Hex(password + user));
  const salted = new Uint8Array(inner.length + 4);
  salted.set(inner);
  salted.set(salt, inner.length);
  return "md5" + md5Hex(salted);
}
