/**
 * edgepool: a PostgreSQL client and connection pool for Deno, Node, Bun and Cloudflare
 * Workers, over pluggable transports.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 *
 * await using conn = await connect("postgres://app:secret@localhost:5432/app");
 * const { rows } = await conn.query("select $1::int + 1 as answer", [41]);
 * console.log(rows[0].answer); // 42
 * ```
 *
 * @module
 */

import { type ConnectFunction, createConnect } from "./src/connect.ts";
import { type CreatePool, makeCreatePool } from "./src/create_pool.ts";
import { autoTransport, defaultApplicationName, detectRuntime } from "./transports/auto.ts";
import { pgliteTransport } from "./transports/pglite.ts";

/**
 * Opens a PostgreSQL connection. The URL takes libpq's form
 * (`postgres://user:password@host:port/database?sslmode=require&application_name=app`), and
 * `options` override it. The TCP transport for the runtime (Deno, Node, Bun, Workers) is
 * picked unless `options.transport` names one.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * const conn = await connect("postgres://app@localhost/app", { connectTimeout: 5000 });
 * try {
 *   const result = await conn.query("select now() as now");
 *   console.log(result.rows[0].now instanceof Date); // true
 * } finally {
 *   await conn.close();
 * }
 * ```
 */
export const connect: ConnectFunction = /* @__PURE__ */ createConnect(autoTransport, {
  get applicationName() {
    return defaultApplicationName();
  },
});

/**
 * Makes the pool that fits the URL and the runtime:
 *
 * - no URL, or `pglite://memory` / `pglite:///path/to/dir`: the embedded database (PGlite, in
 *   this process, no server) in a `StaticPool`, as SQLAlchemy uses SQLite;
 * - a `postgres://` URL: a `QueuePool` over TCP on a long-lived runtime, a `NullPool` on an
 *   edge runtime (Workers, Vercel Edge, Netlify Edge, Deno Deploy), where an external pooler
 *   does the pooling.
 *
 * `options` holds those of `connect()` and of the pool; `poolClass` overrides the choice.
 *
 * @example
 * ```ts ignore
 * import { createPool } from "@edgepool/edgepool";
 * const pool = createPool(); // embedded, nothing to install or start
 * await pool.query("create table notes (body text)");
 * await pool.query("insert into notes values ($1)", ["hello"]);
 * console.log((await pool.query("select body from notes")).rows); // [{ body: "hello" }]
 * await pool.close();
 * ```
 */
export const createPool: CreatePool = /* @__PURE__ */ makeCreatePool({
  connect,
  runtime: detectRuntime,
  embedded(location) {
    const transport = pgliteTransport(location === "memory" ? {} : { dataDir: location });
    return { transport, close: () => transport.close() };
  },
});

export type { ConnectFunction } from "./src/connect.ts";
export type { CreatePool, CreatePoolOptions, PoolClassName } from "./src/create_pool.ts";
export { Connection } from "./src/connection.ts";
export { Cursor, type RowStream, type StreamOptions } from "./src/cursor.ts";
export {
  type CopyFromOptions,
  type CopySource,
  type CopyToOptions,
  CopyToStream,
} from "./src/copy.ts";
export type { ConnectionEvents, Notification, TransactionStatus } from "./src/connection.ts";
export type { ConnectOptions, Pooler } from "./src/config.ts";
export type { TargetSessionAttrs } from "./src/url.ts";
export { redactUrl } from "./src/url.ts";
export {
  ConnectionError,
  type ConnectionErrorCode,
  PoolError,
  type PoolErrorCode,
  PoolEventError,
  PostgresError,
  type PostgresErrorFields,
  type PostgresNotice,
} from "./src/errors.ts";
export type { Clock } from "./src/pool/_clock.ts";
export type { PoolAdapter, PoolTransactionStatus } from "./src/pool/adapter.ts";
export { AssertionPool } from "./src/pool/assertion_pool.ts";
export {
  type AsyncContextStore,
  ContextPool,
  type ContextPoolOptions,
} from "./src/pool/context_pool.ts";
export type { PoolCloseReason, PoolConnectionEvent, PoolEvents } from "./src/pool/events.ts";
export {
  manage,
  type ManagedPools,
  type ManageOptions,
  type PoolFactory,
} from "./src/pool/manage.ts";
export type { BatchOptions, BatchQuery } from "./src/pool/batch.ts";
export {
  HttpCheckout,
  HttpPool,
  type HttpPoolEvents,
  type HttpPoolOptions,
  type HttpPoolStats,
} from "./src/pool/http_pool.ts";
export type {
  HttpClientOptions,
  HttpEndpoint,
  HttpFetch,
  HttpTransportOptions,
} from "./src/http_client.ts";
export type { HttpTransport } from "./src/http_transport.ts";
export { NullPool, type NullPoolOptions } from "./src/pool/null_pool.ts";
export { pgClientAdapter, type PgClientLike } from "./src/pool/pg_adapter.ts";
export type { Creator, PoolLogger, PoolOptions, ResetOnReturn } from "./src/pool/options.ts";
export { type CheckoutOptions, Pool, type PoolQueryOptions } from "./src/pool/pool.ts";
export { PooledConnection } from "./src/pool/pooled_connection.ts";
export type { Queryable, QueryableError, QueryableStats } from "./src/pool/queryable.ts";
export { QueuePool, type QueuePoolOptions, type QueuePoolSize } from "./src/pool/queue_pool.ts";
export { StaticPool } from "./src/pool/static_pool.ts";
export type { PoolCounters, PoolGauges, PoolStats } from "./src/pool/stats.ts";
export type { IsolationLevel, TransactionOptions } from "./src/pool/transaction.ts";
export type {
  CommandTag,
  FieldDescription,
  ParamSerializer,
  QueryConfig,
  QueryCursor,
  QueryOptions,
  QueryResult,
  RowMode,
  SerializersOption,
  TypeParser,
  TypeParsers,
} from "./src/result.ts";
export type {
  ByteStream,
  SslMode,
  StreamHandlers,
  TlsSettings,
  Transport,
  TransportConnectOptions,
} from "./src/transport.ts";
export { sql, type SqlTag, type SqlTemplate } from "./src/sql.ts";
export { Oid, typeParsers } from "./src/types.ts";
export {
  type WebSocketConstructor,
  type WebSocketLike,
  websocketTransport,
  type WebSocketTransportOptions,
} from "./transports/websocket.ts";
export { detectRuntime } from "./transports/auto.ts";
export type {
  PoolDescription,
  PoolOrigin,
  RuntimeInfo,
  RuntimeName,
  TcpRuntime,
} from "./src/runtime.ts";
