// A Vercel Edge Function. The edge runtime has no TCP, so the pool reaches PostgreSQL over
// HTTP through edgepool's gateway (`edgepool-gateway`, run next to the database): one
// `POST /sql` per query, no connection to set up.

import { createPool } from "edgepool";
import { httpTransport } from "edgepool/transports/http";

// The edge runtime provides process.env.
declare const process: { env: Record<string, string | undefined> };

export const config = { runtime: "edge" };

const { DATABASE_URL, GATEWAY_URL } = process.env;
if (!DATABASE_URL || !GATEWAY_URL) {
  throw new Error("Set DATABASE_URL and GATEWAY_URL (the gateway's https://host:port)");
}

// Module scope: reused while the function instance lives.
const pool = createPool(DATABASE_URL, {
  transport: httpTransport({ endpoint: `${GATEWAY_URL}/sql` }),
});

export default async function handler(request: Request): Promise<Response> {
  const words = new URL(request.url).searchParams.get("q") ?? "";
  const { rows } = await pool.query<{ words: number; upper: string }>(
    "select cardinality(regexp_split_to_array(trim($1::text), '\\s+')) as words, " +
      "upper($1::text) as upper",
    [words],
  );
  return Response.json(rows[0]);
}
