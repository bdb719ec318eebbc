/**
 * Builds the npm package `edgepool` with esbuild and tsc, into `dist/npm/`
 * (`npm install ./dist/npm`), then measures what a Cloudflare Worker gets from it next to the
 * peers (bench/bundle/sizes.ts) and writes `bench/bundle-sizes.md`.
 *
 * - Each entry of deno.json's `exports` is a subpath of the package (`.` is `edgepool`,
 *   `./transports/http` is `edgepool/transports/http`...), so the two lists cannot drift.
 * - One ESM build per runtime, with code splitting so that the subpaths share one copy of each
 *   class: `node/` (Node and Bun: `node`, `bun` and `default` conditions), `deno/`, `workerd/`
 *   (Cloudflare Workers: `cloudflare:sockets`, no PGlite) and `browser/` (no TCP at all:
 *   WebSocket and HTTP only). See {@link RUNS_ON} for the subpaths a runtime cannot use.
 * - One declaration tree, `types/`, for every condition (tsc, declarations only).
 * - `bin/edgepool-gateway.mjs`: the gateway's command line, bundled for Node.
 * - `@electric-sql/pglite` and `ws` stay outside the bundles: PGlite an optional peer
 *   dependency (10 MB, for the embedded database only), ws a dependency (the gateway's bin
 *   needs it on Node, and `npx edgepool-gateway` installs no optional peers).
 *
 * Run: `deno task build`.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { execFile } from "node:child_process";
import { chmod, copyFile, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { measureSamples, sizeReport } from "./bench/bundle/sizes.ts";

/** The runtimes a bundle can target. */
export type BundleTarget = "node" | "deno" | "workers" | "browser";

const ROOT = fileURLToPath(new URL(".", import.meta.url));

const NO_TCP_IN_BROWSERS = "edgepool: browsers cannot open TCP connections, so edgepool's " +
  "browser build has no TCP transport; pass one with the `transport` option: " +
  'websocketTransport({ proxy }) from "edgepool" or httpTransport({ endpoint }) from ' +
  "\"edgepool/transports/http\", through edgepool's gateway or Neon's proxy";

/**
 * An esbuild plugin that keeps only `target`'s TCP transport: the others, reached through
 * `transports/auto.ts`'s lazy imports, become empty modules (in a browser build, a module that
 * throws: there is no TCP there). A Workers bundle takes `transports/_workers_auto.ts` for
 * auto.ts, which binds the Workers transport directly: no runtime detection or lazy import in a
 * Worker that only connects. Workers and browser bundles also leave out the embedded
 * database that `createPool()` without a URL opens (PGlite: 10 MB of WebAssembly, which
 * Workers cannot run): `createPool()` without a URL explains that instead.
 */
export function transportPlugin(target: BundleTarget): esbuild.Plugin {
  return {
    name: "edgepool-transports",
    setup(build) {
      if (target === "workers") {
        build.onResolve({ filter: /(^|\/)auto\.ts$/ }, (args) => {
          const path = join(args.resolveDir, args.path);
          if (!/[\\/]transports[\\/]auto\.ts$/.test(path)) return undefined;
          return { path: join(path, "..", "_workers_auto.ts") };
        });
      }
      build.onResolve({ filter: /^\.\/(node|deno|workers)\.ts$/ }, (args) => {
        if (!/[\\/]transports[\\/]auto\.ts$/.test(args.importer)) return undefined;
        const runtime = args.path.slice(2, -3);
        if (runtime === target) return undefined;
        return { path: runtime, namespace: "edgepool-omitted-transport" };
      });
      build.onLoad({ filter: /.*/, namespace: "edgepool-omitted-transport" }, () => ({
        contents: target === "browser"
          ? `throw new TypeError(${JSON.stringify(NO_TCP_IN_BROWSERS)});`
          : "export {};",
        loader: "js",
      }));
      if (target !== "workers" && target !== "browser") return;
      const embedded = "edgepool: the embedded database (PGlite) is not part of the " +
        (target === "workers"
          ? "Workers bundle; give createPool() a postgres:// URL"
          : "browser bundle; give createPool() a URL and a WebSocket or HTTP transport, or " +
            'pass pgliteTransport() from "edgepool/transports/pglite" as the transport');
      build.onResolve({ filter: /[\\/]transports[\\/]pglite\.ts$/ }, (args) => {
        // The browser build's own `edgepool/transports/pglite` entry is the real one.
        if (args.kind === "entry-point") return undefined;
        return { path: "pglite", namespace: "edgepool-omitted-embedded" };
      });
      build.onLoad({ filter: /.*/, namespace: "edgepool-omitted-embedded" }, () => ({
        contents: "export function pgliteTransport() {\n" +
          `  throw new TypeError(${JSON.stringify(embedded)});\n}`,
        loader: "js",
      }));
    },
  };
}

