// The npm package as its users get it, for tests that run it in other runtimes: built by
// `deno run -A build.ts --out DIR` as `deno task build` builds dist/npm (into a scratch
// directory), packed with `npm pack` and installed from the tarball into a scratch project; a
// Worker bundled against its workerd build; edgepool's gateway for the WebSocket and HTTP
// transports. Deno only (build.ts runs on Deno).

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as esbuild from "esbuild";
import { WORKERS_CONDITIONS, wranglerOptions } from "../build/runtimes.ts";
import { getServer } from "./_server.ts";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));
/** This repository's node_modules/.bin (bun, tsc). */
export const BIN: string = join(ROOT, "node_modules", ".bin");

const exec = promisify(execFile);

/** Runs `command` in `cwd`; its stdout, or an error with both outputs. */
export async function run(command: string, args: string[], cwd: string): Promise<string> {
  try {
    return (await exec(command, args, { cwd, maxBuffer: 16 << 20 })).stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`\`${command} ${args.join(" ")}\` failed:\n${stdout}\n${stderr}`, {
      cause: error,
    });
  }
}

/** The npm package as build.ts made it. */
export interface NpmPackage {
  /** The package directory. */
  dir: string;
  /** Its package.json. */
  manifest: Record<string, unknown>;
}

/** The built package installed into a scratch project. */
export interface InstalledPackage {
  /** The scratch directory that holds everything below; removed by `remove()`. */
  scratch: string;
  /** The consumer project: package.json with `edgepool` and `ws`, node_modules. */
  project: string;
  /** The package as built into `scratch/package`. */
  pkg: NpmPackage;
  /** Removes the scratch directory. */
  remove(): Promise<void>;
}

/**
 * Builds the package, packs it and installs it (and `ws`, its one dependency, packed from this
 * repository's node_modules) offline into a scratch project, with Node's types for tsc.
 */
export async function installPackage(): Promise<InstalledPackage> {
  const scratch = await mkdtemp(join(tmpdir(), "edgepool-npm-"));
  const remove = () => rm(scratch, { recursive: true, force: true });
  try {
    const dir = join(scratch, "package");
    // build.ts as a program, as `deno task build` runs it (this process is Deno).
    await run(process.execPath, ["run", "-A", join(ROOT, "build.ts"), "--out", dir], ROOT);
    const pkg = { dir, manifest: JSON.parse(await readFile(join(dir, "package.json"), "utf8")) };
    const pack = async (dir: string) =>
      (await run("npm", ["pack", dir, "--pack-destination", scratch], scratch)).trim().split("\n")
        .at(-1)!;
    const tarball = await pack(pkg.dir);
    const ws = await pack(join(ROOT, "node_modules", "ws"));
    const project = join(scratch, "project");
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
    await run("npm", ["install", "--offline", "--no-audit", "--no-fund"], project);
    await mkdir(join(project, "node_modules", "@types"));
    await symlink(
      join(ROOT, "node_modules", "@types", "node"),
      join(project, "node_modules", "@types", "node"),
      "dir",
    );
    return { scratch, project, pkg, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** A Worker bundled by {@link bundleWorker}. */
export interface WorkerBundle {
  /** The ESM. */
  code: string;
  /** What it imports from the runtime (`cloudflare:sockets`, `node:events`...), sorted. */
  runtimeImports: string[];
}

/**
 * Bundles `entry` into one ESM file the way a deployment tool does, with `edgepool` resolved
 * from `project`'s node_modules under `conditions`: Wrangler's for workerd by default
 * (`cloudflare:sockets` and Node built-ins left to the runtime). An import of this repository's
 * `mod.ts` (a test Worker that `deno check` sees) gets the installed package instead.
 */
export async function bundleWorker(
  entry: string,
  project: string,
  conditions: readonly string[] = WORKERS_CONDITIONS,
): Promise<WorkerBundle> {
  const modules = join(project, "node_modules");
  const source = join(ROOT, "mod.ts");
  const asPackage: esbuild.Plugin = {
    name: "edgepool-as-package",
    setup(build) {
      build.onResolve({ filter: /^\.\.?\/.*mod\.ts$/ }, (args) => {
        if (join(args.resolveDir, args.path) !== source) return undefined;
        return build.resolve("edgepool", { kind: args.kind, resolveDir: modules });
      });
    },
  };
  const result = await esbuild.build({
    ...wranglerOptions(entry, modules, conditions),
    plugins: [asPackage],
    write: false,
    metafile: true,
  });
  const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports);
  return {
    code: result.outputFiles[0].text,
    runtimeImports: [...new Set(imports.filter((i) => i.external).map((i) => i.path))].sort(),
  };
}

/** {@link bundleWorker}'s code. */
export async function bundle(
  entry: string,
  project: string,
  conditions: readonly string[] = WORKERS_CONDITIONS,
): Promise<string> {
  return (await bundleWorker(entry, project, conditions)).code;
}

/** A running gateway in front of the test server, and its endpoints. */
export interface TestGateway {
  /** `ws://127.0.0.1:port/v2`, the WebSocket transport's `proxy`. */
  ws: string;
  /** `http://127.0.0.1:port/sql`, the HTTP transport's `endpoint`. */
  http: string;
  close(): Promise<void>;
}

/** Starts edgepool's gateway (from the source, in this process) in front of the test server. */
export async function startTestGateway(): Promise<TestGateway> {
  const server = await getServer();
  const { startGateway } = await import("../gateway/mod.ts");
  const gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `${server.host}:${server.port}`,
  });
  return {
    ws: `${gateway.wsUrl}/v2`,
    http: `${gateway.url}/sql`,
    close: () => gateway.close(),
  };
}
