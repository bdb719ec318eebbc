// A Cloudflare Worker used by workers_test.ts: pools in module scope, used by many requests.
// createPool gives a NullPool on Workers, so no socket outlives the request that opened it;
// pool.scope(ctx, fn) gives a request its own pool, closed through ctx.waitUntil. The naive
// pattern, a QueuePool keeping sockets across requests, is there to show what goes wrong.

import { connect, createPool, type Pool, QueuePool } from "../mod.ts";
import type { Connection } from "../src/connection.ts";

interface Env {
  DATABASE_URL: string;
}

interface Ctx {
  waitUntil(promise: Promise<unknown>): void;
}

let pool: Pool<Connection> | undefined;
let naive: QueuePool<Connection> | undefined;

export default {
  async fetch(request: Request, env: Env, ctx: Ctx): Promise<Response> {
    const url = `${env.DATABASE_URL}${env.DATABASE_URL.includes("?") ? "&" : "?"}sslmode=disable`;
    pool ??= createPool(url, { connectTimeout: 5000 });
    const path = new URL(request.url).pathname;
    try {
      switch (path) {
        case "/module": {
          const { rows } = await pool.query<{ n: number }>("select $1::int + 1 as n", [41]);
          return Response.json({ n: rows[0].n, describe: pool.describe(), stats: pool.stats() });
        }
        case "/globals":
          return Response.json({ finalizationRegistry: typeof FinalizationRegistry });
        case "/direct": {
          await using conn = await connect(url, { connectTimeout: 5000 });
          const { rows } = await conn.query<{ n: number }>("select $1::int + 1 as n", [41]);
          return Response.json({ n: rows[0].n });
        }
        case "/burst": {
          // 20 at once: more than Workers lets open at once; the pool keeps to 6 opening.
          const results = await Promise.all(
            Array.from(
              { length: 20 },
              (_, i) => pool!.query<{ i: number }>("select $1::int as i", [i]),
            ),
          );
          return Response.json({ sum: results.reduce((a, r) => a + r.rows[0].i, 0) });
        }
        case "/scope": {
          const result = await pool.scope(ctx, async (db) => {
            const first = await db.query<{ pid: number }>("select pg_backend_pid() as pid");
            const moved = await db.transaction(async (c) => {
              await c.query("select 1");
              return (await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0];
            });
            return { pids: [first.rows[0].pid, moved.pid], kind: db.describe().poolClass };
          });
          return Response.json(result);
        }
        case "/stream": {
          // A portal read in batches, on the request's own connection, returned at the end.
          let sum = 0;
          for await (
            const row of pool.stream("select n from generate_series(1, 2500) n", [], {
              batchSize: 1000,
            })
          ) sum += row.n as number;
          return Response.json({ sum, stats: pool.stats() });
        }
        case "/listen": {
          // No connection can outlive its request here: listen() says so.
          await pool.listen("orders", () => {});
          return Response.json({ listened: true });
        }
        case "/naive": {
          naive ??= new QueuePool(() => connect(url, { connectTimeout: 5000 }), { poolSize: 1 });
          const { rows } = await naive.query<{ one: number }>("select 1 as one", [], {
            signal: AbortSignal.timeout(5000),
            timeout: 5000,
          });
          return Response.json({ one: rows[0].one });
        }
      }
      return new Response("not found", { status: 404 });
    } catch (error) {
      return Response.json({
        failed: true,
        message: error instanceof Error ? error.message : String(error),
        code: (error as { code?: unknown }).code,
      });
    }
  },
};
