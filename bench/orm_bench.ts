// Issue 13's ORM workload through three ORMs, each over edgepool and over the peers, in one run:
// - Drizzle: edgepool's pool (`drizzle({ client: createPool(url) })` with
//   drizzle-orm/node-postgres), pg's Pool (the same Drizzle driver) and postgres.js
//   (drizzle-orm/postgres-js); a round is tests/_drizzle.ts `benchRound`.
// - Kysely: `new PostgresDialect({ pool })` over edgepool's `createPool(url)` and over pg's Pool.
// - Prisma 7: a client generated at the start of the run (offline, as tests/prisma_test.ts does
//   it), over `PrismaEdgepool` and over Prisma's own `PrismaPg`.
// Every pool holds 10 connections, every contender has a table of its own (the same columns), and
// a round is the same through each ORM's API: an insert returning, a select with parameters, a
// committed transaction (insert, update), one rolled back by a throw and 50 concurrent selects.
// Within an ORM the contenders take turns, round batch by round batch; medians of 3. After the
// timing each contender's table must hold every committed row and no rolled-back one.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL, from the
// repository's root (Prisma's client is generated into .tmp/orm_bench/):
//   deno run -A bench/orm_bench.ts postgres://...
// Prints a markdown table per ORM.

import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import postgres from "postgres";
import { like } from "drizzle-orm";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import { type Generated, Kysely, PostgresDialect, sql as kyselySql } from "kysely";
import { createPool } from "../mod.ts";
import { PrismaEdgepool } from "../prisma/mod.ts";
import {
  type AnyDb,
  benchRound,
  createItems,
  dropItems,
  FIRST,
  ITEMS_COLUMNS,
  itemsTable,
} from "../tests/_drizzle.ts";

const MAX = 10;
const ROUNDS = 40;
const WARMUP = 5;
const REPEATS = 3;
const CONCURRENT = 50;

/** One driver (or Prisma adapter) under one ORM, on a table of its own. */
interface Contender {
  /** Its row in the table. */
  name: string;
  /** Creates the table, dropping one of that name first. */
  setup(): Promise<void>;
  /** One round of the workload; `round` makes its rows' names unique. */
  round(round: number): Promise<void>;
  /** Rows of the table whose name starts with `prefix` ("committed", "rolled back"). */
  count(prefix: string): Promise<number>;
  /** Drops the table and ends the pool. */
  close(): Promise<void>;
}

/** One ORM over its contenders, edgepool first. */
interface Comparison {
  /** The ORM, as the table's title names it. */
  orm: string;
  /** The first column's heading. */
  heading: string;
  /**
   * The contenders, each on the table `tables[i]`; `note` is said under the title, and `clean`
   * removes what `open` made besides them (once they are closed).
   */
  open(
    url: string,
    tables: string[],
  ): Promise<{ contenders: Contender[]; note?: string; clean?: () => void }>;
}

/** A rolled-back transaction's throw, which the round expects and no other. */
class Rollback extends Error {}

// ---------------------------------------------------------------------------------------------
// Drizzle

function drizzleContender(name: string, db: AnyDb, table: string, end: () => Promise<unknown>) {
  const items = itemsTable(table);
  return {
    name,
    setup: () => createItems(db, items),
    round: (round: number) => benchRound(db, items, round),
    count: (prefix: string) => db.$count(items, like(items.name, `${prefix}%`)),
    close: async () => {
      await dropItems(db, items).catch(() => {});
      await end();
    },
  };
}

const drizzleComparison: Comparison = {
  orm: "Drizzle",
  heading: "driver under Drizzle",
  open: (url, tables) => {
    const edgepool = createPool(url, { poolSize: MAX, maxOverflow: 0 });
    const pgPool = new pg.Pool({ connectionString: url, max: MAX });
    const sql = postgres(url, { max: MAX, onnotice: () => {} });
    return Promise.resolve({
      contenders: [
        drizzleContender(
          "edgepool (node-postgres driver)",
          drizzlePg({ client: edgepool }),
          tables[0],
          () => edgepool.end(),
        ),
        drizzleContender(
          "pg.Pool (node-postgres driver)",
          drizzlePg({ client: pgPool }),
          tables[1],
          () => pgPool.end(),
        ),
        drizzleContender(
          "postgres.js (postgres-js driver)",
          drizzlePostgresJs({ client: sql }),
          tables[2],
          () => sql.end(),
        ),
      ],
    });
  },
};

// ---------------------------------------------------------------------------------------------
// Kysely

