/**
 * Builds the npm package `edgepool` with esbuild and tsc, into `dist/npm/` (`npm install
 * ./dist/npm`), or into the directory given with `--out`.
 *
 * - The package's subpaths are {@link ENTRY_POINTS}, one table checked against deno.json's
 *   `exports` (the same subpaths, sources and order), so JSR and npm publish the same API:
 *   `.` is `edgepool`, `./transports/http` is `edgepool/transports/http`...
 * - One ESM build per runtime, with code splitting so that the subpaths share one copy of each
 *   class: `node/` (Node and Bun: `node`, `bun` and `default` conditions), `deno/`, `workerd/`
 *   (Cloudflare Workers: `cloudflare:sockets`, no PGlite) and `browser/` (no TCP at all:
 *   WebSocket and HTTP only). What differs between them is build/runtimes.ts's table of
 *   per-runtime modules; a subpath that cannot run on a runtime is a stub there that says so.
 * - One declaration tree, `types/`, for every condition (tsc, declarations only).
 * - `bin/edgepool-gateway.mjs`: the gateway's command line, bundled for Node.
 * - `@electric-sql/pglite` and `ws` stay outside the bundles: PGlite an optional peer
 *   dependency (10 MB, for the embedded database only), ws a dependency (the gateway's bin
 *   needs it on Node, and `npx edgepool-gateway` installs no optional peers).
 *
 * Run: `deno task build` (`deno run -A build.ts [--out DIR]`). What a Worker weighs with the
 * package is measured by bench/bundle/sizes.ts.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { execFile } from "node:child_process";
import { chmod, copyFile, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs, promisify } from "node:util";
import { bundleOptions, ROOT, type Runtime, runtimeOptions } from "./build/runtimes.ts";

/** One subpath of the package. */
interface EntryPoint {
  /** `"."`, `"./transports/http"`...: the key in deno.json's `exports`. */
  subpath: string;
  /** Its source, the value in deno.json's `exports`: `"./mod.ts"`. */
  source: string;
  /**
   * For a subpath that cannot work on every runtime: those it runs on, what it needs, and what
   * to do instead. Elsewhere the subpath is a stub with the same exports, each throwing a
   * TypeError that says so when used (so code that imports it on every runtime and picks one
   * at run time still loads). Without it, the subpath is built for every runtime.
   */
  only?: { on: Runtime[]; needs: string; instead: string };
}

const PICKED = "connect() and createPool() pick this runtime's TCP transport by themselves";

/** The package's subpaths: deno.json's `exports`, in its order ({@link checkEntryPoints}). */
const ENTRY_POINTS: EntryPoint[] = [
  { subpath: ".", source: "./mod.ts" },
  {
    subpath: "./transports/deno",
    source: "./transports/deno.ts",
    only: { on: ["deno"], needs: "Deno's TCP API", instead: PICKED },
  },
  {
    subpath: "./transports/node",
    source: "./transports/node.ts",
    only: { on: ["node", "deno"], needs: "Node's net and tls modules", instead: PICKED },
  },
  {
    subpath: "./transports/pglite",
    source: "./transports/pglite.ts",
    only: {
      on: ["node", "deno", "browser"],
      needs: "PGlite, which does not run on Workers",
      instead: "give createPool() a postgres:// URL",
    },
  },
  {
    subpath: "./transports/workers",
    source: "./transports/workers.ts",
    only: { on: ["workers"], needs: "Cloudflare's sockets API", instead: PICKED },
  },
  { subpath: "./transports/http", source: "./transports/http.ts" },
  {
    subpath: "./gateway",
    source: "./gateway/mod.ts",
    only: {
      on: ["node", "deno"],
      needs: "a server that listens on a port (Deno, Node or Bun)",
      instead: "run it with `npx edgepool-gateway` and reach it with httpTransport or " +
        "websocketTransport",
    },
  },
  { subpath: "./transports/websocket", source: "./transports/websocket.ts" },
  { subpath: "./prisma", source: "./prisma/mod.ts" },
];

/**
 * Checks {@link ENTRY_POINTS} against deno.json's `exports`: the same subpaths with the same
 * sources, in the same order.
 *
 * @throws {Error} Naming each subpath that differs.
 */
