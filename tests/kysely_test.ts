// Kysely (`kysely`, a pinned devDependency) on edgepool's pool with no glue, against the real
// PostgreSQL 15 of tests/_server.ts: `new PostgresDialect({ pool: createPool(url) })` exactly as
// a user writes it (this file is type-checked by `deno task check`, so it also proves the pool
// fits Kysely's `PostgresPool` type with no cast), then issue 13's ORM workload through the
// query builder, transactions, `stream()` through edgepool's `Cursor` (issue 14), and
// `db.destroy()`; and over the HTTP transport through edgepool's gateway, where plain queries
// run and a transaction fails clearly. README.md's "With Kysely" snippet runs as written, on
// Deno and Node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import {
  type ColumnType,
  type Generated,
  Kysely,
  type PostgresCursor,
  PostgresDialect,
  sql,
} from "kysely";
import {
  connect,
  type Connection,
  createPool,
  Cursor,
  type Pool,
  PoolError,
  type QueryResult,
  QueuePool,
} from "../mod.ts";
import { HttpPool, httpTransport } from "../transports/http.ts";
import { startGateway } from "../gateway/mod.ts";
import { runtimeModules } from "../build/runtimes.ts";
import { getServer } from "./_server.ts";
import { readmeBlocks } from "./_readme.ts";
import { eventually, uniqueName } from "./_helpers.ts";

const T = { timeout: 60_000 };

async function url(): Promise<string> {
  return (await getServer()).url("scram", { sslmode: "disable" });
}

/** The workload's table, as Kysely sees it. */
interface ItemTable {
  id: Generated<number>;
  name: string;
  doc: unknown;
  at: ColumnType<Date, Date | string, Date | string> | null;
  // int8 and numeric come back as strings (edgepool's default, as pg's), exact.
  big: ColumnType<string, string | bigint | number, string | bigint | number> | null;
  price: ColumnType<string, string | number, string | number> | null;
  blob: Uint8Array | null;
  tags: string[] | null;
}

interface Database {
  [table: string]: ItemTable;
}

/**
 * Runs `fn` with a Kysely over a new edgepool pool and a new table of the workload's columns,
 * made with Kysely's schema builder; the table is dropped and the pool ended after, also on
 * failure.
 */
