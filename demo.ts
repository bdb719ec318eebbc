/**
 * The edgepool demo: `deno task demo`. Uses `DATABASE_URL` when set; otherwise starts a
 * throwaway PostgreSQL server through the test harness (it needs the PostgreSQL server
 * binaries) and removes it afterwards.
 *
 * @module
 */

import { connect, PostgresError } from "./mod.ts";
import { getServer } from "./tests/_server.ts";

const url = Deno.env.get("DATABASE_URL") ??
  (console.log("No DATABASE_URL: starting a throwaway PostgreSQL server..."),
    (await getServer()).url("scram", { sslmode: "disable" }));

const started = performance.now();
await using conn = await connect(url, { applicationName: "edgepool-demo" });
console.log(
  `Connected in ${(performance.now() - started).toFixed(1)} ms: PostgreSQL ` +
    `${conn.parameters.server_version}, backend pid ${conn.processId}, ` +
    `TLS ${conn.encrypted ? "on" : "off"}`,
);

const { rows } = await conn.query(
  "select $1::int + 1 as answer, now() as at, $2::text[] as tags, $3::jsonb as doc",
  [41, ["edge", "pool"], JSON.stringify({ fast: true })],
);
console.log("A parameterised query:", rows[0]);

const t0 = performance.now();
const results = await Promise.all(
  Array.from({ length: 100 }, (_, i) => conn.query("select $1::int * 2 as v", [i])),
);
const ms = performance.now() - t0;
console.log(
  `100 pipelined queries on one connection in ${ms.toFixed(1)} ms, answered in order: ` +
    results.every((r, i) => r.rows[0].v === i * 2),
);

try {
  await conn.query("select 1/0");
} catch (error) {
  if (error instanceof PostgresError) {
    console.log(`A server error keeps the connection usable: ${error.code} ${error.message}`);
  }
}

const controller = new AbortController();
setTimeout(() => controller.abort(new Error("took too long")), 200);
const t1 = performance.now();
await conn.query("select pg_sleep(10)", undefined, { signal: controller.signal }).catch((e) =>
  console.log(
    `pg_sleep(10) cancelled after ${(performance.now() - t1).toFixed(0)} ms: ${e.message}`,
  )
);
console.log("Still usable after the cancel:", (await conn.query("select 'yes' as ok")).rows[0]);
console.log("Transaction status:", conn.transactionStatus);
