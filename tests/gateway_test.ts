// The gateway (gateway/) against the real PostgreSQL 15 of
// tests/_server.ts, driven by a client nobody here wrote: @neondatabase/serverless, through its
// HTTP function `neon()` and its WebSocket `Pool`/`Client`, with the default pipelined connect.
// On Deno the gateway runs on Deno.serve, on Node on node:http + ws.
//
// Every wait is bounded, so that a hang fails a test instead of stalling the run.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Client, neon, neonConfig, Pool } from "@neondatabase/serverless";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { RawTextTap } from "../gateway/_raw_text.ts";
import type { ByteStream, FieldDescription, StreamHandlers } from "../mod.ts";
import { getServer, passwordOf, type TestServer, type TestUser } from "./_server.ts";
import { isDeno } from "./_transports.ts";
import { concat, errorOf, eventually, within } from "./_helpers.ts";

const T = { timeout: 60_000 };
const MiB = 1024 * 1024;
const RUN = `${isDeno ? "deno" : "node"}_${Math.random().toString(36).slice(2, 8)}`;

// On Node 20 there is no global WebSocket: the ws package stands in, for Neon's driver too.
const WebSocketClass: typeof WebSocket = isDeno
  ? globalThis.WebSocket
  : (await import("ws")).WebSocket as unknown as typeof WebSocket;

// ---------------------------------------------------------------------------------------------
// Setup: one server, one gateway (and one relay-only gateway), logs captured

const logs: string[] = [];
const logger = Object.fromEntries(
  ["debug", "info", "warn", "error"].map((level) => [
    level,
    (message: string, data?: Record<string, unknown>) =>
      logs.push(`${level} ${message}${data ? " " + JSON.stringify(data) : ""}`),
  ]),
);

let setup: Promise<{ server: TestServer; gateway: RunningGateway }> | undefined;
const started: RunningGateway[] = [];

function env(): Promise<{ server: TestServer; gateway: RunningGateway }> {
  return setup ??= (async () => {
    const server = await getServer();
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `127.0.0.1:${server.port}`,
      logger,
    });
    started.push(gateway);
    neonConfig.fetchEndpoint = () => `${gateway.url}/sql`;
    neonConfig.wsProxy = (host, port) => `127.0.0.1:${gateway.port}/v2?address=${host}:${port}`;
    neonConfig.useSecureWebSocket = false;
    if (!isDeno) neonConfig.webSocketConstructor = WebSocketClass;
    return { server, gateway };
  })();
}

after(async () => {
  await Promise.all(started.map((g) => g.close()));
});

/** A harness URL with an application_name that marks this test's server sessions. */
function urlFor(server: TestServer, user: TestUser, app: string): string {
  return server.url(user, { application_name: `${RUN}_${app}` });
}

function sqlFetch(
  gateway: RunningGateway,
  body: string,
  headers: Record<string, string>,
): Promise<Response> {
  return fetch(`${gateway.url}/sql`, { method: "POST", body, headers });
}

// ---------------------------------------------------------------------------------------------
// The query suite, shared by the HTTP and WebSocket faces

const TYPES_SQL = "select $1::int as i, $2::int8 as big, $3::numeric as n, $4::text as t, " +
  "$5::bool as b, $6::json as j, $7::jsonb as jb, $8::bytea as by, $9::timestamptz as ts, " +
  "$10::date as d, $11::int[] as ints, $12::text[] as texts, $13::text as nothing, " +
  "$14::float8 as f";
const TYPES_PARAMS = [
  42,
  "9007199254740993",
  "12345.678901234567890123",
  'héllo wörld ✓ 😀 "quoted" \\ back',
  true,
  { a: [1, "x"], nested: { ok: true } },
  { b: null },
  new Uint8Array([0, 1, 127, 128, 255]),
  new Date("2024-02-29T08:15:00.123Z"),
  "2024-02-29",
  [1, 2, null],
  ['a"b', "c,d", null, "{}"],
  null,
  0.1,
];

function checkTypes(row: Record<string, unknown>): void {
  assert.equal(row.i, 42);
  assert.equal(row.big, "9007199254740993");
  assert.equal(row.n, "12345.678901234567890123");
  assert.equal(row.t, TYPES_PARAMS[3]);
  assert.equal(row.b, true);
  assert.deepEqual(row.j, TYPES_PARAMS[5]);
  assert.deepEqual(row.jb, TYPES_PARAMS[6]);
  assert.deepEqual([...(row.by as Uint8Array)], [0, 1, 127, 128, 255]);
  assert.equal((row.ts as Date).getTime(), Date.parse("2024-02-29T08:15:00.123Z"));
  const d = row.d as Date; // pg-types reads a date as local midnight
  assert.deepEqual([d.getFullYear(), d.getMonth() + 1, d.getDate()], [2024, 2, 29]);
  assert.deepEqual(row.ints, [1, 2, null]);
  assert.deepEqual(row.texts, ['a"b', "c,d", null, "{}"]);
  assert.equal(row.nothing, null);
  assert.equal(row.f, 0.1);
}

