// Runs edgepool inside workerd (miniflare) against the real test server over
// `cloudflare:sockets`, from the same bundle a Workers user would deploy.

import assert from "node:assert/strict";
import { test } from "node:test";
import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";
import { bundleOptions } from "../build.ts";
import { getServer } from "./_server.ts";

async function workerBundle(): Promise<string> {
  const result = await esbuild.build({
    ...bundleOptions(new URL("./_worker.ts", import.meta.url).pathname, "workers"),
    write: false,
  });
  return result.outputFiles![0].text;
}

async function withWorker(
  fn: (fetch: (path: string) => Promise<Record<string, unknown>>) => Promise<void>,
): Promise<void> {
  const server = await getServer();
  const mf = new Miniflare({
    modules: true,
    script: await workerBundle(),
    compatibilityDate: "2026-04-01",
    bindings: { DATABASE_URL: server.url("scram") },
  });
  try {
    await fn(async (path) => {
      const response = await mf.dispatchFetch(`http://worker${path}`);
      return await response.json() as Record<string, unknown>;
    });
  } finally {
    await mf.dispose();
  }
}

test("the Workers bundle holds no Node or Deno code", async () => {
  const code = await workerBundle();
  assert.doesNotMatch(code, /\bnode:/);
  assert.doesNotMatch(code, /\bDeno\./);
  assert.match(code, /cloudflare:sockets/);
});

test("connect() in workerd queries the real server over cloudflare:sockets", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    const body = await fetch("/?sslmode=disable");
    assert.equal(body.failed, undefined, String(body.message));
    assert.equal(body.userAgent, "Cloudflare-Workers");
    assert.equal(body.encrypted, false);
    assert.deepEqual(body.answer, { n: 42, who: "scram" });
    assert.deepEqual(body.pipelined, [10, 20, 30]);
    assert.equal(body.errorCode, "22012");
    assert.equal(body.after, "still usable");
  });
});

test("connect() in workerd goes through STARTTLS and reports an untrusted certificate", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    // Workers trust public roots only, so the harness's own CA is refused: a clear error...
    const required = await fetch("/?sslmode=require");
    assert.equal(required.failed, true);
    assert.equal(required.code, "TLS_FAILED", String(required.message));
    // ...and sslmode=prefer falls back to plain TCP, as libpq does.
    const preferred = await fetch("/?sslmode=prefer");
    assert.equal(preferred.failed, undefined, String(preferred.message));
    assert.equal(preferred.encrypted, false);
    assert.deepEqual(preferred.answer, { n: 42, who: "scram" });
  });
});
