// Drizzle over edgepool, unchanged: `drizzle({ client: pool })` from drizzle-orm/node-postgres
// on a pool from createPool(url), against the real PostgreSQL 15 of tests/_server.ts: issue
// 13's ORM workload (tests/_drizzle.ts), transactions on one connection, nothing committed
// when a transaction throws (also where Drizzle mistakes the pool for a client), timestamps
// in string mode to the microsecond, and README's "With Drizzle" snippet. On Deno and Node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { drizzle } from "drizzle-orm/node-postgres";
import { eq, sql } from "drizzle-orm";
import { pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";
import { bundleOptions } from "../build/runtimes.ts";
import { connect, createPool, QueuePool } from "../mod.ts";
import { getServer } from "./_server.ts";
import { uniqueName } from "./_helpers.ts";
import { readmeBlocks } from "./_readme.ts";
import {
  createItems,
  dropItems,
  EXPECTED,
  itemsTable,
  runWorkload,
  summarize,
} from "./_drizzle.ts";

const T = { timeout: 60_000 };
const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function url(): Promise<string> {
  return (await getServer()).url("scram", { sslmode: "disable" });
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

for (const poolClass of ["QueuePool", "NullPool"] as const) {
  test(
    `drizzle({ client: pool }) runs the ORM workload over createPool's ${poolClass}`,
    T,
    async () => {
      await using pool = createPool(await url(), { poolClass, poolSize: 3 });
      const db = drizzle({ client: pool });
      assert.equal(db.$client, pool);
      const items = itemsTable(uniqueName("drizzle_items"));
      await createItems(db, items);
      try {
        assert.deepEqual(summarize(await runWorkload(db, items)), EXPECTED);
      } finally {
        await dropItems(db, items);
      }
      // Every checkout went back: nothing leaked by Drizzle's connect() and release().
      assert.equal(pool.stats().checkedOut, 0);
    },
  );
}

test("db.transaction keeps each of 10 concurrent transactions on one connection", T, async () => {
  await using pool = createPool(await url(), { poolSize: 3 });
  const db = drizzle({ client: pool });
  const items = itemsTable(uniqueName("drizzle_tx"));
  await createItems(db, items);
  try {
    const pid = sql<number>`pg_backend_pid()`.mapWith(Number);
    const runs = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        db.transaction(async (tx) => {
          const pids: number[] = [];
          for (let step = 0; step < 4; step++) {
            pids.push((await tx.select({ pid }).from(sql`(select 1) as one`))[0].pid);
            await tx.insert(items).values({ name: `tx ${i}`, small: step });
          }
          if (i % 2 === 1) throw new Error(`odd ${i}`);
          return pids;
        }).catch((error: Error) => error.message)),
    );
    for (const [i, run] of runs.entries()) {
      if (i % 2 === 1) assert.equal(run, `odd ${i}`);
      else assert.equal(new Set(run as number[]).size, 1, `transaction ${i}: ${run}`);
    }
    const rows = await db.select({ name: items.name }).from(items);
    assert.equal(rows.length, 5 * 4);
    assert.ok(rows.every((r) => Number(r.name.slice(3)) % 2 === 0), "a rolled-back row stayed");
  } finally {
    await dropItems(db, items);
  }
});

test(
  "a throw inside db.transaction commits nothing, even where Drizzle takes the pool for a client",
  T,
  async () => {
    const items = itemsTable(uniqueName("drizzle_trap"));
    await using pool = createPool(await url(), { poolSize: 2 });
    await createItems(drizzle({ client: pool }), items);
    try {
      // Drizzle tells a pool from a client by its class name: one without "Pool" in it is taken
      // for a single connection, so BEGIN goes through pool.query. With pg that BEGIN, the
      // INSERT and the ROLLBACK run on three connections and the INSERT commits (issue 13);
      // edgepool's pool.query refuses to leave a transaction open, so nothing runs at all.
      class Shared extends QueuePool<unknown> {}
      await using shared = new Shared(async () => connect(await url()), { poolSize: 2 });
      const misread = drizzle({ client: shared });
      let ran = false;
      const error = await misread.transaction(async (tx) => {
        ran = true;
        await tx.insert(items).values({ name: "trap" });
        throw new Error("thrown inside the transaction");
      }).then(() => undefined, (e: Error) => e);
      assert.equal(ran, false);
      assert.equal(
        (error?.cause as { code?: string })?.code,
        "TRANSACTION_LEFT_OPEN",
        String(error),
      );
      assert.equal(await misread.$count(items), 0);

      // A checked-out connection: Drizzle takes it for a pool too ("PooledConnection" holds
      // "Pool") and asks it for a connection of its own: connect() gives a second handle on
      // the same connection, so the transaction runs on it, and a throw commits nothing.
      {
        await using conn = await pool.connect();
        const onConn = drizzle({ client: conn });
        const pidOf = async (db: typeof onConn) =>
          (await db.execute<{ pid: number }>(sql`select pg_backend_pid() as pid`)).rows[0].pid;
        const outside = await pidOf(onConn);
        let inside = 0;
        await assert.rejects(
          onConn.transaction(async (tx) => {
            inside = await pidOf(tx as unknown as typeof onConn);
            await tx.insert(items).values({ name: "on a checkout" });
            throw new Error("thrown inside the transaction");
          }),
          /thrown inside the transaction/,
        );
        assert.equal(inside, outside, "the transaction ran on the checked-out connection");
        assert.equal(conn.transactionStatus, "idle");
        await onConn.insert(items).values({ name: "outside a transaction" });
        assert.equal(await onConn.$count(items), 1);
        await onConn.delete(items);
      }
      assert.equal(await drizzle({ client: pool }).$count(items), 0);
    } finally {
      await dropItems(drizzle({ client: pool }), items);
    }
  },
);