/** The workload's table as Kysely sees it (int8 and numeric come back as strings). */
interface KyselyItem {
  id: Generated<number>;
  name: string;
  doc: unknown;
  at: string | Date | null;
  big: string | bigint | null;
  small: string | number | null;
  amount: string | null;
  bytes: Uint8Array | null;
  scores: number[] | null;
}

type KyselyDb = Kysely<Record<string, KyselyItem>>;

/** {@link benchRound}'s statements, through Kysely's query builder. */
async function kyselyRound(db: KyselyDb, table: string, round: number): Promise<void> {
  const row = await db.insertInto(table)
    // pg and edgepool alike send an object parameter as JSON text; Kysely passes values through.
    .values({ ...FIRST, doc: JSON.stringify(FIRST.doc), name: `round ${round}` })
    .returning("id")
    .executeTakeFirstOrThrow();
  await db.selectFrom(table).selectAll()
    .where("id", "=", row.id).where("name", "=", `round ${round}`)
    .execute();
  await db.transaction().execute(async (trx) => {
    await trx.insertInto(table).values({ name: `committed ${round}`, small: round }).execute();
    await trx.updateTable(table).set({ small: round + 1 }).where("id", "=", row.id).execute();
  });
  await db.transaction().execute(async (trx) => {
    await trx.insertInto(table).values({ name: `rolled back ${round}` }).execute();
    throw new Rollback();
  }).catch((error) => {
    if (!(error instanceof Rollback)) throw error;
  });
  await Promise.all(
    Array.from(
      { length: CONCURRENT },
      (_, i) =>
        db.selectFrom(table).select(["id", "doc"]).where("id", "=", row.id - (i % 3)).execute(),
    ),
  );
}

function kyselyContender(name: string, db: KyselyDb, table: string): Contender {
  return {
    name,
    setup: async () => {
      await kyselySql.raw(`drop table if exists ${table}`).execute(db);
      await kyselySql.raw(`create table ${table} (${ITEMS_COLUMNS})`).execute(db);
    },
    round: (round) => kyselyRound(db, table, round),
    count: async (prefix) => {
      const { n } = await db.selectFrom(table)
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .where("name", "like", `${prefix}%`)
        .executeTakeFirstOrThrow();
      return Number(n);
    },
    close: async () => {
      await db.schema.dropTable(table).ifExists().execute().catch(() => {});
      await db.destroy(); // ends the pool
    },
  };
}

const kyselyComparison: Comparison = {
  orm: "Kysely",
  heading: "pool under Kysely's PostgresDialect",
  open: (url, tables) => {
    const edgepool = createPool(url, { poolSize: MAX, maxOverflow: 0 });
    const pgPool = new pg.Pool({ connectionString: url, max: MAX });
    return Promise.resolve({
      contenders: [
        kyselyContender(
          "edgepool (createPool)",
          new Kysely({ dialect: new PostgresDialect({ pool: edgepool }) }),
          tables[0],
        ),
        kyselyContender(
          "pg.Pool",
          new Kysely({ dialect: new PostgresDialect({ pool: pgPool }) }),
          tables[1],
        ),
      ],
    });
  },
};

// ---------------------------------------------------------------------------------------------
// Prisma 7

/** What the bench calls of a generated client's model. */
interface PrismaItems {
  create(args: { data: Record<string, unknown>; select: { id: true } }): Promise<{ id: number }>;
  update(args: { where: { id: number }; data: Record<string, unknown> }): Promise<unknown>;
  findMany(args: { where: Record<string, unknown>; select?: Record<string, true> }): Promise<
    unknown[]
  >;
  count(args: { where: Record<string, unknown> }): Promise<number>;
}

/** What the bench calls of a generated client. */
interface PrismaClient {
  $transaction<T>(fn: (tx: PrismaClient) => Promise<T>): Promise<T>;
  $executeRawUnsafe(sql: string): Promise<number>;
  $disconnect(): Promise<void>;
}

type PrismaClientClass = new (options: { adapter: unknown }) => PrismaClient;

/**
 * Prisma's own pg adapter (`PrismaPg`, @prisma/adapter-pg), when installed. It is not a
 * devDependency: it brings @types/pg, with which TypeScript holds edgepool's pool to pg's class
 * type wherever Drizzle's node-postgres driver takes a client (see README, "With Drizzle"), and
 * the tests show the code users without @types/pg write. `npm install --no-save
 * @prisma/adapter-pg@7.10.1` adds the comparison to this table.
 */
