// Unit tests of the pool rules (src/pool/), with the fakes of tests/_fake.ts: an in-memory
// connection and a clock that only moves when a test advances it, so no test waits on real time.

import { test } from "node:test";
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import process from "node:process";
import {
  AssertionPool,
  ContextPool,
  manage,
  NullPool,
  type NullPoolOptions,
  type Pool,
  type PooledConnection,
  PoolError,
  type PoolEvents,
  type PoolLogger,
  QueuePool,
  type QueuePoolOptions,
  StaticPool,
} from "../mod.ts";
import {
  authError,
  CodedError,
  DisconnectError,
  fakeAdapter,
  FakeClock,
  type FakeConnection,
  FakeServer,
  flush,
  tick,
} from "./_fake.ts";
import { codeOf, errorOf, watch } from "./_helpers.ts";
import { RequestPool } from "../src/pool/_request_pool.ts";

const T = { timeout: 20_000 };

// ---------------------------------------------------------------------------------------------
// Helpers

type Events = PoolEvents<FakeConnection>;

function setup(options: Partial<QueuePoolOptions<FakeConnection>> = {}) {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const pool = new QueuePool(server.creator, { adapter: fakeAdapter, clock, ...options });
  return { clock, server, pool };
}

/** `setup()` for a NullPool. */
function nullSetup(options: Partial<NullPoolOptions<FakeConnection>> = {}) {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const pool = new NullPool(server.creator, { adapter: fakeAdapter, clock, ...options });
  return { clock, server, pool };
}

/** A RequestPool (createPool's NullPool on Workers) over a fake server. */
function requestSetup(options: Partial<NullPoolOptions<FakeConnection>> = {}) {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const pool = new RequestPool(server.creator, { adapter: fakeAdapter, clock, ...options });
  return { clock, server, pool };
}

/** Every payload of `event`, in order. */
function collect<K extends keyof Events>(pool: Pool<FakeConnection>, event: K): Events[K][] {
  const list: Events[K][] = [];
  pool.on(event, (value) => list.push(value));
  return list;
}

/** The close reasons given for `connection`. */
function closeReasons(closes: Events["close"][], connection?: FakeConnection): string[] {
  return closes.filter((e) => connection === undefined || e.connection === connection)
    .map((e) => e.reason);
}

/** Closes a pool, letting its grace period pass on the fake clock. */
async function shut(pool: Pool<FakeConnection>, clock: FakeClock): Promise<void> {
  const done = pool.close({ timeout: 1000 });
  await clock.advance(1000);
  await done;
}

// ---------------------------------------------------------------------------------------------
// Timeouts

test(
  "QueuePool.connect rejects with POOL_TIMEOUT counting the pool, when it is full",
  T,
  async () => {
    const { clock, pool } = setup({ poolSize: 2, maxOverflow: 1, timeout: 1000 });
    const held = [await pool.connect(), await pool.connect(), await pool.connect()];
    const first = watch(pool.connect());
    const second = watch(pool.connect());
    await clock.advance(999);
    assert.equal(first.done, false);
    await clock.advance(1);
    assert.ok(first.failed && second.failed);
    const error = first.error as PoolError;
    assert.ok(error instanceof PoolError);
    assert.equal(error.code, "POOL_TIMEOUT");
    assert.equal(error.cause, undefined, "no connect failed, so no cause");
    assert.match(error.message, /timed out after 1000 ms/);
    assert.match(error.message, /1 others? waiting/);
    assert.equal(pool.stats().requestsErrors, 2);
    for (const c of held) await c.release();
    await shut(pool, clock);
    // The pool-size count excludes overflow: not "3 of 2 connections".
    assert.match(error.message, /2 of 2 connections and 1 of 1 overflow in use/);
  },
);

test(
  "QueuePool.connect waits out a refused connect and succeeds on the retry",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, timeout: 1000 });
    const errors = collect(pool, "error");
    const refused = new CodedError("ECONNREFUSED", "connection refused");
    server.failConnects(refused, 2);
    const p = watch(pool.connect());
    await flush();
    assert.equal(p.done, false, "a refused connect fails nobody: the caller waits");
    await clock.advance(300); // first backoff: 250 ms ± 10 %
    assert.equal(p.done, false);
    assert.equal(server.attempts, 2);
    await clock.advance(600); // then 500 ms ± 10 %
    assert.equal(p.failed, false);
    assert.equal(p.done, true, "served by the third attempt, within its deadline");
    assert.equal(errors.filter((e) => e.context === "connect").length, 2);
    await (p.value as PooledConnection<FakeConnection>).release();
    await shut(pool, clock);
  },
);

test(
  "QueuePool.connect timeout carries the last connect error as cause, when connects keep failing",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, timeout: 1000 });
    const refused = new CodedError("ECONNREFUSED", "connection refused");
    server.failConnects(refused);
    const p = watch(pool.connect());
    await clock.advance(1000);
    assert.ok(p.failed);
    assert.equal(codeOf(p.error), "POOL_TIMEOUT");
    assert.equal((p.error as Error).cause, refused);
    assert.match((p.error as Error).message, /connection refused/);
    assert.ok(server.attempts >= 3 && server.attempts <= 4, `${server.attempts} attempts`);
    // The timed-out caller was the only one: no more attempts for nobody.
    const attempts = server.attempts;
    await clock.advance(10_000);
    assert.equal(server.attempts, attempts);
    await shut(pool, clock);
  },
);

test(
  "QueuePool.connect fails at once on a connect error that retrying will not fix",
  T,
  async () => {
    const { clock, server, pool } = setup({ timeout: 1000 });
    const denied = authError();
    server.failConnects(denied, 1);
    assert.equal(await errorOf(pool.connect()), denied);
    assert.equal(server.attempts, 1);
    await shut(pool, clock);
  },
);

test(
  "QueuePool retries one attempt at a time while connecting fails, then connects for all",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 5, maxOverflow: 0, timeout: 5000 });
    server.failConnects(new CodedError("57P03", "the database system is starting up"), 3);
    const callers = [1, 2, 3, 4, 5].map(() => watch(pool.connect()));
    await flush();
    const first = server.attempts; // the first wave, before anything failed
    await clock.advance(250 * 1.1);
    await clock.advance(500 * 1.1);
    await clock.advance(1000 * 1.1);
    await flush();
    assert.ok(callers.every((c) => c.done && !c.failed), "every caller is served");
    // After the first failures, one probe per backoff delay, then the rest at once.
    assert.ok(server.attempts - first <= 5 + 1, `${server.attempts} attempts`);
    for (const c of callers) await (c.value as PooledConnection<FakeConnection>).release();
    await shut(pool, clock);
  },
);

test("connect timeout option overrides the pool's timeout, per checkout", T, async () => {
  const { clock, server, pool } = setup({ timeout: 10_000 });
  server.connectDelay = 5000;
  const p = watch(pool.connect({ timeout: 200 }));
  await clock.advance(200);
  assert.equal(codeOf(p.error), "POOL_TIMEOUT");
  await clock.advance(5000);
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// Overflow, order, waiting

test("QueuePool opens up to poolSize + maxOverflow and closes overflow on checkin", T, async () => {
  const { clock, pool } = setup({ poolSize: 2, maxOverflow: 1, timeout: 1000 });
  const closes = collect(pool, "close");
  const held = [await pool.connect(), await pool.connect(), await pool.connect()];
  let s = pool.stats();
  assert.deepEqual([s.checkedOut, s.checkedIn, s.overflow, s.poolSize], [3, 0, 1, 3]);
  const fourth = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(fourth.error), "POOL_TIMEOUT");
  await held[0].release();
  await held[1].release();
  assert.equal(closes.length, 0);
  await held[2].release();
  assert.deepEqual(closeReasons(closes), ["overflow"]);
  assert.equal(closes[0].connection, held[2].connection);
  s = pool.stats();
  assert.deepEqual([s.checkedOut, s.checkedIn, s.overflow, s.poolSize], [0, 2, 0, 2]);
  await shut(pool, clock);
});

test("QueuePool with maxOverflow -1 has no limit", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: -1 });
  assert.equal(pool.stats().poolMax, Infinity);
  const held = await Promise.all(Array.from({ length: 30 }, () => pool.connect()));
  assert.equal(server.created.length, 30);
  assert.equal(pool.stats().overflow, 29);
  for (const c of held) await c.release();
  assert.equal(server.open.length, 1);
  await shut(pool, clock);
});

test("QueuePool serves waiters in FIFO order", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  const order: number[] = [];
  let held = await pool.connect();
  const waiting = [1, 2, 3].map((n) =>
    pool.connect().then((c) => {
      order.push(n);
      return c;
    })
  );
  for (let i = 0; i < 3; i++) {
    await held.release();
    held = await waiting[i];
    assert.equal(held.connection, server.created[0]);
  }
  assert.deepEqual(order, [1, 2, 3]);
  await held.release();
  await shut(pool, clock);
});

test("QueuePool hands out idle connections FIFO by default and LIFO with lifo", T, async () => {
  for (const lifo of [false, true]) {
    const { clock, server, pool } = setup({ poolSize: 3, lifo });
    const held = [await pool.connect(), await pool.connect(), await pool.connect()];
    for (const c of held) await c.release();
    const next = await pool.connect();
    assert.equal(next.connection, lifo ? server.created[2] : server.created[0], `lifo ${lifo}`);
    await next.release();
    await shut(pool, clock);
  }
});

test("QueuePool.connect fails at once with TOO_MANY_WAITERS, beyond maxWaiting", T, async () => {
  const { clock, pool } = setup({ poolSize: 1, maxOverflow: 0, maxWaiting: 2 });
  const held = await pool.connect();
  const waiters = [watch(pool.connect()), watch(pool.connect())];
  const error = await errorOf(pool.connect());
  assert.equal(codeOf(error), "TOO_MANY_WAITERS");
  assert.match(String(error.message), /2 callers are already waiting/);
  assert.equal(pool.stats().requestsWaiting, 2);
  assert.equal(pool.stats().requestsErrors, 1);
  await held.release();
  await flush();
  assert.ok(waiters[0].done && !waiters[0].failed);
  await waiters[0].value!.release();
  await flush();
  await waiters[1].value!.release();
  await shut(pool, clock);
});