test(
  "timestamp({ mode: 'string' }) keeps microseconds, with and without a time zone",
  T,
  async () => {
    await using pool = createPool(await url(), { poolSize: 1 });
    const db = drizzle({ client: pool });
    const name = uniqueName("drizzle_ts");
    const times = pgTable(name, {
      id: serial("id").primaryKey(),
      label: text("label").notNull(),
      tz: timestamp("tz", { mode: "string", withTimezone: true, precision: 6 }),
      local: timestamp("local", { mode: "string", precision: 6 }),
      date: timestamp("date", { mode: "date", withTimezone: true, precision: 6 }),
    });
    await db.execute(sql.raw(
      `create table ${name} (id serial primary key, label text not null, tz timestamptz(6), ` +
        "local timestamp(6), date timestamptz(6))",
    ));
    try {
      // The session's zone, so that the text read back is predictable.
      await using conn = await pool.connect();
      const onConn = drizzle({ client: conn });
      await onConn.execute(sql`set time zone 'UTC'`);
      const values = [".000001", ".123456", ".999999", ""].map((fraction, i) => ({
        label: `v${i}`,
        tz: `2024-02-29 23:59:59${fraction}+00`,
        local: `1999-12-31 00:00:01${fraction}`,
        date: new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 123)),
      }));
      await onConn.insert(times).values(values);
      const rows = await onConn.select().from(times).orderBy(times.id);
      assert.deepEqual(rows.map((r) => [r.tz, r.local]), values.map((v) => [v.tz, v.local]));
      assert.deepEqual(rows.map((r) => r.date), values.map((v) => v.date));
      // The instant compares equal in the database to the microsecond.
      const [{ exact }] = await onConn.select({ exact: sql<number>`count(*)`.mapWith(Number) })
        .from(times).where(eq(times.tz, rows[1].tz!));
      assert.equal(exact, 1);
    } finally {
      await db.execute(sql.raw(`drop table if exists ${name}`));
    }
  },
);

// README's "With Drizzle" section: its snippet, as written, run against the server. It names
// the package as JSR does (@edgepool/edgepool), resolved here to the source; the snippet's
// `users` table goes into a schema of the test's own, through the URL's search_path.
test("README's With Drizzle snippet runs as written", T, async () => {
  const snippet = readmeBlocks("With Drizzle").find((b) => b.lang === "ts")?.code;
  assert.ok(snippet, "the section has no ts snippet");

  const server = await getServer();
  const schema = uniqueName("drizzle_readme");
  await server.psql(`create schema ${schema} authorization scram`);
  const dir = join(ROOT, ".tmp", schema);
  mkdirSync(dir, { recursive: true });
  const printed: unknown[][] = [];
  const log = console.log;
  const previousUrl = process.env.DATABASE_URL;
  try {
    const runtime = "Deno" in globalThis ? "deno" : "node";
    const options = bundleOptions(join(dir, "snippet.ts"), runtime);
    const source: esbuild.Plugin = {
      name: "edgepool-source",
      setup(build) {
        build.onResolve(
          { filter: /^@edgepool\/edgepool$/ },
          () => ({ path: join(ROOT, "mod.ts") }),
        );
      },
    };
    const out = join(dir, "snippet.mjs");
    await esbuild.build({
      ...options,
      entryPoints: undefined,
      stdin: { contents: snippet, loader: "ts", resolveDir: dir, sourcefile: "README.md" },
      outfile: out,
      packages: "external",
      plugins: [source, ...options.plugins!],
    });
    // %20, not URLSearchParams' "+": libpq's URIs (and edgepool's) take "+" as it is.
    process.env.DATABASE_URL = server.url("scram", { sslmode: "disable" }) + "&options=" +
      encodeURIComponent(`-c search_path=${schema} -c TimeZone=UTC`);
    console.log = (...args: unknown[]) => void printed.push(args);
    await import(pathToFileURL(out).href);
  } finally {
    console.log = log;
    if (previousUrl === undefined) delete process.env.DATABASE_URL;
    else process.env.DATABASE_URL = previousUrl;
    rmSync(dir, { recursive: true, force: true });
    await esbuild.stop();
  }
  try {
    const rows = await server.psql(`select name, prefs::text from ${schema}.users order by id`);
    assert.equal(rows, 'Ada Lovelace|{"theme": "dark"}');
    assert.deepEqual(printed, [[[{
      id: 1,
      name: "Ada Lovelace",
      prefs: { theme: "dark" },
      seenAt: "2024-05-06 07:08:09.123456+00",
    }]]]);
  } finally {
    await server.psql(`drop schema ${schema} cascade`);
  }
});
