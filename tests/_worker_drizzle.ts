// A Cloudflare Worker used by workers_test.ts: Drizzle (drizzle-orm/node-postgres) over
// edgepool's createPool(env.DATABASE_URL), unchanged, in workerd. The pool lives in module
// scope; /workload runs issue 13's ORM workload (tests/_drizzle.ts) through `pool.scope`, and
// /module runs a transaction straight on the module-scope pool, from concurrent requests.

import { drizzle } from "drizzle-orm/node-postgres";
import { eq, sql } from "drizzle-orm";
import { createPool, type Pool } from "../mod.ts";
import type { Connection } from "../src/connection.ts";
import { createItems, dropItems, itemsTable, runWorkload, summarize } from "./_drizzle.ts";

interface Env {
  DATABASE_URL: string;
}

interface Ctx {
  waitUntil(promise: Promise<unknown>): void;
}

let pool: Pool<Connection> | undefined;

export default {
  async fetch(request: Request, env: Env, ctx: Ctx): Promise<Response> {
    const url = `${env.DATABASE_URL}${env.DATABASE_URL.includes("?") ? "&" : "?"}sslmode=disable`;
    pool ??= createPool(url, { connectTimeout: 5000 });
    const { pathname, searchParams } = new URL(request.url);
    const items = itemsTable(searchParams.get("table") ?? "drizzle_worker_items");
    try {
      switch (pathname) {
        case "/workload": {
          const result = await pool.scope(ctx, async (scoped) => {
            const db = drizzle({ client: scoped });
            await createItems(db, items);
            try {
              return {
                report: summarize(await runWorkload(db, items)),
                poolClass: scoped.describe().poolClass,
              };
            } finally {
              await dropItems(db, items);
            }
          });
          return Response.json(result);
        }
        case "/create":
          await createItems(drizzle({ client: pool }), items);
          return Response.json({ created: true });
        case "/drop":
          await dropItems(drizzle({ client: pool }), items);
          return Response.json({ dropped: true });
        case "/module": {
          const db = drizzle({ client: pool });
          const name = searchParams.get("name") ?? "module";
          const pids = await db.transaction(async (tx) => {
            const pid = sql<number>`pg_backend_pid()`.mapWith(Number);
            const [before] = await tx.select({ pid }).from(sql`(select 1) as one`);
            await tx.insert(items).values({ name });
            const [after] = await tx.select({ pid }).from(sql`(select 1) as one`);
            return [before.pid, after.pid];
          });
          const rows = await db.select({ name: items.name }).from(items)
            .where(eq(items.name, name));
          return Response.json({ pids, found: rows.length });
        }
      }
      return new Response("not found", { status: 404 });
    } catch (error) {
      return Response.json({
        failed: true,
        message: error instanceof Error ? error.message : String(error),
        cause: error instanceof Error && error.cause instanceof Error
          ? error.cause.message
          : undefined,
        code: (error as { code?: unknown }).code,
      });
    }
  },
};
