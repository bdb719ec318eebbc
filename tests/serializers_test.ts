// Parameter serializers by type (`serializers`, src/_param_types.ts and the connection's held
// queries in src/connection.ts), against the real PostgreSQL 15 of tests/_server.ts and a real
// PgBouncer: a serializer picked by the type the server gives each parameter, a query's own
// winning over the connection's, arrays of a serialized element type, no Describe and no extra
// write without serializers, the statement cache on and off, a failing serializer, and many
// queries of one text issued at once keeping their order.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type ConnectOptions,
  createPool,
  HttpPool,
  Oid,
  PostgresError,
  type SerializersOption,
  sql,
  type Transport,
} from "../mod.ts";
import { httpTransport } from "../transports/http.ts";
import { getServer } from "./_server.ts";
import { type PgBouncer, startPgBouncer } from "./_pgbouncer.ts";
import { transports } from "./_transports.ts";
import { errorOf, tapWrites, uniqueName } from "./_helpers.ts";
import { runReadmeSnippet } from "./_readme.ts";
import { ParamTypes } from "../src/_param_types.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

async function url(): Promise<string> {
  return (await getServer()).url("scram", PLAIN);
}

let bouncer: PgBouncer | undefined;
after(async () => {
  await bouncer?.stop();
});

/** A frontend message: its type and its body. */
interface Sent {
  type: string;
  body: Uint8Array;
}

/** A transport that keeps each write of its streams, to read back what was sent. */
function recording(base: Transport): Transport & { writes: Uint8Array[]; sent(): Sent[] } {
  const writes: Uint8Array[] = [];
  return Object.assign(tapWrites(base, "record", (data) => writes.push(data.slice())), {
    writes,
    /** Every message written, the untyped StartupMessage left out. */
    sent(): Sent[] {
      const all = new Uint8Array(writes.reduce((n, w) => n + w.length, 0));
      let at = 0;
      for (const w of writes) all.set(w, (at += w.length) - w.length);
      const view = new DataView(all.buffer);
      const out: Sent[] = [];
      let pos = view.getInt32(0); // the StartupMessage has no type byte
      while (pos < all.length) {
        const length = view.getInt32(pos + 1);
        out.push({
          type: String.fromCharCode(all[pos]),
          body: all.slice(pos + 5, pos + 1 + length),
        });
        pos += 1 + length;
      }
      return out;
    },
  });
}

/**
 * The describes of parameter types among `sent`: a Describe statement right before a Sync, which
 * runs nothing. (A cached statement's first run describes its statement too, before its Execute:
 * not counted.)
 */
function describes(sent: Sent[]): number {
  return sent.filter((m, i) => m.type === "D" && m.body[0] === 0x53 && sent[i + 1]?.type === "S")
    .length;
}

/** Messages of `type` among `sent`. */
function count(sent: Sent[], type: string): number {
  return sent.filter((m) => m.type === type).length;
}

/** A decimal kept as its text, which edgepool alone would refuse to send (a class instance). */
class Decimal {
  constructor(readonly digits: string) {}
}

const DAY = (d: Date) => d.toISOString().slice(0, 10);

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test(
  "query sends each parameter by the serializer of its type, when connected with them",
  T,
  async () => {
    let asked = 0;
    await using conn = await connect(await url(), {
      serializers: {
        [Oid.date]: (d: Date) => (asked++, DAY(d)),
        [Oid.numeric]: (n: Decimal) => n.digits,
        [Oid.jsonb]: JSON.stringify,
      },
    });
    const text = "select $1::date as d, $2::numeric as n, $3::jsonb as j, $4::int4 as i, " +
      "$5::date as none, $6::timestamptz as t";
    const values = [
      new Date(Date.UTC(2024, 1, 29, 23, 30)),
      new Decimal("1.10"),
      [1, { a: "x" }], // an array, sent as JSON: without the serializer, an array literal
      7,
      null,
      new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
    ];
    for (let round = 0; round < 2; round++) { // learned, then known
      const { rows } = await conn.query(text, values);
      assert.deepEqual(rows, [{
        d: "2024-02-29",
        n: "1.10",
        j: [1, { a: "x" }],
        i: 7,
        none: null,
        t: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
      }]);
    }
    assert.equal(asked, 2, "the date serializer, once per query: never for NULL");
    // Without the serializer edgepool refuses the class instance and sends the array as an array.
    await using plain = await connect(await url());
    assert.match(
      String((await errorOf(plain.query("select $1::numeric", [new Decimal("1")]))).message),
      /Cannot serialize a Decimal/,
    );
  },
);

