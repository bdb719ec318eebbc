// The `types` option of connect() and createPool() (src/config.ts), and arrays of user-defined
// types looked up once per connection (src/_column_types.ts), against the real PostgreSQL 15 of
// tests/_server.ts: a map by OID or pg's getTypeParser, a query's own types winning, options
// refused with TypeError, enum and domain arrays as JS arrays, and no lookup on a connection
// that sees only built-in types.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type ConnectOptions,
  createPool,
  Oid,
  type Transport,
  typeParsers,
} from "../mod.ts";
import { httpTransport } from "../transports/http.ts";
import { getServer } from "./_server.ts";
import { transports } from "./_transports.ts";
import { errorOf, tapWrites, uniqueName } from "./_helpers.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

async function url(): Promise<string> {
  return (await getServer()).url("scram", PLAIN);
}

/** A transport that keeps the text of what each of its streams writes. */
function recording(base: Transport): Transport & { written: string[] } {
  const decoder = new TextDecoder();
  const wrapper: Transport & { written: string[] } = Object.assign(
    tapWrites(base, "record", (data) => wrapper.written.push(decoder.decode(data))),
    { written: [] as string[] },
  );
  return wrapper;
}

/** The writes that carry a pg_type lookup. */
function lookups(transport: { written: string[] }): number {
  return transport.written.filter((text) => text.includes("pg_type")).length;
}

