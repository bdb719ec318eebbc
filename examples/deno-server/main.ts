// A Deno HTTP server with one pool for the whole process.
//
//   DATABASE_URL=postgres://user:pass@host/db deno run --allow-net --allow-env main.ts

// In your own project: import { createPool } from "jsr:@edgepool/edgepool";
import { createPool } from "../../mod.ts";

const databaseUrl = Deno.env.get("DATABASE_URL");
if (!databaseUrl) throw new Error("Set DATABASE_URL to a PostgreSQL connection string");

// Module scope: every request shares the pool's connections.
const pool = createPool(databaseUrl, { poolSize: 5 });

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 8000),
  onListen: ({ hostname, port }) => console.log(`listening on http://${hostname}:${port}`),
}, async (request) => {
  const url = new URL(request.url);
  if (url.pathname !== "/add") return new Response("try /add?a=1&b=2\n", { status: 404 });
  const { rows } = await pool.query<{ sum: number }>(
    "select $1::int + $2::int as sum",
    [url.searchParams.get("a") ?? "0", url.searchParams.get("b") ?? "0"],
  );
  return Response.json(rows[0]);
});

// On Ctrl-C: stop taking requests, then close the pool's connections.
Deno.addSignalListener("SIGINT", async () => {
  await server.shutdown();
  await pool.close();
  Deno.exit(0);
});