function checkEntryPoints(exports: Record<string, string>): void {
  const listed = new Map(ENTRY_POINTS.map((e) => [e.subpath, e.source]));
  const problems: string[] = [];
  for (const [subpath, source] of Object.entries(exports)) {
    const ours = listed.get(subpath);
    if (ours === undefined) problems.push(`${subpath} (${source}) is not in ENTRY_POINTS`);
    else if (ours !== source) problems.push(`${subpath} is ${source}, ENTRY_POINTS says ${ours}`);
  }
  for (const { subpath } of ENTRY_POINTS) {
    if (!(subpath in exports)) problems.push(`${subpath} is in ENTRY_POINTS, not in exports`);
  }
  const order = Object.keys(exports).join(" ");
  if (problems.length === 0 && order !== ENTRY_POINTS.map((e) => e.subpath).join(" ")) {
    problems.push(`ENTRY_POINTS is not in the order of exports (${order})`);
  }
  if (problems.length > 0) {
    throw new Error(
      `build.ts: deno.json's exports and ENTRY_POINTS differ:\n  ${problems.join("\n  ")}`,
    );
  }
}

/** The directory of each build in the package, and the export conditions that pick it. */
const BUILDS: { runtime: Runtime; dir: string; conditions: string[] }[] = [
  { runtime: "workers", dir: "workerd", conditions: ["workerd"] },
  { runtime: "deno", dir: "deno", conditions: ["deno"] },
  { runtime: "node", dir: "node", conditions: ["bun", "node"] },
  { runtime: "browser", dir: "browser", conditions: ["browser"] },
];

/** The build that the `default` condition (and `main`) gets: any runtime with node:net. */
const DEFAULT_BUILD = "node";

/** The external imports each build may keep; anything else is a runtime leaking in. */
const ALLOWED_EXTERNALS: Record<Runtime, RegExp> = {
  node: /^(node:|ws$|@electric-sql\/pglite$)/,
  deno: /^(node:|ws$|@electric-sql\/pglite$)/,
  workers: /^cloudflare:sockets$/,
  browser: /^@electric-sql\/pglite$/,
};

/** An entry point with where it goes in the package. */
interface Entry extends EntryPoint {
  /** Its output name without extension in each build: `"index"`, `"transports/http"`. */
  out: string;
  /** Its declaration file in the package: `"./types/mod.d.ts"`. */
  types: string;
}

const run = promisify(execFile);

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, "utf8"));
}

/**
 * Builds the npm package into `dir` (emptied first): the four runtime builds, the
 * declarations, the gateway's bin, package.json, README.md and LICENSE. Returns its
 * package.json.
 */
