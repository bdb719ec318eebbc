/**
 * What a Cloudflare Worker weighs with each driver: examples/cloudflare-worker (the Worker
 * edgepool's users write: `createPool` in module scope, `pool.scope` and a query per request)
 * and the same Worker written with each peer (this folder: pg's `Pool`, postgres.js,
 * Neon's `Pool`), each bundled for workerd as Wrangler does and measured minified and gzipped
 * (level 9). Prints the table and writes bench/bundle-sizes.md.
 *
 * - edgepool's Worker is bundled against the npm package, built by build.ts into a scratch
 *   directory and resolved as the package `edgepool` with the Workers conditions: what
 *   `npm install edgepool` gives.
 * - The peers come from node_modules: pg with pg-cloudflare, postgres.js, Neon's driver.
 * - Not in the bundles: `cloudflare:sockets`, and every Node built-in (`node:*` and the bare
 *   names such as `net`, `events`), which workerd provides (most of them behind the
 *   `nodejs_compat` flag). The table lists what each bundle imports from the runtime.
 *
 * Run: `deno task bench:bundle`.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import {
  ROOT,
  runtimeOptions,
  WORKERS_CONDITIONS,
  WORKERS_EXTERNALS,
  wranglerOptions,
} from "../../build/runtimes.ts";

/** A Worker measured: its file and the packages it bundles. */
interface Sample {
  /** Its file, from the repository root. */
  file: string;
  /** The npm packages it bundles (their versions are read from their package.json). */
  packages: string[];
}

/** The Workers, edgepool's first. */
const SAMPLES: Sample[] = [
  { file: "examples/cloudflare-worker/src/index.ts", packages: ["edgepool"] },
  { file: "bench/bundle/edgepool_connect.ts", packages: ["edgepool"] },
  { file: "bench/bundle/pg.ts", packages: ["pg", "pg-cloudflare"] },
  { file: "bench/bundle/postgres.ts", packages: ["postgres"] },
  { file: "bench/bundle/neon.ts", packages: ["@neondatabase/serverless"] },
];

/** One measured Worker. */
interface Size {
  sample: Sample;
  /** `name@version` of each package, as bundled. */
  versions: string[];
  /** Bytes, minified. */
  minified: number;
  /** Bytes, minified then gzipped at level 9. */
  gzipped: number;
  /** What it imports from the runtime (`cloudflare:sockets`, `node:events`...), sorted. */
  runtimeImports: string[];
}

const run = promisify(execFile);

/** Bundles and measures every sample, with `edgepool` resolved from `modules`. */
async function measure(modules: string): Promise<Size[]> {
  const sizes: Size[] = [];
  for (const sample of SAMPLES) {
    const result = await esbuild.build({
      ...wranglerOptions(join(ROOT, sample.file), modules),
      // bench/bundle/edgepool_connect.ts names the package as JSR does, so that deno check
      // resolves it (to mod.ts); bundled here, it is the npm package.
      alias: { "@edgepool/edgepool": "edgepool" },
      absWorkingDir: ROOT,
      minify: true,
      write: false,
      metafile: true,
    });
    const bytes = result.outputFiles[0].contents;
    const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports);
    const versions = await Promise.all(sample.packages.map(async (name) => {
      const dir = name === "edgepool" ? join(modules, name) : join(ROOT, "node_modules", name);
      const { version } = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
      return `${name}@${version}`;
    }));
    sizes.push({
      sample,
      versions,
      minified: bytes.length,
      gzipped: gzipSync(bytes, { level: 9 }).length,
      runtimeImports: [...new Set(imports.filter((i) => i.external).map((i) => i.path))].sort(),
    });
  }
  return sizes;
}

/** One of edgepool's source files in the Worker's bundle. */
interface Part {
  /** Its path from the repository root. */
  file: string;
  /** Bytes it takes in the minified bundle. */
  bytes: number;
}

/**
 * Where the bytes of edgepool's Worker go: the same Worker bundled from the source (build/
 * runtimes.ts's Workers table, `edgepool` resolved to mod.ts) instead of the package, so that
 * esbuild's metafile names each source file; its bytes in the minified output, largest first.
 */