test("PooledConnection checkout is abandoned at once, when its AbortSignal aborts", T, async () => {
  const { clock, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  const held = await pool.connect();
  const controller = new AbortController();
  const waiting = watch(pool.connect({ signal: controller.signal }));
  assert.equal(pool.stats().requestsWaiting, 1);
  const reason = new Error("the request was cancelled");
  controller.abort(reason);
  await flush();
  assert.equal(waiting.error, reason);
  assert.equal(pool.stats().requestsWaiting, 0);
  await held.release();
  const s = pool.stats();
  assert.deepEqual([s.checkedIn, s.checkedOut, s.requestsWaiting], [1, 0, 0]);
  // An already aborted signal rejects without queueing.
  const aborted = AbortSignal.abort(reason);
  assert.equal(await errorOf(pool.connect({ signal: aborted })), reason);
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// One deadline

test("connect deadline covers waiting in the queue and connecting together", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, timeout: 1000 });
  server.connectDelay = 600;
  const first = watch(pool.connect());
  await clock.advance(600);
  const held = first.value!;
  const waiter = watch(pool.connect()); // at t=600, deadline t=1600
  await clock.advance(600); // t=1200: the connection is invalidated; a new one takes 600 ms
  held.invalidate();
  await clock.advance(399);
  assert.equal(waiter.done, false);
  await clock.advance(1); // t=1600
  assert.equal(codeOf(waiter.error), "POOL_TIMEOUT");
  await clock.advance(200); // the late connection arrives and waits idle
  const s = pool.stats();
  assert.deepEqual([s.poolSize, s.checkedIn, s.checkedOut], [1, 1, 0]);
  await held.release();
  await shut(pool, clock);
});

test("connect deadline covers waiting in the queue and the health check together", T, async () => {
  const { clock, server, pool } = setup({
    poolSize: 1,
    maxOverflow: 0,
    timeout: 1000,
    prePing: true,
  });
  const held = await pool.connect();
  server.created[0].pingDelay = 5000;
  const waiter = watch(pool.connect());
  await clock.advance(600);
  await held.release(); // handed to the waiter, which pings it for up to the 400 ms left
  await clock.advance(399);
  assert.equal(waiter.done, false);
  await clock.advance(1);
  assert.equal(codeOf(waiter.error), "POOL_TIMEOUT");
  await clock.advance(5000);
  assert.equal(pool.stats().checkedOut, 0);
  await shut(pool, clock);
});

test("a connect finishing after its waiter timed out goes idle, not leaked", T, async () => {
  const { clock, server, pool } = setup({ timeout: 1000 });
  server.connectDelay = 3000;
  const late = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(late.error), "POOL_TIMEOUT");
  assert.equal(pool.stats().poolSize, 1, "still connecting");
  await clock.advance(2000);
  const s = pool.stats();
  assert.deepEqual([s.poolSize, s.checkedIn, s.checkedOut, s.poolAvailable], [1, 1, 0, 1]);
  const next = await pool.connect();
  assert.equal(next.connection, server.created[0]);
  assert.equal(server.attempts, 1);
  await next.release();
  await shut(pool, clock);
});

test("a connect finishing after its waiter timed out goes to the next waiter", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, timeout: 1000 });
  server.connectDelay = 3000;
  const first = watch(pool.connect());
  await clock.advance(500);
  const second = watch(pool.connect({ timeout: 10_000 }));
  await clock.advance(500);
  assert.equal(codeOf(first.error), "POOL_TIMEOUT");
  await clock.advance(2000);
  assert.ok(second.done && !second.failed);
  assert.equal(second.value!.connection, server.created[0]);
  assert.equal(server.attempts, 1);
  await second.value!.release();
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// Health checks

test(
  "prePing retries on another connection and suspects the others, when a ping fails",
  T,
  async () => {
    const { clock, server, pool } = setup({ prePing: true });
    const invalidates = collect(pool, "invalidate");
    const closes = collect(pool, "close");
    const a = await pool.connect();
    const b = await pool.connect();
    await a.release();
    await b.release();
    const [c1, c2] = server.created;
    assert.deepEqual(c1.log, [], "a fresh connection is not pinged");
    c1.failNext(new DisconnectError());
    const conn = await pool.connect(); // no error for the caller
    assert.equal(conn.connection, c2, "the next idle one, pinged");
    assert.deepEqual(c1.log, [""]);
    assert.deepEqual(c2.log, [""]);
    assert.ok(c1.closed && !c2.closed, "one dead connection does not take the others with it");
    assert.deepEqual(closeReasons(closes, c1), ["invalidated"]);
    assert.equal(invalidates.length, 1);
    assert.ok(invalidates[0].error instanceof DisconnectError);
    await conn.release();
    await shut(pool, clock);
  },
);

test("prePing retry stays within the checkout deadline", T, async () => {
  const { clock, server, pool } = setup({ prePing: true, timeout: 1000 });
  await (await pool.connect()).release();
  server.created[0].failNext(new DisconnectError());
  server.connectDelay = 5000;
  const p = watch(pool.connect());
  await clock.advance(999);
  assert.equal(p.done, false);
  await clock.advance(1);
  assert.equal(codeOf(p.error), "POOL_TIMEOUT");
  await clock.advance(4000);
  await shut(pool, clock);
});

test("a health check cut short by the caller's deadline does not retire the pool", T, async () => {
  const { clock, server, pool } = setup({ prePing: true, timeout: 1000 });
  const held = [await pool.connect(), await pool.connect(), await pool.connect()];
  for (const c of held) await c.release();
  const [c1, c2, c3] = server.created;
  c1.pingDelay = 2000; // slow, not dead
  const checkout = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(checkout.error), "POOL_TIMEOUT");
  await clock.advance(2000);
  const survivors = [c2.closed, c3.closed];
  await shut(pool, clock);
  // A ping cut short by the caller's deadline says nothing about the connection or its elders:
  // treating it as dead would empty the pool (c2, c3 closed as stale) whenever a checkout times
  // out mid-ping under load.
  assert.deepEqual(survivors, [false, false]);
});

test(
  "a health check that does not answer within checkTimeout closes the connection, and the caller gets another",
  T,
  async () => {
    const { clock, server, pool } = setup({ prePing: true, checkTimeout: 500, timeout: 5000 });
    const closes = collect(pool, "close");
    const held = [await pool.connect(), await pool.connect()];
    for (const c of held) await c.release();
    const [c1, c2] = server.created;
    c1.pingDelay = 60_000; // a network gone silent
    const p = watch(pool.connect());
    await clock.advance(500);
    assert.ok(p.done && !p.failed, "served within its deadline");
    assert.equal((p.value as PooledConnection<FakeConnection>).connection, c2);
    assert.deepEqual(closeReasons(closes, c1), ["stuck"]);
    assert.equal(c1.closedHow, "force");
    await (p.value as PooledConnection<FakeConnection>).release();
    const s = pool.stats();
    assert.deepEqual([s.checkedOut, s.checkedIn], [0, 1], "its place is free");
    await shut(pool, clock);
  },
);

test(
  "a query aborted by its signal closes the connection and frees its place at once",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, timeout: 5000 });
    const closes = collect(pool, "close");
    const conn = await pool.connect();
    const c1 = server.created[0];
    c1.queryDelay = 60_000;
    const controller = new AbortController();
    const q = watch(conn.query("SELECT pg_sleep(60)", undefined, { signal: controller.signal }));
    const waiting = watch(pool.connect());
    controller.abort(new Error("client went away"));
    await flush();
    assert.equal((q.error as Error).message, "client went away");
    assert.deepEqual(closeReasons(closes, c1), ["stuck"]);
    assert.ok(waiting.done && !waiting.failed, "the waiter got a new connection at once");
    assert.equal((waiting.value as PooledConnection<FakeConnection>).connection, server.created[1]);
    const after = await errorOf(conn.query("SELECT 1"));
    assert.ok(after instanceof Error, "the holder's handle no longer works");
    await conn.release(); // still fine to release
    await (waiting.value as PooledConnection<FakeConnection>).release();
    await shut(pool, clock);
  },
);

test("prePing failing with a disconnect error counts the connection as lost", T, async () => {
  const { clock, server, pool } = setup({ prePing: true });
  await (await pool.connect()).release();
  server.created[0].failNext(new DisconnectError());
  await (await pool.connect()).release();
  // connectionsLost counts "connections failing with a disconnect error", pings included.
  assert.equal(pool.stats().connectionsLost, 1);
  await shut(pool, clock);
});

test("check callback rejecting a connection retries with another one", T, async () => {
  const bad = new Set<FakeConnection>();
  const checked: FakeConnection[] = [];
  const { clock, server, pool } = setup({
    check: (c) => {
      checked.push(c);
      if (bad.has(c)) throw new Error("not usable");
    },
  });
  const closes = collect(pool, "close");
  const a = await pool.connect();
  const b = await pool.connect();
  await a.release();
  await b.release();
  assert.deepEqual(checked, [], "fresh connections are not checked");
  bad.add(server.created[0]);
  const conn = await pool.connect();
  assert.equal(conn.connection, server.created[1], "the next one, checked too");
  assert.deepEqual(checked, [server.created[0], server.created[1]]);
  assert.deepEqual(closeReasons(closes, server.created[0]), ["invalidated"]);
  assert.deepEqual(closeReasons(closes, server.created[1]), []);
  await conn.release();
  await shut(pool, clock);
});

