// The protocol fuzzer from the command line (tests/_fuzz.ts describes what a case checks):
//
//   deno task fuzz [--cases N] [--seed S]
//
// runs N cases (default 10 000) with seeds S, S+1, ... (default: a random S), prints each
// failure with the seed that replays it (`--seed <that> --cases 1`), then the totals. Exits 1
// if any case failed.

import { parseArgs } from "node:util";
import process from "node:process";
import { fuzz } from "./_fuzz.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { cases: { type: "string" }, seed: { type: "string" } },
});
const cases = Number(values.cases ?? 10_000);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(values.seed);
if (!Number.isSafeInteger(cases) || cases < 0 || !Number.isSafeInteger(seed) || seed < 0) {
  console.error("usage: deno task fuzz [--cases N] [--seed S] (non-negative integers)");
  process.exit(2);
}
console.log(`fuzzing ${cases} cases from seed ${seed}`);
const start = performance.now();
const { failures, stats } = await fuzz({
  cases,
  seed,
  onFailure: (f) => console.log(`FAIL seed ${f.seed}: ${f.reason}`),
});
const seconds = ((performance.now() - start) / 1000).toFixed(1);
console.log(
  `${stats.cases} cases, ${stats.queries} queries in ${seconds} s: ${stats.resolved} resolved, ` +
    `${stats.postgresErrors} PostgresError, ${stats.decodeErrors} decoding TypeError, ` +
    `ConnectionError ${JSON.stringify(stats.connectionErrors)}, ` +
    `${stats.connectFailures} connects failed`,
);
console.log(`${failures.length} failure(s); seeds ${seed}..${(seed + cases - 1) >>> 0}`);
if (failures.length > 0) {
  console.log(`replay one: deno task fuzz --seed ${failures[0].seed} --cases 1`);
  process.exit(1);
}
