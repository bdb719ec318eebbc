// HttpPool against edgepool's gateway (gateway/mod.ts) in front of the real PostgreSQL 15 of
// tests/_server.ts: the same values and errors as a TCP pool for the same queries, batches as
// transactions, what HTTP refuses, cancelling, concurrency, close() and a wrong password;
// connect()'s session-less checkout, pg's config object and end(). Kysely over HTTP:
// tests/kysely_test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  ConnectionError,
  createPool,
  Oid,
  PoolError,
  PostgresError,
  type QueryConfig,
  type QueryResult,
  QueuePool,
  typeParsers,
} from "../mod.ts";
import { HttpCheckout, HttpPool, httpTransport } from "../transports/http.ts";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { getServer, type TestServer } from "./_server.ts";
import {
  assertPostgresError,
  codeOf,
  errorOf,
  eventually,
  show,
  uniqueName,
  within,
} from "./_helpers.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

interface Setup {
  server: TestServer;
  gateway: RunningGateway;
  url: string;
  endpoint: string;
  tcp: QueuePool<Connection>;
}

let setupPromise: Promise<Setup> | undefined;

function setup(): Promise<Setup> {
  return setupPromise ??= (async () => {
    const server = await getServer();
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `${server.host}:${server.port}`,
    });
    const url = server.url("scram", PLAIN);
    const tcp = new QueuePool((signal) => connect(url, { signal }), { poolSize: 2 });
    return { server, gateway, url, endpoint: new URL("/sql", gateway.url).href, tcp };
  })();
}

function httpPool(options: { bigint?: boolean; url?: string } = {}): Promise<HttpPool> {
  return setup().then((s) =>
    new HttpPool(options.url ?? s.url, { endpoint: s.endpoint, bigint: options.bigint })
  );
}

const tableName = (label: string) => uniqueName(`http_${label}`);

/** Runs `fn` on a new table of `columns`, made over TCP and dropped after, also on failure. */
async function withTable(
  label: string,
  columns: string,
  fn: (table: string, tcp: QueuePool<Connection>) => Promise<void>,
): Promise<void> {
  const { tcp } = await setup();
  const table = tableName(label);
  await tcp.query(`create table ${table} (${columns})`);
  try {
    await fn(table, tcp);
  } finally {
    await tcp.query(`drop table ${table}`);
  }
}

test("test server and gateway start", { timeout: 120_000 }, async () => {
  const s = await setup();
  assert.match(s.endpoint, /^http:\/\/127\.0\.0\.1:\d+\/sql$/);
});

// Each: SQL and parameters. Values chosen to go wrong if any layer (serializeParam, the JSON,
// the gateway, the text parsers) is lossy.
const SAME_QUERIES: [string, unknown[]][] = [
  ["select 1 as one, null::int as nothing", []],
  [
    "select $1::int2 as s, $2::int4 as i, $3::int8 as b, $4::float4 as r, $5::float8 as d, " +
    "$6::numeric as n",
    [-32768, 2147483647, "9223372036854775807", 1.5, -1e-300, "12345678901234567890.000001"],
  ],
  ["select 'NaN'::float8 as nan, 'Infinity'::float8 as inf, '-Infinity'::float8 as ninf", []],
  ["select $1::bool as t, $2::bool as f, $3::bool as n", [true, false, null]],
  [
    "select $1::text as t, $2::varchar as v, $3::char(3) as c, $4::name as nm",
    ['quote\' "dq" back\\slash\nnew line\ttab \u00e9\u4e2d\u{1f600}', "", "ab", "n"],
  ],
  ["select $1::bytea as b, ''::bytea as empty", [new Uint8Array([0, 1, 127, 128, 255])]],
  [
    "select $1::json as j, $2::jsonb as jb, 'null'::jsonb as jnull",
    // An array parameter is an array literal: a JSON array goes as JSON text.
    [{ a: [1, "x", null], 'b"': { c: true } }, JSON.stringify([1, { d: "\u00e9" }])],
  ],
  [
    "select $1::date as d, $2::timestamp as ts, $3::timestamptz as tz, " +
    "'infinity'::timestamptz as inf, '2000-01-01 00:00:00.123456+02'::timestamptz as micro",
    ["2024-02-29", new Date("2024-01-02T03:04:05.678Z"), new Date(-62198755200000)],
  ],
  ["select $1::uuid as u, '1 day 02:03:04'::interval as iv, '10.0.0.1/8'::inet as ip", [
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
  ]],
  [
    "select $1::int[] as ints, $2::text[] as texts, $3::int8[] as bigs, $4::int[] as nested, " +
    "'{}'::text[] as empty",
    [
      [1, null, -3],
      ["a,b", 'q"uote', "back\\slash", null, "NULL", ""],
      ["1", "-9007199254740993"],
      [[1, 2], [3, 4]],
    ],
  ],
  ["select $1::text as long", ["x".repeat(100_000)]],
  ["select generate_series(1, $1::int) as i, md5(generate_series(1, $1::int)::text) as h", [500]],
  ["select oid, relname from pg_class where relname = $1", ["pg_class"]],
  ["select $1 as untyped, $2::text is null as isnull", ["plain", null]],
];