test("configure runs once on every new connection, before its first use", T, async () => {
  const configured: number[] = [];
  const { clock, server, pool } = setup({
    configure: async (c) => {
      await Promise.resolve();
      configured.push(c.id);
    },
  });
  const connects = collect(pool, "connect");
  pool.on("connect", (e) => assert.ok(configured.includes(e.connection.id)));
  const a = await pool.connect();
  const b = await pool.connect();
  await a.release();
  await b.release();
  await (await pool.connect()).release();
  assert.deepEqual(configured, [1, 2]);
  assert.equal(connects.length, 2);
  // A failing configure fails the connect, and the connection is closed.
  const failing = setup({
    configure: () => {
      throw new Error("SET failed");
    },
  });
  const error = await errorOf(failing.pool.connect());
  assert.equal(error.message, "SET failed");
  assert.equal(failing.server.created[0].closed, true);
  assert.equal(failing.pool.stats().connectionsErrors, 1);
  await shut(failing.pool, failing.clock);
  assert.equal(server.created.length, 2);
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// Reset on return

test("release of an idle connection makes no round trip", T, async () => {
  const { clock, server, pool } = setup();
  const resets = collect(pool, "reset");
  const c = await pool.connect();
  await c.release();
  assert.deepEqual(server.created[0].log, []);
  assert.deepEqual(resets, []);
  await shut(pool, clock);
});

test("resetOnReturn rollback rolls back an open or failed transaction", T, async () => {
  for (const failed of [false, true]) {
    const { clock, server, pool } = setup();
    const resets = collect(pool, "reset");
    const c = await pool.connect();
    await c.query("BEGIN");
    if (failed) {
      c.connection.failNext(new CodedError("22012", "division by zero"));
      await errorOf(c.query("SELECT 1/0"));
      assert.equal(c.transactionStatus, "failed");
    }
    await c.release();
    const conn = server.created[0];
    assert.equal(conn.log.at(-1), "ROLLBACK");
    assert.equal(conn.status, "idle");
    assert.deepEqual(resets.map((e) => e.action), ["rollback"]);
    const next = await pool.connect();
    assert.equal(next.connection, conn);
    assert.equal(next.transactionStatus, "idle");
    await next.release();
    await shut(pool, clock);
  }
});

test(
  "resetOnReturn commit commits an open transaction and rolls back a failed one",
  T,
  async () => {
    const { clock, server, pool } = setup({ resetOnReturn: "commit" });
    const resets = collect(pool, "reset");
    const c = await pool.connect();
    await c.query("BEGIN");
    await c.release();
    assert.deepEqual(server.created[0].log, ["BEGIN", "COMMIT"]);
    const d = await pool.connect();
    await d.query("BEGIN");
    d.connection.failNext(new CodedError("23505", "duplicate key"));
    await errorOf(d.query("INSERT"));
    await d.release();
    assert.equal(server.created[0].log.at(-1), "ROLLBACK");
    assert.deepEqual(resets.map((e) => e.action), ["commit", "rollback"]);
    await shut(pool, clock);
  },
);

test("resetOnReturn none closes a connection returned inside a transaction", T, async () => {
  const { clock, server, pool } = setup({ resetOnReturn: "none" });
  const closes = collect(pool, "close");
  const c = await pool.connect();
  await c.query("BEGIN");
  await c.release();
  assert.deepEqual(server.created[0].log, ["BEGIN"], "no ROLLBACK sent");
  assert.equal(server.created[0].closed, true);
  assert.deepEqual(closeReasons(closes), ["reset failed"]);
  assert.equal(pool.stats().returnsBad, 1);
  const next = await pool.connect();
  assert.equal(next.connection, server.created[1]);
  assert.equal(next.transactionStatus, "idle");
  await next.release();
  await shut(pool, clock);
});

test("reset callback runs on every return, after the rollback", T, async () => {
  const calls: string[] = [];
  const { clock, server, pool } = setup({
    reset: (c) => {
      calls.push(`${c.status}:${c.log.at(-1) ?? "-"}`);
    },
  });
  const resets = collect(pool, "reset");
  const c = await pool.connect();
  await c.release();
  const d = await pool.connect();
  await d.query("BEGIN");
  await d.release();
  assert.deepEqual(calls, ["idle:-", "idle:ROLLBACK"]);
  assert.deepEqual(resets.map((e) => e.action), ["callback", "rollback", "callback"]);
  assert.equal(server.created.length, 1);
  await shut(pool, clock);
});

test("a failed reset closes the connection and min replaces it", T, async () => {
  const { clock, server, pool } = setup({ min: 1 });
  const errors = collect(pool, "error");
  const closes = collect(pool, "close");
  const c = await pool.connect();
  await c.query("BEGIN");
  c.connection.failNext(new Error("rollback failed"));
  await c.release();
  assert.deepEqual(closeReasons(closes), ["reset failed"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].context, "reset");
  assert.equal(pool.stats().returnsBad, 1);
  await flush();
  assert.equal(server.created.length, 2, "replaced");
  assert.equal(pool.stats().checkedIn, 1);
  const next = await pool.connect();
  assert.equal(next.connection, server.created[1]);
  await next.release();
  // A throwing reset callback does the same.
  const failing = setup({
    reset: () => {
      throw new Error("DISCARD ALL failed");
    },
  });
  await (await failing.pool.connect()).release();
  assert.equal(failing.server.created[0].closed, true);
  assert.equal(failing.pool.stats().returnsBad, 1);
  await shut(failing.pool, failing.clock);
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// min, lifetime, idle, recycle

test("QueuePool opens min connections at start, before any checkout", T, async () => {
  const { clock, server, pool } = setup({ min: 2 });
  await flush();
  // `min` connections open at start, before any connect() or wait(), as psycopg does.
  assert.equal(server.attempts, 2);
  await shut(pool, clock);
});

test("Pool.wait resolves once min connections are open", T, async () => {
  const { clock, server, pool } = setup({ min: 3 });
  server.connectDelay = 100;
  const ready = watch(pool.wait());
  await clock.advance(99);
  assert.equal(ready.done, false);
  await clock.advance(1);
  assert.ok(ready.done && !ready.failed);
  assert.equal(pool.stats().checkedIn, 3);
  await pool.wait(); // already at min
  await shut(pool, clock);
});

test(
  "Pool.wait rejects at once with the error, when connecting fails for a config error",
  T,
  async () => {
    const { clock, server, pool } = setup({ min: 2, timeout: 30_000 });
    const denied = authError();
    server.failConnects(denied);
    const error = await errorOf(pool.wait());
    assert.equal(error, denied);
    assert.equal(clock.now(), 0, "no time passed");
    await shut(pool, clock);
  },
);

test(
  "Pool.wait rejects with POOL_TIMEOUT and the last error, when connecting keeps failing",
  T,
  async () => {
    const { clock, server, pool } = setup({ min: 1 });
    const refused = new CodedError("ECONNREFUSED", "connection refused");
    server.failConnects(refused);
    const ready = watch(pool.wait({ timeout: 5000 }));
    await clock.advance(4999);
    assert.equal(ready.done, false);
    await clock.advance(1);
    assert.equal(codeOf(ready.error), "POOL_TIMEOUT");
    assert.equal((ready.error as Error).cause, refused);
    assert.match((ready.error as Error).message, /0 of 1 connections open after 5000 ms/);
    await shut(pool, clock);
  },
);

test("QueuePool retires connections after maxLifetime and refills to min", T, async () => {
  const { clock, server, pool } = setup({ min: 2, maxLifetime: 10_000 });
  clock.randomValue = 0;
  const closes = collect(pool, "close");
  await pool.wait();
  await clock.advance(9_999);
  assert.equal(server.open.length, 2);
  await clock.advance(1_001);
  assert.deepEqual(closeReasons(closes), ["lifetime", "lifetime"]);
  assert.equal(server.created.length, 4);
  assert.deepEqual(server.open, server.created.slice(2));
  assert.equal(pool.stats().checkedIn, 2);
  await shut(pool, clock);
});

test("QueuePool maxLifetime has up to 5 % jitter, from clock.random", T, async () => {
  for (const [random, earliest, latest] of [[0, 100_000, 100_010], [0.99, 95_000, 95_070]]) {
    const { clock, server, pool } = setup({ maxLifetime: 100_000, maintenanceInterval: 10 });
    clock.randomValue = random;
    const closes = collect(pool, "close");
    let closedAt = -1;
    pool.on("close", () => closedAt = clock.now());
    await (await pool.connect()).release();
    await clock.advanceTo(earliest - 1);
    assert.equal(server.open.length, 1, `random ${random}: still open at ${earliest - 1}`);
    await clock.advanceTo(latest);
    assert.deepEqual(closeReasons(closes), ["lifetime"], `random ${random}`);
    assert.ok(closedAt >= earliest && closedAt <= latest, `random ${random}: ${closedAt}`);
    await shut(pool, clock);
  }
});

test("QueuePool closes a connection past maxLifetime when it is returned", T, async () => {
  const { clock, server, pool } = setup({ maxLifetime: 10_000 });
  clock.randomValue = 0;
  const closes = collect(pool, "close");
  const c = await pool.connect();
  await clock.advance(20_000);
  assert.equal(server.created[0].closed, false, "not under its user's feet");
  await c.release();
  assert.deepEqual(closeReasons(closes), ["lifetime"]);
  await shut(pool, clock);
});

test("QueuePool recycle replaces an old connection at checkout", T, async () => {
  const { clock, server, pool } = setup({ recycle: 5000, maintenanceInterval: 1_000_000 });
  const closes = collect(pool, "close");
  await (await pool.connect()).release();
  await clock.advance(4999);
  const young = await pool.connect();
  assert.equal(young.connection, server.created[0]);
  await young.release();
  await clock.advance(1);
  const c = await pool.connect();
  assert.equal(c.connection, server.created[1]);
  assert.ok(server.created[0].closed);
  assert.deepEqual(closeReasons(closes), ["lifetime"]);
  await c.release();
  await shut(pool, clock);
});

test("QueuePool maxIdle closes idle connections only above min", T, async () => {
  const { clock, server, pool } = setup({ min: 1, maxIdle: 60_000 });
  const closes = collect(pool, "close");
  const held = [await pool.connect(), await pool.connect(), await pool.connect()];
  for (const c of held) await c.release();
  await clock.advance(59_000);
  assert.equal(server.open.length, 3);
  await clock.advance(2_000);
  assert.deepEqual(closeReasons(closes), ["idle", "idle"]);
  assert.equal(server.open.length, 1);
  await clock.advance(600_000);
  assert.equal(server.open.length, 1, "min stays");
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// Reconnecting

test(
  "QueuePool backs off reconnecting, gives up after reconnectTimeout, resumes on checkout",
  T,
  async () => {
    let gaveUp = 0;
    let gaveUpAt = -1;
    const { clock, server, pool } = setup({
      min: 1,
      reconnectTimeout: 10_000,
      reconnectFailed: (p) => {
        assert.equal(p, pool);
        gaveUp++;
        gaveUpAt = clock.now();
      },
    });
    const errors = collect(pool, "error");
    server.failConnects(new CodedError("ECONNREFUSED", "connection refused"));
    const ready = watch(pool.wait({ timeout: 60_000 }));
    await clock.advance(60_000);
    assert.equal(codeOf(ready.error), "POOL_TIMEOUT");
    const times = server.attemptTimes;
    assert.ok(times.length >= 4, `attempts at ${times}`);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    for (let i = 1; i < gaps.length; i++) {
      assert.ok(gaps[i] > gaps[i - 1], `growing delays: ${gaps}`);
    }
    assert.equal(gaveUp, 1);
    assert.ok(gaveUpAt >= 10_000, `gave up at ${gaveUpAt}`);
    assert.equal(times.at(-1), gaveUpAt, "no attempt after giving up");
    assert.ok(errors.some((e) => e.context === "reconnect failed"));
    // A checkout tries again at once.
    server.stopFailing();
    const before = server.attempts;
    const c = await pool.connect();
    assert.equal(server.attempts, before + 1);
    await c.release();
    await shut(pool, clock);
  },
);

// ---------------------------------------------------------------------------------------------
// Disconnects and generations

test(
  "a disconnect error retires its connection and has the others pinged before reuse",
  T,
  async () => {
    const { clock, server, pool } = setup();
    const closes = collect(pool, "close");
    const invalidates = collect(pool, "invalidate");
    const held = await Promise.all([1, 2, 3, 4].map(() => pool.connect()));
    await held[0].release();
    await held[1].release();
    const [c1, c2, c3, c4] = server.created;
    const lost = new DisconnectError("terminating connection due to administrator command");
    c3.failNext(lost);
    const error = await errorOf(held[2].query("SELECT 1"));
    assert.equal(codeOf(error), "CONNECTION_LOST");
    assert.equal(error.cause, lost);
    assert.equal(invalidates.length, 1);
    assert.equal(invalidates[0].connection, c3);
    assert.ok(c3.closed);
    assert.ok(!c1.closed && !c2.closed && !c4.closed, "the others stay");
    assert.deepEqual(closeReasons(closes, c3), ["invalidated"]);
    await held[3].release();
    await held[2].release();
    assert.equal(pool.stats().connectionsLost, 1);
    // Each suspect is pinged once at its next checkout; a dead one is closed and the caller
    // served by the next. Idle order (FIFO): c1, c2, c4.
    c1.failNext(new DisconnectError("server closed the connection unexpectedly"));
    const next = await pool.connect();
    assert.deepEqual(c1.log, [""]);
    assert.ok(c1.closed, "the dead one is closed");
    assert.equal(next.connection, c2);
    assert.deepEqual(c2.log, [""], "the one handed out was pinged first");
    await next.release();
    const third = await pool.connect();
    assert.equal(third.connection, c4);
    assert.deepEqual(c4.log, [""]);
    await third.release();
    // Proven since: no more pings.
    const fourth = await pool.connect();
    assert.equal(fourth.connection, c2);
    assert.deepEqual(c2.log, [""]);
    await fourth.release();
    await shut(pool, clock);
  },
);

test(
  "a server error that leaves the session (08P01) keeps the connection and the pool",
  T,
  async () => {
    const { clock, server, pool } = setup();
    const closes = collect(pool, "close");
    const held = await Promise.all([1, 2].map(() => pool.connect()));
    await held[1].release();
    const protocol = Object.assign(
      new Error('bind message supplies 1 parameters, but prepared statement "" requires 2'),
      {
        code: "08P01",
        severity: "ERROR",
      },
    );
    server.created[0].failNext(protocol);
    const error = await errorOf(held[0].query("SELECT $1, $2"));
    assert.equal(error, protocol, "the query's own error, not CONNECTION_LOST");
    await held[0].release();
    assert.deepEqual(closes, []);
    assert.equal(pool.stats().connectionsLost, 0);
    await shut(pool, clock);
  },
);

test("a connection closing by itself while idle is retired with an error event", T, async () => {
  const { clock, server, pool } = setup({ min: 1 });
  const errors = collect(pool, "error");
  const closes = collect(pool, "close");
  await pool.wait();
  const gone = new DisconnectError("server closed the connection unexpectedly");
  server.created[0].breakIt(gone);
  assert.deepEqual(closeReasons(closes), ["lost"]);
  assert.equal(errors.length, 1);
  const { error, context, connection } = errors[0];
  assert.deepEqual({ error, context, connection }, {
    error: gone,
    context: "idle",
    connection: server.created[0],
  });
  // An Error, as pg's pool emits: listeners written for pg read its message.
  assert.ok(errors[0] instanceof Error);
  assert.equal(errors[0].message, `idle: ${gone.message}`);
  assert.equal(errors[0].cause, gone);
  assert.equal(pool.stats().connectionsLost, 1);
  await flush();
  assert.equal(server.created.length, 2, "refilled to min");
  await shut(pool, clock);
});

test("a connection that broke while checked out is closed when returned", T, async () => {
  const { clock, server, pool } = setup();
  const closes = collect(pool, "close");
  const c = await pool.connect();
  server.created[0].breakIt();
  assert.equal(closes.length, 0);
  await c.release();
  assert.deepEqual(closeReasons(closes), ["returned broken"]);
  assert.equal(pool.stats().returnsBad, 1);
  await shut(pool, clock);
});

test("background errors never reach the process as unhandled rejections", T, async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const { clock, server, pool } = setup({ min: 2, timeout: 1000 });
    const errors = collect(pool, "error");
    server.failConnects(new CodedError("ECONNREFUSED", "refused"), 3);
    pool.wait().catch(() => {});
    await clock.advance(5000);
    const c = await pool.connect();
    await c.query("BEGIN");
    c.connection.failNext(new Error("rollback failed"));
    await c.release();
    server.open[0].breakIt();
    await clock.advance(5000);
    await tick();
    await tick();
    assert.ok(errors.some((e) => e.context === "connect"));
    assert.ok(errors.some((e) => e.context === "reset"));
    assert.ok(errors.some((e) => e.context === "idle"));
    assert.deepEqual(unhandled, []);
    await shut(pool, clock);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("a wrong password reaches every waiter as that error, not a timeout", T, async () => {
  for (const poolSize of [1, 5]) {
    const { clock, server, pool } = setup({ poolSize, maxOverflow: 0 });
    server.failConnects(authError());
    const waiters = [1, 2, 3].map(() => watch(pool.connect()));
    await flush();
    assert.equal(clock.now(), 0);
    for (const w of waiters) {
      assert.ok(w.failed, `poolSize ${poolSize}`);
      assert.equal(codeOf(w.error), "28P01");
    }
    const s = pool.stats();
    assert.equal(s.requestsErrors, 3);
    assert.equal(s.requestsWaiting, 0);
    await shut(pool, clock);
  }
});

// ---------------------------------------------------------------------------------------------
// The checkout handle

test("PooledConnection.release throws RELEASED the second time", T, async () => {
  const { clock, pool } = setup();
  const c = await pool.connect();
  await c.release();
  assert.equal(c.released, true);
  assert.throws(() => c.release(), (e) => codeOf(e) === "RELEASED");
  await assert.rejects(c.query("SELECT 1"), (e) => codeOf(e) === "RELEASED");
  assert.throws(() => c.invalidate(), (e) => codeOf(e) === "RELEASED");
  assert.throws(() => c.detach(), (e) => codeOf(e) === "RELEASED");
  await shut(pool, clock);
});

test("PooledConnection.close returns the connection to the pool and is idempotent", T, async () => {
  const { clock, server, pool } = setup();
  const checkins = collect(pool, "checkin");
  const c = await pool.connect();
  await c.close();
  await c.close();
  await c[Symbol.asyncDispose]();
  assert.equal(server.created[0].closed, false);
  assert.equal(checkins.length, 1);
  assert.equal(pool.stats().checkedIn, 1);
  await shut(pool, clock);
});

test("PooledConnection is returned by await using, on every path", T, async () => {
  const { clock, pool } = setup();
  {
    await using c = await pool.connect();
    assert.equal(pool.stats().checkedOut, 1);
    await c.query("SELECT 1");
  }
  assert.equal(pool.stats().checkedOut, 0);
  await assert.rejects(async () => {
    await using c = await pool.connect();
    await c.query("BEGIN");
    throw new Error("oops");
  });
  const s = pool.stats();
  assert.deepEqual([s.checkedOut, s.checkedIn], [0, 1]);
  const again = await pool.connect();
  assert.equal(again.transactionStatus, "idle");
  await again.release();
  await shut(pool, clock);
});

test("PooledConnection.invalidate closes the connection and frees its place", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  const invalidates = collect(pool, "invalidate");
  const closes = collect(pool, "close");
  const c = await pool.connect();
  const waiter = watch(pool.connect());
  const why = new Error("corrupt session");
  c.invalidate(why);
  assert.ok(server.created[0].closed);
  assert.equal(server.created[0].closedHow, "force");
  assert.deepEqual(invalidates.map((e) => e.error), [why]);
  assert.deepEqual(closeReasons(closes), ["invalidated"]);
  await flush();
  assert.equal(waiter.value!.connection, server.created[1], "a new connection for the waiter");
  await c.release(); // allowed once, does nothing more
  await waiter.value!.release();
  assert.equal(pool.stats().checkedIn, 1);
  await shut(pool, clock);
});

test("PooledConnection.invalidate soft keeps the connection until it is returned", T, async () => {
  const { clock, server, pool } = setup();
  const soft = collect(pool, "softInvalidate");
  const closes = collect(pool, "close");
  const c = await pool.connect();
  c.invalidate("schema changed", { soft: true });
  assert.equal(server.created[0].closed, false);
  assert.deepEqual(soft.map((e) => e.error), ["schema changed"]);
  await c.query("SELECT 1");
  await c.release();
  assert.ok(server.created[0].closed);
  assert.deepEqual(closeReasons(closes), ["invalidated"]);
  await shut(pool, clock);
});

test("PooledConnection.detach takes the connection out of the pool until released", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  const detaches = collect(pool, "detach");
  const closedDetached = collect(pool, "closeDetached");
  const c = await pool.connect();
  c.info.tag = "mine";
  c.detach();
  assert.equal(detaches.length, 1);
  assert.equal(detaches[0].connection, server.created[0]);
  assert.equal(detaches[0].info.tag, "mine");
  assert.equal(pool.stats().poolSize, 0);
  const other = await pool.connect(); // room for another
  assert.equal(other.connection, server.created[1]);
  await c.query("SELECT 1"); // still usable
  await c.release();
  assert.equal(closedDetached.length, 1);
  assert.equal(server.created[0].closedHow, "graceful");
  assert.throws(() => c.release(), (e) => codeOf(e) === "RELEASED");
  await other.release();
  await shut(pool, clock);
});

test("PooledConnection.info persists across checkouts of the same connection", T, async () => {
  const { clock, pool } = setup();
  const infos = collect(pool, "checkout");
  const c = await pool.connect();
  c.info.prepared = ["q1"];
  await c.release();
  const d = await pool.connect();
  assert.equal(d.connection, c.connection);
  assert.deepEqual(d.info.prepared, ["q1"]);
  assert.equal(infos[1].info, d.info);
  await d.release();
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// Events

test(
  "Pool.on fires connect, firstConnect once, checkout and checkin with their payloads",
  T,
  async () => {
    const { clock, server, pool } = setup();
    server.connectDelay = 300;
    const order: string[] = [];
    const checkouts = collect(pool, "checkout");
    const checkins = collect(pool, "checkin");
    const connects = collect(pool, "connect");
    const firsts = collect(pool, "firstConnect");
    pool.on("firstConnect", () => order.push("firstConnect"));
    const off = pool.on("connect", () => order.push("connect"));
    const p = [watch(pool.connect()), watch(pool.connect())];
    await clock.advance(300);
    off();
    const [a, b] = p.map((w) => w.value!);
    assert.deepEqual(order, ["firstConnect", "connect", "connect"]);
    assert.equal(firsts.length, 1);
    assert.equal(firsts[0].connection, server.created[0]);
    assert.deepEqual(connects.map((e) => e.connection), server.created);
    assert.deepEqual(checkouts.map((e) => e.waitedMs), [300, 300]);
    assert.deepEqual(checkouts.map((e) => e.connection), [a.connection, b.connection]);
    await a.release();
    assert.deepEqual(checkins.map((e) => e.connection), [a.connection]);
    assert.equal(checkins[0].info, a.info);
    await b.release();
    const c = await pool.connect();
    assert.equal(checkouts[2].waitedMs, 0);
    await c.release();
    assert.equal(firsts.length, 1);
    await shut(pool, clock);
  },
);

test(
  "leakDetectionThreshold warns once with the stack of a checkout served from idle",
  T,
  async () => {
    const warnings: unknown[] = [];
    const { clock, pool } = setup({
      leakDetectionThreshold: 5000,
      logger: { warn: (message, data) => warnings.push({ message, data }) },
    });
    const leaks = collect(pool, "leak");
    await (await pool.connect()).release();
    async function leakyIdleCaller() {
      return await pool.connect();
    }
    const c = await leakyIdleCaller();
    c.info.owner = "report job";
    await clock.advance(4000);
    assert.equal(leaks.length, 0);
    await clock.advance(3000);
    assert.equal(leaks.length, 1);
    assert.equal(leaks[0].reason, "threshold");
    assert.ok(leaks[0].heldMs >= 5000);
    assert.equal(leaks[0].info.owner, "report job");
    assert.match(leaks[0].stack ?? "", /leakyIdleCaller/);
    assert.equal(warnings.length, 1);
    await clock.advance(10_000);
    assert.equal(leaks.length, 1, "once per checkout");
    await c.release();
    await shut(pool, clock);
  },
);

test(
  "leakDetectionThreshold names the caller of a checkout that waited for a connection",
  T,
  async () => {
    const { clock, pool } = setup({ leakDetectionThreshold: 5000 });
    const leaks = collect(pool, "leak");
    await (await pool.connect()).release(); // upkeep is running (see the test above)
    const idle = await pool.connect();
    async function leakyNewCaller() {
      return await pool.connect();
    }
    const c = await leakyNewCaller();
    c.info.mark = "new";
    await clock.advance(7000);
    await c.release();
    await idle.release();
    await shut(pool, clock);
    assert.equal(leaks.length, 2);
    const leak = leaks.find((l) => l.info.mark === "new")!;
    // The stack is the caller's, taken in connect(): a checkout that waited is handed over from
    // a promise callback, whose stack would name only the pool's internals.
    assert.match(leak.stack ?? "", /leakyNewCaller/);
  },
);

test("leakDetectionThreshold warns about the first checkout of a new pool", T, async () => {
  const { clock, pool } = setup({ leakDetectionThreshold: 5000 });
  const leaks = collect(pool, "leak");
  const c = await pool.connect();
  await clock.advance(60_000);
  const seen = leaks.length;
  await c.release();
  await shut(pool, clock);
  // A new pool's first connection goes straight to its caller without ever being idle: upkeep
  // (and so leak detection) must run from the moment it exists.
  assert.equal(seen, 1);
});

const gc = (globalThis as { gc?: () => void }).gc;

test("a handle dropped without release is noticed by garbage collection and its slot freed", {
  ...T,
  skip: typeof gc !== "function" &&
    "needs globalThis.gc: run with --v8-flags=--expose-gc (Deno) or --expose-gc (Node)",
}, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, recordStacks: true });
  const leaks = collect(pool, "leak");
  await (await pool.connect()).release();
  async function forgetful() {
    const c = await pool.connect();
    await c.query("BEGIN");
  }
  await forgetful();
  assert.equal(pool.stats().checkedOut, 1);
  // A checkout is watched by garbage collection once it is still out at an upkeep tick.
  await clock.advance(1000);
  for (let i = 0; i < 20 && leaks.length === 0; i++) {
    gc!();
    await tick();
  }
  await flush();
  assert.equal(leaks.length, 1, "leak event");
  assert.equal(leaks[0].reason, "garbage-collected");
  assert.match(leaks[0].stack ?? "", /forgetful/);
  const s = pool.stats();
  assert.deepEqual([s.checkedOut, s.checkedIn], [0, 1]);
  const conn = server.created[0];
  assert.equal(conn.log.at(-1), "ROLLBACK", "reset, never handed out in a transaction");
  const next = await pool.connect();
  assert.equal(next.connection, conn);
  assert.equal(next.transactionStatus, "idle");
  await next.release();
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// Stats, status, logger

test("Pool.stats counts requests, waits, usage, bad returns and connections", T, async () => {
  const { clock, server, pool } = setup({
    poolSize: 1,
    maxOverflow: 1,
    timeout: 1000,
    resetOnReturn: "none",
    // Checkout and return times come from the clock as read at the last tick (or wait).
    maintenanceInterval: 50,
  });
  server.connectDelay = 100;
  // A checkout that waits 100 ms for a new connection, held 400 ms.
  let p = watch(pool.connect());
  await clock.advance(100);
  const a = p.value!;
  await clock.advance(400);
  await a.release();
  // Served from idle at once, returned inside a transaction (closed: resetOnReturn none).
  const b = await pool.connect();
  await b.query("BEGIN");
  await clock.advance(50);
  await b.release();
  // A connect that fails.
  server.failConnects(new Error("refused"), 1);
  p = watch(pool.connect());
  await clock.advance(100);
  assert.ok(p.failed);
  // Two connections at once: one in the pool and one overflow.
  p = watch(pool.connect());
  const q = watch(pool.connect());
  await clock.advance(100);
  const [c, d] = [p.value!, q.value!];
  let s = pool.stats();
  assert.deepEqual(
    [s.checkedOut, s.checkedIn, s.overflow, s.poolSize, s.poolAvailable],
    [2, 0, 1, 2, 0],
  );
  // A timeout while both are out.
  const late = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(late.error), "POOL_TIMEOUT");
  await c.release();
  s = pool.stats();
  assert.deepEqual([s.checkedOut, s.checkedIn, s.overflow], [1, 1, 1]);
  await d.release();
  // One idle connection lost.
  assert.equal(server.open.length, 1);
  server.open[0].breakIt();
  s = pool.stats();
  assert.deepEqual(
    {
      requestsNum: s.requestsNum,
      requestsQueued: s.requestsQueued,
      requestsWaitMs: s.requestsWaitMs,
      requestsErrors: s.requestsErrors,
      requestsWaiting: s.requestsWaiting,
      usageMs: s.usageMs,
      returnsBad: s.returnsBad,
      connectionsNum: s.connectionsNum,
      connectionsMs: s.connectionsMs,
      connectionsErrors: s.connectionsErrors,
      connectionsLost: s.connectionsLost,
      checkedIn: s.checkedIn,
      checkedOut: s.checkedOut,
      poolSize: s.poolSize,
    },
    {
      requestsNum: 6,
      requestsQueued: 5,
      requestsWaitMs: 300,
      requestsErrors: 2,
      requestsWaiting: 0,
      usageMs: 400 + 50 + 2 * 1000,
      returnsBad: 1,
      connectionsNum: 4,
      connectionsMs: 400,
      connectionsErrors: 1,
      connectionsLost: 1,
      checkedIn: 0,
      checkedOut: 0,
      poolSize: 0,
    },
  );
  assert.equal(s.poolMin, 0);
  assert.equal(s.poolMax, 2);
  await shut(pool, clock);
});

test("Pool.stats counts a waiter rejected by close() as a failed request", T, async () => {
  const { clock, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  const held = await pool.connect();
  const waiter = watch(pool.connect());
  const closing = pool.close({ timeout: 1000 });
  await flush();
  assert.equal(codeOf(waiter.error), "POOL_CLOSED");
  // requestsErrors counts checkouts failed by close() too ("pool closed" in its doc).
  assert.equal(pool.stats().requestsErrors, 1);
  await held.release();
  await clock.advance(1000);
  await closing;
});

test("Pool.status describes the pool in one line", T, async () => {
  const { clock, pool } = setup({ name: "main" });
  const a = await pool.connect();
  const b = await pool.connect();
  await b.release();
  assert.equal(
    pool.status(),
    "main: 2 connections (1 idle, 1 checked out, 0 connecting) of 15, 0 waiting",
  );
  await a.release();
  await shut(pool, clock);
  assert.match(pool.status(), /^main: 0 connections .*, closed$/);
  const unlimited = setup({ maxOverflow: -1, name: "u" });
  assert.match(unlimited.pool.status(), /^u: 0 connections .* of no limit, 0 waiting$/);
  await shut(unlimited.pool, unlimited.clock);
});

test("Pool.status names the pool class by default, also when bundled", T, async () => {
  const { clock, pool } = setup();
  const status = pool.status();
  await shut(pool, clock);
  // The default name is a fixed string per class: constructor names are renamed by bundlers
  // ("_QueuePool" in the esbuild test bundle, one letter in the minified ones).
  assert.match(status, /^QueuePool: /);
});

test("logger receives pool activity, and nothing is written without one", T, async () => {
  const messages: string[] = [];
  const logger: PoolLogger = {
    debug: (m) => messages.push(`debug ${m}`),
    info: (m) => messages.push(`info ${m}`),
    warn: (m) => messages.push(`warn ${m}`),
    error: (m) => messages.push(`error ${m}`),
  };
  const noisy = async (options: Partial<QueuePoolOptions<FakeConnection>>) => {
    const { clock, server, pool } = setup({ ...options, leakDetectionThreshold: 1000 });
    server.failConnects(new Error("refused"), 1);
    await errorOf(pool.connect());
    await (await pool.connect()).release();
    const c = await pool.connect();
    await clock.advance(2000); // leak warning
    c.invalidate(new Error("bad"));
    await c.release();
    const d = await pool.connect();
    await d.query("BEGIN");
    d.connection.failNext(new Error("rollback failed"));
    await d.release();
    await shut(pool, clock);
  };
  await noisy({ logger, name: "logged" });
  assert.ok(messages.some((m) => /^debug logged: connected/.test(m)), messages.join("\n"));
  assert.ok(messages.some((m) => /^warn logged: connecting failed: refused/.test(m)));
  assert.ok(messages.some((m) => /^warn logged: .*leakDetectionThreshold/.test(m)));
  assert.ok(messages.some((m) => /^info logged: invalidated/.test(m)));
  assert.ok(messages.some((m) => /^warn logged: .*reset failed/.test(m)));
  assert.ok(messages.some((m) => /^info logged: closing/.test(m)));
  // Silent by default.
  const written: unknown[] = [];
  const methods = ["log", "debug", "info", "warn", "error"] as const;
  const saved = methods.map((m) => console[m]);
  for (const m of methods) console[m] = (...args: unknown[]) => written.push(args);
  try {
    await noisy({});
  } finally {
    methods.forEach((m, i) => console[m] = saved[i]);
  }
  assert.deepEqual(written, []);
});

// ---------------------------------------------------------------------------------------------
// dispose, recreate, resize, close

test("Pool.dispose closes idle connections now and checked-out ones when returned", T, async () => {
  const { clock, server, pool } = setup();
  const closes = collect(pool, "close");
  const a = await pool.connect();
  const b = await pool.connect();
  await b.release();
  pool.dispose();
  assert.deepEqual(closeReasons(closes, server.created[1]), ["disposed"]);
  assert.equal(server.created[0].closed, false);
  await a.release();
  assert.ok(server.created[0].closed);
  const c = await pool.connect(); // still usable, with a fresh connection
  assert.equal(c.connection, server.created[2]);
  await c.release();
  assert.equal(pool.closed, false);
  await shut(pool, clock);
});

test("Pool.recreate gives an empty pool of the same class and settings", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0, name: "orig" });
  const a = await pool.connect();
  const fresh = pool.recreate();
  assert.ok(fresh instanceof QueuePool);
  assert.notEqual(fresh, pool);
  assert.equal(fresh.size, 1);
  assert.equal(fresh.stats().poolSize, 0);
  assert.match(fresh.status(), /^orig: /);
  const b = await fresh.connect();
  assert.equal(b.connection, server.created[1], "same creator");
  await b.release();
  await a.release();
  await shut(fresh, clock);
  await shut(pool, clock);
});

test("QueuePool.resize grows to serve waiters and shrinks idle connections", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  const closes = collect(pool, "close");
  const a = await pool.connect();
  const waiter = watch(pool.connect());
  pool.resize({ poolSize: 3 });
  assert.equal(pool.size, 3);
  await flush();
  assert.equal(waiter.value!.connection, server.created[1]);
  pool.resize({ min: 3 });
  await flush();
  assert.equal(server.created.length, 3);
  assert.equal(pool.stats().poolMin, 3);
  await a.release();
  await waiter.value!.release();
  assert.equal(pool.stats().checkedIn, 3);
  pool.resize({ poolSize: 1, min: 1 });
  assert.deepEqual(closeReasons(closes), ["overflow", "overflow"]);
  assert.equal(pool.stats().checkedIn, 1);
  assert.throws(() => pool.resize({ poolSize: 1, min: 2 }), RangeError);
  await shut(pool, clock);
});

test("Pool.close rejects waiters, closes idle now and busy after its timeout", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 2, maxOverflow: 0 });
  const closes = collect(pool, "close");
  const busy = await pool.connect();
  const idle = await pool.connect();
  const waiter = watch(pool.connect());
  await idle.release(); // goes to the waiter
  const waiting = watch(pool.connect());
  const closing = watch(pool.close({ timeout: 3000 }));
  await flush();
  assert.equal(pool.closed, true);
  assert.equal(codeOf(waiting.error), "POOL_CLOSED");
  await waiter.value!.release();
  assert.ok(server.created[1].closed, "returned after close: closed at once");
  await clock.advance(2999);
  assert.equal(closing.done, false);
  assert.equal(server.created[0].closed, false);
  await clock.advance(1);
  assert.ok(closing.done && !closing.failed);
  assert.ok(server.created[0].closed);
  assert.deepEqual(closeReasons(closes), ["pool closed", "pool closed"]);
  assert.equal(codeOf(await errorOf(pool.connect())), "POOL_CLOSED");
  assert.equal(codeOf(await errorOf(pool.query("SELECT 1"))), "POOL_CLOSED");
  assert.equal(codeOf(await errorOf(pool.wait())), "POOL_CLOSED");
  await busy.release(); // its user may still return it
  assert.equal(pool.close(), pool.close(), "idempotent");
  await pool.close();
});

