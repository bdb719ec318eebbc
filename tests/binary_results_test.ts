// Binary results (src/_binary.ts) against the real server: a cached statement's second and later
// runs ask for some columns in binary, and every value reads exactly as its text did on the
// first run, edge values included, with and without `bigint`, in both row modes; queries with
// their own parsers, the connection's own parsers and sessions whose text reads otherwise keep
// text.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  connect,
  type Connection,
  type ConnectOptions,
  Oid,
  type QueryResult,
  typeParsers,
} from "../mod.ts";
import { getServer } from "./_server.ts";

const T = { timeout: 60_000 };

async function open(options: ConnectOptions = {}): Promise<Connection> {
  const server = await getServer();
  return await connect(server.url("scram", { sslmode: "disable" }), {
    statementCache: 100,
    ...options,
  });
}

/** Every byte value, and a large value: bytea text. */
const allBytes = "\\x" + Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))
  .join("");
const bigBytes = "\\x" + "00ff7f80".repeat(50_000);

/** int64 values around the edges of a double's exact integers and of 32-bit words. */
const int8Edges = [
  "-9223372036854775808",
  "-9223372036854775807",
  "-9007199254740993",
  "-9007199254740992",
  "-9007199254740991",
  "-4294967297",
  "-4294967296",
  "-4294967295",
  "-2147483649",
  "-1",
  "0",
  "1",
  "2147483648",
  "4294967295",
  "4294967296",
  "4294967297",
  "9007199254740991",
  "9007199254740992",
  "9007199254740993",
  "9223372036854775806",
  "9223372036854775807",
];

/** Microseconds from 2000-01-01 around ±2^53 and the ms boundaries, as interval offsets. */
const microOffsets = [
  "9007199254740991",
  "9007199254740992",
  "9007199254740993",
  "-9007199254740991",
  "-9007199254740992",
  "-9007199254740993",
  "-1",
  "-999",
  "-1000",
  "-1001",
  "999",
  "1000",
  "1001",
];

const timestampEdges = [
  "2000-01-01 00:00:00",
  "1999-12-31 23:59:59.999999",
  "1999-12-31 23:59:59.9995",
  "1970-01-01 00:00:00",
  "1970-01-01 00:00:00.000001",
  "1969-12-31 23:59:59.999999",
  "1969-12-31 23:59:59.0005",
  "1900-02-28 12:34:56.789012",
  "2024-02-29 13:45:00.123456",
  "0099-06-15 12:00:00.5",
  "0001-01-01 00:00:00",
  "0001-12-31 23:59:59.999999 BC",
  "0044-03-15 12:00:00 BC",
  "4713-01-01 00:00:00 BC",
  "4714-11-24 00:00:00 BC",
  "10000-01-01 00:00:00",
  "275760-09-12 23:59:59.999999",
  "275760-09-13 00:00:00",
  "275760-09-13 00:00:00.000999",
  "275760-09-13 00:00:00.001",
  "275760-09-13 00:00:01",
  "275761-01-01 00:00:00.1",
  "294276-12-31 23:59:59.999999",
  "294276-12-31 23:59:59.5",
  "294276-01-01 00:00:00",
  "infinity",
  "-infinity",
];

/** Each case: a type, and its values' text (a value's own literal; null for NULL). */
const cases: { type: string; oid: number; values: (string | null)[]; binary: boolean }[] = [
  { type: "int2", oid: Oid.int2, values: ["-32768", "-1", "0", "1", "32767", null], binary: true },
  {
    type: "int4",
    oid: Oid.int4,
    values: ["-2147483648", "-65536", "-1", "0", "1", "65536", "2147483647", null],
    binary: true,
  },
  { type: "int8", oid: Oid.int8, values: [...int8Edges, null], binary: true },
  {
    type: "bytea",
    oid: Oid.bytea,
    values: ["\\x", "\\x00", "\\xdeadbeef", allBytes, bigBytes, null],
    binary: true,
  },
  {
    type: "uuid",
    oid: Oid.uuid,
    values: [
      "00000000-0000-0000-0000-000000000000",
      "ffffffff-ffff-ffff-ffff-ffffffffffff",
      "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}",
      null,
    ],
    binary: true,
  },
  { type: "timestamp", oid: Oid.timestamp, values: [...timestampEdges, null], binary: true },
  {
    type: "timestamptz",
    oid: Oid.timestamptz,
    values: [
      ...timestampEdges.map((t) =>
        t.endsWith("infinity") ? t : t.endsWith(" BC") ? t.replace(" BC", "+00 BC") : t + "+00"
      ),
      "2024-02-29 13:45:00.123456+05:30",
      "1883-11-18 12:00:00-04:56:02",
      "294276-12-31 23:59:59.999999+00",
      null,
    ],
    binary: true,
  },
  { type: "bool", oid: Oid.bool, values: ["t", "f", null], binary: false },
  {
    type: "float4",
    oid: Oid.float4,
    values: ["1.1", "-0", "0", "NaN", "Infinity", "-Infinity", "3.4028235e38", "1e-45", null],
    binary: false,
  },
  {
    type: "float8",
    oid: Oid.float8,
    values: ["1.1", "-0", "NaN", "Infinity", "-Infinity", "1.7976931348623157e308", "5e-324"],
    binary: false,
  },
];

