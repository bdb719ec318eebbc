// One suite of the behaviours every pool class shares, run over each class with the fakes of
// tests/_fake.ts. Every pool here holds at most one connection at a time, so that "the pool is
// busy" means the same thing for every class.
//
// Skipped, and why:
// - AssertionPool runs only the sequential cases: a second checkout while one is out rejects
//   with ALREADY_CHECKED_OUT by design instead of waiting (tests/pool_test.ts covers that).
// - RequestPool (createPool's NullPool on Workers) runs every case: a waiter under its `max`
//   takes up its turn from a timer of its own, so a case that waits moves the clock on.
// - ContextPool runs twice: outside `run()` (a QueuePool) and with every user inside a
//   `run()` of its own, where checkouts of one user share the run's connection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import {
  AssertionPool,
  ContextPool,
  NullPool,
  type Pool,
  type PoolOptions,
  QueuePool,
  StaticPool,
} from "../mod.ts";
import {
  CodedError,
  fakeAdapter,
  FakeClock,
  type FakeConnection,
  FakeServer,
  flush,
} from "./_fake.ts";
import { codeOf, watch } from "./_helpers.ts";
import { RequestPool } from "../src/pool/_request_pool.ts";

const T = { timeout: 20_000 };

type Creator = (signal: AbortSignal) => Promise<FakeConnection>;
type Options = PoolOptions<FakeConnection>;

/** A pool class under test. */
interface PoolCase {
  name: string;
  /** A pool of at most one connection at a time. */
  make(creator: Creator, options: Options): Pool<FakeConnection>;
  /** Runs one user's work: as is, or inside the user's own async context (ContextPool). */
  session<T>(pool: Pool<FakeConnection>, fn: () => Promise<T>): Promise<T>;
  /** The pool class hands out its connections one after another only. */
  sequentialOnly?: string;
}

const direct = <T>(_: Pool<FakeConnection>, fn: () => Promise<T>): Promise<T> => fn();

const contextPool = (creator: Creator, o: Options) =>
  new ContextPool(creator, { ...o, poolSize: 1, maxOverflow: 0, store: new AsyncLocalStorage() });

const CASES: PoolCase[] = [
  {
    name: "QueuePool",
    make: (creator, o) => new QueuePool(creator, { ...o, poolSize: 1, maxOverflow: 0 }),
    session: direct,
  },
  {
    name: "NullPool",
    make: (creator, o) => new NullPool(creator, { ...o, max: 1 }),
    session: direct,
  },
  {
    name: "RequestPool (createPool's NullPool on Workers)",
    make: (creator, o) => new RequestPool(creator, { ...o, max: 1 }),
    session: direct,
  },
  {
    name: "StaticPool",
    make: (creator, o) => new StaticPool(creator, o),
    session: direct,
  },
  {
    name: "AssertionPool",
    make: (creator, o) => new AssertionPool(creator, o),
    session: direct,
    sequentialOnly: "AssertionPool rejects a concurrent checkout (ALREADY_CHECKED_OUT) by design",
  },
  {
    name: "ContextPool outside run()",
    make: contextPool,
    session: direct,
  },
  {
    name: "ContextPool inside run()",
    make: contextPool,
    session: (pool, fn) => (pool as ContextPool<FakeConnection>).run(fn),
  },
];

/** A pool of `kase` over a fake server, and `finish()`: assert it settled, then close it. */
function setup(kase: PoolCase, options: Partial<Options> = {}) {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const pool = kase.make(server.creator, {
    adapter: fakeAdapter,
    clock,
    timeout: 1000,
    ...options,
  });
  const finish = async () => {
    assertSettled(pool, server);
    await shut(pool, clock);
  };
  return { clock, server, pool, finish };
}

/** Nothing is out, nobody waits, and the pool's count matches the open connections. */
function assertSettled(pool: Pool<FakeConnection>, server: FakeServer): void {
  const s = pool.stats();
  assert.equal(s.checkedOut, 0, "nothing checked out");
  assert.equal(s.requestsWaiting, 0, "nobody waiting");
  assert.equal(s.poolSize, s.checkedIn, "no connect in flight");
  assert.equal(s.poolAvailable, s.checkedIn);
  assert.equal(server.open.length, s.checkedIn, "every open connection is idle in the pool");
}

async function shut(pool: Pool<FakeConnection>, clock: FakeClock): Promise<void> {
  const done = pool.close({ timeout: 1000 });
  await clock.advance(1000);
  await done;
}

/** A user of `pool` that holds its checkout until `giveBack()`; `returned` settles after its
 * release. */
