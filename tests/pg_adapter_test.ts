// QueuePool pooling another driver's clients (pg.Client) through pgClientAdapter, against the
// real server: reset from the real transaction status, loss detection, no crash on idle errors.

import assert from "node:assert/strict";
import { test } from "node:test";
import pg from "pg";
import { PoolError, QueuePool } from "../mod.ts";
import { pgClientAdapter, type PgClientLike } from "../src/pool/pg_adapter.ts";
import { getServer } from "./_server.ts";
import { eventually } from "./_helpers.ts";

const T = { timeout: 30_000 };

async function pgPool(name: string, options: Record<string, unknown> = {}) {
  const server = await getServer();
  const url = server.url("scram", { sslmode: "disable", application_name: name });
  const pool = new QueuePool<PgClientLike>(async () => {
    const client = new pg.Client(url);
    await client.connect();
    return client as unknown as PgClientLike;
  }, { adapter: pgClientAdapter(), poolSize: 2, maxOverflow: 0, ...options });
  return { pool, server };
}

test("pgClientAdapter pools pg.Client: queries, rowMode, fields", T, async () => {
  const { pool } = await pgPool("pga_basic");
  try {
    const result = await pool.query<{ n: number }>("select $1::int + 1 as n", [41]);
    assert.deepEqual(result.rows, [{ n: 42 }]);
    assert.equal(result.command, "SELECT");
    assert.equal(result.rowCount, 1);
    assert.equal(result.fields[0].name, "n");
    assert.equal(result.fields[0].dataTypeID, 23);
    const arrays = await pool.query("select 1 as a, 2 as b", [], { rowMode: "array" });
    assert.deepEqual(arrays.rows, [[1, 2]]);
  } finally {
    await pool.close();
  }
});

test("pgClientAdapter lets the pool roll back a transaction left open", T, async () => {
  const { pool } = await pgPool("pga_reset", { poolSize: 1 });
  try {
    await pool.query("create temp table if not exists t (x int)").catch(() => {});
    const resets: string[] = [];
    pool.on("reset", (e) => resets.push(e.action));
    {
      await using conn = await pool.connect();
      await conn.query("begin");
      await conn.query("select 1");
      assert.equal(conn.transactionStatus, "transaction");
    }
    const conn = await pool.connect();
    assert.equal(conn.transactionStatus, "idle");
    const { rows } = await conn.query<{ s: string }>(
      "select current_setting('transaction_isolation') as s, now() = statement_timestamp() as fresh",
    );
    assert.equal(rows.length, 1);
    await conn.release();
    assert.deepEqual(resets, ["rollback"]);
    // A failed transaction is rolled back too.
    {
      await using c = await pool.connect();
      await c.query("begin");
      await c.query("select 1/0").catch(() => {});
      assert.equal(c.transactionStatus, "failed");
    }
    assert.equal((await pool.query("select 1 as one")).rows[0].one, 1);
    assert.deepEqual(resets, ["rollback", "rollback"]);
  } finally {
    await pool.close();
  }
});

test("pgClientAdapter notices a client killed while idle, without crashing", T, async () => {
  const { pool, server } = await pgPool("pga_idle_kill", { min: 1 });
  try {
    await pool.wait();
    const errors: string[] = [];
    pool.on("error", (e) => errors.push(e.context));
    await server.psql(
      "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pga_idle_kill'",
    );
    await eventually("the pool noticing the lost connection", () => {
      return pool.stats().connectionsLost > 0;
    });
    assert.equal(pool.stats().connectionsLost, 1);
    assert.ok(errors.includes("idle"));
    assert.equal((await pool.query("select 2 as two")).rows[0].two, 2);
  } finally {
    await pool.close();
  }
});

test(
  "pgClientAdapter turns a lost client mid-query into CONNECTION_LOST and retires it",
  T,
  async () => {
    const { pool, server } = await pgPool("pga_busy_kill");
    try {
      const conn = await pool.connect();
      const sleeping = conn.query("select pg_sleep(30)").then(() => null, (e) => e);
      await eventually("the statement of pga_busy_kill running", async () => {
        const out = await server.psql(
          "select count(*) from pg_stat_activity where application_name = 'pga_busy_kill' and state = 'active'",
        );
        return out === "1";
      });
      await server.psql(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pga_busy_kill'",
      );
      const error = await sleeping;
      assert.ok(error instanceof Error, "the query failed");
      assert.ok(
        (error instanceof PoolError && error.code === "CONNECTION_LOST") ||
          (error as { code?: string }).code === "57P01",
        `got ${String(error)}`,
      );
      await conn.release();
      assert.equal(pool.stats().checkedOut, 0);
      assert.equal((await pool.query("select 3 as three")).rows[0].three, 3);
    } finally {
      await pool.close();
    }
  },
);

test("pgClientAdapter rejects a failed query only after the ReadyForQuery that follows", async () => {
  // pg rejects on ErrorResponse; when ReadyForQuery arrives in a later chunk, the adapter must
  // still report the status it carries. A scripted client replays that order.
  const listeners = new Map<string, ((message: { status?: string }) => void)[]>();
  const client = {
    readyForQuery: true,
    connection: {
      on(event: string, listener: (message: { status?: string }) => void) {
        listeners.set(event, [...(listeners.get(event) ?? []), listener]);
      },
    },
    on() {},
    end: () => Promise.resolve(),
    query() {
      client.readyForQuery = false;
      setTimeout(() => {
        client.readyForQuery = true;
        for (const listener of listeners.get("readyForQuery") ?? []) listener({ status: "E" });
      }, 20);
      return Promise.reject(new Error("division by zero"));
    },
  } as unknown as PgClientLike;
  const adapter = pgClientAdapter();
  await assert.rejects(adapter.query(client, "select 1/0"), /division by zero/);
  assert.equal(adapter.transactionStatus(client), "failed");
});
