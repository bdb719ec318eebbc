// src/cursor.ts: rows read a batch at a time through a portal — `stream()` on connections and
// pools, and `Cursor` (pg-cursor's shape) — against the real PostgreSQL 15 of tests/_server.ts,
// over TCP, WebSocket (websockify, edgepool's gateway), PgBouncer in transaction mode and PGlite:
// batches, the transaction the stream opens, breaking out, server errors, errors thrown in the
// loop, aborts, pools getting their connection back on every path, and memory bounded by the
// batch for a million rows.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  ConnectionError,
  createPool,
  Cursor,
  HttpPool,
  PostgresError,
  sql,
} from "../mod.ts";
import { getServer } from "./_server.ts";
import { startPgBouncer } from "./_pgbouncer.ts";
import { connectionTransports, transports } from "./_transports.ts";
import { pgliteTransport } from "../transports/pglite.ts";
import { assertPostgresError, countingMessages, eventually, uniqueName } from "./_helpers.ts";
import { runReadmeSnippet } from "./_readme.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

async function url(): Promise<string> {
  return (await getServer()).url("scram", PLAIN);
}

async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const row of rows) out.push(row);
  return out;
}

/** The server's open portals other than the unnamed one of the query asking. */
async function portals(conn: Connection): Promise<number> {
  const { rows } = await conn.query<{ n: number }>(
    "select count(*)::int as n from pg_cursors where name <> ''",
  );
  return rows[0].n;
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

for (const { transport } of connectionTransports) {
  const where = `over ${transport.name}`;

  test(
    `stream reads every row a batch at a time and leaves no transaction, ${where}`,
    T,
    async () => {
      const counter = countingMessages(transport, 0x45); // Execute: one per batch
      await using conn = await connect(await url(), { transport: counter });
      counter.count = 0;
      const rows = await collect(
        conn.stream<{ n: number }>("select n from generate_series(1, $1::int) n", [2500], {
          batchSize: 1000,
        }),
      );
      assert.deepEqual(rows.map((r) => r.n), Array.from({ length: 2500 }, (_, i) => i + 1));
      // Three batches (BEGIN and COMMIT go as simple queries, without Execute).
      assert.equal(counter.count, 3);
      assert.equal(conn.transactionStatus, "idle");
      assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
    },
  );

  test(`stream closes its portal and commits when the loop breaks, ${where}`, T, async () => {
    await using conn = await connect(await url(), { transport });
    let seen = 0;
    for await (
      const _ of conn.stream("select n from generate_series(1, 100000) n", [], {
        batchSize: 100,
      })
    ) {
      if (++seen === 150) break;
    }
    assert.equal(seen, 150);
    assert.equal(conn.transactionStatus, "idle");
    assert.equal(await portals(conn), 0);
    assert.deepEqual((await conn.query("select 2 as two")).rows, [{ two: 2 }]);
  });

  test(
    `stream rejects with the server's error mid-way; the connection stays usable, ${where}`,
    T,
    async () => {
      await using conn = await connect(await url(), { transport });
      const seen: number[] = [];
      const error = await (async () => {
        try {
          for await (
            const row of conn.stream<{ r: number }>(
              "select 10 / (5 - n) as r from generate_series(1, 9) n",
              [],
              { batchSize: 2 },
            )
          ) seen.push(row.r);
        } catch (error) {
          return error;
        }
        return undefined;
      })();
      assertPostgresError(error, "22012");
      assert.deepEqual(seen, [2, 3, 5, 10], "the rows before the failing one came through");
      assert.equal(conn.transactionStatus, "idle");
      assert.deepEqual((await conn.query("select 3 as three")).rows, [{ three: 3 }]);
    },
  );
}

test("stream of a template, with rowMode array, sends its values as parameters", T, async () => {
  await using conn = await connect(await url());
  const rows = await collect(
    conn.stream(sql`select n, ${"x"}::text as t from generate_series(1, ${3}::int) n`, undefined, {
      rowMode: "array",
      batchSize: 2,
    }),
  );
  assert.deepEqual(rows, [[1, "x"], [2, "x"], [3, "x"]]);
});

test("stream inside a transaction stays in it and neither commits nor ends it", T, async () => {
  await using conn = await connect(await url());
  const table = uniqueName("stream_tx");
  await conn.query(`create temp table ${table} (n int)`);
  await conn.query("begin");
  await conn.query(`insert into ${table} values (1), (2), (3)`);
  let seen = 0;
  for await (const _ of conn.stream(`select n from ${table}`, [], { batchSize: 1 })) {
    if (++seen === 2) break;
  }
  assert.equal(conn.transactionStatus, "transaction", "still the caller's transaction");
  assert.equal(await portals(conn), 0, "the unnamed portal was closed");
  await conn.query("rollback");
  assert.deepEqual((await conn.query(`select count(*)::int as n from ${table}`)).rows, [{ n: 0 }]);
});

test("stream commits what its statement wrote, also when the loop breaks early", T, async () => {
  await using conn = await connect(await url());
  const table = uniqueName("stream_write");
  await conn.query(`create temp table ${table} (n int)`);
  for await (
    const _ of conn.stream(
      `insert into ${table} select generate_series(1, 10) returning n`,
      [],
      { batchSize: 3 },
    )
  ) break;
  assert.equal(conn.transactionStatus, "idle");
  assert.deepEqual((await conn.query(`select count(*)::int as n from ${table}`)).rows, [{ n: 10 }]);
});

test(
  "stream: an error thrown in the loop closes the portal and reaches the caller",
  T,
  async () => {
    await using conn = await connect(await url());
    const mine = new Error("mine");
    await assert.rejects(
      (async () => {
        for await (
          const _ of conn.stream("select generate_series(1, 1000) n", [], { batchSize: 10 })
        ) {
          throw mine;
        }
      })(),
      (error) => error === mine,
    );
    assert.equal(conn.transactionStatus, "idle");
    assert.deepEqual((await conn.query("select 4 as four")).rows, [{ four: 4 }]);
  },
);

test("stream: an abort during a batch cancels it and rejects with the reason", T, async () => {
  await using conn = await connect(await url());
  const controller = new AbortController();
  const reason = new Error("enough");
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (
        const row of conn.stream<{ n: number }>(
          "select n, pg_sleep(case when n = 3 then 30 else 0 end) from generate_series(1, 6) n",
          [],
          { batchSize: 2, signal: controller.signal },
        )
      ) {
        seen.push(row.n);
        // The next batch (rows 3 and 4) is on its way, and row 3 sleeps.
        if (row.n === 2) setTimeout(() => controller.abort(reason), 50);
      }
    })(),
    (error) => error === reason,
  );
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual((await conn.query("select 5 as five")).rows, [{ five: 5 }]);
  assert.equal(conn.transactionStatus, "idle");
});