// ---------------------------------------------------------------------------------------------
// The raw-text workaround (gateway/_raw_text.ts), without a server

function backendMessage(type: string, body: number[]): number[] {
  const length = body.length + 4;
  return [
    type.charCodeAt(0),
    length >>> 24,
    (length >>> 16) & 255,
    (length >>> 8) & 255,
    length & 255,
    ...body,
  ];
}

function int32(n: number): number[] {
  return [n >>> 24 & 255, n >>> 16 & 255, n >>> 8 & 255, n & 255];
}

test("raw text tap: swaps type OIDs for tickets however the bytes are split", async () => {
  const column = (name: string, oid: number) => [
    ...new TextEncoder().encode(name),
    0,
    ...int32(16384), // table OID
    0,
    2, // column number
    ...int32(oid),
    0,
    4, // type size
    ...int32(-1), // type modifier
    0,
    0, // text format
  ];
  const description = backendMessage("T", [0, 2, ...column("a", 23), ...column("when", 1184)]);
  const row = backendMessage("D", [0, 2, ...int32(1), 49, ...int32(-1)]);
  const done = backendMessage("C", [...new TextEncoder().encode("SELECT 1"), 0]);
  const bytes = new Uint8Array([...row, ...description, ...row, ...done, ...description]);
  // Where the descriptions start, and where their type OIDs sit in them: after the header (5),
  // the count (2), "a\0" (2), table OID and column number (6); then the rest of column a (12),
  // "when\0" (5), table OID and column number (6).
  const descriptions = [row.length, bytes.length - description.length];
  const OID_OFFSETS = [15, 38];
  for (let trial = 0; trial < 200; trial++) {
    const cuts = [
      0,
      ...Array.from({ length: 1 + trial % 7 }, () => Math.floor(Math.random() * bytes.length)),
      bytes.length,
    ].sort((a, b) => a - b);
    let handlers: StreamHandlers | undefined;
    const inner: ByteStream = {
      encrypted: false,
      start: (h) => handlers = h,
      write() {},
      close() {},
    };
    const tap = new RawTextTap();
    tap.budget = { limit: 1e9, used: 0, exceeded: () => {} };
    const stream = await tap.transport({ name: "fake", connect: () => Promise.resolve(inner) })
      .connect({ host: "x", port: 1, tls: null });
    const out: number[] = [];
    stream.start({ data: (chunk) => out.push(...chunk), close() {} });
    for (let i = 1; i < cuts.length; i++) handlers!.data(bytes.slice(cuts[i - 1], cuts[i]));
    assert.equal(out.length, bytes.length, `cuts ${cuts}`);
    const view = new DataView(new Uint8Array(out).buffer);
    const tickets = descriptions.flatMap((base) =>
      OID_OFFSETS.map((o) => view.getUint32(base + o))
    );
    assert.ok(tickets.every((t) => t >= 0x80000000), `tickets ${tickets}`);
    const fields = (ids: number[]) => ids.map((dataTypeID) => ({ dataTypeID }) as FieldDescription);
    assert.deepEqual(tap.originalFields(fields(tickets.slice(0, 2))).map((f) => f.dataTypeID), [
      23,
      1184,
    ]);
    assert.deepEqual(tap.originalFields(fields(tickets.slice(2))).map((f) => f.dataTypeID), [
      23,
      1184,
    ]);
    // Everything else passed through untouched.
    const expected = [...bytes];
    const patched = [...out];
    for (const base of descriptions) {
      for (const offset of OID_OFFSETS) {
        for (let k = 0; k < 4; k++) expected[base + offset + k] = patched[base + offset + k] = 0;
      }
    }
    assert.deepEqual(patched, expected);
    assert.equal(tap.budget.used, 2 * row.length, "DataRow bytes are counted");
  }
});

// ---------------------------------------------------------------------------------------------
// HTTP face through neon()

test("HTTP: neon() sends parameters of each type and reads them back", T, async () => {
  const { server } = await env();
  const sql = neon(urlFor(server, "scram", "types"));
  const rows = await sql.query(TYPES_SQL, TYPES_PARAMS);
  assert.equal(rows.length, 1);
  checkTypes(rows[0] as Record<string, unknown>);
  const [tagged] = await sql`select ${"tagged"} || ${1}::text as s`;
  assert.equal(tagged.s, "tagged1");
});

