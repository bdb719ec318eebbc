// Query throughput through a pool of 10 against the real server: edgepool's QueuePool over
// `connect(url)`, pg.Pool and postgres.js, in the runtime that runs this file. Each caller
// runs its queries one after another; latency is per query as the caller sees it (waiting for
// a connection included). Per query it also reports the CPU time of this process (the client)
// and, when the server runs on this machine, of every PostgreSQL process (bench/_server_cpu.ts),
// and next to it pgbench's pipelined ceiling with as many connections: how many `select 1` the
// server runs when the client costs next to nothing and never waits for a round trip.
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
import { type CpuMeter, perQuery, serverCpu } from "./_server_cpu.ts";
import { pgbenchCeiling } from "./_pgbench.ts";

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
  /** CPU time of this process per query (user + system), µs. */
  clientCpuUs?: number;
  /** CPU time of the server's processes per query, µs, when it is on this machine. */
  serverCpuUs?: number;
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

/**
 * `queries` queries spread over `callers` sequential loops: throughput, latency in ms, and CPU
 * time per query of this process and (with `server`) of the server.
 */
export async function measure(
  run: Run,
  callers: number,
  queries: number,
  server?: CpuMeter,
): Promise<Sample> {
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
  // The server's /proc scan runs outside the client's CPU window and the clock.
  const serverBefore = server?.read();
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  const seconds = (performance.now() - start) / 1000;
  const { user, system } = process.cpuUsage(cpuBefore);
  const serverUs = server === undefined ? undefined : server.read() - serverBefore!;
  latencies.sort();
  return {
    qps: queries / seconds,
    p50: latencies[Math.floor(queries * 0.5)],
    p99: latencies[Math.floor(queries * 0.99)],
    clientCpuUs: (user + system) / queries,
    serverCpuUs: serverUs === undefined ? undefined : serverUs / queries,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function ms(value: number): string {
  return value.toFixed(value < 10 ? 2 : 1);
}

/** The medians of the samples of one client (of the CPU figures, where every sample has one). */
export function medianOf(samples: Sample[]): Sample {
  const cpu = (of: (x: Sample) => number | undefined) =>
    samples.every((x) => of(x) !== undefined) ? median(samples.map((x) => of(x)!)) : undefined;
  return {
    qps: median(samples.map((x) => x.qps)),
    p50: median(samples.map((x) => x.p50)),
    p99: median(samples.map((x) => x.p99)),
    clientCpuUs: cpu((x) => x.clientCpuUs),
    serverCpuUs: cpu((x) => x.serverCpuUs),
  };
}

/** A CPU figure in µs for a table cell: "—" when there is none. */
export function us(value: number | undefined): string {
  return perQuery(value, 1);
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

/**
 * A meter of the server's CPU time, when it runs on this machine (else undefined): one backend's
 * pid, asked over a connection of its own, leads to the postmaster (bench/_server_cpu.ts).
 */
export async function serverMeter(url: string): Promise<CpuMeter | undefined> {
  const conn = await connect(url);
  try {
    const { rows } = await conn.query<{ pid: number }>("select pg_backend_pid() as pid");
    return serverCpu(url, Number(rows[0].pid));
  } finally {
    await conn.close();
  }
}

/** How long pgbench runs, in seconds. */
const PGBENCH_SECONDS = 5;

/** Runs every workload on every pool (3 rounds, interleaved) and prints medians + ratios. */
export async function benchPoolQueries(
  url: string,
  runtime: string,
): Promise<{ table: string; records: BenchRecord[] }> {
  const records: BenchRecord[] = [];
  const server = await serverMeter(url);
  const pools = clients.map((c) => c.open(url));
  // Open all ten connections of every pool before timing anything.
  for (const pool of pools) await measure(pool.runs[0], 100, 1_000);
  const rows: { statement: string; callers: number; medians: Sample[] }[] = [];
  for (const [s, statement] of statements.entries()) {
    for (const { callers, queries } of concurrency) {
      const samples: Sample[][] = clients.map(() => []);
      for (let round = 0; round < 3; round++) {
        for (const [c, pool] of pools.entries()) {
          await measure(pool.runs[s], callers, Math.min(500, queries)); // warm-up
          samples[c].push(await measure(pool.runs[s], callers, queries, server));
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
      rows.push({ statement: statement.name, callers, medians });
    }
  }
  // With the pools open and idle, as they were while the clients ran.
  const ceiling = await pgbenchCeiling(url, { connections: MAX, seconds: PGBENCH_SECONDS, server });
  for (const pool of pools) await pool.close();

  const lines = [
    `### Pool of ${MAX}, real server, ${runtime} ` +
    `(queries per second and per-query latency p50 / p99 in ms, median of 3)`,
    "",
    "CPU is µs per query, user + system, median of 3: of this process (client) and of every",
    "PostgreSQL process of the server (server, from /proc; — when the server is not on this",
    "machine). Both share the machine's cores, with the client's runtime and the other pools",
    "idle. edgepool / pgbench is edgepool's q/s over pgbench's pipelined ceiling (below).",
    "",
    `| statement | callers | ${clients.map((c) => `${c.name} q/s`).join(" | ")} | ` +
    `edgepool / best peer | edgepool / pgbench | ` +
    `${clients.map((c) => `${c.name} p50 / p99`).join(" | ")} | ` +
    `${clients.map((c) => `${c.name} CPU client / server`).join(" | ")} |`,
    `|---|---:|${clients.map(() => "---:").join("|")}|---:|---:|` +
    `${clients.map(() => "---:").join("|")}|${clients.map(() => "---:").join("|")}|`,
  ];
  for (const { statement, callers, medians } of rows) {
    const qps = medians.map((m) => m.qps);
    const best = Math.max(...qps.slice(1));
    const ofCeiling = statement === "select 1" && ceiling.statementsPerSecond !== undefined
      ? `${(qps[0] / ceiling.statementsPerSecond).toFixed(2)}x`
      : "—";
    const latency = medians.map((m) => `${ms(m.p50)} / ${ms(m.p99)}`);
    const cpu = medians.map((m) => `${us(m.clientCpuUs)} / ${us(m.serverCpuUs)}`);
    lines.push(
      `| ${statement} | ${callers} | ` +
        `${qps.map((q) => Math.round(q).toLocaleString("en-US")).join(" | ")} | ` +
        `${(qps[0] / best).toFixed(2)}x | ${ofCeiling} | ${latency.join(" | ")} | ` +
        `${cpu.join(" | ")} |`,
    );
  }
  lines.push(
    "",
    `pgbench's pipelined ceiling, same server, same run: \`pgbench -n -M extended -c ${MAX} ` +
      `-j 2 -T ${PGBENCH_SECONDS}\`, a transaction being \`\\startpipeline\`, 16 × ` +
      "\`select 1;\`, \`\\endpipeline\` (one run; pgbench's own CPU is on the same cores).",
    "",
    "| statement | connections | statements/s | server CPU µs per statement | " +
      "edgepool / pgbench, 1 / 10 / 100 callers |",
    "|---|---:|---:|---:|---:|",
    `| select 1, pgbench pipelined | ${MAX} | ` +
      `${
        ceiling.statementsPerSecond === undefined
          ? "—"
          : Math.round(ceiling.statementsPerSecond).toLocaleString("en-US")
      } | ` +
      `${us(ceiling.serverCpuUs)} | ` +
      `${
        rows.filter((r) => r.statement === "select 1").map((r) =>
          ceiling.statementsPerSecond === undefined
            ? "—"
            : `${(r.medians[0].qps / ceiling.statementsPerSecond).toFixed(2)}x`
        ).join(" / ")
      } |`,
    ...(ceiling.note === undefined ? [] : ["", ceiling.note]),
  );
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