test("stream: an abort between batches stops at the next row", T, async () => {
  await using conn = await connect(await url());
  const controller = new AbortController();
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (
        const row of conn.stream<{ n: number }>(
          "select generate_series(1, 100) n",
          [],
          { batchSize: 10, signal: controller.signal },
        )
      ) {
        seen.push(row.n);
        if (row.n === 15) controller.abort(new Error("stop"));
      }
    })(),
    /stop/,
  );
  assert.deepEqual(seen, Array.from({ length: 15 }, (_, i) => i + 1));
  assert.deepEqual((await conn.query("select 6 as six")).rows, [{ six: 6 }]);
  assert.equal(conn.transactionStatus, "idle");
});

test("stream reads enum arrays as arrays (their type looked up inside the stream)", T, async () => {
  await using conn = await connect(await url());
  const mood = uniqueName("mood");
  await conn.query(`create type ${mood} as enum ('sad', 'happy')`);
  try {
    const rows = await collect(
      conn.stream<{ m: string[] }>(
        `select array['sad', 'happy']::${mood}[] as m from generate_series(1, 5)`,
        [],
        { batchSize: 2 },
      ),
    );
    assert.deepEqual(rows.map((r) => r.m), Array(5).fill(["sad", "happy"]));
  } finally {
    await conn.query(`drop type ${mood}`);
  }
});

test("stream: bad arguments are TypeError/RangeError, nothing sent", T, async () => {
  await using conn = await connect(await url());
  assert.throws(() => conn.stream("select 1", [], { batchSize: 0 }), RangeError);
  assert.throws(() => conn.stream("select 1", [], { batchSize: 1.5 }), RangeError);
  assert.throws(() => conn.stream("select 1", [], { rowMode: "nope" as "array" }), TypeError);
  assert.throws(() => conn.stream(42 as unknown as string), TypeError);
  await assert.rejects(collect(conn.stream("select $1::int", [Symbol("x")])), TypeError);
  const stream = conn.stream("select 1");
  await collect(stream);
  assert.throws(() => stream[Symbol.asyncIterator](), /iterated once/);
  assert.equal(conn.pending, 0);
  assert.equal(conn.transactionStatus, "idle");
});

