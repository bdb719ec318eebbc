/**
 * The HTTP transport: queries over Neon's HTTP protocol (`POST /sql`), for runtimes with
 * `fetch` and no sockets, against Neon or edgepool's gateway. It is query-level: `query()` and
 * `batch()` (one transaction per request), no session, so no `connect()` or `transaction()`.
 *
 * @example
 * ```ts ignore
 * import { createPool } from "@edgepool/edgepool";
 * import { httpTransport } from "@edgepool/edgepool/transports/http";
 *
 * const pool = createPool("postgres://app:secret@db.example.com/app", {
 *   transport: httpTransport({ endpoint: "https://gateway.example.com/sql" }),
 * });
 * const { rows } = await pool.query("select $1::int + 1 as n", [41]);
 * await pool.batch(["insert into log values (1)", "insert into log values (2)"]);
 * await pool.close();
 * ```
 *
 * @module
 */

export {
  HttpClient,
  type HttpClientOptions,
  type HttpEndpoint,
  type HttpFetch,
  type HttpTransportOptions,
} from "../src/http_client.ts";
export { type HttpTransport, httpTransport } from "../src/http_transport.ts";
export {
  HttpCheckout,
  HttpPool,
  type HttpPoolEvents,
  type HttpPoolOptions,
  type HttpPoolStats,
} from "../src/pool/http_pool.ts";
export type { BatchOptions, BatchQuery } from "../src/pool/batch.ts";
