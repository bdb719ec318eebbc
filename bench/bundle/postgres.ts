// examples/cloudflare-worker written with postgres.js: its `workerd` build, over
// `cloudflare:sockets`. `postgres()` is its pool (up to `max` connections); a socket cannot
// outlive its request on Workers, so the pool is the request's, ended through ctx.waitUntil
// (what edgepool's `pool.scope` does).

import postgres from "postgres";
import { type Context, type Env, idOf } from "./_worker.ts";

export default {
  async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
    const sql = postgres(env.DATABASE_URL);
    const id = idOf(request);
    try {
      const [row] = await sql`select ${id}::int as id, ${id}::int * ${id}::int as square`;
      return Response.json(row);
    } finally {
      ctx.waitUntil(sql.end());
    }
  },
};