test("Cursor reads n rows at a time through query(cursor), then none", T, async () => {
  await using conn = await connect(await url());
  const cursor = conn.query(
    new Cursor<{ n: number }>("select generate_series(1, $1::int) n", [25]),
  );
  const sizes: number[] = [];
  for (const n of [10, 5, 20, 10]) sizes.push((await cursor.read(n)).length);
  assert.deepEqual(sizes, [10, 5, 10, 0]);
  await cursor.close();
  await cursor.close(); // idempotent
  await assert.rejects(cursor.read(1), /closed/);
  assert.throws(() => conn.query(cursor), /runs once/);
  await assert.rejects(new Cursor("select 1").read(1), /not bound/);
  assert.equal(conn.transactionStatus, "idle");
});

test("Cursor closed before its end leaves the connection usable", T, async () => {
  await using conn = await connect(await url());
  const cursor = conn.query(new Cursor("select generate_series(1, 1000) n"));
  assert.equal((await cursor.read(7)).length, 7);
  await cursor.close();
  assert.equal(conn.transactionStatus, "idle");
  assert.equal(await portals(conn), 0);
});

test("pool.stream returns the connection on every path", T, async () => {
  await using pool = createPool(await url(), { poolSize: 1, maxOverflow: 0 });
  const idle = () => assert.equal(pool.stats().checkedOut, 0, pool.status());
  // To the end.
  assert.equal(
    (await collect(pool.stream("select generate_series(1, 50)", [], { batchSize: 7 }))).length,
    50,
  );
  idle();
  // A break.
  for await (const _ of pool.stream("select generate_series(1, 50)", [], { batchSize: 7 })) break;
  idle();
  // An error thrown in the loop.
  await assert.rejects(
    (async () => {
      for await (const _ of pool.stream("select generate_series(1, 50)")) throw new Error("x");
    })(),
    /x/,
  );
  idle();
  // The server's error.
  await assert.rejects(collect(pool.stream("select 1 / 0")), PostgresError);
  idle();
  // An abort.
  const controller = new AbortController();
  await assert.rejects(
    (async () => {
      for await (
        const _ of pool.stream("select generate_series(1, 50)", [], {
          batchSize: 5,
          signal: controller.signal,
        })
      ) controller.abort(new Error("abort"));
    })(),
    /abort/,
  );
  // The portal's transaction ends behind the abort, then the connection goes back.
  await eventually("the connection back after the abort", () => pool.stats().checkedOut === 0);
  // A stream never iterated checks nothing out.
  pool.stream("select 1");
  idle();
  // One connection served all of it, and still does.
  assert.deepEqual((await pool.query("select 1 as one")).rows, [{ one: 1 }]);
  assert.equal(pool.stats().connectionsNum, 1);
});

test(
  "PooledConnection.stream and query(cursor) read on the checked-out connection",
  T,
  async () => {
    await using pool = createPool(await url(), { poolSize: 1, maxOverflow: 0 });
    {
      await using conn = await pool.connect();
      const rows = await collect(
        conn.stream("select generate_series(1, 12) n", [], { batchSize: 5 }),
      );
      assert.equal(rows.length, 12);
      const cursor = conn.query(new Cursor("select generate_series(1, 3) n"));
      assert.equal((await cursor.read(2)).length, 2);
      assert.equal((await cursor.read(2)).length, 1);
      await cursor.close();
      // pg-cursor's own cursor object needs pg's connection.
      const foreign = { read: () => Promise.resolve([]), close: () => Promise.resolve() };
      assert.throws(() => conn.query(foreign), TypeError);
    }
    assert.equal(pool.stats().checkedOut, 0);
  },
);

test("HttpPool.stream and query(cursor) over HTTP throw UNSUPPORTED", T, async () => {
  await using pool = new HttpPool("postgres://u:p@127.0.0.1:1/db", {
    endpoint: "http://127.0.0.1:1/sql",
  });
  const unsupported = (error: unknown) =>
    error instanceof ConnectionError && error.code === "UNSUPPORTED" && /HTTP/.test(error.message);
  assert.throws(() => pool.stream("select 1"), unsupported);
  await using conn = await pool.connect();
  assert.throws(() => conn.stream("select 1"), unsupported);
  assert.throws(() => conn.query(new Cursor("select 1")), unsupported);
});

