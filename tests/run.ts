// The whole test suite, as `deno task test` runs it:
//
//   deno run -A tests/run.ts [--only checks,deno,node] [--filter NAME] [FILE_test.ts...]
//
// 1. checks   deno fmt --check, deno lint, deno check, tests/check_web_only.ts
// 2.          one PostgreSQL server (tests/_server.ts), handed to every child in
//             EDGEPOOL_TEST_SERVER so they all reuse it
// 3. deno     deno test -A tests/
// 4. node     each tests/*_test.ts bundled by esbuild into .tmp/node-tests-<pid>/*.mjs, then
//             node --test on Node 20
//
// workerd runs inside both test phases: tests/workers_test.ts drives miniflare.
//
// It stops at the first failing step and exits 1 after a summary with each step's duration.
// `--only` picks phases (comma-separated or repeated); `--filter` is passed to `deno test
// --filter` and, as a regular expression, to `node --test-name-pattern` (`/re/` is taken as a
// regular expression by both); FILE arguments limit the deno and node phases to those files.

import { existsSync, readdirSync, rmSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { Plugin } from "esbuild";
import { runtimeModules } from "../build/runtimes.ts";
import { describeServer, getServer, stopServer } from "./_server.ts";

const PHASES = ["checks", "deno", "node"] as const;
type Phase = (typeof PHASES)[number];

const ROOT = fileURLToPath(new URL("..", import.meta.url));
// One directory per run (removed at its end): two runs side by side in one tree, as the
// landing rule's busy-CPU check does, must not replace each other's bundles.
const NODE_OUT = join(ROOT, ".tmp", `node-tests-${Deno.pid}`);
const DENO = Deno.execPath();

interface StepResult {
  name: string;
  status: "ok" | "FAILED" | "skipped";
  ms: number;
  note: string;
}

const results: StepResult[] = [];

class StepFailed extends Error {}

async function step(name: string, fn: () => Promise<string | void>): Promise<void> {
  console.log(`\n%c━━ ${name}`, "font-weight: bold");
  const start = performance.now();
  try {
    const note = await fn();
    results.push({ name, status: "ok", ms: performance.now() - start, note: note ?? "" });
  } catch (e) {
    const note = e instanceof Error ? e.message : String(e);
    results.push({ name, status: "FAILED", ms: performance.now() - start, note });
    throw new StepFailed(note);
  }
}

function skip(name: string, note: string): void {
  results.push({ name, status: "skipped", ms: 0, note });
}

async function exec(cmd: string, args: string[]): Promise<void> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const { code, signal } = await child.status;
  if (code !== 0) {
    const shown = cmd === DENO ? "deno" : cmd;
    throw new Error(`\`${shown} ${args.join(" ")}\` exited with ${signal ?? code}`);
  }
}

function hasTypeScript(path: string): boolean {
  const full = join(ROOT, path);
  if (!existsSync(full)) return false;
  if (!path.endsWith("/")) return true;
  return readdirSync(full, { recursive: true }).some((f) => /\.m?tsx?$/.test(String(f)));
}

// ---------------------------------------------------------------------------------------------
// Node: bundle the tests, because Node 20 cannot load .ts.

// `npm:pkg@1.2/sub` in Deno-style imports is `pkg/sub` from node_modules for Node.
const npmSpecifiers: Plugin = {
  name: "npm-specifiers",
  setup(build) {
    build.onResolve({ filter: /^npm:/ }, (args) => {
      const spec = args.path.slice(4);
      const match = /^(@[^/]+\/[^/@]+|[^/@]+)(?:@[^/]*)?(\/.*)?$/.exec(spec);
      return { path: match ? match[1] + (match[2] ?? "") : spec, external: true };
    });
  },
};

// A bundle lives in .tmp/node-tests-<pid>/, so import.meta.url and friends would point there; give
// each source file its own location instead, so fixtures found relative to it still resolve.
const sourceLocations: Plugin = {
  name: "source-locations",
  setup(build) {
    build.onLoad({ filter: /\.m?ts$/ }, async (args) => {
      if (args.path.includes("/node_modules/")) return undefined;
      const text = await Deno.readTextFile(args.path);
      if (!text.includes("import.meta.")) return { contents: text, loader: "ts" };
      const contents = text
        .replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href))
        .replaceAll("import.meta.filename", JSON.stringify(args.path))
        .replaceAll("import.meta.dirname", JSON.stringify(join(args.path, "..")))
        .replaceAll("import.meta.main", "false");
      return { contents, loader: "ts" };
    });
  },
};

async function bundleForNode(entries: string[]): Promise<string[]> {
  const esbuild = await import("esbuild");
  rmSync(NODE_OUT, { recursive: true, force: true });
  try {
    const result = await esbuild.build({
      absWorkingDir: ROOT,
      entryPoints: entries,
      outbase: "tests",
      outdir: NODE_OUT,
      outExtension: { ".js": ".mjs" },
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      sourcemap: "inline",
      logLevel: "warning",
      metafile: true,
      // As the package's Node build: only the Node transport (no cloudflare:sockets).
      plugins: [npmSpecifiers, sourceLocations, runtimeModules("node")],
    });
    return Object.keys(result.metafile.outputs).map((p) => resolve(ROOT, p)).sort();
  } finally {
    await esbuild.stop();
  }
}

