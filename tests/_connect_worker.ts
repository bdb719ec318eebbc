// A Worker that only connects: one connection per request, one parameterized query, closed
// after the response through ctx.waitUntil. workers_test.ts bundles it from the source (what it
// must leave out), npm_package_test.ts against the installed package's workerd build (it runs).

import { connect } from "../mod.ts";

interface Env {
  DATABASE_URL: string;
}

interface Context {
  waitUntil(promise: Promise<unknown>): void;
}

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
