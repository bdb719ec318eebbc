// examples/cloudflare-worker without a pool: edgepool's `connect()`, one connection made and
// closed within the request. Not a Worker to write (a pool gives `scope`, transactions,
// retries and limits); it shows what the connection alone weighs, under every pool.

import { connect } from "@edgepool/edgepool";
import { type Context, type Env, idOf, SQL } from "./_worker.ts";

export default {
  async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
    const connection = await connect(env.DATABASE_URL);
    try {
      const { rows } = await connection.query(SQL, [idOf(request)]);
      return Response.json(rows[0]);
    } finally {
      ctx.waitUntil(connection.close());
    }
  },
};
