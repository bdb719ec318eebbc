// The `sql` template tag (src/sql.ts): its text and values (nesting, renumbering, unsafe, id
// quoting and refusals), then templates run against the real PostgreSQL 15 of tests/_server.ts
// through `.sql` and `query()`/`batch()` on a pool, a checked-out connection, a connection of
// one's own, and an HttpPool behind the gateway; a value that looks like SQL stays a value;
// README's "SQL templates" snippet as written.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  PostgresError,
  QueuePool,
  sql,
  type SqlTemplate,
} from "../mod.ts";
import { HttpPool } from "../transports/http.ts";
import { startGateway } from "../gateway/mod.ts";
import { getServer } from "./_server.ts";
import { errorOf, uniqueName } from "./_helpers.ts";
import { runReadmeSnippet } from "./_readme.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };
const HOSTILE = "'; drop table x; --";

async function url(): Promise<string> {
  return (await getServer()).url("scram", PLAIN);
}

function pool(): Promise<QueuePool<Connection>> {
  return url().then((u) => new QueuePool((signal) => connect(u, { signal }), { poolSize: 2 }));
}

function assertTypeError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, message);
    return true;
  });
}

// --- the tag alone -------------------------------------------------------------------------

test("sql makes $n text and keeps each value as a parameter, an array as one", () => {
  const id = 7;
  const t = sql`select * from t where id = ${id} and tags && ${["a", "b"]} and n = ${null}`;
  assert.equal(t.text, "select * from t where id = $1 and tags && $2 and n = $3");
  assert.deepEqual(t.values, [7, ["a", "b"], null]);
  const none = sql`select 1`;
  assert.equal(none.text, "select 1");
  assert.deepEqual(none.values, []);
  // The same value twice is two parameters: the text keeps the order it was written in.
  assert.deepEqual(sql`${1} ${1}`.values, [1, 1]);
  assert.ok(Object.isFrozen(t) && Object.isFrozen(t.values));
});

test("sql splices nested fragments and renumbers their values", () => {
  const inner = sql`b = ${2} and c = ${3}`;
  const middle = sql`(${inner}) or d = ${4}`;
  const t = sql`select ${1} where ${middle} and e = ${5} and ${sql`true`} and (${inner})`;
  assert.equal(
    t.text,
    "select $1 where (b = $2 and c = $3) or d = $4 and e = $5 and true and (b = $6 and c = $7)",
  );
  assert.deepEqual(t.values, [1, 2, 3, 4, 5, 2, 3]);
  // A fragment at the edges, and one alone.
  assert.equal(sql`${inner}`.text, "b = $1 and c = $2");
  assert.equal(sql`${sql`x = ${9}`}${sql`, y = ${8}`}`.text, "x = $1, y = $2");
  // The fragment itself is unchanged by being nested.
  assert.equal(inner.text, "b = $1 and c = $2");
});

test("sql.unsafe splices raw text, when interpolated; refuses a non-string", () => {
  const t = sql`select a from t ${sql.unsafe("order by a desc")} limit ${10}`;
  assert.equal(t.text, "select a from t order by a desc limit $1");
  assert.deepEqual(t.values, [10]);
  assert.equal(sql.unsafe("").text, "");
  assertTypeError(() => sql.unsafe(42 as unknown as string), /sql\.unsafe\(\) takes a string/);
  assertTypeError(() => sql.unsafe(null as unknown as string), /not null/);
});

test("sql.id quotes identifiers: inner quotes doubled, several names joined by dots", () => {
  assert.equal(sql.id("users").text, '"users"');
  assert.equal(sql.id('we"ird').text, '"we""ird"');
  assert.equal(sql.id("app", "users").text, '"app"."users"');
  assert.equal(sql.id("a.b").text, '"a.b"');
  assert.equal(sql.id("Mixed Case").text, '"Mixed Case"');
  assert.deepEqual(sql.id("x").values, []);
  const t = sql`select ${sql.id("col")} from ${sql.id("s", "t")} where ${sql.id("col")} = ${1}`;
  assert.equal(t.text, 'select "col" from "s"."t" where "col" = $1');
});

