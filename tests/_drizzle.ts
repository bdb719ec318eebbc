// Issue 13's ORM workload through Drizzle's schema API, shared by tests/drizzle_test.ts (Deno
// and Node), the Worker tests/_worker_drizzle.ts (workerd), the Bun run and
// bench/orm_bench.ts. It takes any Drizzle PostgreSQL database (node-postgres over edgepool or
// pg, postgres-js), so the same statements run over every driver.

import { and, eq, getTableName, gte, inArray, sql } from "drizzle-orm";
import {
  bigint,
  customType,
  integer,
  jsonb,
  type PgDatabase,
  type PgQueryResultHKT,
  pgTable,
  serial,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

/** Any Drizzle PostgreSQL database: node-postgres's or postgres-js's. */
// deno-lint-ignore no-explicit-any
export type AnyDb = PgDatabase<PgQueryResultHKT, any>;

// Drizzle 0.45 has no bytea column: a custom type. Drivers hand bytea over as a Buffer (pg's
// and postgres.js's parsers); a plain Uint8Array here, so results compare alike everywhere.
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
  fromDriver: (value) => new Uint8Array(value),
});

// numeric in Drizzle's default mode (string); custom so the DDL below names the type exactly.
const numeric = customType<{ data: string }>({ dataType: () => "numeric" });

/** The workload's table, under the name `name`. */
export function itemsTable(name: string) {
  return pgTable(name, {
    id: serial("id").primaryKey(),
    name: text("name").notNull(),
    doc: jsonb("doc").$type<{ tags: string[]; n: number }>(),
    at: timestamp("at", { mode: "string", withTimezone: true, precision: 6 }),
    big: bigint("big", { mode: "bigint" }),
    small: bigint("small", { mode: "number" }),
    amount: numeric("amount"),
    bytes: bytea("bytes"),
    scores: integer("scores").array(),
  });
}

/** The table of {@link itemsTable}. */
export type Items = ReturnType<typeof itemsTable>;

/**
 * The table's columns as SQL, for `create table name (...)`: also what bench/orm_bench.ts
 * makes for Kysely and Prisma, so that every ORM runs on the same table.
 */
export const ITEMS_COLUMNS = "id serial primary key, name text not null, doc jsonb, " +
  "at timestamptz(6), big int8, small int8, amount numeric, bytes bytea, scores int4[]";

/** Creates the table (dropping one of that name first). */
export async function createItems(db: AnyDb, items: Items): Promise<void> {
  const name = getTableName(items);
  await db.execute(sql.raw(`drop table if exists ${name}`));
  await db.execute(sql.raw(`create table ${name} (${ITEMS_COLUMNS})`));
}

/** Drops the table. */
export async function dropItems(db: AnyDb, items: Items): Promise<void> {
  await db.execute(sql.raw(`drop table if exists ${getTableName(items)}`));
}

/** The row the workload inserts first: a value of every type the workload covers. */
export const FIRST = {
  name: "first",
  doc: { tags: ["a", "ü", '"q"'], n: 1.5 },
  // Microseconds, which a JavaScript Date would lose.
  at: "2024-05-06 07:08:09.123456+00",
  big: 9007199254740993n, // 2^53 + 1: not a safe integer
  small: 42,
  amount: "12345678901234567890.123456789",
  bytes: new Uint8Array([0, 1, 127, 128, 255]),
  scores: [3, -1, 2147483647],
};

/** What the workload saw; {@link jsonable} makes it JSON for a Worker's answer. */
export interface WorkloadReport {
  /** The row `insert ... returning` gave back. */
  inserted: Record<string, unknown>;
  /** `select` with parameters: the same row read back. */
  selected: Record<string, unknown>[];
  /**
   * Rows whose `at` equals the text read back: 1 when that text is the stored instant to the
   * microsecond (whatever the session's time zone).
   */
  sameInstant: number;
  /** Rows found by `inArray` over two inserted names. */
  found: string[];
  /** pg_backend_pid() of every statement inside a committed `db.transaction`. */
  committedPids: number[];
  /** Whether the committed transaction's row is there afterwards. */
  committed: boolean;
  /** The error a throwing `db.transaction` rejected with. */
  thrown: string;
  /** pg_backend_pid() of every statement inside the throwing transaction. */
  thrownPids: number[];
  /** Whether its INSERT was visible outside while the transaction was open. */
  visibleOutside: boolean;
  /** Rows of its INSERT after it: 0 when nothing was committed. */
  afterThrow: number;
  /** A nested transaction (savepoint) rolled back, the outer committed: rows of each. */
  savepoint: { inner: number; outer: number };
  /** 50 concurrent selects: the ids they found, in order. */
  concurrent: number[];
  /** A named prepared statement (`.prepare(name)`), run 5 times at once. */
  prepared: string[];
}

async function pid(db: AnyDb): Promise<number> {
  const [row] = await db.select({ pid: sql<number>`pg_backend_pid()`.mapWith(Number) })
    .from(sql`(select 1) as one`);
  return row.pid;
}

async function countNamed(db: AnyDb, items: Items, name: string): Promise<number> {
  return await db.$count(items, eq(items.name, name));
}