/**
 * The statement of a case: one column of `type`, a row per value, in order. The values come as
 * a text array, so the statement's result has the type's own column.
 */
function sqlOf(type: string): string {
  return `select v::${type} as v from unnest($1::text[]) with ordinality as t(v, n) order by n`;
}

/** Runs `sql` once (text: the statement's first run) and twice more (binary, when it can). */
async function runs(
  conn: Connection,
  sql: string,
  params: unknown[],
  rowMode: "object" | "array" = "object",
): Promise<QueryResult[]> {
  const results: QueryResult[] = [];
  for (let i = 0; i < 3; i++) {
    results.push(await conn.query({ text: sql, values: params, rowMode }));
  }
  return results;
}

/** Asserts that the later runs returned exactly the first run's values (Object.is for each). */
function assertSame(results: QueryResult[], what: string): void {
  const [first, ...later] = results;
  for (const result of later) {
    assert.deepStrictEqual(result.rows, first.rows, what);
    assert.equal(result.rows.length, first.rows.length);
    for (let r = 0; r < first.rows.length; r++) {
      const a = Object.values(first.rows[r] as object), b = Object.values(result.rows[r] as object);
      for (let c = 0; c < a.length; c++) {
        const x = a[c], y = b[c];
        if (x instanceof Date) assert.ok(Object.is(x.getTime(), (y as Date).getTime()), what);
        else if (!(x instanceof Uint8Array)) assert.ok(Object.is(x, y), `${what}: ${x} ${y}`);
        else {
          assert.equal(Object.getPrototypeOf(y), Uint8Array.prototype, what);
          assert.deepStrictEqual(y, x, what);
        }
      }
    }
  }
}

/** Intervals' text for `microOffsets` from 2000-01-01, as timestamp and timestamptz text. */
async function microTimestamps(conn: Connection): Promise<[string[], string[]]> {
  const { rows } = await conn.query<{ ts: string; tz: string }>(
    "select (timestamp '2000-01-01' + (x || ' microseconds')::interval)::text as ts, " +
      "(timestamptz '2000-01-01 00:00:00+00' + (x || ' microseconds')::interval)::text as tz " +
      "from unnest($1::text[]) x",
    [microOffsets],
  );
  return [rows.map((r) => r.ts), rows.map((r) => r.tz)];
}

for (const bigint of [false, true]) {
  for (const rowMode of ["object", "array"] as const) {
    test(
      `query returns a cached statement's binary values as its text run did, bigint ${bigint}, ` +
        `rowMode ${rowMode}`,
      T,
      async () => {
        await using conn = await open({ bigint });
        await conn.query("set time zone 'UTC'");
        const [ts, tz] = await microTimestamps(conn);
        for (const { type, values, binary } of cases) {
          const extra = type === "timestamp" ? ts : type === "timestamptz" ? tz : [];
          const results = await runs(conn, sqlOf(type), [[...values, ...extra]], rowMode);
          assert.equal(results[0].fields[0].format, "text", type);
          assert.equal(results[1].fields[0].format, binary ? "binary" : "text", type);
          assert.equal(results[2].fields[0].format, binary ? "binary" : "text", type);
          assertSame(results, `${type}, bigint ${bigint}, ${rowMode}`);
        }
      },
    );
  }
}

test("query reads every binary type in one row as text would, named and in order", T, async () => {
  await using conn = await open({ bigint: true });
  await conn.query("set time zone 'UTC'");
  const sql = "select $1::int2 as a, $2::int4 as b, $3::int8 as c, $4::bytea as d, " +
    "$5::uuid as e, $6::timestamp as f, $7::timestamptz as g, $8::text as h, $9::int4 as a";
  const params = [
    -2,
    7,
    "-9223372036854775808",
    new Uint8Array([1, 2, 3]),
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "1969-12-31 23:59:59.9999",
    "infinity",
    "text",
    9,
  ];
  for (const rowMode of ["object", "array"] as const) {
    const results = await runs(conn, sql, params, rowMode);
    assertSame(results, rowMode);
    assert.deepEqual(
      results[1].fields.map((f) => f.format),
      ["binary", "binary", "binary", "binary", "binary", "binary", "binary", "text", "binary"],
    );
  }
  const { rows } = await conn.query(sql, params);
  assert.deepStrictEqual(rows[0], {
    a: 9,
    b: 7,
    c: -9223372036854775808n,
    d: new Uint8Array([1, 2, 3]),
    e: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    f: new Date(-1),
    g: "infinity",
    h: "text",
  });
});

