// pool.listen() and pool.notify() against the real PostgreSQL 15 of tests/_server.ts:
// notifications in order, per channel, stopping, LISTENing again after the listening
// connection is lost, and closing with the pool.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createPool } from "../mod.ts";
import { getServer } from "./_server.ts";
import { errorOf, eventually, uniqueName } from "./_helpers.ts";

const T = { timeout: 60_000 };

async function pool() {
  const url = (await getServer()).url("scram", { sslmode: "disable" });
  return createPool(url, { poolSize: 2, maxOverflow: 0 });
}

/** Backends LISTENing to `channel` (their last statement named it), as pg_stat_activity has them. */
async function listeners(p: Awaited<ReturnType<typeof pool>>, channel: string): Promise<number[]> {
  const { rows } = await p.query<{ pid: number }>(
    "select pid from pg_stat_activity where query like $1 and pid <> pg_backend_pid()",
    [`%LISTEN "${channel}"%`],
  );
  return rows.map((r) => r.pid);
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("listen delivers a channel's notifications in order; unlisten stops them", T, async () => {
  await using p = await pool();
  const a = uniqueName("chan_a");
  const b = uniqueName("chan_b");
  const got: string[] = [];
  const stopA = await p.listen(a, (payload, channel) => got.push(`${channel}:${payload}`));
  const stopB = await p.listen(b, (payload) => got.push(`b:${payload}`));
  for (let i = 0; i < 5; i++) await p.notify(a, String(i));
  await p.notify(b, "x");
  await eventually("six notifications", () => got.length === 6);
  assert.deepEqual(got, [0, 1, 2, 3, 4].map((i) => `${a}:${i}`).concat(["b:x"]));
  await stopA();
  await stopA(); // a second call does nothing
  await p.notify(a, "late");
  await p.notify(b, "y");
  await eventually("b's second notification", () => got.length === 7);
  assert.equal(got[6], "b:y", "a stopped, b goes on");
  await stopB();
  await eventually(
    "no listening connection left",
    async () => (await listeners(p, b)).length === 0,
  );
});

test("listen LISTENs again after its connection is lost", T, async () => {
  await using p = await pool();
  const channel = uniqueName("chan_lost");
  const got: string[] = [];
  const errors: string[] = [];
  p.on("error", (e) => errors.push(e.context));
  await p.listen(channel, (payload) => got.push(payload));
  const [pid] = await listeners(p, channel);
  assert.ok(pid > 0);
  await p.query("select pg_terminate_backend($1)", [pid]);
  // Notifications sent while it is gone are lost; once it is back they arrive again.
  let n = 0;
  await eventually("a notification after the reconnect", async () => {
    await p.notify(channel, `after ${n++}`);
    return got.length > 0;
  });
  assert.match(got[0], /^after \d+$/);
  const [again] = await listeners(p, channel);
  assert.ok(again > 0 && again !== pid, "a new backend listens");
  assert.ok(errors.includes("listen"), "the loss was reported");
});

test("listen's connection closes with the pool; bad arguments are TypeErrors", T, async () => {
  const p = await pool();
  const channel = uniqueName("chan_close");
  await p.listen(channel, () => {});
  const watcher = await pool();
  assert.equal((await listeners(watcher, channel)).length, 1);
  await p.close();
  await eventually(
    "the listening backend gone",
    async () => (await listeners(watcher, channel)).length === 0,
  );
  assert.equal(
    (await errorOf(p.listen(channel, () => {})) as { code?: string }).code,
    "POOL_CLOSED",
  );
  for (const bad of ["", "a\0b", 42]) {
    assert.ok(await errorOf(watcher.listen(bad as string, () => {})) instanceof TypeError);
  }
  assert.ok(await errorOf(watcher.listen("c", 1 as never)) instanceof TypeError);
  await watcher.close();
});