test("Pool.close closes idle connections at once and aborts connects in flight", T, async () => {
  const { clock, server, pool } = setup({ min: 2 });
  const closes = collect(pool, "close");
  await pool.wait();
  server.connectDelay = 1000;
  server.created[0].breakIt(); // min refill starts a slow connect
  await flush();
  assert.equal(pool.stats().poolSize, 2, "one idle, one connecting");
  await pool.close();
  assert.ok(server.created[1].closed);
  assert.deepEqual(closeReasons(closes, server.created[1]), ["pool closed"]);
  assert.equal(server.attempts, 3);
  assert.equal(server.created.length, 2, "the aborted connect made nothing");
  assert.equal(pool.stats().poolSize, 0);
  assert.equal(clock.pending, 0, "no timers left");
});

test("Pool.close resolves as soon as the last busy connection is returned", T, async () => {
  const { clock, pool } = setup();
  const c = await pool.connect();
  const closing = watch(pool.close({ timeout: 10_000 }));
  await clock.advance(100);
  await c.release();
  await flush();
  assert.ok(closing.done);
});

test("Pool.close resolves as soon as the last busy connection is detached", T, async () => {
  const { clock, pool } = setup();
  const c = await pool.connect();
  const closing = watch(pool.close({ timeout: 10_000 }));
  await clock.advance(100);
  c.detach();
  await flush();
  // A detached connection is no longer the pool's: close() must not wait out its timeout for it.
  assert.ok(closing.done);
  await c.release();
  await clock.advance(10_000);
});

