// A Cloudflare Worker used by websocket_test.ts: it connects to the `?url=` of the request with
// the WebSocket transport (workerd's own WebSocket) through the proxy in PROXY_URL, and answers
// with what it saw, as JSON.

import { connect, ConnectionError, PostgresError } from "../mod.ts";
import { websocketTransport } from "../transports/websocket.ts";

interface Env {
  PROXY_URL: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    try {
      const url = new URL(request.url).searchParams.get("url")!;
      const transport = websocketTransport({ proxy: env.PROXY_URL });
      await using conn = await connect(url, { transport, connectTimeout: 5000 });
      const answer = await conn.query("select $1::int + 1 as n, current_user as who", [41]);
      const pipelined = await Promise.all(
        [1, 2, 3].map((i) => conn.query("select $1::int * 10 as v", [i])),
      );
      return Response.json({
        userAgent: navigator.userAgent,
        answer: answer.rows[0],
        pipelined: pipelined.map((r) => r.rows[0].v),
      });
    } catch (error) {
      return Response.json({
        failed: true,
        code: error instanceof ConnectionError || error instanceof PostgresError ? error.code : "",
        message: error instanceof Error ? error.message : String(error),
      });
    }
  },
};
