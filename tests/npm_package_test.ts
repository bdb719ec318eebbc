// The npm package as its users get it: built as `deno task build` builds dist/npm (into a
// scratch directory), packed with `npm pack` and installed from the tarball into a scratch
// project (tests/_package.ts), then imported from plain ESM by Node 20, Bun and Deno (each must
// get its own build), compiled against by tsc, its gateway bin started, its workerd build run in
// workerd, and one smoke script (tests/_smoke.ts) run in all four.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";
import {
  BIN,
  bundle,
  bundleWorker,
  type InstalledPackage,
  installPackage,
  type NpmPackage,
  ROOT,
  run as runIn,
  startTestGateway,
  type TestGateway,
} from "./_package.ts";
import { getServer } from "./_server.ts";
import { within } from "./_helpers.ts";
import { SMOKE_SCRIPT, SMOKE_USING_SCRIPT } from "./_smoke.ts";

const isDeno = typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === "object";
const T = {
  timeout: 60_000,
  skip: isDeno ? false : "run once, from the Deno pass: it builds the package with Deno's " +
    "build.ts and spawns Node, Bun and Deno itself",
};

let installed: InstalledPackage | undefined;
let project = "";
let pkg: NpmPackage;

/** Runs `command` in the scratch project; its stdout, or an error with both outputs. */
function run(command: string, args: string[], cwd = project): Promise<string> {
  return runIn(command, args, cwd);
}

before(async () => {
  if (!isDeno) return;
  installed = await installPackage();
  ({ project, pkg } = installed);
}, { timeout: 60_000 });

after(async () => {
  await esbuild.stop();
  await installed?.remove();
});

test("the package's subpaths are deno.json's exports, each with every runtime's build", T, () => {
  const manifest = pkg.manifest as {
    version: string;
    exports: Record<string, Record<string, string>>;
    bin: Record<string, string>;
    dependencies: Record<string, string>;
    peerDependenciesMeta: Record<string, { optional: boolean }>;
  };
  const deno = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
  assert.equal(manifest.version, deno.version);
  assert.deepEqual(Object.keys(manifest.exports), Object.keys(deno.exports));
  for (const conditions of Object.values(manifest.exports)) {
    assert.deepEqual(Object.keys(conditions), [
      "types",
      "workerd",
      "deno",
      "bun",
      "node",
      "browser",
      "default",
    ]);
  }
  assert.equal(manifest.bin["edgepool-gateway"], "./bin/edgepool-gateway.mjs");
  assert.deepEqual(Object.keys(manifest.dependencies), ["ws"]);
  assert.deepEqual(manifest.peerDependenciesMeta, { "@electric-sql/pglite": { optional: true } });
});

// Plain ESM, no TypeScript, no bundler: what `node app.mjs` runs.
const CONSUMER = `
import process from "node:process";
import { connect, createPool, HttpPool, QueuePool } from "edgepool";
import { HttpPool as HttpPoolFromSubpath, httpTransport } from "edgepool/transports/http";
import { workersTcp } from "edgepool/transports/workers";

const [url, gateway] = process.argv.slice(2);
const out = { build: import.meta.resolve("edgepool") };

const conn = await connect(url);
out.connect = (await conn.query("select $1::int + 1 as n", [41])).rows[0].n;
await conn.close();

const pool = createPool(url);
out.queuePool = pool instanceof QueuePool;
out.pool = (await pool.query("select $1::int * 2 as n", [21])).rows[0].n;
await pool.close();

// Subpaths share one copy of each class.
out.sameClass = HttpPool === HttpPoolFromSubpath;
try {
  await workersTcp.connect({});
} catch (error) {
  out.stub = error.message;
}

if (gateway) {
  const http = createPool(url, { transport: httpTransport({ endpoint: gateway + "/sql" }) });
  out.http = (await http.query("select $1::int + 1 as n", [41])).rows[0].n;
  await http.close();
}
console.log(JSON.stringify(out));
`;