function comparable(result: QueryResult<unknown>) {
  return {
    command: result.command,
    rowCount: result.rowCount,
    rows: result.rows,
    // Without the wire format: a TCP pool's later runs of a statement read some columns in
    // binary (see binary_results_test.ts), to the same values.
    fields: result.fields.map(({ format: _, ...field }) => field),
  };
}

test("HttpPool returns the same values, fields and counts as a TCP pool", T, async () => {
  const { tcp, url } = await setup();
  for (const bigint of [false, true]) {
    await using http = await httpPool({ bigint });
    const reference = bigint
      ? new QueuePool((signal) => connect(url, { signal, bigint: true }), { poolSize: 1 })
      : tcp;
    try {
      for (const [sql, params] of SAME_QUERIES) {
        for (const rowMode of ["object", "array"] as const) {
          const expected = await reference.query(sql, params, { rowMode });
          const actual = await http.query(sql, params, { rowMode });
          assert.deepEqual(comparable(actual), comparable(expected), `${sql} (${rowMode})`);
        }
      }
    } finally {
      if (reference !== tcp) await reference.close();
    }
  }
});

test("HttpPool reports INSERT/UPDATE/DELETE/DDL as a TCP pool does", T, async () => {
  const { tcp } = await setup();
  await using http = await httpPool();
  const table = tableName("dml");
  const steps: [string, unknown[]][] = [
    [`create table ${table} (id int primary key, v text)`, []],
    [`insert into ${table} values ($1, $2), ($3, $4)`, [1, "a", 2, "b"]],
    [`insert into ${table} values ($1, $2) returning *`, [3, "c"]],
    [`update ${table} set v = upper(v) where id > $1`, [1]],
    [`delete from ${table} where id = $1`, [3]],
    [`select * from ${table} order by id`, []],
    [`drop table ${table}`, []],
  ];
  const viaHttp = [];
  for (const [sql, params] of steps) viaHttp.push(comparable(await http.query(sql, params)));
  const viaTcp = [];
  for (const [sql, params] of steps) viaTcp.push(comparable(await tcp.query(sql, params)));
  // Table OIDs differ between the two runs of the same DDL; everything else must not.
  const noTableIds = (r: ReturnType<typeof comparable>) => ({
    ...r,
    fields: r.fields.map((f) => ({ ...f, tableID: 0 })),
  });
  assert.deepEqual(viaHttp.map(noTableIds), viaTcp.map(noTableIds));
  assert.deepEqual(viaHttp.map((r) => [r.command, r.rowCount]), [
    ["CREATE", null],
    ["INSERT", 2],
    ["INSERT", 1],
    ["UPDATE", 2],
    ["DELETE", 1],
    ["SELECT", 2],
    ["DROP", null],
  ]);
});

const ERROR_FIELDS = [
  "severity",
  "code",
  "message",
  "detail",
  "hint",
  "position",
  "where",
  "schema",
  "table",
  "column",
  "dataType",
  "constraint",
  "routine",
] as const;

function errorFields(error: unknown): Record<string, unknown> {
  assert.ok(error instanceof PostgresError, `expected a PostgresError, got ${show(error)}`);
  return Object.fromEntries(ERROR_FIELDS.map((name) => [name, error[name]]));
}

test("HttpPool errors are the PostgresErrors a TCP pool gives, with their fields", T, async () => {
  await using http = await httpPool();
  const columns = "id int primary key, v text not null check (length(v) < 5)";
  await withTable("errors", columns, async (table, tcp) => {
    await tcp.query(`insert into ${table} values (1, 'a')`);
    const failing: [string, unknown[], string][] = [
      [`insert into ${table} values ($1, $2)`, [1, "b"], "23505"],
      [`insert into ${table} values ($1, $2)`, [2, null], "23502"],
      [`insert into ${table} values ($1, $2)`, [2, "toolong"], "23514"],
      ["select 1 +", [], "42601"],
      ["select * from no_such_table_here", [], "42P01"],
      ["select $1::int", ["not a number"], "22P02"],
      ["select 1/0", [], "22012"],
      [
        "do $$ begin raise exception 'custom' using hint = 'a hint', detail = 'a detail'; end $$",
        [],
        "P0001",
      ],
    ];
    for (const [sql, params, code] of failing) {
      const viaHttp = errorFields(await errorOf(http.query(sql, params)));
      const viaTcp = errorFields(await errorOf(tcp.query(sql, params)));
      assert.equal(viaHttp.code, code, String(viaHttp.message));
      assert.deepEqual(viaHttp, viaTcp, sql);
    }
  });
});

