// QueuePool against the real server with the fault proxy of tests/_faults.ts in between: over
// TCP (Deno's transport and node:net on Deno, node:net on Node) with the proxy in front of
// PostgreSQL, and over WebSocket with the proxy in front of edgepool's gateway.
//
// - cut, reset, half-close: the query in flight fails with a typed error, later queries
//   succeed on new connections;
// - blackhole: queries past `queryTimeout` fail with QUERY_TIMEOUT, an aborted query and a
//   health check cut short by the checkout deadline give their connection up at once, and every
//   later checkout is served from new connections;
// - delay: everything succeeds;
// - refused, reset and stalled connects are retried until the checkout's deadline: checkouts
//   made meanwhile succeed once the proxy passes again; past the deadline the caller gets
//   POOL_TIMEOUT with the connect error as its cause; a wrong password and a missing database
//   fail at once;
// - one connection lost does not close the healthy others.
//
// Counts, not timings: waits are bounded only so that a hang fails the test.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  ConnectionError,
  type ConnectOptions,
  PoolError,
  type PoolQueryOptions,
  PostgresError,
  QueuePool,
  type QueuePoolOptions,
  type Transport,
} from "../mod.ts";
import { type FaultProxy, type Link, startFaultProxy } from "./_faults.ts";
import { getServer, type TestServer } from "./_server.ts";
import { denoTcp, isDeno, nodeTcp, WebSocketImpl } from "./_transports.ts";
import { websocketTransport } from "../transports/websocket.ts";
import { assertIdle, delay, eventually, rejection, Resolved, show, within } from "./_helpers.ts";
import { codeOf, isDisconnect } from "./_load.ts";
import { execFileSync } from "node:child_process";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };
const RUN = `${isDeno ? "deno" : "node"}_${Math.random().toString(36).slice(2, 8)}`;

/** Options the pool takes once `queryTimeout` lands (typed apart so this file checks before). */
type TimeoutPoolOptions = QueuePoolOptions<Connection> & { queryTimeout?: number };
type TimeoutQueryOptions = PoolQueryOptions & { queryTimeout?: number };

// ---------------------------------------------------------------------------------------------
// Where the proxy stands: in front of PostgreSQL (TCP) or of the gateway (WebSocket)

interface Route {
  name: string;
  /**
   * The client's connection is a TCP socket of its own, which the pool's close ends at once. A
   * WebSocket's close() instead waits for the peer's close frame, which a blackhole drops: the
   * runtime keeps the TCP connection until it gives up (Deno 2.9: over 70 s), and the web
   * WebSocket API has no way to drop it sooner. Over those routes the tests assert what the
   * pool does (the place freed at once), not when the socket goes.
   */
  tcp: boolean;
  /** Starts a proxy for one test; `url` and `transport` reach the server through it. */
  open(): Promise<{ proxy: FaultProxy; url: string; transport: Transport }>;
}

let gatewayPromise: Promise<{ port: number; close(): Promise<void> }> | undefined;
after(async () => {
  if (gatewayPromise) await (await gatewayPromise).close();
});

function tcpRoute(name: string, transport: Transport): Route {
  return {
    name,
    tcp: true,
    async open() {
      const server = await getServer();
      const proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
      return { proxy, url: proxy.url(server.url("scram", PLAIN)), transport };
    },
  };
}

const gatewayRoute: Route = {
  name: "websocket via the gateway",
  tcp: false,
  async open() {
    const server = await getServer();
    gatewayPromise ??= (async () => {
      const { startGateway } = await import("../gateway/mod.ts");
      return await startGateway({
        listen: "127.0.0.1:0",
        upstream: `${server.host}:${server.port}`,
        allow: /^127\.0\.0\.1:\d+$/,
      });
    })();
    const gateway = await gatewayPromise;
    const proxy = await startFaultProxy({ target: { port: gateway.port } });
    const transport = websocketTransport({
      proxy: (host, port) => `ws://127.0.0.1:${proxy.port}/v2?address=${host}:${port}`,
      WebSocket: WebSocketImpl,
    });
    return { proxy, url: server.url("scram", PLAIN), transport };
  },
};