async function consume(command: string, args: string[], gateway?: string) {
  await writeFile(join(project, "consumer.mjs"), CONSUMER);
  const server = await getServer();
  const url = server.url("scram", { sslmode: "disable" });
  const stdout = await run(command, [...args, "consumer.mjs", url, ...(gateway ? [gateway] : [])]);
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

test(
  "Node 20, Bun and Deno each load their build from plain ESM and query the server",
  T,
  async () => {
    for (
      const [runtime, command, args, build] of [
        ["node", "node", [], "node"],
        ["bun", join(BIN, "bun"), [], "node"],
        ["deno", process.execPath, ["run", "-A"], "deno"],
      ] as const
    ) {
      const out = await consume(command, [...args]);
      assert.match(out.build, new RegExp(`/node_modules/edgepool/${build}/index\\.js$`), runtime);
      assert.equal(out.connect, 42, runtime);
      assert.equal(out.queuePool, true, runtime);
      assert.equal(out.pool, 42, runtime);
      assert.equal(out.sameClass, true, runtime);
      assert.match(
        out.stub,
        new RegExp(`"edgepool/transports/workers" is not available in edgepool's ${build} build`),
        runtime,
      );
    }
  },
);

test("the edgepool-gateway bin runs from npx and serves queries over HTTP", T, async () => {
  const help = await run("npx", ["--offline", "edgepool-gateway", "--help"]);
  assert.match(help, /usage: edgepool-gateway --listen HOST:PORT --upstream HOST:PORT/);

  const server = await getServer();
  const child = spawn(
    join(project, "node_modules", ".bin", "edgepool-gateway"),
    ["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${server.port}`],
    { cwd: project, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    let output = "";
    const gateway = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line:\n${output}`)), 20_000);
      const read = (chunk: Uint8Array) => {
        output += new TextDecoder().decode(chunk);
        const match = /listening on (http:\/\/\S+?) /.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout.on("data", read);
      child.stderr.on("data", read);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the gateway exited with ${code}:\n${output}`));
      });
    });
    const out = await consume("node", [], gateway);
    assert.equal(out.http, 42);
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
});

test(
  "tsc compiles a TypeScript consumer against the declarations (bundler, node16)",
  T,
  async () => {
    const subpaths = Object.keys(pkg.manifest.exports as Record<string, unknown>);
    const source = [
      'import { connect, type Connection, createPool, type Pool, QueuePool } from "edgepool";',
      'import { httpTransport } from "edgepool/transports/http";',
      'import { startGateway } from "edgepool/gateway";',
      // Every subpath resolves to its declarations.
      ...subpaths.map((s, i) => `import * as entry${i} from "edgepool${s.slice(1)}";`),
      `export const entries = [${subpaths.map((_, i) => `entry${i}`).join(", ")}];`,
      "",
      "export async function answer(url: string): Promise<number> {",
      "  await using conn = await connect(url);",
      '  const { rows } = await conn.query<{ n: number }>("select $1::int + 1 as n", [41]);',
      "  // @ts-expect-error: the rows are typed, not any",
      "  const wrong: string = rows[0].n;",
      "  void wrong;",
      "  return rows[0].n;",
      "}",
      "",
      "export function pools(url: string): [Pool<Connection>, boolean] {",
      "  const pool = createPool(url, { max: 5 });",
      '  const http = createPool(url, { transport: httpTransport({ endpoint: "http://g/sql" }) });',
      "  return [pool, http instanceof QueuePool];",
      "}",
      "",
      "export const gateway: typeof startGateway = startGateway;",
      "",
    ].join("\n");
    await writeFile(join(project, "consumer.ts"), source);
    const common = {
      strict: true,
      noEmit: true,
      target: "es2022",
      skipLibCheck: false,
    };
    const configs = {
      bundler: {
        ...common,
        module: "preserve",
        moduleResolution: "bundler",
        lib: ["es2022", "esnext.disposable", "dom", "dom.iterable"],
        types: [],
      },
      node16: {
        ...common,
        module: "node16",
        moduleResolution: "node16",
        lib: ["es2022", "esnext.disposable"],
        types: ["node"],
      },
    };
    for (const [name, compilerOptions] of Object.entries(configs)) {
      const config = `tsconfig.${name}.json`;
      await writeFile(
        join(project, config),
        JSON.stringify({ compilerOptions, files: ["consumer.ts"] }),
      );
      await run(join(BIN, "tsc"), ["-p", config]);
    }
  },
);

