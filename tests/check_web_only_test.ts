import { test } from "node:test";
import assert from "node:assert/strict";
import { findViolations, maskSource } from "./check_web_only.ts";

function check(source: string): string[] {
  return findViolations(new Map([["src/x.ts", source]])).map((v) =>
    `${v.line}:${v.column} ${v.message}`
  );
}

test("findViolations reports each non-web API with its line and column", () => {
  const source = [
    'import { readFile } from "node:fs/promises";',
    'export * from "node:path";',
    "const env = Deno.env.get('X');",
    "const b = Buffer.from([1]);",
    "const argv = process.argv;",
    "const m = require('x');",
    'const p = await import("node:process");',
    "const v = globalThis.Deno?.version;",
  ].join("\n");
  assert.deepEqual(check(source), [
    "1:26 imports node:fs/promises",
    "2:15 imports node:path",
    "3:13 uses Deno.",
    "4:11 uses Buffer",
    "5:14 uses process.",
    "6:11 calls require(",
    "7:24 imports node:process",
    "8:11 uses Deno.",
  ]);
});

test("findViolations ignores comments, strings and regular expressions", () => {
  const source = [
    "// Deno.connect would be simpler, but Buffer and process.env are not web APIs.",
    "/* import { x } from \"node:fs\"; require('y') */",
    "/**",
    " * Unlike `Buffer.from`, this uses TextEncoder.",
    " */",
    'const message = "process.exit is not available; use Deno.exit";',
    "const re = /Deno\\.|Buffer/g;",
    "const t = `Buffer ${1 + 1} process.`;",
    "const ratio = a / b / 2; // Deno.",
  ].join("\n");
  assert.deepEqual(check(source), []);
});

test("findViolations allows typeof Deno, web types and look-alike names", () => {
  const source = [
    'const isDeno = typeof Deno !== "undefined";',
    "const buf: ArrayBuffer = new SharedArrayBuffer(8) as unknown as ArrayBuffer;",
    "function send(data: BufferSource) {}",
    "this.process.start(); subprocess.kill(); const requireAuth = true;",
  ].join("\n");
  assert.deepEqual(check(source), []);
});

test("findViolations finds code inside template expressions", () => {
  assert.deepEqual(check("const s = `pid ${process.pid} of ${`${Deno.pid}`}`;"), [
    "1:18 uses process.",
    "1:39 uses Deno.",
  ]);
});

test("maskSource keeps offsets and newlines", () => {
  const source = 'a("x") // c\n/* d\ne */ b';
  const { code, strings } = maskSource(source);
  assert.equal(code.length, source.length);
  assert.equal(code, 'a(" ")     \n    \n     b');
  assert.deepEqual(strings, [{ start: 2, value: "x" }]);
});
