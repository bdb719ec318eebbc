import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { md5, md5Hex, md5PasswordMessage } from "../src/md5.ts";

const nodeMd5 = (data: Uint8Array | string): string => createHash("md5").update(data).digest("hex");

test("md5Hex matches the RFC 1321 test vectors, when given strings", () => {
  const vectors: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    [
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
      "d174ab98d277d9f5a5611c2c9f419d9f",
    ],
    [
      "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
      "57edf4a22be3c955ac49da2e2107b67a",
    ],
  ];
  for (const [input, expected] of vectors) assert.equal(md5Hex(input), expected, input);
});

test("md5 returns a 16-byte digest equal to node:crypto's, when the input is 1 MB", () => {
  const data = new Uint8Array(1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 8)) & 0xff;
  const digest = md5(data);
  assert.equal(digest.length, 16);
  assert.equal(md5Hex(data), nodeMd5(data));
});

test("md5Hex matches node:crypto, when lengths cross the padding boundaries", () => {
  for (let length = 0; length <= 200; length++) {
    const data = Uint8Array.from({ length }, (_, i) => (i * 7 + length) & 0xff);
    assert.equal(md5Hex(data), nodeMd5(data), `length ${length}`);
  }
});

test("md5 hashes only the view, when given a subarray of a larger buffer", () => {
  const whole = new TextEncoder().encode("xxabcxx");
  assert.equal(md5Hex(whole.subarray(2, 5)), "900150983cd24fb0d6963f7d28e17f72");
});

test("md5Hex encodes strings as UTF-8, when they are not ASCII", () => {
  assert.equal(md5Hex("pâté 🐘"), nodeMd5(new TextEncoder().encode("pâté 🐘")));
});

test("md5 throws TypeError, when not given a Uint8Array", () => {
  assert.throws(() => md5("abc" as unknown as Uint8Array), TypeError);
  assert.throws(() => md5Hex(42 as unknown as string), TypeError);
});

test("md5PasswordMessage computes md5(md5(password + user) + salt), when given a 4-byte salt", () => {
  const salt = new Uint8Array([0x93, 0x1f, 0x00, 0xff]);
  const inner = nodeMd5("secretalice");
  const outer = createHash("md5").update(inner).update(salt).digest("hex");
  assert.equal(md5PasswordMessage("alice", "secret", salt), "md5" + outer);
});

test("md5PasswordMessage throws RangeError or TypeError, when the salt is not 4 bytes", () => {
  assert.throws(() => md5PasswordMessage("u", "p", new Uint8Array(3)), RangeError);
  assert.throws(
    () => md5PasswordMessage("u", "p", [1, 2, 3, 4] as unknown as Uint8Array),
    TypeError,
  );
  assert.throws(
    () => md5PasswordMessage("u", undefined as unknown as string, new Uint8Array(4)),
    TypeError,
  );
});