async function busyUser(kase: PoolCase, pool: Pool<FakeConnection>) {
  let giveBack!: () => void;
  const gate = new Promise<void>((resolve) => giveBack = resolve);
  const returned = kase.session(pool, async () => {
    const c = await pool.connect();
    await gate;
    await c.release();
  });
  await flush();
  return { giveBack, returned };
}

/** Runs `fn` as the conformance test `what` for every pool class. */
function conformance(
  what: string,
  fn: (kase: PoolCase) => Promise<void>,
  options: { concurrent?: boolean } = {},
): void {
  for (const kase of CASES) {
    const skip = options.concurrent === true && kase.sequentialOnly !== undefined
      ? kase.sequentialOnly
      : false;
    test(`${kase.name} ${what}`, { ...T, skip }, () => fn(kase));
  }
}

// ---------------------------------------------------------------------------------------------

conformance("connect hands out a connection that queries and is released", async (kase) => {
  const { server, pool, finish } = setup(kase);
  const rows = await kase.session(pool, async () => {
    const c = await pool.connect();
    assert.equal(c.transactionStatus, "idle");
    assert.equal(c.released, false);
    const result = await c.query("SELECT 1");
    assert.equal(c.connection, server.created[0]);
    await c.release();
    assert.equal(c.released, true);
    return result.rows;
  });
  assert.deepEqual(rows, [{ sql: "SELECT 1", connection: 1 }]);
  await finish();
});

conformance("connect is returned by await using, on every path", async (kase) => {
  const { server, pool, finish } = setup(kase);
  await kase.session(pool, async () => {
    await using c = await pool.connect();
    await c.query("SELECT 1");
  });
  assertSettled(pool, server);
  const oops = new Error("oops");
  await assert.rejects(
    kase.session(pool, async () => {
      await using c = await pool.connect();
      await c.query("BEGIN");
      throw oops;
    }),
    (e) => e === oops,
  );
  await finish();
});

conformance("release throws RELEASED the second time", async (kase) => {
  const { pool, finish } = setup(kase);
  await kase.session(pool, async () => {
    const c = await pool.connect();
    await c.release();
    assert.throws(() => c.release(), (e) => codeOf(e) === "RELEASED");
    await assert.rejects(c.query("SELECT 1"), (e) => codeOf(e) === "RELEASED");
    await c.close(); // close() after release does nothing
  });
  await finish();
});

conformance("release never hands a transaction to the next user", async (kase) => {
  for (const resetOnReturn of ["rollback", "commit", "none"] as const) {
    for (const failed of [false, true]) {
      const { pool, finish } = setup(kase, { resetOnReturn });
      await kase.session(pool, async () => {
        const c = await pool.connect();
        await c.query("BEGIN");
        if (failed) {
          c.connection.failNext(new CodedError("22012", "division by zero"));
          await assert.rejects(c.query("SELECT 1/0"));
        }
        await c.release();
      });
      await kase.session(pool, async () => {
        const c = await pool.connect();
        assert.equal(c.transactionStatus, "idle", `${resetOnReturn}, failed ${failed}`);
        await c.query("SELECT 1");
        await c.release();
      });
      await finish();
    }
  }
});

conformance("connect gives up at once when its AbortSignal aborts", async (kase) => {
  const { clock, server, pool } = setup(kase, { timeout: 10_000 });
  server.connectDelay = 1000;
  const controller = new AbortController();
  const checkout = watch(kase.session(pool, () => pool.connect({ signal: controller.signal })));
  await clock.advance(100);
  const reason = new Error("cancelled");
  controller.abort(reason);
  await flush();
  assert.equal(checkout.error, reason);
  assert.equal(pool.stats().requestsWaiting, 0);
  await clock.advance(900); // the connect finishes for nobody
  assertSettled(pool, server);
  await assert.rejects(
    kase.session(pool, () => pool.connect({ signal: AbortSignal.abort(reason) })),
    (e) => e === reason,
  );
  await shut(pool, clock);
});

conformance("connect rejects with POOL_TIMEOUT after the timeout", async (kase) => {
  const { clock, server, pool, finish } = setup(kase, { timeout: 1000 });
  server.connectDelay = 5000;
  const checkout = watch(kase.session(pool, () => pool.connect()));
  await clock.advance(999);
  assert.equal(checkout.done, false);
  await clock.advance(1);
  assert.equal(codeOf(checkout.error), "POOL_TIMEOUT");
  await clock.advance(4000);
  assert.equal(pool.stats().requestsErrors, 1);
  await finish();
});

