// The size-comparison Worker for Neon's serverless driver: its `Client`, a session over a
// WebSocket to Neon's proxy (the driver's way to run a session on Workers).

import { Client } from "@neondatabase/serverless";
import type { Context, Env } from "./_worker.ts";

export default {
  async fetch(_request: Request, env: Env, ctx: Context): Promise<Response> {
    const client = new Client(env.DATABASE_URL);
    await client.connect();
    try {
      const { rows } = await client.query("select $1::int + 1 as n", [41]);
      return Response.json(rows[0]);
    } finally {
      ctx.waitUntil(client.end());
    }
  },
};
