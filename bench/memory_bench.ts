// Memory a pool holds per idle connection, against the real server: each pool opens 40
// connections (40 concurrent queries that each hold one for a moment), then sits idle; we
// report heap growth (and growth of external memory: socket and read buffers) per connection after gc,
// for edgepool's QueuePool, pg.Pool and postgres.js, in the runtime that runs this file.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A --v8-flags=--expose-gc bench/memory_bench.ts postgres://...

import process from "node:process";
import pg from "pg";
import postgres from "postgres";
import { connect, QueuePool } from "../mod.ts";

const CONNECTIONS = 40;

interface Client {
  name: string;
  /** Opens the pool with CONNECTIONS connections open and idle; returns its close. */
  open(url: string): Promise<() => Promise<void>>;
}

/** CONNECTIONS queries at once, each holding a connection for 20 ms: every one is opened. */
async function fill(query: (sql: string) => Promise<unknown>): Promise<void> {
  await Promise.all(Array.from({ length: CONNECTIONS }, () => query("select pg_sleep(0.02)")));
}

const clients: Client[] = [
  {
    name: "edgepool",
    async open(url) {
      const pool = new QueuePool(() => connect(url), {
        poolSize: CONNECTIONS,
        maxOverflow: 0,
        queryPipeline: 1, // one statement per connection, so that all of them are opened
      });
      await fill((sql) => pool.query(sql));
      if (pool.stats().poolSize !== CONNECTIONS) throw new Error("edgepool did not open them all");
      return () => pool.close();
    },
  },
  {
    name: "pg",
    async open(url) {
      const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS, idleTimeoutMillis: 0 });
      await fill((sql) => pool.query(sql));
      if (pool.totalCount !== CONNECTIONS) throw new Error("pg did not open them all");
      if (pool.idleCount !== CONNECTIONS) throw new Error("pg's connections are not idle");
      return () => pool.end();
    },
  },
  {
    name: "postgres.js",
    async open(url) {
      const sql = postgres(url, { max: CONNECTIONS, onnotice: () => {} });
      // postgres.js pipelines queries onto the connections it has: reserve each one instead.
      const reserved = await Promise.all(Array.from({ length: CONNECTIONS }, () => sql.reserve()));
      for (const connection of reserved) connection.release();
      return () => sql.end();
    },
  },
];

const gc = (globalThis as { gc?: () => void }).gc;

async function settled(): Promise<{ heap: number; buffers: number }> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    gc?.();
  }
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, buffers: usage.external };
}

function kib(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Backends of the server's database now, other than the one asking. */
async function backends(url: string): Promise<number> {
  const conn = await connect(url);
  try {
    const { rows } = await conn.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where datname = current_database() " +
        "and pid <> pg_backend_pid() and backend_type = 'client backend'",
    );
    return rows[0].n;
  } finally {
    await conn.close();
  }
}

/** Heap and external memory growth per idle connection, median of 3 rounds per client. */
export async function benchMemory(url: string, runtime: string): Promise<string> {
  const lines = [
    `### Memory per idle pooled connection, ${runtime} (KiB, ${CONNECTIONS} connections, ` +
    `median of 3${gc ? ", after gc" : ", no --expose-gc so without gc: rough"})`,
    "",
    "| | heap per connection | external (buffers) per connection | total |",
    "|---|---:|---:|---:|",
  ];
  for (const client of clients) {
    const heap: number[] = [];
    const buffers: number[] = [];
    for (let round = 0; round < 3; round++) {
      const before = await settled();
      const idle = await backends(url);
      const close = await client.open(url);
      const after = await settled();
      const open = await backends(url) - idle;
      if (open !== CONNECTIONS) throw new Error(`${client.name} opened ${open} connections`);
      heap.push((after.heap - before.heap) / CONNECTIONS);
      buffers.push((after.buffers - before.buffers) / CONNECTIONS);
      await close();
    }
    const h = median(heap);
    const b = median(buffers);
    lines.push(`| ${client.name} | ${kib(h)} | ${kib(b)} | ${kib(h + b)} |`);
  }
  return lines.join("\n");
}

const isMain = typeof Deno !== "undefined"
  ? import.meta.main
  : process.argv[1]?.endsWith("memory_bench.mjs");
if (isMain) {
  const url = (typeof Deno !== "undefined" ? Deno.args[0] : process.argv[2]) ??
    (() => {
      throw new Error("usage: memory_bench <postgres-url>");
    })();
  const runtime = typeof Deno !== "undefined"
    ? `Deno ${Deno.version.deno}`
    : `Node ${process.version}`;
  console.log(await benchMemory(url, runtime));
  // postgres.js and pg may leave timers; the answer is printed.
  if (typeof Deno === "undefined") process.exit(0);
}