test("HttpPool.batch commits as one transaction and rolls back on a failure", T, async () => {
  await using http = await httpPool();
  await withTable("batch", "id int primary key, v text", async (table, tcp) => {
    const results = await http.batch([
      { sql: `insert into ${table} values ($1, $2)`, params: [1, "one"] },
      { sql: `insert into ${table} values ($1, $2), ($3, $4)`, params: [2, "two", 3, "three"] },
      `select id, v from ${table} order by id`,
    ]);
    assert.deepEqual(results.map((r) => [r.command, r.rowCount]), [
      ["INSERT", 1],
      ["INSERT", 2],
      ["SELECT", 3],
    ]);
    assert.deepEqual(results[2].rows[2], { id: 3, v: "three" });

    const error = await errorOf(http.batch([
      { sql: `insert into ${table} values ($1, $2)`, params: [4, "four"] },
      { sql: `insert into ${table} values ($1, $2)`, params: [1, "dup"] },
      `insert into ${table} values (5, 'five')`,
    ]));
    assertPostgresError(error, "23505");
    assert.equal(error.constraint, `${table}_pkey`);
    assert.equal((await tcp.query(`select * from ${table}`)).rowCount, 3, "all rolled back");

    // The same batches on a socket pool give the same results and the same error.
    await tcp.query(`delete from ${table} where id > 3`);
    const viaTcp = await errorOf(tcp.batch([
      { sql: `insert into ${table} values ($1, $2)`, params: [4, "four"] },
      { sql: `insert into ${table} values ($1, $2)`, params: [1, "dup"] },
    ]));
    assert.deepEqual(errorFields(viaTcp), errorFields(error));

    const shown = await http.batch([
      "show transaction_isolation",
      "show transaction_read_only",
      "show transaction_deferrable",
    ], { isolation: "serializable", readOnly: true, deferrable: true, rowMode: "array" });
    assert.deepEqual(shown.map((r) => r.rows[0][0]), ["serializable", "on", "on"]);
    const readOnly = await errorOf(
      http.batch([`insert into ${table} values (9, 'x')`], { readOnly: true }),
    );
    assertPostgresError(readOnly, "25006");
    const isolated = await http.batch(["show transaction_isolation"], {
      isolation: "repeatable read",
    });
    assert.equal(isolated[0].rows[0].transaction_isolation, "repeatable read");
  });
});

const TRANSACTION_REFUSED =
  /each query over HTTP is one request with no session, so the statements after BEGIN would not be in the transaction; interactive transactions need a socket transport \(TCP or WebSocket\); over HTTP use pool\.batch\(\[\.\.\.\]\) for a transaction/;

test("HttpPool.transaction() rejects UNSUPPORTED, pointing to batch()", T, async () => {
  await using http = await httpPool();
  const error = await errorOf(http.transaction(async () => {}));
  assert.ok(error instanceof PoolError);
  assert.equal(error.code, "UNSUPPORTED");
  assert.match(
    error.message,
    /interactive transactions need a socket transport \(TCP or WebSocket\); over HTTP use pool\.batch\(\[\.\.\.\]\) for a transaction/,
  );
});

test("HttpPool.connect() gives a checkout whose queries are one request each", T, async () => {
  await using http = await httpPool();
  const conn = await http.connect();
  assert.ok(conn instanceof HttpCheckout);
  assert.equal(conn.released, false);
  const before = http.stats().requestsNum;
  const a = await conn.query<{ n: number }>("select $1::int + 1 as n", [41]);
  const b = await conn.query<unknown[]>({
    text: "select $1::text as t",
    values: ["x"],
    rowMode: "array",
  });
  assert.deepEqual([a.rows, a.command, a.rowCount], [[{ n: 42 }], "SELECT", 1]);
  assert.deepEqual(b.rows, [["x"]]);
  assert.equal(http.stats().requestsNum - before, 2);
  // release() as on a socket pool: once; the handle is then unusable.
  await conn.release();
  assert.equal(conn.released, true);
  assert.equal(codeOf(await errorOf(conn.query("select 1"))), "RELEASED");
  assert.throws(() => conn.release(), { name: "PoolError", code: "RELEASED" });
  // A truthy error (pg's "destroy it") has no connection to close; close() and await using
  // end a checkout like release(), without throwing twice.
  const broken = await http.connect();
  await broken.release(new Error("broken"));
  {
    await using scoped = await http.connect();
    assert.deepEqual((await scoped.query("select 1 as one")).rows, [{ one: 1 }]);
    await scoped.close();
  }
  assert.equal(http.stats().requestsInFlight, 0);
});

