// The pools against the real PostgreSQL 15 of tests/_server.ts: load, backends killed while
// idle and while checked out, a server restart under load, a wrong password, a server that is
// down, transactions and reset on return, lifetime retirement, NullPool, and close().
//
// Every pool gets its own application_name, so pg_stat_activity tells which backends are its.
// Nothing here measures speed: waits are bounded (`within`, `eventually`) only so that a hang
// fails the test instead of stalling the run.

import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  connect,
  type Connection,
  ConnectionError,
  type ConnectOptions,
  NullPool,
  type NullPoolOptions,
  type PooledConnection,
  PoolError,
  QueuePool,
  type QueuePoolOptions,
} from "../mod.ts";
import { getServer } from "./_server.ts";
import {
  assertIdle,
  assertPostgresError,
  backends,
  codeOf,
  delay,
  eventually,
  rejection,
  Resolved,
  show,
  uniqueName,
  within,
} from "./_helpers.ts";
import { closedPort } from "./_net.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

test("test server starts", { timeout: 120_000 }, async () => {
  const s = await getServer();
  assert.ok(s.port > 0);
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** A lost connection surfaces as the connection's CONNECTION_LOST, or the pool's wrapping. */
function assertConnectionLost(error: unknown): void {
  assert.ok(
    error instanceof ConnectionError || error instanceof PoolError,
    `expected CONNECTION_LOST, got ${show(error)}`,
  );
  assert.equal(error.code, "CONNECTION_LOST", show(error));
}

/** The connect error behind a failed checkout: the error itself, or the pool error's cause. */
function connectErrorOf(error: unknown): unknown {
  return error instanceof PoolError ? error.cause : error;
}

/** An application_name no other pool of this run uses. */
const appName = (label: string) => uniqueName(`pit_${label}`);

/** A creator that connects as scram over plain TCP, tagged with `name`. */
async function creator(
  name: string,
  options: ConnectOptions = {},
): Promise<(signal: AbortSignal) => Promise<Connection>> {
  const url = (await getServer()).url("scram", PLAIN);
  return (signal) => connect(url, { applicationName: name, signal, ...options });
}

async function queuePool(
  name: string,
  options: QueuePoolOptions<Connection> = {},
  connectOptions: ConnectOptions = {},
): Promise<QueuePool<Connection>> {
  return new QueuePool(await creator(name, connectOptions), options);
}

async function nullPool(
  name: string,
  options: NullPoolOptions<Connection> = {},
): Promise<NullPool<Connection>> {
  return new NullPool(await creator(name), options);
}

async function noBackendsLeft(name: string): Promise<void> {
  await eventually(
    `backends of ${name} gone`,
    async () => (await backends(await getServer(), name)).length === 0,
  );
}

/** Waits until backend `pid` runs a statement. */
async function waitUntilActive(pid: number): Promise<void> {
  const s = await getServer();
  await eventually(`backend ${pid} running its statement`, async () => {
    const state = await s.psql(`select state from pg_stat_activity where pid = ${pid}`);
    return state === "active";
  });
}

async function terminate(pids: readonly number[]): Promise<void> {
  if (pids.length === 0) return;
  // In the select list, not in WHERE: the planner may call a WHERE function on every row.
  const out = await (await getServer()).psql(
    `select pg_terminate_backend(pid) from unnest(array[${pids.join(",")}]) as pid`,
  );
  assert.deepEqual(out.split("\n"), pids.map(() => "t"), `terminating ${pids}`);
}

/** Terminates the backends named `name` from `killer`, in process (no psql round trip), so that
 * the caller can act in the same tick as the answer. Resolves to how many were terminated. */
async function killAll(killer: Connection, name: string): Promise<number> {
  // In the select list, not in WHERE: the planner may call a WHERE function on every row.
  const { rows } = await killer.query<{ killed: boolean }>(
    "select pg_terminate_backend(pid) as killed from pg_stat_activity where application_name = $1",
    [name],
  );
  return rows.filter((r) => r.killed).length;
}

/** Collects unhandled rejections while in scope (`using`); listening also keeps them from
 * crashing the process, so the test can report them. */
function watchUnhandled(): { reasons: unknown[] } & Disposable {
  const reasons: unknown[] = [];
  const listener = (reason: unknown) => void reasons.push(reason);
  process.on("unhandledRejection", listener);
  return {
    reasons,
    [Symbol.dispose]: () => void process.off("unhandledRejection", listener),
  };
}

/** Lets pending unhandled-rejection reports arrive, then asserts there were none. */
async function assertNoUnhandled(watch: { reasons: unknown[] }): Promise<void> {
  await delay(50);
  assert.deepEqual(watch.reasons.map(show), [], "unhandled rejections");
}

/** The end of a test that leaves the pool idle: nothing out or waiting, close() within its hang
 * guard, every backend of `name` gone, and (given `unhandled`) no unhandled rejection. */
async function closeIdle(
  pool: QueuePool<Connection> | NullPool<Connection>,
  name: string,
  unhandled?: { reasons: unknown[] },
): Promise<void> {
  assertIdle(pool);
  await within(pool.close(), 10_000, "close");
  await noBackendsLeft(name);
  if (unhandled) await assertNoUnhandled(unhandled);
}

/** A superuser connection to terminate a pool's backends with (see `killAll`). */
async function killerConnection(): Promise<Connection> {
  return connect((await getServer()).url("postgres", PLAIN));
}

/** Kills the backends of `name`, and in the same tick as the answer sends `count` queries
 * `select i as n` through `pool`: they go out before the pool can have read the victims'
 * goodbyes. How many backends were killed, and each query's outcome (see `rejection`). */
async function queriesAfterKill(
  killer: Connection,
  pool: QueuePool<Connection>,
  name: string,
  count: number,
): Promise<{ killed: number; outcomes: unknown[] }> {
  const killed = await killAll(killer, name);
  const pending = Array.from(
    { length: count },
    (_, i) => rejection(pool.query("select $1::int as n", [i])),
  );
  return { killed, outcomes: await within(Promise.all(pending), 10_000, "queries after the kill") };
}

/** Runs `count` queries `select i as n` (`sql` may add to that) at once through `pool`, and
 * asserts each answers its own `i`, while counting the most connections the pool had open and
 * the most backends of `name` the server showed at once. */
async function concurrentQueries(
  pool: QueuePool<Connection> | NullPool<Connection>,
  name: string,
  count: number,
  sql = "select $1::int as n",
): Promise<{ peakOpen: number; peakBackends: number; open: number }> {
  const seen = { peakOpen: 0, peakBackends: 0, open: 0 };
  pool.on("connect", () => seen.peakOpen = Math.max(seen.peakOpen, ++seen.open));
  pool.on("close", () => seen.open--);
  let done = false;
  const all = Promise.all(
    Array.from({ length: count }, (_, i) => pool.query<{ n: number }>(sql, [i])),
  ).finally(() => done = true);
  const sampling = (async () => {
    for (let i = 0; i < 1000 && !done; i++) {
      const now = (await backends(await getServer(), name)).length;
      seen.peakBackends = Math.max(seen.peakBackends, now);
    }
  })();
  const results = await within(all, 30_000, `${count} queries`);
  await sampling;
  results.forEach((result, i) => assert.deepEqual(result.rows, [{ n: i }]));
  return seen;
}

/** The outcomes (see `rejection`) of `count` queries `select 1` sent at once through `pool`. */
function outcomesOf(pool: QueuePool<Connection>, count: number, what: string): Promise<unknown[]> {
  return within(
    Promise.all(Array.from({ length: count }, () => rejection(pool.query("select 1")))),
    15_000,
    what,
  );
}

/** A URL of the scram user at a port nothing listens on. */
async function closedUrl(): Promise<string> {
  const port = await closedPort();
  return `postgresql://scram:scram_pw@127.0.0.1:${port}/edgepool_test?sslmode=disable`;
}

/** Runs `select pg_backend_pid()` through the pool. */
async function pidOf(pool: QueuePool<Connection> | NullPool<Connection>): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>("select pg_backend_pid() as pid");
  return rows[0].pid;
}

// ---------------------------------------------------------------------------------------------
// 1. Load

test("QueuePool serves 1000 concurrent queries on 5 connections", T, async () => {
  const name = appName("load");
  const pool = await queuePool(name, { poolSize: 5, maxOverflow: 0 });
  try {
    // The server's view is sampled while the load runs.
    const { peakOpen, peakBackends } = await concurrentQueries(pool, name, 1000);
    const stats = pool.stats();
    assert.equal(stats.checkedOut, 0);
    assert.equal(stats.requestsWaiting, 0);
    assert.ok(stats.poolSize <= 5, `poolSize ${stats.poolSize}`);
    assert.ok(stats.requestsNum >= 1000, `requestsNum ${stats.requestsNum}`);
    assert.equal(stats.requestsErrors, 0);
    assert.ok(stats.connectionsNum <= 5, `${stats.connectionsNum} connections made`);
    assert.ok(peakOpen <= 5, `${peakOpen} connections open at once`);
    assert.ok(peakBackends <= 5, `${peakBackends} backends seen at once`);
    const after = await backends(await getServer(), name);
    assert.ok(after.length >= 1 && after.length <= 5, `${after.length} backends after the load`);
    await within(pool.close(), 10_000, "close");
    await noBackendsLeft(name);
  } finally {
    await pool.close();
  }
});

// ---------------------------------------------------------------------------------------------
// 2. Backends killed while idle

test("QueuePool notices backends killed while idle and serves the next queries", T, async () => {
  using unhandled = watchUnhandled();
  const name = appName("idle_kill");
  const pool = await queuePool(name, { poolSize: 5, maxOverflow: 0, min: 5 });
  try {
    const errors: { context: string; error: unknown }[] = [];
    pool.on("error", (e) => errors.push(e));
    await within(pool.wait(), 10_000, "wait for min");
    const before = await backends(await getServer(), name);
    assert.equal(before.length, 5);
    await terminate(before);

    await eventually("the pool noticing 5 lost connections", () => {
      return pool.stats().connectionsLost === 5;
    });
    assert.equal(errors.length, 5, show(errors));
    for (const e of errors) assert.equal(e.context, "idle");

    const results = await within(
      Promise.all(Array.from({ length: 20 }, (_, i) => pool.query("select $1::int as n", [i]))),
      10_000,
      "queries after the kill",
    );
    results.forEach((result, i) => assert.deepEqual(result.rows, [{ n: i }]));
    const after = await backends(await getServer(), name);
    assert.ok(after.length >= 1 && after.length <= 5, `${after.length} backends`);
    assert.deepEqual(after.filter((pid) => before.includes(pid)), []);
    await closeIdle(pool, name, unhandled);
  } finally {
    await pool.close();
  }
});

// The connections have each been checked out once, so prePing applies to all of them. The
// queries go out in the same tick as the kill's answer, before the pool can have read the
// victims' goodbyes: only the ping can tell.
test("QueuePool with prePing hides backends killed while idle from every caller", T, async () => {
  using unhandled = watchUnhandled();
  const name = appName("idle_kill_ping");
  const pool = await queuePool(name, { poolSize: 5, maxOverflow: 0, min: 5, prePing: true });
  const killer = await killerConnection();
  try {
    await within(pool.wait(), 10_000, "wait for min");
    const held = await Promise.all(Array.from({ length: 5 }, () => pool.connect()));
    const before = held.map((c) => c.connection.processId).sort((a, b) => a - b);
    await Promise.all(held.map((c) => c.release()));
    assert.deepEqual(await backends(await getServer(), name), before);

    const { killed, outcomes } = await queriesAfterKill(killer, pool, name, 20);
    assert.equal(killed, 5);
    outcomes.forEach((outcome, i) => {
      assert.ok(outcome instanceof Resolved, `query ${i}: ${show(outcome)}`);
      assert.deepEqual((outcome.value as { rows: unknown }).rows, [{ n: i }]);
    });
    const after = await backends(await getServer(), name);
    assert.deepEqual(after.filter((pid) => before.includes(pid)), []);
    await closeIdle(pool, name, unhandled);
  } finally {
    await killer.close();
    await pool.close();
  }
});

// Connections that `min` opened in the background and that nobody has checked out yet have sat
// idle for an unknown time: prePing must test them like any other.
test(
  "QueuePool with prePing tests connections opened for min at their first checkout",
  T,
  async () => {
    using unhandled = watchUnhandled();
    const name = appName("idle_kill_fresh");
    const pool = await queuePool(name, { poolSize: 5, maxOverflow: 0, min: 5, prePing: true });
    const killer = await killerConnection();
    try {
      await within(pool.wait(), 10_000, "wait for min");
      const { killed, outcomes } = await queriesAfterKill(killer, pool, name, 5);
      assert.equal(killed, 5);
      // Connections opened for `min` were never checked out but sat idle: they are pinged too.
      outcomes.forEach((outcome, i) => {
        assert.ok(outcome instanceof Resolved, `query ${i}: ${show(outcome)}`);
      });
      await closeIdle(pool, name, unhandled);
    } finally {
      await killer.close();
      await pool.close();
    }
  },
);

// ---------------------------------------------------------------------------------------------
// 3. A backend killed while checked out

test(
  "QueuePool invalidates a connection killed in use and keeps its healthy elders",
  T,
  async () => {
    using unhandled = watchUnhandled();
    const name = appName("busy_kill");
    const pool = await queuePool(name, { poolSize: 5, maxOverflow: 0, min: 3 });
    try {
      const invalidated: unknown[] = [];
      const closed: string[] = [];
      pool.on("invalidate", (e) => invalidated.push(e.error));
      pool.on("close", (e) => closed.push(e.reason));
      await within(pool.wait(), 10_000, "wait for min");
      const before = await backends(await getServer(), name);
      assert.equal(before.length, 3);

      const victim = await pool.connect();
      const victimPid = victim.connection.processId;
      assert.ok(before.includes(victimPid));
      const sleeping = rejection(victim.query("select pg_sleep(30)"));
      await waitUntilActive(victimPid);
      await terminate([victimPid]);
      const error = await within(sleeping, 10_000, "the killed query");
      assertConnectionLost(error);

      assert.equal(invalidated.length, 1, show(invalidated));
      assert.equal(closed.filter((r) => r === "invalidated").length, 1, show(closed));
      assert.deepEqual(closed.filter((r) => r !== "invalidated"), [], "no other connection closed");
      assert.ok(pool.stats().connectionsLost >= 1, pool.status());
      await victim.release();
      assert.equal(codeOf(await rejection(victim.query("select 1"))), "RELEASED");

      // The two elders were idle and healthy: one dead connection says nothing about them. They
      // are pinged before their next use, and serve on.
      const elders = before.filter((pid) => pid !== victimPid);
      const pids = await within(
        Promise.all(Array.from({ length: 10 }, () => pidOf(pool))),
        10_000,
        "queries after the kill",
      );
      assert.ok(!pids.includes(victimPid));
      for (const pid of elders) assert.ok(pids.includes(pid), `elder ${pid} serves: ${pids}`);
      assert.deepEqual(
        (await backends(await getServer(), name)).filter((pid) => elders.includes(pid)).sort(),
        [
          ...elders,
        ].sort(),
      );
      await closeIdle(pool, name, unhandled);
    } finally {
      await pool.close();
    }
  },
);

// ---------------------------------------------------------------------------------------------
// 4. Server restart under load
//
// Workers check out, query and return in a loop; the server restarts in the middle. While it is
// down, checkouts fail with its connect errors (refused, or 57P03 "shutting down"/"starting up")
// as often as a worker retries: that is the server, not the pool. What the pool promises is
// about queries on the connections it hands out: a restart costs each worker at most one of
// those (the one in flight when the server went down, or one stale connection), and nothing
// fails once the server is back.

interface Failure {
  /** `checkout`: pool.connect() rejected; `query`: a query on a checked-out connection did. */
  kind: "checkout" | "query";
  startedAt: number;
  error: unknown;
}

interface WorkerReport {
  ok: number;
  okAfter: number;
  failures: Failure[];
}

const CONNECT_ERRORS = ["CONNECT_FAILED", "CONNECTION_LOST", "57P01", "57P03"];

for (const prePing of [false, true]) {
  test(
    `QueuePool${prePing ? " with prePing" : ""} recovers from a server restart under load`,
    { timeout: 120_000 },
    async (t) => {
      const s = await getServer();
      if (!s.managed) {
        t.skip("the server of TEST_DATABASE_URL cannot be restarted");
        return;
      }
      using unhandled = watchUnhandled();
      const name = appName(prePing ? "restart_ping" : "restart");
      const pool = await queuePool(name, {
        poolSize: 4,
        maxOverflow: 0,
        min: 2,
        prePing,
        timeout: 20_000,
        maintenanceInterval: 50,
      });
      const WORKERS = 8;
      const BEFORE = 20; // successful queries each worker runs before the restart
      const AFTER = 20; // and after it
      const hardStop = performance.now() + 90_000;
      let restartStart = Infinity;
      let restartDone = Infinity;
      let warmedUp = 0;
      let markWarm!: () => void;
      const warm = new Promise<void>((resolve) => markWarm = resolve);

      const worker = async (id: number): Promise<WorkerReport> => {
        const report: WorkerReport = { ok: 0, okAfter: 0, failures: [] };
        for (let i = 0; i < 100_000 && report.okAfter < AFTER; i++) {
          if (performance.now() > hardStop) break;
          const startedAt = performance.now();
          const n = id * 1_000_000 + i;
          let connection: PooledConnection<Connection>;
          try {
            connection = await pool.connect();
          } catch (error) {
            report.failures.push({ kind: "checkout", startedAt, error });
            await delay(5);
            continue;
          }
          let rows: unknown[] | undefined;
          try {
            rows = (await connection.query("select $1::int as n from pg_sleep(0.002)", [n])).rows;
          } catch (error) {
            report.failures.push({ kind: "query", startedAt, error });
          } finally {
            await connection.release();
          }
          if (rows === undefined) {
            await delay(5);
            continue;
          }
          assert.deepEqual(rows, [{ n }]);
          report.ok++;
          if (startedAt > restartDone) report.okAfter++;
          if (report.ok === BEFORE && ++warmedUp === WORKERS) markWarm();
        }
        return report;
      };

      try {
        await within(pool.wait(), 10_000, "wait for min");
        const running = Array.from({ length: WORKERS }, (_, id) => worker(id));
        await within(warm, 30_000, "the workers warming up");
        const before = await backends(await getServer(), name);
        restartStart = performance.now();
        await s.restart();
        restartDone = performance.now();
        const reports = await within(Promise.all(running), 90_000, "the workers");

        const summary = reports.map((r) =>
          r.failures.map((f) =>
            `${f.kind}:${codeOf(f.error)}` +
            (f.startedAt < restartStart ? "(before)" : "")
          ).join(" ")
        );
        const count = (kind: Failure["kind"]) =>
          reports.map((r) => r.failures.filter((f) => f.kind === kind).length);
        console.log(
          `prePing ${prePing}: restart took ${Math.round(restartDone - restartStart)} ms; ` +
            `failed queries per worker ${count("query")}, failed checkouts per worker ` +
            `${count("checkout")}; connectionsLost ${pool.stats().connectionsLost}`,
        );
        for (const [id, r] of reports.entries()) {
          const what = `worker ${id} (${summary[id]})`;
          assert.equal(r.okAfter, AFTER, `${what} recovered`);
          for (const f of r.failures) {
            assert.ok(
              f.startedAt < restartDone,
              `${what}: a ${f.kind} started after the restart failed: ${show(f.error)}`,
            );
            if (f.kind === "query") {
              // Lost while running, or found closed when it was sent.
              const code = codeOf(f.error) ?? "";
              assert.ok(["CONNECTION_LOST", "CONNECTION_CLOSED"].includes(code), show(f.error));
            } else {
              const cause = codeOf(connectErrorOf(f.error));
              assert.ok(CONNECT_ERRORS.includes(cause ?? ""), `${what}: ${show(f.error)}`);
            }
          }
          const queries = r.failures.filter((f) => f.kind === "query").length;
          assert.ok(queries <= 1, `${what}: ${queries} failed queries`);
        }
        assert.deepEqual(
          (await backends(await getServer(), name)).filter((pid) => before.includes(pid)),
          [],
          "backends from before the restart",
        );
        assert.ok(pool.stats().poolSize <= 4, pool.status());
        await closeIdle(pool, name, unhandled);
      } finally {
        await pool.close();
      }
    },
  );
}

// ---------------------------------------------------------------------------------------------
// 5. Wrong password

test("QueuePool gives every waiter a wrong password's 28P01, not a timeout", T, async () => {
  using unhandled = watchUnhandled();
  const name = appName("bad_password");
  const pool = await queuePool(
    name,
    { poolSize: 5, maxOverflow: 0, timeout: 30_000 },
    { password: "wrong" },
  );
  try {
    const outcomes = await outcomesOf(pool, 10, "10 queries with a wrong password");
    for (const outcome of outcomes) assertPostgresError(outcome, "28P01");
    const stats = pool.stats();
    assert.equal(stats.requestsErrors, 10, pool.status());
    assert.ok(stats.connectionsErrors >= 1);
    assert.equal(stats.connectionsErrors, stats.connectionsNum);
    assertIdle(pool);
    assert.equal(stats.poolSize, 0);
  } finally {
    await within(pool.close(), 10_000, "close");
  }

  const waiting = await queuePool(
    appName("bad_password_min"),
    { poolSize: 2, min: 2, timeout: 30_000 },
    { password: "wrong" },
  );
  try {
    assertPostgresError(
      await within(rejection(waiting.wait({ timeout: 30_000 })), 15_000, "wait()"),
      "28P01",
    );
  } finally {
    await within(waiting.close(), 10_000, "close");
  }
  await assertNoUnhandled(unhandled);
});

test("QueuePool keeps every connection through a server ERROR of class 08 (08P01)", T, async () => {
  const name = appName("protocol_violation");
  const pool = await queuePool(name, { poolSize: 3, maxOverflow: 0, min: 3 });
  try {
    const closed: string[] = [];
    pool.on("close", (e) => closed.push(e.reason));
    await within(pool.wait(), 10_000, "wait for min");
    const before = await backends(await getServer(), name);
    // A Bind with fewer parameters than the statement: 08P01 at severity ERROR. The session
    // goes on, so the pool must not take it, or its neighbours, for dead.
    const errors = await Promise.all(
      [1, 2, 3].map(() => rejection(pool.query("select $1::int + $2::int as n", [1]))),
    );
    for (const error of errors) assertPostgresError(error, "08P01");
    assert.deepEqual(closed, []);
    assert.equal(pool.stats().connectionsLost, 0, pool.status());
    const pids = await Promise.all([1, 2, 3].map(() => pidOf(pool)));
    for (const pid of pids) assert.ok(before.includes(pid), `${pid} is one of ${before}`);
    assert.deepEqual(await backends(await getServer(), name), before);
  } finally {
    await pool.close();
  }
});

// ---------------------------------------------------------------------------------------------
// 6. Server down

test(
  "QueuePool checkouts wait for a server that is down, and time out with its connect error",
  T,
  async () => {
    using unhandled = watchUnhandled();
    const url = await closedUrl();
    const pool = new QueuePool((signal) => connect(url, { signal }), {
      poolSize: 2,
      maxOverflow: 0,
      timeout: 1500,
    });
    try {
      const outcomes = await outcomesOf(pool, 5, "queries against a closed port");
      for (const outcome of outcomes) {
        assert.ok(outcome instanceof PoolError, show(outcome));
        assert.equal(outcome.code, "POOL_TIMEOUT", show(outcome));
        assert.ok(outcome.cause instanceof ConnectionError, show(outcome));
        assert.equal(outcome.cause.code, "CONNECT_FAILED", show(outcome));
        assert.match(outcome.message, /the last connect attempt failed: Could not connect/);
      }
      assertIdle(pool);
      assert.equal(pool.stats().requestsErrors, 5);
      // Retried while they waited, one attempt at a time: a handful, not one per caller each.
      const attempts = pool.stats().connectionsNum;
      assert.ok(attempts >= 3 && attempts <= 12, pool.status());
    } finally {
      await within(pool.close(), 10_000, "close");
    }
    await assertNoUnhandled(unhandled);
  },
);

test("QueuePool gives up reconnecting for min after reconnectTimeout", T, async () => {
  using unhandled = watchUnhandled();
  const url = await closedUrl();
  const failed: QueuePool<Connection>[] = [];
  let gaveUp!: () => void;
  const givenUp = new Promise<void>((resolve) => gaveUp = resolve);
  const pool: QueuePool<Connection> = new QueuePool((signal) => connect(url, { signal }), {
    poolSize: 2,
    min: 2,
    reconnectTimeout: 1500,
    maintenanceInterval: 50,
    reconnectFailed: (p) => {
      failed.push(p);
      gaveUp();
    },
  });
  const errors: string[] = [];
  pool.on("error", (e) => errors.push(e.context));
  try {
    const waited = await within(rejection(pool.wait({ timeout: 300 })), 10_000, "wait()");
    assert.ok(waited instanceof PoolError, show(waited));
    assert.equal(waited.code, "POOL_TIMEOUT");
    assert.equal(codeOf(waited.cause), "CONNECT_FAILED", show(waited));

    await within(givenUp, 20_000, "reconnectFailed");
    assert.equal(failed.length, 1);
    assert.equal(failed[0], pool);
    assert.ok(errors.includes("connect"), show(errors));
    assert.equal(errors.filter((c) => c === "reconnect failed").length, 1, show(errors));
    // Once given up, the pool stops trying in the background.
    const attempts = pool.stats().connectionsNum;
    await delay(300);
    assert.equal(pool.stats().connectionsNum, attempts, pool.status());
    assert.equal(failed.length, 1);
  } finally {
    await within(pool.close(), 10_000, "close");
  }
  await assertNoUnhandled(unhandled);
});

// ---------------------------------------------------------------------------------------------
// 7. Transactions and reset on return

test("QueuePool transactions commit, roll back, and reset on return", T, async () => {
  const name = appName("tx");
  const table = uniqueName("pit_tx");
  const pool = await queuePool(name, { poolSize: 1, maxOverflow: 0 });
  const committing = await queuePool(`${name}_commit`, {
    poolSize: 1,
    maxOverflow: 0,
    resetOnReturn: "commit",
  });
  const ids = async (): Promise<number[]> => {
    const { rows } = await pool.query<{ id: number }>(`select id from ${table} order by id`);
    return rows.map((r) => r.id);
  };
  try {
    await pool.query(`create table ${table} (id int primary key)`);

    assert.equal(
      await pool.transaction(async (c) => {
        await c.query(`insert into ${table} values (1)`);
        assert.equal(c.transactionStatus, "transaction");
        return "done";
      }),
      "done",
    );
    assert.deepEqual(await ids(), [1]);

    const thrown = new Error("no thanks");
    const rolledBack = await rejection(pool.transaction(async (c) => {
      await c.query(`insert into ${table} values (2)`);
      throw thrown;
    }));
    assert.equal(rolledBack, thrown);
    assert.deepEqual(await ids(), [1]);

    const swallowed = await rejection(pool.transaction(async (c) => {
      await c.query(`insert into ${table} values (3)`);
      assertPostgresError(await rejection(c.query(`insert into ${table} values (1)`)), "23505");
    }));
    assert.ok(swallowed instanceof PoolError, show(swallowed));
    assert.equal(swallowed.code, "ROLLED_BACK");
    assert.deepEqual(await ids(), [1]);

    const isolated = await pool.transaction(async (c) => {
      const { rows } = await c.query<{ level: string }>(
        "select current_setting('transaction_isolation') as level",
      );
      return rows[0].level;
    }, { isolation: "serializable", readOnly: true });
    assert.equal(isolated, "serializable");

    // Returned inside an open transaction: rolled back before the next user gets it.
    const resets: string[] = [];
    pool.on("reset", (e) => resets.push(e.action));
    const dirty = await pool.connect();
    const pid = dirty.connection.processId;
    await dirty.query("begin");
    await dirty.query(`insert into ${table} values (4)`);
    await dirty.release();
    const next = await pool.connect();
    try {
      assert.equal(next.connection.processId, pid, "the pool of one hands out the same one");
      assert.equal(next.transactionStatus, "idle");
      const { rows } = await next.query(`select id from ${table} where id = 4`);
      assert.deepEqual(rows, []);
    } finally {
      await next.release();
    }
    assert.deepEqual(resets, ["rollback"]);

    // A failed transaction is rolled back the same way.
    const failed = await pool.connect();
    await failed.query("begin");
    await rejection(failed.query("select 1/0"));
    assert.equal(failed.transactionStatus, "failed");
    await failed.release();
    assert.deepEqual(await ids(), [1]);
    assert.deepEqual(resets, ["rollback", "rollback"]);

    // resetOnReturn "commit" commits it instead.
    const committed = await committing.connect();
    await committed.query("begin");
    await committed.query(`insert into ${table} values (5)`);
    await committed.release();
    const again = await committing.connect();
    try {
      assert.equal(again.transactionStatus, "idle");
    } finally {
      await again.release();
    }
    assert.deepEqual(await ids(), [1, 5]);
    assertIdle(pool);
    assertIdle(committing);
  } finally {
    await pool.query(`drop table if exists ${table}`).catch(() => {});
    await within(pool.close(), 10_000, "close");
    await within(committing.close(), 10_000, "close");
  }
  await noBackendsLeft(name);
  await noBackendsLeft(`${name}_commit`);
});

// ---------------------------------------------------------------------------------------------
// 8. maxLifetime

test("QueuePool replaces connections past maxLifetime and refills min", T, async () => {
  using unhandled = watchUnhandled();
  const name = appName("lifetime");
  const pool = await queuePool(name, {
    poolSize: 2,
    maxOverflow: 0,
    min: 2,
    maxLifetime: 300,
    maintenanceInterval: 50,
  });
  try {
    let connects = 0;
    const retired: string[] = [];
    pool.on("connect", () => connects++);
    pool.on("close", (e) => retired.push(e.reason));
    await within(pool.wait(), 10_000, "wait for min");
    const first = await backends(await getServer(), name);
    assert.equal(first.length, 2);
    const firstServed = await pidOf(pool);
    assert.ok(first.includes(firstServed));

    // Two rounds of retirement: 4 closed for their age, 6 made in all.
    await eventually("two rounds of retirement", () => {
      return retired.filter((r) => r === "lifetime").length >= 4 && connects >= 6;
    });
    assert.deepEqual(retired.filter((r) => r !== "lifetime"), []);
    await eventually("min refilled", () => pool.stats().checkedIn === 2);
    const later = await pidOf(pool);
    assert.ok(!first.includes(later), `pid ${later} is one of the first ${first}`);
    await eventually("the first backends gone", async () => {
      const now = await backends(await getServer(), name);
      return now.length <= 2 && now.every((pid) => !first.includes(pid));
    });
    await closeIdle(pool, name, unhandled);
  } finally {
    await pool.close();
  }
});

test("QueuePool opens min connections at start, before any wait() or checkout", T, async () => {
  const name = appName("min_at_start");
  const pool = await queuePool(name, { poolSize: 3, maxOverflow: 0, min: 2 });
  try {
    // `min` connections open at start, without wait() or a checkout.
    await eventually(
      "min connections open",
      async () => (await backends(await getServer(), name)).length === 2,
    );
    assert.equal(pool.stats().checkedIn, 2, pool.status());
  } finally {
    await within(pool.close(), 10_000, "close");
  }
  await noBackendsLeft(name);
});

// ---------------------------------------------------------------------------------------------
// 9. NullPool

test("NullPool opens a backend per checkout and closes it on return", T, async () => {
  const name = appName("null");
  const pool = await nullPool(name, { max: 3 });
  try {
    const pids: number[] = [];
    for (let i = 0; i < 5; i++) {
      pids.push(await pidOf(pool));
      await noBackendsLeft(name);
    }
    assert.equal(new Set(pids).size, 5, `pids ${pids}`);
    assert.equal(pool.stats().connectionsNum, 5);
    assert.equal(pool.stats().poolSize, 0);
  } finally {
    await within(pool.close(), 10_000, "close");
  }
});

test("NullPool keeps to max under 50 concurrent queries", T, async () => {
  const name = appName("null_max");
  const pool = await nullPool(name, { max: 3 });
  try {
    const { peakOpen, peakBackends, open } = await concurrentQueries(
      pool,
      name,
      50,
      "select $1::int as n from pg_sleep(0.005)",
    );
    assert.ok(peakOpen <= 3, `${peakOpen} connections open at once`);
    assert.ok(peakBackends <= 3, `${peakBackends} backends seen at once`);
    assert.equal(open, 0);
    assertIdle(pool);
    assert.equal(pool.stats().poolSize, 0);
    await noBackendsLeft(name);
  } finally {
    await within(pool.close(), 10_000, "close");
  }
});

// ---------------------------------------------------------------------------------------------
// 10. close() with a connection still out

test("QueuePool close with a checked-out connection closes it after the timeout", T, async () => {
  const name = appName("close_held");
  const pool = await queuePool(name, { poolSize: 2, maxOverflow: 0 });
  try {
    const held = await pool.connect();
    await held.query("select 1");
    await pool.query("select 1"); // a second connection, idle
    const closeReasons: string[] = [];
    pool.on("close", (e) => closeReasons.push(e.reason));
    await within(pool.close({ timeout: 200 }), 10_000, "close");
    assert.ok(pool.closed);
    assert.deepEqual(closeReasons, ["pool closed", "pool closed"]);
    const after = await rejection(held.query("select 1"));
    assert.equal(codeOf(after), "CONNECTION_CLOSED", show(after));
    await held.release(); // returning it to a closed pool is fine
    const checkout = await rejection(pool.connect());
    assert.equal(codeOf(checkout), "POOL_CLOSED", show(checkout));
    await noBackendsLeft(name);
  } finally {
    await pool.close();
  }
});

test("QueuePool close does not wait for a query still running after the timeout", T, async () => {
  const name = appName("close_busy");
  const pool = await queuePool(name, { poolSize: 1, maxOverflow: 0 });
  const held = await pool.connect();
  const pid = held.connection.processId;
  const sleeping = rejection(held.query("select pg_sleep(30)"));
  try {
    await waitUntilActive(pid);
    // After the grace period the connection is closed at once (not gracefully, which would wait
    // for the running pg_sleep(30)), and the statement is cancelled on the server.
    await within(pool.close({ timeout: 200 }), 10_000, "close({ timeout: 200 })");
    const outcome = await within(sleeping, 10_000, "the running query");
    assert.ok(!(outcome instanceof Resolved), show(outcome));
    await noBackendsLeft(name);
  } finally {
    // Whatever happened, do not leave the sleeping backend behind.
    await terminate(await backends(await getServer(), name)).catch(() => {});
    await sleeping;
    await held.release();
    await pool.close();
  }
});
