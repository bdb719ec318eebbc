/**
 * What a Cloudflare Worker weighs with each driver: the sample Workers of this folder (connect
 * with a URL from `env`, one parameterized query, JSON out, close through `ctx.waitUntil`),
 * each bundled the way Wrangler does for workerd and measured minified and gzipped (level 9).
 * `deno task build` (build.ts) prints the table and writes it to bench/bundle-sizes.md.
 *
 * - edgepool's Worker is bundled against the built npm package (`dist/npm`, resolved as the
 *   package `edgepool` with the Workers conditions), which is what `npm install edgepool` gives.
 * - The peers come from node_modules: pg with pg-cloudflare, postgres.js, Neon's driver.
 * - Not in the bundles: `cloudflare:sockets`, and every Node built-in (`node:*` and the bare
 *   names such as `net`, `events`), which workerd provides (most of them behind the
 *   `nodejs_compat` flag). The table lists what each bundle imports from the runtime.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = join(HERE, "..", "..");

/** A sample Worker: its file here and the packages it measures. */
export interface Sample {
  /** `edgepool`, `pg`, `postgres`, `neon`: the file is `bench/bundle/<name>.ts`. */
  name: string;
  /** The npm packages it bundles (their versions are read from node_modules). */
  packages: string[];
}

/** The samples, edgepool first. */
export const SAMPLES: Sample[] = [
  { name: "edgepool", packages: ["edgepool"] },
  { name: "pg", packages: ["pg", "pg-cloudflare"] },
  { name: "postgres", packages: ["postgres"] },
  { name: "neon", packages: ["@neondatabase/serverless"] },
];

/** The conditions Wrangler bundles a Worker with. */
export const WORKERS_CONDITIONS = ["workerd", "worker", "browser"];

/** Kept out of every bundle: what workerd provides. */
export const WORKERS_EXTERNALS = [
  "cloudflare:sockets",
  "node:*",
  ...builtinModules.filter((m) => !m.startsWith("_")),
];

/** A sample Worker's bundle. */
export interface SampleBundle {
  /** The minified ESM. */
  code: string;
  /** What it imports from the runtime (`cloudflare:sockets`, `node:events`...), sorted. */
  runtimeImports: string[];
}

/** One measured sample. */
export interface SampleSize extends SampleBundle {
  sample: Sample;
  /** `name@version` of each package, as bundled. */
  versions: string[];
  /** Bytes, minified. */
  minified: number;
  /** Bytes, minified then gzipped at level 9. */
  gzipped: number;
}

/**
 * Bundles a sample Worker for workerd (minified ESM), edgepool's from the npm package in
 * `npmDir`.
 */
export async function bundleSample(name: string, npmDir: string): Promise<SampleBundle> {
  // `edgepool` resolves from a scratch node_modules that holds only the built package.
  const modules = await mkdtemp(join(tmpdir(), "edgepool-bundle-"));
  try {
    await symlink(npmDir, join(modules, "edgepool"), "dir");
    const fromPackage: esbuild.Plugin = {
      name: "edgepool-from-npm-package",
      setup(build) {
        build.onResolve({ filter: /^\.\.\/\.\.\/mod\.ts$/ }, (args) =>
          build.resolve("edgepool", {
            kind: args.kind,
            resolveDir: modules,
            importer: args.importer,
          }));
      },
    };
    const result = await esbuild.build({
      absWorkingDir: ROOT,
      entryPoints: [join(HERE, `${name}.ts`)],
      bundle: true,
      minify: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      conditions: WORKERS_CONDITIONS,
      mainFields: ["module", "main"],
      nodePaths: [modules],
      external: WORKERS_EXTERNALS,
      plugins: name === "edgepool" ? [fromPackage] : [],
      write: false,
      metafile: true,
      logLevel: "warning",
    });
    const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports);
    return {
      code: result.outputFiles[0].text,
      runtimeImports: [...new Set(imports.filter((i) => i.external).map((i) => i.path))].sort(),
    };
  } finally {
    await rm(modules, { recursive: true, force: true });
  }
}

/** Bundles and measures every sample. */
export async function measureSamples(npmDir: string): Promise<SampleSize[]> {
  const sizes: SampleSize[] = [];
  for (const sample of SAMPLES) {
    const bundle = await bundleSample(sample.name, npmDir);
    const bytes = new TextEncoder().encode(bundle.code);
    const versions = await Promise.all(sample.packages.map(async (name) => {
      const dir = name === "edgepool" ? npmDir : join(ROOT, "node_modules", name);
      const { version } = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
      return `${name}@${version}`;
    }));
    sizes.push({
      ...bundle,
      sample,
      versions,
      minified: bytes.length,
      gzipped: gzipSync(bytes, { level: 9 }).length,
    });
  }
  return sizes;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The sizes as a markdown table, and bench/bundle-sizes.md around it. */
export function sizeReport(sizes: SampleSize[]): { table: string; markdown: string } {
  const base = sizes.find((s) => s.sample.name === "edgepool");
  const rows = sizes.map((s) => {
    const ratio = base ? `${(s.gzipped / base.gzipped).toFixed(1)}×` : "";
    const runtime = s.runtimeImports.map((i) => `\`${i}\``).join(" ");
    return `| ${s.sample.name}.ts | ${s.versions.join(" ")} | ${kib(s.minified)} | ` +
      `${kib(s.gzipped)} | ${ratio} | ${runtime} |`;
  });
  const table = [
    "| Worker | Packages | Minified | Gzipped | Gzipped vs edgepool | Imports from the runtime |",
    "| --- | --- | ---: | ---: | ---: | --- |",
    ...rows,
  ].join("\n");
  const markdown = [
    "# Worker bundle sizes",
    "",
    "Written by `deno task build` (bench/bundle/sizes.ts). Each sample Worker in bench/bundle/",
    "connects with a URL from `env`, runs `select $1::int + 1` with a parameter, returns JSON",
    "and closes through `ctx.waitUntil`. Each is bundled for workerd as Wrangler does: esbuild",
    `${esbuild.version}, \`minify\`, ESM, conditions \`${
      WORKERS_CONDITIONS.join(", ")
    }\`; gzip level 9.`,
    "",
    "edgepool's Worker is bundled against the built npm package (`dist/npm`, its `workerd`",
    "build), as a user gets it. Not in any bundle: `cloudflare:sockets` and the Node built-ins",
    "(`node:*` and bare names such as `net`), which workerd provides (most behind the",
    "`nodejs_compat` flag); the last column lists what each bundle imports from the runtime",
    "(`pg-native` is pg's optional native binding, required inside a `try`: absent on Workers,",
    "where pg goes on without it).",
    "",
    table,
    "",
  ].join("\n");
  return { table, markdown };
}
