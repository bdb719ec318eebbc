// Connection and connect() against the real PostgreSQL 15 of tests/_server.ts, run once per
// transport of tests/_transports.ts `connectionTransports`: deno-tcp and node-tcp on Deno (Deno
// has node:net), node-tcp on Node, and on both the WebSocket transport through websockify.
// Tests of TLS inside the connection run on TCP transports only.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  type ConnectionError,
  type ConnectOptions,
  PostgresError,
  type PostgresNotice,
} from "../mod.ts";
import { autoTransport } from "../transports/auto.ts";
import { connectionTransports, denoTcp, nodeTcp } from "./_transports.ts";
import { getServer, passwordOf, type TestUser } from "./_server.ts";
import {
  assertConnectionError,
  assertPostgresError,
  delay,
  endStatement,
  rejection,
  Resolved,
  show,
  within,
} from "./_helpers.ts";
import { closedPort, silentServer } from "./_net.ts";

const T = { timeout: 20_000 };
const PLAIN = { sslmode: "disable" };

// ---------------------------------------------------------------------------------------------
// Helpers

/** The same URL with host `localhost`, the name the test certificate is for. */
function viaLocalhost(url: string): string {
  return url.replace("@127.0.0.1:", "@localhost:");
}

/** Waits until backend `pid` runs a statement (seen from `observer`, a superuser session). */
async function waitUntilActive(observer: Connection, pid: number): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const { rows } = await observer.query(
      "select state, query from pg_stat_activity where pid = $1",
      [pid],
    );
    if (rows[0]?.state === "active" && String(rows[0].query).includes("pg_sleep")) return;
    await delay(20);
  }
  assert.fail(`backend ${pid} never started its statement`);
}

/** Asserts `error` is COPY's `UNSUPPORTED` error for `direction`. */
function assertCopyUnsupported(
  error: unknown,
  direction: "FROM STDIN" | "TO STDOUT",
): asserts error is ConnectionError {
  assertConnectionError(error, "UNSUPPORTED");
  assert.match(error.message, new RegExp(`COPY \\.\\.\\. ${direction} is not supported`));
}

test("test server starts", { timeout: 120_000 }, async () => {
  const s = await getServer();
  assert.ok(s.port > 0);
});

// ---------------------------------------------------------------------------------------------
// The suite, once per transport

