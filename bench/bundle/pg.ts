// The size-comparison Worker for node-postgres, as pg documents it for Workers: `pg` with the
// `nodejs_compat` flag, which reaches `cloudflare:sockets` through pg-cloudflare (picked by the
// `workerd` export condition).

import pg from "pg";
import type { Context, Env } from "./_worker.ts";

export default {
  async fetch(_request: Request, env: Env, ctx: Context): Promise<Response> {
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query("select $1::int + 1 as n", [41]);
      return Response.json(rows[0]);
    } finally {
      ctx.waitUntil(client.end());
    }
  },
};