const routes: Route[] = [
  ...(denoTcp ? [tcpRoute("deno tcp", denoTcp)] : []),
  tcpRoute("node:net tcp", nodeTcp),
  gatewayRoute,
];

// ---------------------------------------------------------------------------------------------
// Helpers

/** Lets the event loop turn `turns` times (no clock involved: what is due now runs). */
async function turns(count = 5): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

let sequence = 0;

/** A fault scenario: a proxy on `route`, a pool through it, both closed at the end. */
async function scenario(
  route: Route,
  poolOptions: TimeoutPoolOptions,
  fn: (s: {
    proxy: FaultProxy;
    pool: QueuePool<Connection>;
    url: string;
    transport: Transport;
    name: string;
  }) => Promise<void>,
  connectOptions: ConnectOptions = {},
): Promise<void> {
  const { proxy, url, transport } = await route.open();
  const name = `faults_${RUN}_${++sequence}`;
  const pool = new QueuePool<Connection>(
    (signal) => connect(url, { transport, signal, applicationName: name, ...connectOptions }),
    poolOptions,
  );
  try {
    await fn({ proxy, pool, url, transport, name });
  } finally {
    await within(pool.close(), 15_000, "closing the pool").catch(() => {});
    await proxy.close();
    // Backends a blackhole or a cut left behind (pg_sleep does not notice a gone client).
    const server: TestServer = await getServer();
    await server.psql(
      "select count(pg_terminate_backend(pid)) from pg_stat_activity " +
        `where application_name = '${name}'`,
    ).catch(() => "");
  }
}

/** Opens `count` connections in the pool (each checked out at once, then returned). */
async function warm(pool: QueuePool<Connection>, count: number): Promise<void> {
  const held = await within(
    Promise.all(Array.from({ length: count }, () => pool.connect())),
    15_000,
    "warming the pool",
  );
  for (const c of held) await c.release();
  assert.equal(pool.stats().poolSize, count, pool.status());
}

/** Runs `count` queries at once; asserts every one succeeded. */
async function allSucceed(pool: QueuePool<Connection>, count: number, what: string) {
  const outcomes = await within(
    Promise.all(
      Array.from(
        { length: count },
        (_, i) => rejection(pool.query<{ n: number }>("select $1::int as n", [i])),
      ),
    ),
    30_000,
    what,
  );
  outcomes.forEach((outcome, i) => {
    assert.ok(outcome instanceof Resolved, `${what}: query ${i}: ${show(outcome)}`);
    assert.deepEqual((outcome.value as { rows: unknown[] }).rows, [{ n: i }]);
  });
}

function assertQueryTimeout(error: unknown): void {
  assert.ok(error instanceof ConnectionError, `expected QUERY_TIMEOUT, got ${show(error)}`);
  assert.equal(codeOf(error), "QUERY_TIMEOUT", show(error));
}

/** Starts a long statement on a checked-out connection; resolves once its bytes went out. */
async function inFlight(
  pool: QueuePool<Connection>,
  proxy: FaultProxy,
  sql = "select pg_sleep(3)",
) {
  const connection = await within(pool.connect(), 15_000, "checkout");
  const sent = proxy.counts.bytesToServer;
  const outcome = rejection(connection.query(sql));
  await eventually("the statement sent", () => proxy.counts.bytesToServer > sent);
  return { connection, outcome };
}

/**
 * The kernel's keepalive timer of the client socket on `port` (`ss -o`: `keepalive,1.4sec,0`
 * gives 1400), or undefined when the socket has none; null where `ss` cannot tell (not Linux).
 */
