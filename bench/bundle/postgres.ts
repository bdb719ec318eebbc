// The size-comparison Worker for postgres.js: its `workerd` build, over `cloudflare:sockets`.

import postgres from "postgres";
import type { Context, Env } from "./_worker.ts";

export default {
  async fetch(_request: Request, env: Env, ctx: Context): Promise<Response> {
    const sql = postgres(env.DATABASE_URL, { max: 1 });
    try {
      const [row] = await sql`select ${41}::int + 1 as n`;
      return Response.json(row);
    } finally {
      ctx.waitUntil(sql.end());
    }
  },
};
