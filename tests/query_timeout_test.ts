// `queryTimeout` and interrupted queries against the real server: a query past its time limit
// rejects with QUERY_TIMEOUT, its statement is cancelled on the server, and the connection is
// closed; in a pool, an aborted or timed-out query frees its connection's place at once.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, ConnectionError, createPool, QueuePool } from "../mod.ts";
import { getServer } from "./_server.ts";
import {
  assertConnectionError,
  backends,
  delay,
  eventually,
  rejection,
  show,
  uniqueName,
} from "./_helpers.ts";

const T = { timeout: 60_000 };

const appName = (what: string) => uniqueName(`qt_${what}`);

async function url(name: string): Promise<string> {
  const server = await getServer();
  return server.url("scram", { sslmode: "disable", application_name: name });
}

test(
  "Connection queryTimeout rejects with QUERY_TIMEOUT, cancels the statement and closes",
  T,
  async () => {
    const name = appName("conn");
    const conn = await connect(await url(name), { queryTimeout: 300 });
    assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
    const pid = conn.processId;
    const error = await rejection(conn.query("select pg_sleep(30)"));
    assertConnectionError(error, "QUERY_TIMEOUT");
    assert.match(error.message, /300 ms/);
    assert.equal(conn.closed, true);
    assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
    // The statement does not run on to its end on the server: the backend is gone.
    await eventually(
      "the backend gone",
      async () => !(await backends(await getServer(), name)).includes(pid),
    );
  },
);

test(
  "QueryOptions.queryTimeout overrides the connection's, and fast queries are untouched",
  T,
  async () => {
    const name = appName("override");
    await using conn = await connect(await url(name), { queryTimeout: 30_000 });
    // Many queries under a short limit: the one timer is re-armed, never firing on a done query.
    for (let i = 0; i < 50; i++) {
      const { rows } = await conn.query("select $1::int as i", [i], { queryTimeout: 5_000 });
      assert.equal(rows[0].i, i);
    }
    await delay(50);
    assert.equal(conn.closed, false);
    await assert.rejects(
      conn.query("select 1", [], { queryTimeout: -1 }),
      (e) => e instanceof RangeError && /queryTimeout/.test(e.message),
    );
    const error = await rejection(conn.query("select pg_sleep(30)", [], { queryTimeout: 200 }));
    assertConnectionError(error, "QUERY_TIMEOUT");
    assert.match(error.message, /200 ms/);
  },
);

test(
  "a query past its queryTimeout behind a slow one closes the connection for both",
  T,
  async () => {
    const name = appName("pipelined");
    const conn = await connect(await url(name));
    const slow = rejection(conn.query("select pg_sleep(30)"));
    const behind = rejection(conn.query("select 1", [], { queryTimeout: 200 }));
    assertConnectionError(await behind, "QUERY_TIMEOUT");
    const first = await slow;
    assertConnectionError(first, "CONNECTION_CLOSED");
    assert.ok(first.cause instanceof ConnectionError && first.cause.code === "QUERY_TIMEOUT");
  },
);

test(
  "QueuePool queryTimeout closes the connection and serves the next caller from a new one",
  T,
  async () => {
    const name = appName("pool");
    const target = await url(name);
    const pool = new QueuePool((signal) => connect(target, { signal }), {
      poolSize: 1,
      maxOverflow: 0,
      queryTimeout: 300,
    });
    const closes: string[] = [];
    pool.on("close", (e) => closes.push(e.reason));
    try {
      const first = (await pool.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0];
      const error = await rejection(pool.query("select pg_sleep(30)"));
      assertConnectionError(error, "QUERY_TIMEOUT");
      assert.deepEqual(closes, ["stuck"]);
      const s = pool.stats();
      assert.deepEqual([s.checkedOut, s.checkedIn], [0, 0], pool.status());
      const next = (await pool.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0];
      assert.notEqual(next.pid, first.pid);
      await eventually("the timed-out backend gone", async () => {
        return !(await backends(await getServer(), name)).includes(first.pid);
      });
      // A query's own limit wins over the pool's.
      const { rows } = await pool.query("select pg_sleep(0.5), 1 as one", [], {
        queryTimeout: 10_000,
      });
      assert.equal(rows[0].one, 1);
    } finally {
      await pool.close();
    }
  },
);

test(
  "createPool queryTimeout applies to every query of the pool, in transactions too",
  T,
  async () => {
    const name = appName("create");
    const pool = createPool(await url(name), { poolClass: "QueuePool", queryTimeout: 300 });
    try {
      const error = await rejection(pool.transaction(async (c) => {
        await c.query("select pg_sleep(30)");
      }));
      assertConnectionError(error, "QUERY_TIMEOUT");
      assert.equal(pool.stats().checkedOut, 0, pool.status());
      assert.deepEqual((await pool.query("select 2 as two")).rows, [{ two: 2 }]);
    } finally {
      await pool.close();
    }
  },
);

test(
  "a pooled query aborted by its signal closes its connection, not the pool's others",
  T,
  async () => {
    const name = appName("abort");
    const target = await url(name);
    const pool = new QueuePool((signal) => connect(target, { signal }), {
      poolSize: 2,
      maxOverflow: 0,
    });
    try {
      const [a, b] = [await pool.connect(), await pool.connect()];
      const pidA = a.connection.processId;
      const pidB = b.connection.processId;
      await b.release();
      const controller = new AbortController();
      const slow = rejection(a.query("select pg_sleep(30)", [], { signal: controller.signal }));
      await delay(100);
      const reason = new Error("the client went away");
      controller.abort(reason);
      assert.equal(await slow, reason, show(await slow));
      assert.equal(a.connection.closed, true);
      await a.release();
      assert.equal(pool.stats().checkedOut, 0);
      await eventually("the aborted backend gone", async () => {
        const now = await backends(await getServer(), name);
        return !now.includes(pidA) && now.includes(pidB);
      });
      const pids = await Promise.all(
        [1, 2, 3].map(async () =>
          (await pool.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0].pid
        ),
      );
      assert.ok(!pids.includes(pidA));
    } finally {
      await pool.close();
    }
  },
);

test("a statement with a queryTimeout is never pipelined onto a busy connection", T, async () => {
  const name = appName("shared");
  const target = await url(name);
  const pool = new QueuePool((signal) => connect(target, { signal }), {
    poolSize: 1,
    maxOverflow: 0,
    queryTimeout: 400,
  });
  try {
    // The pool is saturated by the slow one: the others would join it, were they shareable,
    // and die with it when it times out.
    const slow = rejection(pool.query("select pg_sleep(30)"));
    await delay(50);
    const quick = await Promise.all(
      [1, 2, 3].map((i) => pool.query<{ i: number }>("select $1::int as i", [i])),
    );
    assert.deepEqual(quick.map((r) => r.rows[0].i), [1, 2, 3]);
    assertConnectionError(await slow, "QUERY_TIMEOUT");
  } finally {
    await pool.close();
  }
});
