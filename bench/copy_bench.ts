// COPY throughput and memory, side by side in one run: 1M rows COPY FROM STDIN and COPY TO
// STDOUT with edgepool (`copyFrom`, `copyTo`), postgres.js (`.writable()`, `.readable()`) and
// pg with pg-copy-streams (`from`, `to`), in the runtime that runs this file. Each client gets
// the same rows from the same async generator (as a Node Readable where the client takes a
// stream), on one connection of its own; MB/s is the COPY's data over the wall time, median of
// 3; peak heap growth is the largest heap seen during the COPY (sampled every 10 000 rows or 64
// chunks) over the heap before it, after gc.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A --v8-flags=--expose-gc bench/copy_bench.ts postgres://...

import process from "node:process";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import postgres from "postgres";
import copyStreams from "pg-copy-streams";
import { connect } from "../mod.ts";

const ROWS = 1_000_000;
const ROUNDS = 3;
const TABLE = "copy_bench";
const COPY_IN = `copy ${TABLE} from stdin`;
const COPY_OUT = `copy ${TABLE} to stdout`;

const gc = (globalThis as { gc?: () => void }).gc;

/** The heap's high mark during a COPY, sampled by `sample()`. */
class HeapPeak {
  readonly base: number;
  peak: number;
  constructor() {
    gc?.();
    this.base = this.peak = process.memoryUsage().heapUsed;
  }
  sample(): void {
    const used = process.memoryUsage().heapUsed;
    if (used > this.peak) this.peak = used;
  }
  get growth(): number {
    return this.peak - this.base;
  }
}

/** The rows, as text-format lines, one string per row (as most sources yield them). */
async function* rows(heap: HeapPeak): AsyncGenerator<string> {
  for (let i = 1; i <= ROWS; i++) {
    if (i % 10_000 === 0) heap.sample();
    yield `${i}\tname ${i}\t${i * 0.5}\n`;
  }
}

/** Counts the bytes of `chunks`, sampling the heap every 64 chunks. */
async function drain(chunks: AsyncIterable<Uint8Array>, heap: HeapPeak): Promise<number> {
  let bytes = 0;
  let n = 0;
  for await (const chunk of chunks) {
    bytes += chunk.length;
    if (++n % 64 === 0) heap.sample();
  }
  return bytes;
}

interface Client {
  name: string;
  open(url: string): Promise<{
    copyFrom(heap: HeapPeak): Promise<void>;
    copyTo(heap: HeapPeak): Promise<number>;
    close(): Promise<void>;
  }>;
}

const clients: Client[] = [
  {
    name: "edgepool",
    async open(url) {
      const conn = await connect(url);
      return {
        async copyFrom(heap) {
          const n = await conn.copyFrom(COPY_IN, rows(heap));
          if (n !== ROWS) throw new Error(`edgepool copied ${n} rows`);
        },
        copyTo: (heap) => drain(conn.copyTo(COPY_OUT), heap),
        close: () => conn.close(),
      };
    },
  },
  {
    name: "postgres.js",
    open(url) {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      return Promise.resolve({
        async copyFrom(heap) {
          const writable = await sql.unsafe(COPY_IN).writable();
          await pipeline(Readable.from(rows(heap)), writable as Writable);
        },
        async copyTo(heap) {
          const readable = await sql.unsafe(COPY_OUT).readable();
          return await drain(readable as AsyncIterable<Uint8Array>, heap);
        },
        close: () => sql.end(),
      });
    },
  },
  {
    name: "pg + pg-copy-streams",
    async open(url) {
      const client = new pg.Client({ connectionString: url });
      // A COPY that hung is ended from the server's side: an error event, not a crash.
      client.on("error", () => {});
      await client.connect();
      return {
        async copyFrom(heap) {
          const stream = client.query(copyStreams.from(COPY_IN));
          await pipeline(Readable.from(rows(heap)), stream);
          if (stream.rowCount !== ROWS) throw new Error(`pg copied ${stream.rowCount} rows`);
        },
        copyTo: (heap) => drain(client.query(copyStreams.to(COPY_OUT)), heap),
        close: () => client.end(),
      };
    },
  },
];

/** How long one COPY may take before the bench gives up on it (a peer that hangs). */
const HANG_MS = 60_000;

/** `promise`, or `undefined` once HANG_MS have passed without it settling. */
async function guard<T>(promise: Promise<T>): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<undefined>((resolve) =>
    timer = setTimeout(() => resolve(undefined), HANG_MS)
  );
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const mb = (bytes: number) => bytes / 1e6;
const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