test("HTTP: fullResults and arrayMode have the shapes the driver expects", T, async () => {
  const { server } = await env();
  const sql = neon(urlFor(server, "scram", "shapes"));
  const full = await sql.query("select 1 as a, 'x'::varchar(5) as b", [], { fullResults: true });
  assert.equal(full.command, "SELECT");
  assert.equal(full.rowCount, 1);
  assert.deepEqual(full.rows, [{ a: 1, b: "x" }]);
  assert.deepEqual(full.fields.map((f) => [f.name, f.dataTypeID, f.dataTypeModifier]), [
    ["a", 23, -1],
    ["b", 1043, 9],
  ]);
  const arrays = await sql.query("select 1 as a, 'x' as b", [], { arrayMode: true });
  assert.deepEqual(arrays, [[1, "x"]]);
  const table = `gw_shapes_${RUN}`;
  const created = await sql.query(`create table ${table} (id int)`, [], { fullResults: true });
  assert.equal(created.command, "CREATE");
  assert.equal(created.rowCount, null);
  const inserted = await sql.query(`insert into ${table} values (1), (2)`, [], {
    fullResults: true,
  });
  assert.equal(inserted.command, "INSERT");
  assert.equal(inserted.rowCount, 2);
  await sql.query(`drop table ${table}`);
});

test("HTTP: the JSON has Neon's keys, order and conversions", T, async () => {
  const { server, gateway } = await env();
  const url = urlFor(server, "scram", "json");
  const query = "select true as b, 7::int2 as s, 1.5::float8 as f, 'NaN'::float8 as nan, " +
    `'{"k": [1]}'::jsonb as j, 9::int8 as big, array[1,2] as arr, array['a b', null] as txt, ` +
    "null::text as nul, now() as ts";
  const raw = await sqlFetch(gateway, JSON.stringify({ query, params: [] }), {
    "Neon-Connection-String": url,
    "Neon-Raw-Text-Output": "true",
    "Neon-Array-Mode": "true",
  });
  assert.equal(raw.status, 200);
  assert.equal(raw.headers.get("content-type"), "application/json");
  const body = await raw.json();
  assert.deepEqual(Object.keys(body), ["rowAsArray", "fields", "rows", "command", "rowCount"]);
  assert.deepEqual(Object.keys(body.fields[0]), [
    "name",
    "dataTypeID",
    "tableID",
    "columnID",
    "dataTypeSize",
    "dataTypeModifier",
    "format",
  ]);
  assert.deepEqual(
    body.fields.map((f: { dataTypeID: number }) => f.dataTypeID),
    [16, 21, 701, 701, 3802, 20, 1007, 1009, 25, 1184],
  );
  assert.equal(body.rowAsArray, true);
  const row = body.rows[0];
  assert.deepEqual(row.slice(0, 9), [
    "t",
    "7",
    "1.5",
    "NaN",
    '{"k": [1]}',
    "9",
    "{1,2}",
    '{"a b",NULL}',
    null,
  ]);
  // The server's own text, microseconds and offset included.
  assert.match(row[9], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?$/);

  const typed = await sqlFetch(gateway, JSON.stringify({ query, params: [] }), {
    "Neon-Connection-String": url,
    "Content-Type": "application/json; charset=utf-8",
  });
  const typedBody = await typed.json();
  assert.equal(typedBody.rowAsArray, false);
  const { ts: _ts, ...rest } = typedBody.rows[0];
  assert.deepEqual(rest, {
    b: true,
    s: 7,
    f: 1.5,
    nan: "NaN",
    j: { k: [1] },
    big: "9",
    arr: [1, 2],
    txt: ["a b", null],
    nul: null,
  });
  // Per-query arrayMode in the body wins over the header.
  const perQuery = await sqlFetch(
    gateway,
    JSON.stringify({ query: "select 1 as one", arrayMode: true }),
    { "Neon-Connection-String": url },
  );
  assert.deepEqual((await perQuery.json()).rows, [[1]]);
});

