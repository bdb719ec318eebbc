// examples/cloudflare-worker written with Neon's serverless driver: its `Pool` (pg's API over a
// WebSocket to Neon's proxy), made and ended within the request as Neon's documentation says to
// on Workers, through ctx.waitUntil (what edgepool's `pool.scope` does).

import { Pool } from "@neondatabase/serverless";
import { type Context, type Env, idOf, SQL } from "./_worker.ts";

export default {
  async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
    const pool = new Pool({ connectionString: env.DATABASE_URL });
    try {
      const { rows } = await pool.query(SQL, [idOf(request)]);
      return Response.json(rows[0]);
    } finally {
      ctx.waitUntil(pool.end());
    }
  },
};
