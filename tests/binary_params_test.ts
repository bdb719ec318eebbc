// Binary parameters (src/_binary_params.ts) against the real server: from a cached statement's
// second run, its bytea, timestamptz and uuid parameters go in binary where the value allows,
// and the server reads exactly what it read from their text (a connection without the cache,
// and the statement's own first run, send text): the same renderings, the same rows stored, the
// same errors. The Bind messages on the wire show which parameter went how.

import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, type Connection, type ConnectOptions, Oid, PostgresError } from "../mod.ts";
import { binaryParam } from "../src/_binary_params.ts";
import { getServer } from "./_server.ts";
import { transports } from "./_transports.ts";
import { tapWrites, uniqueName } from "./_helpers.ts";

const T = { timeout: 60_000 };

/** A connection whose Binds' parameter format codes are kept, one list per Bind, in `binds`. */
async function tapped(options: ConnectOptions = {}): Promise<Connection & { binds: number[][] }> {
  const server = await getServer();
  const binds: number[][] = [];
  const transport = tapWrites(transports[0], "binds", (data) => {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let pos = 0; pos + 5 <= data.length;) {
      const length = view.getInt32(pos + 1);
      if (data[pos] === 0x42) { // Bind: portal, statement, then the format codes
        let at = data.indexOf(0, pos + 5) + 1;
        at = data.indexOf(0, at) + 1;
        const count = view.getUint16(at); // up to 65535
        binds.push(Array.from({ length: count }, (_, i) => view.getInt16(at + 2 + 2 * i)));
      }
      pos += 1 + length;
    }
  });
  const conn = await connect(server.url("scram", { sslmode: "disable" }), {
    transport,
    statementCache: 100,
    ...options,
  });
  return Object.assign(conn, { binds });
}

/** A connection without the statement cache: every parameter text. */
async function textOnly(options: ConnectOptions = {}): Promise<Connection> {
  const server = await getServer();
  return await connect(server.url("scram", { sslmode: "disable" }), {
    statementCache: 0,
    ...options,
  });
}

/** What a query gives: its rows, or its error's class, code and message. */
async function outcome(conn: Connection, sql: string, params: unknown[]): Promise<unknown> {
  try {
    return (await conn.query({ text: sql, values: params, rowMode: "array" })).rows;
  } catch (error) {
    if (error instanceof PostgresError) return `PostgresError ${error.code}: ${error.message}`;
    return `${(error as Error).constructor.name}: ${(error as Error).message}`;
  }
}

/**
 * Asserts that `cached` (prepared, described by its first run) gives for each parameter list of
 * `lists` (or each value of it, as `[value]`), on its first run and two later ones, the outcome
 * `text` (no cache) gives; returns the format codes of each list's last Bind.
 */
async function assertSameEach(
  text: Connection,
  cached: Connection & { binds: number[][] },
  sql: (i: number) => string,
  lists: unknown[],
  each: (value: unknown) => unknown[] = (value) => [value],
): Promise<number[][]> {
  const formats: number[][] = [];
  for (let i = 0; i < lists.length; i++) {
    // A statement of its own per value: its first run is text, the later ones may be binary.
    const params = each(lists[i]);
    const expected = await outcome(text, sql(i), params);
    for (let run = 0; run < 3; run++) {
      const binds = cached.binds.length;
      assert.deepStrictEqual(await outcome(cached, sql(i), params), expected, `value ${i}`);
      if (run === 2) formats.push(cached.binds[binds] ?? []);
    }
  }
  return formats;
}

/**
 * Asserts that each Bind sent its parameters as text: format code 0 each, or none (a statement
 * whose runs all failed is never described, and its runs are all first runs).
 */
function assertText(formats: number[][]): void {
  for (const codes of formats) assert.ok(codes.every((code) => code === 0), String(codes));
}