async function withKysely(
  fn: (db: Kysely<Database>, table: string, pool: Pool<Connection>) => Promise<void>,
  poolSize = 5,
): Promise<void> {
  const pool = createPool(await url(), { poolSize, maxOverflow: 0 });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const table = uniqueName("kysely");
  try {
    await db.schema.createTable(table)
      .addColumn("id", "serial", (c) => c.primaryKey())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("doc", "jsonb")
      .addColumn("at", "timestamptz")
      .addColumn("big", "int8")
      .addColumn("price", "numeric(30, 10)")
      .addColumn("blob", "bytea")
      .addColumn("tags", sql`text[]`)
      .execute();
    await fn(db, table, pool);
  } finally {
    try {
      if (!pool.closed) await db.schema.dropTable(table).ifExists().execute();
    } finally {
      await db.destroy();
    }
  }
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

test("PostgresDialect takes createPool's pool as is, and destroy() ends it", T, async () => {
  const pool = createPool(await url());
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const { rows } = await sql<{ n: number }>`select ${41}::int + 1 as n`.execute(db);
  assert.deepEqual(rows, [{ n: 42 }]);
  await db.destroy();
  assert.equal(pool.closed, true);
  // destroy() is pool.end(): the pool refuses further work.
  await assert.rejects(pool.query("select 1"), { name: "PoolError", code: "POOL_CLOSED" });
});

test("Kysely inserts with returning and selects with parameters", T, async () => {
  await withKysely(async (db, table) => {
    const inserted = await db.insertInto(table)
      .values([{ name: "a" }, { name: "b" }, { name: "c" }])
      .returning(["id", "name"])
      .execute();
    assert.deepEqual(inserted.map((r) => r.name), ["a", "b", "c"]);
    assert.ok(inserted.every((r) => typeof r.id === "number"));

    const picked = await db.selectFrom(table)
      .select(["id", "name"])
      .where("name", "in", ["a", "c"])
      .where("id", ">=", inserted[0].id)
      .orderBy("id")
      .execute();
    assert.deepEqual(picked, [inserted[0], inserted[2]]);

    const updated = await db.updateTable(table).set({ name: "B" }).where("name", "=", "b")
      .executeTakeFirstOrThrow();
    assert.equal(updated.numUpdatedRows, 1n);
    const deleted = await db.deleteFrom(table).where("name", "=", "c").executeTakeFirstOrThrow();
    assert.equal(deleted.numDeletedRows, 1n);
    const { count } = await db.selectFrom(table)
      .select((eb) => eb.fn.countAll<string>().as("count"))
      .executeTakeFirstOrThrow();
    assert.equal(count, "2");
  });
});

test("Kysely round-trips jsonb, timestamptz, int8, numeric, bytea and arrays", T, async () => {
  await withKysely(async (db, table) => {
    const doc = { a: [1, "x", null], nested: { ok: true, s: 'quote\' "dq" \u00e9' } };
    const at = new Date("2024-02-29T23:59:59.123Z");
    const blob = new Uint8Array([0, 1, 127, 128, 255]);
    const tags = ["a,b", 'q"uote', "back\\slash", "", "NULL"];
    const row = await db.insertInto(table)
      .values({
        name: "types",
        // Kysely passes values through; an object is sent as JSON text.
        doc: JSON.stringify(doc),
        at,
        big: "9223372036854775807",
        price: "12345678901234567890.0000000001",
        blob,
        tags,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    const read = await db.selectFrom(table).selectAll().where("id", "=", row.id)
      .executeTakeFirstOrThrow();
    for (const got of [row, read]) {
      assert.deepEqual(got.doc, doc);
      assert.ok(got.at instanceof Date);
      assert.equal(got.at.toISOString(), at.toISOString());
      assert.equal(got.big, "9223372036854775807");
      assert.equal(got.price, "12345678901234567890.0000000001");
      assert.deepEqual(got.blob, blob);
      assert.deepEqual(got.tags, tags);
    }
    // Parameters of each type compare equal on the server.
    const same = await db.selectFrom(table).select("id")
      .where("big", "=", "9223372036854775807")
      .where("at", "=", at)
      .where("blob", "=", blob)
      // An array operand is a list in Kysely (`in`): one array value goes through sql``.
      .where("tags", "=", sql<string[]>`${tags}`)
      .where(sql<boolean>`doc @> ${JSON.stringify({ nested: { ok: true } })}::jsonb`)
      .execute();
    assert.deepEqual(same, [{ id: row.id }]);
  });
});

test("Kysely's transaction runs on one connection; a throw rolls it back", T, async () => {
  await withKysely(async (db, table) => {
    const boom = new Error("boom");
    let seen = -1;
    await assert.rejects(
      db.transaction().execute(async (trx) => {
        await trx.insertInto(table).values({ name: "rolled back" }).execute();
        const pids = new Set<number>();
        for (let i = 0; i < 3; i++) {
          const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
          pids.add(rows[0].pid);
        }
        assert.equal(pids.size, 1);
        // The insert is visible inside the transaction...
        seen = (await trx.selectFrom(table).selectAll().execute()).length;
        throw boom;
      }),
      (error) => error === boom,
    );
    assert.equal(seen, 1);
    // ...and nothing of it outside, after the throw.
    assert.deepEqual(await db.selectFrom(table).selectAll().execute(), []);

    const committed = await db.transaction().setIsolationLevel("serializable").execute(
      async (trx) => {
        const { rows } = await sql<{ level: string }>`show transaction_isolation`.execute(trx);
        assert.deepEqual(rows, [{ transaction_isolation: "serializable" }]);
        return await trx.insertInto(table).values({ name: "kept" }).returning("name")
          .executeTakeFirstOrThrow();
      },
    );
    assert.deepEqual(committed, { name: "kept" });
    assert.deepEqual(await db.selectFrom(table).select("name").execute(), [{ name: "kept" }]);
  });
});

test("Kysely runs 50 concurrent queries on a pool of 5", T, async () => {
  await withKysely(async (db, table, pool) => {
    const results = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) =>
          db.insertInto(table).values({ name: `n${i}`, big: i }).returning(["name", "big"])
            .executeTakeFirstOrThrow(),
      ),
    );
    assert.deepEqual(
      results,
      Array.from({ length: 50 }, (_, i) => ({ name: `n${i}`, big: String(i) })),
    );
    const sums = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) =>
          db.selectFrom(table).select((eb) => eb.fn.sum<string>("big").as("s"))
            .where("big", "<=", String(i)).executeTakeFirstOrThrow(),
      ),
    );
    assert.deepEqual(
      sums.map((r) => Number(r.s)),
      Array.from({ length: 50 }, (_, i) => i * (i + 1) / 2),
    );
    // Never more than the pool's size, and every checkout went back (Kysely does not wait for
    // release(), so the last may still be on its way).
    assert.ok(pool.stats().poolSize <= 5, pool.status());
    await eventually("every checkout back", () => pool.stats().checkedOut === 0);
  });
});