/** Runs `body` with an enum, a domain over int4 and a composite type, dropped after. */
async function withUserTypes(
  body: (names: { mood: string; small: string; pair: string }) => Promise<void>,
): Promise<void> {
  const mood = uniqueName("mood"), small = uniqueName("small"), pair = uniqueName("pair");
  await using admin = await connect(await url());
  await admin.query(
    `create type ${mood} as enum ('sad', 'ok', 'happy'); ` +
      `create domain ${small} as int4 check (value < 100); ` +
      `create type ${pair} as (a int4, b text)`,
  );
  try {
    await body({ mood, small, pair });
  } finally {
    await admin.query(`drop type ${mood}; drop domain ${small}; drop type ${pair}`);
  }
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("connect's types map parses its OIDs and leaves the rest to edgepool's", T, async () => {
  await using conn = await connect(await url(), {
    types: { [Oid.numeric]: Number, [Oid.timestamptz]: String },
  });
  const { rows } = await conn.query(
    "select 1.25::numeric as n, '{1.5,NULL}'::numeric[] as ns, " +
      "'2024-01-02 03:04:05.123456+00'::timestamptz as t, 7::int4 as i, 'x' as s",
  );
  assert.deepEqual(rows, [{
    n: 1.25,
    ns: [1.5, null],
    t: "2024-01-02 03:04:05.123456+00",
    i: 7,
    s: "x",
  }]);
  // A query's own types win over the connection's.
  const own = await conn.query({
    text: "select 1.25::numeric as n, 2::int4 as i",
    types: {
      getTypeParser: (oid: number) => oid === Oid.int4 ? String : typeParsers.getTypeParser(oid),
    },
  });
  assert.deepEqual(own.rows, [{ n: "1.25", i: "2" }]);
});

test("connect's types in pg's shape are asked about every column", T, async () => {
  const asked = new Set<number>();
  await using conn = await connect(await url(), {
    types: {
      getTypeParser(oid: number) {
        asked.add(oid);
        return oid === Oid.numeric ? Number : typeParsers.getTypeParser(oid);
      },
    },
  });
  const { rows } = await conn.query("select 2.5::numeric as n, 3::int4 as i, now() as t");
  assert.equal(rows[0].n, 2.5);
  assert.equal(rows[0].i, 3);
  assert.ok(rows[0].t instanceof Date);
  assert.deepEqual([...asked].sort((a, b) => a - b), [Oid.int4, Oid.timestamptz, Oid.numeric]);
});

test("createPool passes types to its connections", T, async () => {
  await using pool = createPool(await url(), {
    poolSize: 1,
    types: new Map([[Oid.timestamptz, String]]),
  });
  const { rows } = await pool.query("select '2024-01-02 03:04:05.123456+00'::timestamptz as t");
  assert.equal(rows[0].t, "2024-01-02 03:04:05.123456+00");
  await using conn = await pool.connect();
  const again = await conn.query("select 1.5::numeric as n, '2024-01-02'::timestamptz as t");
  assert.deepEqual(again.rows, [{ n: "1.5", t: "2024-01-02 00:00:00+00" }]);
});

test("connect refuses types that are not parsers, with a TypeError naming them", T, async () => {
  const cases: [unknown, RegExp][] = [
    [42, /options\.types must be an object.*not number/],
    [null, /options\.types must be an object.*not null/],
    [[Number], /options\.types must be an object.*not an array/],
    [{ getTypeParser: "no" }, /options\.types\.getTypeParser must be a function, not string/],
    [{ 1700: "Number" }, /options\.types\[1700\] must be a parser function.*not string/],
    [{ numeric: Number }, /options\.types has the key "numeric", which is not a type OID/],
    [{ "-1": Number }, /key "-1", which is not a type OID/],
    [{ 0: Number }, /key "0", which is not a type OID/],
  ];
  const base = await url();
  for (const [types, message] of cases) {
    const options = { types } as unknown as ConnectOptions;
    const error = await errorOf(connect(base, options));
    assert.ok(error instanceof TypeError, String(error));
    assert.match(String(error.message), message);
    assert.throws(() => createPool(base, options), message);
  }
  // Over HTTP a pool has no connection of its own to carry them: refused, not ignored.
  const http = { transport: httpTransport({ endpoint: "http://127.0.0.1:1/sql" }) };
  assert.throws(
    () => createPool(base, { ...http, types: { [Oid.numeric]: Number } }),
    /options\.types does not apply over HTTP yet/,
  );
});

test("query returns arrays of enums, domains and composites as JS arrays", T, async () => {
  await withUserTypes(async ({ mood, small, pair }) => {
    const transport = recording(transports[0]);
    await using conn = await connect(await url(), { transport, types: { [Oid.numeric]: Number } });
    const sql = `select '{sad,happy}'::${mood}[] as moods, 'ok'::${mood} as mood, ` +
      `array[1, 2, null]::${small}[] as smalls, array[(1,'a b')::${pair}] as pairs, ` +
      `array[1.5]::numeric[] as ns`;
    const expected = {
      moods: ["sad", "happy"],
      mood: "ok",
      smalls: [1, 2, null],
      pairs: ['(1,"a b")'],
      ns: [1.5],
    };
    assert.deepEqual((await conn.query(sql)).rows, [expected]);
    assert.deepEqual((await conn.query(sql, [])).rows, [expected]);
    const arrays = await conn.query({ text: sql, rowMode: "array" });
    assert.deepEqual(arrays.rows, [Object.values(expected)]);
    // Two queries at once see the same type: still one lookup in all.
    const [a, b] = await Promise.all([
      conn.query(`select '{ok}'::${mood}[] as m`),
      conn.query(`select '{sad}'::${mood}[] as m`),
    ]);
    assert.deepEqual([a.rows, b.rows], [[{ m: ["ok"] }], [{ m: ["sad"] }]]);
    assert.equal(lookups(transport), 1);
    // A query's own types are not looked up for it.
    const own = await conn.query({ text: sql, types: typeParsers });
    assert.equal(own.rows[0].moods, "{sad,happy}");
    // Another connection looks again, once.
    await using other = await connect(await url(), { transport });
    const [x, y] = await Promise.all([
      other.query(`select '{ok,sad}'::${mood}[] as m`),
      other.query(`select '{happy}'::${mood}[] as m`),
    ]);
    assert.deepEqual([x.rows, y.rows], [[{ m: ["ok", "sad"] }], [{ m: ["happy"] }]]);
    assert.equal(lookups(transport), 2);
  });
});

test("query looks nothing up on a connection that sees only built-in types", T, async () => {
  const transport = recording(transports[0]);
  await using conn = await connect(await url(), { transport });
  const { rows } = await conn.query(
    "select '{1,2}'::int4[] as a, '1 day'::interval as d, '{x}'::text[] as t, " +
      "'(1,2)'::point as p, 1.5::numeric as n",
  );
  assert.deepEqual(rows, [{ a: [1, 2], d: "1 day", t: ["x"], p: "(1,2)", n: "1.5" }]);
  await conn.query("select $1::int8 as big", [1]);
  assert.ok(transport.written.length > 0);
  assert.equal(lookups(transport), 0);
});

test("query keeps a user type's text when its lookup fails, and looks again later", T, async () => {
  await withUserTypes(async ({ mood }) => {
    const transport = recording(transports[0]);
    await using conn = await connect(await url(), { transport });
    // The lookup goes behind the query that fails, in the transaction that query aborted.
    const [, moods, failed] = await Promise.allSettled([
      conn.query("begin"),
      conn.query(`select '{sad,happy}'::${mood}[] as m`),
      conn.query("select 1/0"),
    ]);
    assert.equal(moods.status, "fulfilled");
    assert.equal(moods.status === "fulfilled" && moods.value.rows[0].m, "{sad,happy}");
    assert.equal(failed.status, "rejected");
    await conn.query("rollback");
    const again = await conn.query(`select '{sad,happy}'::${mood}[] as m`);
    assert.deepEqual(again.rows, [{ m: ["sad", "happy"] }]);
    assert.equal(lookups(transport), 2);
  });
});