function keepaliveTimer(port: number): number | undefined | null {
  let out: string;
  try {
    out = execFileSync("ss", ["-tnoH", "state", "established", `( sport = :${port} )`], {
      encoding: "utf8",
    });
  } catch {
    return null;
  }
  const timer = /timer:\(keepalive,(?:(\d+)min)?(?:([\d.]+)sec)?(?:(\d+)ms)?/.exec(out);
  if (timer === null) return undefined;
  const [, min, sec, ms] = timer;
  return Number(min ?? 0) * 60_000 + Number(sec ?? 0) * 1000 + Number(ms ?? 0);
}

// ---------------------------------------------------------------------------------------------
// The faults, over every route

for (const route of routes) {
  const on = ` (${route.name})`;

  for (
    const [fault, act] of [
      ["cut", (p: FaultProxy) => p.cutAll()],
      ["reset", (p: FaultProxy) => p.resetAll()],
      ["half-close toward the client", (p: FaultProxy) => p.halfCloseAll("toClient")],
    ] as const
  ) {
    test(
      `QueuePool fails the query in flight and serves the next ones when a link is ${fault}` +
        on,
      T,
      async () => {
        await scenario(route, { poolSize: 3, maxOverflow: 0 }, async ({ proxy, pool }) => {
          await warm(pool, 3);
          const linked = proxy.counts.linked;
          const { connection, outcome } = await inFlight(pool, proxy);
          act(proxy);
          const error = await within(outcome, 10_000, "the query in flight");
          assert.ok(isDisconnect(error), `a disconnect error, got ${show(error)}`);
          await connection.release();
          await allSucceed(pool, 10, "queries after the fault");
          assert.ok(proxy.counts.linked > linked, "served from new connections");
          assertIdle(pool);
        });
      },
    );
  }

  test(
    "QueuePool serves the next queries when a link is half-closed toward the server" + on,
    T,
    async () => {
      await scenario(route, { poolSize: 3, maxOverflow: 0 }, async ({ proxy, pool }) => {
        await warm(pool, 3);
        // The server reads the end of its client's stream and goes; the pool sees it leave.
        proxy.halfCloseAll("toServer");
        await eventually("the links closed", () => proxy.links.length === 0);
        // The end of each stream reaches the client a moment later (sooner or later on a busy
        // machine): a checkout before that would get a connection already gone. Once the pool
        // has heard of it, none is handed out.
        await eventually("the pool saw them leave", () => pool.stats().poolSize === 0);
        assert.equal(pool.stats().connectionsLost, 3, pool.status());
        await allSucceed(pool, 10, "queries after the half-close");
        assertIdle(pool);
      });
    },
  );

  test(
    "QueuePool gives up a blackholed connection at queryTimeout and serves from new ones" + on,
    T,
    async () => {
      const options: TimeoutPoolOptions = { poolSize: 3, maxOverflow: 0, queryTimeout: 300 };
      await scenario(route, options, async ({ proxy, pool }) => {
        await warm(pool, 3);
        const dead: Link[] = proxy.links;
        const warmLinks = proxy.counts.linked;
        proxy.blackholeAll();
        const perQuery: TimeoutQueryOptions = { queryTimeout: 200 };
        const outcomes = await within(
          Promise.all([
            rejection(pool.query("select 1")),
            rejection(pool.query("select 2")),
            // The per-query form, shorter than the pool's.
            rejection(pool.query("select 3", [], perQuery)),
          ]),
          10_000,
          "queries on blackholed connections",
        );
        for (const outcome of outcomes) assertQueryTimeout(outcome);
        // Each was destroyed at once: the pool holds none of them, their sockets are closed.
        await turns();
        assert.equal(pool.stats().poolSize, 0, pool.status());
        if (route.tcp) {
          await eventually(
            "the blackholed sockets closed",
            () => dead.every((l) => l.clientClosed),
          );
        }
        // Each timed-out query's cancel goes out on a link of its own, when it gets to it: those
        // are not the pool's new connections.
        await eventually("the three cancels' links", () => proxy.counts.linked >= warmLinks + 3);
        const linked = proxy.counts.linked;
        await allSucceed(pool, 20, "queries once new links pass");
        assert.ok(proxy.counts.linked > linked, "served from new connections");
        assert.ok(
          proxy.counts.linked - linked <= 3,
          `at most 3 new links, ${proxy.counts.linked - linked}`,
        );
        assertIdle(pool);
      });
    },
  );

  test(
    "QueuePool gives up a blackholed connection whose query was aborted" + on,
    T,
    async () => {
      await scenario(route, { poolSize: 2, maxOverflow: 0 }, async ({ proxy, pool }) => {
        await warm(pool, 2);
        const dead: Link[] = proxy.links;
        proxy.blackholeAll();
        const controllers = [new AbortController(), new AbortController()];
        const outcomes = controllers.map((c, i) =>
          rejection(pool.query("select $1::int", [i], { signal: c.signal }))
        );
        await eventually("both queries dropped", () => proxy.counts.bytesDropped > 0);
        for (const c of controllers) c.abort(new Error("caller gave up"));
        for (const outcome of await within(Promise.all(outcomes), 10_000, "aborted queries")) {
          assert.ok(
            outcome instanceof Error && outcome.message === "caller gave up",
            show(outcome),
          );
        }
        await turns();
        assert.equal(pool.stats().poolSize, 0, pool.status());
        if (route.tcp) {
          await eventually("the aborted sockets closed", () => dead.every((l) => l.clientClosed));
        }
        await allSucceed(pool, 10, "queries once new links pass");
        assertIdle(pool);
      });
    },
  );

  test(
    "QueuePool with prePing gives up a connection whose health check outlived the checkout" +
      on,
    T,
    async () => {
      await scenario(
        route,
        { poolSize: 2, maxOverflow: 0, prePing: true },
        async ({ proxy, pool }) => {
          // One connection, so that the next checkouts do not ping another blackholed one.
          await warm(pool, 1);
          const dead: Link[] = proxy.links;
          proxy.blackholeAll();
          // The ping on a blackholed connection never answers: the checkout's deadline ends it.
          const error = await within(rejection(pool.connect({ timeout: 300 })), 10_000, "checkout");
          assert.ok(error instanceof PoolError, show(error));
          assert.equal(error.code, "POOL_TIMEOUT", show(error));
          // The connection whose ping was cut short is given up, not kept for a reply.
          await turns();
          assert.equal(pool.stats().poolSize, 0, pool.status());
          if (route.tcp) {
            await eventually("the pinged socket closed", () => dead.every((l) => l.clientClosed));
          }
          await allSucceed(pool, 10, "queries once new links pass");
          assertIdle(pool);
        },
      );
    },
  );

  test("QueuePool serves every query through a delaying link" + on, T, async () => {
    await scenario(route, { poolSize: 3, maxOverflow: 0 }, async ({ proxy, pool }) => {
      proxy.mode = { delay: 30 };
      await allSucceed(pool, 12, "queries through a delay");
      const committed = await within(
        pool.transaction(async (c) => (await c.query("select 1 as one")).rows),
        10_000,
        "a transaction through a delay",
      );
      assert.deepEqual(committed, [{ one: 1 }]);
      proxy.delayAll(60);
      await allSucceed(pool, 6, "queries through a longer delay");
      assert.equal(pool.stats().connectionsErrors, 0, pool.status());
      assertIdle(pool);
    });
  });

  test(
    "QueuePool retries refused, reset and stalled connects until the link passes" + on,
    T,
    async () => {
      await scenario(
        route,
        { poolSize: 3, maxOverflow: 0, timeout: 30_000 },
        async ({ proxy, pool }) => {
          proxy.mode = "rst";
          const outcomes = Array.from(
            { length: 6 },
            (_, i) => rejection(pool.query<{ n: number }>("select $1::int as n", [i])),
          );
          // Each phase lasts until the proxy has seen the pool try (a refused connect never
          // reaches it: that phase lasts a moment instead).
          const turnedAway = proxy.counts.turnedAway;
          await eventually("a reset connect", () => proxy.counts.turnedAway > turnedAway, 20_000);
          await proxy.refuse();
          await delay(500);
          // New links open but nothing comes back: the login stalls until connectTimeout.
          proxy.mode = "blackhole";
          await proxy.accept();
          await eventually(
            "a stalled connect given up",
            () => proxy.links.some((l) => l.mode === "blackhole" && l.clientClosed),
            20_000,
          );
          proxy.mode = "pass";
          const settled = await within(Promise.all(outcomes), 40_000, "queries started meanwhile");
          settled.forEach((outcome, i) => {
            assert.ok(outcome instanceof Resolved, `query ${i}: ${show(outcome)}`);
          });
          assertIdle(pool);
        },
        { connectTimeout: 500 },
      );
    },
  );

  test(
    "QueuePool times out a checkout against a refusing proxy with the connect error as cause" +
      on,
    T,
    async () => {
      await scenario(
        route,
        { poolSize: 2, maxOverflow: 0, timeout: 2_000 },
        async ({ proxy, pool }) => {
          await proxy.refuse();
          const error = await within(rejection(pool.query("select 1")), 20_000, "the checkout");
          assert.ok(error instanceof PoolError, show(error));
          assert.equal(error.code, "POOL_TIMEOUT", show(error));
          assert.ok(error.cause instanceof ConnectionError, `cause: ${show(error.cause)}`);
          assert.ok(
            ["CONNECT_FAILED", "CONNECTION_LOST"].includes(error.cause.code),
            `cause: ${show(error.cause)}`,
          );
          assert.ok(
            error.message.includes(error.cause.message),
            `the message names the cause: ${error.message}`,
          );
          assert.ok(pool.stats().connectionsNum >= 2, `retried: ${pool.status()}`);
          assertIdle(pool);
        },
      );
    },
  );

  for (
    const [what, options, sqlstate] of [
      ["a wrong password", { password: "wrong" }, "28P01"],
      ["a missing database", { database: "no_such_database" }, "3D000"],
    ] as const
  ) {
    test(`QueuePool fails at once on ${what}, without retrying` + on, T, async () => {
      await scenario(route, { poolSize: 2, maxOverflow: 0, timeout: 30_000 }, async ({ pool }) => {
        const error = await within(rejection(pool.query("select 1")), 20_000, "the checkout");
        assert.ok(error instanceof PostgresError, show(error));
        assert.equal(error.code, sqlstate, show(error));
        assert.equal(pool.stats().connectionsNum, 1, pool.status());
        assertIdle(pool);
      }, options);
    });
  }

  test("QueuePool keeps its healthy connections when one is lost in use" + on, T, async () => {
    await scenario(route, { poolSize: 3, maxOverflow: 0 }, async ({ proxy, pool }) => {
      await warm(pool, 3);
      const before = proxy.links;
      const { connection, outcome } = await inFlight(pool, proxy);
      // The link that carried the statement: the one whose bytes to the server grew last.
      const lost = before.reduce((a, b) => (b.bytesToServer > a.bytesToServer ? b : a));
      const healthy = before.filter((l) => l !== lost);
      lost.reset();
      assert.ok(isDisconnect(await within(outcome, 10_000, "the query in flight")));
      await connection.release();
      const linked = proxy.counts.linked;
      // One at a time: each takes an idle connection, so the healthy two can serve them all.
      for (let i = 0; i < 6; i++) await within(pool.query("select 1"), 10_000, `query ${i}`);
      assert.ok(healthy.every((l) => !l.gone), "the healthy connections are still open");
      assert.equal(proxy.counts.linked, linked, "no new connection was needed");
      assertIdle(pool);
    });
  });

  if (route.tcp) {
    test("QueuePool's connections keep TCP keepalive on by default" + on, T, async (t) => {
      await scenario(route, { poolSize: 1, maxOverflow: 0 }, async ({ proxy, pool }) => {
        await warm(pool, 1);
        const timer = keepaliveTimer(proxy.links[0].clientPort!);
        if (timer === null) return t.skip("no `ss` here to read the socket's timers");
        assert.notEqual(timer, undefined, "a keepalive timer on the client's socket");
      });
    });
  }

  // Deno's TcpConn.setKeepAlive takes no delay: only the node:net transport can set one.
  if (route.tcp && route.name.startsWith("node:net")) {
    test(
      "QueuePool's connections start keepalive probes after keepAliveInitialDelay" + on,
      T,
      async (t) => {
        await scenario(route, { poolSize: 1, maxOverflow: 0 }, async ({ proxy, pool }) => {
          await warm(pool, 1);
          const timer = keepaliveTimer(proxy.links[0].clientPort!);
          if (timer === null) return t.skip("no `ss` here to read the socket's timers");
          // The kernel's countdown to the first probe: at most the delay asked for, far below
          // the system default of 2 hours.
          assert.ok(timer !== undefined && timer <= 1_500, `keepalive timer ${timer} ms`);
        }, { keepAliveInitialDelay: 1_500 });
      },
    );
  }
}