test("query's own serializers win over the connection's, entry by entry", T, async () => {
  const connection: SerializersOption = {
    [Oid.int4]: (n: number) => String(n * 10),
    [Oid.text]: (s: string) => `conn:${s}`,
  };
  const own = new Map([[Oid.int4, (n: number) => String(n * 100)]]);
  const text = "select $1::int4 as i, $2::text as t";
  await using conn = await connect(await url(), { serializers: connection });
  assert.deepEqual((await conn.query(text, [1, "a"])).rows, [{ i: 10, t: "conn:a" }]);
  assert.deepEqual(
    (await conn.query(text, [1, "a"], { serializers: own })).rows,
    [{ i: 100, t: "conn:a" }],
  );
  // pg's config object, and a template spread into one.
  assert.deepEqual(
    (await conn.query({ text, values: [2, "b"], serializers: own })).rows,
    [{ i: 200, t: "conn:b" }],
  );
  const template = sql`select ${3}::int4 as i, ${"c"}::text as t`;
  assert.deepEqual((await conn.query(template)).rows, [{ i: 30, t: "conn:c" }]);
  assert.deepEqual((await conn.sql`select ${4}::int4 as i`).rows, [{ i: 40 }]);
  assert.deepEqual(
    (await conn.query({ ...template, serializers: own })).rows,
    [{ i: 300, t: "conn:c" }],
  );
  // A connection without serializers of its own takes a query's.
  await using bare = await connect(await url());
  assert.deepEqual(
    (await bare.query(text, [5, "e"], { serializers: own })).rows,
    [{ i: 500, t: "e" }],
  );
});

test("createPool's serializers reach pool.query, checkouts, batch and templates", T, async () => {
  await using pool = createPool(await url(), {
    max: 2,
    serializers: { [Oid.int4]: (n: number) => String(n + 1) },
  });
  assert.deepEqual((await pool.query("select $1::int4 as i", [1])).rows, [{ i: 2 }]);
  assert.deepEqual((await pool.sql`select ${1}::int4 as i`).rows, [{ i: 2 }]);
  const results = await pool.batch([
    { sql: "select $1::int4 as i", params: [10] },
    sql`select ${20}::int4 as i, ${"x"}::text as t`,
  ]);
  assert.deepEqual(results.map((r) => r.rows), [[{ i: 11 }], [{ i: 21, t: "x" }]]);
  // batch's own serializers, over the pool's.
  const own = await pool.batch([{ sql: "select $1::int4 as i", params: [10] }], {
    serializers: { [Oid.int4]: (n: number) => String(-n) },
  });
  assert.deepEqual(own[0].rows, [{ i: -10 }]);
  const answer = await pool.query("select $1::int4 as i", [3], {
    serializers: { [Oid.int4]: (n: number) => String(n * 2) },
  });
  assert.deepEqual(answer.rows, [{ i: 6 }]);
  await using conn = await pool.connect();
  assert.deepEqual((await conn.query("select $1::int4 as i", [4])).rows, [{ i: 5 }]);
});

test(
  "query applies an element type's serializer to each element of a built-in array",
  T,
  async () => {
    await using conn = await connect(await url(), {
      serializers: {
        [Oid.date]: DAY,
        [Oid.numeric]: (n: Decimal) => n.digits,
        [Oid._int4]: (a: number[]) => `{${a.map((n) => n + 1).join(",")}}`,
        [Oid.text]: (s: string) => s.toUpperCase(),
      },
    });
    const { rows } = await conn.query(
      "select $1::date[] as days, $2::numeric[] as ns, $3::int4[] as whole, $4::text[] as ts, " +
        "$5::int8[] as plain",
      [
        [new Date(Date.UTC(2024, 0, 1, 22)), null, new Date(Date.UTC(2024, 11, 31))],
        [[new Decimal("1.50")], [new Decimal("-2")]],
        [1, 2],
        ['a "quoted", b', "\\"],
        [1n, null],
      ],
    );
    assert.deepEqual(rows, [{
      days: ["2024-01-01", null, "2024-12-31"],
      ns: [["1.50"], ["-2"]],
      whole: [2, 3], // a serializer of the array type itself wins over its element's
      ts: ['A "QUOTED", B', "\\"],
      plain: ["1", null],
    }]);
  },
);

