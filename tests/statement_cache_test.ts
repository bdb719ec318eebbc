// The prepared-statement cache (statementCache) against the real server: statements prepared
// once and reused, LRU eviction that closes them on the server, and the one unprepared retry
// when the server has lost a statement or its plan went stale, never inside a transaction.

import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, type Connection, PostgresError } from "../mod.ts";
import { getServer } from "./_server.ts";
import { transports } from "./_transports.ts";
import { countingMessages } from "./_helpers.ts";

const T = { timeout: 30_000 };

async function open(statementCache: number | undefined): Promise<Connection> {
  const server = await getServer();
  return await connect(server.url("scram", { sslmode: "disable" }), { statementCache });
}

/** A connection's statement names: `edgepool_`, a prefix of its own, and a number. */
const NAME = /^edgepool_[a-z0-9]+_(\d+)$/;

/**
 * The session's prepared statements, by name (`edgepool_<n>`: without the prefix). The query
 * that lists them starts with a comment, which keeps it on the simple protocol: unprepared, it
 * leaves the cache as it was.
 */
async function prepared(conn: Connection): Promise<Record<string, string>> {
  const { rows } = await conn.query<{ name: string; statement: string }>(
    "/* unprepared */ select name, statement from pg_prepared_statements order by name",
  );
  return Object.fromEntries(rows.map((r) => {
    const match = NAME.exec(r.name);
    assert.ok(match, r.name);
    return [`edgepool_${match[1]}`, r.statement];
  }));
}

test("statementCache prepares a parameterised query once and reuses it", T, async () => {
  await using conn = await open(10);
  for (let i = 0; i < 5; i++) {
    const { rows } = await conn.query<{ n: number }>("select $1::int + 1 as n", [i]);
    assert.deepEqual(rows, [{ n: i + 1 }]);
  }
  assert.deepEqual(await prepared(conn), { edgepool_1: "select $1::int + 1 as n" });
  // 50 at once, pipelined behind one Parse.
  const many = await Promise.all(
    Array.from(
      { length: 50 },
      (_, i) => conn.query<{ t: string }>("select $1::text as t", [`${i}`]),
    ),
  );
  assert.deepEqual(many.map((r) => r.rows[0].t), Array.from({ length: 50 }, (_, i) => `${i}`));
  assert.equal(Object.keys(await prepared(conn)).length, 2);
});

test("statementCache 0 uses only the unnamed statement", T, async () => {
  await using conn = await open(0);
  await conn.query("select $1::int as n", [1]);
  await conn.query("select $1::int as n", [2]);
  assert.deepEqual(await prepared(conn), {});
});

test("statementCache evicts the least recently used and closes it on the server", T, async () => {
  await using conn = await open(2);
  await conn.query("select $1::int as a", [1]); // edgepool_1
  await conn.query("select $1::int as b", [1]); // edgepool_2
  await conn.query("select $1::int as a", [1]); // a is now the most recent
  await conn.query("select $1::int as c", [1]); // evicts b
  await conn.query("select $1::int as a", [1]); // sends b's Close ahead
  assert.deepEqual(await prepared(conn), {
    edgepool_1: "select $1::int as a",
    edgepool_3: "select $1::int as c",
  });
});

test("statementCache sends a statement the server lost again, unprepared, once", T, async () => {
  await using conn = await open(10);
  await conn.query("select $1::int as n", [1]);
  await conn.query("deallocate all");
  assert.deepEqual((await conn.query("select $1::int as n", [2])).rows, [{ n: 2 }]);
  // The next use prepares it again under a new name.
  assert.deepEqual((await conn.query("select $1::int as n", [3])).rows, [{ n: 3 }]);
  assert.deepEqual(Object.values(await prepared(conn)), ["select $1::int as n"]);
});

test(
  "statementCache does not retry inside a transaction: the error is the caller's",
  T,
  async () => {
    await using conn = await open(10);
    await conn.query("select $1::int as n", [1]);
    await conn.query("begin");
    await conn.query("deallocate all");
    await assert.rejects(
      conn.query("select $1::int as n", [2]),
      (error: unknown) => error instanceof PostgresError && error.code === "26000",
    );
    assert.equal(conn.transactionStatus, "failed");
    await conn.query("rollback");
    assert.deepEqual((await conn.query("select $1::int as n", [4])).rows, [{ n: 4 }]);
  },
);

test("statementCache survives a table change that makes a cached plan stale", T, async () => {
  await using conn = await open(10);
  await conn.query("create temp table stale_plan (a int)");
  await conn.query("insert into stale_plan values (1)");
  const sql = "select * from stale_plan where a = $1";
  assert.deepEqual((await conn.query(sql, [1])).rows, [{ a: 1 }]);
  await conn.query("alter table stale_plan add column b text default 'x'");
  const after = await conn.query(sql, [1]);
  assert.deepEqual(after.rows, [{ a: 1, b: "x" }]);
  assert.deepEqual(after.fields.map((f) => f.name), ["a", "b"]);
});

