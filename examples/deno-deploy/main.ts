// A Deno Deploy app: `export default { fetch }`, served by `deno serve` locally and by Deploy.
//
//   DATABASE_URL=postgres://user:pass@host/db deno serve --allow-net --allow-env main.ts

// In your own project: import { createPool } from "jsr:@edgepool/edgepool";
import { createPool } from "../../mod.ts";

const databaseUrl = Deno.env.get("DATABASE_URL");
if (!databaseUrl) throw new Error("Set DATABASE_URL in the project's environment variables");

// Module scope: the isolate keeps the pool between requests; connections idle for 10 s close
// by themselves, so an isolate with no traffic holds none.
const pool = createPool(databaseUrl, { poolSize: 3, maxIdle: 10_000 });

export default {
  async fetch(request: Request): Promise<Response> {
    const name = new URL(request.url).searchParams.get("name") ?? "world";
    const { rows } = await pool.query<{ greeting: string }>(
      "select 'hello, ' || $1::text as greeting",
      [name],
    );
    return Response.json(rows[0]);
  },
} satisfies Deno.ServeDefaultExport;