test(
  "query keeps text for a query's own types and for the connection's own parsers",
  T,
  async () => {
    const int4 = (text: string) => `int4:${text}`;
    await using conn = await open({ types: new Map([[Oid.int4, int4]]) });
    await conn.query("set time zone 'UTC'");
    const sql = "select $1::int4 as a, $2::int8 as b, $3::timestamptz as c";
    const params = [5, "6", "2024-01-01 00:00:00+00"];
    const own = await runs(conn, sql, params);
    assertSame(own, "connection types");
    assert.deepEqual(own[2].fields.map((f) => f.format), ["text", "binary", "binary"]);
    assert.deepEqual(own[2].rows, [{ a: "int4:5", b: "6", c: new Date("2024-01-01T00:00:00Z") }]);

    const seen: string[] = [];
    const types = {
      getTypeParser: (oid: number) => (text: string) => (seen.push(text), `${oid}:${text}`),
    };
    for (let i = 0; i < 3; i++) {
      const result = await conn.query({ text: sql, values: params, types });
      assert.deepEqual(result.fields.map((f) => f.format), ["text", "text", "text"]);
      assert.deepEqual(result.rows, [{ a: "23:5", b: "20:6", c: "1184:2024-01-01 00:00:00+00" }]);
    }
    assert.equal(seen.length, 9);
  },
);

test("query keeps timestamps text where their text reads otherwise", T, async () => {
  await using conn = await open();
  await conn.query("set time zone 'UTC'");
  const sql = "select $1::timestamp as a, $2::timestamptz as b, $3::int4 as c";
  const params = ["294276-12-31 23:59:59.5", "294276-12-31 23:59:59.5+00", 1];
  /** The session's text values: every column read by edgepool's text parsers. */
  const text = async () =>
    (await conn.query({ text: sql, values: params, types: typeParsers })).rows;

  const utc = await runs(conn, sql, params);
  assertSame(utc, "UTC");
  assert.deepEqual(utc[1].fields.map((f) => f.format), ["binary", "binary", "binary"]);
  assert.deepEqual(utc[1].rows, [{
    a: "294276-12-31 23:59:59.5",
    b: "294276-12-31 23:59:59.5+00",
    c: 1,
  }]);

  // Another zone: a timestamptz past Date's range has a text the client cannot write.
  await conn.query("set time zone 'America/New_York'");
  let bound = await conn.query(sql, params);
  assert.deepEqual(bound.fields.map((f) => f.format), ["binary", "text", "binary"]);
  assert.deepStrictEqual(bound.rows, await text());
  assert.equal((bound.rows[0] as { b: unknown }).b, "294276-12-31 18:59:59.5-05");

  // Another DateStyle: the text parser keeps such text, so timestamps come as text.
  await conn.query("set datestyle = 'SQL, DMY'");
  bound = await conn.query(sql, params);
  assert.deepEqual(bound.fields.map((f) => f.format), ["text", "text", "binary"]);
  assert.deepStrictEqual(bound.rows, await text());
  const inRange = ["2024-01-02 03:04:05", "2024-01-02 03:04:05+00", 2];
  const styled = await conn.query(sql, inRange);
  assert.deepStrictEqual(
    styled.rows,
    (await conn.query({ text: sql, values: inRange, types: typeParsers })).rows,
  );
  assert.equal(typeof (styled.rows[0] as { a: unknown }).a, "string");

  // Back to ISO and UTC: binary again.
  await conn.query("reset datestyle");
  await conn.query("set time zone 'UTC'");
  bound = await conn.query(sql, params);
  assert.deepEqual(bound.fields.map((f) => f.format), ["binary", "binary", "binary"]);
  assert.deepStrictEqual(bound.rows, utc[0].rows);
  assert.deepStrictEqual(bound.rows, await text());
});

test("query keeps text on a statement's first run, unnamed and simple queries", T, async () => {
  await using conn = await open({ statementCache: 0 });
  for (let i = 0; i < 3; i++) {
    const unnamed = await conn.query("select $1::int4 as a", [1]);
    assert.equal(unnamed.fields[0].format, "text");
  }
  const simple = await conn.query("select 1::int4 as a");
  assert.equal(simple.fields[0].format, "text");
});
