/**
 * The events of a pool, with SQLAlchemy's names in camelCase, and what each listener receives.
 *
 * @module
 */

import type { PoolEventError } from "../errors.ts";
import type { CommandTag } from "../result.ts";

/** What every connection-level event carries. */
export interface PoolConnectionEvent<C> {
  /** The pooled connection itself (edgepool's `Connection`, or another driver's client). */
  connection: C;
  /** The record that lives as long as the connection: put your own data on it. */
  info: Record<string, unknown>;
}

/**
 * Why the pool closed a connection: `overflow` (returned beyond `poolSize`), `returned`
 * (NullPool closes what is returned), `idle` (`maxIdle`),
 * `lifetime` (`maxLifetime`/`recycle`), `invalidated`, `stale` (made before `dispose()` or
 * `recreate()`), `reset failed`, `returned broken`, `lost` (closed by itself while idle),
 * `detached`, `disposed`, `pool closed`, `unwanted` (made for a caller that got another one),
 * `stuck` (a query on it was aborted or timed out, or its health check did not answer in time:
 * it may never answer again).
 */
export type PoolCloseReason =
  | "overflow"
  | "returned"
  | "idle"
  | "lifetime"
  | "invalidated"
  | "stale"
  | "reset failed"
  | "returned broken"
  | "lost"
  | "detached"
  | "disposed"
  | "pool closed"
  | "unwanted"
  | "stuck";

/** Pool events: name → what the listener receives. */
export interface PoolEvents<C> {
  /**
   * A new connection was made (after `configure`). One handed early to a `pool.query`
   * statement may still be logging in (`pipelineConnect`); should that login fail, an `error`
   * event with context `connect` follows.
   */
  connect: PoolConnectionEvent<C>;
  /** The first connection this pool ever made (fires before that connection's `connect`). */
  firstConnect: PoolConnectionEvent<C>;
  /** A connection was checked out; `waitedMs` is how long the caller waited. */
  checkout: PoolConnectionEvent<C> & { waitedMs: number };
  /** A connection was returned by its user (before any reset). */
  checkin: PoolConnectionEvent<C>;
  /** A returned connection was reset: rolled back, committed, or the `reset` callback ran. */
  reset: PoolConnectionEvent<C> & { action: "rollback" | "commit" | "callback" };
  /** A connection was invalidated: closed at once and never reused. */
  invalidate: PoolConnectionEvent<C> & { error?: unknown };
  /** A connection was soft-invalidated: it is closed when returned, not reused. */
  softInvalidate: PoolConnectionEvent<C> & { error?: unknown };
  /** The pool closed a connection. */
  close: PoolConnectionEvent<C> & { reason: PoolCloseReason };
  /** A checked-out connection was detached from the pool. */
  detach: PoolConnectionEvent<C>;
  /** A detached connection was closed (by `release()` or `close()` on its handle). */
  closeDetached: PoolConnectionEvent<C>;
  /**
   * A background error: a connection failing while idle, a failed background connect, a failed
   * reset. Never thrown, never fatal: this is where to log them. An Error, as pg's pool emits,
   * with the error itself in `error`, where it happened in `context`, and the connection.
   */
  error: PoolEventError<C>;
  /**
   * A query on a checked-out connection ended: every `pool.query` statement, `transaction()`'s
   * statements (BEGIN and COMMIT included) and `query` on a handle (a `batch()`, one write of
   * several statements, is not reported). What ran (`sql`, the number of `params`), how long it
   * took in ms (from the call to the answer, queueing on the connection included), and its
   * `command` and `rowCount` or its `error`; the connection and its backend's `processId` (for
   * edgepool's connections). For tracing and slow-query logs; with no listener it costs one
   * check per query.
   */
  query: {
    sql: string;
    params: number;
    ms: number;
    command?: CommandTag;
    rowCount?: number | null;
    error?: unknown;
    connection: C;
    processId?: number;
  };
  /**
   * A checked-out connection has been inside a transaction (`status`) for `heldMs`, longer
   * than `idleInTransactionThreshold`. Reported once per transaction.
   */
  idleInTransaction: {
    info: Record<string, unknown>;
    status: "transaction" | "failed";
    heldMs: number;
    stack?: string;
  };
  /**
   * A connection was held too long (`leakDetectionThreshold`), or its handle was
   * garbage-collected without being returned: `stack` says where it was checked out (when the
   * pool records stacks).
   */
  leak: {
    reason: "threshold" | "garbage-collected";
    info: Record<string, unknown>;
    heldMs: number;
    stack?: string;
  };
}
