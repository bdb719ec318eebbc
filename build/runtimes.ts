/**
 * How edgepool's source is bundled for each runtime: the table of modules a runtime's bundle
 * takes in place of others ({@link RUNTIME_MODULES}), and the esbuild options built from it.
 * build.ts builds the npm package with these; the tests and benches bundle with them too (Node
 * bundles of the tests, Workers for workerd), so they run what the package ships.
 *
 * - The table names files by their path from the repository root. A swap applies to the module
 *   that resolves to exactly that file (never to one that happens to share its name), and a
 *   file the table names that does not exist fails the build instead of being skipped.
 * - A user's own Worker bundled against the installed package, as Wrangler does it, is
 *   {@link wranglerOptions}: the tests and the bundle-size bench share it.
 *
 * @module
 */

import type * as esbuild from "esbuild";
import { existsSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The runtimes edgepool is bundled for. `node` is also Bun's, and any with node:net. */
export type Runtime = "node" | "deno" | "workers" | "browser";

/** What a runtime's bundle takes in place of a module. */
export interface Swap {
  /** The module replaced: its path from the repository root. */
  replaces: string;
  /**
   * Only where this module (path from the root) imports it; elsewhere the real one stays.
   * Without it, wherever it is imported. An entry point is never replaced.
   */
  in?: string;
  /** Another module of the repository (path from the root), or the JavaScript of a stand-in. */
  by: { module: string } | { source: string };
}

const NO_TCP_IN_BROWSERS = "edgepool: browsers cannot open TCP connections, so edgepool's " +
  "browser build has no TCP transport; pass one with the `transport` option: " +
  'websocketTransport({ proxy }) from "edgepool" or httpTransport({ endpoint }) from ' +
  "\"edgepool/transports/http\", through edgepool's gateway or Neon's proxy";

/**
 * A module without exports: `transports/auto.ts` finds its transport `undefined` and says that
 * this bundle has none for the runtime it runs on.
 */
const ABSENT = { source: "export {};" };

/** A module that throws when loaded: the browser build has no TCP transport at all. */
const NO_TCP = { source: `throw new TypeError(${JSON.stringify(NO_TCP_IN_BROWSERS)});` };

/**
 * `pgliteTransport()` that explains why the embedded database (PGlite: 10 MB of WebAssembly,
 * which Workers cannot run) is not in `runtime`'s bundle, for `createPool()` without a URL.
 */
function noEmbedded(runtime: "workers" | "browser"): { source: string } {
  const message = "edgepool: the embedded database (PGlite) is not part of the " +
    (runtime === "workers"
      ? "Workers bundle; give createPool() a postgres:// URL"
      : "browser bundle; give createPool() a URL and a WebSocket or HTTP transport, or " +
        'pass pgliteTransport() from "edgepool/transports/pglite" as the transport');
  return {
    source: "export function pgliteTransport() {\n" +
      `  throw new TypeError(${JSON.stringify(message)});\n}`,
  };
}

const AUTO = "transports/auto.ts";
const GATEWAY = "gateway/mod.ts";

/**
 * The modules each runtime's bundle takes in place of others.
 *
 * - `transports/auto.ts` loads the TCP transport of the runtime it finds, lazily; a bundle
 *   keeps only its own runtime's (in a browser, none: loading one throws).
 * - Workers take `transports/_workers_auto.ts` for auto.ts: the TCP transport there is
 *   `cloudflare:sockets`, known when the bundle is built, so a Worker that only connects
 *   carries no runtime detection or lazy import.
 * - The gateway (`gateway/mod.ts`) loads the server adapter of the runtime it finds, lazily, as
 *   auto.ts does the transport: a Node or Deno bundle keeps only its own.
 * - Workers and browsers leave out the embedded database that `createPool()` without a URL
 *   opens; the browser build's own `edgepool/transports/pglite` entry point stays the real one.
 * - Workers take `src/pool/_by_name_workers.ts` for the pool classes `createPool` makes by
 *   name: the NullPool whose connections belong to their requests, and no other class; and
 *   `src/pool/_listener_workers.ts` for `pool.listen()`'s connection, which cannot outlive a
 *   request there.
 * - Workers hash MD5 passwords with workerd's `crypto.subtle.digest("MD5")`
 *   (`src/_md5_workers.ts`) instead of `src/md5.ts`'s portable MD5.
 */
export const RUNTIME_MODULES: Readonly<Record<Runtime, readonly Swap[]>> = {
  node: [
    { replaces: "transports/deno.ts", in: AUTO, by: ABSENT },
    { replaces: "transports/workers.ts", in: AUTO, by: ABSENT },
    { replaces: "gateway/deno.ts", in: GATEWAY, by: ABSENT },
  ],
  deno: [
    { replaces: "transports/node.ts", in: AUTO, by: ABSENT },
    { replaces: "transports/workers.ts", in: AUTO, by: ABSENT },
    { replaces: "gateway/node.ts", in: GATEWAY, by: ABSENT },
  ],
  workers: [
    { replaces: AUTO, by: { module: "transports/_workers_auto.ts" } },
    { replaces: "transports/pglite.ts", by: noEmbedded("workers") },
    { replaces: "src/pool/_by_name.ts", by: { module: "src/pool/_by_name_workers.ts" } },
    { replaces: "src/pool/_listener.ts", by: { module: "src/pool/_listener_workers.ts" } },
    { replaces: "src/md5.ts", in: "src/_auth.ts", by: { module: "src/_md5_workers.ts" } },
  ],
  browser: [
    { replaces: "transports/node.ts", in: AUTO, by: NO_TCP },
    { replaces: "transports/deno.ts", in: AUTO, by: NO_TCP },
    { replaces: "transports/workers.ts", in: AUTO, by: NO_TCP },
    { replaces: "transports/pglite.ts", by: noEmbedded("browser") },
  ],
};

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

const STAND_IN = "edgepool-stand-in";

/**
 * The esbuild plugin that applies {@link RUNTIME_MODULES} for `runtime`.
 *
 * @throws {Error} When building, if the table names a file that does not exist.
 */
export function runtimeModules(runtime: Runtime): esbuild.Plugin {
  const swaps = RUNTIME_MODULES[runtime];
  return {
    name: "edgepool-runtime-modules",
    setup(build) {
      const named = swaps.flatMap((s) => [s.replaces, s.in, "module" in s.by ? s.by.module : null]);
      const missing = named.filter((f): f is string => !!f && !existsSync(join(ROOT, f)));
      if (missing.length > 0) {
        throw new Error(`build/runtimes.ts names files that do not exist: ${missing.join(", ")}`);
      }
      // The source imports with relative paths and explicit extensions (Deno's rule), so the
      // path an import resolves to is known without asking esbuild.
      build.onResolve({ filter: /^\.\.?\// }, (args) => {
        if (args.kind === "entry-point") return undefined;
        const path = resolve(args.resolveDir, args.path);
        const swap = swaps.find((s) =>
          join(ROOT, s.replaces) === path &&
          (s.in === undefined || join(ROOT, s.in) === args.importer)
        );
        if (swap === undefined) return undefined;
        if ("module" in swap.by) return { path: join(ROOT, swap.by.module) };
        // Not ending in `.ts`, so that no plugin takes it for the file it stands in for.
        return { path: `${swap.replaces}?${runtime}`, namespace: STAND_IN, pluginData: swap.by };
      });
      build.onLoad({ filter: /.*/, namespace: STAND_IN }, (args) => ({
        contents: (args.pluginData as { source: string }).source,
        loader: "js",
      }));
    },
  };
}

/** The imports each runtime's bundle leaves to the runtime (besides the user's packages). */
const EXTERNAL: Record<Runtime, string[]> = {
  node: ["node:*"],
  deno: ["node:*"],
  workers: ["cloudflare:sockets"],
  // Nothing else: a stray Node import fails the browser build.
  browser: [],
};

/**
 * esbuild options that bundle edgepool's source for `runtime`, without entry points and
 * output: one ESM bundle with {@link RUNTIME_MODULES} applied. PGlite (10 MB of WebAssembly)
 * stays outside: the embedded transport loads it lazily.
 */
export function runtimeOptions(runtime: Runtime): esbuild.BuildOptions {
  return {
    bundle: true,
    format: "esm",
    platform: runtime === "node" ? "node" : runtime === "browser" ? "browser" : "neutral",
    target: runtime === "node" ? "node20" : "es2022",
    external: ["@electric-sql/pglite", ...EXTERNAL[runtime]],
    plugins: [runtimeModules(runtime)],
    logLevel: "warning",
  };
}

/** {@link runtimeOptions} with `entry` (an absolute path, or one from the working directory). */
export function bundleOptions(entry: string, runtime: Runtime): esbuild.BuildOptions {
  return { entryPoints: [entry], ...runtimeOptions(runtime) };
}

/** The export conditions Wrangler bundles a Worker with. */
export const WORKERS_CONDITIONS: readonly string[] = ["workerd", "worker", "browser"];

/**
 * What a Worker's bundle leaves to workerd: `cloudflare:sockets` and the Node built-ins
 * (`node:*` and the bare names such as `net`, most of them behind the `nodejs_compat` flag).
 */
export const WORKERS_EXTERNALS: readonly string[] = [
  "cloudflare:sockets",
  "node:*",
  ...builtinModules.filter((m) => !m.startsWith("_")),
];

/**
 * esbuild options that bundle a user's Worker `entry` into one ESM file as Wrangler does,
 * with its packages (`edgepool` among them) resolved from `nodeModules` under `conditions`
 * (Wrangler's by default).
 */
export function wranglerOptions(
  entry: string,
  nodeModules: string,
  conditions: readonly string[] = WORKERS_CONDITIONS,
): esbuild.BuildOptions {
  return {
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    // Wrangler's target; it also lowers `await using`, which miniflare's module parser rejects.
    target: "es2022",
    conditions: [...conditions],
    mainFields: ["module", "main"],
    nodePaths: [nodeModules],
    external: [...WORKERS_EXTERNALS],
    logLevel: "warning",
  };
}
