// A Node HTTP server with one pool for the whole process.
//
//   DATABASE_URL=postgres://user:pass@host/db node server.mjs

import { createServer } from "node:http";
import process from "node:process";
import { createPool } from "edgepool";

if (!process.env.DATABASE_URL) {
  throw new Error("Set DATABASE_URL to a PostgreSQL connection string");
}

// Module scope: every request shares the pool's connections.
const pool = createPool(process.env.DATABASE_URL, { poolSize: 5 });

const server = createServer(async (request, response) => {
  const url = new URL(request.url ?? "/", "http://localhost");
  if (url.pathname !== "/now") {
    response.writeHead(404).end("try /now?zone=UTC\n");
    return;
  }
  try {
    const { rows } = await pool.query(
      "select to_char(now() at time zone $1, 'YYYY') as year, $1::text as zone",
      [url.searchParams.get("zone") ?? "UTC"],
    );
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify(rows[0]));
  } catch (error) {
    response.writeHead(500).end(`${error.message}\n`);
  }
});

server.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});

// On Ctrl-C or SIGTERM: stop taking requests, then close the pool's connections.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    server.close();
    pool.close().then(() => process.exit(0));
  });
}
