/**
 * `Pool`: the public face every pool class shares — checkout, `query`, `transaction`, events,
 * stats, `wait`, `dispose` and `close`. The mechanics live in the engine its class runs on (the
 * state machine of `_engine.ts`; on Workers, `_request_pool.ts`); the classes (`QueuePool`,
 * `NullPool`, ...) choose a {@link Policy} and that engine.
 *
 * @module
 */

import type { PoolDescription } from "../runtime.ts";
import { Emitter } from "../_emitter.ts";
import { PoolError } from "../errors.ts";
import type { QueryResult } from "../result.ts";
import { systemClock } from "./_clock.ts";
import { isTransientConnectError } from "./_connector.ts";
import { Listener } from "./_listener.ts";
import { poolClosed } from "./_waiters.ts";
import { connectionAdapter, type PoolAdapter } from "./adapter.ts";
import type { PoolEvents } from "./events.ts";
import {
  callback,
  type CheckoutOptions,
  count,
  type Creator,
  milliseconds,
  type Policy,
  type PoolOptions,
  type ResolvedOptions,
} from "./options.ts";
import { handleSlot, type PooledConnection, portalHost } from "./pooled_connection.ts";
import { RowStream, type StreamOptions } from "../cursor.ts";
import type { Queryable } from "./queryable.ts";
import { newCounters, type PoolCounters, type PoolGauges, type PoolStats } from "./stats.ts";
import { beginStatement, runTransaction, type TransactionOptions } from "./transaction.ts";
import { fromConfig, type QueryConfig, type QueryOptions } from "../result.ts";
import { runTemplate } from "../sql.ts";
import {
  checkCopy,
  checkSource,
  type CopyFromOptions,
  type CopySource,
  type CopyToOptions,
  CopyToStream,
} from "../copy.ts";
import { type BatchOptions, type BatchQuery, batchStatements, runBatch } from "./batch.ts";

export { type CheckoutOptions } from "./options.ts";

/** Options of `pool.query()`: the query's and the checkout's. */
export type PoolQueryOptions = QueryOptions & { timeout?: number };

const CLOSE_TIMEOUT_MS = 5_000;

/**
 * What a pool class runs on, chosen by the class: the pool's state machine (`Engine`,
 * _engine.ts) under every class but one, and, on Workers, `RequestPool`'s engine
 * (_request_pool.ts), where each caller gets a connection of its own. `Pool` holds the public
 * face over it: its methods, events, counters and validated options.
 *
 * @internal
 */
export interface PoolEngine<C> {
  /** The sizing and lifetime rules (a `resize()` changes them through `applyPolicy`). */
  readonly policy: Policy;
  /** Whether the pool was closed. */
  readonly closed: boolean;
  /** Connections being opened now. */
  readonly connecting: number;
  /** The clock as last read (cheap: for measuring from, not for deadlines). */
  readonly time: number;
  /** Reads the clock. */
  now(): number;
  /** Checks out a connection (see `Pool.checkOut`). */
  connect(
    options: CheckoutOptions | undefined,
    statement?: "shareable" | "alone",
  ): Promise<PooledConnection<C>>;
  /**
   * The checkout `connect` would make at once (an idle connection that needs no check, nobody
   * waiting), made now; `undefined` when there is none. Engines without one leave it out.
   */
  connectNow?(options: CheckoutOptions | undefined): PooledConnection<C> | undefined;
  /**
   * Whether a `pool.query` statement may share a connection with other statements (engines
   * that pipeline them: see `Pool.query`); if so, `joinShared` runs it on a busy connection
   * with room, or, when there is none to join, `startShared` on a checkout of its own.
   */
  shareable(sql: string, options: PoolQueryOptions | undefined): boolean;
  /** See `shareable`: the connection joined and the outcome, or `undefined`. */
  joinShared<Row>(
    sql: string,
    params: readonly unknown[] | undefined,
    options: PoolQueryOptions | undefined,
  ): [PooledConnection<C>, Promise<QueryResult<Row>>] | undefined;
  /** See `shareable`. */
  startShared<Row>(
    on: PooledConnection<C>,
    sql: string,
    params: readonly unknown[] | undefined,
    options: PoolQueryOptions | undefined,
  ): Promise<QueryResult<Row>>;
  /** Another handle on `owner`'s connection (ContextPool; engines that pool connections). */
  share(owner: PooledConnection<C>): PooledConnection<C>;
  /** The gauges of `stats()`. */
  gauges(): PoolGauges;
  /** Resolves when `min` connections are open (see `Pool.wait`). */
  ready(timeout: number): Promise<void>;
  /** See `Pool.dispose`. */
  dispose(): void;
  /** Closes the pool (see `Pool.close`); idempotent. */
  close(timeout: number): Promise<void>;
  /** Takes a changed policy (`resize()`). */
  applyPolicy(policy: Policy): void;
}

