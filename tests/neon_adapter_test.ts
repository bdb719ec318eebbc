// edgepool's pools managing another driver's connections: @neondatabase/serverless Clients over
// WebSocket through edgepool's gateway, with pgClientAdapter (reset, ping, close, disconnects).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Client, neonConfig } from "@neondatabase/serverless";
import { NullPool, pgClientAdapter, type PgClientLike, QueuePool } from "../mod.ts";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { getServer, type TestServer } from "./_server.ts";
import { isDeno } from "./_transports.ts";
import { backends, eventually } from "./_helpers.ts";

const T = { timeout: 30_000 };
let gateway: RunningGateway;
let server: TestServer;

before(async () => {
  server = await getServer();
  gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `${server.host}:${server.port}`,
  });
  neonConfig.wsProxy = (host, port) => `127.0.0.1:${gateway.port}/v2?address=${host}:${port}`;
  neonConfig.useSecureWebSocket = false;
  if (!isDeno) {
    neonConfig.webSocketConstructor = (await import("ws")).WebSocket as unknown as typeof WebSocket;
  }
});

after(async () => {
  await gateway?.close();
});

function neonCreator(name: string, user = "scram") {
  const url = server.url(user as "scram", { sslmode: "disable", application_name: name });
  return async () => {
    const client = new Client(url);
    // Neon's pipelined connect resolves before the server answers: a failed login arrives as
    // an 'error' event, which must have a listener until the pool's adapter adds its own.
    client.on("error", () => {});
    await client.connect();
    return client as unknown as PgClientLike;
  };
}

test(
  "QueuePool manages Neon Clients over the gateway: queries and reset on return",
  T,
  async () => {
    const pool = new QueuePool(neonCreator("neon_adapter_q"), {
      adapter: pgClientAdapter(),
      poolSize: 2,
      maxOverflow: 0,
    });
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => pool.query<{ i: number }>("select $1::int as i", [i])),
      );
      assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: 20 }, (_, i) => i));
      assert.ok(pool.stats().connectionsNum <= 2);
      {
        await using conn = await pool.connect();
        await conn.query("begin");
        await conn.query("create temp table neon_adapter_t (x int)");
        assert.equal(conn.transactionStatus, "transaction");
      }
      // The abandoned transaction was rolled back: whichever connection comes next is idle and
      // the temp table never existed.
      for (let i = 0; i < 2; i++) {
        const conn = await pool.connect();
        assert.equal(conn.transactionStatus, "idle");
        const { rows } = await conn.query("select to_regclass('pg_temp.neon_adapter_t') as t");
        assert.deepEqual(rows, [{ t: null }]);
        await conn.release();
      }
    } finally {
      await pool.close();
    }
  },
);

test("QueuePool with prePing replaces Neon Clients whose backend was killed", T, async () => {
  const pool = new QueuePool(neonCreator("neon_adapter_kill"), {
    adapter: pgClientAdapter(),
    poolSize: 2,
    maxOverflow: 0,
    prePing: true,
  });
  try {
    await Promise.all([pool.query("select 1"), pool.query("select 1")]);
    await server.psql(
      "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'neon_adapter_kill'",
    );
    for (let i = 0; i < 5; i++) {
      assert.equal((await pool.query<{ n: number }>("select 5 as n")).rows[0].n, 5);
    }
    assert.ok(pool.stats().connectionsLost >= 1, JSON.stringify(pool.stats()));
  } finally {
    await pool.close();
  }
});

test("NullPool manages Neon Clients: one per checkout, closed on return", T, async () => {
  const pool = new NullPool(neonCreator("neon_adapter_null"), {
    adapter: pgClientAdapter(),
    max: 3,
  });
  try {
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => pool.query<{ i: number }>("select $1::int as i", [i])),
    );
    assert.equal(results.length, 6);
    assert.equal(pool.stats().checkedOut, 0);
    await eventually(
      "the backends of neon_adapter_null gone",
      async () => (await backends(server, "neon_adapter_null")).length === 0,
    );
  } finally {
    await pool.close();
  }
});

test("a wrong password reaches the caller as 28P01 through the pool", T, async () => {
  const url = server.url("scram", { sslmode: "disable" }).replace("scram_pw", "wrong");
  const pool = new QueuePool(async () => {
    const client = new Client(url);
    client.on("error", () => {});
    await client.connect();
    // With the pipelined connect, the login's answer comes with the first query.
    await client.query("select 1");
    return client as unknown as PgClientLike;
  }, { adapter: pgClientAdapter(), timeout: 10_000 });
  try {
    const error = await pool.query("select 1").then(() => undefined, (e: unknown) => e);
    assert.equal((error as { code?: string })?.code, "28P01", String(error));
  } finally {
    await pool.close();
  }
});
