/**
 * A checked-out connection: the handle a caller holds between `pool.connect()` and
 * `release()`. One per checkout; the connection itself outlives it in the pool.
 *
 * @module
 */

import { ConnectionError, errorMessage, PoolError } from "../errors.ts";
import type { CopyFromOptions, CopySource, CopyToOptions, CopyToStream } from "../copy.ts";
import {
  cursorUnsupported,
  fromConfig,
  type QueryConfig,
  type QueryCursor,
  type QueryOptions,
  type QueryResult,
} from "../result.ts";
import { runTemplate } from "../sql.ts";
import {
  Cursor,
  type Lease,
  PORTAL,
  type PortalHost,
  RowStream,
  type StreamOptions,
  streamUnsupported,
} from "../cursor.ts";
import type { Emitter } from "../_emitter.ts";
import type { PoolAdapter, PoolTransactionStatus } from "./adapter.ts";
import type { PoolEvents } from "./events.ts";
import type { SlotState } from "./_engine.ts";

// The pool's way to the slot behind a handle, which no one else can reach. Set by the first
// constructor call (there is no handle before it) rather than by a static block, which would
// keep the class in every bundle that imports this module, used or not.
let slotOf: (<C>(handle: PooledConnection<C>) => HandleSlot<C>) | undefined;

/** What a handle reads of the pool's slot for its connection (`Slot`, _engine.ts). */
export interface HandleSlot<C> {
  readonly connection: C;
  readonly info: Record<string, unknown>;
  /** Written by the pool only. */
  readonly state: SlotState;
  /** Its login, while it is still under way (see `Slot.login`); else `null`. */
  readonly login: Promise<void> | null;
}

/** What a handle needs from its pool, whose slots are `S`. */
export interface PoolInternals<C, S extends HandleSlot<C> = HandleSlot<C>> {
  readonly adapter: PoolAdapter<C>;
  /** The pool's events (for `query`). */
  readonly events: Emitter<PoolEvents<C>>;
  checkin(slot: S, handle: PooledConnection<C>): Promise<void>;
  invalidate(slot: S, error: unknown, soft: boolean): void;
  detach(slot: S, handle: PooledConnection<C>): void;
  closeDetached(slot: S): Promise<void>;
  /** A query failed with a disconnect error: retire the connection. */
  lost(slot: S, error: unknown): void;
  /** A query was aborted or timed out: the connection may be stuck; close it, free its place. */
  stuck(slot: S, error: unknown): void;
  /** Retires every connection (a new generation): their server is not the one wanted. */
  dispose(): void;
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
  readonly #slot: HandleSlot<C>;
  #released = false;
  #returned: Promise<void> | null = null;

  /** Made by the pool at checkout. */
  constructor(pool: PoolInternals<C>, slot: HandleSlot<C>) {
    slotOf ??= (handle) => handle.#slot;
    this.#pool = pool;
    this.#slot = slot;
  }

  /** The underlying connection (edgepool's `Connection`, or another driver's client). */
  get connection(): C {
    return this.#slot.connection;
  }

  /** Data that lives as long as the underlying connection, across checkouts. */
  get info(): Record<string, unknown> {
    return this.#slot.info;
  }

