/**
 * MD5 (RFC 1321), for PostgreSQL's `md5` password authentication. WebCrypto has no MD5, so this
 * is a small portable implementation. MD5 is broken as a hash; it is here only because old
 * servers still ask for it.
 *
 * @module
 */

// Per-round left-rotation amounts.
// deno-fmt-ignore
const SHIFTS = new Uint8Array([
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
]);

// floor(abs(sin(i + 1)) * 2^32), written out rather than computed so that no platform's
// floating point can change them.
// deno-fmt-ignore
const K = new Int32Array([
  0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
  0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
  0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
  0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
  0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
  0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
  0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
  0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
]);

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
  const state = new Int32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  const words = new Int32Array(16);
  const length = data.length;
  const whole = length - (length % 64);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let offset = 0; offset < whole; offset += 64) {
    for (let j = 0; j < 16; j++) words[j] = view.getInt32(offset + 4 * j, true);
    compress(state, words);
  }

  // The tail: remaining bytes, 0x80, zeros, then the bit length as a 64-bit little-endian.
  const tail = new Uint8Array(length % 64 < 56 ? 64 : 128);
  tail.set(data.subarray(whole));
  tail[length - whole] = 0x80;
  const tailView = new DataView(tail.buffer);
  tailView.setUint32(tail.length - 8, (length * 8) >>> 0, true);
  tailView.setUint32(tail.length - 4, Math.floor(length / 0x20000000), true);
  for (let offset = 0; offset < tail.length; offset += 64) {
    for (let j = 0; j < 16; j++) words[j] = tailView.getInt32(offset + 4 * j, true);
    compress(state, words);
  }

  const digest = new Uint8Array(16);
  const digestView = new DataView(digest.buffer);
  for (let j = 0; j < 4; j++) digestView.setInt32(4 * j, state[j], true);
  return digest;
}

function compress(state: Int32Array, words: Int32Array): void {
  let a = state[0], b = state[1], c = state[2], d = state[3];
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
    const x = (a + f + K[i] + words[g]) | 0;
    const s = SHIFTS[i];
    a = d;
    d = c;
    c = b;
    b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
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