async function breakdown(): Promise<Part[]> {
  const options = runtimeOptions("workers");
  const source: esbuild.Plugin = {
    name: "edgepool-source",
    setup(build) {
      build.onResolve({ filter: /^edgepool$/ }, () => ({ path: join(ROOT, "mod.ts") }));
    },
  };
  const result = await esbuild.build({
    ...options,
    entryPoints: [join(ROOT, SAMPLES[0].file)],
    absWorkingDir: ROOT,
    external: [...WORKERS_EXTERNALS],
    plugins: [source, ...options.plugins!],
    minify: true,
    write: false,
    metafile: true,
  });
  const [output] = Object.values(result.metafile.outputs);
  return Object.entries(output.inputs)
    .map(([file, input]) => ({ file, bytes: input.bytesInOutput }))
    .filter((p) => p.bytes > 0)
    .sort((a, b) => b.bytes - a.bytes || a.file.localeCompare(b.file));
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The sizes as a markdown table, and bench/bundle-sizes.md around it. */
function report(sizes: Size[], parts: Part[]): { table: string; markdown: string } {
  const base = sizes[0];
  const rows = sizes.map((s) => {
    const runtime = s.runtimeImports.map((i) => `\`${i}\``).join(" ");
    return `| ${s.sample.file} | ${s.versions.join(" ")} | ${kib(s.minified)} | ` +
      `${kib(s.gzipped)} | ${(s.gzipped / base.gzipped).toFixed(1)}× | ${runtime} |`;
  });
  const table = [
    "| Worker | Packages | Minified | Gzipped | Gzipped vs edgepool | Imports from the runtime |",
    "| --- | --- | ---: | ---: | ---: | --- |",
    ...rows,
  ].join("\n");
  const total = parts.reduce((sum, p) => sum + p.bytes, 0);
  const group = (prefix: string) =>
    parts.filter((p) => p.file.startsWith(prefix)).reduce((sum, p) => sum + p.bytes, 0);
  const perFile = [
    "| File | Minified bytes | Share |",
    "| --- | ---: | ---: |",
    ...parts.map((p) => `| ${p.file} | ${p.bytes} | ${(100 * p.bytes / total).toFixed(1)} % |`),
    `| **all** (src/pool/: ${group("src/pool/")}, the rest of src/: ${
      group("src/") - group("src/pool/")
    }, transports/: ${group("transports/")}) | ${total} | 100 % |`,
  ].join("\n");
  const markdown = [
    "# Worker bundle sizes",
    "",
    "Written by `deno task bench:bundle` (bench/bundle/sizes.ts). The Worker is",
    "examples/cloudflare-worker, as edgepool's users write it: `createPool(env.DATABASE_URL)` in",
    "module scope, and per request `pool.scope(ctx, ...)` (a pool of the request's own, closed",
    "through `ctx.waitUntil`) running `select $1::int as id, $1::int * $1::int as square` and",
    "answering JSON. bench/bundle/ holds the same Worker written with each peer: pg's `Pool`,",
    "postgres.js's `postgres()` (its pool) and Neon's `Pool`, each made and ended within the",
    "request (a socket cannot outlive its request on Workers). A driver's transaction API",
    "(`pool.transaction`, `sql.begin`, `client.query('begin')`) is a method of the object the",
    "Worker already holds, so it is in every bundle whether the Worker calls it or not (calling",
    "`pool.transaction` or `sql.begin` adds the call itself: under 60 bytes minified).",
    "bench/bundle/edgepool_connect.ts is the same Worker with edgepool's `connect()` and no pool:",
    "what the connection alone weighs.",
    "",
    "Each is bundled for workerd as Wrangler does: esbuild",
    `${esbuild.version}, \`minify\`, ESM, conditions \`${
      WORKERS_CONDITIONS.join(", ")
    }\`; gzip level 9; KiB are 1024 bytes, as Wrangler counts them.`,
    "",
    "edgepool's Worker is bundled against the npm package built by build.ts (its `workerd`",
    "build), as a user gets it. Not in any bundle: `cloudflare:sockets` and the Node built-ins",
    "(`node:*` and bare names such as `net`), which workerd provides (most behind the",
    "`nodejs_compat` flag); the last column lists what each bundle imports from the runtime",
    "(`pg-native` is pg's optional native binding, required inside a `try`: absent on Workers,",
    "where pg goes on without it).",
    "",
    table,
    "",
    "## Where edgepool's bytes go",
    "",
    "The same Worker bundled from the source instead of the package (build/runtimes.ts's",
    "Workers table; `edgepool` is mod.ts), minified: the bytes of each file in the output, from",
    "esbuild's metafile. Within a few hundred bytes of the package's bundle above (the package",
    "is built with code splitting, which keeps a few more names).",
    "",
    perFile,
    "",
  ].join("\n");
  return { table, markdown };
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), "edgepool-bundle-"));
  try {
    // The package as `deno task build` builds it, alone in a node_modules of its own.
    const pkg = join(scratch, "package");
    await run(Deno.execPath(), ["run", "-A", join(ROOT, "build.ts"), "--out", pkg]);
    const modules = join(scratch, "node_modules");
    await mkdir(modules);
    await symlink(pkg, join(modules, "edgepool"), "dir");
    const { table, markdown } = report(await measure(modules), await breakdown());
    const file = join(ROOT, "bench", "bundle-sizes.md");
    await writeFile(file, markdown);
    // As `deno fmt` lays the table out, so that the repository stays fmt-clean.
    await run(Deno.execPath(), ["fmt", "--quiet", file]);
    console.log(`${table}\n\nbench/bundle-sizes.md written`);
  } finally {
    await esbuild.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