test(
  "query fails with a TypeError naming $n when a serializer throws or returns no string, nothing sent",
  T,
  async () => {
    const transport = recording(transports[0]);
    await using conn = await connect(await url(), {
      transport,
      serializers: {
        [Oid.int4]: (n: number) => {
          if (n < 0) throw new RangeError("negative");
          return n === 0 ? (0 as unknown as string) : String(n);
        },
      },
    });
    const text = "select $1::text as t, $2::int4 as i";
    const binds = () => count(transport.sent(), "B");
    // First use (the describe in flight) and then with the types known; pipelined between
    // queries that must keep their answers.
    for (const known of [false, true]) {
      const before = binds();
      const [a, bad, worse, b] = await Promise.allSettled([
        conn.query("select $1::int4 as i", [1]),
        conn.query(text, ["x", -1]),
        conn.query(text, ["y", 0]),
        conn.query(text, ["z", 2]),
      ]);
      assert.deepEqual(a.status === "fulfilled" && a.value.rows, [{ i: 1 }], String(known));
      assert.deepEqual(b.status === "fulfilled" && b.value.rows, [{ t: "z", i: 2 }]);
      assert.equal(bad.status, "rejected");
      const error = (bad as PromiseRejectedResult).reason;
      assert.ok(error instanceof TypeError, String(error));
      assert.match(
        error.message,
        /^Query parameter \$2: the serializer of type 23 threw: negative/,
      );
      assert.ok(error.cause instanceof RangeError);
      const other = (worse as PromiseRejectedResult).reason;
      assert.ok(other instanceof TypeError);
      assert.match(other.message, /\$2: the serializer of type 23 returned number, not a string/);
      assert.equal(binds() - before, 2, "the failing queries bound nothing");
    }
    assert.deepEqual((await conn.query(text, ["ok", 3])).rows, [{ t: "ok", i: 3 }]);
    assert.equal(conn.transactionStatus, "idle");
  },
);

test(
  "query describes nothing and writes once without serializers; with them, once per text",
  T,
  async () => {
    const transport = recording(transports[0]);
    await using plain = await connect(await url(), { transport });
    await plain.query("select 1");
    const text = "select $1::int4 + $2::int4 as n";
    for (let i = 0; i < 3; i++) {
      const writes = transport.writes.length;
      assert.deepEqual((await plain.query(text, [i, 1])).rows, [{ n: i + 1 }]);
      assert.equal(transport.writes.length - writes, 1, "one write, one round trip");
    }
    assert.equal(describes(transport.sent()), 0);

    const typed = recording(transports[0]);
    await using conn = await connect(await url(), {
      transport: typed,
      serializers: { [Oid.int4]: (n: number) => String(n) },
    });
    await conn.query("select 1");
    // Queries without parameters describe nothing either.
    await conn.query("select 2", []);
    assert.equal(describes(typed.sent()), 0);
    let writes = typed.writes.length;
    await conn.query(text, [1, 1]);
    assert.equal(typed.writes.length - writes, 2, "the first time: the describe, then the query");
    for (let i = 0; i < 3; i++) {
      writes = typed.writes.length;
      assert.deepEqual((await conn.query(text, [i, 2])).rows, [{ n: i + 2 }]);
      assert.equal(typed.writes.length - writes, 1, "then one write, as without serializers");
    }
    assert.equal(describes(typed.sent()), 1);
  },
);