test("A cursor on an HttpPool checkout throws UNSUPPORTED: no session over HTTP", T, async () => {
  await using http = await httpPool();
  await using conn = await http.connect();
  const cursor = { read: () => Promise.resolve([]), close: () => Promise.resolve() };
  assert.throws(() => conn.query(cursor), {
    name: "ConnectionError",
    code: "UNSUPPORTED",
    message: /Cannot stream rows over HTTP/,
  });
});

test(
  "BEGIN over HTTP is refused UNSUPPORTED before it is sent, on the pool and a checkout",
  T,
  async () => {
    await withTable("begin", "id int", async (table, tcp) => {
      await using http = await httpPool();
      const conn = await http.connect();
      const before = http.stats().requestsNum;
      const opening = [
        "begin",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "  \n-- a comment\n /* another */ Begin;",
        "start  transaction read write",
        "START\nTRANSACTION",
      ];
      for (const sql of opening) {
        for (const attempt of [http.query(sql), conn.query(sql), conn.query({ text: sql })]) {
          const error = await errorOf(attempt);
          assert.ok(error instanceof PoolError, `${sql}: ${show(error)}`);
          assert.equal(error.code, "UNSUPPORTED");
          assert.match(error.message, TRANSACTION_REFUSED);
        }
      }
      assert.match(
        String((await errorOf(conn.query("begin"))).message),
        /^Cannot open a transaction with a connection from HttpPool\.connect\(\)/,
      );
      assert.match(
        String((await errorOf(http.query("begin"))).message),
        /^Cannot open a transaction with pool\.query\(\)/,
      );
      assert.equal(http.stats().requestsNum, before, "nothing was sent");
      // What the text misses (a nested comment) runs, and the command tag refuses it: the
      // endpoint rolled the transaction back as the request ended.
      const nested = await errorOf(conn.query("/* a /* nested */ comment */ begin"));
      assert.equal(codeOf(nested), "UNSUPPORTED", show(nested));
      assert.equal(http.stats().requestsNum, before + 1);
      // Statements that merely contain the words are not transactions.
      await conn.query(`insert into ${table} values (1)`);
      assert.deepEqual(
        (await conn.query("select 'begin' as begin, 1 as start_transaction")).rows,
        [{ begin: "begin", start_transaction: 1 }],
      );
      await conn.release();
      assert.deepEqual((await tcp.query(`select id from ${table}`)).rows, [{ id: 1 }]);
    });
  },
);

test(
  "HttpPool.query takes pg's config object: values, rowMode, types; refuses name",
  T,
  async () => {
    await using http = await httpPool();
    const config: QueryConfig = {
      text: "select $1::int as a, '2000-01-01 00:00:00.123456+00'::timestamptz as at",
      values: [1],
      rowMode: "array",
    };
    const own = await http.query<unknown[]>(config);
    assert.equal(own.rows[0][0], 1);
    assert.ok(own.rows[0][1] instanceof Date);
    // Parameters beside the config take the place of its values, as in pg.
    assert.equal((await http.query<unknown[]>(config, [2])).rows[0][0], 2);
    // Drizzle's way: the server's text for timestamps, edgepool's values for the rest.
    const asked: number[] = [];
    const types = {
      getTypeParser(oid: number) {
        asked.push(oid);
        return oid === Oid.timestamptz ? (text: string) => text : typeParsers.getTypeParser(oid);
      },
    };
    const kept = await http.query({ ...config, types });
    assert.deepEqual(kept.rows, [[1, "2000-01-01 00:00:00.123456+00"]]);
    assert.deepEqual(asked, [Oid.int4, Oid.timestamptz]);
    const bad = await errorOf(http.query({ text: "select 1", types: {} as typeof types }));
    assert.ok(bad instanceof TypeError, show(bad));
    // A prepared statement would not outlive its request.
    const named = await errorOf(http.query({ text: "select 1", name: "one" }));
    assert.ok(named instanceof ConnectionError, show(named));
    assert.equal(named.code, "UNSUPPORTED");
    assert.match(named.message, /Cannot prepare the statement "one" over HTTP/);
    for (const wrong of [null, 42, {}, { text: 1 }]) {
      const error = await errorOf(http.query(wrong as unknown as QueryConfig));
      assert.ok(error instanceof TypeError, show(error));
    }
  },
);