/** `bytes` as lowercase hex. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

test(
  "query sends a cached statement's bytea, timestamptz and uuid parameters in binary from its second run, others text",
  T,
  async () => {
    await using conn = await tapped();
    const sql = "select $1::bytea as b, $2::text as t, $3::timestamptz as ts, $4::uuid as u, " +
      "$5::int4 as i, $6::timestamp as plain, $7::bytea as n";
    const params = [
      new Uint8Array([1, 2, 255]),
      "x",
      new Date("2024-02-29T13:45:00.123Z"),
      "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      7,
      new Date("2024-02-29T13:45:00.123Z"),
      null,
    ];
    const first = await conn.query(sql, params);
    const second = await conn.query(sql, params);
    const third = await conn.query(sql, params);
    // The first run binds all text (no codes); the later ones say which went binary.
    assert.deepEqual(conn.binds.slice(-3), [[], [1, 0, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 0, 0]]);
    assert.deepStrictEqual(second.rows, first.rows);
    assert.deepStrictEqual(third.rows, first.rows);
    assert.deepStrictEqual(first.rows[0].u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    // The fields and the command are those of the first run, but for columns read in binary.
    assert.deepEqual(second.fields.map((f) => f.name), first.fields.map((f) => f.name));
    assert.equal(second.command, first.command);
    assert.equal(second.rowCount, first.rowCount);
  },
);

test("query sends a statement without such parameters all text, on every run", T, async () => {
  await using conn = await tapped();
  for (let i = 0; i < 3; i++) {
    await conn.query("select $1::int4 + 1 as n, $2::text as t", [i, new Uint8Array([1])]);
  }
  assert.deepEqual(conn.binds, [[], [], []]);
});

test(
  "query gives a binary bytea parameter the value its text gives: empty, small, 64 KiB, views, ArrayBuffer",
  T,
  async () => {
    await using text = await textOnly();
    await using cached = await tapped();
    const big = new Uint8Array(65536).map((_, i) => (i * 7919) & 255);
    const backing = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    const values: unknown[] = [
      new Uint8Array(0),
      new Uint8Array([0]),
      new Uint8Array([0x5c, 0x78]), // "\x": bytes, not an escape
      big,
      backing.subarray(3, 7), // byteOffset 3
      backing.buffer.slice(2, 6), // an ArrayBuffer
      new DataView(backing.buffer, 1, 4),
      new Uint16Array([0x0102, 0xfffe]), // its bytes in the platform's order
      new Uint8Array(backing.buffer, 10, 0), // empty, at the end of its buffer
      null,
    ];
    const bytes = (value: unknown): string | null =>
      value === null ? null : hex(
        value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(
          (value as ArrayBufferView).buffer,
          (value as ArrayBufferView).byteOffset,
          (value as ArrayBufferView).byteLength,
        ),
      );
    const formats = await assertSameEach(
      text,
      cached,
      (i) =>
        `select $1::bytea = decode($2, 'hex') as same, length($1) as len, md5($1) as md5, ` +
        `$1::bytea as b /* ${i} */`,
      values,
      (value) => [value, bytes(value)],
    );
    assert.deepEqual(formats, values.map((v) => [v === null ? 0 : 1, 0]));
    // The server found each value's own bytes.
    for (let i = 0; i < values.length; i++) {
      const [[same, len]] = await outcome(
        cached,
        `select $1::bytea = decode($2, 'hex'), length($1)`,
        [
          values[i],
          bytes(values[i]),
        ],
      ) as unknown[][];
      if (values[i] === null) assert.equal(same, null);
      else assert.equal(same, true, `value ${i}`);
      assert.equal(len, values[i] === null ? null : bytes(values[i])!.length / 2);
    }
  },
);

test(
  "query gives a binary bytea parameter the value of its text, compared on the server",
  T,
  async () => {
    await using text = await textOnly();
    await using cached = await tapped();
    const values = [new Uint8Array(0), new Uint8Array([0]), new Uint8Array(1024).fill(0xab)];
    for (const value of values) {
      const sql = "select $1::bytea = decode($2, 'hex') as same, length($1) as len, md5($1) as md5";
      const params = [value, hex(value)];
      const expected = await outcome(text, sql, params);
      assert.equal((expected as unknown[][])[0][0], true);
      for (let run = 0; run < 3; run++) {
        assert.deepStrictEqual(
          await outcome(cached, sql, params),
          expected,
        );
      }
      assert.deepEqual(cached.binds.at(-1), [1, 0]);
    }
  },
);

/** Dates around the edges: the epochs, ms either side, years 1 and 9999, and beyond (text). */
const dates = [
  "1970-01-01T00:00:00.000Z",
  "1969-12-31T23:59:59.999Z",
  "1970-01-01T00:00:00.001Z",
  "2000-01-01T00:00:00.000Z",
  "1999-12-31T23:59:59.999Z",
  "2000-01-01T00:00:00.001Z",
  "1883-11-18T16:59:59.999Z",
  "1900-02-28T12:34:56.789Z",
  "2024-02-29T13:45:00.123Z",
  "2262-04-11T23:47:16.854Z", // past 2^63 ns: nothing special in µs
  "2285-06-04T00:00:00.000Z", // ms * 1000 past 2^53 from 2000
  "1714-07-29T00:00:00.000Z", // and before
  "0001-01-01T00:00:00.000Z",
  "0001-01-01T00:00:00.001Z",
  "9999-12-31T23:59:59.999Z",
].map((text) => new Date(text));
/** Dates whose text is not ISO (years before 1 and past 9999) and bad ones: text both times. */
const textDates = [
  new Date("0000-06-15T00:00:00.000Z"), // 1 BC
  new Date(-62135596800001), // 1 ms before year 1: 1 BC
  new Date("-000043-03-15T12:00:00.000Z"),
  new Date("+010000-01-01T00:00:00.000Z"),
  new Date(8.64e15), // the last Date
  new Date(-8.64e15), // the first: before the server's range
  new Date(NaN),
];

test(
  "query gives a binary timestamptz parameter the value its text gives, in any time zone",
  T,
  async () => {
    await using text = await textOnly();
    await using cached = await tapped();
    for (const zone of ["UTC", "America/New_York", "Asia/Kolkata"]) {
      await text.query(`set time zone '${zone}'`);
      await cached.query(`set time zone '${zone}'`);
      const sql = (i: number) =>
        `select $1::timestamptz::text as t, extract(epoch from $1::timestamptz)::text as e, ` +
        `$1::timestamptz as d /* ${zone} ${i} */`;
      const formats = await assertSameEach(text, cached, sql, [...dates, null]);
      assert.deepEqual(formats, [...dates.map(() => [1]), [0]]);
      const others = await assertSameEach(text, cached, (i) => sql(100 + i), textDates);
      assertText(others);
    }
    // An Invalid Date fails as it does as text, the same RangeError.
    const error = await outcome(cached, "select $1::timestamptz /* 0 */", [new Date(NaN)]);
    assert.equal(error, "RangeError: Query parameter $1: Invalid Date parameter");
  },
);

test("query sends a Date to a timestamp (without time zone) parameter as text", T, async () => {
  await using text = await textOnly();
  await using cached = await tapped();
  const formats = await assertSameEach(
    text,
    cached,
    (i) => `select $1::timestamp::text /* ${i} */`,
    dates.slice(0, 4),
  );
  assert.deepEqual(formats, [[], [], [], []]); // no parameter of a type sent in binary
});

test(
  "query gives a binary uuid parameter the value its text gives; other forms stay text, accepted or refused alike",
  T,
  async () => {
    await using text = await textOnly();
    await using cached = await tapped();
    const canonical = [
      "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      "a0EEbc99-9C0b-4Ef8-Bb6D-6bB9bD380A11",
      "00000000-0000-0000-0000-000000000000",
      "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ];
    const others = [
      "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
      "a0eebc999c0b4ef8bb6d6bb9bd380a11",
      "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",
      "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
      "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
      "a0eebc99+9c0b-4ef8-bb6d-6bb9bd380a11",
      "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
      "not a uuid",
      "",
      "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\ud800", // a lone surrogate: the same TypeError
      42,
    ];
    const sql = (i: number) => `select $1::uuid::text as u, $1::uuid as v /* ${i} */`;
    assert.deepEqual(await assertSameEach(text, cached, sql, canonical), canonical.map(() => [1]));
    assertText(await assertSameEach(text, cached, (i) => sql(100 + i), [...others, null]));
  },
);

test("query stores through cached statements the rows a text insert stores", T, async () => {
  await using text = await textOnly();
  await using cached = await tapped();
  const table = uniqueName("binary_params");
  await text.query(`create table ${table} (id int, src text, b bytea, ts timestamptz, u uuid)`);
  try {
    const rows = [
      [
        new Uint8Array([1, 2, 3]),
        new Date("1969-07-20T20:17:40.000Z"),
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      ],
      [
        new Uint8Array(65536).fill(7),
        new Date("0001-01-01T00:00:00.000Z"),
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
      ],
      [
        new Uint8Array(0),
        new Date("9999-12-31T23:59:59.999Z"),
        "00000000-0000-0000-0000-000000000000",
      ],
      [null, new Date("+010000-01-01T00:00:00.000Z"), null],
      [new Uint16Array([1, 2]), null, "ffffffff-ffff-ffff-ffff-ffffffffffff"],
      [new Uint8Array([0, 0x5c]).buffer, new Date(-1), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"],
    ];
    const insert = `insert into ${table} (id, src, b, ts, u) values ($1, $2, $3, $4, $5)`;
    for (const [id, row] of rows.entries()) {
      await text.query(insert, [id, "text", ...row]);
      await cached.query(insert, [id, "cached", ...row]);
    }
    // All but the first cached insert had bytea, timestamptz and uuid in binary where allowed.
    assert.deepEqual(cached.binds.slice(-5), [
      [0, 0, 1, 1, 0],
      [0, 0, 1, 1, 1],
      [0, 0, 0, 0, 0],
      [0, 0, 1, 0, 1],
      [0, 0, 1, 1, 1],
    ]);
    const read = (src: string) =>
      text.query(`select id, b, ts::text, u::text from ${table} where src = $1 order by id`, [src]);
    const [a, b] = [await read("text"), await read("cached")];
    assert.equal(a.rows.length, rows.length);
    assert.deepStrictEqual(b.rows, a.rows);
  } finally {
    await text.query(`drop table ${table}`);
  }
});

test(
  "query sends a parameter with a serializer for its type as the serializer's text",
  T,
  async () => {
    const own = { 17: (bytes: Uint8Array) => "\\x" + hex(bytes).toUpperCase() };
    await using conn = await tapped({ serializers: { 2950: (u: string) => u.replace(/-/g, "") } });
    const sql = "select $1::bytea as b, $2::uuid::text as u, $3::timestamptz as t";
    const params = [new Uint8Array([1, 2]), "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", new Date(0)];
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await conn.query(sql, params));
    for (let i = 0; i < 2; i++) results.push(await conn.query(sql, params, { serializers: own }));
    // The connection's serializer keeps uuid text; the query's keeps bytea text too.
    assert.deepEqual(conn.binds.slice(-5), [[], [1, 0, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1]]);
    for (const result of results) assert.deepStrictEqual(result.rows, results[0].rows);
  },
);

test(
  "query sends binary parameters again as text when the statement went stale, and relearns its types",
  T,
  async () => {
    await using conn = await tapped();
    const table = uniqueName("binary_params_stale");
    await conn.query(`create table ${table} (u uuid)`);
    try {
      await conn.query(`insert into ${table} values ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')`);
      const sql = `select * from ${table} where u = $1`;
      const upper = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
      const lower = upper.toLowerCase();
      /** Runs `sql` three times, each returning `rows`; returns the Binds' format codes. */
      const thrice = async (rows: unknown[]): Promise<number[][]> => {
        const start = conn.binds.length;
        for (let i = 0; i < 3; i++) assert.deepEqual((await conn.query(sql, [upper])).rows, rows);
        return conn.binds.slice(start);
      };
      assert.deepEqual(await thrice([{ u: lower }]), [[], [1], [1]]);
      // The server drops the statement: the next run fails (26000) and goes again unprepared,
      // text; the one after prepares and describes it anew, the next is binary again.
      await conn.query("deallocate all");
      assert.deepEqual(await thrice([{ u: lower }]), [[1], [], [], [1]]);
      // A column more: the cached plan's result changes (0A000), the same.
      await conn.query(`alter table ${table} add column n int`);
      assert.deepEqual(await thrice([{ u: lower, n: null }]), [[1], [], [], [1]]);
      // Dropped again while the column became text, the upper-case text: the run again
      // unprepared has a text parameter, which only the parameter's own text matches (not binary
      // bytes, nor lower case); described anew, the statement binds it as text.
      await conn.query("deallocate all");
      await conn.query(`alter table ${table} alter column u type text using upper(u::text)`);
      assert.deepEqual(await thrice([{ u: upper, n: null }]), [[1], [], [], []]);
    } finally {
      await conn.query(`drop table ${table}`);
    }
  },
);