test("sql.id refuses no name, an empty name, a NUL and a non-string with TypeError", () => {
  assertTypeError(() => sql.id(), /at least one name/);
  assertTypeError(() => sql.id(""), /cannot be empty/);
  assertTypeError(() => sql.id("a", ""), /cannot be empty/);
  assertTypeError(() => sql.id("a\0b"), /NUL/);
  assertTypeError(() => sql.id(1 as unknown as string), /takes strings, not number/);
  assertTypeError(() => sql.id(null as unknown as string), /not null/);
});

test("sql takes a plain { text, values } object as a value, only a template as a fragment", () => {
  const lookalike = { text: "drop table x", values: [1] };
  const t = sql`select ${lookalike}::jsonb`;
  assert.equal(t.text, "select $1::jsonb");
  assert.deepEqual(t.values, [lookalike]);
  // A template's own shape copied into a plain object is a value too.
  const copy = { ...sql`select ${1}` };
  assert.deepEqual(sql`${copy}`.values, [copy]);
});

test("sql refuses to be called as a plain function, when not a tag", () => {
  const tag = sql as unknown as (...args: unknown[]) => SqlTemplate;
  assertTypeError(() => tag("select 1"), /template tag/);
  assertTypeError(() => tag(["select ", ""], 1), /template tag/);
});

// --- against the server --------------------------------------------------------------------

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("pool.sql, conn.sql and connection.sql run templates with parameters", T, async () => {
  await using p = await pool();
  const n = 41;
  assert.deepEqual((await p.sql`select ${n}::int + 1 as n`).rows, [{ n: 42 }]);
  const typed = await p.sql<{ a: number[] }>`select ${[1, 2, 3]}::int[] as a`;
  assert.deepEqual(typed.rows[0].a, [1, 2, 3]);
  {
    await using conn = await p.connect();
    const where = sql`x = any(${[2, 3]}::int[])`;
    const result = await conn.sql`select x from generate_series(1, ${4}) x where ${where}`;
    assert.deepEqual(result.rows, [{ x: 2 }, { x: 3 }]);
    assert.equal(result.command, "SELECT");
  }
  await using own = await connect(await url());
  const result = await own.sql`select ${"a"}::text || ${sql`${"b"}::text`} as s`;
  assert.deepEqual(result.rows, [{ s: "ab" }]);
  // A misuse rejects, as a bad query does, instead of throwing.
  const bad = (p.sql as unknown as (s: string) => Promise<unknown>)("select 1");
  assert.ok((await errorOf(bad)) instanceof TypeError);
});

test("query() takes a template on a pool, a checkout and a connection", T, async () => {
  await using p = await pool();
  const t = sql`select ${1}::int as a, ${"x"}::text as b`;
  assert.deepEqual((await p.query(t)).rows, [{ a: 1, b: "x" }]);
  {
    await using conn = await p.connect();
    assert.deepEqual((await conn.query(t)).rows, [{ a: 1, b: "x" }]);
  }
  await using own = await connect(await url());
  assert.deepEqual((await own.query(t)).rows, [{ a: 1, b: "x" }]);
  // Values beside it take the place of its own, as with pg's config object.
  assert.deepEqual((await own.query(t, [2, "y"])).rows, [{ a: 2, b: "y" }]);
});

test("A template with no values runs on the extended protocol, one statement", T, async () => {
  await using p = await pool();
  assert.deepEqual((await p.sql`select 1 as one`).rows, [{ one: 1 }]);
  // Two statements in one text: the simple protocol would run both; the extended refuses.
  for (const run of [() => p.sql`select 1; select 2`, () => p.query(sql`select 1; select 2`)]) {
    const error = await errorOf(run());
    assert.ok(error instanceof PostgresError, String(error));
    assert.equal(error.code, "42601");
  }
});

