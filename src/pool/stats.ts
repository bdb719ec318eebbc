/**
 * Pool statistics: psycopg_pool's counters in camelCase, and SQLAlchemy's gauges.
 *
 * @module
 */

/** A snapshot from `pool.stats()`. Counters run from the pool's creation. */
export interface PoolStats {
  /** Connections kept open at least (`min`). */
  poolMin: number;
  /** Connections allowed at most (open plus opening); `Infinity` for no limit. */
  poolMax: number;
  /** Connections the pool holds now: idle, checked out and opening. */
  poolSize: number;
  /** Idle connections ready to be checked out. */
  poolAvailable: number;
  /** Callers waiting for a connection now. */
  requestsWaiting: number;
  /** Checkouts requested. */
  requestsNum: number;
  /** Checkouts that had to wait because no connection was free. */
  requestsQueued: number;
  /** Total time callers spent waiting, in ms. */
  requestsWaitMs: number;
  /** Checkouts that failed: timeouts, too many waiters, connect errors, pool closed. */
  requestsErrors: number;
  /** Total time connections spent checked out, in ms. */
  usageMs: number;
  /** Connections returned broken, in a transaction that could not be reset, or not idle. */
  returnsBad: number;
  /** Connection attempts. */
  connectionsNum: number;
  /** Total time spent connecting, in ms. */
  connectionsMs: number;
  /** Failed connection attempts. */
  connectionsErrors: number;
  /** Connections found broken: closed while idle, or failing with a disconnect error. */
  connectionsLost: number;
  /** SQLAlchemy's `checkedin()`: idle connections. */
  checkedIn: number;
  /** SQLAlchemy's `checkedout()`: connections in use. */
  checkedOut: number;
  /** SQLAlchemy's `overflow()`: open connections beyond `poolSize` (0 for pools without one). */
  overflow: number;
}

/** The counters of {@link PoolStats}: counted since the pool was made. */
export type PoolCounters = Pick<
  PoolStats,
  | "requestsNum"
  | "requestsQueued"
  | "requestsWaitMs"
  | "requestsErrors"
  | "usageMs"
  | "returnsBad"
  | "connectionsNum"
  | "connectionsMs"
  | "connectionsErrors"
  | "connectionsLost"
>;

/** The gauges of {@link PoolStats}: what the pool holds now, not counted since creation. */
export type PoolGauges = Omit<PoolStats, keyof PoolCounters>;

/** Zeroed counters. */
export function newCounters(): PoolCounters {
  return {
    requestsNum: 0,
    requestsQueued: 0,
    requestsWaitMs: 0,
    requestsErrors: 0,
    usageMs: 0,
    returnsBad: 0,
    connectionsNum: 0,
    connectionsMs: 0,
    connectionsErrors: 0,
    connectionsLost: 0,
  };
}