for (const statementCache of [100, 0]) {
  test(`query with serializers works with statementCache ${statementCache}`, T, async () => {
    const transport = recording(transports[0]);
    await using conn = await connect(await url(), {
      transport,
      statementCache,
      serializers: { [Oid.date]: DAY },
    });
    const text = "select $1::date as d";
    const day = (n: number) => new Date(Date.UTC(2024, 0, n, 12));
    for (let n = 1; n <= 3; n++) {
      assert.deepEqual((await conn.query(text, [day(n)])).rows, [{ d: `2024-01-0${n}` }]);
    }
    // Inside a transaction too.
    await conn.query("begin");
    assert.deepEqual((await conn.query(text, [day(4)])).rows, [{ d: "2024-01-04" }]);
    await conn.query("rollback");
    const sent = transport.sent();
    const parses = sent.filter((m) => m.type === "P");
    assert.equal(describes(sent), 1);
    if (statementCache > 0) {
      // Prepared by the describe, in its flight: the queries only bind the statement.
      assert.equal(parses.length, 1);
      assert.notEqual(parses[0].body[0], 0, "a named statement");
    } else {
      assert.equal(parses.length, 5, "the describe's and each query's, all unnamed");
      assert.ok(parses.every((p) => p.body[0] === 0));
    }
  });
}

test("query with serializers keeps 50 queries of one text issued at once in order", T, async () => {
  for (const statementCache of [100, 0]) {
    await using conn = await connect(await url(), {
      statementCache,
      serializers: { [Oid.int4]: (n: number) => String(n * 2) },
    });
    const done: number[] = [];
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      // One text with serializers, another one, and a query without parameters, interleaved.
      const query = i % 5 === 3
        ? conn.query(`select ${i} as i`)
        : i % 5 === 4
        ? conn.query("select $1::int4 - 1 as i, $2::text as t", [i, "x"])
        : conn.query("select $1::int4 as i", [i]);
      sent.push(query.then((r) => {
        done.push(i);
        return r.rows[0];
      }));
    }
    const rows = await Promise.all(sent);
    assert.deepEqual(done, [...Array(50).keys()], "answered in the order issued");
    rows.forEach((row, i) => {
      const expected = i % 5 === 3 ? { i } : i % 5 === 4 ? { i: 2 * i - 1, t: "x" } : { i: 2 * i };
      assert.deepEqual(row, expected, `query ${i}`);
    });
  }
});

test("query with serializers works behind PgBouncer in transaction mode", T, async () => {
  bouncer ??= await startPgBouncer({ poolMode: "transaction", poolSize: 3 });
  const options: ConnectOptions = {
    pooler: "transaction",
    serializers: { [Oid.date]: DAY, [Oid.jsonb]: JSON.stringify },
  };
  await using conn = await connect(bouncer.url(), options);
  const text = "select $1::date as d, $2::jsonb as j";
  const answers = await Promise.all(
    Array.from(
      { length: 20 },
      (_, i) => conn.query(text, [new Date(Date.UTC(2024, 0, i + 1)), [i]]),
    ),
  );
  answers.forEach((answer, i) => {
    assert.deepEqual(answer.rows, [{ d: `2024-01-${String(i + 1).padStart(2, "0")}`, j: [i] }]);
  });
  await conn.query("begin");
  assert.deepEqual(
    (await conn.query("select $1::jsonb as j", [[1, 2]])).rows,
    [{ j: [1, 2] }],
  );
  await conn.query("commit");
  await using pool = createPool(bouncer.url(), { ...options, max: 3 });
  const many = await Promise.all(
    Array.from({ length: 30 }, (_, i) => pool.query("select $1::jsonb as j", [{ i }])),
  );
  assert.deepEqual(many.map((r) => r.rows[0].j), Array.from({ length: 30 }, (_, i) => ({ i })));
});

test(
  "query with serializers rejects at once when aborted while its describe is out",
  T,
  async () => {
    await using conn = await connect(await url(), { serializers: { [Oid.int4]: String } });
    const controller = new AbortController();
    const slow = conn.query("select pg_sleep(0.2), $1::int4 as i", [1], {
      signal: controller.signal,
    });
    const after = conn.query("select $1::int4 as j", [2]);
    controller.abort(new Error("gave up"));
    assert.equal((await errorOf(slow)).message, "gave up");
    assert.deepEqual((await after).rows, [{ j: 2 }]);
    assert.deepEqual((await conn.query("select $1::int4 as i", [3])).rows, [{ i: 3 }]);
  },
);

