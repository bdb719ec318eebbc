// The npm package as its users get it: built as `deno task build` builds dist/npm (into a
// scratch directory), packed with `npm pack` and installed from the tarball into a scratch
// project, then imported from plain ESM by Node 20, Bun and Deno (each must get its own build),
// compiled against by tsc, its gateway bin started, and its workerd build run in workerd.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";
import { bundleSample } from "../bench/bundle/sizes.ts";
import { buildNpmPackage, type NpmPackage } from "../build.ts";
import { getServer } from "./_server.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "node_modules", ".bin");
const isDeno = typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === "object";
const T = {
  timeout: 60_000,
  skip: isDeno ? false : "run once, from the Deno pass: it builds the package with Deno's " +
    "build.ts and spawns Node, Bun and Deno itself",
};

const exec = promisify(execFile);

let scratch = "";
let project = "";
let pkg: NpmPackage;

/** Runs `command` in the scratch project; its stdout, or an error with both outputs. */
async function run(command: string, args: string[], cwd = project): Promise<string> {
  try {
    return (await exec(command, args, { cwd, maxBuffer: 16 << 20 })).stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`\`${command} ${args.join(" ")}\` failed:\n${stdout}\n${stderr}`, {
      cause: error,
    });
  }
}

before(async () => {
  if (!isDeno) return;
  scratch = await mkdtemp(join(tmpdir(), "edgepool-npm-"));
  pkg = await buildNpmPackage(join(scratch, "package"));
  // ws, the package's one dependency, packed from this repository's node_modules, so that
  // the install needs no registry.
  const pack = async (dir: string) =>
    (await run("npm", ["pack", dir, "--pack-destination", scratch], scratch)).trim().split("\n")
      .at(-1)!;
  const tarball = await pack(pkg.dir);
  const ws = await pack(join(ROOT, "node_modules", "ws"));
  project = join(scratch, "project");
  await mkdir(project);
  await writeFile(
    join(project, "package.json"),
    JSON.stringify({
      name: "edgepool-consumer",
      private: true,
      type: "module",
      dependencies: { edgepool: `file:../${tarball}`, ws: `file:../${ws}` },
    }),
  );
  await run("npm", ["install", "--offline", "--no-audit", "--no-fund"]);
  // Node's types, for tsc: what a user adds, taken from this repository's node_modules.
  await mkdir(join(project, "node_modules", "@types"));
  await symlink(
    join(ROOT, "node_modules", "@types", "node"),
    join(project, "node_modules", "@types", "node"),
    "dir",
  );
}, { timeout: 60_000 });

after(async () => {
  await esbuild.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
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
  const bundle = await bundleSample("edgepool", pkg.dir);
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