test("Kysely's stream() reads through edgepool's Cursor, and releases", T, async () => {
  const pool = createPool(await url(), { poolSize: 1, maxOverflow: 0 });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool, cursor: Cursor }) });
  try {
    const numbers: number[] = [];
    const stream = db.selectFrom(sql<{ n: number }>`generate_series(1, 250)`.as("g"))
      .select(sql<number>`g`.as("n"))
      .stream(100);
    for await (const row of stream) numbers.push(row.n);
    assert.deepEqual(numbers, Array.from({ length: 250 }, (_, i) => i + 1));
    // Breaking out closes the cursor and returns the connection.
    for await (
      const _ of db.selectNoFrom(sql<number>`generate_series(1, 1000)`.as("n")).stream(10)
    ) {
      break;
    }
    await eventually("the checkout back", () => pool.stats().checkedOut === 0);
    // The pool's one connection is idle, outside any transaction, and runs the next query.
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    assert.deepEqual(rows, [{ one: 1 }]);
    assert.equal(pool.stats().connectionsNum, 1);
  } finally {
    await db.destroy();
  }
});

test(
  "Kysely's stream() with pg-cursor's cursor object says to pass edgepool's Cursor",
  T,
  async () => {
    const pool = createPool(await url(), { poolSize: 1, maxOverflow: 0 });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool, cursor: TestCursor }) });
    try {
      const stream = db.selectNoFrom(sql<number>`1`.as("one")).stream(10);
      await assert.rejects(
        (async () => {
          for await (const _ of stream) assert.fail("a row came through a foreign cursor");
        })(),
        (error) => {
          assert.ok(error instanceof TypeError, String(error));
          assert.match(error.message, /pass edgepool's Cursor/);
          return true;
        },
      );
      await eventually("the checkout back", () => pool.stats().checkedOut === 0);
    } finally {
      await db.destroy();
    }
  },
);

/** A cursor as pg-cursor's (not installed here): what Kysely's `stream()` hands to `query()`. */
class TestCursor<T> implements PostgresCursor<T> {
  constructor(readonly text: string, readonly values: unknown[]) {}
  read(_rows: number): Promise<T[]> {
    return Promise.reject(new Error("edgepool must not read the cursor itself"));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

test("A checkout's query result fits Kysely's PostgresQueryResult", T, async () => {
  // What Kysely reads of a result: command (to tell COMMIT and ROLLBACK apart), rowCount, rows.
  await using pool = createPool(await url(), { poolSize: 1 });
  await using conn = await pool.connect();
  const result: QueryResult = await conn.query("select 1 as one");
  assert.equal(result.command, "SELECT");
  assert.equal(result.rowCount, 1);
  await conn.query("begin");
  await assert.rejects(conn.query("select 1/0"), { name: "PostgresError" });
  // A commit of a failed transaction is answered ROLLBACK: Kysely's AbortedTransactionError.
  assert.equal((await conn.query("commit")).command, "ROLLBACK");
});

test(
  "Kysely over HTTP runs plain queries; a transaction fails clearly and runs nothing",
  T,
  async () => {
    const server = await getServer();
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `${server.host}:${server.port}`,
    });
    const tcp = new QueuePool(async () => connect(await url()), {
      poolSize: 1,
    });
    const table = uniqueName("kysely_http");
    try {
      const pool = createPool(await url(), {
        transport: httpTransport({ endpoint: new URL("/sql", gateway.url).href }),
      });
      assert.ok(pool instanceof HttpPool);
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
      try {
        await db.schema.createTable(table)
          .addColumn("id", "serial", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull())
          .addColumn("doc", "jsonb")
          .addColumn("at", "timestamptz")
          .addColumn("big", "int8")
          .addColumn("price", "numeric(30, 10)")
          .addColumn("blob", "bytea")
          .addColumn("tags", sql`text[]`)
          .execute();
        const at = new Date("2024-02-29T23:59:59.123Z");
        const blob = new Uint8Array([0, 255]);
        const row = await db.insertInto(table)
          .values({
            name: "over http",
            doc: JSON.stringify({ a: 1 }),
            at,
            big: "9223372036854775807",
            price: "0.0000000001",
            blob,
            tags: ["x", "y"],
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        assert.deepEqual(
          { ...row, id: 0 },
          {
            id: 0,
            name: "over http",
            doc: { a: 1 },
            at,
            big: "9223372036854775807",
            price: "0.0000000001",
            blob,
            tags: ["x", "y"],
          },
        );
        const found = await db.selectFrom(table).select("name").where("id", "=", row.id).execute();
        assert.deepEqual(found, [{ name: "over http" }]);
        const many = await Promise.all(
          Array.from(
            { length: 50 },
            (_, i) => sql<{ n: number }>`select ${i}::int * 2 as n`.execute(db),
          ),
        );
        assert.deepEqual(many.map((r) => r.rows[0].n), Array.from({ length: 50 }, (_, i) => i * 2));

        // BEGIN is refused before it is sent: the callback never runs, so none of its
        // statements can run outside the transaction it thinks it is in.
        let ran = false;
        const error = await db.transaction().execute(async (trx) => {
          ran = true;
          await trx.insertInto(table).values({ name: "outside a transaction" }).execute();
          throw new Error("rolled back?");
        }).then(() => undefined, (e) => e);
        assert.ok(error instanceof PoolError, String(error));
        assert.equal(error.code, "UNSUPPORTED");
        assert.match(error.message, /use pool\.batch\(\[\.\.\.\]\) for a transaction/);
        assert.equal(ran, false);
        const { rows } = await tcp.query(`select name from ${table} order by id`);
        assert.deepEqual(rows, [{ name: "over http" }]);
        assert.equal(pool.stats().requestsInFlight, 0);
      } finally {
        await tcp.query(`drop table if exists ${table}`);
        await db.destroy();
      }
      assert.equal(pool.closed, true);
    } finally {
      await tcp.close();
      await gateway.close();
    }
  },
);

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const isDeno = typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === "object";

/** Runs `command`; resolves with its stdout, or fails with its output if it exits non-zero. */
function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => out += chunk);
    child.stderr.on("data", (chunk) => out += chunk);
    child.on("error", reject);
    child.on(
      "close",
      (code) =>
        code === 0 ? resolve(out) : reject(new Error(`${command} exited with ${code}:\n${out}`)),
    );
  });
}

