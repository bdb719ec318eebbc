// Query throughput through a pool of 10 against the real server: edgepool's QueuePool over
// `connect(url)`, pg.Pool and postgres.js, in the runtime that runs this file. Each caller
// runs its queries one after another; latency is per query as the caller sees it (waiting for
// a connection included).
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A bench/pool_query_bench.ts postgres://... [--json FILE]
// Prints a markdown table; `--json FILE` also writes the medians (a BenchReport) for
// bench/chart.ts. bench/transport_bench.ts measures with the helpers exported here.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import pg from "pg";
import postgres from "postgres";
import { connect, QueuePool } from "../mod.ts";

const MAX = 10;

/** Runs query number `i` of a workload. */
type Run = (i: number) => Promise<unknown>;

interface Statement {
  name: string;
  edgepool: (pool: QueuePool<unknown>) => Run;
  pg: (pool: { query(sql: string, params?: unknown[]): Promise<unknown> }) => Run;
  postgres: (sql: postgres.Sql) => Run;
}

const statements: Statement[] = [
  {
    name: "select 1",
    edgepool: (pool) => () => pool.query("select 1"),
    pg: (pool) => () => pool.query("select 1"),
    postgres: (sql) => () => sql`select 1`,
  },
  {
    name: "select $1::int + 1",
    edgepool: (pool) => (i) => pool.query("select $1::int + 1", [i]),
    pg: (pool) => (i) => pool.query("select $1::int + 1", [i]),
    postgres: (sql) => (i) => sql`select ${i}::int + 1`,
  },
];

interface Client {
  name: string;
  /** Opens the pool and returns one runner per statement. */
  open(url: string): { runs: Run[]; close(): Promise<void> };
}

const clients: Client[] = [
  {
    name: "edgepool",
    open(url) {
      const pool = new QueuePool(() => connect(url), { poolSize: MAX, maxOverflow: 0 });
      return {
        runs: statements.map((s) => s.edgepool(pool as QueuePool<unknown>)),
        close: () => pool.close(),
      };
    },
  },
  {
    name: "pg",
    open(url) {
      // No idle timeout: the pools sit idle while the others are measured.
      const pool = new pg.Pool({ connectionString: url, max: MAX, idleTimeoutMillis: 0 });
      return { runs: statements.map((s) => s.pg(pool)), close: () => pool.end() };
    },
  },
  {
    name: "postgres.js",
    open(url) {
      const sql = postgres(url, { max: MAX, onnotice: () => {} });
      return { runs: statements.map((s) => s.postgres(sql)), close: () => sql.end() };
    },
  },
];

const concurrency = [
  { callers: 1, queries: 3_000 },
  { callers: 10, queries: 10_000 },
  { callers: 100, queries: 10_000 },
];

/** One measurement: queries per second, and per-query latency in ms. */
export interface Sample {
  qps: number;
  p50: number;
  p99: number;
}

/** One median figure, as written to the JSON file. */
export interface BenchRecord extends Sample {
  /** `"TCP"`, `"WebSocket"` or `"HTTP"`. */
  transport: string;
  /** Who ran the queries, as in the table's column heads. */
  client: string;
  statement: string;
  callers: number;
}

/** What `--json FILE` holds. */
export interface BenchReport {
  /** The bench file's name without `_bench.ts`: `"pool_query"`, `"transport"`. */
  bench: string;
  /** `"Deno 2.9.6"`, `"Node v20.20.2"`. */
  runtime: string;
  records: BenchRecord[];
}