/** esbuild options for `target`, without the entry points and the output. */
function targetOptions(target: BundleTarget): esbuild.BuildOptions {
  const external: Record<BundleTarget, string[]> = {
    node: ["node:*"],
    deno: ["node:*"],
    workers: ["cloudflare:sockets"],
    // Nothing else: a stray Node import fails the browser build.
    browser: [],
  };
  return {
    bundle: true,
    format: "esm",
    platform: target === "node" ? "node" : target === "browser" ? "browser" : "neutral",
    target: target === "node" ? "node20" : "es2022",
    // PGlite (10 MB of WebAssembly) is loaded lazily by the embedded transport, never bundled.
    external: ["@electric-sql/pglite", ...external[target]],
    plugins: [transportPlugin(target)],
    logLevel: "warning",
  };
}

/** esbuild options shared by every bundle of `entry` for `target`. */
export function bundleOptions(entry: string, target: BundleTarget): esbuild.BuildOptions {
  return { entryPoints: [entry], ...targetOptions(target) };
}

// ---------------------------------------------------------------------------------------------
// The npm package

/** The directory of each build in the package, and the export conditions that pick it. */
const BUILDS: { target: BundleTarget; dir: string; conditions: string[] }[] = [
  { target: "workers", dir: "workerd", conditions: ["workerd"] },
  { target: "deno", dir: "deno", conditions: ["deno"] },
  { target: "node", dir: "node", conditions: ["bun", "node"] },
  { target: "browser", dir: "browser", conditions: ["browser"] },
];

/** The build that the `default` condition (and `main`) gets: any runtime with node:net. */
const DEFAULT_BUILD = "node";

/**
 * The subpaths that cannot work on some runtimes: the runtimes they run on, what they need, and
 * what to do instead. Elsewhere the subpath is a stub with the same exports, each throwing a
 * TypeError that says so when used (so code that imports it on every runtime and picks one at
 * run time still loads). A subpath not listed is built for every runtime.
 */
const RUNS_ON: Record<string, { on: BundleTarget[]; needs: string; instead: string }> = {
  "./transports/deno": {
    on: ["deno"],
    needs: "Deno's TCP API",
    instead: "connect() and createPool() pick this runtime's TCP transport by themselves",
  },
  "./transports/node": {
    on: ["node", "deno"],
    needs: "Node's net and tls modules",
    instead: "connect() and createPool() pick this runtime's TCP transport by themselves",
  },
  "./transports/workers": {
    on: ["workers"],
    needs: "Cloudflare's sockets API",
    instead: "connect() and createPool() pick this runtime's TCP transport by themselves",
  },
  "./transports/pglite": {
    on: ["node", "deno", "browser"],
    needs: "PGlite, which does not run on Workers",
    instead: "give createPool() a postgres:// URL",
  },
  "./gateway": {
    on: ["node", "deno"],
    needs: "a server that listens on a port (Deno, Node or Bun)",
    instead: "run it with `npx edgepool-gateway` and reach it with httpTransport or " +
      "websocketTransport",
  },
};

