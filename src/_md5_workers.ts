/**
 * `md5.ts` as edgepool's Workers build has it (build/runtimes.ts puts it in its place where
 * `_auth.ts` imports it): workerd's `crypto.subtle.digest` takes `"MD5"`, a non-standard
 * algorithm Cloudflare documents, so a Worker carries no MD5 of its own. Other runtimes'
 * WebCrypto has no MD5 (Deno and Node refuse it), hence the swap instead of a check.
 *
 * @module
 */

const encoder = new TextEncoder();

async function md5Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("MD5", data));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * PostgreSQL's answer to AuthenticationMD5Password, as `md5.ts`'s:
 * `"md5" + md5hex(md5hex(password + user) + salt)`. `_auth.ts` hands it strings and the
 * request's 4-byte salt.
 */
export async function md5PasswordMessage(
  user: string,
  password: string,
  salt: Uint8Array,
): Promise<string> {
  const inner = encoder.encode(await md5Hex(encoder.encode(password + user)));
  return "md5" + await md5Hex(new Uint8Array([...inner, ...salt]));
}
