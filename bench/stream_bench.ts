// Streaming a million rows, against the real server: edgepool's `conn.stream()` against
// postgres.js's `cursor()`, both 1000 rows per round trip, each reading every row (a number and
// a short text). Reports rows/s (median of 3 alternating rounds), the client's CPU per row, and
// the peak heap growth while streaming, sampled every 16 Ki rows without forcing collections
// (garbage not yet collected counts: it is what the process holds), in the runtime that runs
// this file.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A --v8-flags=--expose-gc bench/stream_bench.ts postgres://...

import process from "node:process";
import postgres from "postgres";
import { connect } from "../mod.ts";

const ROWS = 1_000_000;
const BATCH = 1000;
const SQL = `select n, 'row ' || n as t from generate_series(1, ${ROWS}) n`;

interface Round {
  ms: number;
  cpuMs: number;
  peakHeap: number;
}

interface Streamer {
  name: string;
  open(url: string): Promise<{ run(): Promise<number>; close(): Promise<void> }>;
}

/** Adds `row.n` of every row, sampling the heap as it goes. */
class Reader {
  sum = 0;
  count = 0;
  peak = 0;
  constructor(readonly base: number) {}
  row(row: { n: number }): void {
    this.sum += row.n;
    if ((++this.count & 0x3fff) === 0) {
      this.peak = Math.max(this.peak, process.memoryUsage().heapUsed - this.base);
    }
  }
}

let reader = new Reader(0);

const streamers: Streamer[] = [
  {
    name: "edgepool `conn.stream()`",
    async open(url) {
      const conn = await connect(url);
      return {
        async run() {
          for await (const row of conn.stream<{ n: number }>(SQL, [], { batchSize: BATCH })) {
            reader.row(row);
          }
          return reader.count;
        },
        close: () => conn.close(),
      };
    },
  },
  {
    name: "postgres.js `cursor()`",
    async open(url) {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      await sql`select 1`; // connected before the clock starts, as edgepool's is
      return {
        async run() {
          for await (const rows of sql.unsafe(SQL).cursor(BATCH)) {
            for (const row of rows) reader.row(row as unknown as { n: number });
          }
          return reader.count;
        },
        close: () => sql.end(),
      };
    },
  },
];

const gc = (globalThis as { gc?: () => void }).gc;

async function round(streamer: Streamer, url: string): Promise<Round> {
  const client = await streamer.open(url);
  try {
    gc?.();
    reader = new Reader(process.memoryUsage().heapUsed);
    const cpu = process.cpuUsage();
    const started = performance.now();
    const count = await client.run();
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu);
    if (count !== ROWS || reader.sum !== ROWS * (ROWS + 1) / 2) {
      throw new Error(`${streamer.name} read ${count} rows, sum ${reader.sum}`);
    }
    return { ms, cpuMs: (used.user + used.system) / 1000, peakHeap: reader.peak };
  } finally {
    await client.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The table: one row per client, ratios against the best peer. */
export async function benchStream(url: string, runtime: string): Promise<string> {
  const rounds = new Map<string, Round[]>(streamers.map((s) => [s.name, []]));
  await round(streamers[0], url); // warm-up of both, not counted
  await round(streamers[1], url);
  for (let i = 0; i < 3; i++) {
    for (const streamer of i % 2 === 0 ? streamers : [...streamers].reverse()) {
      rounds.get(streamer.name)!.push(await round(streamer, url));
    }
  }
  const rate = (name: string) => ROWS / (median(rounds.get(name)!.map((r) => r.ms)) / 1000);
  const peer = rate(streamers[1].name);
  const lines = [
    `### Streaming ${ROWS / 1e6}M rows, ${runtime} (${BATCH} rows per round trip, median of 3)`,
    "",
    "| | rows/s | vs postgres.js | client CPU µs/row | peak heap growth (MiB) |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const streamer of streamers) {
    const list = rounds.get(streamer.name)!;
    const r = rate(streamer.name);
    lines.push(
      `| ${streamer.name} | ${Math.round(r).toLocaleString("en-US")} | ${
        (r / peer).toFixed(2)
      }x | ${(median(list.map((x) => x.cpuMs)) * 1000 / ROWS).toFixed(2)} | ${
        (Math.max(...list.map((x) => x.peakHeap)) / 1048576).toFixed(1)
      } |`,
    );
  }
  return lines.join("\n");
}

const isMain = typeof Deno !== "undefined"
  ? import.meta.main
  : process.argv[1]?.endsWith("stream_bench.mjs");
if (isMain) {
  const url = (typeof Deno !== "undefined" ? Deno.args[0] : process.argv[2]) ??
    (() => {
      throw new Error("usage: stream_bench <postgres-url>");
    })();
  const runtime = typeof Deno !== "undefined"
    ? `Deno ${Deno.version.deno}`
    : `Node ${process.version}`;
  console.log(await benchStream(url, runtime));
  if (typeof Deno === "undefined") process.exit(0);
}