test("stream behind PgBouncer in transaction mode keeps one server connection", T, async () => {
  const bouncer = await startPgBouncer({ poolMode: "transaction", poolSize: 2 });
  try {
    await using pool = createPool(bouncer.url("scram", PLAIN), {
      poolSize: 4,
      pooler: "transaction",
    });
    // Two streams at once, each across many batches: each stays on its server connection.
    const [a, b] = await Promise.all([
      collect(
        pool.stream<{ n: number }>("select generate_series(1, 3000) n", [], { batchSize: 100 }),
      ),
      collect(
        pool.stream<{ n: number }>("select generate_series(1, 2000) n", [], { batchSize: 100 }),
      ),
    ]);
    assert.equal(a.length, 3000);
    assert.equal(b.length, 2000);
    assert.equal(a.at(-1)!.n, 3000);
  } finally {
    await bouncer.stop();
  }
});

test("stream over PGlite reads in batches", T, async () => {
  await using conn = await connect("postgres://postgres@localhost/postgres", {
    transport: pgliteTransport(),
  });
  const rows = await collect(conn.stream("select generate_series(1, 25) n", [], { batchSize: 10 }));
  assert.equal(rows.length, 25);
  assert.equal(conn.transactionStatus, "idle");
});

test("stream of a million rows keeps under 32 MiB of heap", { timeout: 120_000 }, async () => {
  // Live memory, sampled after a collection every 128 Ki rows: garbage not yet collected says
  // nothing of what the stream holds (and how much of it piles up depends on the runner).
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, "the harness runs tests with --expose-gc");
  await using conn = await connect(await url(), { transport: transports[0] });
  gc();
  const base = process.memoryUsage().heapUsed;
  let peak = 0;
  let count = 0;
  for await (const _ of conn.stream("select n, 'row ' || n as t from generate_series(1, 1e6) n")) {
    if ((++count & 0x1ffff) === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - base);
    }
  }
  assert.equal(count, 1_000_000);
  assert.ok(peak < 32 * 1024 * 1024, `heap grew by ${(peak / 1048576).toFixed(1)} MiB`);
});

// README's "Streaming rows" snippet, as written, on a connection to the test server: plain
// JavaScript but for its import, whose names are handed to it here.
test("README's Streaming rows snippet runs as written", T, async () => {
  const printed = await runReadmeSnippet("Streaming rows", { connect, sql }, {
    DATABASE_URL: await url(),
  });
  assert.deepEqual(printed, [[5000050000], ["idle"]]);
});

test("pool.stream takes the pool's queryTimeout for each batch", T, async () => {
  await using pool = createPool(await url(), { poolSize: 1, maxOverflow: 0, queryTimeout: 300 });
  const seen: number[] = [];
  const error = await (async () => {
    try {
      for await (
        const row of pool.stream<{ n: number }>(
          "select n, pg_sleep(case when n = 3 then 30 else 0 end) from generate_series(1, 4) n",
          [],
          { batchSize: 2 },
        )
      ) seen.push(row.n);
    } catch (error) {
      return error;
    }
    return undefined;
  })();
  assert.equal((error as ConnectionError)?.code, "QUERY_TIMEOUT", String(error));
  assert.deepEqual(seen, [1, 2]);
  // The timed-out connection was closed; the pool opens another and goes on.
  await eventually("the connection back", () => pool.stats().checkedOut === 0);
  assert.deepEqual((await pool.query("select 1 as one")).rows, [{ one: 1 }]);
});

test("stream serializes its parameters with the serializers of their types", T, async () => {
  await using conn = await connect(await url(), {
    serializers: { 1082: (d: { day: string }) => d.day }, // date
  });
  const rows = await collect(
    conn.stream<{ d: string; n: number }>(
      "select $1::date::text as d, $2::int as n from generate_series(1, 3)",
      [{ day: "2024-02-29" }, 7],
      { batchSize: 2 },
    ),
  );
  assert.deepEqual(rows, Array(3).fill({ d: "2024-02-29", n: 7 }));
  // Per stream, over the connection's; the types are known by now (no second describe).
  const own = await collect(
    conn.stream<{ n: string }>("select $1::int::text as n", [{ v: 5 }], {
      serializers: { 23: (x: { v: number }) => String(x.v * 2) },
    }),
  );
  assert.deepEqual(own, [{ n: "10" }]);
  // A serializer that throws: a TypeError naming the parameter; the connection stays usable.
  await assert.rejects(
    collect(conn.stream("select $1::date", [{ day: null }], {
      serializers: {
        1082: () => {
          throw new Error("no day");
        },
      },
    })),
    /\$1.*no day/,
  );
  assert.equal(conn.transactionStatus, "idle");
  assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
});
