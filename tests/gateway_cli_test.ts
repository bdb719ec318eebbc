// The gateway's command line, as a user starts it: `deno task gateway ...` on Deno, and the
// same file bundled for Node (what the npm package's bin runs), with the same flags.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { GATEWAY_OPTIONS, type OptionSpec } from "../gateway/options.ts";
import { HttpPool } from "../src/pool/http_pool.ts";
import { getServer } from "./_server.ts";
import { isDeno } from "./_transports.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const T = { timeout: 60_000 };

/** Starts the CLI, waits for its "listening on" line, returns the URL and a stop function. */
async function start(command: string, args: string[]) {
  const child = spawn(command, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start line:\n${output}`)), 30_000);
    const read = (chunk: Uint8Array) => {
      output += new TextDecoder().decode(chunk);
      const match = /listening on (https?:\/\/\S+?) /.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited with ${code}:\n${output}`));
    });
  });
  const stop = async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  };
  return { url, stop, output: () => output };
}

async function queryThrough(url: string, gatewayUrl: string) {
  await using pool = new HttpPool(url, { endpoint: `${gatewayUrl}/sql` });
  const { rows } = await pool.query<{ n: number }>("select $1::int + 1 as n", [41]);
  return rows[0].n;
}

async function nodeBundle(): Promise<string> {
  const esbuild = await import("esbuild");
  const { bundleOptions } = await import("../build/runtimes.ts");
  const outDir = join(ROOT, ".tmp", "gateway-cli");
  mkdirSync(outDir, { recursive: true });
  const outfile = join(outDir, "cli.mjs");
  await esbuild.build({
    ...bundleOptions(join(ROOT, "gateway", "cli.ts"), "node"),
    outfile,
    packages: "external",
  });
  await esbuild.stop();
  return outfile;
}

/** Runs the CLI on Deno to its end: its exit code and what it wrote to stdout and stderr. */
async function run(args: string[]): Promise<{ code: unknown; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["run", "-A", "gateway/cli.ts", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (c: Uint8Array) => out.stdout += new TextDecoder().decode(c));
  child.stderr.on("data", (c: Uint8Array) => out.stderr += new TextDecoder().decode(c));
  const code = await new Promise((resolve) => child.on("exit", resolve));
  return { code, ...out };
}

test("the gateway CLI runs with the same flags on Deno and, bundled, on Node", {
  ...T,
  skip: isDeno ? false : "started from the Deno run (it spawns both runtimes itself)",
}, async () => {
  const server = await getServer();
  const url = server.url("scram");
  const flags = ["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${server.port}`];
  const commands: [string, () => string[] | Promise<string[]>][] = [
    [process.execPath, () => ["run", "-A", "--unstable-no-legacy-abort", "gateway/cli.ts"]],
    ["node", async () => [await nodeBundle()]],
  ];
  for (const [command, args] of commands) {
    const gateway = await start(command, [...await args(), ...flags]);
    try {
      assert.equal(await queryThrough(url, gateway.url), 42, command);
      assert.doesNotMatch(gateway.output(), /scram_pw/);
    } finally {
      await gateway.stop();
    }
  }
});

test("the gateway CLI refuses bad flags with its usage", { ...T, skip: !isDeno }, async () => {
  const { code, stderr } = await run(["--listen", "x"]);
  assert.notEqual(code, 0);
  assert.match(stderr, /--upstream is required/);
  assert.match(stderr, /usage: edgepool-gateway/);
});

test("the gateway CLI's --help names --max-sessions and --header-timeout", {
  ...T,
  skip: !isDeno,
}, async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /--max-sessions N/);
  assert.match(stdout, /--header-timeout MS/);
});

test("the gateway CLI's --help lists every option of GATEWAY_OPTIONS with its default", {
  ...T,
  skip: !isDeno,
}, async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  const text = stdout.replace(/\n {5,}/g, " "); // continuation lines
  for (const spec of Object.values(GATEWAY_OPTIONS) as OptionSpec[]) {
    const line = text.split("\n").find((l) => l.trimStart().startsWith(`--${spec.flag} `));
    assert.ok(line, `--help lists --${spec.flag}`);
    if ("default" in spec && spec.kind !== "boolean") {
      assert.ok(line.includes(`(default ${spec.default})`), `--${spec.flag}'s default: ${line}`);
    }
  }
});