/** The markdown table of COPY FROM and COPY TO, in MB/s and peak heap growth, per client. */
export async function benchCopy(url: string, runtime: string): Promise<string> {
  const setup = await connect(url);
  await setup.query(
    `drop table if exists ${TABLE}; create table ${TABLE} (id int, name text, value float8)`,
  );
  // The data's size, as COPY TO sends it (the same text COPY FROM reads).
  const { rows: [{ size }] } = await setup.query<{ size: number }>(
    `select sum(octet_length(g::text || 'name ' || g::text || (g * 0.5)::float8::text) + 3)::bigint::float8 as size
     from generate_series(1, ${ROWS}) g`,
  );
  const results: {
    name: string;
    from: number[];
    to: number[];
    fromHeap: number[];
    toHeap: number[];
  }[] = clients.map((c) => ({ name: c.name, from: [], to: [], fromHeap: [], toHeap: [] }));
  // Rounds alternate the clients, so that a slower phase of the machine hits each alike.
  const hung = new Set<string>();
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < clients.length; i++) {
      const client = await clients[i].open(url);
      await setup.query(`truncate ${TABLE}`);
      await setup.query("checkpoint").catch(() => {});
      let heap = new HeapPeak();
      let started = performance.now();
      const copied = await guard(client.copyFrom(heap).then(() => true));
      results[i].from.push(copied ? mb(size) / ((performance.now() - started) / 1000) : NaN);
      results[i].fromHeap.push(heap.growth);
      if (!copied) {
        hung.add(`${clients[i].name} COPY FROM`);
        await setup.query(
          `insert into ${TABLE} select g, 'name ' || g, g * 0.5 from generate_series(1, ${ROWS}) g`,
        );
      }
      heap = new HeapPeak();
      started = performance.now();
      // A peer whose COPY TO hung once is not given another minute in each later round.
      const bytes = hung.has(`${clients[i].name} COPY TO`)
        ? undefined
        : await guard(client.copyTo(heap));
      results[i].to.push(bytes ? mb(bytes) / ((performance.now() - started) / 1000) : NaN);
      results[i].toHeap.push(heap.growth);
      if (bytes === undefined) hung.add(`${clients[i].name} COPY TO`);
      else if (bytes !== size) {
        throw new Error(`${clients[i].name}: COPY TO gave ${bytes} bytes, not ${size}`);
      }
      if (copied && bytes !== undefined) await client.close();
      else {
        // Its connection may still hold the COPY: end it from the server's side.
        await setup.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where query like 'copy copy_bench%' and pid <> pg_backend_pid()",
        );
        void client.close().catch(() => {});
      }
    }
  }
  await setup.query(`drop table ${TABLE}`);
  await setup.close();
  // A run that hung counts as none; every run hung: NaN, shown as "hung".
  const medianOf = (values: number[]) => {
    const done = values.filter((v) => !Number.isNaN(v));
    return done.length === 0 ? NaN : median(done);
  };
  const from = results.map((r) => medianOf(r.from));
  const to = results.map((r) => medianOf(r.to));
  const bestFrom = Math.max(...from.slice(1).filter((v) => !Number.isNaN(v)));
  const bestTo = Math.max(...to.slice(1).filter((v) => !Number.isNaN(v)));
  const rate = (v: number, best: number) =>
    Number.isNaN(v) ? "hung | —" : `${v.toFixed(1)} | ${(v / best).toFixed(2)}×`;
  const lines = [
    `### COPY, ${runtime} (${ROWS / 1e6}M rows, ${mb(size).toFixed(1)} MB of text, median of ` +
    `${ROUNDS}${gc ? "" : ", no --expose-gc: heap rough"})`,
    "",
    "| | COPY FROM MB/s | vs best peer | peak heap growth MiB | COPY TO MB/s | vs best peer | peak heap growth MiB |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ];
  results.forEach((r, i) => {
    lines.push(
      `| ${r.name} | ${rate(from[i], bestFrom)} | ${mib(median(r.fromHeap))} | ` +
        `${rate(to[i], bestTo)} | ${mib(median(r.toHeap))} |`,
    );
  });
  if (hung.size > 0) {
    lines.push(
      "",
      `Runs that did not end within ${HANG_MS / 1000} s, left out of the medians: ` +
        `${[...hung].join(", ")}.`,
    );
  }
  return lines.join("\n");
}

const isMain = typeof Deno !== "undefined"
  ? import.meta.main
  : process.argv[1]?.endsWith("copy_bench.mjs");
if (isMain) {
  const url = (typeof Deno !== "undefined" ? Deno.args[0] : process.argv[2]) ??
    (() => {
      throw new Error("usage: copy_bench <postgres-url>");
    })();
  const runtime = typeof Deno !== "undefined"
    ? `Deno ${Deno.version.deno}`
    : `Node ${process.version}`;
  console.log(await benchCopy(url, runtime));
  if (typeof Deno === "undefined") process.exit(0);
}
