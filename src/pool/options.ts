/**
 * Options shared by every pool class, their defaults, and the logger contract. Times are in
 * milliseconds throughout.
 *
 * @module
 */

import type { PoolOrigin } from "../runtime.ts";
import type { Clock } from "./_clock.ts";
import type { PoolAdapter } from "./adapter.ts";

/** Makes a new connection; `signal` aborts when the pool closes. */
export type Creator<C> = (signal: AbortSignal) => Promise<C>;

/** Receives pool activity; `console` fits. Silent when not given. */
export interface PoolLogger {
  /** Connections made and closed, checkouts. */
  debug?(message: string, data?: Record<string, unknown>): void;
  /** Invalidations, the pool closing. */
  info?(message: string, data?: Record<string, unknown>): void;
  /** Failed connects, failed resets, leaks. */
  warn?(message: string, data?: Record<string, unknown>): void;
  /** Giving up reconnecting. */
  error?(message: string, data?: Record<string, unknown>): void;
}

/** What to do with a returned connection that is inside a transaction. */
export type ResetOnReturn = "rollback" | "commit" | "none";

/** Options every pool class takes. */
export interface PoolOptions<C> {
  /**
   * How to query, ping, reset and close the pooled connections. Default: the adapter for
   * edgepool's `Connection`.
   */
  adapter?: PoolAdapter<C>;
  /**
   * Checkout deadline: waiting in the queue, connecting and the health check together.
   * Default 30 000 ms.
   */
  timeout?: number;
  /** Ping a connection before handing it out; on failure, try another. Default `false`. */
  prePing?: boolean;
  /**
   * Time limit for the health check at checkout (`prePing`, `check`, and the ping of a
   * connection suspected since another was lost), within the checkout deadline. A connection
   * that does not answer in time is closed, and the caller tries another. Default 5000 ms.
   */
  checkTimeout?: number;
  /**
   * Time limit for each query on a checked-out connection, unless the query gives its own
   * (`QueryOptions.queryTimeout`): past it the query rejects with `QUERY_TIMEOUT`, a cancel is
   * sent and the connection is closed, its place freed. A `pool.query` statement with a time
   * limit is never pipelined onto a busy connection (see `queryPipeline`): closing that
   * connection would fail the statements beside it. Default 0: none.
   */
  queryTimeout?: number;
  /** Health check at checkout (psycopg's `check`); throw to reject the connection. */
  check?: (connection: C) => void | Promise<void>;
  /** Called once on every new connection before its first use (psycopg's `configure`). */
  configure?: (connection: C) => void | Promise<void>;
  /** Called on every returned connection after `resetOnReturn` (psycopg's `reset`). */
  reset?: (connection: C) => void | Promise<void>;
  /**
   * A returned connection inside a transaction is rolled back (`"rollback"`, the default), or
   * committed (`"commit"`); with `"none"` it is closed instead of reset. An idle connection
   * goes back with no round trip whatever this says.
   */
  resetOnReturn?: ResetOnReturn;
  /** Callers allowed to wait at once; beyond it a checkout fails with `TOO_MANY_WAITERS`. 0 = no limit (default). */
  maxWaiting?: number;
  /** Warn (`leak` event, logger) when a connection is held longer than this. 0 = off (default). */
  leakDetectionThreshold?: number;
  /**
   * Report (`idleInTransaction` event, logger warning) a checked-out connection that has been
   * inside a transaction longer than this: open transactions hold locks and, behind a
   * transaction pooler, a whole server connection. Checked every `maintenanceInterval`; once
   * per transaction. 0 = off. Default 60 000.
   */
  idleInTransactionThreshold?: number;
  /**
   * How many `pool.query` statements may run on one connection at once, pipelined, when every
   * connection the pool may open is checked out and nobody waits for a checkout: statements
   * then go to the connection with the fewest in flight rather than queueing, and each still
   * runs on its own (its own implicit transaction; an error fails only its statement). Only
   * single statements that neither open or end a transaction nor change the session are
   * shared (see `Pool.query`); `connect()`, `transaction()` and `batch()` always get a
   * connection of their own. A slow statement delays those behind it on its connection.
   * 1 = off. Default 16 (with edgepool's own connections; other drivers do not pipeline).
   */
  queryPipeline?: number;
  /**
   * How `createPool` chose this pool (runtime, transport, pooler, reasons): set by
   * `createPool`, reported by `pool.describe()`. Default: none.
   */
  origin?: PoolOrigin;
  /** Record where each checkout happened, for `leak` events and errors. Default: on when `leakDetectionThreshold` is set. */
  recordStacks?: boolean;
  /** Where pool activity goes (debug/info/warn/error). Default: nowhere. */
  logger?: PoolLogger;
  /** A name for messages and logs. */
  name?: string;
  /** Time source, for tests. Default: the system clock. */
  clock?: Clock;
  /** How often background upkeep runs while the pool has connections. Default 1000 ms. */
  maintenanceInterval?: number;
  /**
   * Called once, after `close()` has closed every connection: release what the creator uses
   * (an embedded database, a tunnel). Its error, if any, rejects `close()`.
   */
  onClose?: () => void | Promise<void>;
}