/** An engine class (see {@link PoolEngine}). @internal */
export type EngineClass = new <C>(
  creator: Creator<C>,
  settings: ResolvedOptions<C>,
  policy: Policy,
  counters: PoolCounters,
  events: Emitter<PoolEvents<C>>,
  hooks: EngineHooks,
) => PoolEngine<C>;

/** What an engine asks of the pool class above it. @internal */
export interface EngineHooks {
  /** How full the pool is, in the class's own terms, for error messages. */
  describeCapacity(): string;
  /** Background reconnecting gave up. */
  reconnectFailed(): void;
}

/**
 * The base of every pool class. Not used directly: pick `QueuePool`, `NullPool`,
 * `StaticPool`, `AssertionPool` or `ContextPool`.
 */
export abstract class Pool<C> implements Queryable {
  /** The connection factory, for `recreate()`. */
  protected readonly creator: Creator<C>;
  /** The options as given, for `recreate()`. */
  protected readonly givenOptions: PoolOptions<C>;
  /** Validated options.
   *
   * @internal
   */
  protected readonly settings: ResolvedOptions<C>;
  readonly #events = new Emitter<PoolEvents<C>>();
  readonly #counters: PoolCounters = newCounters();
  readonly #engine: PoolEngine<C>;
  #closeDone: Promise<void> | null = null;
  /** `listen()`'s connection and channels, made on the first `listen()`. */
  #listener: Listener<C> | null = null;