/** The external imports each build may keep; anything else is a runtime leaking in. */
const ALLOWED_EXTERNALS: Record<BundleTarget, RegExp> = {
  node: /^(node:|ws$|@electric-sql\/pglite$)/,
  deno: /^(node:|ws$|@electric-sql\/pglite$)/,
  workers: /^cloudflare:sockets$/,
  browser: /^@electric-sql\/pglite$/,
};

/** One entry of deno.json's `exports`. */
interface Entry {
  /** `"."`, `"./transports/http"`... */
  subpath: string;
  /** The source, `"./mod.ts"`. */
  source: string;
  /** Its output name without extension in each build: `"index"`, `"transports/http"`. */
  out: string;
  /** Its declaration file in the package: `"./types/mod.d.ts"`. */
  types: string;
}

/** What {@link buildNpmPackage} made. */
export interface NpmPackage {
  /** The package directory. */
  dir: string;
  /** Its package.json. */
  manifest: Record<string, unknown>;
}

const run = promisify(execFile);

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, "utf8"));
}

/**
 * Builds the npm package into `dir` (emptied first): the four runtime builds, the
 * declarations, the gateway's bin, package.json, README.md and LICENSE.
 */
export async function buildNpmPackage(dir: string): Promise<NpmPackage> {
  const deno = await readJson(join(ROOT, "deno.json"));
  const entries = Object.entries(deno.exports as Record<string, string>).map(
    ([subpath, source]): Entry => ({
      subpath,
      source,
      out: subpath === "." ? "index" : subpath.slice(2),
      types: `./types/${source.slice(2).replace(/\.ts$/, ".d.ts")}`,
    }),
  );
  await rm(dir, { recursive: true, force: true });
  const names = await exportNames(entries);
  for (const build of BUILDS) {
    await buildRuntime(build.target, entries, names, join(dir, build.dir));
  }
  await buildDeclarations(entries, join(dir, "types"));
  await buildGatewayBin(join(dir, "bin", "edgepool-gateway.mjs"));
  const manifest = packageJson(deno, entries);
  await writeFile(join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
  await copyFile(join(ROOT, "README.md"), join(dir, "README.md"));
  await copyFile(join(ROOT, "LICENSE"), join(dir, "LICENSE"));
  return { dir, manifest };
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

function stubSource(entry: Entry, target: BundleTarget, names: string[]): string {
  const { needs, instead } = RUNS_ON[entry.subpath];
  const build = BUILDS.find((b) => b.target === target)!.dir;
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
  target: BundleTarget,
  entries: Entry[],
  names: Map<string, string[]>,
  outdir: string,
): Promise<void> {
  const options = targetOptions(target);
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
          target,
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
      const available = RUNS_ON[e.subpath]?.on.includes(target) ?? true;
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
      .filter((i) => i.external && !ALLOWED_EXTERNALS[target].test(i.path))
      .map((i) => i.path);
    if (target === "workers" || target === "browser") {
      if (/\bDeno\./.test(await readFile(join(ROOT, file), "utf8"))) stray.push("Deno.");
    }
    if (stray.length > 0) {
      throw new Error(`${file} uses ${stray.join(", ")}: the ${target} build must not`);
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
  const dir = join(ROOT, "dist", "npm");
  const { manifest } = await buildNpmPackage(dir);
  console.log(
    `dist/npm: ${manifest.name}@${manifest.version}, ` +
      `${Object.keys(manifest.exports as object).length} subpaths ` +
      `(${BUILDS.map((b) => b.dir).join(", ")} builds and types/); npm install ./dist/npm`,
  );
  const sizes = await measureSamples(dir);
  await esbuild.stop();
  const report = sizeReport(sizes);
  const file = join(ROOT, "bench", "bundle-sizes.md");
  await writeFile(file, report.markdown);
  // As `deno fmt` lays the table out, so that the repository stays fmt-clean.
  await run(Deno.execPath(), ["fmt", "--quiet", file]);
  console.log(`\n${report.table}\nbench/bundle-sizes.md written`);
}

if (import.meta.main) await main();