/** Runs the workload on `db`, over the (created) table `items`. */
export async function runWorkload(db: AnyDb, items: Items): Promise<WorkloadReport> {
  const [inserted] = await db.insert(items).values(FIRST).returning();
  const selected = await db.select().from(items)
    .where(and(eq(items.name, "first"), gte(items.big, 2n ** 53n), eq(items.small, 42)));
  const sameInstant = await db.$count(items, eq(items.at, String(inserted.at)));
  await db.insert(items).values([{ name: "second" }, { name: "third" }]);
  const found = (await db.select({ name: items.name }).from(items)
    .where(inArray(items.name, ["second", "third", "none"])).orderBy(items.id)).map((r) => r.name);

  const committedPids: number[] = [];
  await db.transaction(async (tx) => {
    committedPids.push(await pid(tx));
    await tx.insert(items).values({ name: "committed" });
    committedPids.push(await pid(tx));
    await tx.update(items).set({ small: 7 }).where(eq(items.name, "committed"));
    committedPids.push(await pid(tx));
  });
  const committed = (await countNamed(db, items, "committed")) === 1;

  // The trap of issue 13: BEGIN, the INSERT and ROLLBACK must run on one connection, or the
  // INSERT commits on its own.
  const thrownPids: number[] = [];
  let visibleOutside = true;
  let thrown = "";
  try {
    await db.transaction(async (tx) => {
      thrownPids.push(await pid(tx));
      await tx.insert(items).values({ name: "rolled back", big: 1n });
      thrownPids.push(await pid(tx));
      // The pool, outside the transaction: another connection, which must not see the row.
      visibleOutside = (await countNamed(db, items, "rolled back")) !== 0;
      thrownPids.push(await pid(tx));
      throw new Error("thrown inside the transaction");
    });
  } catch (error) {
    thrown = error instanceof Error ? error.message : String(error);
  }
  const afterThrow = await countNamed(db, items, "rolled back");

  await db.transaction(async (tx) => {
    await tx.insert(items).values({ name: "outer" });
    await tx.transaction(async (inner) => {
      await inner.insert(items).values({ name: "inner" });
      inner.rollback();
    }).catch(() => {});
  });
  const savepoint = {
    inner: await countNamed(db, items, "inner"),
    outer: await countNamed(db, items, "outer"),
  };

  const ids = (await db.select({ id: items.id }).from(items).orderBy(items.id)).map((r) => r.id);
  const concurrent = (await Promise.all(
    Array.from(
      { length: 50 },
      (_, i) => db.select({ id: items.id }).from(items).where(eq(items.id, ids[i % ids.length])),
    ),
  )).map((rows) => rows[0].id);

  const byName = db.select({ name: items.name }).from(items)
    .where(eq(items.name, sql.placeholder("name"))).prepare("drizzle_item_by_name");
  const prepared = (await Promise.all(
    ["first", "second", "third", "committed", "outer"].map((name) => byName.execute({ name })),
  )).map((rows) => rows[0].name);

  return {
    inserted,
    selected,
    sameInstant,
    found,
    committedPids,
    committed,
    thrown,
    thrownPids,
    visibleOutside,
    afterThrow,
    savepoint,
    concurrent,
    prepared,
  };
}

/**
 * The report with what varies from run to run taken out (backend pids: how many distinct;
 * the time zone of the timestamp's text: whether it has the microseconds), as JSON, to compare
 * with {@link EXPECTED}.
 */
export function summarize(report: WorkloadReport): unknown {
  const at = (row: Record<string, unknown>) => ({
    ...row,
    at: /:09\.123456[+-]\d\d(:\d\d)?$/.test(String(row.at)) ? "microseconds kept" : row.at,
  });
  return jsonable({
    ...report,
    inserted: at(report.inserted),
    selected: report.selected.map(at),
    committedPids: new Set(report.committedPids).size,
    thrownPids: new Set(report.thrownPids).size,
  });
}

const FIRST_ROW = {
  id: 1,
  ...FIRST,
  at: "microseconds kept",
  big: "9007199254740993n",
  bytes: { bytes: [...FIRST.bytes] },
};

/** {@link summarize} of a run that went right. */
export const EXPECTED = {
  inserted: FIRST_ROW,
  selected: [FIRST_ROW],
  sameInstant: 1,
  found: ["second", "third"],
  committedPids: 1,
  committed: true,
  thrown: "thrown inside the transaction",
  thrownPids: 1,
  visibleOutside: false,
  afterThrow: 0,
  savepoint: { inner: 0, outer: 1 },
  // ids 1-4 and 6: 5 was the rolled-back INSERT's (a sequence does not roll back).
  concurrent: Array.from({ length: 50 }, (_, i) => [1, 2, 3, 4, 6][i % 5]),
  prepared: ["first", "second", "third", "committed", "outer"],
};

/** `value` as JSON can carry it: bigint as a string, bytes as an array of numbers. */
export function jsonable(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return `${v}n`;
    if (v instanceof Uint8Array) return { bytes: [...v] };
    return v;
  }));
}

/**
 * One round of the bench's workload: an insert returning, a select with parameters, a
 * committed transaction, a rolled-back one, and 50 concurrent selects.
 */
export async function benchRound(db: AnyDb, items: Items, round: number): Promise<void> {
  const [row] = await db.insert(items).values({ ...FIRST, name: `round ${round}` }).returning({
    id: items.id,
  });
  await db.select().from(items).where(and(eq(items.id, row.id), eq(items.name, `round ${round}`)));
  await db.transaction(async (tx) => {
    await tx.insert(items).values({ name: `committed ${round}`, small: round });
    await tx.update(items).set({ small: round + 1 }).where(eq(items.id, row.id));
  });
  await db.transaction(async (tx) => {
    await tx.insert(items).values({ name: `rolled back ${round}` });
    tx.rollback();
  }).catch(() => {});
  await Promise.all(
    Array.from(
      { length: 50 },
      (_, i) =>
        db.select({ id: items.id, doc: items.doc }).from(items).where(
          eq(items.id, row.id - (i % 3)),
        ),
    ),
  );
}