test(
  "README's With Kysely snippet runs as written on Deno and Node",
  {
    timeout: 120_000,
    skip: isDeno ? false : "run once, from the Deno pass, which runs the snippet on Deno and Node",
  },
  async () => {
    const dir = join(ROOT, ".tmp", "readme-kysely");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // The snippet's only change: the package name points at this checkout.
    const snippet = readmeBlocks("With Kysely").find((b) => b.lang === "ts")!.code;
    assert.match(snippet, /from "@edgepool\/edgepool";/);
    const source = join(dir, "snippet.ts");
    writeFileSync(
      source,
      snippet.replace('"@edgepool/edgepool"', '"../../mod.ts"'),
    );
    // Node runs it as the package's Node build would: bundled with the Node transport.
    const bundled = join(dir, "snippet.mjs");
    await esbuild.build({
      entryPoints: [source],
      outfile: bundled,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      logLevel: "warning",
      plugins: [runtimeModules("node")],
    });
    await esbuild.stop();
    const server = await getServer();
    await using tcp = new QueuePool(async () => connect(await url()), { poolSize: 1 });
    const runtimes: [string, string[]][] = [
      [join(ROOT, "node_modules", ".bin", "deno"), ["run", "-A", "--check", source]],
      ["node", [bundled]],
    ];
    for (const [command, args] of runtimes) {
      // Each run in a schema of its own: the snippet's table is its own, and dropped after.
      const schema = uniqueName("readme_kysely");
      await server.psql(`create schema ${schema} authorization scram`);
      try {
        const env = {
          // Percent-encoded by hand: URLSearchParams writes a space as "+", which libpq's URL
          // rules (and edgepool's) read as itself.
          DATABASE_URL: server.url("scram", { sslmode: "disable" }) +
            `&options=${encodeURIComponent(`-c search_path=${schema}`)}`,
        };
        const out = await run(command, args, env);
        assert.match(out, /Ada Lovelace/, out);
        const { rows } = await tcp.query(`select id, name, tags from ${schema}.person`);
        assert.deepEqual(rows, [{ id: 1, name: "Ada Lovelace", tags: ["math"] }], command);
      } finally {
        await tcp.query(`drop schema ${schema} cascade`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  },
);