test("Pool.close rejects a checkout whose connection is being health-checked", T, async () => {
  const { clock, server, pool } = setup({ prePing: true });
  await (await pool.connect()).release();
  server.created[0].pingDelay = 500;
  const checkout = watch(pool.connect());
  await clock.advance(100);
  const closing = pool.close({ timeout: 1000 });
  await clock.advance(1000);
  await closing;
  // A caller whose connection is being pinged is out of the queue: close() must still reject it
  // with POOL_CLOSED, not hand it a connection of the closed pool (or a POOL_TIMEOUT later).
  assert.equal(codeOf(checkout.error), "POOL_CLOSED");
  if (checkout.value) await checkout.value.release();
});

test("Pool and PooledConnection support await using", T, async () => {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  let outer: QueuePool<FakeConnection>;
  {
    await using pool = new QueuePool(server.creator, { adapter: fakeAdapter, clock });
    outer = pool;
    {
      await using c = await pool.connect();
      await c.query("SELECT 1");
    }
    assert.equal(pool.stats().checkedIn, 1);
  }
  assert.equal(outer.closed, true);
  assert.ok(server.created[0].closed);
});

// ---------------------------------------------------------------------------------------------
// Queries and transactions

test("Pool.query checks out, runs and returns the connection", T, async () => {
  const { clock, server, pool } = setup();
  const result = await pool.query("SELECT 1", [1]);
  assert.equal(result.command, "SELECT");
  assert.deepEqual(result.rows, [{ sql: "SELECT 1", connection: 1 }]);
  assert.deepEqual(server.created[0].log, ["SELECT 1"]);
  assert.equal(pool.stats().checkedOut, 0);
  server.created[0].failNext(new CodedError("42601", "syntax error"));
  await assert.rejects(pool.query("SELEC"), (e) => codeOf(e) === "42601");
  assert.equal(pool.stats().checkedOut, 0);
  await shut(pool, clock);
});

