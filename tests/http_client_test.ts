// HttpClient, HttpPool and createPool's HTTP branch against a fake fetch: the exact requests
// (endpoint, headers, body) of Neon's HTTP protocol, the decoding of its answers, and what each
// kind of failure becomes. No server: the integration suite is tests/http_test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionError, createPool, Oid, PoolError, PostgresError, QueuePool } from "../mod.ts";
import { HttpClient, type HttpFetch, HttpPool, httpTransport } from "../transports/http.ts";
import { delay, errorOf } from "./_helpers.ts";

// Parameters a socket connection refuses (channel_binding=require) or does not know are the
// endpoint's business over HTTP: the URL goes as given, less the client's own socket and TLS
// settings (over HTTP the TLS is the endpoint's; a gateway refuses to be told how to connect).
const URL_ = "postgres://alice:s3cr%2Ft@db.example.com:5432/app?sslmode=require&" +
  "channel_binding=require&neon_param=x";
const PASSWORD = "s3cr/t";

interface Seen {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A fetch that records each request and answers with `answer(request)`. */
function fakeFetch(
  answer: (seen: Seen) => Response | Promise<Response>,
): HttpFetch & { seen: Seen[] } {
  const seen: Seen[] = [];
  const fn = async (input: string, init: RequestInit) => {
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    const request = {
      url: input,
      method: init.method ?? "GET",
      headers,
      body: JSON.parse(String(init.body)),
    };
    seen.push(request);
    return await answer(request);
  };
  return Object.assign(fn, { seen });
}

function json(status: number, value: unknown): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function field(name: string, dataTypeID: number) {
  return {
    name,
    dataTypeID,
    tableID: 0,
    columnID: 0,
    dataTypeSize: -1,
    dataTypeModifier: -1,
    format: "text",
  };
}

const ONE_ROW = {
  rowAsArray: true,
  fields: [field("n", Oid.int4), field("big", Oid.int8), field("at", Oid.timestamptz)],
  rows: [["42", "9007199254740993", "2024-02-29 13:45:00.123+05:30"], [null, null, null]],
  command: "SELECT",
  rowCount: 2,
};

test("HttpClient.query posts Neon's headers and body to https://<host>/sql", async () => {
  const fetch = fakeFetch(() => json(200, ONE_ROW));
  const client = new HttpClient(URL_, { fetch });
  assert.equal(client.endpoint, "https://db.example.com/sql");
  const at = new Date("2024-01-02T03:04:05.678Z");
  await client.query("select $1, $2, $3, $4, $5, $6", [
    1,
    null,
    at,
    new Uint8Array([1, 255]),
    [1, null],
    { a: 1 },
  ]);
  const [seen] = fetch.seen;
  assert.equal(seen.url, "https://db.example.com/sql");
  assert.equal(seen.method, "POST");
  assert.equal(
    seen.headers["neon-connection-string"],
    "postgres://alice:s3cr%2Ft@db.example.com:5432/app?neon_param=x",
  );
  assert.equal(seen.headers["neon-raw-text-output"], "true");
  assert.equal(seen.headers["neon-array-mode"], "true");
  assert.equal(seen.headers["neon-batch-isolation-level"], undefined);
  assert.deepEqual(seen.body, {
    query: "select $1, $2, $3, $4, $5, $6",
    params: ["1", null, "2024-01-02T03:04:05.678Z", "\\x01ff", '{"1",NULL}', '{"a":1}'],
  });
  await client.query("select 1");
  assert.deepEqual(fetch.seen[1].body, { query: "select 1", params: [] });
});

test("HttpClient decodes rows with the socket connection's parsers", async () => {
  const fetch = fakeFetch(() => json(200, ONE_ROW));
  const client = new HttpClient(URL_, { fetch });
  const result = await client.query("select");
  assert.equal(result.command, "SELECT");
  assert.equal(result.rowCount, 2);
  assert.deepEqual(result.rows, [
    { n: 42, big: "9007199254740993", at: new Date("2024-02-29T08:15:00.123Z") },
    { n: null, big: null, at: null },
  ]);
  assert.deepEqual(result.fields[0], field("n", Oid.int4));
  const arrays = await client.query("select", [], { rowMode: "array" });
  assert.deepEqual(arrays.rows[0], [42, "9007199254740993", new Date("2024-02-29T08:15:00.123Z")]);
  const big = new HttpClient(URL_, { fetch, bigint: true });
  assert.equal((await big.query("select")).rows[0].big, 9007199254740993n);
});

test("HttpClient takes an endpoint string or function", async () => {
  const fetch = fakeFetch(() => json(200, ONE_ROW));
  const byString = new HttpClient(URL_, { fetch, endpoint: "http://127.0.0.1:4444/sql" });
  assert.equal(byString.endpoint, "http://127.0.0.1:4444/sql");
  const byFunction = new HttpClient(URL_, {
    fetch,
    endpoint: (host, port) => `https://api.${host.split(".").slice(1).join(".")}:${port + 1}/sql`,
  });
  assert.equal(byFunction.endpoint, "https://api.example.com:5433/sql");
  await byFunction.query("select");
  assert.equal(fetch.seen[0].url, "https://api.example.com:5433/sql");
  assert.throws(() => new HttpClient(URL_, { endpoint: "ftp://x/sql" }), TypeError);
  assert.throws(() => new HttpClient(URL_, { endpoint: "not a url" }), TypeError);
  assert.throws(() => new HttpClient("mysql://x@y/z"), TypeError);
  assert.throws(() => new HttpClient(URL_, { fetch: 1 as unknown as HttpFetch }), TypeError);
});

test("HttpClient.batch posts {queries} with the transaction headers", async () => {
  const fetch = fakeFetch((seen) => {
    const queries = (seen.body as { queries: unknown[] }).queries;
    return json(200, { results: queries.map(() => ONE_ROW) });
  });
  const client = new HttpClient(URL_, { fetch });
  const results = await client.batch(
    ["select 1", { sql: "select $1", params: [true] }],
    { isolation: "repeatable read", readOnly: true, deferrable: false, rowMode: "array" },
  );
  assert.equal(results.length, 2);
  assert.deepEqual(results[1].rows[1], [null, null, null]);
  const [seen] = fetch.seen;
  assert.deepEqual(seen.body, {
    queries: [{ query: "select 1", params: [] }, { query: "select $1", params: ["t"] }],
  });
  assert.equal(seen.headers["neon-batch-isolation-level"], "RepeatableRead");
  assert.equal(seen.headers["neon-batch-read-only"], "true");
  assert.equal(seen.headers["neon-batch-deferrable"], "false");
  for (
    const [level, header] of [
      ["read uncommitted", "ReadUncommitted"],
      ["read committed", "ReadCommitted"],
      ["serializable", "Serializable"],
    ] as const
  ) {
    await client.batch(["select 1"], { isolation: level });
    assert.equal(fetch.seen.at(-1)!.headers["neon-batch-isolation-level"], header);
  }
  assert.deepEqual(await client.batch([]), []);
  assert.equal(fetch.seen.length, 4, "an empty batch sends nothing");
  const bad = await errorOf(
    client.batch(["select 1"], { isolation: "snapshot" as "serializable" }),
  );
  assert.ok(bad instanceof TypeError);
});

test("HttpClient turns HTTP 400 with a SQLSTATE into a PostgresError with every field", async () => {
  const fetch = fakeFetch(() =>
    json(400, {
      message: `duplicate key value violates unique constraint "t_pkey"`,
      code: "23505",
      detail: "Key (id)=(1) already exists.",
      hint: null,
      position: "8",
      internalPosition: null,
      internalQuery: null,
      severity: "ERROR",
      where: null,
      table: "t",
      column: null,
      schema: "public",
      dataType: null,
      constraint: "t_pkey",
      file: "nbtinsert.c",
      line: "666",
      routine: "_bt_check_unique",
    })
  );
  const error = await errorOf(new HttpClient(URL_, { fetch }).query("insert"));
  assert.ok(error instanceof PostgresError);
  const defined = Object.entries(error).filter(([, value]) => value !== undefined);
  assert.deepEqual({ ...Object.fromEntries(defined), message: error.message }, {
    name: "PostgresError",
    severity: "ERROR",
    code: "23505",
    message: `duplicate key value violates unique constraint "t_pkey"`,
    detail: "Key (id)=(1) already exists.",
    position: 8,
    table: "t",
    schema: "public",
    constraint: "t_pkey",
    file: "nbtinsert.c",
    line: 666,
    routine: "_bt_check_unique",
  });
});

test("HttpClient reports other failures as ConnectionErrors, never with the password", async () => {
  const cases: [Response | Error, string, RegExp][] = [
    [
      json(400, { message: `bad connection string ${URL_} (${PASSWORD})`, code: "" }),
      "CONNECT_FAILED",
      /HTTP 400 .*bad connection string/,
    ],
    [new Response("nope", { status: 404 }), "CONNECT_FAILED", /HTTP 404 .*nope/],
    [
      json(500, { message: "Query cancelled, connection was terminated", code: "08P01" }),
      "CONNECTION_LOST",
      /HTTP 500 .*Query cancelled/,
    ],
    [
      new Response("response is too large (max is 10485760 bytes)", { status: 507 }),
      "CONNECTION_LOST",
      /HTTP 507 .*too large.*response limit/,
    ],
    [new Response("<html>", { status: 200 }), "PROTOCOL_ERROR", /not JSON/],
    [json(200, { nothing: true }), "PROTOCOL_ERROR", /no rows/],
    [new TypeError(`connection refused to ${PASSWORD}`), "CONNECT_FAILED", /Cannot reach/],
  ];
  for (const [answer, code, pattern] of cases) {
    const fetch = fakeFetch(() => {
      if (answer instanceof Error) throw answer;
      return answer;
    });
    const client = new HttpClient(URL_, { fetch, endpoint: "http://gw.test/sql" });
    const error = await errorOf(client.query("select 1"));
    assert.ok(error instanceof ConnectionError, `${code}: ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes(PASSWORD), error.message);
    assert.ok(!error.message.includes("s3cr%2Ft"), error.message);
  }
});

test("HttpClient rejects with the signal's reason and passes the signal to fetch", async () => {
  let passed: AbortSignal | undefined;
  const fetch: HttpFetch = (_input, init) => {
    passed = init.signal ?? undefined;
    return new Promise((_, reject) => {
      init.signal!.addEventListener("abort", () => reject(new DOMException("x", "AbortError")));
    });
  };
  const client = new HttpClient(URL_, { fetch });
  const controller = new AbortController();
  const pending = errorOf(client.query("select", [], { signal: controller.signal }));
  const reason = new Error("stop");
  controller.abort(reason);
  assert.equal(await pending, reason);
  assert.ok(passed?.aborted);
  const early = await errorOf(client.query("select", [], { signal: AbortSignal.abort(reason) }));
  assert.equal(early, reason);
});

test("HttpPool counts requests, refuses transactions, and closes after what is in flight", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  const fetch = fakeFetch(async (seen) => {
    await gate;
    const queries = (seen.body as { queries?: unknown[] }).queries;
    return json(200, queries ? { results: queries.map(() => ONE_ROW) } : ONE_ROW);
  });
  const pool = new HttpPool(URL_, { fetch, name: "test-http" });
  const seen: string[] = [];
  pool.on("request", (e) => seen.push(`${e.kind}:${e.statements}:${e.error ? "error" : "ok"}`));
  const first = pool.query("select");
  const second = pool.batch(["select", "select"]);
  assert.equal(pool.stats().requestsInFlight, 2);
  assert.match(pool.status(), /^test-http: 2 requests in flight, 2 sent, 0 failed/);

  // A checkout runs plain queries; a transaction, however opened, is refused before it is sent.
  const conn = await pool.connect();
  const refusals = [
    pool.transaction(() => Promise.resolve()),
    pool.query("begin"),
    conn.query("start transaction"),
  ];
  for (const refused of refusals) {
    const error = await errorOf(refused);
    assert.ok(error instanceof PoolError);
    assert.equal(error.code, "UNSUPPORTED");
    assert.match(
      error.message,
      /interactive transactions need a socket transport \(TCP or WebSocket\); over HTTP use pool\.batch\(\[\.\.\.\]\) for a transaction/,
    );
  }

  let closed = false;
  const closing = pool.close().then(() => closed = true);
  const late = await errorOf(pool.query("select"));
  assert.ok(late instanceof PoolError && late.code === "POOL_CLOSED");
  await delay(20);
  assert.equal(closed, false, "close() waits for the requests in flight");
  release();
  await closing;
  assert.equal((await first).rowCount, 2);
  assert.equal((await second).length, 2);
  assert.deepEqual(pool.stats(), {
    requestsNum: 2,
    requestsErrors: 0,
    requestsInFlight: 0,
    requestsMs: pool.stats().requestsMs,
    statementsNum: 3,
  });
  assert.deepEqual(seen.sort(), ["batch:2:ok", "query:1:ok"]);
  assert.equal(pool.closed, true);
  await pool.close(); // idempotent
});

test("HttpPool.close aborts what is still in flight after its timeout", async () => {
  const fetch: HttpFetch = (_input, init) =>
    new Promise((_, reject) => {
      init.signal!.addEventListener("abort", () => reject(init.signal!.reason));
    });
  const pool = new HttpPool(URL_, { fetch });
  const errors: unknown[] = [];
  pool.on("error", (e) => errors.push(e.error));
  const pending = errorOf(pool.query("select pg_sleep(60)"));
  await pool.close({ timeout: 30 });
  const error = await pending;
  assert.ok(error instanceof PoolError && error.code === "POOL_CLOSED", String(error));
  assert.equal(pool.stats().requestsErrors, 1);
  assert.equal(errors.length, 0, "only failures of the HTTP exchange are 'error' events");
});

test("HttpPool emits 'error' for failures of the HTTP exchange", async () => {
  const fetch = fakeFetch(() => new Response("down", { status: 503 }));
  const pool = new HttpPool(URL_, { fetch });
  const errors: unknown[] = [];
  pool.on("error", (e) => errors.push(e.error));
  const error = await errorOf(pool.query("select"));
  assert.ok(error instanceof ConnectionError);
  assert.deepEqual(errors, [error]);
  await pool.close();
});

test("createPool with httpTransport() gives an HttpPool, and refuses what HTTP cannot honour", async () => {
  const fetch = fakeFetch(() => json(200, ONE_ROW));
  const pool = createPool(URL_, {
    transport: httpTransport({ endpoint: "http://gw.test/sql", fetch }),
    bigint: true,
    poolSize: 3, // socket-pool sizing: ignored over HTTP
  });
  assert.ok(pool instanceof HttpPool);
  assert.equal(pool.endpoint, "http://gw.test/sql");
  assert.equal((await pool.query("select")).rows[0].big, 9007199254740993n);
  await pool.close();
  const transport = httpTransport();
  assert.throws(() => createPool(undefined, { transport }), TypeError);
  assert.throws(() => createPool(URL_, { transport, poolClass: "QueuePool" }), TypeError);
  assert.throws(() => createPool(URL_, { transport, password: "x" }), /put password in the URL/);
  assert.throws(() => httpTransport({ endpoint: 1 as unknown as string }), TypeError);
  const socket = createPool("postgres://alice@db.example.com/app", { poolSize: 1 });
  assert.ok(socket instanceof QueuePool);
  await socket.close();
});
