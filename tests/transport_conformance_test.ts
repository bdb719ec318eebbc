// One suite over TCP, WebSocket (through edgepool's gateway) and HTTP (the gateway's /sql):
// the same queries give the same results everywhere, skipping only what HTTP cannot do
// (interactive checkouts and transactions).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect, PoolError, PostgresError, type Queryable, QueuePool } from "../mod.ts";
import { startGateway } from "../gateway/mod.ts";
import { HttpPool } from "../src/pool/http_pool.ts";
import { websocketTransport } from "../transports/websocket.ts";
import { getServer } from "./_server.ts";
import { isDeno } from "./_transports.ts";

const T = { timeout: 30_000 };

let gateway: Awaited<ReturnType<typeof startGateway>>;
const pools: Record<string, Queryable> = {};

before(async () => {
  const server = await getServer();
  const url = server.url("scram", { sslmode: "disable" });
  gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `${server.host}:${server.port}`,
  });
  const WebSocket = isDeno
    ? undefined
    : (await import("ws")).WebSocket as unknown as typeof globalThis.WebSocket;
  const ws = websocketTransport({
    proxy: (host, port) => `${gateway.wsUrl}/v2?address=${host}:${port}`,
    WebSocket,
  });
  pools.tcp = new QueuePool(() => connect(url), { poolSize: 3 });
  pools.websocket = new QueuePool(() => connect(url, { transport: ws }), { poolSize: 3 });
  pools.http = new HttpPool(url, { endpoint: `${gateway.url}/sql` });
});

after(async () => {
  await Promise.all(Object.values(pools).map((p) => p.close()));
  await gateway?.close();
});

const QUERIES: [string, unknown[]?][] = [
  ["select 1 as one"],
  ["select $1::int as i, $2::int8 as big, $3::numeric as n", [42, "9007199254740993", "1.50"]],
  ["select $1::text as t, $2::varchar as v", ['héllo 🐘 "quoted" \\ back', "x"]],
  ["select $1::bool as yes, $2::bool as no, null::int as nothing", [true, false]],
  ["select $1::float8 as f, 'NaN'::float8 as nan, 'Infinity'::float4 as inf", [1.25]],
  ["select $1::json as j, $2::jsonb as jb", [
    JSON.stringify({ a: [1, 2] }),
    JSON.stringify({ b: null }),
  ]],
  ["select $1::bytea as b", [new Uint8Array([0, 1, 127, 128, 255])]],
  ["select $1::timestamptz as at, $2::date as d", [
    new Date("2024-02-29T12:34:56.789Z"),
    "2024-03-01",
  ]],
  ["select $1::uuid as u", ["6f1c1ae0-5f2b-4c47-9d0e-2a0d58f0c2b1"]],
  ["select $1::int[] as ints, $2::text[] as texts", [[1, null, 3], ["a", "b,c", '"q"', null]]],
  ["select '1 day'::interval as i, '(1,2)'::point as p"],
  ["select generate_series(1, 5) as n"],
  ["select * from (values (1, 'a'), (2, 'b')) as t(id, name) where id > $1", [0]],
  ["select 1 as x where false"],
];

function comparable(result: {
  command: string;
  rowCount: number | null;
  rows: unknown[];
  fields: { name: string; dataTypeID: number }[];
}) {
  return {
    command: result.command,
    rowCount: result.rowCount,
    rows: result.rows,
    fields: result.fields.map((f) => [f.name, f.dataTypeID]),
  };
}

test("the same queries give the same results over TCP, WebSocket and HTTP", T, async () => {
  for (const [sql, params] of QUERIES) {
    const results: Record<string, unknown> = {};
    for (const [name, pool] of Object.entries(pools)) {
      results[name] = comparable(await pool.query(sql, params ?? []));
    }
    assert.deepEqual(results.websocket, results.tcp, `websocket vs tcp: ${sql}`);
    assert.deepEqual(results.http, results.tcp, `http vs tcp: ${sql}`);
  }
});

test("rowMode array gives the same rows everywhere", T, async () => {
  const sql = "select $1::int as a, $2::text as b";
  const expected = (await pools.tcp.query(sql, [1, "x"], { rowMode: "array" })).rows;
  assert.deepEqual(expected, [[1, "x"]]);
  for (const name of ["websocket", "http"]) {
    assert.deepEqual((await pools[name].query(sql, [1, "x"], { rowMode: "array" })).rows, expected);
  }
});

test("server errors are the same PostgresError everywhere", T, async () => {
  for (const [sql, code] of [["select 1/0", "22012"], ["selec 1", "42601"]] as const) {
    const errors: Record<string, PostgresError> = {};
    for (const [name, pool] of Object.entries(pools)) {
      const error = await pool.query(sql).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof PostgresError, `${name}: ${String(error)}`);
      assert.equal(error.code, code, name);
      errors[name] = error;
    }
    for (const name of ["websocket", "http"]) {
      assert.equal(errors[name].message, errors.tcp.message);
      assert.equal(errors[name].severity, errors.tcp.severity);
      assert.equal(errors[name].position, errors.tcp.position);
    }
  }
});

test("batch runs as one transaction everywhere, and rolls back as one", T, async () => {
  for (const [name, pool] of Object.entries(pools)) {
    const table = `conformance_${name}`;
    await pool.query(`drop table if exists ${table}`);
    await pool.query(`create table ${table} (id int primary key)`);
    const ok = await pool.batch([
      { sql: `insert into ${table} values ($1)`, params: [1] },
      { sql: `insert into ${table} values ($1)`, params: [2] },
      { sql: `select count(*)::int as n from ${table}` },
    ]);
    assert.deepEqual(ok.map((r: { command: string }) => r.command), ["INSERT", "INSERT", "SELECT"]);
    assert.deepEqual(ok[2].rows, [{ n: 2 }], name);
    const failed = await pool.batch([
      { sql: `insert into ${table} values ($1)`, params: [3] },
      { sql: `insert into ${table} values ($1)`, params: [1] },
    ]).then(() => undefined, (e: unknown) => e);
    assert.ok(failed instanceof PostgresError && failed.code === "23505", `${name}: ${failed}`);
    const after = await pool.query(`select array_agg(id order by id) as ids from ${table}`);
    assert.deepEqual(after.rows, [{ ids: [1, 2] }], `${name}: the failed batch left nothing`);
    await pool.query(`drop table ${table}`);
  }
});

test(
  "interactive checkouts work over sockets; over HTTP a transaction is refused clearly",
  T,
  async () => {
    for (const name of ["tcp", "websocket"]) {
      const pool = pools[name] as QueuePool<unknown>;
      const value = await pool.transaction(async (conn) => {
        return (await conn.query("select txid_current() > 0 as ok")).rows[0];
      });
      assert.deepEqual(value, { ok: true });
    }
    const http = pools.http as HttpPool;
    // A checkout runs plain queries, each one request; what would open a transaction is refused.
    await using conn = await http.connect();
    assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
    for (const attempt of [() => conn.query("begin"), () => http.transaction(async () => {})]) {
      const error = await attempt().then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof PoolError, String(error));
      assert.equal(error.code, "UNSUPPORTED");
      assert.match(error.message, /batch/);
    }
  },
);