test("Pool.transaction commits, rolls back on throw, and rejects ROLLED_BACK", T, async () => {
  const { clock, server, pool } = setup();
  const conn = () => server.created[0];
  const value = await pool.transaction(async (c) => {
    await c.query("INSERT 1");
    return 42;
  });
  assert.equal(value, 42);
  assert.deepEqual(conn().log, ["BEGIN", "INSERT 1", "COMMIT"]);
  conn().log.length = 0;
  const boom = new Error("boom");
  await assert.rejects(
    pool.transaction(async (c) => {
      await c.query("INSERT 2");
      throw boom;
    }),
    (e) => e === boom,
  );
  assert.deepEqual(conn().log, ["BEGIN", "INSERT 2", "ROLLBACK"]);
  conn().log.length = 0;
  const rolledBack = await errorOf(pool.transaction(async (c) => {
    c.connection.failNext(new CodedError("23505", "duplicate key"));
    await c.query("INSERT 3").catch(() => {});
  }));
  assert.equal(codeOf(rolledBack), "ROLLED_BACK");
  assert.deepEqual(conn().log, ["BEGIN", "INSERT 3", "COMMIT"]);
  conn().log.length = 0;
  await pool.transaction(() => Promise.resolve(), { isolation: "serializable", readOnly: true });
  assert.equal(conn().log[0], "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY");
  const s = pool.stats();
  assert.deepEqual([s.checkedOut, s.checkedIn, server.created.length], [0, 1, 1]);
  assert.equal(conn().status, "idle");
  await shut(pool, clock);
});

// ---------------------------------------------------------------------------------------------
// AssertionPool

test(
  "AssertionPool rejects a second checkout with ALREADY_CHECKED_OUT naming the first",
  T,
  async () => {
    const clock = new FakeClock();
    const server = new FakeServer(clock);
    const pool = new AssertionPool(server.creator, { adapter: fakeAdapter, clock });
    async function firstHolder() {
      return await pool.connect();
    }
    const a = await firstHolder();
    const error = await errorOf(pool.connect());
    assert.equal(codeOf(error), "ALREADY_CHECKED_OUT");
    assert.match(String(error.message), /firstHolder/);
    await a.release();
    const b = await pool.connect();
    assert.equal(b.connection, a.connection);
    b.detach(); // a detach frees it too
    const c = await pool.connect();
    assert.equal(c.connection, server.created[1]);
    await c.release();
    await b.release();
    await shut(pool, clock);
  },
);

// ---------------------------------------------------------------------------------------------
// ContextPool

function contextSetup(options: Partial<QueuePoolOptions<FakeConnection>> = {}) {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const pool = new ContextPool(server.creator, {
    adapter: fakeAdapter,
    clock,
    store: new AsyncLocalStorage(),
    ...options,
  });
  return { clock, server, pool };
}

