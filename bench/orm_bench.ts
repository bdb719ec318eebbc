// Issue 13's ORM workload through Drizzle, over three drivers in one run: edgepool's pool
// (`drizzle({ client: createPool(url) })` with drizzle-orm/node-postgres), pg's Pool (the
// same Drizzle driver) and postgres.js (drizzle-orm/postgres-js). Each has a pool of 10 and a
// table of its own; a round (tests/_drizzle.ts `benchRound`) is an insert returning, a select
// with parameters, a committed transaction, a rolled-back one and 50 concurrent selects.
// The drivers take turns, round batch by round batch; medians of 3.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A bench/orm_bench.ts postgres://...
// Prints a markdown table.

import process from "node:process";
import pg from "pg";
import postgres from "postgres";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import { createPool } from "../mod.ts";
import { type AnyDb, benchRound, createItems, dropItems, itemsTable } from "../tests/_drizzle.ts";

const MAX = 10;
const ROUNDS = 40;
const WARMUP = 5;
const REPEATS = 3;

interface Driver {
  name: string;
  open(url: string): { db: AnyDb; close(): Promise<void> };
}

const drivers: Driver[] = [
  {
    name: "edgepool (node-postgres driver)",
    open(url) {
      const pool = createPool(url, { poolSize: MAX, maxOverflow: 0 });
      return { db: drizzlePg({ client: pool }), close: () => pool.end() };
    },
  },
  {
    name: "pg.Pool (node-postgres driver)",
    open(url) {
      const pool = new pg.Pool({ connectionString: url, max: MAX });
      return { db: drizzlePg({ client: pool }), close: () => pool.end() };
    },
  },
  {
    name: "postgres.js (postgres-js driver)",
    open(url) {
      const sql = postgres(url, { max: MAX, onnotice: () => {} });
      return { db: drizzlePostgresJs({ client: sql }), close: () => sql.end() };
    },
  },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(url: string): Promise<void> {
  const opened = drivers.map((driver, i) => ({
    driver,
    ...driver.open(url),
    items: itemsTable(`orm_bench_${i}_${process.pid}`),
    times: [] as number[],
  }));
  try {
    for (const o of opened) {
      await createItems(o.db, o.items);
      for (let r = 0; r < WARMUP; r++) await benchRound(o.db, o.items, -r - 1);
    }
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      for (const o of opened) {
        const start = performance.now();
        for (let r = 0; r < ROUNDS; r++) await benchRound(o.db, o.items, repeat * ROUNDS + r);
        o.times.push(performance.now() - start);
      }
    }
  } finally {
    for (const o of opened) {
      await dropItems(o.db, o.items).catch(() => {});
      await o.close();
    }
  }
  const runtime = "Deno" in globalThis
    ? `Deno ${process.versions.deno}`
    : `Node ${process.version}`;
  const base = median(opened[0].times);
  console.log(
    `### Drizzle ORM workload, ${runtime}\n\n` +
      `${ROUNDS} rounds, one after another, pool of ${MAX}; a round: insert returning, select ` +
      "with parameters, a committed transaction (insert, update), a rolled-back one, 50 " +
      "concurrent selects. Medians of 3; speedup is the peer's time over edgepool's.\n",
  );
  console.log(
    `| driver under Drizzle | ms for ${ROUNDS} rounds | ms per round | edgepool speedup |`,
  );
  console.log("| --- | ---: | ---: | ---: |");
  for (const o of opened) {
    const ms = median(o.times);
    const speedup = o === opened[0] ? "—" : `${(ms / base).toFixed(2)}x`;
    console.log(
      `| ${o.driver.name} | ${ms.toFixed(0)} | ${(ms / ROUNDS).toFixed(2)} | ${speedup} |`,
    );
  }
}

const [url] = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
if (url === undefined) {
  console.error("usage: orm_bench.ts postgres://...");
  process.exit(2);
}
await main(url);