test("HttpPool.end() closes it; connect() then rejects POOL_CLOSED", T, async () => {
  const http = await httpPool();
  await http.end();
  assert.equal(http.closed, true);
  assert.equal(codeOf(await errorOf(http.connect())), "POOL_CLOSED");
  assert.equal(codeOf(await errorOf(http.query("select 1"))), "POOL_CLOSED");
});

test(
  "An AbortSignal rejects an HttpPool request, and the gateway cancels its statement",
  T,
  async () => {
    const { server } = await setup();
    await using http = await httpPool();
    const marker = uniqueName("abort");
    const ofMarker = `query like '%${marker}%' and query not like '%pg_stat_activity%'`;
    const sleeping = (count: string) => async () =>
      await server.psql(
        `select count(*) from pg_stat_activity where state = 'active' and ${ofMarker}`,
      ) === count;
    const controller = new AbortController();
    // Ten minutes: the statement can end within the test only if something cancels it.
    const pending = errorOf(
      http.query(`select pg_sleep(600), '${marker}'`, [], { signal: controller.signal }),
    );
    try {
      await eventually("the statement runs on the server", sleeping("1"));
      controller.abort(new Error("user gave up"));
      // Rejected while the statement would still sleep for minutes: the client did not wait.
      const error = await within(pending, 10_000, "the aborted request");
      assert.ok(error instanceof Error && error.message === "user gave up", String(error));
      assert.equal(http.stats().requestsInFlight, 0);
      // The gateway frees the server connection of a client that went away: the sleep stops.
      await eventually("the sleep cancelled", sleeping("0"));
    } finally {
      // Leave no ten-minute sleep behind if the test failed.
      await server.psql(`select pg_cancel_backend(pid) from pg_stat_activity where ${ofMarker}`);
    }
  },
);

test("HttpPool runs 100 concurrent queries", T, async () => {
  await using http = await httpPool();
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) => http.query("select $1::int * 2 as n", [i])),
  );
  assert.deepEqual(results.map((r) => r.rows[0].n), Array.from({ length: 100 }, (_, i) => i * 2));
  const stats = http.stats();
  assert.equal(stats.requestsNum, 100);
  assert.equal(stats.requestsErrors, 0);
  assert.equal(stats.requestsInFlight, 0);
});

test("HttpPool.close waits for requests in flight, then rejects with POOL_CLOSED", T, async () => {
  const http = await httpPool();
  const running = http.query("select pg_sleep(0.3) as slept, 7 as n");
  let closed = false;
  const closing = http.close().then(() => closed = true);
  const late = await errorOf(http.batch(["select 1"]));
  assert.ok(late instanceof PoolError && late.code === "POOL_CLOSED", String(late));
  assert.equal(closed, false);
  assert.equal((await running).rows[0].n, 7);
  await closing;
  assert.equal(closed, true);
  assert.match(http.status(), /0 requests in flight, 1 sent, 0 failed.*closed$/);
});

test("A wrong password is a PostgresError 28P01 over HTTP", T, async () => {
  const { server } = await setup();
  const wrong = server.url("scram", PLAIN).replace(":scram_pw@", ":wrong_pw@");
  assert.notEqual(wrong, server.url("scram", PLAIN));
  await using http = await httpPool({ url: wrong });
  const error = await errorOf(http.query("select 1"));
  assertPostgresError(error, "28P01");
  assert.ok(!error.message.includes("wrong_pw"));
});

test("createPool(url, { transport: httpTransport() }) queries through the gateway", T, async () => {
  const { url, endpoint } = await setup();
  await using pool = createPool(url, { transport: httpTransport({ endpoint }) });
  assert.ok(pool instanceof HttpPool);
  assert.deepEqual((await pool.query("select $1::int + 1 as n", [41])).rows, [{ n: 42 }]);
  const [a, b] = await pool.batch(["select 1 as x", {
    sql: "select $1::text as y",
    params: ["z"],
  }]);
  assert.deepEqual([a.rows, b.rows], [[{ x: 1 }], [{ y: "z" }]]);
});

test("gateway and TCP pool close", T, async () => {
  const s = await setup();
  await s.tcp.close();
  await s.gateway.close();
});