test("ContextPool shares one connection among nested checkouts in run()", T, async () => {
  const { clock, pool } = contextSetup();
  const seen: FakeConnection[] = [];
  await pool.run(async () => {
    const a = await pool.connect();
    seen.push(a.connection);
    await a.query("BEGIN");
    const inner = async () => {
      const b = await pool.connect();
      seen.push(b.connection);
      assert.equal(b.transactionStatus, "transaction", "the same session");
      assert.throws(() => b.detach(), TypeError);
      await b.release();
      assert.throws(() => b.release(), (e) => codeOf(e) === "RELEASED");
    };
    await inner();
    await pool.run(inner); // a nested run joins the outer context
    await a.release();
    assert.equal(pool.stats().checkedOut, 1, "held until run() settles");
    await a.query("COMMIT").catch(() => {});
  });
  assert.equal(seen.length, 3);
  assert.ok(seen.every((c) => c === seen[0]));
  assert.equal(pool.stats().checkedOut, 0);
  assert.equal(pool.stats().checkedIn, 1);
  await shut(pool, clock);
});

test(
  "ContextPool gives parallel run()s different connections, returned when each settles",
  T,
  async () => {
    const { clock, pool } = contextSetup();
    const seen: FakeConnection[] = [];
    let both!: () => void;
    const gate = new Promise<void>((resolve) => both = resolve);
    const runs = [1, 2].map(() =>
      pool.run(async () => {
        seen.push((await pool.connect()).connection);
        if (seen.length === 2) both();
        await gate;
        seen.push((await pool.connect()).connection);
      })
    );
    await Promise.all(runs);
    assert.notEqual(seen[0], seen[1]);
    assert.deepEqual(new Set(seen).size, 2);
    assert.equal(pool.stats().checkedOut, 0);
    // Also when run() rejects.
    await assert.rejects(pool.run(async () => {
      await pool.connect();
      throw new Error("handler failed");
    }));
    assert.equal(pool.stats().checkedOut, 0);
    await shut(pool, clock);
  },
);

test("ContextPool outside run() is a plain QueuePool", T, async () => {
  const { clock, pool } = contextSetup();
  assert.ok(pool instanceof QueuePool);
  const a = await pool.connect();
  const b = await pool.connect();
  assert.notEqual(a.connection, b.connection);
  await a.release();
  await b.release();
  assert.equal(pool.stats().checkedIn, 2);
  await shut(pool, clock);
});

test("ContextPool without a store throws TypeError", T, () => {
  const server = new FakeServer();
  assert.throws(
    // @ts-expect-error: store is required
    () => new ContextPool(server.creator, { adapter: fakeAdapter }),
    TypeError,
  );
  assert.throws(
    () =>
      new ContextPool(server.creator, {
        adapter: fakeAdapter,
        store: {} as unknown as AsyncLocalStorage<unknown>,
      }),
    TypeError,
  );
});

test(
  "ContextPool does not hand a finished run's connection to a task that outlived it",
  T,
  async () => {
    const { clock, pool } = contextSetup({ poolSize: 1, maxOverflow: 0, timeout: 1000 });
    let go!: () => void;
    const gate = new Promise<void>((resolve) => go = resolve);
    let leftover!: Promise<PooledConnection<FakeConnection>>;
    await pool.run(async () => {
      await pool.connect();
      // Fire and forget: this task keeps the run's async context after run() settles.
      leftover = gate.then(() => pool.connect());
    });
    const other = await pool.connect(); // the connection went back; someone else has it now
    go();
    const late = watch(leftover);
    await clock.advance(1000);
    // The finished run's scope must not hand its returned connection (now `other`'s) to a task
    // that outlived the run: two users on one session. It checks out its own instead.
    assert.ok(
      late.failed || late.value!.connection !== other.connection,
      "two users on one connection",
    );
    if (late.value && !late.value.released) await late.value.release();
    await other.release();
    await shut(pool, clock);
  },
);

// ---------------------------------------------------------------------------------------------
// manage()

test("manage keeps one pool per distinct arguments, whatever the key order", T, async () => {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const seen: unknown[] = [];
  const pools = manage(
    (args: { host: string; db: string }, signal: AbortSignal) => {
      seen.push(args);
      return server.creator(signal);
    },
    { adapter: fakeAdapter, clock, poolSize: 2 },
  );
  const p1 = pools.pool({ host: "a", db: "x" });
  assert.equal(pools.pool({ db: "x", host: "a" }), p1);
  const p2 = pools.pool({ host: "b", db: "x" });
  assert.notEqual(p2, p1);
  assert.equal(pools.size, 2);
  assert.ok(p1 instanceof QueuePool);
  assert.equal((p1 as QueuePool<FakeConnection>).size, 2);
  const c = await pools.connect({ db: "x", host: "a" });
  assert.deepEqual(seen, [{ db: "x", host: "a" }]);
  assert.equal(p1.stats().checkedOut, 1);
  await c.release();
  await pools.close();
  assert.ok(p1.closed && p2.closed);
  assert.equal(pools.size, 0);
  assert.ok(server.created[0].closed);
  // A custom factory.
  const statics = manage((_: string, signal) => server.creator(signal), {
    poolFactory: (creator) => new StaticPool(creator, { adapter: fakeAdapter, clock }),
  });
  assert.ok(statics.pool("x") instanceof StaticPool);
  await statics[Symbol.asyncDispose]();
  assert.equal(statics.size, 0);
});

// ---------------------------------------------------------------------------------------------
// NullPool and StaticPool

test("NullPool opens a connection per checkout and closes it on checkin", T, async () => {
  const { clock, server, pool } = nullSetup();
  const a = await pool.connect();
  const b = await pool.connect();
  assert.notEqual(a.connection, b.connection);
  await a.release();
  assert.ok(server.created[0].closed);
  const c = await pool.connect();
  assert.equal(c.connection, server.created[2]);
  await b.release();
  await c.release();
  assert.equal(server.open.length, 0);
  const s = pool.stats();
  assert.deepEqual([s.poolSize, s.checkedIn, s.checkedOut, s.poolMax], [0, 0, 0, Infinity]);
  await shut(pool, clock);
});

test("NullPool reports no overflow", T, async () => {
  const { clock, pool } = nullSetup();
  const a = await pool.connect();
  // NullPool has no pool size, so nothing it holds is overflow ("0 for pools without one").
  assert.equal(pool.stats().overflow, 0);
  await a.release();
  await shut(pool, clock);
});

test("NullPool with max makes checkouts wait, and time out", T, async () => {
  const { clock, server, pool } = nullSetup({ max: 2, timeout: 1000 });
  const a = await pool.connect();
  const b = await pool.connect();
  const late = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(late.error), "POOL_TIMEOUT");
  assert.match((late.error as Error).message, /2 of 2 connections in use/);
  const waiter = watch(pool.connect());
  await a.release();
  await flush();
  assert.ok(waiter.done && !waiter.failed);
  await waiter.value!.release();
  await b.release();
  assert.equal(server.open.length, 0);
  assert.ok(server.created.length <= 3);
  assert.throws(() => new NullPool(server.creator, { max: 0 }), RangeError);
  await shut(pool, clock);
});

test("RequestPool never hands a returned connection to another caller", T, async () => {
  const { clock, server, pool } = requestSetup();
  const closes = collect(pool, "close");
  server.hold();
  const a = watch(pool.connect());
  server.release();
  await flush();
  const mine = a.value!.connection;
  server.hold();
  const b = watch(pool.connect()); // its own connect is still on its way
  await a.value!.release();
  await flush();
  assert.equal(b.done, false, "waits for the connection made for it");
  assert.ok(mine.closed);
  assert.deepEqual(closeReasons(closes, mine), ["returned"]);
  server.release();
  await flush();
  assert.equal(b.value!.connection, server.created[1]);
  await b.value!.release();
  assert.equal(server.open.length, 0);
  await shut(pool, clock);
});

test("RequestPool closes a connection made for a caller that gave up", T, async () => {
  const { clock, server, pool } = requestSetup();
  const closes = collect(pool, "close");
  server.hold();
  const controller = new AbortController();
  const a = watch(pool.connect({ signal: controller.signal }));
  const b = watch(pool.connect());
  controller.abort(new Error("gone"));
  server.release();
  await flush();
  assert.equal((a.error as Error).message, "gone");
  // The first connection was made for the caller that left: closed, not given to the next.
  assert.deepEqual(closeReasons(closes, server.created[0]), ["unwanted"]);
  assert.equal(b.value!.connection, server.created[1]);
  await b.value!.release();
  await shut(pool, clock);
});

test("RequestPool with max lets a waiter take up its turn from its own timer", T, async () => {
  const { clock, server, pool } = requestSetup({ max: 1, timeout: 1000, maxWaiting: 1 });
  const a = await pool.connect();
  const mark = clock.mark();
  const b = watch(pool.connect());
  await assert.rejects(pool.connect(), (e) => codeOf(e) === "TOO_MANY_WAITERS");
  await flush();
  assert.equal(b.done, false, "waits while the one connection is out");
  assert.equal(pool.stats().requestsWaiting, 1);
  // The request that checked out first ends: its timers with it. The waiter's own timer
  // takes up its turn.
  await a.release();
  clock.loseTimers(mark);
  await clock.advance(10);
  assert.ok(b.done && !b.failed, String(b.error));
  assert.equal(b.value!.connection, server.created[1], "a connection made for it");
  const late = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(late.error), "POOL_TIMEOUT");
  assert.match((late.error as Error).message, /1 of 1 connections in use/);
  await b.value!.release();
  assert.equal(server.open.length, 0);
  await shut(pool, clock);
});

test("RequestPool refuses the options that watch checkouts", T, () => {
  const server = new FakeServer(new FakeClock());
  for (const name of ["leakDetectionThreshold", "idleInTransactionThreshold"]) {
    assert.throws(
      () => new RequestPool(server.creator, { adapter: fakeAdapter, [name]: 1000 }),
      (e) => e instanceof TypeError && e.message.startsWith(name),
    );
  }
  assert.throws(() => new RequestPool(server.creator, { max: 0 }), RangeError);
});

test("RequestPool times out each checkout by its own timer", T, async () => {
  const { clock, server, pool } = requestSetup({ timeout: 1000 });
  const a = await pool.connect();
  await a.release();
  // On Workers the request that checked out first has ended, and its timers with it.
  const mark = clock.mark();
  server.hold();
  const b = watch(pool.connect());
  clock.loseTimers(mark);
  await clock.advance(1000);
  assert.equal(codeOf(b.error), "POOL_TIMEOUT");
  server.release();
  await shut(pool, clock);
});

test("StaticPool uses one connection for everything, checkouts taking turns", T, async () => {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const pool = new StaticPool(server.creator, { adapter: fakeAdapter, clock, timeout: 1000 });
  const a = await pool.connect();
  await a.query("BEGIN");
  const b = watch(pool.connect());
  await flush();
  assert.equal(b.done, false, "waits its turn");
  await a.release();
  await flush();
  assert.equal(b.value!.connection, a.connection);
  assert.equal(b.value!.transactionStatus, "idle");
  const c = watch(pool.connect());
  await clock.advance(1000);
  assert.equal(codeOf(c.error), "POOL_TIMEOUT");
  await b.value!.release();
  await Promise.all([1, 2, 3].map(() => pool.query("SELECT 1")));
  assert.equal(server.created.length, 1);
  assert.ok(pool.recreate() instanceof StaticPool);
  await shut(pool, clock);
});

