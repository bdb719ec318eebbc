// Host lists and target_session_attrs (src/connect.ts `openAny`) against the real PostgreSQL 15
// of tests/_server.ts, a primary: hosts tried in order past closed ports, the attributes read
// from what the server reports (a read-only session made with default_transaction_read_only),
// errors that name every host and why it was passed over, load_balance_hosts spreading connects
// over two relays, and a pool over a host list. The failover to a promoted standby is in
// tests/failover_test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, ConnectionError, createPool, PoolError, PostgresError } from "../mod.ts";
import { getServer } from "./_server.ts";
import { closedPort, HOST, silentServer } from "./_net.ts";
import { startRelay } from "./_relay.ts";

const T = { timeout: 60_000 };

/** The test server's URL for `user`, with `hosts` in place of its host and port. */
async function urlWith(hosts: (port: number) => string, query = "", user = "scram") {
  const server = await getServer();
  const url = new URL(server.url(user as "scram", { sslmode: "disable" }));
  const list = hosts(server.port);
  return `postgres://${url.username}:${url.password}@${list}${url.pathname}?sslmode=disable${query}`;
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("connect tries the hosts in order and keeps the first that answers", T, async () => {
  const closed = await closedPort();
  await using conn = await connect(await urlWith((port) => `${HOST}:${closed},${HOST}:${port}`));
  assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
  // A cancel goes to the host the connection is on, not the first of the list.
  const controller = new AbortController();
  const sleeping = conn.query("select pg_sleep(30)", undefined, { signal: controller.signal });
  setTimeout(() => controller.abort(new Error("stop")), 50);
  await assert.rejects(sleeping, /stop/);
  assert.deepEqual((await conn.query("select 2 as two")).rows, [{ two: 2 }]);
});

test("connect names every host and why, when none takes the connection", T, async () => {
  const [a, b] = [await closedPort(), await closedPort()];
  const url = await urlWith(() => `${HOST}:${a},${HOST}:${b}`);
  const error = await connect(url).then(() => undefined, (e) => e);
  assert.ok(error instanceof ConnectionError, String(error));
  assert.equal(error.code, "CONNECT_FAILED");
  assert.match(error.message, new RegExp(`any of 2 hosts: .*${HOST}:${a}: .*; .*${HOST}:${b}: `));
  assert.ok(error.cause instanceof AggregateError);
  assert.equal((error.cause as AggregateError).errors.length, 2);
  assert.ok(!error.message.includes("scram_pw"), "no password in the message");
});

test(
  "connect fails with the server's error when no host could take it by trying again",
  T,
  async () => {
    const url = await urlWith((port) => `${HOST}:${port},${HOST}:${port}`, "", "scram");
    const wrong = url.replace(/:[^:@/]+@/, ":not-the-password@");
    const error = await connect(wrong).then(() => undefined, (e) => e);
    assert.ok(error instanceof PostgresError, String(error));
    assert.equal(error.code, "28P01");
  },
);

test(
  "target_session_attrs: read-write, read-only and primary from what the server reports",
  T,
  async () => {
    const closed = await closedPort();
    const list = (port: number) => `${HOST}:${closed},${HOST}:${port}`;
    const readOnly = "&options=-c%20default_transaction_read_only%3Don";
    {
      await using rw = await connect(await urlWith(list, "&target_session_attrs=read-write"));
      assert.equal(rw.parameters.default_transaction_read_only, "off");
      await using primary = await connect(await urlWith(list, "&target_session_attrs=primary"));
      assert.equal(primary.parameters.in_hot_standby, "off");
      await using ro = await connect(
        await urlWith(list, `&target_session_attrs=read-only${readOnly}`),
      );
      assert.equal(ro.parameters.default_transaction_read_only, "on");
    }
    const refused = await connect(
      await urlWith(list, `&target_session_attrs=read-write${readOnly}`),
    )
      .then(() => undefined, (e) => e);
    assert.ok(refused instanceof ConnectionError, String(refused));
    assert.equal(refused.code, "CONNECT_FAILED");
    assert.match(refused.message, /a read-write server \(target_session_attrs=read-write\)/);
    assert.match(refused.message, /is read-only \(default_transaction_read_only on\)/);
    assert.match(
      refused.message,
      new RegExp(`${HOST}:${closed}: `),
      "the closed port is named too",
    );
    const notReadOnly = await connect(await urlWith(list, "&target_session_attrs=read-only"))
      .then(() => undefined, (e) => e);
    assert.match(String(notReadOnly?.message), /takes writes/);
  },
);

test("target_session_attrs: standby fails on a primary, prefer-standby takes it", T, async () => {
  const url = await urlWith((port) => `${HOST}:${port}`, "&target_session_attrs=standby");
  const error = await connect(url).then(() => undefined, (e) => e);
  assert.ok(error instanceof ConnectionError, String(error));
  assert.match(error.message, /is not a hot standby/);
  await using conn = await connect(url.replace("=standby", "=prefer-standby"));
  assert.equal(conn.parameters.in_hot_standby, "off");
  // Only the one connection is left open (the search closes what it does not keep).
  const { rows } = await conn.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where application_name = $1",
    [conn.parameters.application_name],
  );
  assert.equal(rows[0].n, 1);
});