/** `queries` queries spread over `callers` sequential loops: throughput and latency in ms. */
export async function measure(run: Run, callers: number, queries: number): Promise<Sample> {
  const latencies = new Float64Array(queries);
  let next = 0;
  const caller = async () => {
    while (next < queries) {
      const i = next++;
      const start = performance.now();
      await run(i);
      latencies[i] = performance.now() - start;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort();
  return {
    qps: queries / seconds,
    p50: latencies[Math.floor(queries * 0.5)],
    p99: latencies[Math.floor(queries * 0.99)],
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function ms(value: number): string {
  return value.toFixed(value < 10 ? 2 : 1);
}

/** The medians of the samples of one client. */
export function medianOf(samples: Sample[]): Sample {
  return {
    qps: median(samples.map((x) => x.qps)),
    p50: median(samples.map((x) => x.p50)),
    p99: median(samples.map((x) => x.p99)),
  };
}

/** The runtime this runs on, for headings: `"Deno 2.9.6"`, `"Node v20.20.2"`. */
export function runtimeName(): string {
  return typeof Deno !== "undefined" ? `Deno ${Deno.version.deno}` : `Node ${process.version}`;
}

/** The command line of a bench file: the server URL, and where to write JSON (if anywhere). */
export function benchArgs(usage: string): { url: string; json: string | undefined } {
  const args = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
  const at = args.indexOf("--json");
  const json = at >= 0 ? args[at + 1] : undefined;
  const url = at < 0 ? args[0] : args.find((_, i) => i !== at && i !== at + 1);
  if (url === undefined || (at >= 0 && json === undefined)) throw new Error(`usage: ${usage}`);
  return { url, json };
}

/** Writes `report` to `file` as JSON (the directory is made if need be). */
export function writeJson(file: string, report: BenchReport): void {
  mkdirSync(dirname(file), { recursive: true });
  // Five significant digits: more would be noise.
  const rounded = (_: string, v: unknown) =>
    typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(5)) : v;
  writeFileSync(file, JSON.stringify(report, rounded, 2) + "\n");
}

/** Runs every workload on every pool (3 rounds, interleaved) and prints medians + ratios. */
export async function benchPoolQueries(
  url: string,
  runtime: string,
): Promise<{ table: string; records: BenchRecord[] }> {
  const records: BenchRecord[] = [];
  const pools = clients.map((c) => c.open(url));
  // Open all ten connections of every pool before timing anything.
  for (const pool of pools) await measure(pool.runs[0], 100, 1_000);
  const lines = [
    `### Pool of ${MAX}, real server, ${runtime} ` +
    `(queries per second and per-query latency p50 / p99 in ms, median of 3)`,
    "",
    `| statement | callers | ${clients.map((c) => `${c.name} q/s`).join(" | ")} | ` +
    `edgepool / best peer | ${clients.map((c) => `${c.name} p50 / p99`).join(" | ")} |`,
    `|---|---:|${clients.map(() => "---:").join("|")}|---:|${clients.map(() => "---:").join("|")}|`,
  ];
  for (const [s, statement] of statements.entries()) {
    for (const { callers, queries } of concurrency) {
      const samples: Sample[][] = clients.map(() => []);
      for (let round = 0; round < 3; round++) {
        for (const [c, pool] of pools.entries()) {
          await measure(pool.runs[s], callers, Math.min(500, queries)); // warm-up
          samples[c].push(await measure(pool.runs[s], callers, queries));
        }
      }
      const medians = samples.map(medianOf);
      for (const [c, client] of clients.entries()) {
        records.push({
          transport: "TCP",
          client: client.name,
          statement: statement.name,
          callers,
          ...medians[c],
        });
      }
      const qps = medians.map((m) => m.qps);
      const best = Math.max(...qps.slice(1));
      const latency = medians.map((m) => `${ms(m.p50)} / ${ms(m.p99)}`);
      lines.push(
        `| ${statement.name} | ${callers} | ` +
          `${qps.map((q) => Math.round(q).toLocaleString("en-US")).join(" | ")} | ` +
          `${(qps[0] / best).toFixed(2)}x | ${latency.join(" | ")} |`,
      );
    }
  }
  for (const pool of pools) await pool.close();
  return { table: lines.join("\n"), records };
}

const isMain = typeof Deno !== "undefined"
  ? import.meta.main
  : process.argv[1]?.endsWith("pool_query_bench.mjs");
if (isMain) {
  const { url, json } = benchArgs("pool_query_bench <postgres-url> [--json FILE]");
  const runtime = runtimeName();
  const { table, records } = await benchPoolQueries(url, runtime);
  console.log(table);
  if (json !== undefined) writeJson(json, { bench: "pool_query", runtime, records });
}
