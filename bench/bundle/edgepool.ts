// The size-comparison Worker for edgepool: one connection per request, one parameterized query,
// closed after the response through ctx.waitUntil.
//
// It imports the source so that `deno check` sees it; bench/bundle/sizes.ts bundles it against
// the built npm package instead (`edgepool`, workerd condition), which is what a Worker gets.

import { connect } from "../../mod.ts";
import type { Context, Env } from "./_worker.ts";

export default {
  async fetch(_request: Request, env: Env, ctx: Context): Promise<Response> {
    const conn = await connect(env.DATABASE_URL);
    try {
      const { rows } = await conn.query("select $1::int + 1 as n", [41]);
      return Response.json(rows[0]);
    } finally {
      ctx.waitUntil(conn.close());
    }
  },
};
