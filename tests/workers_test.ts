// Runs edgepool inside workerd (miniflare) against the real test server over
// `cloudflare:sockets`, from the same bundle a Workers user would deploy.

import assert from "node:assert/strict";
import { test } from "node:test";
import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";
import { bundleOptions, WORKERS_CONDITIONS, WORKERS_EXTERNALS } from "../build/runtimes.ts";
import { getServer, type TestUser } from "./_server.ts";
import { uniqueName } from "./_helpers.ts";
import { EXPECTED } from "./_drizzle.ts";

async function workerBundle(file = "./_worker.ts"): Promise<string> {
  const result = await esbuild.build({
    ...bundleOptions(new URL(file, import.meta.url).pathname, "workers"),
    write: false,
  });
  return result.outputFiles![0].text;
}

// A CommonJS package's `require("events")` (pg's, which Drizzle's node-postgres driver
// imports) cannot stay a require in an ES module bundle: esbuild's stand-in throws "Dynamic
// require of "events" is not supported" in workerd. Under `nodejs_compat` Wrangler turns such a
// require of a Node built-in into an import of it; so does this plugin, for the tests.
const nodeBuiltinRequires: esbuild.Plugin = {
  name: "node-builtin-requires",
  setup(build) {
    const builtins = new Set(WORKERS_EXTERNALS.filter((m) => !m.includes(":")));
    build.onResolve({ filter: /^[a-z_/]+$|^node:/ }, (args) => {
      const name = args.path.replace(/^node:/, "");
      if (args.kind !== "require-call" || !builtins.has(name)) return undefined;
      return { path: name, namespace: "node-builtin-require" };
    });
    build.onLoad({ filter: /.*/, namespace: "node-builtin-require" }, (args) => ({
      contents: `import builtin from "node:${args.path}";\nmodule.exports = builtin;`,
      loader: "js",
    }));
  },
};

/**
 * A Worker that bundles npm packages as Wrangler does with `nodejs_compat`: the Workers
 * conditions, Node built-ins left to workerd, and their requires made imports.
 */
async function nodeCompatBundle(file: string): Promise<string> {
  const options = bundleOptions(new URL(file, import.meta.url).pathname, "workers");
  const result = await esbuild.build({
    ...options,
    conditions: [...WORKERS_CONDITIONS],
    mainFields: ["module", "main"],
    external: [...options.external!, ...WORKERS_EXTERNALS],
    plugins: [nodeBuiltinRequires, ...options.plugins!],
    write: false,
  });
  return result.outputFiles![0].text;
}

/** Runs `fn` against the worker in `file`; answers that are not JSON come back as failures. */
async function withWorker(
  fn: (fetch: (path: string) => Promise<Record<string, unknown>>) => Promise<void>,
  file = "./_worker.ts",
  compatibilityDate = "2026-04-01",
  user: TestUser = "scram",
  nodeCompat = false,
): Promise<void> {
  const server = await getServer();
  const mf = new Miniflare({
    modules: true,
    script: await (nodeCompat ? nodeCompatBundle(file) : workerBundle(file)),
    compatibilityDate,
    compatibilityFlags: nodeCompat ? ["nodejs_compat"] : [],
    bindings: { DATABASE_URL: server.url(user) },
  });
  try {
    await fn(async (path) => {
      const response = await mf.dispatchFetch(`http://worker${path}`);
      const text = await response.text();
      try {
        return JSON.parse(text) as Record<string, unknown>;
      } catch {
        return { failed: true, status: response.status, message: text };
      }
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

test("a Worker that only connects bundles no runtime detection, lazy transport or pool code", async () => {
  const code = await workerBundle("./_connect_worker.ts");
  assert.match(code, /cloudflare:sockets/);
  // transports/_runtime.ts, auto.ts's lazy imports, the pool's handle, the Oid table.
  for (const sign of ["Netlify", "no TCP transport for", "already released", "_timestamptz"]) {
    assert.ok(!code.includes(sign), `the bundle holds ${JSON.stringify(sign)}`);
  }
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
    assert.equal(body.applicationName, "edgepool@workers");
  });
});

test("connect() in workerd refuses a Unix-domain socket with a TypeError that says why", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    const body = await fetch(`/?host=${encodeURIComponent("/var/run/postgresql")}`);
    assert.equal(body.failed, true);
    assert.equal(body.name, "TypeError");
    assert.match(
      String(body.message),
      /Unix-domain socket \/var\/run\/postgresql\/\.s\.PGSQL\.\d+: the Workers TCP transport/,
    );
    assert.doesNotMatch(String(body.message), /scram_pw/);
  });
});

