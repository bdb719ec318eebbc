/**
 * A checked-out connection: the handle a caller holds between `pool.connect()` and
 * `release()`. One per checkout; the connection itself outlives it in the pool.
 *
 * @module
 */

import { errorMessage, PoolError } from "../errors.ts";
import type { QueryOptions, QueryResult } from "../result.ts";
import type { PoolAdapter, PoolTransactionStatus } from "./adapter.ts";
import type { PoolRecord } from "./_record.ts";

// The pool's way to the record behind a handle, which no one else can reach. Set by the first
// constructor call (there is no handle before it) rather than by a static block, which would
// keep the class in every bundle that imports this module, used or not.
let recordOf: (<C>(handle: PooledConnection<C>) => PoolRecord<C>) | undefined;

/** What a handle needs from its pool. */
export interface PoolInternals<C> {
  readonly adapter: PoolAdapter<C>;
  checkin(record: PoolRecord<C>, handle: PooledConnection<C>): Promise<void>;
  invalidate(record: PoolRecord<C>, error: unknown, soft: boolean): void;
  detach(record: PoolRecord<C>, handle: PooledConnection<C>): void;
  closeDetached(record: PoolRecord<C>): Promise<void>;
  /** A query failed with a disconnect error: retire the connection. */
  lost(record: PoolRecord<C>, error: unknown): void;
  /** A query was aborted or timed out: the connection may be stuck; close it, free its place. */
  stuck(record: PoolRecord<C>, error: unknown): void;
  /** The pool's `queryTimeout` (0: none). */
  readonly queryTimeout: number;
}

/**
 * A connection checked out of a pool. Return it with `release()` — or let `await using` do it:
 *
 * @example
 * ```ts ignore
 * import { createPool } from "@edgepool/edgepool";
 * const pool = createPool();
 * {
 *   await using conn = await pool.connect();
 *   await conn.query("insert into t values ($1)", [1]);
 * } // returned here, on every path
 * ```
 *
 * As with SQLAlchemy's connection proxy, `close()` returns the connection to the pool rather
 * than closing it.
 */
export class PooledConnection<C> implements AsyncDisposable {
  readonly #pool: PoolInternals<C>;
  readonly #record: PoolRecord<C>;
  #released = false;
  #returned: Promise<void> | null = null;

  /** Made by the pool at checkout. */
  constructor(pool: PoolInternals<C>, record: PoolRecord<C>) {
    recordOf ??= (handle) => handle.#record;
    this.#pool = pool;
    this.#record = record;
  }

  /** The underlying connection (edgepool's `Connection`, or another driver's client). */
  get connection(): C {
    return this.#record.connection;
  }

  /** Data that lives as long as the underlying connection, across checkouts. */
  get info(): Record<string, unknown> {
    return this.#record.info;
  }

  /** The connection's transaction status, without a round trip. */
  get transactionStatus(): PoolTransactionStatus {
    return this.#pool.adapter.transactionStatus(this.#record.connection);
  }

  /** Whether this handle was released (or closed). */
  get released(): boolean {
    return this.#released;
  }

  /**
   * Runs a query on the connection. A disconnect error retires this connection before it
   * reaches you. A query aborted by its `signal`, or past its `queryTimeout`, closes the
   * connection (a cancel is sent first) and frees its place in the pool: a connection whose
   * query does not answer may never answer again. Later queries on this handle then fail.
   */
  async query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>> {
    if (this.#released) throw released("run a query on");
    const pool = this.#pool;
    const adapter = pool.adapter;
    if (pool.queryTimeout > 0 && options?.queryTimeout === undefined) {
      options = { ...options, queryTimeout: pool.queryTimeout };
    }
    try {
      return await adapter.query<Row>(this.#record.connection, sql, params, options);
    } catch (error) {
      // A login that was under way failed: the error is the login's (the statement never
      // ran), as if connecting had failed; the pool counts it so, and drops the connection.
      const login = this.#record.login;
      if (login !== null && await login.then(() => false, () => true)) throw error;
      if (this.#record.state !== "busy") throw error;
      const signal = options?.signal;
      if (
        (signal?.aborted && error === signal.reason) ||
        (error as { code?: unknown })?.code === "QUERY_TIMEOUT"
      ) {
        this.#pool.stuck(this.#record, error);
        throw error;
      }
      if (adapter.isDisconnect(error)) {
        this.#pool.lost(this.#record, error);
        const code = (error as { code?: unknown })?.code;
        if (code !== "CONNECTION_LOST" && code !== "CONNECTION_CLOSED" && !isOwnError(error)) {
          throw new PoolError("CONNECTION_LOST", `Connection lost: ${errorMessage(error)}`, {
            cause: error,
          });
        }
      }
      throw error;
    }
  }

  /**
   * Returns the connection to the pool. The promise resolves once the pool has it back (reset
   * done where needed) and never rejects. A second release throws `RELEASED`.
   */
  release(): Promise<void> {
    if (this.#released) throw released("release");
    return this.#return();
  }

  /** Returns the connection to the pool, like `release()`, but a second call does nothing. */
  close(): Promise<void> {
    return this.#released ? this.#returned ?? Promise.resolve() : this.#return();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Closes the underlying connection and frees its place in the pool: it will never be handed
   * out again. With `soft`, it stays usable until returned and is closed then.
   */
  invalidate(reason?: unknown, options?: { soft?: boolean }): void {
    if (this.#released) throw released("invalidate");
    this.#pool.invalidate(this.#record, reason, options?.soft === true);
  }

  /**
   * Takes the connection out of the pool: the pool forgets it (and may open another in its
   * place), while this handle keeps working. Releasing the handle then closes the connection.
   */
  detach(): void {
    if (this.#released) throw released("detach");
    if (this.#record.state === "busy") this.#pool.detach(this.#record, this);
  }

  #return(): Promise<void> {
    this.#released = true;
    const record = this.#record;
    this.#returned = record.state === "detached"
      ? this.#pool.closeDetached(record)
      : this.#pool.checkin(record, this);
    return this.#returned;
  }
}

/** The record behind a handle (for the pool only). */
export function handleRecord<C>(handle: PooledConnection<C>): PoolRecord<C> {
  return recordOf!(handle);
}

function released(action: string): PoolError {
  return new PoolError(
    "RELEASED",
    `Cannot ${action} a connection that was already released to the pool`,
  );
}

function isOwnError(error: unknown): boolean {
  const name = (error as { name?: unknown })?.name;
  return name === "ConnectionError" || name === "PoolError";
}