  /** The connection's transaction status, without a round trip. */
  get transactionStatus(): PoolTransactionStatus {
    return this.#pool.adapter.transactionStatus(this.#slot.connection);
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
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>>;
  /** pg's form: the query config object, and parameters that take the place of its `values`. */
  query<Row = Record<string, unknown>>(
    config: QueryConfig,
    params?: readonly unknown[],
  ): Promise<QueryResult<Row>>;
  /**
   * A {@link Cursor} (pg-cursor's shape, as Kysely's `stream()` passes one): binds it to this
   * connection and returns it, to `read(n)` rows from (see `stream()`). Another library's
   * cursor object (pg-cursor's own) throws a TypeError: it needs pg's connection.
   */
  query<T extends QueryCursor>(cursor: T): T;
  query<Row = Record<string, unknown>>(
    sql: string | QueryConfig | QueryCursor,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>> | QueryCursor {
    if (typeof sql !== "string") {
      if (sql instanceof Cursor) return sql.attach(this.#lease());
      if (typeof (sql as QueryCursor)?.read === "function") throw cursorUnsupported();
      try {
        ({ sql, params, options } = fromConfig(sql as QueryConfig, params, options));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const events = this.#pool.events;
    if (events.has("query")) return this.#traced(sql, params, options, events);
    return this.#query(sql, params, options);
  }

  /** `#query`, reported to the pool's `query` listeners (see `PoolEvents.query`). */
  async #traced<Row>(
    sql: string,
    params: readonly unknown[] | undefined,
    options: QueryOptions | undefined,
    events: Emitter<PoolEvents<C>>,
  ): Promise<QueryResult<Row>> {
    const connection = this.#slot.connection;
    const count = Array.isArray(params) ? params.length : 0;
    const started = performance.now();
    try {
      const result = await this.#query<Row>(sql, params, options);
      events.emit("query", {
        sql,
        params: count,
        ms: performance.now() - started,
        command: result.command,
        rowCount: result.rowCount,
        connection,
        processId: processIdOf(connection),
      });
      return result;
    } catch (error) {
      events.emit("query", {
        sql,
        params: count,
        ms: performance.now() - started,
        error,
        connection,
        processId: processIdOf(connection),
      });
      throw error;
    }
  }

  /**
   * The rows of a query as an async iterable, fetched `batchSize` (1000) at a time through a
   * portal: see `Connection.stream()`. The connection stays checked out to this handle.
   *
   * @example
   * ```ts ignore
   * await using conn = await pool.connect();
   * for await (const row of conn.stream("select * from events", [], { batchSize: 500 })) {
   *   console.log(row);
   * }
   * ```
   */
  stream<Row = Record<string, unknown>>(
    sql: string | QueryConfig,
    params?: readonly unknown[] | StreamOptions,
    options?: StreamOptions,
  ): RowStream<Row> {
    return new RowStream<Row>(
      () => Promise.resolve(this.#lease()),
      sql,
      params,
      options,
    );
  }

  /** This handle's connection to read a portal from; it stays checked out after. */
  #lease(): Lease {
    return { host: portalHost(this), release: noop, queryTimeout: this.#pool.queryTimeout };
  }

  /**
   * Runs an `sql` template, as `query(template)` does: each `${value}` a parameter, `sql`
   * fragments spliced in (see the `sql` tag), on the extended protocol as one statement.
   *
   * @example
   * ```ts ignore
   * await using conn = await pool.connect();
   * const { rows } = await conn.sql`select ${41}::int + 1 as n`; // [{ n: 42 }]
   * ```
   */
  sql<Row = Record<string, unknown>>(
    strings: TemplateStringsArray,
    ...values: unknown[]
  ): Promise<QueryResult<Row>> {
    return runTemplate(strings, values, (template) => this.query<Row>(template));
  }

  async #query<Row>(
    sql: string,
    params: readonly unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<QueryResult<Row>> {
    if (this.#released) throw released("run a query on");
    const pool = this.#pool;
    const adapter = pool.adapter;
    if (pool.queryTimeout > 0 && options?.queryTimeout === undefined) {
      options = { ...options, queryTimeout: pool.queryTimeout };
    }
    try {
      return await adapter.query<Row>(this.#slot.connection, sql, params, options);
    } catch (error) {
      // A login that was under way failed: the error is the login's (the statement never
      // ran), as if connecting had failed; the pool counts it so, and drops the connection.
      const login = this.#slot.login;
      if (login !== null && await login.then(() => false, () => true)) throw error;
      if (this.#slot.state !== "out") throw error; // closed (or detached) meanwhile
      const signal = options?.signal;
      if (
        (signal?.aborted && error === signal.reason) ||
        (error as { code?: unknown })?.code === "QUERY_TIMEOUT"
      ) {
        this.#pool.stuck(this.#slot, error);
        throw error;
      }
      if (adapter.wrongServer?.(this.#slot.connection, error)) {
        // The server was demoted: this connection goes now, the others at their next turn.
        this.#pool.invalidate(this.#slot, error, false);
        this.#pool.dispose();
        throw error;
      }
      if (adapter.isDisconnect(error)) {
        this.#pool.lost(this.#slot, error);
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
   * Runs `COPY ... FROM STDIN` on this connection with the data of `source`, as
   * `Connection.copyFrom` does; resolves to the number of rows copied. Rejects with
   * `UNSUPPORTED` on a pool of another driver's connections (`pgAdapter`).
   *
   * @example
   * ```ts ignore
   * await using conn = await pool.connect();
   * const rows = await conn.copyFrom("copy items (id, name) from stdin", ["1\tone\n", "2\ttwo\n"]);
   * ```
   */
  copyFrom(sql: string, source: CopySource, options?: CopyFromOptions): Promise<number> {
    if (this.#released) return Promise.reject(released("run a COPY on"));
    const connection = this.#slot.connection as {
      copyFrom?(sql: string, source: CopySource, options?: CopyFromOptions): Promise<number>;
    };
    if (typeof connection.copyFrom !== "function") return Promise.reject(copyUnsupported());
    return connection.copyFrom(sql, source, options).catch((error) => {
      if (this.#slot.state === "out" && this.#pool.adapter.isDisconnect(error)) {
        this.#pool.lost(this.#slot, error);
      }
      throw error;
    });
  }

  /**
   * Runs `COPY ... TO STDOUT` on this connection, as `Connection.copyTo` does: its data as an
   * async iterable of chunks, or `.readable`. Throws `UNSUPPORTED` on a pool of another
   * driver's connections (`pgAdapter`).
   *
   * @example
   * ```ts ignore
   * await using conn = await pool.connect();
   * for await (const chunk of conn.copyTo("copy items to stdout (format csv)")) {
   *   console.log(chunk.length);
   * }
   * ```
   */
  copyTo(sql: string, options?: CopyToOptions): CopyToStream {
    if (this.#released) throw released("run a COPY on");
    const connection = this.#slot.connection as {
      copyTo?(sql: string, options?: CopyToOptions): CopyToStream;
    };
    if (typeof connection.copyTo !== "function") throw copyUnsupported();
    return connection.copyTo(sql, options);
  }

  /**
   * Returns the connection to the pool. The promise resolves once the pool has it back (reset
   * done where needed) and never rejects. A second release throws `RELEASED`. As in pg, a
   * truthy `error` (an error, or `true`) says the connection is broken: it is closed instead
   * (see `invalidate`).
   */
  release(error?: unknown): Promise<void> {
    if (this.#released) throw released("release");
    if (error) this.#pool.invalidate(this.#slot, error === true ? undefined : error, false);
    return this.#return();
  }

  /**
   * Another handle on this checked-out connection, whose `release()` leaves the connection
   * checked out to this one: for code that takes a checkout where it expects pg's `Pool` and
   * asks it for a connection of its own (Drizzle's `db.transaction()` over
   * `drizzle({ client: await pool.connect() })`), so that it runs on this very connection.
   */
  connect(): Promise<PooledConnection<C>> {
    if (this.#released) return Promise.reject(released("check out from"));
    return Promise.resolve(new PooledConnection(sharedInternals(this.#pool), this.#slot));
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
    this.#pool.invalidate(this.#slot, reason, options?.soft === true);
  }

  /**
   * Takes the connection out of the pool: the pool forgets it (and may open another in its
   * place), while this handle keeps working. Releasing the handle then closes the connection.
   */
  detach(): void {
    if (this.#released) throw released("detach");
    if (this.#slot.state === "out") this.#pool.detach(this.#slot, this);
  }

  #return(): Promise<void> {
    this.#released = true;
    const slot = this.#slot;
    this.#returned = slot.state === "detached"
      ? this.#pool.closeDetached(slot)
      : this.#pool.checkin(slot, this);
    return this.#returned;
  }
}

/**
 * What a second handle on a checked-out connection is given (`PooledConnection.connect`,
 * ContextPool's shares): it queries, invalidates and times out like its owner, but its release
 * leaves the connection with the handle that owns it, and it cannot detach it.
 */
export function sharedInternals<C, S extends HandleSlot<C>>(
  pool: PoolInternals<C, S>,
): PoolInternals<C, S> {
  return {
    adapter: pool.adapter,
    events: pool.events,
    queryTimeout: pool.queryTimeout,
    checkin: () => RESOLVED,
    detach: () => {
      throw new TypeError("A shared connection cannot be detached; detach the one that owns it");
    },
    invalidate: (slot, error, soft) => pool.invalidate(slot, error, soft),
    closeDetached: (slot) => pool.closeDetached(slot),
    lost: (slot, error) => pool.lost(slot, error),
    stuck: (slot, error) => pool.stuck(slot, error),
    dispose: () => pool.dispose(),
  };
}

const RESOLVED: Promise<void> = /* @__PURE__ */ Promise.resolve();

function noop(): void {}

/** The slot behind a handle (for the pool only, which knows the type of its slots). */
export function handleSlot<C, S extends HandleSlot<C> = HandleSlot<C>>(
  handle: PooledConnection<C>,
): S {
  return slotOf!(handle) as S;
}

/** The connection behind `handle` to read a portal from: edgepool's own, while it is held. */
export function portalHost<C>(handle: PooledConnection<C>): PortalHost {
  if (handle.released) throw released("stream from");
  const connection = handle.connection as unknown as PortalHost;
  if (typeof connection?.[PORTAL] !== "function") {
    throw streamUnsupported("on another driver's connection");
  }
  return connection;
}

function copyUnsupported(): ConnectionError {
  return new ConnectionError(
    "UNSUPPORTED",
    "COPY needs edgepool's own connections: this pool's are another driver's (pgAdapter)",
  );
}

function released(action: string): PoolError {
  return new PoolError(
    "RELEASED",
    `Cannot ${action} a connection that was already released to the pool`,
  );
}

/**
 * The backend's process id of an edgepool connection (read once the query has ended: a query
 * riding a login starts before the server has sent it); `undefined` for other drivers'.
 */
function processIdOf(connection: unknown): number | undefined {
  const pid = (connection as { processId?: unknown }).processId;
  return typeof pid === "number" && pid !== 0 ? pid : undefined;
}

function isOwnError(error: unknown): boolean {
  const name = (error as { name?: unknown })?.name;
  return name === "ConnectionError" || name === "PoolError";
}
