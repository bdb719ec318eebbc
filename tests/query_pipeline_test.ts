// `pool.query` statements sharing busy connections (`queryPipeline`): which statements may be
// shared (src/pool/_pipeline.ts), and, against the real server, that sharing keeps every
// statement on its own: results, errors, waiters served first, transactions never shared, and
// a connection lost under a pipeline.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Connection, QueuePool } from "../mod.ts";
import { pipelineable } from "../src/pool/_pipeline.ts";
import { getServer } from "./_server.ts";
import { codeOf, countingMessages, eventually } from "./_helpers.ts";
import { transports } from "./_transports.ts";

const T = { timeout: 60_000 };

async function pool(size: number, queryPipeline?: number): Promise<QueuePool<Connection>> {
  const url = (await getServer()).url("scram", { sslmode: "disable" });
  return new QueuePool(() => connect(url), {
    poolSize: size,
    maxOverflow: 0,
    timeout: 20_000,
    ...(queryPipeline === undefined ? {} : { queryPipeline }),
  });
}

test("pipelineable takes single statements that leave the session as it was", () => {
  for (
    const sql of [
      "select 1",
      "  SELECT $1::int + 1;",
      "select 1 ;\n ",
      "-- a comment\nselect 1",
      "/* outer /* nested */ still */ insert into t values (1)",
      "with x as (select 1) select * from x",
      "update t set a = 1",
      "call proc()",
    ]
  ) assert.equal(pipelineable(sql), true, sql);
  for (
    const sql of [
      "begin",
      "BEGIN ISOLATION LEVEL SERIALIZABLE",
      "start transaction",
      "/* sneaky */ begin",
      "-- c\n  Commit",
      "rollback",
      "end",
      "abort",
      "savepoint a",
      "release savepoint a",
      "prepare transaction 'x'",
      "set search_path = x",
      "reset all",
      "discard all",
      "listen x",
      "unlisten *",
      "copy t from stdin",
      "declare c cursor for select 1",
      "lock table t",
      "select 1; begin",
      "select ';'", // a string holding `;`: when unsure, not shared
      "",
      "   ",
      "-- only a comment",
      "/* unterminated",
      "$$",
    ]
  ) assert.equal(pipelineable(sql), false, sql);
});

test("pool.query shares busy connections, each statement getting its own result", T, async () => {
  const p = await pool(2);
  let checkouts = 0;
  p.on("checkout", () => checkouts++);
  try {
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          p.query<{ n: number; pid: number }>("select $1::int as n, pg_backend_pid() as pid", [
            i,
          ]),
      ),
    );
    assert.deepEqual(results.map((r) => r.rows[0].n), Array.from({ length: 200 }, (_, i) => i));
    assert.ok(new Set(results.map((r) => r.rows[0].pid)).size <= 2);
    // Statements that joined a busy connection made no checkout of their own.
    assert.ok(checkouts < 200, `${checkouts} checkouts for 200 statements`);
    // The second connection, opened for a statement that then joined the first one, may still
    // be on its way (a busy machine): it goes idle when it arrives.
    await eventually("every connection idle", () => p.stats().poolSize <= p.stats().checkedIn);
    const s = p.stats();
    assert.deepEqual([s.checkedOut, s.checkedIn, s.requestsWaiting], [0, 2, 0]);
  } finally {
    await p.close();
  }
});

test("statements issued in one tick on an idle pool leave in one write", T, async () => {
  // Each write's count of Syncs: one per statement.
  const transport = countingMessages(transports[0], 0x53);
  const url = (await getServer()).url("scram", { sslmode: "disable" });
  const p = new QueuePool(() => connect(url, { transport }), { poolSize: 1, maxOverflow: 0 });
  try {
    await p.query("select 1"); // the one connection is open, and idle
    transport.writes.length = 0;
    const queries = Array.from(
      { length: 10 },
      (_, i) => p.query<{ n: number }>("select $1::int as n", [i]),
    );
    // The first statement took the idle connection at once, and the nine behind it joined it
    // there and then: none waits for a checkout, and all leave in one write.
    assert.equal(p.stats().requestsWaiting, 0);
    const results = await Promise.all(queries);
    assert.deepEqual(results.map((r) => r.rows[0].n), Array.from({ length: 10 }, (_, i) => i));
    assert.deepEqual(transport.writes, [10]);
  } finally {
    await p.close();
  }
});

test("pool.query with queryPipeline 1 checks out for every statement", T, async () => {
  const p = await pool(2, 1);
  let checkouts = 0;
  p.on("checkout", () => checkouts++);
  try {
    await Promise.all(Array.from({ length: 50 }, (_, i) => p.query("select $1::int", [i])));
    assert.equal(checkouts, 50);
  } finally {
    await p.close();
  }
});