async function buildNpmPackage(dir: string): Promise<Record<string, unknown>> {
  const deno = await readJson(join(ROOT, "deno.json"));
  checkEntryPoints(deno.exports as Record<string, string>);
  const entries = ENTRY_POINTS.map((entry): Entry => ({
    ...entry,
    out: entry.subpath === "." ? "index" : entry.subpath.slice(2),
    types: `./types/${entry.source.slice(2).replace(/\.ts$/, ".d.ts")}`,
  }));
  await rm(dir, { recursive: true, force: true });
  const names = await exportNames(entries);
  for (const build of BUILDS) {
    await buildRuntime(build.runtime, entries, names, join(dir, build.dir));
  }
  await buildDeclarations(entries, join(dir, "types"));
  await buildGatewayBin(join(dir, "bin", "edgepool-gateway.mjs"));
  const manifest = packageJson(deno, entries);
  await writeFile(join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
  await copyFile(join(ROOT, "README.md"), join(dir, "README.md"));
  await copyFile(join(ROOT, "LICENSE"), join(dir, "LICENSE"));
  return manifest;
}

function packageJson(deno: Record<string, unknown>, entries: Entry[]): Record<string, unknown> {
  const exports: Record<string, Record<string, string>> = {};
  for (const entry of entries) {
    // `types` first: TypeScript takes the first condition it knows.
    const conditions: Record<string, string> = { types: entry.types };
    for (const build of BUILDS) {
      for (const condition of build.conditions) {
        conditions[condition] = `./${build.dir}/${entry.out}.js`;
      }
    }
    conditions.default = `./${DEFAULT_BUILD}/${entry.out}.js`;
    exports[entry.subpath] = conditions;
  }
  const main = entries.find((e) => e.subpath === ".")!;
  const imports = deno.imports as Record<string, string>;
  // Any PGlite of the minor version line tested (0.x minors break).
  const pglite = `^${versionOf(imports["@electric-sql/pglite"]).replace(/\d+$/, "0")}`;
  return {
    name: "edgepool",
    version: deno.version,
    description: "A PostgreSQL client and connection pool for Node, Deno, Bun, Cloudflare " +
      "Workers and browsers, over pluggable transports (TCP, WebSocket, HTTP, PGlite)",
    keywords: ["postgres", "postgresql", "pool", "cloudflare-workers", "deno", "bun", "edge"],
    license: deno.license,
    type: "module",
    sideEffects: false,
    engines: { node: ">=20" },
    exports,
    main: `./${DEFAULT_BUILD}/${main.out}.js`,
    types: main.types,
    bin: { "edgepool-gateway": "./bin/edgepool-gateway.mjs" },
    // ws: the gateway on Node (its bin above, `edgepool/gateway`) serves WebSockets with it,
    // and `npx edgepool-gateway` installs no optional peer; small, no dependencies, and never
    // loaded by the client builds. PGlite (10 MB) only for the embedded database: optional.
    dependencies: { ws: `^${versionOf(imports.ws)}` },
    peerDependencies: { "@electric-sql/pglite": pglite },
    peerDependenciesMeta: { "@electric-sql/pglite": { optional: true } },
  };
}

/** The version deno.json pins: `npm:ws@8.23.0` → `8.23.0`, the one tested against. */
function versionOf(specifier: string): string {
  const match = /@(\d+\.\d+\.\d+)$/.exec(specifier);
  if (!match) throw new Error(`deno.json: no exact version in ${specifier}`);
  return match[1];
}

/** The run-time exports of each entry, which a stub must also have. */
async function exportNames(entries: Entry[]): Promise<Map<string, string[]>> {
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: entries.map((e) => ({ in: e.source, out: e.out })),
    outdir: "names",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "neutral",
    packages: "external",
    external: ["node:*", "cloudflare:sockets"],
    write: false,
    metafile: true,
    logLevel: "warning",
  });
  const names = new Map<string, string[]>();
  for (const output of Object.values(result.metafile.outputs)) {
    const entry = entries.find((e) => output.entryPoint === e.source.slice(2));
    if (entry) names.set(entry.subpath, output.exports);
  }
  return names;
}

function stubSource(entry: Entry, runtime: Runtime, names: string[]): string {
  const { needs, instead } = entry.only!;
  const build = BUILDS.find((b) => b.runtime === runtime)!.dir;
  const message = `edgepool: "edgepool${entry.subpath.slice(1)}" is not available in ` +
    `edgepool's ${build} build: it needs ${needs}; ${instead}`;
  return [
    `const message = ${JSON.stringify(message)};`,
    "function unavailable() {",
    "  const fail = () => {",
    "    throw new TypeError(message);",
    "  };",
    "  return new Proxy(function () {}, { apply: fail, construct: fail, get: fail, set: fail });",
    "}",
    ...names.map((_, i) => `const stub${i} = /* @__PURE__ */ unavailable();`),
    `export { ${names.map((name, i) => `stub${i} as ${name}`).join(", ")} };`,
  ].join("\n");
}