async function prismaPg(): Promise<(new (pool: unknown) => unknown) | undefined> {
  const name = "@prisma/adapter-pg";
  try {
    return (await import(name)).PrismaPg;
  } catch {
    return undefined;
  }
}

/** The model of contender `i`'s table (the schema has one per contender). */
function prismaItems(client: PrismaClient, i: number): PrismaItems {
  return (client as unknown as Record<string, PrismaItems>)[`item${i}`];
}

/**
 * Generates into `dir` a Prisma 7 client with models `Item0`, `Item1`... mapped to `tables`,
 * bundles it (Node cannot load the TypeScript Prisma writes) and imports it. `prisma generate`
 * runs offline: PRISMA_SCHEMA_ENGINE_BINARY names any existing file, and the query engine is
 * the WebAssembly one shipped in @prisma/client.
 */
async function generatePrismaClient(
  dir: string,
  tables: string[],
): Promise<PrismaClientClass> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const schema = join(dir, "schema.prisma");
  const models = tables.map((table, i) =>
    `model Item${i} {\n` +
    "  id     Int       @id @default(autoincrement())\n" +
    "  name   String\n" +
    "  doc    Json?\n" +
    "  at     DateTime? @db.Timestamptz(6)\n" +
    "  big    BigInt?\n" +
    "  small  BigInt?\n" +
    "  amount Decimal?\n" +
    "  bytes  Bytes?\n" +
    "  scores Int[]\n" +
    `  @@map("${table}")\n}\n`
  );
  writeFileSync(
    schema,
    'generator client {\n  provider = "prisma-client"\n  output = "./generated"\n}\n\n' +
      'datasource db {\n  provider = "postgresql"\n}\n\n' + models.join("\n"),
  );
  await promisify(execFile)(
    "node",
    [
      join(process.cwd(), "node_modules", "prisma", "build", "index.js"),
      "generate",
      "--schema",
      schema,
    ],
    {
      cwd: dir,
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: schema, PRISMA_HIDE_UPDATE_MESSAGE: "1" },
    },
  );
  const esbuild = await import("esbuild");
  const out = join(dir, "client.mjs");
  try {
    await esbuild.build({
      absWorkingDir: process.cwd(),
      entryPoints: [join(dir, "generated", "client.ts")],
      outfile: out,
      bundle: true,
      format: "esm",
      platform: "node",
      packages: "external",
      logLevel: "warning",
    });
  } finally {
    await esbuild.stop();
  }
  const module = await import(pathToFileURL(out).href);
  return module.PrismaClient as PrismaClientClass;
}

/** {@link benchRound}'s statements, through Prisma's model API. */
async function prismaRound(client: PrismaClient, i: number, round: number): Promise<void> {
  const items = prismaItems(client, i);
  const row = await items.create({
    // Prisma's DateTime takes a Date (FIRST's text, with microseconds, is not ISO 8601).
    data: { ...FIRST, at: new Date("2024-05-06T07:08:09.123Z"), name: `round ${round}` },
    select: { id: true },
  });
  await items.findMany({ where: { id: row.id, name: `round ${round}` } });
  await client.$transaction(async (tx) => {
    const txItems = prismaItems(tx, i);
    await txItems.create({
      data: { name: `committed ${round}`, small: round },
      select: { id: true },
    });
    await txItems.update({ where: { id: row.id }, data: { small: round + 1 } });
  });
  await client.$transaction(async (tx) => {
    await prismaItems(tx, i).create({
      data: { name: `rolled back ${round}` },
      select: { id: true },
    });
    throw new Rollback();
  }).catch((error) => {
    if (!(error instanceof Rollback)) throw error;
  });
  await Promise.all(
    Array.from(
      { length: CONCURRENT },
      (_, n) =>
        items.findMany({ where: { id: row.id - (n % 3) }, select: { id: true, doc: true } }),
    ),
  );
}

function prismaContender(
  name: string,
  client: PrismaClient,
  i: number,
  table: string,
  end: () => Promise<unknown>,
): Contender {
  return {
    name,
    setup: async () => {
      await client.$executeRawUnsafe(`drop table if exists ${table}`);
      await client.$executeRawUnsafe(`create table ${table} (${ITEMS_COLUMNS})`);
    },
    round: (round) => prismaRound(client, i, round),
    count: (prefix) => prismaItems(client, i).count({ where: { name: { startsWith: prefix } } }),
    close: async () => {
      await client.$executeRawUnsafe(`drop table if exists ${table}`).catch(() => {});
      await client.$disconnect();
      await end(); // neither adapter ends a pool it was given
    },
  };
}

