// examples/cloudflare-worker written with node-postgres, as pg documents it for Workers: `pg`
// with the `nodejs_compat` flag, reaching `cloudflare:sockets` through pg-cloudflare (picked by
// the `workerd` export condition). A socket cannot outlive its request on Workers, so the
// `Pool` is the request's, ended through ctx.waitUntil (what edgepool's `pool.scope` does).

import pg from "pg";
import { type Context, type Env, idOf, SQL } from "./_worker.ts";

export default {
  async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
    const pool = new pg.Pool({ connectionString: env.DATABASE_URL });
    try {
      const { rows } = await pool.query(SQL, [idOf(request)]);
      return Response.json(rows[0]);
    } finally {
      ctx.waitUntil(pool.end());
    }
  },
};