test("batch() takes templates beside strings and { sql, params }", T, async () => {
  await using p = await pool();
  const table = uniqueName("sql_batch");
  await p.query(`create table ${table} (id int, name text)`);
  try {
    const results = await p.batch([
      sql`insert into ${sql.id(table)} values (${1}, ${"a"})`,
      { sql: `insert into ${table} values ($1, $2)`, params: [2, "b"] },
      sql`select name from ${sql.id(table)} where id = any(${[1, 2]}::int[]) order by id`,
    ]);
    assert.deepEqual(results.map((r) => r.command), ["INSERT", "INSERT", "SELECT"]);
    assert.deepEqual(results[2].rows, [{ name: "a" }, { name: "b" }]);
    // A failing template rolls the batch back.
    const error = await errorOf(p.batch([
      sql`insert into ${sql.id(table)} values (${3}, ${"c"})`,
      sql`select ${"not a number"}::int`,
    ]));
    assert.ok(error instanceof PostgresError, String(error));
    assert.deepEqual((await p.sql`select count(*)::int as n from ${sql.id(table)}`).rows, [
      { n: 2 },
    ]);
  } finally {
    await p.query(`drop table ${table}`);
  }
});

test("A value holding SQL is sent as a parameter: the table survives", T, async () => {
  await using p = await pool();
  const table = uniqueName("sql_inject");
  await p.query(`create table ${table} (name text)`);
  try {
    // Spliced into the text, each would end the statement and drop this very table.
    const hostile = [`'; drop table ${table}; --`, `x'); drop table ${table}; --`];
    await p.sql`insert into ${sql.id(table)} values (${hostile[0]})`;
    await p.query(sql`insert into ${sql.id(table)} values (${hostile[1]})`);
    await p.batch([sql`insert into ${sql.id(table)} values (${HOSTILE})`]);
    const found = await p.sql`select name from ${sql.id(table)} where name = ${hostile[0]}`;
    assert.deepEqual(found.rows, [{ name: hostile[0] }]);
    const { rows } = await p.sql`select name from ${sql.id(table)} order by name`;
    assert.deepEqual(rows.map((r) => r.name), [...hostile, HOSTILE].sort());
    // An identifier holding a quote stays one identifier.
    const error = await errorOf(p.sql`select * from ${sql.id(`${table}"; drop table x; --`)}`);
    assert.ok(error instanceof PostgresError, String(error));
    assert.equal(error.code, "42P01");
    assert.equal(
      (await p.sql`select to_regclass(${table}) is not null as kept`).rows[0].kept,
      true,
    );
  } finally {
    await p.query(`drop table ${table}`);
  }
});

test("A plain object value is sent as JSON, a fragment as text", T, async () => {
  await using p = await pool();
  const lookalike = { text: "select 1", values: [] };
  const { rows } = await p.sql`select ${lookalike}::jsonb as j, ${sql`${2}::int`} as f`;
  assert.deepEqual(rows, [{ j: lookalike, f: 2 }]);
});

test(
  "HttpPool.sql, query(template), batch([template]) and checkout.sql run through the gateway",
  T,
  async () => {
    const server = await getServer();
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `${server.host}:${server.port}`,
    });
    try {
      await using http = new HttpPool(await url(), { endpoint: new URL("/sql", gateway.url).href });
      assert.deepEqual((await http.sql`select ${41}::int + 1 as n`).rows, [{ n: 42 }]);
      assert.deepEqual((await http.sql`select ${HOSTILE}::text as s`).rows, [{ s: HOSTILE }]);
      assert.deepEqual((await http.query(sql`select ${[1, 2]}::int[] as a`)).rows, [{ a: [1, 2] }]);
      const [a, b] = await http.batch([sql`select ${1}::int as x`, sql`select ${"y"}::text as y`]);
      assert.deepEqual([a.rows, b.rows], [[{ x: 1 }], [{ y: "y" }]]);
      {
        await using conn = await http.connect();
        assert.deepEqual((await conn.sql`select ${sql`${3}::int`} as z`).rows, [{ z: 3 }]);
      }
    } finally {
      await gateway.close();
    }
  },
);

// README's "SQL templates" snippet, as written, on a connection to the test server: it is
// plain JavaScript but for its import, whose names are handed to it here.
test("README's SQL templates snippet runs as written", T, async () => {
  const printed = await runReadmeSnippet("SQL templates", { connect, sql }, {
    DATABASE_URL: await url(),
  });
  assert.deepEqual(printed, [
    [[{ name: "Rex'); drop table pets; --" }]],
    ["update pets set name = $1 where id = $2", ["Max", 1]],
  ]);
});