test(
  "HTTP: a batch of 9000 queries keeps each one's types, arrayMode and row count",
  T,
  async () => {
    const { server, gateway } = await env();
    const url = urlFor(server, "scram", "big_batch");
    // More queries than the raw-text tap used to keep type tickets for: every result of a batch
    // is read once all have arrived.
    const queries = Array.from({ length: 9000 }, (_, i) => ({
      query: "select $1::int as n, $2::bool as b",
      params: [i, i % 2 === 0],
      arrayMode: i % 3 === 0,
    }));
    const response = await sqlFetch(gateway, JSON.stringify({ queries }), {
      "Neon-Connection-String": url,
      "Neon-Batch-Read-Only": "true",
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("neon-batch-read-only"), "true");
    const { results } = await response.json();
    assert.equal(results.length, 9000);
    for (const [i, result] of results.entries()) {
      assert.equal(result.rowAsArray, i % 3 === 0, `query ${i}`);
      assert.equal(result.rowCount, 1, `query ${i}`);
      assert.deepEqual(result.fields.map((f: { dataTypeID: number }) => f.dataTypeID), [23, 16]);
      const expected = i % 3 === 0 ? [i, i % 2 === 0] : { n: i, b: i % 2 === 0 };
      assert.deepEqual(result.rows, [expected], `query ${i}`);
    }
  },
);

test("HTTP: server errors carry their fields (23505, syntax error position)", T, async () => {
  const { server } = await env();
  const sql = neon(urlFor(server, "scram", "errors"));
  const table = `gw_errors_${RUN}`;
  await sql.query(`create table ${table} (id int constraint ${table}_pk primary key)`);
  try {
    await sql.query(`insert into ${table} values (1)`);
    const dup = await errorOf(sql.query(`insert into ${table} values ($1)`, [1]));
    assert.equal(dup.name, "NeonDbError");
    assert.equal(dup.code, "23505");
    assert.equal(dup.severity, "ERROR");
    assert.equal(dup.constraint, `${table}_pk`);
    assert.equal(dup.table, table);
    assert.equal(dup.schema, "public");
    assert.match(String(dup.detail), /Key \(id\)=\(1\) already exists/);
    const syntax = await errorOf(sql.query("select 1 frm nowhere"));
    assert.equal(syntax.code, "42601");
    assert.equal(syntax.position, "14");
    assert.match(String(syntax.message), /syntax error at or near "nowhere"/);
    const url = urlFor(server, "scram", "errors").replace(passwordOf("scram"), "wr0ng-pw");
    const login = await errorOf(neon(url)`select 1`);
    assert.equal(login.code, "28P01");
    assert.equal(login.severity, "FATAL");
  } finally {
    await sql.query(`drop table ${table}`);
  }
});

test(
  "HTTP: a batch is one transaction, with its isolation level, rolled back on error",
  T,
  async () => {
    const { server } = await env();
    const sql = neon(urlFor(server, "scram", "batch"));
    const table = `gw_batch_${RUN}`;
    await sql.query(`create table ${table} (id int primary key)`);
    try {
      const [, level, count] = await sql.transaction([
        sql`insert into ${sql.unsafe(table)} values (1), (2)`,
        sql`select current_setting('transaction_isolation') as level`,
        sql`select count(*)::int as n from ${sql.unsafe(table)}`,
      ], { isolationLevel: "Serializable" });
      assert.deepEqual(level, [{ level: "serializable" }]);
      assert.deepEqual(count, [{ n: 2 }]);

      const failed = await errorOf(sql.transaction([
        sql`insert into ${sql.unsafe(table)} values (3)`,
        sql`insert into ${sql.unsafe(table)} values (1)`,
      ]));
      assert.equal(failed.code, "23505");
      const after = await sql.query(`select array_agg(id order by id) as ids from ${table}`);
      assert.deepEqual(after, [{ ids: [1, 2] }], "the failed batch left nothing behind");

      const readOnly = await errorOf(
        sql.transaction([sql`insert into ${sql.unsafe(table)} values (4)`], { readOnly: true }),
      );
      assert.equal(readOnly.code, "25006");
      const [[flags]] = await sql.transaction([
        sql`select current_setting('transaction_read_only') as ro,
        current_setting('transaction_deferrable') as def`,
      ], { isolationLevel: "Serializable", readOnly: true, deferrable: true });
      assert.deepEqual(flags, { ro: "on", def: "on" });
    } finally {
      await sql.query(`drop table ${table}`);
    }
  },
);

test("HTTP: 100 concurrent queries share a few pooled server connections", T, async () => {
  const { server } = await env();
  const app = "http100";
  const sql = neon(urlFor(server, "scram", app));
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) => sql`select ${i}::int as i, pg_sleep(0.01)`),
  );
  assert.deepEqual(results.map((rows) => rows[0].i), Array.from({ length: 100 }, (_, i) => i));
  const sessions = Number(
    await server.psql(
      `select count(*) from pg_stat_activity where application_name = '${RUN}_${app}'`,
    ),
  );
  assert.ok(sessions >= 1 && sessions <= 20, `${sessions} server sessions for 100 queries`);
});

