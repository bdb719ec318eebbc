// pg's query interface, which ORMs call (Drizzle, Kysely, Prisma's adapters), on a pool, a
// checked-out connection and a connection of one's own, against the real PostgreSQL 15 of
// tests/_server.ts: the config object (`text`, `values`, `rowMode`, `types`, `name`),
// `release(error)`, `end()`, and `pool.query` refusing to leave a transaction open.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  createPool,
  Oid,
  PoolError,
  type QueryConfig,
  QueuePool,
  typeParsers,
} from "../mod.ts";
import { getServer } from "./_server.ts";
import { codeOf, errorOf, uniqueName } from "./_helpers.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

async function url(options: Record<string, string> = {}): Promise<string> {
  return (await getServer()).url("scram", { ...PLAIN, ...options });
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("query takes pg's config object on a pool, a checkout and a connection", T, async () => {
  await using pool = new QueuePool(async () => connect(await url()), { poolSize: 1 });
  const config: QueryConfig = {
    text: "select $1::int as a, $2::text as b",
    values: [1, "x"],
    rowMode: "array",
  };
  assert.deepEqual((await pool.query(config)).rows, [[1, "x"]]);
  // Parameters beside the config take the place of its values, as in pg.
  assert.deepEqual((await pool.query(config, [2, "y"])).rows, [[2, "y"]]);
  {
    await using conn = await pool.connect();
    const result = await conn.query({ text: "select $1::int as a", values: [3] });
    assert.deepEqual(result.rows, [{ a: 3 }]);
    assert.equal(result.command, "SELECT");
    assert.equal(result.fields[0].dataTypeID, Oid.int4);
  }
  await using own = await connect(await url());
  assert.deepEqual((await own.query({ text: "select 4 as a" })).rows, [{ a: 4 }]);
  for (const bad of [null, 42, {}, { text: 1 }]) {
    const error = await errorOf(pool.query(bad as unknown as QueryConfig));
    assert.ok(error instanceof TypeError, String(error));
    assert.match((error as Error).message, /string or a \{ text, values \} object/);
  }
});

test("types: each column's parser comes from the query's getTypeParser", T, async () => {
  await using pool = createPool(await url(), { poolSize: 1 });
  const asked: number[] = [];
  // Drizzle's way: the server's text for timestamps, edgepool's values for the rest.
  const types = {
    getTypeParser(oid: number) {
      asked.push(oid);
      return oid === Oid.timestamptz ? (text: string) => text : typeParsers.getTypeParser(oid);
    },
  };
  const { rows } = await pool.query({
    text: "select '2024-05-06 07:08:09.123456+00'::timestamptz as t, 7::int8 as n, " +
      "'{\"a\":1}'::jsonb as j, 'x'::text as s",
    types,
  });
  assert.deepEqual(rows, [{ t: "2024-05-06 07:08:09.123456+00", n: "7", j: { a: 1 }, s: "x" }]);
  assert.deepEqual(asked, [Oid.timestamptz, Oid.int8, Oid.jsonb, Oid.text]);
  // A parser that is not a function fails the query, not the connection.
  const error = await errorOf(
    pool.query({ text: "select 1 as one", types: { getTypeParser: () => "no" as never } }),
  );
  assert.ok(error instanceof TypeError);
  assert.match((error as Error).message, /getTypeParser\(23, "text"\) returned string/);
  assert.deepEqual((await pool.query("select 2 as two")).rows, [{ two: 2 }]);
  assert.equal(pool.stats().connectionsNum, 1, "the same connection served all three");
  const notTypes = await errorOf(pool.query({ text: "select 1", types: {} as never }));
  assert.ok(notTypes instanceof TypeError);
});

test(
  "name prepares the statement once per connection, and is refused with the cache off",
  T,
  async () => {
    await using own = await connect(await url());
    for (const n of [1, 2, 3]) {
      const { rows } = await own.query({
        text: "select $1::int * 2 as d",
        values: [n],
        name: "dbl",
      });
      assert.deepEqual(rows, [{ d: n * 2 }]);
    }
    const prepared = await own.query<{ n: number }>(
      "select count(*)::int as n from pg_prepared_statements where statement = $1",
      ["select $1::int * 2 as d"],
    );
    assert.equal(prepared.rows[0].n, 1, "prepared once, reused");
    await using uncached = await connect(await url(), { statementCache: 0 });
    const refused = await errorOf(uncached.query({ text: "select 1", name: "one" }));
    assert.equal(codeOf(refused), "UNSUPPORTED");
    assert.match(String(refused), /statement cache is off/);
    assert.deepEqual((await uncached.query("select 1 as one")).rows, [{ one: 1 }]);
  },
);

test(
  "pool.query rolls back a transaction its statement left open: TRANSACTION_LEFT_OPEN",
  T,
  async () => {
    const table = uniqueName("left_open");
    for (const resetOnReturn of ["rollback", "commit"] as const) {
      await using pool = createPool(await url(), { poolSize: 1, resetOnReturn });
      await pool.query(`create table if not exists ${table} (n int)`);
      for (const text of ["begin", `begin; insert into ${table} values (1)`, "start transaction"]) {
        const error = await errorOf(pool.query(text));
        assert.ok(error instanceof PoolError, `${text}: ${error}`);
        assert.equal((error as PoolError).code, "TRANSACTION_LEFT_OPEN");
        assert.match((error as Error).message, /pool\.transaction/);
      }
      // Nothing of it was committed, whatever resetOnReturn says, and the connection is idle.
      const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from ${table}`);
      assert.equal(rows[0].n, 0, resetOnReturn);
      {
        await using conn = await pool.connect();
        assert.equal(conn.transactionStatus, "idle");
        // A connection of one's own may open a transaction: that is what it is for.
        await conn.query("begin");
        assert.equal(conn.transactionStatus, "transaction");
        await conn.query("rollback");
      }
      await pool.query(`drop table ${table}`);
    }
  },
);

test("release(error) closes the connection instead of returning it, as in pg", T, async () => {
  await using pool = createPool(await url(), { poolSize: 1 });
  const closes: string[] = [];
  pool.on("close", (event) => closes.push(event.reason));
  const first = await pool.connect();
  const pid = (await first.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0].pid;
  await first.release(new Error("broken by the caller"));
  assert.deepEqual(closes, ["invalidated"]);
  const second = await pool.connect();
  const again = (await second.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0];
  assert.notEqual(again.pid, pid, "a new connection");
  await second.release(true);
  assert.deepEqual(closes, ["invalidated", "invalidated"]);
  const third = await pool.connect();
  await third.release(false);
  assert.deepEqual(closes, ["invalidated", "invalidated"], "a falsy error returns it");
});

test("end() closes the pool, as pg's does", T, async () => {
  const pool = createPool(await url(), { poolSize: 1 });
  await pool.query("select 1");
  await pool.end();
  assert.equal(pool.closed, true);
  assert.equal(codeOf(await errorOf(pool.query("select 1"))), "POOL_CLOSED");
});

test("query(cursor) with another library's cursor says to pass edgepool's Cursor", T, async () => {
  await using pool = createPool(await url(), { poolSize: 1 });
  await using conn = await pool.connect();
  const cursor = { read: () => Promise.resolve([]), close: () => Promise.resolve() };
  assert.throws(() => conn.query(cursor), {
    name: "TypeError",
    message: /this cursor is not edgepool's; pass edgepool's Cursor/,
  });
});

test(
  "a checkout's connect() gives a second handle on it, whose release keeps it out",
  T,
  async () => {
    await using pool = createPool(await url(), { poolSize: 1 });
    await using conn = await pool.connect();
    const second = await conn.connect();
    const pids = await Promise.all(
      [conn, second].map(async (c) =>
        (await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0].pid
      ),
    );
    assert.equal(pids[0], pids[1]);
    assert.throws(() => second.detach(), /cannot be detached/);
    await second.release();
    assert.equal(pool.stats().checkedOut, 1, "still out to the first handle");
    await conn.release();
    assert.equal(pool.stats().checkedOut, 0);
    assert.equal(codeOf(await errorOf(conn.connect())), "RELEASED");
  },
);
