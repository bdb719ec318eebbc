// Query throughput on ONE connection, edgepool side by side with pg and postgres.js, in the
// runtime that runs this file. Pools are compared later (bench for the pool core).
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A bench/connection_bench.ts postgres://...

import pg from "pg";
import postgres from "postgres";
import { connect } from "../mod.ts";

type Run = (sql: string, params?: unknown[]) => Promise<unknown>;
interface Client {
  name: string;
  open(url: string): Promise<{ run: Run; close(): Promise<void> }>;
}

const clients: Client[] = [
  {
    name: "edgepool",
    async open(url) {
      const conn = await connect(url);
      return { run: (sql, params) => conn.query(sql, params), close: () => conn.close() };
    },
  },
  {
    name: "pg",
    async open(url) {
      const client = new pg.Client(url);
      await client.connect();
      return { run: (sql, params) => client.query(sql, params), close: () => client.end() };
    },
  },
  {
    name: "postgres.js",
    open(url) {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      return Promise.resolve({
        run: (text, params) => sql.unsafe(text, params as never[]),
        close: () => sql.end(),
      });
    },
  },
];

interface Workload {
  name: string;
  sql: string;
  params?: (i: number) => unknown[];
  callers: number;
  queries: number;
}

const workloads: Workload[] = [
  { name: "select 1, 1 caller", sql: "select 1", callers: 1, queries: 4000 },
  { name: "select 1, 100 callers", sql: "select 1", callers: 100, queries: 20000 },
  {
    name: "select $1::int + 1, 100 callers",
    sql: "select $1::int + 1",
    params: (i) => [i],
    callers: 100,
    queries: 20000,
  },
];

async function measure(run: Run, w: Workload): Promise<number> {
  let next = 0;
  const caller = async () => {
    while (next < w.queries) {
      const i = next++;
      await run(w.sql, w.params?.(i));
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: w.callers }, caller));
  return w.queries / ((performance.now() - start) / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs every workload for every client (3 rounds, interleaved) and prints medians + ratios. */
export async function benchConnections(url: string, runtime: string): Promise<string> {
  const lines = [
    `### One connection, ${runtime} (queries per second, median of 3)`,
    "",
    `| workload | ${clients.map((c) => c.name).join(" | ")} | edgepool / best peer |`,
    `|---|${clients.map(() => "---:").join("|")}|---:|`,
  ];
  for (const w of workloads) {
    const samples = new Map<string, number[]>(clients.map((c) => [c.name, []]));
    for (let round = 0; round < 3; round++) {
      for (const client of clients) {
        const conn = await client.open(url);
        await measure(conn.run, { ...w, queries: Math.min(500, w.queries) }); // warm-up
        samples.get(client.name)!.push(await measure(conn.run, w));
        await conn.close();
      }
    }
    const medians = clients.map((c) => median(samples.get(c.name)!));
    const best = Math.max(...medians.slice(1));
    lines.push(
      `| ${w.name} | ${medians.map((m) => Math.round(m).toLocaleString("en-US")).join(" | ")} | ` +
        `${(medians[0] / best).toFixed(2)}x |`,
    );
  }
  return lines.join("\n");
}

const isMain = typeof Deno !== "undefined" ? import.meta.main : process.argv[1]?.endsWith(
  "connection_bench.mjs",
);
if (isMain) {
  const url = (typeof Deno !== "undefined" ? Deno.args[0] : process.argv[2]) ??
    (() => {
      throw new Error("usage: connection_bench <postgres-url>");
    })();
  const runtime = typeof Deno !== "undefined"
    ? `Deno ${Deno.version.deno}`
    : `Node ${process.version}`;
  console.log(await benchConnections(url, runtime));
}
