/**
 * `QueuePool`: SQLAlchemy's default pool, with psycopg_pool's operations.
 *
 * @module
 */

import { Engine } from "./_engine.ts";
import { count, type Creator, milliseconds, type PoolOptions } from "./options.ts";
import { Pool } from "./pool.ts";

/** Options of {@link QueuePool}. Times in milliseconds. */
export interface QueuePoolOptions<C> extends PoolOptions<C> {
  /** Connections kept open once made (SQLAlchemy's `pool_size`). Default 5. */
  poolSize?: number;
  /** Extra connections allowed beyond `poolSize`, closed when returned; -1 = no limit. Default 10. */
  maxOverflow?: number;
  /** Connections opened at start and kept open, at most `poolSize` (psycopg's `min_size`). Default 0. */
  min?: number;
  /** Close idle connections above `min` after this long (psycopg). Default 600 000 (10 min); 0 = never. */
  maxIdle?: number;
  /** Retire connections after this long, less up to 5 % random jitter (psycopg). Default 3 600 000 (1 h); 0 = never. */
  maxLifetime?: number;
  /** Retire connections older than this when they are checked out (SQLAlchemy). Default -1 = never. */
  recycle?: number;
  /** Hand out the most recently returned connection first, so that spare ones can idle out. Default `false` (FIFO). */
  lifo?: boolean;
  /** Give up reconnecting in the background (to keep `min`) after this long. Default 300 000 (5 min). */
  reconnectTimeout?: number;
  /** Called when background reconnecting gives up (psycopg's `reconnect_failed`). */
  reconnectFailed?: (pool: QueuePool<C>) => void;
}

/** New sizes for {@link QueuePool.resize}. */
export interface QueuePoolSize {
  /** New `poolSize`. */
  poolSize?: number;
  /** New `maxOverflow` (-1 = no limit). */
  maxOverflow?: number;
  /** New `min`. */
  min?: number;
}

/**
 * A pool that keeps up to `poolSize` connections and opens up to `maxOverflow` more under load,
 * closing those extra ones when they are returned. Checkouts wait in FIFO order up to
 * `timeout`.
 *
 * @example
 * ```ts ignore
 * import { connect, QueuePool } from "@edgepool/edgepool";
 * const pool = new QueuePool(() => connect(databaseUrl), {
 *   poolSize: 5,
 *   maxOverflow: 10,
 *   prePing: true,
 * });
 * const { rows } = await pool.query("select now()");
 * await pool.close();
 * ```
 */
export class QueuePool<C> extends Pool<C> {
  #poolSize: number;
  #maxOverflow: number;
  readonly #reconnectFailed: ((pool: QueuePool<C>) => void) | undefined;

  /** Makes a pool of connections from `creator`. Nothing is opened before it is needed (or `min`). */
  constructor(creator: Creator<C>, options?: QueuePoolOptions<C>) {
    const o = options ?? {};
    const poolSize = count(o.poolSize, "poolSize", 5);
    const maxOverflow = overflow(o.maxOverflow);
    const min = count(o.min, "min", 0);
    if (min > poolSize) throw new RangeError(`min (${min}) cannot exceed poolSize (${poolSize})`);
    if (poolSize === 0 && maxOverflow === 0) {
      throw new RangeError(
        "poolSize and maxOverflow cannot both be 0: the pool could never connect",
      );
    }
    const maxIdle = milliseconds(o.maxIdle, "maxIdle", 600_000);
    const maxLifetime = milliseconds(o.maxLifetime, "maxLifetime", 3_600_000);
    const recycle = o.recycle === undefined || o.recycle === -1
      ? Infinity
      : milliseconds(o.recycle, "recycle", 0);
    if (o.reconnectFailed !== undefined && typeof o.reconnectFailed !== "function") {
      throw new TypeError("reconnectFailed must be a function");
    }
    super(creator, o, {
      kind: "QueuePool",
      poolSize,
      max: poolSize + maxOverflow,
      keepIdle: poolSize,
      min,
      maxIdle: maxIdle === 0 ? Infinity : maxIdle,
      maxLifetime: maxLifetime === 0 ? Infinity : maxLifetime,
      recycle,
      lifo: o.lifo === true,
      reconnectTimeout: milliseconds(o.reconnectTimeout, "reconnectTimeout", 300_000),
    }, Engine);
    this.#poolSize = poolSize;
    this.#maxOverflow = maxOverflow;
    this.#reconnectFailed = o.reconnectFailed;
  }

  /** `poolSize`, as SQLAlchemy's `size()`. */
  get size(): number {
    return this.#poolSize;
  }

  /**
   * Changes the pool's sizes at run time (psycopg's `resize()`): surplus idle connections close,
   * waiters are served if there is room now.
   */
  resize(size: QueuePoolSize): void {
    const poolSize = count(size.poolSize, "poolSize", this.#poolSize);
    const maxOverflow = size.maxOverflow === undefined
      ? this.#maxOverflow
      : overflow(size.maxOverflow);
    const min = count(size.min, "min", Math.min(this.policy.min, poolSize));
    if (min > poolSize) throw new RangeError(`min (${min}) cannot exceed poolSize (${poolSize})`);
    this.#poolSize = poolSize;
    this.#maxOverflow = maxOverflow;
    this.applyPolicy({
      ...this.policy,
      max: poolSize + maxOverflow,
      keepIdle: poolSize,
      poolSize,
      min,
    });
  }

  /** A new, empty `QueuePool` with the same creator and options. */
  recreate(): QueuePool<C> {
    return new QueuePool(this.creator, this.givenOptions as QueuePoolOptions<C>);
  }

  /** Says how full the pool is in SQLAlchemy's terms, for error messages. */
  protected override describeCapacity(): string {
    const { checkedIn, checkedOut } = this.gauges();
    const overflowUsed = Math.max(0, checkedIn + checkedOut - this.#poolSize);
    return `${
      Math.min(checkedOut, this.#poolSize)
    } of ${this.#poolSize} connections and ${overflowUsed} of ${
      this.#maxOverflow === Infinity ? "unlimited" : this.#maxOverflow
    } overflow in use`;
  }

  /** Calls the `reconnectFailed` option. */
  protected override reconnectFailed(): void {
    this.#reconnectFailed?.(this);
  }
}

function overflow(value: unknown): number {
  if (value === -1) return Infinity;
  return count(value, "maxOverflow", 10);
}