test(
  "statementCache keeps no statement whose Parse failed, and keeps one whose run failed",
  T,
  async () => {
    await using conn = await open(10);
    await assert.rejects(
      conn.query("selec $1::int", [1]),
      (error: unknown) => error instanceof PostgresError && error.code === "42601",
    );
    await assert.rejects(
      conn.query("select 1 / $1::int as q", [0]),
      (error: unknown) => error instanceof PostgresError && error.code === "22012",
    );
    assert.deepEqual((await conn.query("select 1 / $1::int as q", [1])).rows, [{ q: 1 }]);
    assert.deepEqual(Object.values(await prepared(conn)), ["select 1 / $1::int as q"]);
  },
);

// ---------------------------------------------------------------------------------------------
// The default: on (100), cautious while the pooler is only guessed

test("the default cache prepares statements, with names no other connection uses", T, async () => {
  await using a = await open(undefined);
  await using b = await open(undefined);
  await a.query("select $1::int as n", [1]);
  await b.query("select $1::int as n", [1]);
  const names = async (conn: Connection) =>
    (await conn.query<{ name: string }>("select name from pg_prepared_statements")).rows
      .map((r) => r.name);
  const [nameA] = await names(a);
  const [nameB] = await names(b);
  assert.match(nameA, NAME);
  assert.match(nameB, NAME);
  assert.notEqual(nameA, nameB);
});

test("the default cache stays out of explicit transactions under a guessed pooler", T, async () => {
  await using conn = await open(undefined);
  await conn.query("begin");
  assert.deepEqual((await conn.query("select $1::int as n", [1])).rows, [{ n: 1 }]);
  assert.deepEqual(await prepared(conn), {});
  await conn.query("commit");
  await conn.query("select $1::int as n", [2]);
  assert.deepEqual(Object.values(await prepared(conn)), ["select $1::int as n"]);
  // Given explicitly (or with a pooler given), the cache works inside transactions too.
  await using given = await open(10);
  await given.query("begin");
  await given.query("select $1::int as n", [1]);
  assert.deepEqual(Object.values(await prepared(given)), ["select $1::int as n"]);
  await given.query("commit");
});

test(
  "the default cache turns itself off at the first statement the server does not have",
  T,
  async () => {
    await using conn = await open(undefined);
    await conn.query("select $1::int as n", [1]);
    // What a transaction pooler looks like: the next session does not have the statement.
    await conn.query("deallocate all");
    assert.deepEqual((await conn.query("select $1::int as n", [2])).rows, [{ n: 2 }]);
    assert.deepEqual((await conn.query("select $1::int as n", [3])).rows, [{ n: 3 }]);
    assert.deepEqual((await conn.query("select $1::text as t", ["x"])).rows, [{ t: "x" }]);
    assert.deepEqual(await prepared(conn), {});
  },
);