test(
  "query with serializers rejects with the server's error when the describe fails",
  T,
  async () => {
    await using conn = await connect(await url(), { serializers: { [Oid.int4]: String } });
    const table = uniqueName("missing");
    const [bad, again, good] = await Promise.allSettled([
      conn.query(`select * from ${table} where id = $1`, [1]),
      conn.query(`select * from ${table} where id = $1`, [2]),
      conn.query("select $1::int4 as i", [3]),
    ]);
    for (const failed of [bad, again]) {
      assert.equal(failed.status, "rejected");
      assert.equal((failed as PromiseRejectedResult).reason.code, "42P01");
    }
    assert.deepEqual(good.status === "fulfilled" && good.value.rows, [{ i: 3 }]);
  },
);

test(
  "connect refuses serializers that are not functions by OID, with a TypeError naming them",
  T,
  async () => {
    const cases: [unknown, RegExp][] = [
      [42, /options\.serializers must be an object or a Map .*not number/],
      [[String], /options\.serializers must be an object or a Map .*not an array/],
      [{ 1082: "DAY" }, /options\.serializers\[1082\] must be a serializer function.*not string/],
      [{ date: String }, /options\.serializers has the key "date", which is not a type OID/],
      [new Map([[0, String]]), /key "0", which is not a type OID/],
    ];
    const base = await url();
    for (const [serializers, message] of cases) {
      const options = { serializers } as unknown as ConnectOptions;
      const error = await errorOf(connect(base, options));
      assert.ok(error instanceof TypeError, String(error));
      assert.match(String(error.message), message);
      assert.throws(() => createPool(base, options), message);
    }
    await using conn = await connect(base);
    const error = await errorOf(
      conn.query("select $1", [1], { serializers: { x: String } as never }),
    );
    assert.ok(error instanceof TypeError);
    assert.match(String(error.message), /^serializers has the key "x"/);
  },
);

test("HttpPool refuses serializers, saying why", T, async () => {
  const base = await url();
  const http = { transport: httpTransport({ endpoint: "http://127.0.0.1:1/sql" }) };
  const why = /serializers cannot be used over HTTP: .*only a Describe on a session tells/;
  assert.throws(() => createPool(base, { ...http, serializers: { [Oid.date]: DAY } }), why);
  assert.throws(
    () => new HttpPool(base, { serializers: { [Oid.date]: DAY } } as never),
    /options\.serializers cannot be used over HTTP/,
  );
  await using pool = new HttpPool(base, { endpoint: "http://127.0.0.1:1/sql" });
  const serializers = { [Oid.date]: DAY };
  for (
    const attempt of [
      pool.query("select $1::date", [new Date()], { serializers }),
      pool.query({ text: "select $1::date", values: [new Date()], serializers }),
      pool.batch(["select 1"], { serializers }),
    ]
  ) {
    const error = await errorOf(attempt);
    assert.ok(error instanceof TypeError, String(error));
    assert.match(String(error.message), why);
  }
});

// README's "Parameter serializers" snippet, as written, on a connection to the test server: plain
// JavaScript but for its import, whose names are handed to it here.
test("README's Parameter serializers snippet runs as written", T, async () => {
  const printed = await runReadmeSnippet("Parameter serializers", { connect, Oid }, {
    DATABASE_URL: await url(),
  });
  assert.deepEqual(printed, [
    [[{ tags: ["new", "sale"], days: ["2024-02-29", null] }]],
    [[{ n: "1.50" }]],
  ]);
});

test("ParamTypes keeps the 256 texts used last, and forgets a text whose types may have changed", () => {
  const types = new ParamTypes();
  for (let i = 0; i < 256; i++) types.ended(`select ${i}`, [i]);
  assert.deepEqual(types.get("select 0"), [0]); // used again: now the newest
  types.ended("select 256", [256]);
  assert.deepEqual(types.get("select 0"), [0]);
  assert.equal(types.get("select 1"), undefined, "the least recently used went");
  assert.deepEqual(types.get("select 2"), [2]);
  types.failed("select 2", new PostgresError({ severity: "ERROR", code: "23505", message: "dup" }));
  assert.deepEqual(types.get("select 2"), [2], "a unique violation says nothing of types");
  types.failed(
    "select 2",
    new PostgresError({ severity: "ERROR", code: "42804", message: "type" }),
  );
  assert.equal(types.get("select 2"), undefined);
});
