// Pool.batch() against the real PostgreSQL 15 of tests/_server.ts, over TCP: a batch commits
// as a whole or not at all, rejects with the failing statement's own error, honours the
// transaction options, leaves its connection idle, and costs one round trip (one write).

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Connection, PostgresError, QueuePool, type Transport } from "../mod.ts";
import { getServer } from "./_server.ts";
import { transports } from "./_transports.ts";
import { errorOf, tapWrites, uniqueName, within } from "./_helpers.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

test("test server starts", { timeout: 120_000 }, async () => {
  const s = await getServer();
  assert.ok(s.port > 0);
});

/** A transport that counts the writes of every stream it opens. */
function counting(base: Transport): Transport & { writes: number } {
  const wrapper: Transport & { writes: number } = Object.assign(
    tapWrites(base, "count", () => wrapper.writes++),
    { writes: 0 },
  );
  return wrapper;
}

/** A QueuePool of one connection over `transport`, and a table of its own. */
async function setup(
  label: string,
  transport: Transport = transports[0],
): Promise<{ pool: QueuePool<Connection>; table: string }> {
  const url = (await getServer()).url("scram", PLAIN);
  const pool = new QueuePool((signal) => connect(url, { signal, transport }), {
    poolSize: 1,
    maxOverflow: 0,
  });
  const table = uniqueName(`batch_${label}`);
  await pool.query(`create table ${table} (id int primary key, note text)`);
  return { pool, table };
}

async function teardown(pool: QueuePool<Connection>, table: string): Promise<void> {
  await pool.query(`drop table if exists ${table}`);
  await pool.close();
}

/** The pool's one connection is back, idle, outside any transaction. */
async function assertOneIdle(pool: QueuePool<Connection>): Promise<void> {
  const stats = pool.stats();
  assert.equal(stats.checkedOut, 0);
  assert.equal(stats.checkedIn, 1);
  await using conn = await pool.connect();
  assert.equal(conn.transactionStatus, "idle");
  assert.equal(conn.connection.pending, 0);
}

test("Pool.batch commits every statement and returns the results in order", T, async () => {
  const { pool, table } = await setup("commit");
  try {
    const results = await pool.batch([
      { sql: `insert into ${table} values ($1, $2)`, params: [1, "one"] },
      { sql: `insert into ${table} values ($1, $2), ($3, $4)`, params: [2, "two", 3, null] },
      `update ${table} set note = 'three' where id = 3`,
      { sql: `select id, note from ${table} where id >= $1 order by id`, params: [2] },
    ]);
    assert.deepEqual(
      results.map((r) => [r.command, r.rowCount]),
      [["INSERT", 1], ["INSERT", 2], ["UPDATE", 1], ["SELECT", 2]],
    );
    assert.deepEqual(results[3].rows, [{ id: 2, note: "two" }, { id: 3, note: "three" }]);
    assert.deepEqual(results[3].fields.map((f) => f.name), ["id", "note"]);
    const after = await pool.query(`select count(*)::int as n from ${table}`);
    assert.equal(after.rows[0].n, 3);
    await assertOneIdle(pool);
  } finally {
    await teardown(pool, table);
  }
});

test(
  "Pool.batch rolls back everything and rejects with the failing statement's error",
  T,
  async () => {
    const { pool, table } = await setup("rollback");
    let resets = 0;
    pool.on("reset", () => resets++);
    try {
      const error = await errorOf(pool.batch([
        { sql: `insert into ${table} values ($1, $2)`, params: [1, "kept?"] },
        { sql: `insert into ${table} values ($1, $2)`, params: [1, "duplicate"] },
        { sql: `insert into ${table} values ($1, $2)`, params: [2, "after"] },
        `select 1`,
      ]));
      assert.ok(error instanceof PostgresError, String(error));
      assert.equal(error.code, "23505"); // the duplicate, not the 25P02 of those after it
      assert.equal(error.constraint, `${table}_pkey`);
      assert.equal(error.table, table);
      const after = await pool.query(`select count(*)::int as n from ${table}`);
      assert.equal(after.rows[0].n, 0);
      await assertOneIdle(pool);
      assert.equal(resets, 0, "the batch ended its transaction itself; no reset was needed");
    } finally {
      await teardown(pool, table);
    }
  },
);

test("Pool.batch rejects with the COMMIT's error when a deferred constraint fails", T, async () => {
  const { pool, table } = await setup("deferred");
  try {
    await pool.query(
      `alter table ${table} add constraint ${table}_note unique (note) deferrable initially deferred`,
    );
    const error = await errorOf(pool.batch([
      `insert into ${table} values (1, 'same')`,
      `insert into ${table} values (2, 'same')`,
    ]));
    assert.ok(error instanceof PostgresError, String(error));
    assert.equal(error.code, "23505");
    assert.equal(error.constraint, `${table}_note`);
    assert.equal((await pool.query(`select * from ${table}`)).rowCount, 0);
    await assertOneIdle(pool);
  } finally {
    await teardown(pool, table);
  }
});