test(
  "idleInTransactionThreshold reports a connection held in a transaction, once per transaction",
  T,
  async () => {
    const warnings: string[] = [];
    const { clock, pool } = setup({
      idleInTransactionThreshold: 5000,
      recordStacks: true,
      logger: { warn: (message) => warnings.push(message) },
    });
    const reports = collect(pool, "idleInTransaction");
    async function slowTransaction() {
      return await pool.connect();
    }
    const c = await slowTransaction();
    c.info.job = "nightly";
    await clock.advance(10_000); // checked out, but no transaction: nothing to say
    assert.equal(reports.length, 0);
    await c.query("begin");
    await clock.advance(4000);
    assert.equal(reports.length, 0);
    await clock.advance(2000);
    assert.equal(reports.length, 1);
    assert.equal(reports[0].status, "transaction");
    assert.ok(reports[0].heldMs >= 5000 && reports[0].heldMs <= 6000, `${reports[0].heldMs}`);
    assert.equal(reports[0].info.job, "nightly");
    assert.match(reports[0].stack ?? "", /slowTransaction/);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /inside a transaction for \d+ ms \(idleInTransactionThreshold 5000/);
    await clock.advance(20_000);
    assert.equal(reports.length, 1, "once per transaction");
    // A new transaction on the same checkout is reported again, failed ones too.
    await c.query("commit");
    await clock.advance(1000);
    await c.query("begin");
    c.connection.failNext(new Error("division by zero"));
    await c.query("select 1/0").catch(() => {});
    await clock.advance(7000);
    assert.equal(reports.length, 2);
    assert.equal(reports[1].status, "failed");
    await c.release(); // rolled back on return
    await clock.advance(10_000);
    assert.equal(reports.length, 2);
    await shut(pool, clock);
  },
);

test("idleInTransactionThreshold 0 turns the report off; the default is 60 s", T, async () => {
  const off = setup({ idleInTransactionThreshold: 0 });
  const none = collect(off.pool, "idleInTransaction");
  const c = await off.pool.connect();
  await c.query("begin");
  await off.clock.advance(600_000);
  assert.equal(none.length, 0);
  await c.release();
  await shut(off.pool, off.clock);

  const byDefault = setup();
  const reports = collect(byDefault.pool, "idleInTransaction");
  const d = await byDefault.pool.connect();
  await d.query("begin");
  await byDefault.clock.advance(59_000);
  assert.equal(reports.length, 0);
  await byDefault.clock.advance(2000);
  assert.equal(reports.length, 1);
  await d.release();
  await shut(byDefault.pool, byDefault.clock);
});

// ---------------------------------------------------------------------------------------------
// Connections whose login is still under way (pipelineConnect "auth" and "query")

test("a connection still logging in goes to a pool.query statement at once", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  server.earlyLogin = true;
  const query = watch(pool.query("select 1"));
  await flush();
  const [connection] = server.created;
  // The statement is written behind the login, in the same flight.
  assert.deepEqual(connection.log, ["select 1"]);
  assert.equal(query.done, false);
  connection.finishLogin();
  await flush();
  assert.equal(query.failed, false);
  assert.equal(pool.stats().connectionsErrors, 0);
  await shut(pool, clock);
});

test("connect() and the pool's own connects wait for the login", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  server.earlyLogin = true;
  const checkout = watch(pool.connect());
  await flush();
  assert.equal(server.created.length, 1);
  assert.equal(checkout.done, false);
  server.created[0].finishLogin();
  await flush();
  assert.equal(checkout.done, true);
  assert.equal(checkout.failed, false);
  await checkout.value!.release();
  // A failed login fails connect() with its error, and the connection is closed.
  const { clock: clock2, server: server2, pool: pool2 } = setup({ poolSize: 1, maxOverflow: 0 });
  server2.earlyLogin = true;
  const failing = watch(pool2.connect());
  await flush();
  server2.created[0].finishLogin(authError());
  await flush();
  assert.equal(failing.failed, true);
  assert.equal(codeOf(failing.error), "28P01");
  assert.equal(server2.created[0].closed, true);
  assert.equal(pool2.stats().connectionsErrors, 1);
  await shut(pool, clock);
  await shut(pool2, clock2);
});

test(
  "a failed login fails its statement with the login's error, and only that connection",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 2, maxOverflow: 0 });
    const errors = collect(pool, "error");
    // One logged-in connection, idle.
    await pool.query("select 1");
    const [first] = server.created;
    server.earlyLogin = true;
    const held = await pool.connect();
    assert.equal(held.connection, first);
    const statement = watch(pool.query("select 2"));
    await flush();
    const second = server.created[1];
    assert.deepEqual(second.log, ["select 2"]);
    // A server's login error is FATAL: a disconnect, by the adapter's rules.
    const error = Object.assign(authError(), { disconnect: true });
    second.finishLogin(error);
    await flush();
    // The login's own error, not CONNECTION_LOST: the statement never ran.
    assert.equal(statement.failed, true);
    assert.equal(statement.error, error);
    assert.equal(second.closed, true);
    // Not a disconnect of a working session: the older connection is not retired.
    assert.equal(first.closed, false);
    assert.deepEqual(errors.map((e) => e.context), ["connect"]);
    assert.equal(pool.stats().connectionsErrors, 1);
    await held.release();
    assert.equal(first.closed, false);
    // The pool goes on: the next statement gets a working connection.
    server.earlyLogin = false;
    assert.equal((await pool.query("select 3")).rows.length, 1);
    assert.equal(first.log.at(-1), "select 3");
    await shut(pool, clock);
  },
);

test(
  "a statement riding a login that fails for a reason that may pass runs again, once logged in",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 2, maxOverflow: 0, timeout: 5000 });
    server.earlyLogin = true;
    const statement = watch(pool.query("insert 1"));
    await flush();
    const [first] = server.created;
    assert.deepEqual(first.log, ["insert 1"]);
    // The server was starting up: FATAL 57P03 ends the login, and the statement never ran.
    const starting = Object.assign(new CodedError("57P03", "the database system is starting up"), {
      disconnect: true,
    });
    first.finishLogin(starting);
    await flush();
    assert.equal(statement.done, false, "not failed: it runs again");
    // While connecting fails, no statement rides a login: the next waits for one to finish.
    await clock.advance(300);
    const second = server.created[1];
    assert.ok(second !== undefined, "connected again after the backoff");
    assert.deepEqual(second.log, []);
    second.finishLogin();
    await flush();
    assert.ok(statement.done && !statement.failed, String(statement.error));
    assert.deepEqual(second.log, ["insert 1"]);
    assert.equal(pool.stats().requestsErrors, 0);
    // A login failure that will not pass still reaches the statement.
    const denied = Object.assign(authError(), { disconnect: true });
    const held = [await pool.connect()];
    const another = watch(pool.transaction(async (c) => await c.query("select 2")));
    await flush();
    server.created.at(-1)!.finishLogin(denied);
    await flush();
    assert.equal(another.error, denied);
    for (const c of held) await c.release();
    await shut(pool, clock);
  },
);

test("RequestPool hands a statement its connection while it logs in", T, async () => {
  const { clock, server, pool } = requestSetup();
  server.earlyLogin = true;
  const query = watch(pool.query("select 1"));
  await flush();
  assert.deepEqual(server.created[0].log, ["select 1"]);
  server.created[0].finishLogin();
  await flush();
  assert.equal(query.done, true);
  assert.equal(query.failed, false);
  await shut(pool, clock);
});

test(
  "transaction() and batch() take a connection still logging in: BEGIN rides behind it",
  T,
  async () => {
    const { clock, server, pool } = setup({ poolSize: 2, maxOverflow: 0 });
    server.earlyLogin = true;
    const tx = watch(pool.transaction(async (c) => (await c.query("select 1")).rows.length));
    const batch = watch(pool.batch(["select 2"]));
    await flush();
    const [a, b] = server.created;
    assert.deepEqual(a.log, ["BEGIN"]);
    assert.deepEqual(b.log, ["BEGIN", "select 2", "COMMIT"]);
    a.finishLogin();
    b.finishLogin();
    await flush();
    assert.equal(tx.failed, false);
    assert.equal(tx.value, 1);
    assert.equal(batch.failed, false);
    // A failed login fails the transaction with its error, and its function never runs.
    let ran = false;
    const { clock: clock2, server: server2, pool: pool2 } = setup({ poolSize: 1, maxOverflow: 0 });
    server2.earlyLogin = true;
    const failing = watch(pool2.transaction(() => {
      ran = true;
      return Promise.resolve();
    }));
    await flush();
    const error = Object.assign(authError(), { disconnect: true });
    server2.created[0].finishLogin(error);
    await flush();
    assert.equal(failing.error, error);
    assert.equal(ran, false);
    await shut(pool, clock);
    await shut(pool2, clock2);
  },
);

test("a connection returned before its login ended is reused only once logged in", T, async () => {
  const { clock, server, pool } = setup({ poolSize: 1, maxOverflow: 0 });
  server.earlyLogin = true;
  // Not a function: transaction() fails before any query goes out on its connection.
  const refused = watch(pool.transaction(42 as unknown as () => Promise<void>));
  await flush();
  assert.ok(refused.error instanceof TypeError);
  const [connection] = server.created;
  assert.deepEqual(connection.log, []);
  const checkout = watch(pool.connect());
  await flush();
  assert.equal(checkout.done, false);
  connection.finishLogin();
  await flush();
  assert.equal(checkout.failed, false);
  assert.equal(checkout.value!.connection, connection);
  await checkout.value!.release();
  // And one whose login then fails is closed, not handed out.
  const { clock: clock2, server: server2, pool: pool2 } = setup({ poolSize: 1, maxOverflow: 0 });
  server2.earlyLogin = true;
  await errorOf(pool2.transaction(42 as unknown as () => Promise<void>));
  server2.earlyLogin = false;
  const next = watch(pool2.connect());
  await flush();
  assert.equal(next.done, false);
  server2.created[0].finishLogin(Object.assign(authError(), { disconnect: true }));
  await flush();
  assert.equal(server2.created[0].closed, true);
  assert.equal(next.failed, false);
  assert.equal(next.value!.connection, server2.created[1]);
  await next.value!.release();
  await shut(pool, clock);
  await shut(pool2, clock2);
});
