/**
 * What a pool needs to know about the connections it pools: SQLAlchemy's dialect hooks. The
 * default adapter pools edgepool's own {@link Connection}; another driver's client is pooled by
 * passing an adapter for it.
 *
 * @module
 */

import type { Connection } from "../connection.ts";
import { ConnectionError, PostgresError } from "../errors.ts";
import { encodeParams } from "../_query.ts";
import type { QueryOptions, QueryResult } from "../result.ts";

/** A connection's transaction state, or `unknown` when the driver cannot tell. */
export type PoolTransactionStatus = "idle" | "transaction" | "failed" | "unknown";

/** Hooks for one kind of connection. */
export interface PoolAdapter<C> {
  /** Runs a query (`PooledConnection.query`, `pool.query`, `pool.transaction`). */
  query<Row = Record<string, unknown>>(
    connection: C,
    sql: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>>;
  /** Closes the connection: gracefully, or at once with `force`. Never rejects. */
  close(connection: C, force: boolean): Promise<void>;
  /** The transaction state now, without a round trip. */
  transactionStatus(connection: C): PoolTransactionStatus;
  /** Whether the connection is known to be closed or broken. */
  isClosed(connection: C): boolean;
  /** Whether queries are still in flight on it. */
  isBusy(connection: C): boolean;
  /** One round trip that proves the connection works (pre-ping). */
  ping(connection: C, signal: AbortSignal): Promise<void>;
  /** Whether an error means the connection is unusable (SQLAlchemy's `is_disconnect`). */
  isDisconnect(error: unknown): boolean;
  /**
   * Whether `error` says that the connection's server is no longer one it may stay with: a
   * write refused as read-only (25006) on a connection asked for a server that takes writes
   * (`targetSessionAttrs` `read-write` or `primary`), whose server now reports itself a hot
   * standby or read-only (a primary demoted, a switchover). The pool then retires every
   * connection it has (they went to the same server) and connects anew. Optional.
   */
  wrongServer?(connection: C, error: unknown): boolean;
  /** Calls `listener` when the connection closes by itself; returns the unsubscribe function. */
  onClose(connection: C, listener: (error?: Error) => void): () => void;
  /**
   * The connection sends a query while earlier ones are still running (pipelining), so that
   * `pool.query` may share a busy connection. Default: `false`.
   */
  readonly pipelines?: boolean;
  /**
   * The connection's login is still under way (it was started early, so that its first query
   * leaves with the login's last message): resolves when it is done, rejects if it fails.
   * `null` (or no hook) when the connection is logged in. The pool hands such a connection
   * only to a checkout whose first act is a query (`pool.query`, `transaction`, `batch`), which
   * takes the login's failure as its own; every other
   * checkout, and the pool's own connects, wait for the login first.
   */
  loggingIn?(connection: C): Promise<void> | null;
  /**
   * Throws what `query` would reject with, without a connection, for parameters it cannot send
   * (a `TypeError` naming the parameter). `batch()` checks every statement first, so that a
   * statement refused before it is written cannot leave the others to commit without it.
   * Optional.
   */
  checkParams?(params: readonly unknown[] | undefined): void;
}

/**
 * The adapter for edgepool's {@link Connection}: an empty query as the ping, the transaction
 * status of the last ReadyForQuery, `ConnectionError`s and FATAL server errors as disconnects.
 */
export const connectionAdapter: PoolAdapter<Connection> = {
  query: (connection, sql, params, options) => connection.query(sql, params, options),
  async close(connection, force) {
    if (!force) return await connection.close();
    // The server would run a statement to its end after the socket is gone (it notices a
    // vanished client only when it next talks to it): cancel what is running first.
    const cancelling = connection.pending > 0 ? connection.cancel().catch(() => {}) : undefined;
    connection.destroy();
    await cancelling;
  },
  transactionStatus: (connection) => connection.closed ? "unknown" : connection.transactionStatus,
  isClosed: (connection) => connection.closed,
  isBusy: (connection) => connection.pending > 0,
  async ping(connection, signal) {
    // The cheapest round trip there is: an empty query answers EmptyQueryResponse.
    await connection.query("", undefined, { signal });
  },
  isDisconnect(error) {
    // Only the end of the session: the socket closed, or a FATAL/PANIC error (the server ends
    // the session after it). Any other ErrorResponse, 08P01 ("bind message supplies 1
    // parameters...") included, fails its query and leaves the session as it was.
    // A COPY edgepool cannot run (UNSUPPORTED) leaves it usable, unless it closed it.
    if (error instanceof ConnectionError) return error.code !== "UNSUPPORTED";
    if (error instanceof PostgresError) {
      return error.severity === "FATAL" || error.severity === "PANIC";
    }
    return false;
  },
  wrongServer(connection, error) {
    if (!(error instanceof PostgresError) || error.code !== "25006") return false;
    const attrs = connection.targetSessionAttrs;
    const parameters = connection.parameters;
    return (attrs === "read-write" || attrs === "primary") &&
      (parameters.in_hot_standby === "on" || parameters.default_transaction_read_only === "on");
  },
  onClose: (connection, listener) => connection.on("close", listener),
  pipelines: true,
  loggingIn: (connection) => connection.loggingIn ? connection.whenReady() : null,
  checkParams: (params) => void encodeParams(params),
};
