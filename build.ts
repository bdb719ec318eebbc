/**
 * Builds edgepool's bundles with esbuild (first version; the npm package comes later):
 *
 * - `dist/edgepool.node.mjs`: for Node and Bun (node:net transport only).
 * - `dist/edgepool.workers.mjs`: for Cloudflare Workers (`cloudflare:sockets` only; no Node or
 *   Deno code), checked for stray runtime references.
 *
 * Run: `deno task build`.
 *
 * @module
 */

import * as esbuild from "esbuild";

/** The runtimes a bundle can target. */
export type BundleTarget = "node" | "deno" | "workers";

/**
 * An esbuild plugin that keeps only `target`'s TCP transport: the others, reached through
 * `transports/auto.ts`'s lazy imports, become empty modules. A Workers bundle also leaves out
 * the embedded database (PGlite: 10 MB of WebAssembly, and no filesystem there): `createPool()`
 * without a URL explains that instead.
 */
export function transportPlugin(target: BundleTarget): esbuild.Plugin {
  return {
    name: "edgepool-transports",
    setup(build) {
      build.onResolve({ filter: /^\.\/(node|deno|workers)\.ts$/ }, (args) => {
        if (!/[\\/]transports[\\/]auto\.ts$/.test(args.importer)) return undefined;
        const runtime = args.path.slice(2, -3);
        if (runtime === target) return undefined;
        return { path: runtime, namespace: "edgepool-omitted-transport" };
      });
      build.onLoad({ filter: /.*/, namespace: "edgepool-omitted-transport" }, () => ({
        contents: "export {};",
        loader: "js",
      }));
      if (target !== "workers") return;
      build.onResolve({ filter: /[\\/]transports[\\/]pglite\.ts$/ }, () => ({
        path: "pglite",
        namespace: "edgepool-omitted-embedded",
      }));
      build.onLoad({ filter: /.*/, namespace: "edgepool-omitted-embedded" }, () => ({
        contents: `export function pgliteTransport() {
  throw new TypeError("edgepool: the embedded database (PGlite) is not part of the Workers " +
    "bundle; give createPool() a postgres:// URL");
}`,
        loader: "js",
      }));
    },
  };
}

/** esbuild options shared by every bundle of `entry` for `target`. */
export function bundleOptions(entry: string, target: BundleTarget): esbuild.BuildOptions {
  return {
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: target === "node" ? "node" : "neutral",
    target: target === "node" ? "node20" : "es2022",
    // PGlite (10 MB of WebAssembly) is loaded lazily by the embedded transport and never bundled.
    external: [
      "@electric-sql/pglite",
      ...(target === "workers" ? ["cloudflare:sockets"] : ["node:*"]),
    ],
    plugins: [transportPlugin(target)],
    logLevel: "warning",
  };
}

async function main(): Promise<void> {
  const outputs: [BundleTarget, string][] = [
    ["node", "dist/edgepool.node.mjs"],
    ["workers", "dist/edgepool.workers.mjs"],
  ];
  for (const [target, outfile] of outputs) {
    await esbuild.build({ ...bundleOptions("mod.ts", target), outfile, minify: true });
    const text = await Deno.readTextFile(outfile);
    if (target === "workers") {
      const stray = [/\bnode:/, /\bDeno\./].filter((re) => re.test(text));
      if (stray.length > 0) {
        throw new Error(`${outfile} references ${stray.join(", ")}: Workers bundles must not`);
      }
    }
    console.log(`${outfile}: ${text.length} bytes minified`);
  }
  await esbuild.stop();
}

if (import.meta.main) await main();