test("a failing statement in a shared pipeline fails alone", T, async () => {
  const p = await pool(1);
  try {
    const outcomes = await Promise.allSettled(
      Array.from(
        { length: 30 },
        (_, i) =>
          i % 7 === 3
            ? p.query("select 1 / $1::int as n", [0])
            : p.query<{ n: number }>("select $1::int as n", [i]),
      ),
    );
    for (const [i, outcome] of outcomes.entries()) {
      if (i % 7 === 3) {
        assert.equal(outcome.status, "rejected");
        assert.equal(codeOf((outcome as PromiseRejectedResult).reason), "22012");
      } else {
        assert.equal(outcome.status, "fulfilled", String((outcome as { reason?: unknown }).reason));
        assert.equal(
          (outcome as PromiseFulfilledResult<{ rows: { n: number }[] }>).value.rows[0].n,
          i,
        );
      }
    }
    const { rows } = await p.query<{ status: string }>("select 'ok' as status");
    assert.equal(rows[0].status, "ok");
  } finally {
    await p.close();
  }
});

test("a connect() waiting comes before statements that arrive after it", T, async () => {
  const p = await pool(1);
  const order: string[] = [];
  try {
    const first = Array.from(
      { length: 5 },
      (_, i) => p.query("select pg_sleep(0.02)").then(() => order.push(`first ${i}`)),
    );
    await new Promise((resolve) => setTimeout(resolve, 0));
    const checkout = p.connect().then(async (c) => {
      order.push("connect");
      await c.query("select 1");
      await c.release();
    });
    const later = Array.from(
      { length: 3 },
      (_, i) => p.query("select 1").then(() => order.push(`later ${i}`)),
    );
    await Promise.all([...first, checkout, ...later]);
    // The connect() gets the connection once the statements ahead of it are done (its
    // callback may run before the last of theirs); the later statements wait for it.
    assert.deepEqual(order.slice(-3), ["later 0", "later 1", "later 2"]);
    assert.ok(order.indexOf("connect") >= 4, order.join(", "));
  } finally {
    await p.close();
  }
});

test("statements that open a transaction are never shared", T, async () => {
  const p = await pool(1);
  try {
    // BEGIN through pool.query holds its connection alone; the statements around it run
    // outside any transaction, so none is lost when the BEGIN is rolled back (and rejects
    // with TRANSACTION_LEFT_OPEN: see pg_interface_test.ts).
    await p.query("drop table if exists pipeline_never_lost");
    await p.query("create table pipeline_never_lost (n int)");
    const statements = Array.from(
      { length: 20 },
      (_, i) =>
        i === 5 ? p.query("begin") : p.query("insert into pipeline_never_lost values ($1)", [i]),
    );
    const outcomes = await Promise.allSettled(statements);
    assert.deepEqual(
      outcomes.flatMap((o, i) => o.status === "rejected" ? [[i, codeOf(o.reason)]] : []),
      [[5, "TRANSACTION_LEFT_OPEN"]],
    );
    const { rows } = await p.query<{ count: string }>(
      "select count(*)::text as count from pipeline_never_lost",
    );
    assert.equal(rows[0].count, "19");
    await p.query("drop table pipeline_never_lost");
  } finally {
    await p.close();
  }
});

test("statements with a signal get a connection of their own", T, async () => {
  const p = await pool(1);
  let checkouts = 0;
  p.on("checkout", () => checkouts++);
  try {
    const signal = new AbortController().signal;
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => p.query("select $1::int", [i], { signal })),
    );
    assert.equal(checkouts, 10);
  } finally {
    await p.close();
  }
});

test(
  "a connection lost under a shared pipeline fails its statements and is replaced",
  T,
  async () => {
    const p = await pool(1);
    const url = (await getServer()).url("scram", { sslmode: "disable" });
    try {
      const { rows } = await p.query<{ pid: number }>("select pg_backend_pid() as pid");
      // Settled from the start: they may fail while the killer is still connecting.
      const settled = Promise.allSettled(
        Array.from({ length: 10 }, () => p.query("select pg_sleep(0.2)")),
      );
      const killer = await connect(url);
      await killer.query("select pg_terminate_backend($1)", [rows[0].pid]);
      await killer.close();
      const outcomes = await settled;
      const failed = outcomes.filter((o) => o.status === "rejected") as PromiseRejectedResult[];
      assert.ok(failed.length > 0, "the kill landed after every statement: nothing to check");
      for (const { reason } of failed) {
        assert.ok(
          ["CONNECTION_LOST", "57P01"].includes(String(codeOf(reason))),
          `unexpected ${String(reason)}`,
        );
      }
      const after = await p.query<{ pid: number }>("select pg_backend_pid() as pid");
      assert.notEqual(after.rows[0].pid, rows[0].pid);
    } finally {
      await p.close();
    }
  },
);