test("Pool.batch applies isolation, readOnly and deferrable", T, async () => {
  const { pool, table } = await setup("options");
  try {
    const shown = await pool.batch([
      "show transaction_isolation",
      "show transaction_read_only",
      "show transaction_deferrable",
    ], { isolation: "serializable", readOnly: true, deferrable: true });
    assert.deepEqual(shown.map((r) => Object.values(r.rows[0])[0]), ["serializable", "on", "on"]);
    const repeatable = await pool.batch(["show transaction_isolation"], {
      isolation: "repeatable read",
    });
    assert.equal(repeatable[0].rows[0].transaction_isolation, "repeatable read");
    const defaults = await pool.batch(["show transaction_isolation", "show transaction_read_only"]);
    assert.deepEqual(defaults.map((r) => Object.values(r.rows[0])[0]), ["read committed", "off"]);

    const error = await errorOf(
      pool.batch([`insert into ${table} values (1, 'no')`], { readOnly: true }),
    );
    assert.ok(error instanceof PostgresError);
    assert.equal(error.code, "25006"); // read_only_sql_transaction
    await assertOneIdle(pool);
  } finally {
    await teardown(pool, table);
  }
});

test("Pool.batch shapes rows as asked and takes an empty batch", T, async () => {
  const { pool, table } = await setup("shape");
  try {
    const [result] = await pool.batch([{
      sql: "select $1::int as a, $2::text as b",
      params: [7, "x"],
    }], {
      rowMode: "array",
    });
    assert.deepEqual(result.rows, [[7, "x"]]);
    const before = pool.stats().requestsNum;
    assert.deepEqual(await pool.batch([]), []);
    assert.equal(pool.stats().requestsNum, before, "an empty batch checks nothing out");
  } finally {
    await teardown(pool, table);
  }
});

test("Pool.batch rejects bad arguments with TypeError before checking out", T, async () => {
  const { pool, table } = await setup("arguments");
  try {
    const before = pool.stats().requestsNum;
    for (
      const bad of [
        () => pool.batch("select 1" as unknown as string[]),
        () => pool.batch([42 as unknown as string]),
        () => pool.batch([{ sql: "select 1", params: "x" as unknown as unknown[] }]),
        () => pool.batch(["select 1"], { isolation: "snapshot" as "serializable" }),
      ]
    ) {
      const error = await errorOf(bad());
      assert.ok(error instanceof TypeError, String(error));
    }
    assert.equal(pool.stats().requestsNum, before);
    // One statement per entry, as over HTTP: no `;`-separated scripts.
    const error = await errorOf(pool.batch(["select 1; select 2"]));
    assert.ok(error instanceof PostgresError);
    assert.equal(error.code, "42601");
    await assertOneIdle(pool);
  } finally {
    await teardown(pool, table);
  }
});

test("Pool.batch aborted by its signal rolls back and leaves the connection idle", T, async () => {
  const { pool, table } = await setup("abort");
  try {
    const controller = new AbortController();
    const pending = errorOf(pool.batch([
      `insert into ${table} values (1, 'before')`,
      "select pg_sleep(600)",
      `insert into ${table} values (2, 'after')`,
    ], { signal: controller.signal }));
    setTimeout(() => controller.abort(new Error("stop")), 200);
    const error = await pending;
    assert.ok(error instanceof Error && error.message === "stop", String(error));
    // Ten minutes: the next query on the pool's one connection gets its turn within the test
    // only if the sleep was cancelled.
    const after = await within(pool.query(`select * from ${table}`), 10_000, "the sleep cancelled");
    assert.equal(after.rowCount, 0);
    await assertOneIdle(pool);
  } finally {
    await teardown(pool, table);
  }
});

for (const base of transports) {
  test(
    `Pool.batch is one round trip: one write for BEGIN, statements, COMMIT (${base.name})`,
    T,
    async () => {
      const transport = counting(base);
      const { pool, table } = await setup("flight", transport);
      try {
        const statements = Array.from({ length: 20 }, (_, i) => ({
          sql: `insert into ${table} values ($1, $2)`,
          params: [i, `row ${i}`],
        }));
        transport.writes = 0;
        const results = await pool.batch(statements);
        assert.equal(results.length, 20);
        assert.equal(transport.writes, 1, "BEGIN, 20 statements and COMMIT left in one write");

        transport.writes = 0;
        await errorOf(pool.batch([`insert into ${table} values (0, 'dup')`, "select 1"]));
        assert.equal(transport.writes, 1, "a failing batch needs no extra ROLLBACK round trip");

        // For contrast: the same statements awaited one by one take a write (a round trip) each.
        transport.writes = 0;
        await pool.transaction(async (conn) => {
          await conn.query(`delete from ${table} where id < $1`, [2]);
          await conn.query(`delete from ${table} where id < $1`, [4]);
        });
        assert.equal(transport.writes, 4);
        await assertOneIdle(pool);
      } finally {
        await teardown(pool, table);
      }
    },
  );
}

test(
  "Pool.batch sends nothing when a statement has a parameter that cannot be sent",
  T,
  async () => {
    const { pool, table } = await setup("refused");
    try {
      const error = await errorOf(pool.batch([
        { sql: `insert into ${table} values ($1, $2)`, params: [1, "one"] },
        { sql: `insert into ${table} values ($1, $2)`, params: [2, new Map()] },
      ]));
      assert.ok(error instanceof TypeError, String(error));
      assert.match((error as Error).message, /\$2/);
      // The statements beside it must not commit while the batch reports failure.
      const after = await pool.query(`select count(*)::int as n from ${table}`);
      assert.equal(after.rows[0].n, 0);
      await assertOneIdle(pool);
    } finally {
      await teardown(pool, table);
    }
  },
);