const prismaComparison: Comparison = {
  orm: "Prisma 7",
  heading: "driver adapter under Prisma 7",
  open: async (url, tables) => {
    const start = performance.now();
    const dir = join(process.cwd(), ".tmp", "orm_bench", `prisma-${process.pid}`);
    const PrismaClient = await generatePrismaClient(dir, tables.slice(0, 2));
    const seconds = (performance.now() - start) / 1000;
    const edgepool = createPool(url, { poolSize: MAX, maxOverflow: 0 });
    const contenders = [
      prismaContender(
        "edgepool (PrismaEdgepool)",
        new PrismaClient({ adapter: new PrismaEdgepool(edgepool) }),
        0,
        tables[0],
        () => edgepool.end(),
      ),
    ];
    const PrismaPg = await prismaPg();
    if (PrismaPg !== undefined) {
      const pgPool = new pg.Pool({ connectionString: url, max: MAX });
      contenders.push(prismaContender(
        "pg.Pool (@prisma/adapter-pg PrismaPg)",
        new PrismaClient({ adapter: new PrismaPg(pgPool) }),
        1,
        tables[1],
        () => pgPool.end(),
      ));
    }
    return {
      contenders,
      note: `The client was generated and bundled at the start, in ${seconds.toFixed(1)} s ` +
        "(not timed below). " +
        (PrismaPg === undefined
          ? "@prisma/adapter-pg is not installed (not a devDependency: it brings @types/pg), so " +
            "Prisma's own pg adapter is not in this table: `npm install --no-save " +
            "@prisma/adapter-pg@7.10.1` adds it. "
          : ""),
      clean: () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// The run

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs one comparison and returns its markdown. */
async function compare(comparison: Comparison, url: string, runtime: string): Promise<string> {
  const key = comparison.orm.toLowerCase().replace(/\W+/g, "");
  const tables = [0, 1, 2].map((i) => `orm_bench_${key}_${i}_${process.pid}`);
  const { contenders, note = "", clean } = await comparison.open(url, tables);
  const times = contenders.map(() => [] as number[]);
  try {
    for (const c of contenders) {
      await c.setup();
      for (let r = 0; r < WARMUP; r++) await c.round(-r - 1);
    }
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      for (const [i, c] of contenders.entries()) {
        const start = performance.now();
        for (let r = 0; r < ROUNDS; r++) await c.round(repeat * ROUNDS + r);
        times[i].push(performance.now() - start);
      }
    }
    // Timing a workload that went wrong would say nothing: every commit and rollback held.
    const rounds = WARMUP + REPEATS * ROUNDS;
    for (const c of contenders) {
      const [committed, rolledBack] = [await c.count("committed"), await c.count("rolled back")];
      if (committed !== rounds || rolledBack !== 0) {
        throw new Error(
          `${comparison.orm} over ${c.name}: ${committed} committed rows of ${rounds}, ` +
            `${rolledBack} rolled-back rows kept`,
        );
      }
    }
  } finally {
    for (const c of contenders) await c.close();
    clean?.();
  }
  const base = median(times[0]);
  const lines = [
    `### ${comparison.orm} ORM workload, ${runtime}`,
    "",
    `${ROUNDS} rounds, one after another, pool of ${MAX}; a round, through ${comparison.orm}'s ` +
    "API: insert returning, select with parameters, a committed transaction (insert, update), " +
    `one rolled back by a throw, ${CONCURRENT} concurrent selects. ${note}Medians of 3; ` +
    "speedup is the peer's time over edgepool's.",
    "",
    `| ${comparison.heading} | ms for ${ROUNDS} rounds | ms per round | edgepool speedup |`,
    "| --- | ---: | ---: | ---: |",
    ...contenders.map((c, i) => {
      const ms = median(times[i]);
      const speedup = i === 0 ? "—" : `${(ms / base).toFixed(2)}x`;
      return `| ${c.name} | ${ms.toFixed(0)} | ${(ms / ROUNDS).toFixed(2)} | ${speedup} |`;
    }),
  ];
  return lines.join("\n");
}

async function main(url: string): Promise<void> {
  const runtime = "Deno" in globalThis
    ? `Deno ${process.versions.deno}`
    : `Node ${process.version}`;
  const sections: string[] = [];
  for (const comparison of [drizzleComparison, kyselyComparison, prismaComparison]) {
    sections.push(await compare(comparison, url, runtime));
  }
  console.log(sections.join("\n\n"));
}

const [url] = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
if (url === undefined) {
  console.error("usage: orm_bench.ts postgres://...");
  process.exit(2);
}
await main(url);