/** Options of one checkout. */
export interface CheckoutOptions {
  /** Gives up waiting: the checkout rejects with the signal's reason. */
  signal?: AbortSignal;
  /** This checkout's deadline in ms, instead of the pool's `timeout`. */
  timeout?: number;
}

/** What a pool class makes of its options: the engine's policy. */
export interface Policy {
  /** The pool class's name, for messages (not the constructor's: bundlers rename those). */
  kind: string;
  /** Upper bound on open plus opening connections. */
  max: number;
  /** Open connections beyond this count as overflow in stats; Infinity where there is none. */
  poolSize: number;
  /** Idle connections kept on checkin; more are closed (SQLAlchemy's overflow). */
  keepIdle: number;
  /** Connections opened at start and kept open. */
  min: number;
  /** Close idle connections above `min` after this long. Infinity = never. */
  maxIdle: number;
  /** Retire connections after this long, less up to 5 % jitter. Infinity = never. */
  maxLifetime: number;
  /** Retire connections older than this at checkout (SQLAlchemy's `recycle`). Infinity = never. */
  recycle: number;
  /** Take the most recently returned idle connection first. */
  lifo: boolean;
  /** Give up background reconnecting after this long. */
  reconnectTimeout: number;
}

/** The engine's settings after defaults and validation (see {@link PoolOptions}). */
export interface ResolvedOptions<C> {
  /** See {@link PoolOptions.adapter}. */
  adapter: PoolAdapter<C>;
  /** See {@link PoolOptions.timeout}. */
  timeout: number;
  /** See {@link PoolOptions.prePing}. */
  prePing: boolean;
  /** See {@link PoolOptions.checkTimeout}. */
  checkTimeout: number;
  /** See {@link PoolOptions.queryTimeout}. */
  queryTimeout: number;
  /** See {@link PoolOptions.check}. */
  check: ((connection: C) => void | Promise<void>) | undefined;
  /** See {@link PoolOptions.configure}. */
  configure: ((connection: C) => void | Promise<void>) | undefined;
  /** See {@link PoolOptions.reset}. */
  reset: ((connection: C) => void | Promise<void>) | undefined;
  /** See {@link PoolOptions.resetOnReturn}. */
  resetOnReturn: ResetOnReturn;
  /** See {@link PoolOptions.maxWaiting}. */
  maxWaiting: number;
  /** See {@link PoolOptions.leakDetectionThreshold}. */
  leakDetectionThreshold: number;
  /** See {@link PoolOptions.idleInTransactionThreshold}. */
  idleInTransactionThreshold: number;
  /** See {@link PoolOptions.queryPipeline}; 1 where the adapter does not pipeline. */
  queryPipeline: number;
  /** See {@link PoolOptions.origin}. */
  origin: PoolOrigin | undefined;
  /** See {@link PoolOptions.recordStacks}. */
  recordStacks: boolean;
  /** See {@link PoolOptions.logger}. */
  logger: PoolLogger;
  /** See {@link PoolOptions.name}. */
  name: string;
  /** See {@link PoolOptions.clock}. */
  clock: Clock;
  /** See {@link PoolOptions.maintenanceInterval}. */
  maintenanceInterval: number;
  /** See {@link PoolOptions.onClose}. */
  onClose: (() => void | Promise<void>) | undefined;
}

/**
 * NullPool's policy (NullPool and RequestPool, createPool's NullPool on Workers): nothing kept
 * idle, at most `max` connections (default: no limit).
 */
export function nullPolicy(max: unknown): Policy {
  const limit = max === undefined ? Infinity : count(max, "max", 0);
  if (limit === 0) throw new RangeError("max must be at least 1");
  return {
    kind: "NullPool",
    poolSize: Infinity,
    max: limit,
    keepIdle: 0,
    min: 0,
    maxIdle: Infinity,
    maxLifetime: Infinity,
    recycle: Infinity,
    lifo: false,
    reconnectTimeout: 0,
  };
}

/** The checkout's deadline in ms: its own `timeout`, else `fallback` (RangeError if bad). */
export function checkoutTimeout(options: CheckoutOptions | undefined, fallback: number): number {
  return options?.timeout === undefined ? fallback : milliseconds(options.timeout, "timeout", 0);
}

/** A non-negative finite number of milliseconds (or `fallback` when undefined). */
export function milliseconds(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0) || value > 2_147_483_647) {
    throw new RangeError(
      `${name} must be a number of milliseconds from 0 to 2147483647, not ${String(value)}`,
    );
  }
  return value;
}

/** A non-negative integer (or `fallback` when undefined). */
export function count(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a whole number from 0 up, not ${String(value)}`);
  }
  return value;
}

/** An optional function. */
export function callback<F>(value: unknown, name: string): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "function") {
    throw new TypeError(`${name} must be a function, not ${typeof value}`);
  }
  return value as F;
}