async function buildRuntime(
  runtime: Runtime,
  entries: Entry[],
  names: Map<string, string[]>,
  outdir: string,
): Promise<void> {
  const options = runtimeOptions(runtime);
  const stubs: esbuild.Plugin = {
    name: "edgepool-unavailable",
    setup(build) {
      build.onResolve({ filter: /^edgepool-unavailable:/ }, (args) => ({
        path: args.path.slice("edgepool-unavailable:".length),
        namespace: "edgepool-unavailable",
      }));
      build.onLoad({ filter: /.*/, namespace: "edgepool-unavailable" }, (args) => ({
        contents: stubSource(
          entries.find((e) => e.subpath === args.path)!,
          runtime,
          names.get(args.path) ?? [],
        ),
        loader: "js",
      }));
    },
  };
  const result = await esbuild.build({
    ...options,
    absWorkingDir: ROOT,
    entryPoints: entries.map((e) => {
      const available = e.only?.on.includes(runtime) ?? true;
      return { in: available ? e.source : `edgepool-unavailable:${e.subpath}`, out: e.out };
    }),
    outdir,
    splitting: true,
    chunkNames: "_chunks/[name]-[hash]",
    // Third-party packages are the user's to install (and to deduplicate).
    packages: "external",
    metafile: true,
    plugins: [...options.plugins!, stubs],
  });
  for (const [file, output] of Object.entries(result.metafile.outputs)) {
    const stray = output.imports
      .filter((i) => i.external && !ALLOWED_EXTERNALS[runtime].test(i.path))
      .map((i) => i.path);
    if (runtime === "workers" || runtime === "browser") {
      if (/\bDeno\./.test(await readFile(join(ROOT, file), "utf8"))) stray.push("Deno.");
    }
    if (stray.length > 0) {
      throw new Error(`${file} uses ${stray.join(", ")}: the ${runtime} build must not`);
    }
  }
}

/**
 * The declarations of every entry and what they import, by tsc. Declarations only, without type
 * checking (`--noCheck`): `deno check` checks the sources with Deno's own types, which tsc does
 * not have (the Deno namespace, `cloudflare:sockets`). The specifiers are then rewritten from
 * `.ts` to `.js` (what a `.d.ts` may name) and the examples from the JSR name to the npm one.
 */
async function buildDeclarations(entries: Entry[], outDir: string): Promise<void> {
  const tsc = join(ROOT, "node_modules", ".bin", "tsc");
  const args = [
    "--declaration",
    "--emitDeclarationOnly",
    "--noCheck",
    "--allowImportingTsExtensions",
    "--strict",
    "--target",
    "es2022",
    "--module",
    "preserve",
    "--moduleResolution",
    "bundler",
    "--lib",
    "es2022,dom,dom.iterable,esnext.disposable",
    "--types",
    "node",
    "--skipLibCheck",
    "--rootDir",
    ".",
    "--outDir",
    outDir,
    ...entries.map((e) => e.source),
  ];
  try {
    await run(tsc, args, { cwd: ROOT });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`tsc failed:\n${stdout ?? ""}${stderr ?? ""}`, { cause: error });
  }
  for (const file of await readdir(outDir, { recursive: true })) {
    if (!file.endsWith(".d.ts")) continue;
    const path = join(outDir, file);
    const text = await readFile(path, "utf8");
    await writeFile(
      path,
      text
        .replace(/((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']*)\.ts(["'])/g, "$1$2.js$3")
        .replaceAll("@edgepool/edgepool", "edgepool"),
    );
  }
  for (const entry of entries) {
    await readFile(join(outDir, "..", entry.types)).catch(() => {
      throw new Error(`tsc wrote no ${entry.types} for ${entry.source}`);
    });
  }
}

/** The gateway's command line as a Node program, `edgepool-gateway`. */
async function buildGatewayBin(outfile: string): Promise<void> {
  await esbuild.build({
    ...bundleOptions("gateway/cli.ts", "node"),
    absWorkingDir: ROOT,
    outfile,
    packages: "external",
    banner: { js: "#!/usr/bin/env node" },
  });
  await chmod(outfile, 0o755);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });
  const dir = values.out === undefined ? join(ROOT, "dist", "npm") : resolve(values.out);
  try {
    const manifest = await buildNpmPackage(dir);
    console.log(
      `${dir}: ${manifest.name}@${manifest.version}, ` +
        `${Object.keys(manifest.exports as object).length} subpaths ` +
        `(${BUILDS.map((b) => b.dir).join(", ")} builds and types/); npm install ${dir}`,
    );
  } finally {
    await esbuild.stop();
  }
}

if (import.meta.main) await main();
