// A Cloudflare Worker used by workers_test.ts: it runs a few queries with edgepool inside the
// request and answers with what it saw, as JSON.

import { connect, ConnectionError, PostgresError } from "../mod.ts";

interface Env {
  DATABASE_URL: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const sslmode = url.searchParams.get("sslmode") ?? "disable";
    const target = new URL(env.DATABASE_URL);
    target.searchParams.set("sslmode", sslmode);
    const host = url.searchParams.get("host");
    if (host !== null) target.searchParams.set("host", host);
    try {
      await using conn = await connect(target.toString(), { connectTimeout: 5000 });
      const answer = await conn.query("select $1::int + 1 as n, current_user as who", [41]);
      const pipelined = await Promise.all(
        [1, 2, 3].map((i) => conn.query("select $1::int * 10 as v", [i])),
      );
      let errorCode = "";
      try {
        await conn.query("select 1/0");
      } catch (error) {
        errorCode = error instanceof PostgresError ? error.code : String(error);
      }
      const after = await conn.query(
        "select 'still usable' as s, current_setting('application_name') as app",
      );
      return Response.json({
        userAgent: navigator.userAgent,
        encrypted: conn.encrypted,
        answer: answer.rows[0],
        pipelined: pipelined.map((r) => r.rows[0].v),
        errorCode,
        after: after.rows[0].s,
        applicationName: after.rows[0].app,
      });
    } catch (error) {
      return Response.json({
        failed: true,
        name: error instanceof Error ? error.name : typeof error,
        code: error instanceof ConnectionError || error instanceof PostgresError ? error.code : "",
        message: error instanceof Error ? error.message : String(error),
      });
    }
  },
};