test("load_balance_hosts=random spreads connects over the hosts", T, async () => {
  const server = await getServer();
  await using a = await startRelay({ target: { host: HOST, port: server.port } });
  await using b = await startRelay({ target: { host: HOST, port: server.port } });
  const url = await urlWith(() => `${a.address},${b.address}`, "&load_balance_hosts=random");
  for (let i = 0; i < 30; i++) await (await connect(url)).close();
  const [na, nb] = [a.connections().length, b.connections().length];
  assert.equal(na + nb, 30);
  assert.ok(na > 0 && nb > 0, `a ${na}, b ${nb}`);
  // In order without it: every connect goes to the first.
  await Promise.all([a.drained(), b.drained()]);
  a.reset();
  b.reset();
  for (let i = 0; i < 5; i++) await (await connect(url.replace("random", "disable"))).close();
  assert.equal(a.connections().length, 5);
  assert.equal(b.connections().length, 0);
});

test("a pool over a host list connects past a host that is down", T, async () => {
  const closed = await closedPort();
  await using pool = createPool(await urlWith((port) => `${HOST}:${closed},${HOST}:${port}`), {
    poolSize: 2,
  });
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => pool.query<{ i: number }>("select $1::int as i", [i])),
  );
  assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: 10 }, (_, i) => i));
});

test(
  "a pool whose attributes no host has fails the checkout at its deadline, naming them",
  T,
  async () => {
    const url = await urlWith((port) => `${HOST}:${port}`, "&target_session_attrs=standby");
    await using pool = createPool(url, { poolSize: 1, timeout: 1500 });
    const error = await pool.query("select 1").then(() => undefined, (e) => e);
    assert.ok(error instanceof PoolError, String(error));
    assert.equal(error.code, "POOL_TIMEOUT");
    const cause = error.cause as ConnectionError;
    assert.equal(cause?.code, "CONNECT_FAILED");
    assert.match(cause.message, /is not a hot standby/);
  },
);

test("connect_timeout applies per host: a host that never answers is passed over", T, async () => {
  await using silent = await silentServer();
  // connect_timeout=2 (seconds) for each host: the silent one costs 2 s, then the next serves.
  const url = await urlWith(
    (port) => `${HOST}:${silent.port},${HOST}:${port}`,
    "&connect_timeout=2",
  );
  await using conn = await connect(url);
  assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
  // Both silent: the error names the timeout of each.
  const both = await connect(
    await urlWith(() => `${HOST}:${silent.port},${HOST}:${silent.port}`, "&connect_timeout=2"),
  ).then(() => undefined, (e) => e);
  assert.equal((both as ConnectionError)?.code, "CONNECT_FAILED", String(both));
  assert.equal(((both as ConnectionError).cause as AggregateError).errors.length, 2);
  for (const error of ((both as ConnectionError).cause as AggregateError).errors) {
    assert.equal((error as ConnectionError).code, "CONNECT_TIMEOUT");
  }
});