test(
  "query sends a Uint8Array to a text or untyped parameter as text, on every run",
  T,
  async () => {
    await using text = await textOnly();
    await using cached = await tapped();
    const value = new Uint8Array([0x68, 0x69]);
    for (
      const sql of ["select $1::text as t", "select $1 as t", "select length($1::varchar) as t"]
    ) {
      const expected = await outcome(text, sql, [value]);
      for (let i = 0; i < 3; i++) {
        assert.deepStrictEqual(await outcome(cached, sql, [value]), expected);
      }
      assert.deepEqual(cached.binds.at(-1), []);
    }
    assert.deepEqual(await outcome(text, "select $1::text", [value]), [["\\x6869"]]);
  },
);

test("query sends every parameter text without the statement cache", T, async () => {
  await using conn = await tapped({ statementCache: 0 });
  for (let i = 0; i < 3; i++) await conn.query("select $1::bytea", [new Uint8Array([1])]);
  assert.deepEqual(conn.binds, [[], [], []]);
});

test("stream sends a cached statement's parameters as text", T, async () => {
  await using conn = await tapped();
  const sql = "select $1::bytea as b, $2::uuid as u from generate_series(1, 3)";
  const params = [new Uint8Array([1]), "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"];
  const { rows } = await conn.query(sql, params);
  await conn.query(sql, params);
  assert.deepEqual(conn.binds.at(-1), [1, 1]);
  const start = conn.binds.length;
  const streamed = [];
  for await (const row of conn.stream(sql, params)) streamed.push(row);
  assert.deepStrictEqual(streamed, rows);
  assert.ok(conn.binds.length > start);
  for (const formats of conn.binds.slice(start)) assert.deepEqual(formats, []);
});