function nodePattern(filter: string): string {
  const re = /^\/(.*)\/$/.exec(filter);
  return re ? re[1] : filter.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// ---------------------------------------------------------------------------------------------

function usage(): never {
  console.log(
    "usage: deno run -A tests/run.ts [--only checks,deno,node] [--filter NAME] " +
      "[tests/FILE_test.ts...]",
  );
  Deno.exit(2);
}

function parse(): { phases: Set<Phase>; filter: string | undefined; files: string[] } {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        only: { type: "string", multiple: true },
        filter: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    usage();
  }
  if (parsed.values.help) usage();
  const only = (parsed.values.only ?? []).flatMap((o) => o.split(",")).filter(Boolean);
  for (const phase of only) {
    if (!PHASES.includes(phase as Phase)) {
      console.error(`Unknown phase "${phase}" for --only (expected ${PHASES.join(", ")})`);
      usage();
    }
  }
  const files = parsed.positionals.map((f) => relative(ROOT, resolve(f)));
  for (const f of files) {
    if (!existsSync(join(ROOT, f))) {
      console.error(`No such test file: ${f}`);
      usage();
    }
  }
  const phases = new Set<Phase>(only.length > 0 ? only as Phase[] : PHASES);
  return { phases, filter: parsed.values.filter, files };
}

async function main(): Promise<number> {
  const { phases, filter, files } = parse();
  const testFiles = files.length > 0 ? files : readdirSync(join(ROOT, "tests"))
    .filter((f) => f.endsWith("_test.ts"))
    .sort()
    .map((f) => `tests/${f}`);

  let failed = false;
  try {
    if (phases.has("checks")) {
      await step("deno fmt --check", () => exec(DENO, ["fmt", "--check"]));
      await step("deno lint", () => exec(DENO, ["lint"]));
      const targets = [
        "mod.ts",
        "transports/",
        "gateway/",
        "tests/",
        "bench/",
        "build.ts",
        "build/",
        "demo.ts",
        // The Deno examples (the others import the npm package: examples_test runs them).
        "examples/deno-server/main.ts",
        "examples/deno-deploy/main.ts",
      ]
        .filter(hasTypeScript);
      await step("deno check", () => exec(DENO, ["check", ...targets]));
      await step("check_web_only", () => exec(DENO, ["run", "-A", "tests/check_web_only.ts"]));
      // The examples in doc comments run (those marked `ignore` need a server).
      await step("deno test --doc", () => exec(DENO, ["test", "--doc", "-A", "mod.ts", "src/"]));
      // Every public symbol of every entry point in deno.json's exports (so the list cannot
      // drift) has a doc comment.
      const exported = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json"))).exports;
      const entries = Object.values(exported as Record<string, string>);
      await step("deno doc --lint", () => exec(DENO, ["doc", "--lint", ...entries]));
      // JSR: no slow types, the package builds.
      await step(
        "deno publish --dry-run",
        () => exec(DENO, ["publish", "--dry-run", "--allow-dirty", "--quiet"]),
      );
    }

    if (phases.has("deno") || phases.has("node")) {
      await step("server start", async () => {
        const server = await getServer();
        Deno.env.set("EDGEPOOL_TEST_SERVER", JSON.stringify(describeServer(server)));
        return server.managed ? `port ${server.port}` : "TEST_DATABASE_URL";
      });
    }

    if (phases.has("deno")) {
      // --expose-gc: the pool's leak detection is tested by collecting a dropped handle.
      const args = ["test", "-A", "--v8-flags=--expose-gc"];
      if (filter !== undefined) args.push("--filter", filter);
      args.push(...(files.length > 0 ? files : ["tests/"]));
      await step("deno test", () => exec(DENO, args));
    }

    if (phases.has("node")) {
      const entries = testFiles.filter((f) => f.endsWith("_test.ts"));
      if (entries.length === 0) {
        skip("node test", "no *_test.ts files");
      } else {
        let bundles: string[] = [];
        await step("node bundle", async () => {
          bundles = await bundleForNode(entries);
          return `${bundles.length} file(s) in ${relative(ROOT, NODE_OUT)}/`;
        });
        const args = ["--enable-source-maps", "--expose-gc", "--test", "--test-concurrency=1"];
        args.push("--test-reporter=spec");
        if (filter !== undefined) args.push(`--test-name-pattern=${nodePattern(filter)}`);
        args.push(...bundles.map((b) => relative(ROOT, b)));
        await step("node test", () => exec("node", args));
      }
    }
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    failed = true;
  } finally {
    rmSync(NODE_OUT, { recursive: true, force: true });
    if (results.some((r) => r.name === "server start" && r.status !== "skipped")) {
      await step("server stop", () => Promise.resolve(stopServer())).catch(() => failed = true);
    }
  }

  printSummary(failed);
  return failed ? 1 : 0;
}

function printSummary(failed: boolean): void {
  const width = Math.max(...results.map((r) => r.name.length));
  console.log("\n%c━━ summary", "font-weight: bold");
  for (const r of results) {
    const time = r.status === "skipped" ? "" : `${(r.ms / 1000).toFixed(1)} s`;
    const color = r.status === "ok" ? "green" : r.status === "FAILED" ? "red" : "gray";
    console.log(
      `  %c${r.status.padEnd(7)}%c ${r.name.padEnd(width)} ${time.padStart(7)}  ${r.note}`,
      `color: ${color}`,
      "",
    );
  }
  const total = results.reduce((sum, r) => sum + r.ms, 0);
  const verdict = failed ? "FAILED" : "passed";
  console.log(`  ${verdict} in ${(total / 1000).toFixed(1)} s`);
}

Deno.exit(await main());