for (const { transport, tcp, gateway } of connectionTransports) {
  const name = (text: string) => `${text} [${transport.name}]`;
  /** Options of a test that needs the client to log in to the server itself. */
  const OWN_LOGIN = gateway
    ? {
      ...T,
      skip: "the gateway ends authentication itself and always asks for a password (as Neon's)",
    }
    : T;
  /** Options of a test of the server side of the client's TLS choice (not so behind the gateway). */
  const OWN_TLS = gateway
    ? { ...T, skip: "the gateway opens its own connection to the server: TLS there is its setting" }
    : T;
  const isDenoTcp = transport === denoTcp;
  /** Options of a test of TLS inside the connection (SSLRequest), skipped behind a proxy. */
  const TCP_TLS = tcp ? T : {
    ...T,
    skip: "TLS inside the connection needs a TCP transport (behind a proxy, TLS is wss:)",
  };

  /** Connects as `user` (plain TCP unless `params` say otherwise) over this transport. */
  const open = async (
    user: TestUser = "scram",
    params: Record<string, string> = PLAIN,
    options: ConnectOptions = {},
  ): Promise<Connection> => {
    const s = await getServer();
    return await connect(s.url(user, params), { transport, ...options });
  };
  const sslInUse = async (conn: Connection): Promise<boolean> => {
    const { rows } = await conn.query<{ ssl: boolean }>(
      "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    return rows[0].ssl;
  };

  // -------------------------------------------------------------------------------------------
  // Authentication

  for (const user of ["scram", "md5", "password", "trust"] as const) {
    test(name(`connect authenticates user ${user} and runs a query`), T, async () => {
      await using conn = await open(user);
      const { rows } = await conn.query("select current_user as who");
      assert.deepEqual(rows, [{ who: user }]);
    });
  }

  for (const user of ["scram", "md5", "password"] as const) {
    test(name(`connect rejects a wrong ${user} password with PostgresError 28P01`), T, async () => {
      // A ten-minute connectTimeout: the rejection comes from the server's answer, never from a
      // deadline of the client's (which would be CONNECT_TIMEOUT, not 28P01).
      const error = await within(
        rejection(open(user, PLAIN, { password: "wrong", connectTimeout: 600_000 })),
        10_000,
        "the wrong password's rejection",
      );
      assertPostgresError(error, "28P01");
      assert.match(error.message, /password authentication failed for user "?\w+"?/);
      assert.equal(error.severity, "FATAL");
    });

    test(
      name(`connect fails with AUTH_FAILED when ${user} needs a password and has none`),
      T,
      async () => {
        const s = await getServer();
        const url = `postgresql://${user}@127.0.0.1:${s.port}/edgepool_test?sslmode=disable`;
        const error = await rejection(connect(url, { transport }));
        assertConnectionError(error, "AUTH_FAILED");
        assert.match(error.message, new RegExp(`user "${user}"`));
      },
    );
  }

  for (const user of ["scram", "md5"] as const) {
    test(name(`connect takes the ${user} password from an async function`), T, async () => {
      let calls = 0;
      const password = async () => {
        calls++;
        await delay(10);
        return passwordOf(user);
      };
      await using conn = await open(user, PLAIN, { password });
      assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: user }]);
      assert.equal(calls, 1);
    });
  }

  test(name("connect without a password works for a trust user"), OWN_LOGIN, async () => {
    const s = await getServer();
    const url = `postgresql://trust@127.0.0.1:${s.port}/edgepool_test?sslmode=disable`;
    await using conn = await connect(url, { transport });
    assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: "trust" }]);
  });

  // -------------------------------------------------------------------------------------------
  // TLS

  test(name("connect with sslmode=disable stays unencrypted"), OWN_TLS, async () => {
    await using conn = await open("scram", { sslmode: "disable" });
    assert.equal(conn.encrypted, false);
    assert.equal(await sslInUse(conn), false);
  });

  test(name("connect with sslmode=prefer encrypts when the CA is given"), TCP_TLS, async () => {
    const s = await getServer();
    await using conn = await open("scram", { sslmode: "prefer" }, { ca: s.caPem });
    assert.equal(conn.encrypted, true);
    assert.equal(await sslInUse(conn), true);
  });

  test(
    name("connect with sslmode=prefer and no CA encrypts where unverified TLS exists"),
    TCP_TLS,
    async () => {
      await using conn = await open("scram", { sslmode: "prefer" });
      // Deno verifies every chain: without the test CA its handshake fails and prefer falls back.
      assert.equal(conn.encrypted, !isDenoTcp);
      assert.equal(await sslInUse(conn), conn.encrypted);
    },
  );

  test(name("connect with sslmode=require and the CA encrypts"), TCP_TLS, async () => {
    const s = await getServer();
    await using conn = await open("scram", { sslmode: "require" }, { ca: s.caPem });
    assert.equal(conn.encrypted, true);
    assert.equal(await sslInUse(conn), true);
  });

  test(
    name("connect with sslmode=require and no CA encrypts, or fails where chains are verified"),
    TCP_TLS,
    async () => {
      if (isDenoTcp) {
        assertConnectionError(await rejection(open("scram", { sslmode: "require" })), "TLS_FAILED");
        return;
      }
      await using conn = await open("scram", { sslmode: "require" });
      assert.equal(conn.encrypted, true);
      assert.equal(await sslInUse(conn), true);
    },
  );

  test(
    name("connect with verify-full to localhost and the ca option encrypts"),
    TCP_TLS,
    async () => {
      const s = await getServer();
      const url = viaLocalhost(s.url("scram", { sslmode: "verify-full" }));
      await using conn = await connect(url, { transport, ca: s.caPem });
      assert.equal(conn.encrypted, true);
      assert.equal(await sslInUse(conn), true);
    },
  );

  test(
    name("connect with verify-full to localhost and sslrootcert in the URL encrypts"),
    TCP_TLS,
    async () => {
      const s = await getServer();
      const url = viaLocalhost(s.url("scram", { sslmode: "verify-full", sslrootcert: s.caFile! }));
      await using conn = await connect(url, { transport });
      assert.equal(conn.encrypted, true);
      assert.equal(await sslInUse(conn), true);
    },
  );

  test(
    name("connect with verify-full fails with TLS_FAILED when the host name does not match"),
    TCP_TLS,
    async () => {
      const s = await getServer();
      const error = await rejection(open("scram", { sslmode: "verify-full" }, { ca: s.caPem }));
      assertConnectionError(error, "TLS_FAILED");
    },
  );

  test(
    name("connect with verify-full fails with TLS_FAILED when the CA is not trusted"),
    TCP_TLS,
    async () => {
      const s = await getServer();
      const url = viaLocalhost(s.url("scram", { sslmode: "verify-full" }));
      assertConnectionError(await rejection(connect(url, { transport })), "TLS_FAILED");
      const system = viaLocalhost(s.url("scram", { sslrootcert: "system" }));
      assertConnectionError(await rejection(connect(system, { transport })), "TLS_FAILED");
    },
  );

  test(
    name("connect as ssl_only is refused by the server without TLS (28000)"),
    OWN_TLS,
    async () => {
      const error = await rejection(open("ssl_only", { sslmode: "disable" }));
      assertPostgresError(error, "28000");
      assert.match(error.message, /no pg_hba\.conf entry|reject/);
    },
  );

  test(name("connect as ssl_only is accepted with sslmode=require"), TCP_TLS, async () => {
    const s = await getServer();
    await using conn = await open("ssl_only", { sslmode: "require" }, { ca: s.caPem });
    assert.equal(conn.encrypted, true);
    assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: "ssl_only" }]);
  });

  // -------------------------------------------------------------------------------------------
  // Queries

  test(
    name("query runs several statements with the simple protocol and returns results"),
    T,
    async () => {
      await using conn = await open();
      const result = await conn.query("select 1 as a; select 'x' as b, 2 as c; select 3 as d");
      assert.equal(result.results?.length, 3);
      assert.deepEqual(result.results!.map((r) => r.rows), [[{ a: 1 }], [{ b: "x", c: 2 }], [{
        d: 3,
      }]]);
      assert.deepEqual(result.rows, [{ d: 3 }]);
      assert.equal(result.command, "SELECT");
      assert.equal((await conn.query("select 1 as one")).results, undefined);
    },
  );

  test(name("query binds parameters with the extended protocol"), T, async () => {
    await using conn = await open();
    const { rows } = await conn.query("select $1::int + $2::int as sum, $3::text as word", [
      40,
      2,
      "hi",
    ]);
    assert.deepEqual(rows, [{ sum: 42, word: "hi" }]);
    // The simple protocol would read "$1" as a syntax error, so [] means extended too.
    assert.deepEqual((await conn.query("select 7 as n", [])).rows, [{ n: 7 }]);
  });

  test(name("query returns arrays in column order with rowMode array"), T, async () => {
    await using conn = await open();
    const simple = await conn.query("select 1 as a, 'b' as b, null as a", undefined, {
      rowMode: "array",
    });
    assert.deepEqual(simple.rows, [[1, "b", null]]);
    const extended = await conn.query("select $1::int as x, $2::text as x", [5, "y"], {
      rowMode: "array",
    });
    assert.deepEqual(extended.rows, [[5, "y"]]);
    assert.deepEqual(extended.fields.map((f) => f.name), ["x", "x"]);
  });

  test(name("query describes fields with their table and column of origin"), T, async () => {
    await using conn = await open();
    await conn.query("create temp table described (id int4 primary key, label varchar(20))");
    await conn.query("insert into described values (1, 'one')");
    const oid = (await conn.query("select 'described'::regclass::oid as oid")).rows[0].oid;
    const sql = "select id, label, 1.5::float8 as lit from described";
    // The simple protocol (a comment first), a prepared statement's first run (described), and
    // its second (columns known, int4 in binary): the same fields.
    for (const [text, params, binary] of [[`/* simple */ ${sql}`], [sql, []], [sql, [], true]]) {
      const { fields, rows } = await conn.query(text as string, params as [] | undefined);
      assert.deepEqual(rows, [{ id: 1, label: "one", lit: 1.5 }]);
      assert.deepEqual(fields.map((f) => [f.name, f.dataTypeID, f.tableID, f.columnID]), [
        ["id", 23, oid, 1],
        ["label", 1043, oid, 2],
        ["lit", 701, 0, 0],
      ]);
      assert.equal(fields[0].dataTypeSize, 4);
      assert.equal(fields[1].dataTypeSize, -1);
      assert.equal(fields[1].dataTypeModifier, 24); // varchar(20): 20 + 4
      assert.deepEqual(fields.map((f) => f.format), [binary ? "binary" : "text", "text", "text"]);
    }
  });

  test(name("query reports command and rowCount for each kind of statement"), T, async () => {
    await using conn = await open();
    const summary = async (sql: string, params?: unknown[]) => {
      const r = await conn.query(sql, params);
      return [r.command, r.rowCount, r.rows.length];
    };
    assert.deepEqual(await summary("create temp table counted (n int)"), ["CREATE", null, 0]);
    assert.deepEqual(await summary("insert into counted values (1), (2), (3)"), ["INSERT", 3, 0]);
    assert.deepEqual(await summary("insert into counted values ($1)", [4]), ["INSERT", 1, 0]);
    assert.deepEqual(await summary("update counted set n = n + 10 where n < 3"), ["UPDATE", 2, 0]);
    assert.deepEqual(await summary("delete from counted where n = $1", [3]), ["DELETE", 1, 0]);
    assert.deepEqual(await summary("select * from counted"), ["SELECT", 3, 3]);
    assert.deepEqual(await summary("select * from counted where n > $1", [100]), ["SELECT", 0, 0]);
    assert.deepEqual(await summary("begin"), ["BEGIN", null, 0]);
    assert.deepEqual(await summary("rollback"), ["ROLLBACK", null, 0]);
    assert.deepEqual(await summary(""), ["", null, 0]);
    assert.deepEqual(await summary("  ;  "), ["", null, 0]);
    assert.deepEqual(await summary("", []), ["", null, 0]);
    const empty = await conn.query("");
    assert.deepEqual(empty.fields, []);
  });

  // -------------------------------------------------------------------------------------------
  // Types

  test(name("query round-trips scalar types through parameters"), T, async () => {
    await using conn = await open();
    const echo = async (value: unknown, type: string): Promise<unknown> => {
      const { rows, fields } = await conn.query(`select $1::${type} as v`, [value]);
      assert.equal(fields.length, 1);
      return rows[0].v;
    };
    assert.equal(await echo(true, "bool"), true);
    assert.equal(await echo(false, "bool"), false);
    assert.equal(await echo(-32768, "int2"), -32768);
    assert.equal(await echo(32767, "int2"), 32767);
    assert.equal(await echo(-2147483648, "int4"), -2147483648);
    assert.equal(await echo(2147483647, "int4"), 2147483647);
    assert.equal(await echo("9223372036854775807", "int8"), "9223372036854775807");
    assert.equal(await echo(-9223372036854775808n, "int8"), "-9223372036854775808");
    const bigNumeric = "-123456789012345678901234567890.000000000000000000001";
    assert.equal(await echo(bigNumeric, "numeric"), bigNumeric);
    assert.equal(await echo("NaN", "numeric"), "NaN");
    assert.equal(await echo(1.5, "float4"), 1.5);
    assert.equal(await echo(0.1 + 0.2, "float8"), 0.1 + 0.2);
    assert.equal(await echo(-1e308, "float8"), -1e308);
    assert.equal(await echo(5e-324, "float8"), 5e-324);
    assert.ok(Number.isNaN(await echo(NaN, "float8")));
    assert.ok(Number.isNaN(await echo(NaN, "float4")));
    assert.equal(await echo(Infinity, "float8"), Infinity);
    assert.equal(await echo(-Infinity, "float8"), -Infinity);
    assert.equal(await echo(-Infinity, "float4"), -Infinity);
    const awkward = `it's "quoted" \\ back\\\\slash \\x00 $1 日本語 🎉 e\u0301 \t\r\n{,}`;
    assert.equal(await echo(awkward, "text"), awkward);
    assert.equal(await echo("", "text"), "");
    assert.equal(await echo("x".repeat(100_000), "text"), "x".repeat(100_000));
    assert.equal(await echo("🎉 varchar", "varchar"), "🎉 varchar");
    const doc = { a: 1, b: [true, null, 'x"y\\z'], c: { d: "日本" } };
    assert.deepEqual(await echo(doc, "json"), doc);
    assert.deepEqual(await echo(doc, "jsonb"), doc);
    assert.deepEqual(await echo(JSON.stringify([1, "two", { three: 3 }]), "jsonb"), [
      1,
      "two",
      { three: 3 },
    ]);
    assert.equal(await echo(JSON.stringify("just a string"), "jsonb"), "just a string");
    const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.deepEqual(await echo(allBytes, "bytea"), allBytes);
    assert.deepEqual(await echo(new Uint8Array(0), "bytea"), new Uint8Array(0));
    assert.equal(await echo("2024-02-29", "date"), "2024-02-29");
    assert.equal(await echo("0044-03-15 BC", "date"), "0044-03-15 BC");
    const uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert.equal(await echo(uuid, "uuid"), uuid);
    assert.equal(await echo(uuid.toUpperCase(), "uuid"), uuid);
  });

  test(name("query round-trips timestamps as Dates"), T, async () => {
    await using conn = await open();
    const echo = async (value: unknown, type: string): Promise<unknown> =>
      (await conn.query(`select $1::${type} as v`, [value])).rows[0].v;
    const dates = [
      new Date("2024-02-29T13:45:00.123Z"),
      new Date("1969-07-20T20:17:40.000Z"),
      new Date("1900-01-01T00:00:00.001Z"),
      new Date("0099-12-31T23:59:59.999Z"),
      new Date(Date.UTC(-43, 2, 15, 12, 0, 0)), // 44 BC
      new Date("+012345-06-07T08:09:10.011Z"),
    ];
    for (const date of dates) {
      assert.deepEqual(await echo(date, "timestamptz"), date, date.toISOString());
      assert.deepEqual(await echo(date, "timestamp"), date, date.toISOString());
    }
    // Time zones other than the session's, and a session time zone far from UTC.
    assert.deepEqual(
      await echo("2024-02-29 13:45:00.5+05:30", "timestamptz"),
      new Date("2024-02-29T08:15:00.500Z"),
    );
    await conn.query("set time zone 'America/St_Johns'");
    assert.deepEqual(await echo(dates[0], "timestamptz"), dates[0]);
    assert.deepEqual(
      await echo("2024-02-29 13:45:00.123", "timestamp"),
      new Date("2024-02-29T13:45:00.123Z"),
    );
    assert.equal(await echo("infinity", "timestamptz"), "infinity");
    assert.equal(await echo("-infinity", "timestamp"), "-infinity");
  });

  test(name("query returns int8 as bigint with the bigint option"), T, async () => {
    await using conn = await open("scram", PLAIN, { bigint: true });
    const { rows } = await conn.query("select $1::int8 as a, $2::int8[] as b, 1::int4 as c", [
      9223372036854775807n,
      [1n, null, -9223372036854775808n],
    ]);
    assert.deepEqual(rows, [{
      a: 9223372036854775807n,
      b: [1n, null, -9223372036854775808n],
      c: 1,
    }]);
  });

  test(name("query round-trips one-dimensional arrays with NULL elements"), T, async () => {
    await using conn = await open();
    const echo = async (value: unknown, type: string): Promise<unknown> =>
      (await conn.query(`select $1::${type} as v`, [value])).rows[0].v;
    assert.deepEqual(await echo([1, null, -3, 2147483647], "int4[]"), [1, null, -3, 2147483647]);
    assert.deepEqual(await echo([], "int4[]"), []);
    const texts = [
      "a",
      null,
      "NULL",
      "null",
      "",
      " spaced ",
      "with,comma",
      'quote"d',
      "back\\slash",
      "{braces}",
      "日本🎉",
      "new\nline",
    ];
    assert.deepEqual(await echo(texts, "text[]"), texts);
    assert.deepEqual(await echo([true, false, null], "bool[]"), [true, false, null]);
    const floats =
      (await echo([1.5, NaN, Infinity, -Infinity, null, -0.25], "float8[]")) as unknown[];
    assert.equal(floats.length, 6);
    assert.deepEqual([floats[0], floats[2], floats[3], floats[4], floats[5]], [
      1.5,
      Infinity,
      -Infinity,
      null,
      -0.25,
    ]);
    assert.ok(Number.isNaN(floats[1]));
    assert.deepEqual(await echo(["1", null, 9223372036854775807n], "int8[]"), [
      "1",
      null,
      "9223372036854775807",
    ]);
    const bytes = [new Uint8Array([0, 34, 92, 123, 125, 255]), null, new Uint8Array(0)];
    assert.deepEqual(await echo(bytes, "bytea[]"), bytes);
    const dates = [new Date("2024-02-29T13:45:00.123Z"), null, new Date("1970-01-01T00:00:00Z")];
    assert.deepEqual(await echo(dates, "timestamptz[]"), dates);
    const uuids = ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", null];
    assert.deepEqual(await echo(uuids, "uuid[]"), uuids);
    const docs = [{ a: 1, s: 'x"y\\z,{}' }, null, JSON.stringify([1, 2]), JSON.stringify("s")];
    assert.deepEqual(await echo(docs, "jsonb[]"), [{ a: 1, s: 'x"y\\z,{}' }, null, [1, 2], "s"]);
    // Arrays from SQL, not from a parameter, parse the same way.
    const { rows } = await conn.query(
      `select array[1, null]::int4[] as i, array['a"b', null, 'NULL']::text[] as t`,
    );
    assert.deepEqual(rows, [{ i: [1, null], t: ['a"b', null, "NULL"] }]);
  });

  test(name("query passes NULL both ways"), T, async () => {
    await using conn = await open();
    const { rows } = await conn.query(
      "select $1::int4 as a, $2::text as b, $3::jsonb as c, null::bytea as d, $1 is null as e",
      [null, undefined, null],
    );
    assert.deepEqual(rows, [{ a: null, b: null, c: null, d: null, e: true }]);
  });

  test(name("query returns values of types without a parser as text"), T, async () => {
    await using conn = await open();
    const { rows, fields } = await conn.query(
      "select '1 day'::interval as i, '(1,2)'::point as p, $1::interval as j, " +
        "'10.0.0.1/8'::inet as n, 'a b'::tsvector as v",
      ["1 day 02:00:00"],
    );
    assert.deepEqual(rows, [{
      i: "1 day",
      p: "(1,2)",
      j: "1 day 02:00:00",
      n: "10.0.0.1/8",
      v: "'a' 'b'",
    }]);
    assert.equal(fields[0].dataTypeID, 1186);
  });

  // -------------------------------------------------------------------------------------------
  // Pipelining

  test(name("query pipelines 50 queries issued at once and answers them in order"), T, async () => {
    await using conn = await open();
    const order: number[] = [];
    const pending = Array.from(
      { length: 50 },
      (_, i) =>
        conn.query<{ i: number }>("select $1::int as i", [i]).then((r) => {
          order.push(i);
          return r.rows[0].i;
        }),
    );
    assert.equal(conn.pending, 50);
    assert.deepEqual(await Promise.all(pending), Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual(order, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(conn.pending, 0);
  });

  test(name("query rejects a failing query in a pipeline alone"), T, async () => {
    await using conn = await open();
    const outcomes = Array.from({ length: 9 }, (_, i) =>
      rejection(
        i === 4
          ? conn.query("select 1 / $1::int as i", [0])
          : i === 6
          ? conn.query("select * from no_such_table")
          : conn.query("select $1::int as i", [i]),
      ));
    const settled = await Promise.all(outcomes);
    settled.forEach((outcome, i) => {
      if (i === 4) assertPostgresError(outcome, "22012");
      else if (i === 6) assertPostgresError(outcome, "42P01");
      else {
        assert.ok(outcome instanceof Resolved, `query ${i}: ${show(outcome)}`);
        assert.deepEqual((outcome.value as { rows: unknown[] }).rows, [{ i }]);
      }
    });
    assert.equal(conn.transactionStatus, "idle");
  });

  // -------------------------------------------------------------------------------------------
  // Errors and notices

  test(
    name("query rejects a server error with PostgresError and the connection goes on"),
    T,
    async () => {
      await using conn = await open();
      for (const params of [undefined, []]) {
        const error = await rejection(conn.query("select 1/0", params));
        assertPostgresError(error, "22012");
        assert.equal(error.severity, "ERROR");
        assert.match(error.message, /division by zero/);
        assert.equal(typeof error.file, "string");
        assert.equal(typeof error.line, "number");
        assert.deepEqual((await conn.query("select 1 as ok", params)).rows, [{ ok: 1 }]);
      }
      assert.equal(conn.closed, false);
    },
  );

  test(
    name("PostgresError of a unique violation carries constraint, table, schema and detail"),
    T,
    async () => {
      await using conn = await open();
      await conn.query("create temp table uniq (id int constraint uniq_pkey primary key)");
      await conn.query("insert into uniq values (1)");
      const error = await rejection(conn.query("insert into uniq values ($1)", [1]));
      assertPostgresError(error, "23505");
      assert.equal(error.constraint, "uniq_pkey");
      assert.equal(error.table, "uniq");
      assert.match(error.schema ?? "", /^pg_temp/);
      assert.equal(error.detail, "Key (id)=(1) already exists.");
      assert.ok(error instanceof Error);
    },
  );

  test(name("PostgresError of a syntax error carries the position"), T, async () => {
    await using conn = await open();
    const sql = "select 1 frm dual";
    const error = await rejection(conn.query(sql));
    assertPostgresError(error, "42601");
    assert.equal(error.position, sql.indexOf("dual") + 1);
    const error2 = await rejection(conn.query("select $1::int +", [1]));
    assertPostgresError(error2, "42601");
    assert.equal(typeof error2.position, "number");
  });

  test(name("notices reach onNotice and notice listeners"), T, async () => {
    const fromOption: PostgresNotice[] = [];
    await using conn = await open("scram", PLAIN, { onNotice: (n) => fromOption.push(n) });
    const fromListener: PostgresNotice[] = [];
    const off = conn.on("notice", (n) => fromListener.push(n));
    await conn.query("do $$ begin raise notice 'hi'; end $$");
    assert.equal(fromOption.length, 1);
    assert.deepEqual(fromListener, fromOption);
    assert.equal(fromOption[0].message, "hi");
    assert.equal(fromOption[0].severity, "NOTICE");
    assert.equal(fromOption[0].code, "00000");
    off();
    await conn.query("do $$ begin raise warning 'careful' using hint = 'h'; end $$");
    assert.equal(fromListener.length, 1);
    assert.equal(fromOption.length, 2);
    assert.deepEqual([fromOption[1].severity, fromOption[1].message, fromOption[1].hint], [
      "WARNING",
      "careful",
      "h",
    ]);
  });

  test(name("notification listeners receive NOTIFY from another session"), T, async () => {
    await using listener = await open();
    await using notifier = await open("md5");
    const received = new Promise<unknown>((resolve) => listener.on("notification", resolve));
    await listener.query("listen edgepool_channel");
    await notifier.query("select pg_notify('edgepool_channel', $1)", ["payload ✓"]);
    assert.deepEqual(await received, {
      processId: notifier.processId,
      channel: "edgepool_channel",
      payload: "payload ✓",
    });
  });

  // -------------------------------------------------------------------------------------------
  // Session state

  test(name("transactionStatus follows BEGIN, an error and ROLLBACK"), T, async () => {
    await using conn = await open();
    assert.equal(conn.transactionStatus, "idle");
    await conn.query("begin");
    assert.equal(conn.transactionStatus, "transaction");
    await conn.query("select $1::int", [1]);
    assert.equal(conn.transactionStatus, "transaction");
    assertPostgresError(await rejection(conn.query("select 1/0")), "22012");
    assert.equal(conn.transactionStatus, "failed");
    assertPostgresError(await rejection(conn.query("select 1")), "25P02");
    assert.equal(conn.transactionStatus, "failed");
    await conn.query("rollback");
    assert.equal(conn.transactionStatus, "idle");
  });

  test(name("parameters and processId describe the server session"), T, async () => {
    await using conn = await open();
    assert.match(conn.parameters.server_version, /^15/);
    assert.equal(conn.parameters.client_encoding, "UTF8");
    // Where it comes from: this test file, on this runtime.
    assert.match(
      conn.parameters.application_name,
      /^edgepool:connection_test\.(ts|mjs)@(deno|node)$/,
    );
    const { rows } = await conn.query("select pg_backend_pid() as pid");
    assert.equal(conn.processId, rows[0].pid);
    const changes: { name: string; value: string }[] = [];
    conn.on("parameter", (p) => changes.push(p));
    await conn.query("set application_name = 'renamed'");
    assert.deepEqual(changes, [{ name: "application_name", value: "renamed" }]);
    assert.equal(conn.parameters.application_name, "renamed");
  });

  // -------------------------------------------------------------------------------------------
  // Cancel

  test(
    name("query aborted by a signal rejects with its reason and the server stops"),
    T,
    async () => {
      const s = await getServer();
      await using conn = await open();
      try {
        for (const params of [undefined, []]) {
          const mode = params ? "extended" : "simple";
          const controller = new AbortController();
          const reason = new Error("enough");
          const timer = setTimeout(() => controller.abort(reason), 200);
          const error = await within(
            rejection(conn.query("select pg_sleep(600)", params, { signal: controller.signal })),
            10_000,
            `the aborted query's rejection (${mode})`,
          );
          clearTimeout(timer);
          assert.equal(error, reason);
          // The next answer waits for the server to give up the sleep: ten minutes, so it comes
          // within the test only if the abort cancelled the statement on the server.
          const next = await within(
            conn.query("select 1 as one"),
            10_000,
            `the query after the aborted pg_sleep(600) (${mode})`,
          );
          assert.deepEqual(next.rows, [{ one: 1 }]);
          assert.equal(conn.closed, false);
        }
      } finally {
        await endStatement(s, conn.processId);
      }
    },
  );

  test(name("query aborted while queued does not cancel the query ahead of it"), T, async () => {
    const s = await getServer();
    await using conn = await open();
    try {
      const controller = new AbortController();
      const reason = new Error("not this one");
      const first = rejection(conn.query("select pg_sleep(0.5) as slept, 'first' as name"));
      const second = rejection(
        conn.query("select pg_sleep(600)", [], { signal: controller.signal }),
      );
      await delay(100);
      controller.abort(reason);
      assert.equal(await within(second, 10_000, "the queued query's rejection"), reason);
      const firstOutcome = await within(first, 10_000, "the query ahead of it");
      assert.ok(firstOutcome instanceof Resolved, show(firstOutcome));
      assert.equal((firstOutcome.value as { rows: { name: string }[] }).rows[0].name, "first");
      // Ten minutes: the next query is answered within the test only if the queued sleep never
      // ran (or was cancelled).
      const next = await within(
        conn.query("select 2 as two"),
        10_000,
        "the query after the aborted pg_sleep(600)",
      );
      assert.deepEqual(next.rows, [{ two: 2 }]);
    } finally {
      await endStatement(s, conn.processId);
    }
  });

  test(name("query with an already-aborted signal rejects at once"), T, async () => {
    await using conn = await open();
    const reason = new Error("too late");
    const error = await rejection(
      conn.query("select 1", undefined, { signal: AbortSignal.abort(reason) }),
    );
    assert.equal(error, reason);
    assert.equal(conn.pending, 0);
    assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
  });

  test(name("query ignores its signal once it has its answer"), T, async () => {
    await using conn = await open();
    const controller = new AbortController();
    const { rows } = await conn.query("select 1 as one", [], { signal: controller.signal });
    assert.deepEqual(rows, [{ one: 1 }]);
    controller.abort(new Error("after the fact"));
    // A stray cancel would hit this statement instead.
    const sleep = await conn.query("select pg_sleep(0.3) as slept, 2 as two");
    assert.equal(sleep.rows[0].two, 2);
  });

  test(name("cancel makes the running statement fail with 57014"), T, async () => {
    const s = await getServer();
    const cases = [[PLAIN, {}], [{ sslmode: "require" }, { ca: s.caPem }]] as const;
    // Behind a proxy, sslmode=require needs a wss: URL: plain only.
    for (const [params, options] of tcp ? cases : cases.slice(0, 1)) {
      await using conn = await open("scram", params, options);
      await using observer = await open("postgres");
      try {
        // Ten minutes: it fails within the test only by the cancel (57014 says so too).
        const sleeping = rejection(conn.query("select pg_sleep(600)"));
        await waitUntilActive(observer, conn.processId);
        await conn.cancel();
        assertPostgresError(await within(sleeping, 10_000, "the cancelled pg_sleep(600)"), "57014");
        assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
      } finally {
        await endStatement(s, conn.processId);
      }
    }
  });

  // -------------------------------------------------------------------------------------------
  // Lost connection

  test(name("a terminated backend rejects pending queries with CONNECTION_LOST"), T, async () => {
    await using victim = await open();
    await using killer = await open("postgres");
    const closeEvents: (Error | undefined)[] = [];
    victim.on("close", (e) => closeEvents.push(e));
    const sleeping = rejection(victim.query("select pg_sleep(30)"));
    const queued = rejection(victim.query("select 1"));
    const queuedExtended = rejection(victim.query("select $1::int", [2]));
    await waitUntilActive(killer, victim.processId);
    await killer.query("select pg_terminate_backend($1)", [victim.processId]);
    for (const outcome of [await sleeping, await queued, await queuedExtended]) {
      assertConnectionError(outcome, "CONNECTION_LOST");
      assertPostgresError(outcome.cause, "57P01");
      assert.match(outcome.message, /terminating connection/);
    }
    assert.equal(victim.closed, true);
    assert.equal(closeEvents.length, 1);
    assert.ok(closeEvents[0] instanceof Error, show(closeEvents[0]));
    assertConnectionError(await rejection(victim.query("select 1")), "CONNECTION_CLOSED");
    await victim.close(); // resolves on a broken connection too
  });

  test(name("a terminated idle connection closes with an error event"), T, async () => {
    await using victim = await open();
    await using killer = await open("postgres");
    const closed = new Promise<Error | undefined>((resolve) => victim.on("close", resolve));
    await killer.query("select pg_terminate_backend($1)", [victim.processId]);
    const reason = await closed;
    assert.ok(reason instanceof Error, show(reason));
    assert.match(reason.message, /terminat/);
    assert.equal(victim.closed, true);
    assertConnectionError(await rejection(victim.query("select 1")), "CONNECTION_CLOSED");
  });

  // -------------------------------------------------------------------------------------------
  // close() and destroy()

  test(name("close is idempotent and fires close once without an error"), T, async () => {
    const conn = await open();
    const events: (Error | undefined)[] = [];
    conn.on("close", (e) => events.push(e));
    const first = conn.close();
    const second = conn.close();
    assert.equal(conn.closed, true);
    await Promise.all([first, second]);
    await conn.close();
    assert.deepEqual(events, [undefined]);
  });

  test(name("close lets queries issued before it finish and rejects later ones"), T, async () => {
    const conn = await open();
    const a = conn.query("select 1 as a");
    const b = conn.query("select pg_sleep(0.2), $1::text as b", ["x"]);
    const closing = conn.close();
    const after = rejection(conn.query("select 1"));
    assert.deepEqual((await a).rows, [{ a: 1 }]);
    assert.equal((await b).rows[0].b, "x");
    await closing;
    assertConnectionError(await after, "CONNECTION_CLOSED");
    assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
  });

  test(name("await using closes the connection at the end of the block"), T, async () => {
    let outer: Connection | undefined;
    let closeEvent: string | undefined;
    {
      await using conn = await open();
      outer = conn;
      conn.on("close", (e) => closeEvent = e === undefined ? "clean" : e.message);
      assert.equal((await conn.query("select 1 as one")).rows[0].one, 1);
      assert.equal(conn.closed, false);
    }
    assert.equal(outer.closed, true);
    assert.equal(closeEvent, "clean");
  });

  test(name("destroy rejects pending queries with CONNECTION_CLOSED"), T, async () => {
    const conn = await open();
    const sleeping = rejection(conn.query("select pg_sleep(10)"));
    const queued = rejection(conn.query("select 1"));
    await delay(50);
    const cause = new Error("shutting down");
    conn.destroy(cause);
    conn.destroy(); // idempotent
    for (const outcome of [await sleeping, await queued]) {
      assertConnectionError(outcome, "CONNECTION_CLOSED");
      assert.equal(outcome.cause, cause);
    }
    assert.equal(conn.closed, true);
    assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
    await conn.close();
  });

  // -------------------------------------------------------------------------------------------
  // connect() failures

  test(name("connect fails fast with CONNECT_FAILED when the port is closed"), T, async () => {
    const port = await closedPort();
    // A ten-minute connectTimeout: within the test, only the refusal itself can end the connect
    // (a wait for a deadline of the client's would end in CONNECT_TIMEOUT, and much later).
    const error = await within(
      rejection(connect(`postgres://u:p@127.0.0.1:${port}/db`, {
        transport,
        connectTimeout: 600_000,
      })),
      10_000,
      "the connect to a closed port",
    );
    if (gateway) {
      // The gateway reached, it answers for the server it could not reach (SQLSTATE 08001).
      assertPostgresError(error, "08001");
    } else {
      assertConnectionError(error, "CONNECT_FAILED");
    }
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  });

  for (const sslmode of ["disable", "prefer"]) {
    test(
      name(`connect times out with CONNECT_TIMEOUT on a silent server (sslmode=${sslmode})`),
      T,
      async () => {
        await using silent = await silentServer();
        const url = `postgres://u:secretpw@127.0.0.1:${silent.port}/db?sslmode=${sslmode}`;
        // 300 ms, a hundred times shorter than the 30 s default: the message names the deadline
        // that fired, so it is the configured one and not the default.
        const error = await within(
          rejection(connect(url, { transport, connectTimeout: 300 })),
          10_000,
          "the connect to a silent server",
        );
        assertConnectionError(error, "CONNECT_TIMEOUT");
        assert.match(error.message, /timed out after 300 ms/);
        assert.doesNotMatch(error.message, /secretpw/);
        await within(silent.socketClosed, 10_000, "the client hanging up");
      },
    );
  }

  test(
    name("connect rejects with the signal's reason when aborted while connecting"),
    T,
    async () => {
      await using silent = await silentServer();
      const controller = new AbortController();
      const reason = new Error("user gave up");
      setTimeout(() => controller.abort(reason), 100);
      const url = `postgres://u:p@127.0.0.1:${silent.port}/db?sslmode=disable`;
      const error = await rejection(connect(url, { transport, signal: controller.signal }));
      assert.equal(error, reason);
      await silent.socketClosed;
      const early = await rejection(connect(url, { transport, signal: AbortSignal.abort(reason) }));
      assert.equal(early, reason);
    },
  );

  test(
    name("connect rejects with PostgresError 3D000 for a database that does not exist"),
    T,
    async () => {
      const error = await rejection(open("scram", PLAIN, { database: "no_such_database" }));
      assertPostgresError(error, "3D000");
      assert.match(error.message, /no_such_database/);
    },
  );

  test(
    name("connect rejects malformed URLs with a TypeError that hides the password"),
    T,
    async () => {
      const urls = [
        "postgres://user:hunter2@localhost:port/db",
        "postgres://user:hunter2@[::1/db",
        "postgres://user:hunter2@localhost/db?sslmode=sometimes",
        "postgres://user:hunter2@localhost/db?nonsense=1",
        "postgres://user:hunter2@localhost/db?password=hunter2&nonsense=1",
        "postgres://user:hunter2%zz@localhost/db",
        "postgres://user:hunter2@host1,[::1/db",
        "mysql://user:hunter2@localhost/db",
        "postgres:user:hunter2@localhost/db",
      ];
      for (const url of urls) {
        const error = await rejection(connect(url, { transport }));
        assert.ok(error instanceof TypeError, `${url}: ${show(error)}`);
        assert.doesNotMatch(error.message, /hunter2/, url);
      }
    },
  );

  // -------------------------------------------------------------------------------------------
  // COPY

  test(
    name("query rejects COPY TO STDOUT with UNSUPPORTED and the connection goes on"),
    T,
    async () => {
      await using conn = await open();
      for (const params of [undefined, []]) {
        const error = await rejection(
          conn.query("copy (select generate_series(1, 3)) to stdout", params),
        );
        assertCopyUnsupported(error, "TO STDOUT");
        assert.equal(conn.transactionStatus, "idle");
        assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
      }
    },
  );

  test(
    name("query rejects COPY FROM STDIN with UNSUPPORTED and the connection goes on"),
    T,
    async () => {
      await using conn = await open();
      await conn.query("create temp table copied (n int)");
      for (const params of [undefined, []]) {
        const error = await rejection(conn.query("copy copied from stdin", params));
        assertCopyUnsupported(error, "FROM STDIN");
        // The server's own error, from the CopyFail the client sent, is the cause.
        assert.ok(error.cause instanceof PostgresError, show(error.cause));
        assert.equal(conn.transactionStatus, "idle");
        assert.deepEqual((await conn.query("select count(*)::int as n from copied")).rows, [{
          n: 0,
        }]);
      }
    },
  );

  test(
    name("query rejects each COPY of a pipeline alone and runs the queries around it"),
    T,
    async () => {
      await using conn = await open();
      await conn.query("create temp table copied (n int)");
      // All issued at once: a server in COPY-in mode would read what follows as COPY messages.
      const outcomes = await Promise.all([
        rejection(conn.query("select 1 as n")),
        rejection(conn.query("copy copied from stdin")),
        rejection(conn.query("insert into copied values ($1)", [2])),
        rejection(conn.query("copy copied from stdin", [])),
        rejection(conn.query("select $1::int as n", [3])),
        rejection(conn.query("copy copied to stdout")),
        rejection(conn.query("copy copied from stdin")),
        rejection(conn.query("insert into copied values (4)")),
        rejection(conn.query("copy (select 1) to stdout", [])),
        rejection(conn.query("select array_agg(n order by n) as ns from copied")),
      ]);
      const rows = (i: number) => {
        assert.ok(outcomes[i] instanceof Resolved, `query ${i}: ${show(outcomes[i])}`);
        return (outcomes[i] as Resolved).value as { rows: unknown[]; command: string };
      };
      assert.deepEqual(rows(0).rows, [{ n: 1 }]);
      assertCopyUnsupported(outcomes[1], "FROM STDIN");
      assert.equal(rows(2).command, "INSERT");
      assertCopyUnsupported(outcomes[3], "FROM STDIN");
      assert.deepEqual(rows(4).rows, [{ n: 3 }]);
      assertCopyUnsupported(outcomes[5], "TO STDOUT");
      assertCopyUnsupported(outcomes[6], "FROM STDIN");
      assert.equal(rows(7).command, "INSERT");
      assertCopyUnsupported(outcomes[8], "TO STDOUT");
      assert.deepEqual(rows(9).rows, [{ ns: [2, 4] }]);
      assert.equal(conn.transactionStatus, "idle");
      assert.deepEqual((await conn.query("select 5 as n")).rows, [{ n: 5 }]);
    },
  );

  test(
    name("query inside a transaction rejects COPY FROM STDIN and the transaction fails"),
    T,
    async () => {
      await using conn = await open();
      await conn.query("create temp table copied (n int)");
      const [begin, copy, after] = await Promise.all([
        rejection(conn.query("begin")),
        rejection(conn.query("copy copied from stdin")),
        rejection(conn.query("select 1")),
      ]);
      assert.ok(begin instanceof Resolved, show(begin));
      assertCopyUnsupported(copy, "FROM STDIN");
      assertPostgresError(after, "25P02"); // the COPY's error aborted the transaction, as any
      assert.equal(conn.transactionStatus, "failed");
      await conn.query("rollback");
      assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
    },
  );

  test(
    name("query rejects a parameter with no PostgreSQL meaning by its $n and writes nothing"),
    T,
    async () => {
      await using conn = await open();
      await conn.query("create temp table kept (t text)");
      const bad: [unknown, RegExp][] = [
        [new Map([["a", 1]]), /\$2: .*a Map/],
        [new Set([1]), /\$2: .*a Set/],
        [Promise.resolve(1), /\$2: .*a Promise/],
        ["lone \ud800 surrogate", /\$2: .*lone surrogate/],
        [["ok", "\udc00"], /\$2: .*lone surrogate/],
        [{ nested: new Map() }, /\$2: .*a Map/],
      ];
      for (const [value, message] of bad) {
        // Issued together with good queries: only the bad one fails, before anything is sent.
        const [before, error, after] = await Promise.all([
          rejection(conn.query("insert into kept values ($1)", ["before"])),
          rejection(conn.query("insert into kept values ($1), ($2)", ["x", value])),
          rejection(conn.query("insert into kept values ($1)", ["after"])),
        ]);
        assert.ok(before instanceof Resolved && after instanceof Resolved, show(after));
        assert.ok(error instanceof TypeError, show(error));
        assert.match(error.message, message);
      }
      const { rows } = await conn.query(
        "select count(*)::int as n, " +
          "count(*) filter (where t not in ('before', 'after'))::int as other from kept",
      );
      assert.deepEqual(rows, [{ n: 2 * bad.length, other: 0 }]);
    },
  );

  // -------------------------------------------------------------------------------------------
  // Errors of severity ERROR end the query, not the connection

  test(
    name("query rejects a Bind with too few parameters with 08P01 and the connection goes on"),
    T,
    async () => {
      // 08P01 (protocol_violation) at severity ERROR: only FATAL and PANIC end a session.
      for (const statementCache of [0, 100]) {
        await using conn = await open("scram", PLAIN, { statementCache });
        const sql = "select $1::int + $2::int as n";
        for (let round = 0; round < 2; round++) {
          // Round 1 with the cache: the statement is prepared; the Bind alone is wrong.
          const [short, right, long] = await Promise.all([
            rejection(conn.query(sql, [1])),
            rejection(conn.query(sql, [1, 2])),
            rejection(conn.query(sql, [1, 2, 3])),
          ]);
          for (const error of [short, long]) {
            assertPostgresError(error, "08P01");
            assert.equal(error.severity, "ERROR");
            assert.match(error.message, /bind message supplies \d parameters/);
          }
          assert.ok(right instanceof Resolved, show(right));
          assert.deepEqual((right.value as { rows: unknown[] }).rows, [{ n: 3 }]);
          assert.equal(conn.closed, false);
          assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
        }
      }
    },
  );
}

// ---------------------------------------------------------------------------------------------
// The runtime's own transport

test("connect without a transport uses the runtime's TCP transport", T, async () => {
  const expected = denoTcp ?? nodeTcp;
  assert.equal(await autoTransport(), expected);
  const s = await getServer();
  await using conn = await connect(s.url("scram", PLAIN));
  assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: "scram" }]);
});
