/**
 * `deno task bench`: the benchmarks, side by side with the peers in one run, on Deno and on
 * Node 20, each in a fresh process (with `--expose-gc`, for the heap figures). Uses
 * `DATABASE_URL` when set, else a throwaway server from the test harness. Prints the tables and
 * writes them to `bench/results.md` with the date, the machine and the runtime versions, and
 * the throughput chart (bench/chart.ts) to `bench/throughput.svg`.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { bundleOptions } from "../build/runtimes.ts";
import { getServer } from "../tests/_server.ts";
import { throughputChart } from "./chart.ts";
import type { BenchReport } from "./pool_query_bench.ts";

/** The benchmark files; each prints markdown and takes the server URL as its argument. */
const benches = [
  "connection_bench",
  "pool_query_bench",
  "pool_overhead_bench",
  "memory_bench",
  "copy_bench",
  "transport_bench",
  "round_trips_bench",
  "orm_bench",
  "stream_bench",
];
/** Those that also write their medians as JSON (`--json FILE`), for the chart. */
const charted = new Set(["pool_query_bench", "transport_bench"]);

const started = performance.now();
const url = Deno.env.get("DATABASE_URL") ??
  (await getServer()).url("scram", { sslmode: "disable" });
/** Arguments after the URL, per bench: the round-trip bench also logs in with MD5. */
const extraArgs: Record<string, string[]> = Deno.env.get("DATABASE_URL") === undefined
  ? { round_trips_bench: ["--md5", (await getServer()).url("md5", { sslmode: "disable" })] }
  : {};

for (const name of benches) {
  await esbuild.build({
    ...bundleOptions(`bench/${name}.ts`, "node"),
    outfile: `.tmp/bench/${name}.mjs`,
    packages: "external",
  });
}
await esbuild.stop();

async function run(command: string, args: string[]): Promise<string> {
  const child = new Deno.Command(command, { args, stdout: "piped", stderr: "inherit" });
  const { code, stdout } = await child.output();
  const text = new TextDecoder().decode(stdout).trim();
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${code}\n${text}`);
  console.log(text + "\n");
  return text;
}

const tables: string[] = [];
const jsonFiles: string[] = [];
/** `--json FILE` for a charted bench, FILE being fresh for this run. */
async function jsonArgs(name: string, runtime: string): Promise<string[]> {
  if (!charted.has(name)) return [];
  const file = `.tmp/bench/${name.replace(/_bench$/, "")}-${runtime}.json`;
  await Deno.remove(file).catch(() => {});
  jsonFiles.push(file);
  return ["--json", file];
}
for (const name of benches) {
  const extra = extraArgs[name] ?? [];
  const denoArgs = ["run", "-A", "--v8-flags=--expose-gc", `bench/${name}.ts`, url, ...extra];
  tables.push(await run(Deno.execPath(), [...denoArgs, ...await jsonArgs(name, "deno")]));
  const nodeArgs = ["--expose-gc", `.tmp/bench/${name}.mjs`, url, ...extra];
  tables.push(await run("node", [...nodeArgs, ...await jsonArgs(name, "node")]));
}

async function output(command: string, args: string[]): Promise<string> {
  const { stdout } = await new Deno.Command(command, { args, stdout: "piped" }).output();
  return new TextDecoder().decode(stdout).trim();
}

const cpu = await output("node", ["-p", "os.cpus()[0].model + ', ' + os.cpus().length + ' cores'"]);
const nodeVersion = await output("node", ["--version"]);
const seconds = Math.round((performance.now() - started) / 1000);
const serverVersion = await serverVersionOf(url);

const reports = await Promise.all(
  jsonFiles.map(async (file) => JSON.parse(await Deno.readTextFile(file)) as BenchReport),
);
await Deno.writeTextFile(
  "bench/throughput.svg",
  throughputChart(reports, { subtitle: `${cpu}; ${new Date().toISOString().slice(0, 10)}` }),
);

const report = [
  "# Benchmark results",
  "",
  "Written by `deno task bench` (`deno run -A bench/run.ts`); numbers depend on the machine",
  "and on whatever else ran on it at the time, so compare columns within one run only.",
  "",
  "[![Throughput by concurrency, per transport and runtime](throughput.svg)](throughput.svg)",
  "",
  `- Date: ${new Date().toISOString()}`,
  `- Machine: ${cpu}, ${Deno.build.os} ${Deno.build.arch}`,
  `- Runtimes: Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), Node ${nodeVersion} ` +
  "(esbuild bundle, npm packages external)",
  `- Server: ${serverVersion}`,
  `- Command: \`deno task bench\`; total run time ${seconds} s`,
  "",
  "Ratios are edgepool's figure over the peer's: above 1 is edgepool faster for q/s, slower for",
  "ns per cycle. CPU per query is µs of user + system time: the client's own, the server's",
  "(every PostgreSQL process, from /proc) and the proxy's (its process, from /proc).",
  "",
  ...tables.flatMap((table) => [table, ""]),
].join("\n");
await Deno.writeTextFile("bench/results.md", report);
// The tables and the chart as `deno fmt` lays them out, so that the repository stays fmt-clean.
const fmt = new Deno.Command(Deno.execPath(), {
  args: ["fmt", "--quiet", "bench/results.md", "bench/throughput.svg"],
});
if (!(await fmt.output()).success) {
  throw new Error("deno fmt of bench/results.md and throughput.svg failed");
}
console.log(`bench/results.md and bench/throughput.svg written; total run time ${seconds} s`);

/** The server's `version()`, through edgepool itself. */
async function serverVersionOf(url: string): Promise<string> {
  const { connect } = await import("../mod.ts");
  const conn = await connect(url);
  try {
    const { rows } = await conn.query<{ version: string }>("select version()");
    return rows[0].version.split(" on ")[0];
  } finally {
    await conn.close();
  }
}
