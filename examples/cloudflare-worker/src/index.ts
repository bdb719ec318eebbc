// A Cloudflare Worker with a pool in module scope. Workers cannot share a socket between
// requests, so each request gets its own scope of the pool (`pool.scope`), closed through
// `ctx.waitUntil` once the response is on its way.

import { createPool, type Pool } from "edgepool";

interface Env {
  /** A secret: `wrangler secret put DATABASE_URL` (or `.dev.vars` for `wrangler dev`). */
  DATABASE_URL: string;
}

interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

// Made on the first request, when `env` is known; reused by every later one.
let pool: Pool | undefined;

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    pool ??= createPool(env.DATABASE_URL);
    const id = Number(new URL(request.url).searchParams.get("id") ?? "1");
    return await pool.scope(ctx, async (db) => {
      const { rows } = await db.query<{ id: number; square: number }>(
        "select $1::int as id, $1::int * $1::int as square",
        [id],
      );
      return Response.json(rows[0]);
    });
  },
};