  /** Validates the shared options; `policy` and the `engine` to run on come from the subclass. */
  protected constructor(
    creator: Creator<C>,
    options: PoolOptions<C> | undefined,
    policy: Policy,
    engine: EngineClass,
  ) {
    if (typeof creator !== "function") {
      throw new TypeError(`A pool needs a creator function, not ${typeof creator}`);
    }
    const o = options ?? {};
    if (typeof o !== "object") throw new TypeError("Pool options must be an object");
    this.creator = creator;
    this.givenOptions = o;
    this.settings = resolveOptions(o, policy.kind);
    this.#engine = new engine(creator, this.settings, policy, this.#counters, this.#events, {
      describeCapacity: () => this.describeCapacity(),
      reconnectFailed: () => this.reconnectFailed(),
    });
  }

  /** The sizing and lifetime rules of this pool class.
   *
   * @internal
   */
  protected get policy(): Policy {
    return this.#engine.policy;
  }

  /** Whether the pool was closed. */
  get closed(): boolean {
    return this.#engine.closed;
  }

  /**
   * Checks out a connection. One deadline (`timeout`, default the pool's) covers waiting in the
   * queue, connecting and the health check; waiters are served first come, first served.
   */
  connect(options?: CheckoutOptions): Promise<PooledConnection<C>> {
    return this.checkOut(options);
  }

  /**
   * How this pool class checks out, for `connect` and, with `statement`, for a checkout whose
   * first act is a query (`query`, `transaction`'s BEGIN, `batch`): that one may take a new
   * connection whose login is still under way, the query riding behind it, and the login's
   * failure is then that query's error. Classes that check out their own way (ContextPool,
   * AssertionPool) override this.
   *
   * @internal
   */
  protected checkOut(
    options: CheckoutOptions | undefined,
    statement?: "alone",
  ): Promise<PooledConnection<C>> {
    return this.#engine.connect(options, statement);
  }

  /**
   * Checks out a connection, runs one query, and returns the connection. When every connection
   * the pool may open is checked out and nobody waits for one, a single statement (no `;`, not
   * one that opens or ends a transaction or sets session state, no `signal`, no
   * `queryTimeout`: interrupting it would close the connection under its neighbours) is
   * pipelined onto the busy connection with the fewest statements in flight instead of waiting,
   * up to `queryPipeline` per connection: it still runs as its own implicit transaction.
   *
   * A statement that leaves its connection inside a transaction (`BEGIN`, or several
   * statements the last of which leaves one open) is rolled back and rejects with
   * `TRANSACTION_LEFT_OPEN`: each `pool.query` may run on another connection, so the rest of
   * that transaction would not be in it. Use `transaction()`, or `connect()` for one
   * connection of your own.
   */
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>>;
  /** pg's form: the query config object, and parameters that take the place of its `values`. */
  query<Row = Record<string, unknown>>(
    config: QueryConfig & { timeout?: number },
    params?: readonly unknown[],
  ): Promise<QueryResult<Row>>;
  async query<Row = Record<string, unknown>>(
    sql: string | (QueryConfig & { timeout?: number }),
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>> {
    if (typeof sql !== "string") ({ sql, params, options } = fromConfig(sql, params, options));
    const engine = this.#engine;
    const started = engine.time;
    let on: PooledConnection<C>;
    let outcome: Promise<QueryResult<Row>>;
    if (engine.shareable(sql, options)) {
      const joined = engine.joinShared<Row>(sql, params, options);
      if (joined !== undefined) [on, outcome] = joined;
      else {
        // The engine's checkout, not `this.checkOut`: the classes that override it
        // (ContextPool, AssertionPool) do not pipeline.
        // Checked out at once where it can be, so that the statements of the callers behind
        // this one in the same tick join it and leave in one write with it.
        on = engine.connectNow?.(options) ?? await engine.connect(options, "shareable");
        outcome = engine.startShared<Row>(on, sql, params, options);
      }
    } else {
      on = await this.checkOut(options, "alone");
      outcome = releasedClosed(on, on.query<Row>(sql, params, options), this.settings.adapter);
    }
    if (handleSlot(on).login === null) return outcome;
    return this.#afterLogin(on, outcome, options, started, (timeout) => {
      return this.query<Row>(sql, params, { ...options, timeout });
    });
  }

  /**
   * Runs an `sql` template, as `query(template)` does: each `${value}` a parameter, `sql`
   * fragments spliced in (see the `sql` tag), on the extended protocol as one statement.
   *
   * @example
   * ```ts ignore
   * import { createPool } from "@edgepool/edgepool";
   * await using pool = createPool("postgres://app:secret@localhost/app");
   * const { rows } = await pool.sql`select ${41}::int + 1 as n`; // [{ n: 42 }]
   * ```
   */
  sql<Row = Record<string, unknown>>(
    strings: TemplateStringsArray,
    ...values: unknown[]
  ): Promise<QueryResult<Row>> {
    return runTemplate(strings, values, (template) => this.query<Row>(template));
  }

  /**
   * The rows of a query as an async iterable, fetched `batchSize` (1000) at a time through a
   * portal (see `Connection.stream()`): a connection is checked out when the iteration starts
   * (`options` holds the checkout's too: `timeout`) and returned when it ends, on every path:
   * the last row read, a `break`, an error thrown in the loop or by the server, an abort.
   *
   * @example
   * ```ts ignore
   * import { createPool } from "@edgepool/edgepool";
   * await using pool = createPool("postgres://app:secret@localhost/app");
   * for await (const row of pool.stream("select * from events where day = $1", ["2026-12-07"])) {
   *   console.log(row);
   * }
   * ```
   */
  stream<Row = Record<string, unknown>>(
    sql: string | QueryConfig,
    params?: readonly unknown[] | StreamOptions,
    options?: StreamOptions & CheckoutOptions,
  ): RowStream<Row> {
    // A template's options may stand in the place of parameters.
    const checkout = options ?? (Array.isArray(params) ? undefined : params as CheckoutOptions);
    return new RowStream<Row>(
      async () => {
        const conn = await this.checkOut(checkout, "alone");
        try {
          return {
            host: portalHost(conn),
            release: () => conn.release(),
            queryTimeout: this.settings.queryTimeout,
          };
        } catch (error) {
          await conn.release();
          throw error;
        }
      },
      sql,
      params,
      options,
    );
  }

  /**
   * The outcome of a statement that came first on its checkout (`query`, `transaction`,
   * `batch`) on a connection handed over with its login under way: should that login fail for
   * a reason that may pass (a server restarting: see `pipelineConnect`), the statement never
   * ran: it runs `again`, within what is left of the checkout deadline (from `started`, the
   * pool's last clock reading), on a connection whose login is done (while connecting fails
   * the pool hands out no early login).
   */
  #afterLogin<T>(
    on: PooledConnection<C>,
    outcome: Promise<T>,
    options: CheckoutOptions | undefined,
    started: number,
    again: (timeout: number) => Promise<T>,
  ): Promise<T> {
    const engine = this.#engine;
    return outcome.catch((error) => {
      if (handleSlot(on).login === null || !isTransientConnectError(error)) throw error;
      const left = (options?.timeout ?? this.settings.timeout) - (engine.now() - started);
      if (left <= 0) throw error;
      return again(left);
    });
  }

  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection, and rolls back if it throws. If the
   * server turns the COMMIT into a rollback (a statement failed and `fn` caught the error),
   * it rejects with `ROLLED_BACK`: a lost write is never silent.
   */
  async transaction<T>(
    fn: (connection: PooledConnection<C>) => Promise<T>,
    options?: TransactionOptions & CheckoutOptions,
  ): Promise<T> {
    const started = this.#engine.time;
    const on = await this.checkOut(options, "alone");
    const outcome = released(on, runTransaction(on, fn, options));
    if (handleSlot(on).login === null) return outcome;
    return this.#afterLogin(on, outcome, options, started, (timeout) => {
      return this.transaction(fn, { ...options, timeout });
    });
  }

  /**
   * Runs `queries` as one transaction on one connection: BEGIN (with `isolation`, `readOnly`,
   * `deferrable`), every statement and COMMIT are written together and answered in one round
   * trip. Resolves with the results in order; if a statement fails, everything is rolled back
   * and the batch rejects with that statement's error. Each entry is one statement (SQL text,
   * or `{ sql, params }`), as with `HttpPool.batch()`.
   *
   * @example
   * ```ts ignore
   * const [debit, credit] = await pool.batch([
   *   { sql: "update accounts set balance = balance - $1 where id = $2", params: [10, 1] },
   *   { sql: "update accounts set balance = balance + $1 where id = $2", params: [10, 2] },
   * ], { isolation: "serializable" });
   * ```
   */
  async batch<Row = Record<string, unknown>>(
    queries: readonly BatchQuery[],
    options?: BatchOptions,
  ): Promise<QueryResult<Row>[]> {
    const statements = batchStatements(queries);
    const begin = beginStatement(options);
    if (statements.length === 0) return [];
    // All go out in one flight: one refused before it is written would leave the rest to commit.
    const check = this.settings.adapter.checkParams;
    if (check !== undefined) { for (const s of statements) check(s.params); }
    const started = this.#engine.time;
    const on = await this.checkOut(options, "alone");
    const outcome = released(on, runBatch<C, Row>(on, begin, statements, options));
    if (handleSlot(on).login === null) return outcome;
    return this.#afterLogin(on, outcome, options, started, (timeout) => {
      return this.batch<Row>(queries, { ...options, timeout });
    });
  }

  /**
   * Checks out a connection, runs `COPY ... FROM STDIN` on it with the data of `source` (see
   * `Connection.copyFrom`), and returns the connection, on every path. Resolves to the number
   * of rows copied.
   *
   * @example
   * ```ts ignore
   * import { createPool } from "@edgepool/edgepool";
   * await using pool = createPool("postgres://app:secret@localhost/app");
   * const rows = await pool.copyFrom(
   *   "copy items (id, name) from stdin (format csv)",
   *   ["1,one\n", "2,two\n"],
   * );
   * ```
   */
  async copyFrom(
    sql: string,
    source: CopySource,
    options?: CopyFromOptions & CheckoutOptions,
  ): Promise<number> {
    checkCopy("copyFrom", sql, options, 1);
    checkSource(source);
    const on = await this.checkOut(options);
    return released(on, on.copyFrom(sql, source, options));
  }

  /**
   * Runs `COPY ... TO STDOUT` on a connection of its own (see `Connection.copyTo`): checked
   * out when the consumption starts, returned when it ends, on every path (the end, a
   * `break`, a consumer that throws, an abort).
   *
   * @example
   * ```ts ignore
   * import { createPool } from "@edgepool/edgepool";
   * await using pool = createPool("postgres://app:secret@localhost/app");
   * // In a request handler: the table as a CSV download, streamed.
   * const body = pool.copyTo("copy items to stdout (format csv)").readable;
   * return new Response(body, { headers: { "content-type": "text/csv" } });
   * ```
   */
  copyTo(sql: string, options?: CopyToOptions & CheckoutOptions): CopyToStream {
    checkCopy("copyTo", sql, options, 1);
    return new CopyToStream(() => copyOnCheckout(this.checkOut(options), sql, options));
  }

  /** Subscribes to a pool event; returns the function that unsubscribes. */
  on<K extends keyof PoolEvents<C>>(
    event: K,
    listener: (value: PoolEvents<C>[K]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  /**
   * Resolves when `min` connections are open. Rejects at once when connecting fails for a
   * reason retrying will not fix (a wrong password, a missing database), and with
   * `POOL_TIMEOUT` after `timeout` ms (default: the pool's).
   */
  wait(options?: { timeout?: number }): Promise<void> {
    return this.#engine.ready(milliseconds(options?.timeout, "timeout", this.settings.timeout));
  }

  /**
   * Closes every idle connection now, and every checked-out one when it is returned; the pool
   * stays usable and opens fresh connections (SQLAlchemy's `dispose()`).
   */
  dispose(): void {
    this.#engine.dispose();
  }

  /** A new, empty pool of the same class with the same creator and options. */
  abstract recreate(): Pool<C>;

  /**
   * Runs `fn` with a pool of its own for one request, for runtimes where I/O objects cannot
   * cross requests (Cloudflare Workers): a new pool of the same class, creator and options
   * that opens nothing until used, is used only by `fn`, and is closed once `fn` settles. The
   * close (connections still checked out included) is handed to `ctx.waitUntil`, so the
   * response does not wait for it; without `ctx` it is awaited. This pool itself holds no
   * connection for the request, so it can live in module scope.
   *
   * @example
   * ```ts ignore
   * const pool = createPool(env.DATABASE_URL); // module scope
   * export default {
   *   fetch: (request, env, ctx) =>
   *     pool.scope(ctx, async (db) => Response.json((await db.query("select 1 as one")).rows)),
   * };
   * ```
   */
  async scope<T>(
    ctx: { waitUntil(promise: Promise<unknown>): void } | undefined,
    fn: (pool: Pool<C>) => T | Promise<T>,
  ): Promise<T> {
    if (typeof fn !== "function") throw new TypeError("scope(ctx, fn) needs a function");
    if (this.closed) {
      throw new PoolError("POOL_CLOSED", `${this.settings.name} is closed`);
    }
    const Class = this.constructor as new (creator: Creator<C>, options: PoolOptions<C>) => Pool<C>;
    const scoped = new Class(this.creator, {
      ...this.givenOptions,
      name: `${this.settings.name} (scope)`,
      min: 0,
      onClose: undefined,
    } as PoolOptions<C>);
    try {
      return await fn(scoped);
    } finally {
      const closing = scoped.close({ timeout: 0 }).catch((error) => {
        this.settings.logger.warn?.(`${this.settings.name}: closing a scope failed`, { error });
      });
      if (ctx !== undefined) ctx.waitUntil(closing);
      else await closing;
    }
  }

  /**
   * Closes the pool: waiters and later checkouts fail with `POOL_CLOSED`, idle connections close
   * now, checked-out ones when returned, and after `timeout` ms (default 5000) they are closed
   * anyway. Idempotent; resolves when every connection is closed.
   */
  close(options?: { timeout?: number }): Promise<void> {
    if (this.#closeDone !== null) return this.#closeDone;
    const timeout = milliseconds(options?.timeout, "timeout", CLOSE_TIMEOUT_MS);
    const onClose = this.settings.onClose;
    this.#closeDone = Promise.all([this.#engine.close(timeout), this.#listener?.close()])
      .then(() => onClose?.());
    return this.#closeDone;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Listens to notifications on `channel` (`NOTIFY channel, 'payload'`, `pool.notify()`): `fn`
   * gets each payload, in the order the server sent them. The pool keeps one connection of its
   * own for this (made with its creator, never checked out) while anyone listens, and when it is
   * lost connects again after a backoff (250 ms doubling to 5 s) and LISTENs again to every
   * channel; notifications sent while it was gone are lost, as PostgreSQL does not keep them.
   * Resolves, once the server listens, with the function that stops.
   *
   * @example
   * ```ts ignore
   * const unlisten = await pool.listen("orders", (payload) => console.log("new order", payload));
   * await pool.notify("orders", "42");
   * await unlisten();
   * ```
   */
  listen(
    channel: string,
    fn: (payload: string, channel: string) => void,
  ): Promise<() => Promise<void>> {
    if (this.closed) return Promise.reject(poolClosed(this.settings.name));
    this.#listener ??= new Listener(this.creator, this.settings, this.#events);
    return this.#listener.listen(channel, fn);
  }

  /** Sends a notification on `channel` (`pg_notify`), with `payload` (default `""`). */
  async notify(channel: string, payload = ""): Promise<void> {
    if (typeof channel !== "string" || typeof payload !== "string") {
      throw new TypeError("notify(channel, payload) takes two strings");
    }
    await this.query("select pg_notify($1, $2)", [channel, payload]);
  }

  /** Same as `close()`: pg's name, which ORMs call (Kysely's `destroy()`). */
  end(): Promise<void> {
    return this.close();
  }

  /** Counters and gauges: psycopg_pool's names in camelCase, plus SQLAlchemy's. */
  stats(): PoolStats {
    return { ...this.#counters, ...this.#engine.gauges() };
  }

  /**
   * What this pool is: its class, name and connection limit, and, for a pool from
   * `createPool`, the runtime it detected, the transport, the pooler, and why it chose each.
   */
  describe(): PoolDescription {
    return {
      poolClass: this.policy.kind,
      name: this.settings.name,
      maxConnections: this.policy.max,
      ...structuredClone(this.settings.origin),
    };
  }

  /** One readable line about the pool's state. */
  status(): string {
    const g = this.#engine.gauges();
    return `${this.settings.name}: ${g.poolSize} connections (${g.checkedIn} idle, ` +
      `${g.checkedOut} checked out, ${this.#engine.connecting} connecting) of ${
        describeLimit(this.policy.max)
      }, ${g.requestsWaiting} waiting${this.closed ? ", closed" : ""}`;
  }

  /**
   * Another handle on the connection behind `owner` (ContextPool): it queries and invalidates
   * like the owner, but releasing it leaves the connection checked out to the owner.
   */
  protected share(owner: PooledConnection<C>): PooledConnection<C> {
    return this.#engine.share(owner);
  }

  /** What the pool can hold, for the timeout message: subclasses say it their way. */
  protected describeCapacity(): string {
    return `${this.gauges().checkedOut} of ${describeLimit(this.policy.max)} connections in use`;
  }

  /**
   * Applies a changed policy (`resize()`): closes surplus idle connections, serves waiters.
   *
   * @internal
   */
  protected applyPolicy(policy: Policy): void {
    this.#engine.applyPolicy(policy);
  }

  /** The gauges of `stats()`, without the counters. */
  protected gauges(): PoolGauges {
    return this.#engine.gauges();
  }

  /** Called when background reconnecting gives up (psycopg's `reconnect_failed`). */
  protected reconnectFailed(): void {}
}

/**
 * A `pool.query` statement's `outcome`, once `connection` is released after it; a statement
 * that left the connection inside a transaction is rolled back (whatever `resetOnReturn`
 * says) and rejects with `TRANSACTION_LEFT_OPEN`.
 */
async function releasedClosed<C, Row>(
  connection: PooledConnection<C>,
  outcome: Promise<QueryResult<Row>>,
  adapter: PoolAdapter<C>,
): Promise<QueryResult<Row>> {
  let result: QueryResult<Row>;
  try {
    result = await outcome;
  } catch (error) {
    connection.release();
    throw error;
  }
  const status = adapter.transactionStatus(connection.connection);
  if (status !== "transaction" && status !== "failed") {
    connection.release();
    return result;
  }
  try {
    await connection.query("ROLLBACK");
    connection.release();
  } catch (error) {
    connection.release(error ?? true);
  }
  throw new PoolError(
    "TRANSACTION_LEFT_OPEN",
    "pool.query left its connection inside a transaction, which was rolled back: each " +
      "pool.query may run on another connection, so the rest of the transaction would not be " +
      "in it. Use pool.transaction(fn), or pool.connect() for a connection of your own",
  );
}

/** `outcome`, once `connection` is released after it. */
/** `copyTo` on the checkout `on`, which goes back to the pool when the iteration ends. */
async function* copyOnCheckout<C>(
  on: Promise<PooledConnection<C>>,
  sql: string,
  options: CopyToOptions | undefined,
): AsyncGenerator<Uint8Array, void, undefined> {
  const connection = await on;
  try {
    yield* connection.copyTo(sql, options);
  } finally {
    await connection.release();
  }
}

async function released<C, T>(connection: PooledConnection<C>, outcome: Promise<T>): Promise<T> {
  try {
    return await outcome;
  } finally {
    connection.release();
  }
}

function describeLimit(max: number): string {
  return max === Infinity ? "no limit" : String(max);
}

/** Validates the options every pool takes and fills in their defaults. */
function resolveOptions<C>(o: PoolOptions<C>, className: string): ResolvedOptions<C> {
  const resetOnReturn = o.resetOnReturn ?? "rollback";
  if (resetOnReturn !== "rollback" && resetOnReturn !== "commit" && resetOnReturn !== "none") {
    throw new TypeError(
      `resetOnReturn must be "rollback", "commit" or "none", not ${String(resetOnReturn)}`,
    );
  }
  const leakDetectionThreshold = milliseconds(
    o.leakDetectionThreshold,
    "leakDetectionThreshold",
    0,
  );
  return {
    adapter: (o.adapter ?? connectionAdapter) as PoolAdapter<C>,
    timeout: milliseconds(o.timeout, "timeout", 30_000),
    prePing: o.prePing === true,
    checkTimeout: Math.max(1, milliseconds(o.checkTimeout, "checkTimeout", 5_000)),
    queryTimeout: milliseconds(o.queryTimeout, "queryTimeout", 0),
    check: callback(o.check, "check"),
    configure: callback(o.configure, "configure"),
    reset: callback(o.reset, "reset"),
    resetOnReturn,
    maxWaiting: count(o.maxWaiting, "maxWaiting", 0),
    leakDetectionThreshold,
    idleInTransactionThreshold: milliseconds(
      o.idleInTransactionThreshold,
      "idleInTransactionThreshold",
      60_000,
    ),
    queryPipeline: (o.adapter ?? connectionAdapter).pipelines === true
      ? Math.max(1, count(o.queryPipeline, "queryPipeline", 16))
      : 1,
    origin: o.origin,
    recordStacks: o.recordStacks ?? leakDetectionThreshold > 0,
    logger: o.logger ?? {},
    name: o.name ?? className,
    clock: o.clock ?? systemClock,
    maintenanceInterval: Math.max(
      10,
      milliseconds(o.maintenanceInterval, "maintenanceInterval", 1000),
    ),
    onClose: callback(o.onClose, "onClose"),
  };
}