test(
  "statementCache asks the server to describe a statement's result once, not each run",
  T,
  async () => {
    const server = await getServer();
    const transport = countingMessages(transports[0], 0x44); // Describe
    await using conn = await connect(server.url("scram", { sslmode: "disable" }), {
      transport,
      statementCache: 10,
    });
    const mood = `mood_${Date.now()}`;
    await conn.query(`create type ${mood} as enum ('sad', 'happy')`);
    try {
      const sql = `select $1::int as n, 'x'::text as t, array['happy']::${mood}[] as m`;
      const first = await conn.query(sql, [1]);
      // The first run was described (and the enum's array type looked up); from here, none.
      transport.count = 0;
      for (let i = 2; i <= 5; i++) {
        const again = await conn.query(sql, [i]);
        assert.deepEqual(again.rows, [{ n: i, t: "x", m: ["happy"] }]);
        // The same columns; the int4 one comes in binary now (see binary_results_test.ts).
        assert.deepEqual(
          again.fields,
          first.fields.map((f) => f.name === "n" ? { ...f, format: "binary" } : f),
        );
      }
      // Rows as arrays, and pg's per-query parsers, from the same known columns.
      const arrays = await conn.query({ text: sql, values: [6], rowMode: "array" });
      assert.deepEqual(arrays.rows, [[6, "x", ["happy"]]]);
      const own = await conn.query({
        text: sql,
        values: [7],
        types: { getTypeParser: () => (text: string) => `<${text}>` },
      });
      assert.deepEqual(own.rows, [{ n: "<7>", t: "<x>", m: "<{happy}>" }]);
      assert.equal(transport.count, 0, "only the first run asked for the columns");
      // A statement with no result (NoData) too.
      await conn.query("create temp table nodata (n int)");
      for (let i = 0; i < 3; i++) {
        const r = await conn.query("insert into nodata values ($1)", [i]);
        assert.equal(r.rowCount, 1);
        assert.deepEqual(r.fields, []);
      }
      assert.equal(transport.count, 1);
    } finally {
      await conn.query(`drop type ${mood}`);
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Statements without parameters

test("statementCache prepares one plannable statement without parameters, once", T, async () => {
  const server = await getServer();
  const queries = countingMessages(transports[0], 0x51); // Query: the simple protocol
  await using conn = await connect(server.url("scram", { sslmode: "disable" }), {
    transport: queries,
    statementCache: 10,
  });
  for (let i = 0; i < 3; i++) {
    assert.deepEqual((await conn.query("select 42 as n")).rows, [{ n: 42 }]);
    assert.deepEqual((await conn.query("select 'a' as s;")).rows, [{ s: "a" }]);
  }
  const values = "values (1), (2)  ;\n";
  assert.deepEqual((await conn.query(values, undefined, { rowMode: "array" })).rows, [[1], [2]]);
  assert.equal(queries.count, 0);
  assert.deepEqual(Object.values(await prepared(conn)), [
    "select 42 as n",
    "select 'a' as s;",
    values,
  ]);
  // The query listing them starts with a comment: simple, like every string below.
  assert.equal(queries.count, 1);
});

test(
  "statementCache leaves several statements, and all but plannable ones, unprepared",
  T,
  async () => {
    const server = await getServer();
    const queries = countingMessages(transports[0], 0x51);
    await using conn = await connect(server.url("scram", { sslmode: "disable" }), {
      transport: queries,
      statementCache: 10,
    });
    // Several statements in one string: only the simple protocol takes them.
    const [a, b] = (await conn.query("select 1 as a; select 2 as b")).results!;
    assert.deepEqual([a.rows, b.rows], [[{ a: 1 }], [{ b: 2 }]]);
    // A `;` inside a literal is taken for a second statement: unprepared, still right.
    assert.deepEqual((await conn.query("select ';' as s; -- end")).rows, [{ s: ";" }]);
    await conn.query("set application_name = 'unprepared'");
    await conn.query("begin");
    await conn.query("create temp table unprepared (n int) on commit drop");
    await conn.query("commit");
    await conn.query("  -- a comment first\nselect 1");
    // A placeholder without parameters: the simple protocol's error, which names it.
    await assert.rejects(
      conn.query("select $1::int as n"),
      (error: unknown) =>
        error instanceof PostgresError && error.code === "42P02" && /\$1/.test(error.message),
    );
    assert.equal(queries.count, 8);
    assert.deepEqual(await prepared(conn), {});
  },
);

test(
  "statementCache re-runs a prepared statement without parameters whose table changed",
  T,
  async () => {
    await using conn = await open(10);
    await conn.query("create temp table stale_plain (a int)");
    await conn.query("insert into stale_plain values (1)");
    assert.deepEqual((await conn.query("select * from stale_plain")).rows, [{ a: 1 }]);
    await conn.query("alter table stale_plain add column b text default 'x'");
    const after = await conn.query("select * from stale_plain");
    assert.deepEqual(after.rows, [{ a: 1, b: "x" }]);
    assert.deepEqual(after.fields.map((f) => f.name), ["a", "b"]);
    // Prepared again (the stale one was dropped); inside a transaction a stale statement's
    // error is the caller's (no retry there).
    assert.deepEqual((await conn.query("select * from stale_plain")).rows, [{ a: 1, b: "x" }]);
    await conn.query("alter table stale_plain drop column b");
    await conn.query("begin");
    await assert.rejects(
      conn.query("select * from stale_plain"),
      (error: unknown) => error instanceof PostgresError && error.code === "0A000",
    );
    await conn.query("rollback");
    assert.deepEqual((await conn.query("select * from stale_plain")).rows, [{ a: 1 }]);
  },
);

test(
  "the default cache leaves statements without parameters in explicit transactions unprepared under a guessed pooler",
  T,
  async () => {
    await using conn = await open(undefined);
    await conn.query("begin");
    assert.deepEqual((await conn.query("select 7 as n")).rows, [{ n: 7 }]);
    assert.deepEqual(await prepared(conn), {});
    await conn.query("commit");
    assert.deepEqual((await conn.query("select 7 as n")).rows, [{ n: 7 }]);
    assert.deepEqual(Object.values(await prepared(conn)), ["select 7 as n"]);
  },
);