// ---------------------------------------------------------------------------------------------
// WebSocket face through Neon's Pool and Client (pipelined connect)

test("WebSocket: a Pool runs the suite against a SCRAM user (gateway ends auth)", T, async () => {
  const { server } = await env();
  const pool = new Pool({ connectionString: urlFor(server, "scram", "ws_pool"), max: 3 });
  try {
    const { rows } = await pool.query(TYPES_SQL, TYPES_PARAMS);
    checkTypes(rows[0]);
    const who = await pool.query("select current_user as u, $1::text as p", ["x"]);
    assert.deepEqual(who.rows, [{ u: "scram", p: "x" }]);

    const table = `gw_ws_${RUN}`;
    await pool.query(`create table ${table} (id int constraint ${table}_pk primary key)`);
    try {
      const client = await pool.connect();
      try {
        await client.query("begin");
        await client.query(`insert into ${table} values (1)`);
        assert.equal((await client.query(`select count(*)::int as n from ${table}`)).rows[0].n, 1);
        await client.query("rollback");
        await client.query("begin isolation level repeatable read");
        await client.query(`insert into ${table} values (2)`);
        await client.query("commit");
      } finally {
        client.release();
      }
      assert.deepEqual((await pool.query(`select id from ${table}`)).rows, [{ id: 2 }]);
      const dup = await errorOf(pool.query(`insert into ${table} values (2)`));
      assert.equal(dup.code, "23505");
      assert.equal(dup.constraint, `${table}_pk`);
      const syntax = await errorOf(pool.query("select 1 frm nowhere"));
      assert.equal(syntax.code, "42601");
      assert.equal(syntax.position, "14");
    } finally {
      await pool.query(`drop table ${table}`);
    }
  } finally {
    await pool.end();
  }
});

test("WebSocket: a Client logs in as an md5 user", T, async () => {
  const { server } = await env();
  const client = new Client(urlFor(server, "md5", "ws_md5"));
  await client.connect();
  try {
    const { rows } = await client.query("select current_user as u, $1::int * 2 as n", [21]);
    assert.deepEqual(rows, [{ u: "md5", n: 42 }]);
  } finally {
    await client.end();
  }
});

test("WebSocket: 100 concurrent queries through a Pool", T, async () => {
  const { server } = await env();
  const pool = new Pool({ connectionString: urlFor(server, "scram", "ws100"), max: 10 });
  try {
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => pool.query("select $1::int as i", [i])),
    );
    assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: 100 }, (_, i) => i));
  } finally {
    await pool.end();
  }
});

test("WebSocket: a wrong password gets the server's 28P01", T, async () => {
  const { server } = await env();
  const url = urlFor(server, "scram", "ws_bad").replace(passwordOf("scram"), "wr0ng-pw");
  const client = new Client(url);
  const errors: Record<string, unknown>[] = [];
  client.on("error", (error) => errors.push(error as unknown as Record<string, unknown>));
  // With the pipelined connect, connect() resolves before the server has answered: the error
  // comes as an event and fails the first query.
  await client.connect().catch((error) => errors.push(error));
  await client.query("select 1").catch((error) => errors.push(error));
  assert.ok(
    errors.some((e) => e.code === "28P01"),
    `expected 28P01 among ${errors.map((e) => e.code ?? e.message).join(", ")}`,
  );
  await client.end().catch(() => {});
});

test("WebSocket: a CancelRequest on a new WebSocket cancels the running query", T, async () => {
  const { server, gateway } = await env();
  const client = new Client(urlFor(server, "scram", "ws_cancel"));
  await client.connect();
  try {
    const sleeping = errorOf(client.query("select pg_sleep(30)"));
    await eventually("the query runs", async () =>
      (await server.psql(
        `select count(*) from pg_stat_activity
          where application_name = '${RUN}_ws_cancel' and state = 'active'`,
      )) === "1");
    // Read only now: with the pipelined connect, connect() resolved before BackendKeyData came.
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const cancel = new Uint8Array(16);
    const view = new DataView(cancel.buffer);
    view.setInt32(0, 16);
    view.setInt32(4, 80877102);
    view.setInt32(8, processID);
    view.setInt32(12, secretKey);
    const socket = await RawSocket.open(
      `${gateway.wsUrl}/v2?address=127.0.0.1:${server.port}`,
    );
    socket.send(cancel);
    await socket.closed;
    const error = await sleeping;
    assert.equal(error.code, "57014");
  } finally {
    await client.end();
  }
});

