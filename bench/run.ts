/**
 * `deno task bench`: the benchmarks, side by side with the peers in one run, on Deno and on
 * Node 20. Uses `DATABASE_URL` when set, else a throwaway server from the test harness.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { bundleOptions } from "../build.ts";
import { getServer } from "../tests/_server.ts";
import { benchConnections } from "./connection_bench.ts";

const url = Deno.env.get("DATABASE_URL") ??
  (await getServer()).url("scram", { sslmode: "disable" });

console.log(await benchConnections(url, `Deno ${Deno.version.deno}`));
console.log();

const outfile = ".tmp/bench/connection_bench.mjs";
await esbuild.build({
  ...bundleOptions("bench/connection_bench.ts", "node"),
  outfile,
  packages: "external",
});
await esbuild.stop();
const node = new Deno.Command("node", {
  args: [outfile, url],
  stdout: "inherit",
  stderr: "inherit",
});
const { code } = await node.output();
if (code !== 0) throw new Error(`the Node benchmark exited with ${code}`);
