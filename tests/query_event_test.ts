// The pool's `query` event (tracing, slow-query logs) against the real PostgreSQL 15 of
// tests/_server.ts: what it reports for a statement, a transaction's statements, a failing
// statement and pipelined statements, and that it is only reported while someone listens.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createPool, type PoolEvents } from "../mod.ts";
import type { Connection } from "../src/connection.ts";
import { getServer } from "./_server.ts";
import { errorOf } from "./_helpers.ts";

const T = { timeout: 60_000 };
type QueryEvent = PoolEvents<Connection>["query"];

async function pool(options: Record<string, unknown> = {}) {
  const url = (await getServer()).url("scram", { sslmode: "disable" });
  return createPool(url, { poolSize: 2, maxOverflow: 0, ...options });
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("query events report each statement: text, parameters, time, result, backend", T, async () => {
  await using p = await pool();
  const events: QueryEvent[] = [];
  const off = p.on("query", (event) => events.push(event));
  const { rows } = await p.query<{ pid: number }>(
    "select pg_backend_pid() as pid, $1::int as n",
    [7],
  );
  assert.equal(events.length, 1);
  const [event] = events;
  assert.equal(event.sql, "select pg_backend_pid() as pid, $1::int as n");
  assert.equal(event.params, 1);
  assert.equal(event.command, "SELECT");
  assert.equal(event.rowCount, 1);
  assert.equal(event.error, undefined);
  assert.equal(event.processId, rows[0].pid, "the backend that ran it");
  assert.ok(event.ms >= 0 && Number.isFinite(event.ms));
  assert.ok(event.connection !== undefined);
  off();
  await p.query("select 1");
  assert.equal(events.length, 1, "not reported once nobody listens");
});

test("query events cover a transaction's statements and a failing statement", T, async () => {
  await using p = await pool();
  const events: QueryEvent[] = [];
  p.on("query", (event) => events.push(event));
  await p.transaction(async (c) => {
    await c.query("select 1");
  });
  assert.deepEqual(events.map((e) => e.command), ["BEGIN", "SELECT", "COMMIT"]);
  assert.equal(new Set(events.map((e) => e.processId)).size, 1, "one connection");
  events.length = 0;
  const error = await errorOf(p.query("select 1/0"));
  assert.equal(events.length, 1);
  assert.equal(events[0].error, error);
  assert.equal(events[0].command, undefined);
  assert.equal((error as { code?: string }).code, "22012");
});

test("query events report pipelined statements one by one", T, async () => {
  await using p = await pool({ poolSize: 1 });
  const events: QueryEvent[] = [];
  p.on("query", (event) => events.push(event));
  await Promise.all(Array.from({ length: 20 }, (_, i) => p.query("select $1::int", [i])));
  assert.equal(events.length, 20);
  assert.ok(events.every((e) => e.command === "SELECT" && e.rowCount === 1 && e.params === 1));
});