// ---------------------------------------------------------------------------------------------
// The WebSocket face at the byte level

/** A WebSocket as a byte stream, with the backend messages read so far. */
class RawSocket {
  readonly messages: { type: string; body: Uint8Array }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #buffer = new Uint8Array(0);
  #socket: WebSocket;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const data = new Uint8Array(event.data as ArrayBuffer);
      const next = new Uint8Array(this.#buffer.length + data.length);
      next.set(this.#buffer);
      next.set(data, this.#buffer.length);
      this.#buffer = next;
      this.#parse();
    };
    this.closed = new Promise((resolve) => {
      socket.onclose = (event) => resolve({ code: event.code, reason: event.reason });
    });
  }

  static open(url: string): Promise<RawSocket> {
    const socket = new WebSocketClass(url);
    socket.binaryType = "arraybuffer";
    const raw = new RawSocket(socket);
    return new Promise((resolve, reject) => {
      socket.onopen = () => resolve(raw);
      socket.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    });
  }

  send(data: Uint8Array | string): void {
    this.#socket.send(data);
  }

  close(): void {
    this.#socket.close();
  }

  /** Reads single bytes (an SSLRequest answer) as messages of type `byte:X`. */
  expectByte = false;

  #parse(): void {
    for (;;) {
      if (this.expectByte && this.#buffer.length >= 1) {
        this.messages.push({
          type: `byte:${String.fromCharCode(this.#buffer[0])}`,
          body: new Uint8Array(),
        });
        this.#buffer = this.#buffer.subarray(1);
        this.expectByte = false;
        continue;
      }
      if (this.#buffer.length < 5) return;
      const length = new DataView(this.#buffer.buffer, this.#buffer.byteOffset).getInt32(1);
      if (this.#buffer.length < length + 1) return;
      this.messages.push({
        type: String.fromCharCode(this.#buffer[0]),
        body: this.#buffer.slice(5, length + 1),
      });
      this.#buffer = this.#buffer.subarray(length + 1);
    }
  }

  /** Waits until a message of `type` has arrived and returns it. */
  async until(type: string): Promise<{ type: string; body: Uint8Array }> {
    let found: { type: string; body: Uint8Array } | undefined;
    await eventually(`a '${type}' message arrives`, () => {
      found = this.messages.find((m) => m.type === type);
      return Promise.resolve(found !== undefined);
    });
    return found!;
  }
}

function startupMessage(params: Record<string, string>, version = 196608): Uint8Array {
  const text = Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join("") + "\0";
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + body.length);
  const view = new DataView(out.buffer);
  view.setInt32(0, out.length);
  view.setInt32(4, version);
  out.set(body, 8);
  return out;
}

function typed(type: string, text: string): Uint8Array {
  const body = new TextEncoder().encode(text + "\0");
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

function authCode(message: { body: Uint8Array }): number {
  return new DataView(message.body.buffer, message.body.byteOffset).getInt32(0);
}

test(
  "WebSocket: frames are a byte stream; SSLRequest gets 'N'; pipelined query runs",
  T,
  async () => {
    const { gateway } = await env();
    // No ?address=: the configured upstream. Any path.
    const socket = await RawSocket.open(`${gateway.wsUrl}/v1`);
    try {
      socket.expectByte = true;
      socket.send(new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47])); // SSLRequest
      assert.equal((await socket.until("byte:N")).type, "byte:N");
      const startup = startupMessage({ user: "scram", database: "edgepool_test" });
      // The startup split across frames, then password + query in one frame.
      socket.send(startup.subarray(0, 5));
      socket.send(startup.subarray(5));
      assert.equal(
        authCode(await socket.until("R")),
        3,
        "the gateway asks for a cleartext password",
      );
      socket.send(concat(typed("p", passwordOf("scram")), typed("Q", "select 40 + 2")));
      await socket.until("C");
      // R/3 from the gateway, then the server's R/0, ParameterStatus..., BackendKeyData, Ready.
      assert.match(socket.messages.map((m) => m.type).join(""), /^byte:NRRS+KZTDC/);
      const row = socket.messages.find((m) => m.type === "D")!;
      assert.equal(new TextDecoder().decode(row.body.subarray(6)), "42");
    } finally {
      socket.close();
    }
  },
);

test("WebSocket: a text frame is refused", T, async () => {
  const { gateway } = await env();
  const socket = await RawSocket.open(`${gateway.wsUrl}/v2`);
  socket.send("hello");
  const { code } = await socket.closed;
  assert.equal(code, 1003);
});

test("WebSocket: closing either side closes the other", T, async () => {
  const { server, gateway } = await env();
  const app = `${RUN}_wsclose`;
  const sessions = () =>
    server.psql(`select count(*) from pg_stat_activity where application_name = '${app}'`);
  const login = async () => {
    const socket = await RawSocket.open(`${gateway.wsUrl}/v2?address=127.0.0.1:${server.port}`);
    const startup = startupMessage({
      user: "md5",
      database: "edgepool_test",
      application_name: app,
    });
    socket.send(concat(startup, typed("p", passwordOf("md5"))));
    await socket.until("Z");
    return socket;
  };
  const first = await login();
  assert.equal(await sessions(), "1");
  first.close();
  await eventually(
    "the server session ends with the WebSocket",
    async () => (await sessions()) === "0",
  );

  const second = await login();
  await server.psql(
    `select pg_terminate_backend(pid) from pg_stat_activity where application_name = '${app}'`,
  );
  const closed = await within(second.closed, 10_000, "the WebSocket closes");
  assert.equal(closed.code, 1000);
  const fatal = second.messages.find((m) => m.type === "E");
  assert.ok(fatal, "the server's FATAL error reached the client");
  assert.match(new TextDecoder().decode(fatal.body), /57P01/);
});

// ---------------------------------------------------------------------------------------------
// Security

test("security: a target outside the allowlist is refused on both faces", T, async () => {
  const { server, gateway } = await env();
  const elsewhere = server.url("scram").replace(`127.0.0.1:${server.port}`, "127.0.0.2:5432");
  // A 400 with Neon's error body, which Neon's driver parses (it reads bodies on 400 only).
  const http = await errorOf(neon(elsewhere).query("select 1"));
  assert.equal(http.code, "42501");
  assert.match(String(http.message), /^The gateway does not connect to 127\.0\.0\.2:5432.*allowed/);

  const refused = await new Promise<string>((resolve) => {
    const socket = new WebSocketClass(`${gateway.wsUrl}/v2?address=127.0.0.2:5432`);
    socket.onopen = () => resolve("opened");
    socket.onerror = () => resolve("refused");
  });
  assert.equal(refused, "refused");

  const client = new Client(elsewhere);
  client.on("error", () => {});
  await errorOf(client.connect());
});

test(
  "security: bad requests get a 4xx with a clear message and never the password",
  T,
  async () => {
    const { server, gateway } = await env();
    const url = server.url("scram");
    const cases: [string, Promise<Response>, RegExp, string][] = [
      [
        "bad JSON",
        sqlFetch(gateway, "{nope", { "Neon-Connection-String": url }),
        /not valid JSON/,
        "08P01",
      ],
      [
        "no header",
        sqlFetch(gateway, '{"query":"select 1"}', {}),
        /Missing the Neon-Connection-String/,
        "08P01",
      ],
      [
        "malformed connection string",
        sqlFetch(gateway, '{"query":"select 1"}', {
          "Neon-Connection-String": "postgres://scram:s3cret-pw@127.0.0.1:notaport/db",
        }),
        /Invalid Neon-Connection-String: The port is not a number/,
        "08P01",
      ],
      [
        "not a URL",
        sqlFetch(gateway, '{"query":"select 1"}', { "Neon-Connection-String": "hello" }),
        /Invalid Neon-Connection-String/,
        "08P01",
      ],
      [
        "bad isolation level",
        sqlFetch(gateway, '{"queries":[]}', {
          "Neon-Connection-String": url,
          "Neon-Batch-Isolation-Level": "Snapshot",
        }),
        /invalid isolation level/,
        "08P01",
      ],
      [
        "params not an array",
        sqlFetch(gateway, '{"query":"select 1","params":{}}', { "Neon-Connection-String": url }),
        /"params" must be an array/,
        "08P01",
      ],
      [
        "wrong shape",
        sqlFetch(gateway, "[1]", { "Neon-Connection-String": url }),
        /JSON object/,
        "08P01",
      ],
      [
        "a JWT",
        sqlFetch(gateway, '{"query":"select 1"}', {
          "Neon-Connection-String": url,
          Authorization: "Bearer abc.def.ghi",
        }),
        /Authorization header\) is not supported/,
        "0A000",
      ],
      // 400 too, as Neon's proxy answers: Neon's driver reads error bodies on 400 only.
      ["wrong path", fetch(`${gateway.url}/query`, { method: "POST" }), /POST \/sql/, "08P01"],
      ["wrong method", fetch(`${gateway.url}/sql`), /use POST \/sql/, "08P01"],
    ];
    for (const [name, pending, message, code] of cases) {
      const response = await pending;
      const body = await response.json();
      assert.equal(response.status, 400, name);
      assert.match(body.message, message, name);
      assert.equal(body.code, code, name);
      assert.equal(body.severity, "", name);
      assert.equal(body.detail, null, name);
      assert.ok(!JSON.stringify(body).includes("s3cret-pw"), `${name}: the password leaked`);
      assert.equal(response.headers.get("access-control-allow-origin"), "*", name);
    }
    // A body past 10 MiB is refused before it is read whole.
    const big = await sqlFetch(gateway, JSON.stringify({ query: "x".repeat(11 * MiB) }), {
      "Neon-Connection-String": url,
    });
    assert.equal(big.status, 400);
    assert.equal((await big.json()).code, "54000");
  },
);

test("security: a result past 10 MiB gets 400 with code 54000", T, async () => {
  const { server } = await env();
  const sql = neon(urlFor(server, "scram", "big"));
  const error = await errorOf(sql`select repeat('x', 11 * 1024 * 1024) as big`);
  assert.equal(error.code, "54000");
  assert.match(String(error.message), /response is too large/);
  const many = await errorOf(sql`select repeat('x', 1024) from generate_series(1, 20000)`);
  assert.equal(many.code, "54000");
  // The pool is fine afterwards.
  assert.deepEqual(await sql`select 1 as one`, [{ one: 1 }]);
});

test("security: CORS headers on answers and an OPTIONS preflight", T, async () => {
  const { server, gateway } = await env();
  const preflight = await fetch(`${gateway.url}/sql`, {
    method: "OPTIONS",
    headers: {
      Origin: "https://example.com",
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "neon-connection-string",
    },
  });
  await preflight.body?.cancel();
  assert.ok(preflight.status === 204 || preflight.status === 200);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
  assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/);
  assert.match(
    preflight.headers.get("access-control-allow-headers") ?? "",
    /Neon-Connection-String/,
  );
  const ok = await sqlFetch(gateway, '{"query":"select 1"}', {
    "Neon-Connection-String": server.url("scram"),
  });
  await ok.body?.cancel();
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), "*");
});