conformance(
  "connect waits for the busy connection, then gets one",
  async (kase) => {
    const { clock, pool, finish } = setup(kase);
    const first = await busyUser(kase, pool);
    const second = watch(kase.session(pool, async () => {
      const c = await pool.connect();
      await c.query("SELECT 2");
      await c.release();
    }));
    await flush();
    assert.equal(second.done, false, "waits while the only connection is out");
    assert.equal(pool.stats().requestsWaiting, 1);
    first.giveBack();
    await first.returned;
    // A RequestPool's waiter takes up its turn from a timer of its own (every 5 ms).
    await clock.advance(10);
    assert.ok(second.done && !second.failed, String(second.error));
    await finish();
  },
  { concurrent: true },
);

conformance("query and transaction check out and return a connection", async (kase) => {
  const { server, pool, finish } = setup(kase);
  await kase.session(pool, async () => {
    const result = await pool.query("SELECT 1");
    assert.equal(result.command, "SELECT");
    const value = await pool.transaction(async (c) => {
      await c.query("INSERT 1");
      return "done";
    });
    assert.equal(value, "done");
    await assert.rejects(
      pool.transaction(async (c) => {
        await c.query("INSERT 2");
        throw new Error("undo");
      }),
      /undo/,
    );
  });
  const log = server.created.flatMap((c) => c.log);
  assert.deepEqual(log, [
    "SELECT 1",
    "BEGIN",
    "INSERT 1",
    "COMMIT",
    "BEGIN",
    "INSERT 2",
    "ROLLBACK",
  ]);
  await finish();
});

conformance("events checkout and checkin fire in pairs with the connection", async (kase) => {
  const { pool, finish } = setup(kase);
  const checkouts: FakeConnection[] = [];
  const checkins: FakeConnection[] = [];
  pool.on("checkout", (e) => checkouts.push(e.connection));
  pool.on("checkin", (e) => checkins.push(e.connection));
  for (let i = 0; i < 3; i++) {
    await kase.session(pool, async () => {
      const c = await pool.connect();
      assert.equal(checkouts.at(-1), c.connection);
      await c.release();
    });
  }
  assert.ok(checkouts.length >= 3);
  assert.deepEqual(checkins, checkouts);
  await finish();
});

conformance("close rejects later checkouts and closes every connection", async (kase) => {
  const { clock, server, pool } = setup(kase);
  await kase.session(pool, async () => {
    await (await pool.connect()).release();
  });
  const closing = pool.close();
  assert.equal(pool.close(), closing, "idempotent");
  await closing;
  assert.equal(pool.closed, true);
  assert.equal(server.open.length, 0);
  await assert.rejects(
    kase.session(pool, () => pool.connect()),
    (e) => codeOf(e) === "POOL_CLOSED",
  );
  assert.equal(pool.stats().poolSize, 0);
  assert.equal(clock.pending, 0, "no timers left");
});

conformance("close closes a busy connection when it is returned", async (kase) => {
  const { clock, server, pool } = setup(kase);
  const user = await busyUser(kase, pool);
  const closing = watch(pool.close({ timeout: 10_000 }));
  await flush();
  assert.equal(closing.done, false);
  assert.equal(server.open.length, 1, "not under its user's feet");
  user.giveBack();
  await user.returned;
  await flush();
  assert.ok(closing.done);
  assert.equal(server.open.length, 0);
  await clock.advance(10_000);
});

conformance("Symbol.asyncDispose closes the pool", async (kase) => {
  const { server, pool } = setup(kase);
  {
    await using p = pool;
    await kase.session(p, () => p.query("SELECT 1"));
  }
  assert.equal(pool.closed, true);
  assert.equal(server.open.length, 0);
});

conformance("stats stay consistent after a mix of uses once all is returned", async (kase) => {
  const { clock, server, pool, finish } = setup(kase, { timeout: 1000 });
  await kase.session(pool, () => pool.query("SELECT 1"));
  await kase.session(pool, async () => {
    const c = await pool.connect();
    await c.query("BEGIN");
    await c.release();
  });
  await kase.session(pool, async () => {
    const c = await pool.connect();
    c.invalidate(new Error("bad"));
    await c.release();
  });
  server.connectDelay = 2000;
  const late = watch(kase.session(pool, () => pool.connect()));
  await clock.advance(5000);
  assert.equal(codeOf(late.error), "POOL_TIMEOUT");
  server.connectDelay = 0;
  await kase.session(pool, () => pool.query("SELECT 2"));
  const s = pool.stats();
  assert.ok(s.requestsNum >= 4);
  assert.ok(s.connectionsNum >= 2);
  assert.ok(s.usageMs >= 0 && s.requestsWaitMs >= 0);
  await finish();
});
