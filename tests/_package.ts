// The npm package as its users get it, for tests that run it in other runtimes: built as
// `deno task build` builds dist/npm (into a scratch directory), packed with `npm pack` and
// installed from the tarball into a scratch project; a Worker bundled against its workerd build;
// edgepool's gateway for the WebSocket and HTTP transports. Deno only (build.ts runs on Deno).

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as esbuild from "esbuild";
import { WORKERS_CONDITIONS, WORKERS_EXTERNALS } from "../bench/bundle/sizes.ts";
import { buildNpmPackage, type NpmPackage } from "../build.ts";
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
    const pkg = await buildNpmPackage(join(scratch, "package"));
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

/**
 * Bundles `entry` into one ESM file the way a deployment tool does, with `edgepool` resolved
 * from `project`'s node_modules under `conditions`: Wrangler's for workerd by default
 * (`cloudflare:sockets` and Node built-ins left to the runtime).
 */
export async function bundle(
  entry: string,
  project: string,
  conditions: string[] = WORKERS_CONDITIONS,
): Promise<string> {
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    // Wrangler's target; it also lowers `await using`, which miniflare's module parser rejects.
    target: "es2022",
    conditions,
    mainFields: ["module", "main"],
    nodePaths: [join(project, "node_modules")],
    external: WORKERS_EXTERNALS,
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0].text;
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