test("the workerd build runs a Worker in workerd over cloudflare:sockets", T, async () => {
  const bundle = await bundleWorker(join(ROOT, "tests", "_connect_worker.ts"), project);
  assert.deepEqual(bundle.runtimeImports, ["cloudflare:sockets"]);
  const server = await getServer();
  const mf = new Miniflare({
    modules: true,
    script: bundle.code,
    compatibilityDate: "2026-04-01",
    bindings: { DATABASE_URL: server.url("scram", { sslmode: "disable" }) },
  });
  try {
    const response = await mf.dispatchFetch("http://worker/");
    assert.deepEqual(await response.json(), { n: 42 });
  } finally {
    await mf.dispose();
  }
});

test(
  "the browser build has no TCP transport and no embedded database, and says so",
  T,
  async () => {
    const browser = await import(pathToFileURL(join(pkg.dir, "browser", "index.js")).href);
    const server = await getServer();
    await assert.rejects(
      browser.connect(server.url("scram", { sslmode: "disable" })),
      /browser build has no TCP transport; pass one with the `transport` option/,
    );
    assert.throws(() => browser.createPool(), /PGlite\) is not part of the browser bundle/);
  },
);

// The smoke script's entry for Node, Bun and Deno: arguments in, JSON out.
const SMOKE_CLI = `
import process from "node:process";
import { smoke } from "./_smoke.mjs";

const [url, ws, http] = process.argv.slice(2);
const WebSocket = globalThis.WebSocket ?? (await import("ws")).WebSocket;
console.log(JSON.stringify(await smoke({ url, ws, http, WebSocket })));
`;

// The smoke script's entry for workerd: bindings in, JSON out.
const SMOKE_WORKER = `
import { smoke } from "./_smoke.mjs";

export default {
  async fetch(_request, env) {
    return Response.json(
      await smoke({ url: env.DATABASE_URL, ws: env.GATEWAY_WS, http: env.GATEWAY_HTTP }),
    );
  },
};
`;

test(
  "the smoke script queries over TCP, WebSocket and HTTP, in a transaction and a checkout, " +
    "in Node 20, Bun, Deno and workerd",
  T,
  async () => {
    await writeFile(join(project, "_smoke.mjs"), SMOKE_SCRIPT);
    await writeFile(join(project, "_smoke_using.mjs"), SMOKE_USING_SCRIPT);
    await writeFile(join(project, "smoke_cli.mjs"), SMOKE_CLI);
    await writeFile(join(project, "smoke_worker.mjs"), SMOKE_WORKER);
    const server = await getServer();
    const url = server.url("scram", { sslmode: "disable" });
    let gateway: TestGateway | undefined;
    try {
      gateway = await startTestGateway();
      const results: Record<string, Record<string, unknown>> = {};
      for (
        const [runtime, command, args] of [
          ["node", "node", []],
          ["bun", join(BIN, "bun"), []],
          ["deno", process.execPath, ["run", "-A"]],
        ] as const
      ) {
        const stdout = await within(
          run(command, [...args, "smoke_cli.mjs", url, gateway.ws, gateway.http]),
          20_000,
          runtime,
        );
        results[runtime] = JSON.parse(stdout.trim().split("\n").at(-1)!);
      }
      const mf = new Miniflare({
        modules: true,
        script: await bundle(join(project, "smoke_worker.mjs"), project),
        compatibilityDate: "2026-04-01",
        bindings: { DATABASE_URL: url, GATEWAY_WS: gateway.ws, GATEWAY_HTTP: gateway.http },
      });
      try {
        const response = await within(mf.dispatchFetch("http://worker/"), 20_000, "workerd");
        const text = await response.text();
        assert.equal(response.status, 200, text);
        results.workerd = JSON.parse(text);
      } finally {
        await mf.dispose();
      }
      for (const [runtime, out] of Object.entries(results)) {
        assert.deepEqual(out, {
          tcp: 42,
          transaction: 42,
          // Node 20's parser has no `await using`: the script spells it out there. In workerd
          // it is esbuild's lowering, as Wrangler bundles (miniflare cannot parse it as is).
          checkoutSyntax: runtime === "node" ? "try/finally" : "await using",
          checkout: { n: 42, released: true },
          websocket: "ws!",
          http: "http!",
        }, runtime);
      }
    } finally {
      await gateway?.close();
    }
  },
);
