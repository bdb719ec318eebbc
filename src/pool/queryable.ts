/**
 * `Queryable`: what `Pool` (the socket pools) and `HttpPool` both answer, for code that runs
 * statements and batches and does not mind what carries them.
 *
 * @module
 */

import type { PoolDescription } from "../runtime.ts";
import type { QueryConfig, QueryResult } from "../result.ts";
import type { RowStream, StreamOptions } from "../cursor.ts";
import type { BatchOptions, BatchQuery } from "./batch.ts";
import type { PoolQueryOptions } from "./pool.ts";

/** The counters every {@link Queryable} keeps; each class's `stats()` has more. */
export interface QueryableStats {
  /** Requests made of the pool: checkouts on a socket pool, requests sent over HTTP. */
  requestsNum: number;
  /** Those that failed. */
  requestsErrors: number;
}

/**
 * What a {@link Queryable}'s `error` listener receives: an Error (`PoolEventError`), with the
 * error itself and what the pool was doing (`"query"`, `"batch"`, `"reset"`...).
 */
export interface QueryableError extends Error {
  /** The error. */
  error: unknown;
  /** What the pool was doing: `"query"`, `"batch"`, `"reset"`... */
  context: string;
}

/**
 * What every pool answers, whatever carries the queries: a {@link Pool} (`QueuePool`,
 * `NullPool`, ... over TCP or WebSocket) and an `HttpPool` (one `POST` per query). Interactive
 * checkouts and transactions are a socket pool's own (`Pool.connect`, `Pool.transaction`).
 *
 * @example
 * ```ts
 * import type { Queryable } from "@edgepool/edgepool";
 *
 * async function count(pool: Queryable, table: string): Promise<number> {
 *   const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from ${table}`);
 *   return rows[0].n;
 * }
 * ```
 */
export interface Queryable extends AsyncDisposable {
  /** Whether the pool was closed. */
  readonly closed: boolean;
  /** Runs one statement. */
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>>;
  /**
   * The rows of a query as an async iterable, a batch at a time (see `Pool.stream`); over HTTP
   * (`HttpPool`) it throws a `ConnectionError` `UNSUPPORTED`: there is no session to read from.
   */
  stream<Row = Record<string, unknown>>(
    sql: string | QueryConfig,
    params?: readonly unknown[] | StreamOptions,
    options?: StreamOptions,
  ): RowStream<Row>;
  /** Runs an `sql` template as one statement, as `query(template)` does. */
  sql<Row = Record<string, unknown>>(
    strings: TemplateStringsArray,
    ...values: unknown[]
  ): Promise<QueryResult<Row>>;
  /** Runs statements as one transaction: the results in order, or all rolled back. */
  batch<Row = Record<string, unknown>>(
    queries: readonly BatchQuery[],
    options?: BatchOptions,
  ): Promise<QueryResult<Row>[]>;
  /** Subscribes to the errors that reach no caller; returns the function that unsubscribes. */
  on(event: "error", listener: (value: QueryableError) => void): () => void;
  /** Counters since creation. */
  stats(): QueryableStats;
  /** What this pool is. */
  describe(): PoolDescription;
  /** One readable line about the pool's state. */
  status(): string;
  /** Closes the pool once what is in flight is done, or after `timeout` ms. Idempotent. */
  close(options?: { timeout?: number }): Promise<void>;
  /** Same as `close()`: pg's name (Kysely's `destroy()` and Drizzle's users call it). */
  end(): Promise<void>;
}