test("binaryParam gives a Date the exact int64 of microseconds from 2000, in the years 1 to 9999", () => {
  const epoch = BigInt(Date.UTC(2000, 0, 1));
  const first = -62135596800000, end = 253402300800000; // 0001-01-01, 10000-01-01
  const times = [first, first + 1, end - 1, -1, 0, 1, Number(epoch) - 1, Number(epoch)];
  for (let seed = 1; times.length < 10_000; seed = (seed * 48271) % 2147483647) {
    times.push(first + Math.floor((seed / 2147483647) * (end - first)));
  }
  for (const time of times) {
    const bytes = binaryParam(Oid.timestamptz, new Date(time))!;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    assert.equal(view.getBigInt64(0), (BigInt(time) - epoch) * 1000n, String(time));
  }
  for (const time of [first - 1, end, NaN]) {
    assert.equal(binaryParam(Oid.timestamptz, new Date(time)), undefined, String(time));
  }
});

test("binaryParam reads a uuid's canonical text only, either case", () => {
  const bytes = binaryParam(Oid.uuid, "0123ABCD-ef45-6789-AbCd-0123456789aB")!;
  assert.equal(hex(bytes), "0123abcdef456789abcd0123456789ab");
  for (
    const other of ["0123abcd-ef45-6789-abcd-0123456789a", "0123abcdef45-6789-abcd-0123456789abc"]
  ) {
    assert.equal(binaryParam(Oid.uuid, other), undefined, other);
  }
  assert.equal(binaryParam(Oid.text, "0123abcd-ef45-6789-abcd-0123456789ab"), undefined);
  assert.equal(binaryParam(Oid.bytea, "\\x00"), undefined);
});

test("query runs a cached statement of 40 000 parameters (more than int16 counts)", T, async () => {
  await using conn = await tapped();
  const count = 40_000;
  const list = Array.from({ length: count }, (_, i) => `$${i + 1}::int`).join(",");
  const sql = `select array_length(array[${list}], 1) as n, $1::bytea as b`.replace(
    "$1::int,",
    "length($1::bytea),",
  );
  const params: unknown[] = Array.from({ length: count }, (_, i) => i);
  params[0] = new Uint8Array([1, 2]);
  for (let i = 0; i < 2; i++) {
    const { rows } = await conn.query(sql, params);
    assert.deepStrictEqual(rows, [{ n: count, b: new Uint8Array([1, 2]) }]);
  }
  assert.equal(conn.binds.at(-1)!.length, count);
  assert.equal(conn.binds.at(-1)![0], 1);
});
