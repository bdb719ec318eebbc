// examples/ runs: each example started or called as its README says, against the test server,
// answering with what PostgreSQL computed. The Deno ones run from this repository with Deno;
// the Node server from a scratch project where the built npm package is installed; the Worker
// bundled against the package's workerd build, in workerd (miniflare); the Vercel Edge Function
// bundled with the edge conditions and called with a Request in Node, over HTTP through
// edgepool's gateway.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import process from "node:process";
import { after, before, test } from "node:test";
import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";
import {
  bundle,
  type InstalledPackage,
  installPackage,
  ROOT,
  startTestGateway,
} from "./_package.ts";
import { getServer } from "./_server.ts";

const isDeno = typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === "object";
const T = {
  timeout: 30_000,
  skip: isDeno ? false : "run once, from the Deno pass: it builds the package with Deno's " +
    "build.ts and spawns Deno and Node itself",
};
const EXAMPLES = join(ROOT, "examples");

let installed: InstalledPackage | undefined;

before(async () => {
  if (isDeno) installed = await installPackage();
}, { timeout: 60_000 });

after(async () => {
  await esbuild.stop();
  await installed?.remove();
});

async function databaseUrl(): Promise<string> {
  return (await getServer()).url("scram", { sslmode: "disable" });
}

/** A server example running as a child process. */
interface Running {
  /** `http://host:port`, from its start line. */
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts `command` with `PORT=0` and `DATABASE_URL` and waits for its `listening on URL` line
 * (any case, as `deno serve` prints it too).
 */
async function start(
  command: string,
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<Running> {
  const child: ChildProcess = spawn(command, args, {
    cwd,
    env: { ...process.env, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  let output = "";
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line:\n${output}`)), 15_000);
      const read = (chunk: Uint8Array) => {
        output += new TextDecoder().decode(chunk);
        const match = /listening on (http:\/\/[^\s/]+)/i.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout!.on("data", read);
      child.stderr!.on("data", read);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${command} exited with ${code}:\n${output}`));
      });
    });
    return { url, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url);
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text);
}

test("examples/deno-server serves a query from its module-scope pool", T, async () => {
  const server = await start(
    process.execPath,
    ["run", "--allow-net", "--allow-env", join(EXAMPLES, "deno-server", "main.ts")],
    ROOT,
    { DATABASE_URL: await databaseUrl() },
  );
  try {
    assert.deepEqual(await getJson(`${server.url}/add?a=40&b=2`), { sum: 42 });
    assert.deepEqual(await getJson(`${server.url}/add?a=1&b=2`), { sum: 3 });
  } finally {
    await server.stop();
  }
});

test("examples/deno-deploy serves a query under `deno serve`", T, async () => {
  const server = await start(
    process.execPath,
    [
      "serve",
      "--allow-net",
      "--allow-env",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      join(EXAMPLES, "deno-deploy", "main.ts"),
    ],
    ROOT,
    { DATABASE_URL: await databaseUrl() },
  );
  try {
    assert.deepEqual(await getJson(`${server.url}/?name=deploy`), { greeting: "hello, deploy" });
  } finally {
    await server.stop();
  }
});

test("examples/node-server serves a query with the installed package on Node", T, async () => {
  const project = installed!.project;
  await copyFile(join(EXAMPLES, "node-server", "server.mjs"), join(project, "server.mjs"));
  const server = await start("node", ["server.mjs"], project, {
    DATABASE_URL: await databaseUrl(),
  });
  try {
    const year = String(new Date().getUTCFullYear());
    const out = await getJson(`${server.url}/now?zone=UTC`) as { year: string; zone: string };
    // The database's clock, not this one: allow for New Year's Eve.
    assert.ok([year, String(Number(year) + 1), String(Number(year) - 1)].includes(out.year));
    assert.equal(out.zone, "UTC");
  } finally {
    await server.stop();
  }
});

test(
  "examples/cloudflare-worker runs in workerd against the package's workerd build",
  T,
  async () => {
    const dir = join(EXAMPLES, "cloudflare-worker");
    // wrangler.toml: the `key = "value"` lines Wrangler needs, by hand.
    const toml = readFileSync(join(dir, "wrangler.toml"), "utf8");
    const settings = Object.fromEntries(
      [...toml.matchAll(/^(\w+)\s*=\s*"([^"]*)"\s*$/gm)].map((m) => [m[1], m[2]]),
    );
    assert.equal(settings.main, "src/index.ts");
    assert.ok(existsSync(join(dir, settings.main)));
    assert.match(settings.compatibility_date, /^\d{4}-\d{2}-\d{2}$/);
    assert.doesNotMatch(toml, /^\s*compatibility_flags/m);

    const project = installed!.project;
    const script = await bundle(join(dir, settings.main), project);
    const mf = new Miniflare({
      modules: true,
      script,
      compatibilityDate: settings.compatibility_date,
      bindings: { DATABASE_URL: await databaseUrl() },
    });
    try {
      // Twice: the second request uses the module-scope pool the first one made.
      for (const id of [7, 12]) {
        const response = await mf.dispatchFetch(`http://worker/?id=${id}`);
        const text = await response.text();
        assert.equal(response.status, 200, text);
        assert.deepEqual(JSON.parse(text), { id, square: id * id });
      }
    } finally {
      await mf.dispose();
    }
  },
);

test("examples/vercel-edge answers a Request over HTTP through the gateway", T, async () => {
  const project = installed!.project;
  // Bundled as Vercel bundles an Edge Function: the edge-light, worker and browser conditions.
  const code = await bundle(join(EXAMPLES, "vercel-edge", "handler.ts"), project, [
    "edge-light",
    "worker",
    "browser",
  ]);
  await writeFile(join(project, "vercel_handler.mjs"), code);
  await writeFile(
    join(project, "vercel_call.mjs"),
    `import handler, { config } from "./vercel_handler.mjs";
const response = await handler(new Request("https://app.example/api/handler?q=hello+edge"));
console.log(JSON.stringify({ config, status: response.status, body: await response.json() }));
process.exit(0);
`,
  );
  const gateway = await startTestGateway();
  try {
    const child = spawn("node", ["vercel_call.mjs"], {
      cwd: project,
      env: {
        ...process.env,
        DATABASE_URL: await databaseUrl(),
        GATEWAY_URL: dirname(gateway.http),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => stdout += chunk);
    child.stderr.on("data", (chunk) => stderr += chunk);
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout.trim().split("\n").at(-1)!), {
      config: { runtime: "edge" },
      status: 200,
      body: { words: 2, upper: "HELLO EDGE" },
    });
  } finally {
    await gateway.close();
  }
});