test("a Workers bundle hashes MD5 with workerd's WebCrypto, when it carries MD5 authentication", async () => {
  const code = await workerBundle("./_connect_worker.ts");
  assert.match(code, /crypto\.subtle\.digest\("MD5"/);
  // src/md5.ts's own MD5: its error message and its sine table.
  assert.ok(!code.includes("md5() expects a Uint8Array"));
  assert.ok(!code.includes("Math.sin("));
});

test("connect() in workerd logs in with MD5, when the server asks for it", {
  timeout: 60_000,
}, async () => {
  await withWorker(
    async (fetch) => {
      const body = await fetch("/?sslmode=disable");
      assert.equal(body.failed, undefined, String(body.message));
      assert.deepEqual(body.answer, { n: 42, who: "md5" });
      assert.deepEqual(body.pipelined, [10, 20, 30]);
    },
    "./_worker.ts",
    "2026-04-01",
    "md5",
  );
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

test("a module-scope createPool serves request after request in workerd", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    for (let i = 0; i < 3; i++) {
      const body = await fetch("/module");
      assert.equal(body.failed, undefined, String(body.message));
      assert.equal(body.n, 42);
    }
    const described = (await fetch("/module")).describe as Record<string, unknown>;
    assert.equal(described.poolClass, "NullPool");
    assert.equal(described.runtime, "workers");
    assert.equal(described.transport, "workers-tcp");
    assert.match(String(described.reasons), /at most 6 connections opening at once/);
    // Connections of concurrent requests in one isolate: each writes from its own request
    // (a queueMicrotask flush once ran in whichever request drained the queue).
    const direct = await Promise.all(Array.from({ length: 5 }, () => fetch("/direct")));
    assert.deepEqual(direct.map((b) => b.n ?? b.message), [42, 42, 42, 42, 42]);
    // The same through the module-scope pool, more requests than may open at once (6): a
    // connection returned by one request once went to another request's waiting checkout.
    const pooled = await Promise.all(Array.from({ length: 12 }, () => fetch("/module")));
    assert.deepEqual(pooled.map((b) => b.n ?? b.message), Array(12).fill(42));
    // 20 queries at once inside one request: more than Workers lets open at once.
    const burst = await fetch("/burst");
    assert.equal(burst.sum, 190, String(burst.message));
  }, "./_worker_pool.ts");
});

// workerd defines FinalizationRegistry (and WeakRef) only from compatibility date 2025-05-05;
// many deployed Workers are older. The pool must work there, leak detection by garbage
// collection left out.
for (const date of ["2024-09-23", "2026-04-01"]) {
  test(`createPool serves requests in workerd on compatibility date ${date}`, {
    timeout: 60_000,
  }, async () => {
    await withWorker(
      async (fetch) => {
        const globals = await fetch("/globals");
        assert.equal(globals.finalizationRegistry, date < "2025-05-05" ? "undefined" : "function");
        for (let i = 0; i < 3; i++) {
          const body = await fetch("/module");
          assert.equal(body.failed, undefined, String(body.message));
          assert.equal(body.n, 42);
        }
        const pooled = await Promise.all(Array.from({ length: 8 }, () => fetch("/module")));
        assert.deepEqual(pooled.map((b) => b.n ?? b.message), Array(8).fill(42));
        const burst = await fetch("/burst");
        assert.equal(burst.sum, 190, String(burst.message));
        const scoped = await fetch("/scope");
        assert.equal(scoped.failed, undefined, String(scoped.message));
        assert.equal((scoped.pids as number[]).length, 2);
      },
      "./_worker_pool.ts",
      date,
    );
  });
}

test("pool.scope gives a request its own pool and closes it after the request", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    for (let i = 0; i < 3; i++) {
      const body = await fetch("/scope");
      assert.equal(body.failed, undefined, String(body.message));
      assert.equal(body.kind, "NullPool");
      assert.equal((body.pids as number[]).length, 2);
    }
  }, "./_worker_pool.ts");
});

test("pool.stream in workerd reads every batch and returns the connection", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    const body = await fetch("/stream");
    assert.equal(body.failed, undefined, String(body.message));
    assert.equal(body.sum, 2500 * 2501 / 2);
    assert.equal((body.stats as { checkedOut: number }).checkedOut, 0);
  }, "./_worker_pool.ts");
});

test("pool.listen in workerd is a TypeError that says why", { timeout: 60_000 }, async () => {
  await withWorker(async (fetch) => {
    const body = await fetch("/listen");
    assert.equal(body.failed, true);
    assert.match(String(body.message), /cannot work on Cloudflare Workers/);
    // The pool goes on serving.
    const after = await fetch("/module");
    assert.equal(after.n, 42, String(after.message));
  }, "./_worker_pool.ts");
});

test("a QueuePool keeping sockets across requests fails in workerd: why createPool does not", {
  timeout: 60_000,
}, async () => {
  await withWorker(async (fetch) => {
    const first = await fetch("/naive");
    assert.equal(first.one, 1, String(first.message));
    const second = await fetch("/naive");
    assert.equal(second.failed, true, JSON.stringify(second));
    assert.match(String(second.message), /different request|Connection lost|timed out/i);
  }, "./_worker_pool.ts");
});

test("Drizzle over createPool(env.DATABASE_URL) runs the ORM workload in workerd", {
  timeout: 120_000,
}, async () => {
  await withWorker(
    async (fetch) => {
      // Through pool.scope: a pool of the request's own, closed through ctx.waitUntil.
      const table = uniqueName("drizzle_worker");
      const body = await fetch(`/workload?table=${table}`);
      assert.equal(body.failed, undefined, `${body.message} (${body.cause})`);
      assert.equal(body.poolClass, "NullPool");
      assert.deepEqual(body.report, EXPECTED);
      // Straight on the module-scope pool, from concurrent requests: each transaction on one
      // connection, every row committed.
      const module = uniqueName("drizzle_worker_module");
      assert.equal((await fetch(`/create?table=${module}`)).created, true);
      try {
        const answers = await Promise.all(
          Array.from({ length: 8 }, (_, i) => fetch(`/module?table=${module}&name=r${i}`)),
        );
        for (const answer of answers) {
          assert.equal(answer.failed, undefined, `${answer.message} (${answer.cause})`);
          const [before, after] = answer.pids as number[];
          assert.equal(before, after);
          assert.equal(answer.found, 1);
        }
      } finally {
        await fetch(`/drop?table=${module}`);
      }
    },
    "./_worker_drizzle.ts",
    "2026-04-01",
    "scram",
    true,
  );
});