test("security: a client that disconnects mid-query frees its server connection", T, async () => {
  const { server, gateway } = await env();
  const app = `${RUN}_gone`;
  const controller = new AbortController();
  const request = fetch(`${gateway.url}/sql`, {
    method: "POST",
    body: JSON.stringify({ query: "select pg_sleep(30)", params: [] }),
    headers: { "Neon-Connection-String": server.url("scram", { application_name: app }) },
    signal: controller.signal,
  }).catch((error) => error);
  const state = () =>
    server.psql(`select coalesce(string_agg(state, ','), '') from pg_stat_activity
      where application_name = '${app}'`);
  await eventually("the query runs", async () => (await state()) === "active");
  controller.abort();
  await request;
  // Its query was interrupted: the connection is closed (it may be stuck), not reused.
  await eventually("the server connection is gone", async () => (await state()) === "");
});

test("security: relay-only mode passes bytes through untouched", T, async () => {
  const { server } = await env();
  const relay = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `127.0.0.1:${server.port}`,
    relay: true,
    logger,
  });
  started.push(relay);
  // Without the gateway in the middle, the server itself asks: md5 (R/5), trust (R/0).
  const socket = await RawSocket.open(`${relay.wsUrl}/v1?address=127.0.0.1:${server.port}`);
  socket.send(startupMessage({ user: "md5", database: "edgepool_test" }));
  assert.equal(authCode(await socket.until("R")), 5);
  socket.close();

  // Neon's Client without pipelining does md5 itself, end to end.
  const wsProxy = (host: string, port: number | string) =>
    `127.0.0.1:${relay.port}/v1?address=${host}:${port}`;
  for (const user of ["md5", "trust", "password"] as const) {
    const client = new Client(urlFor(server, user, "relay"));
    client.neonConfig.pipelineConnect = false;
    client.neonConfig.wsProxy = wsProxy;
    await client.connect();
    try {
      const { rows } = await client.query("select current_user as u, $1::int as n", [7]);
      assert.deepEqual(rows, [{ u: user, n: 7 }]);
    } finally {
      await client.end();
    }
  }
});

test("security: no password appears in the logs", T, async () => {
  await env();
  assert.ok(logs.length > 0, "the logger was called");
  const secrets = ["scram_pw", "md5_pw", "trust_pw", "password_pw", "s3cret-pw", "wr0ng-pw"];
  for (const line of logs) {
    for (const secret of secrets) {
      assert.ok(!line.includes(secret), `a log line holds a password: ${line}`);
    }
  }
});
