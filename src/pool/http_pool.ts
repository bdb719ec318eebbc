/**
 * `HttpPool`: the pool-shaped face of the HTTP transport. There are no connections to pool (each
 * query is one `POST /sql`; the pooling happens behind the endpoint, in Neon's proxy or
 * edgepool's gateway), so it keeps what a pool means to its users: `query`, `batch`, stats,
 * events and a `close()` that waits for what is in flight. `HttpCheckout`: what `connect()`
 * gives, for code that always checks out (Kysely), with no session behind it.
 *
 * @module
 */

import type { PoolDescription, PoolOrigin } from "../runtime.ts";
import { Emitter } from "../_emitter.ts";
import { ConnectionError, PoolError, PoolEventError } from "../errors.ts";
import { HttpClient, type HttpClientOptions, serializersOverHttp } from "../http_client.ts";
import { fromConfig, type QueryConfig, type QueryCursor, type QueryResult } from "../result.ts";
import { type RowStream, type StreamOptions, streamUnsupported } from "../cursor.ts";
import { runTemplate } from "../sql.ts";
import { redactUrl } from "../url.ts";
import type { BatchOptions, BatchQuery } from "./batch.ts";
import type { CheckoutOptions, PoolLogger } from "./options.ts";
import type { PoolQueryOptions } from "./pool.ts";
import type { Queryable } from "./queryable.ts";

/** Options of {@link HttpPool}. */
export interface HttpPoolOptions extends HttpClientOptions {
  /** A name for messages and logs. Default `"HttpPool"`. */
  name?: string;
  /** Where failed requests are reported (`warn`). Default: nowhere. */
  logger?: PoolLogger;
  /** How `createPool` chose this pool, for `describe()`. Default: none. */
  origin?: PoolOrigin;
}

/** A snapshot from `HttpPool.stats()`. Counters run from the pool's creation. */
export interface HttpPoolStats {
  /** Requests sent (a batch is one request). */
  requestsNum: number;
  /** Requests that failed, whatever the reason (a SQL error included). */
  requestsErrors: number;
  /** Requests sent and not yet answered. */
  requestsInFlight: number;
  /** Total time of the requests answered, in ms. */
  requestsMs: number;
  /** Statements sent (those of batches included). */
  statementsNum: number;
}

/** Events of {@link HttpPool}: name → what the listener receives. */
export interface HttpPoolEvents {
  /** A request was answered, or failed (`error` set). */
  request: { kind: "query" | "batch"; statements: number; ms: number; error?: unknown };
  /**
   * A request failed for a reason other than the SQL: the endpoint could not be reached,
   * answered an HTTP error, or sent something that is not Neon's JSON. The caller gets the
   * error too; this is where to log them.
   */
  error: PoolEventError & { context: "query" | "batch" };
}

const CLOSE_TIMEOUT_MS = 5_000;

const NO_SESSION = "interactive transactions need a socket transport (TCP or WebSocket); over " +
  "HTTP use pool.batch([...]) for a transaction";

// Blanks and comments before a statement's first keyword. A nested comment ends early here;
// the command tag checked after the statement catches what this misses.
const LEADING = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/;
const OPENS_TRANSACTION = /^(?:begin|start\s+transaction)\b/i;

/** Whether `sql` is `BEGIN` or `START TRANSACTION`. */
function opensTransaction(sql: string): boolean {
  return OPENS_TRANSACTION.test(sql.slice(LEADING.exec(sql)![0].length));
}

/**
 * The error of a statement that would open a transaction: over HTTP each statement is its own
 * request, so the statements after it would not be in the transaction.
 */
function transactionRefused(where: string): PoolError {
  return new PoolError(
    "UNSUPPORTED",
    `Cannot open a transaction with ${where}: each query over HTTP is one request with no ` +
      `session, so the statements after BEGIN would not be in the transaction; ${NO_SESSION}`,
  );
}

/**
 * A pool over Neon's HTTP protocol: `query()` and `batch()` as on a socket pool, each one
 * `POST` to the SQL endpoint. HTTP has no session to hold a transaction open across round
 * trips: `connect()` gives an {@link HttpCheckout} whose queries are requests of their own
 * (enough for code that always checks out, as Kysely does), and a statement that would open
 * a transaction (`BEGIN`, `START TRANSACTION`, `transaction()`) is refused with `UNSUPPORTED`.
 * A transaction over HTTP is a `batch()`.
 *
 * @example
 * ```ts ignore
 * import { HttpPool } from "@edgepool/edgepool/transports/http";
 * await using pool = new HttpPool("postgres://app:secret@db.example.com/app", {
 *   endpoint: "https://gateway.example.com/sql",
 * });
 * const { rows } = await pool.query("select $1::int + 1 as n", [41]);
 * const [, moved] = await pool.batch([
 *   { sql: "update accounts set balance = balance - 10 where id = $1", params: [1] },
 *   { sql: "update accounts set balance = balance + 10 where id = $1", params: [2] },
 * ], { isolation: "serializable" });
 * ```
 */
export class HttpPool implements Queryable {
  readonly #client: HttpClient;
  readonly #name: string;
  readonly #logger: PoolLogger;
  readonly #origin: PoolOrigin | undefined;
  readonly #events = new Emitter<HttpPoolEvents>();
  /** Requests in flight, with the controller that aborts each. */
  readonly #inFlight = new Map<Promise<unknown>, AbortController>();
  readonly #stats: Omit<HttpPoolStats, "requestsInFlight"> = {
    requestsNum: 0,
    requestsErrors: 0,
    requestsMs: 0,
    statementsNum: 0,
  };
  #closeDone: Promise<void> | null = null;

  /**
   * Checks the URL and options; sends nothing.
   *
   * @throws {TypeError} For a malformed URL (the message hides the password) or a bad option.
   */
  constructor(url: string | URL, options?: HttpPoolOptions) {
    const o = options ?? {};
    if (typeof o !== "object") throw new TypeError("HttpPool options must be an object");
    if (o.name !== undefined && typeof o.name !== "string") {
      throw new TypeError("options.name must be a string");
    }
    if ((o as { serializers?: unknown }).serializers !== undefined) {
      throw serializersOverHttp("options.serializers");
    }
    this.#client = new HttpClient(url, o);
    this.#name = o.name ?? "HttpPool";
    this.#logger = o.logger ?? {};
    this.#origin = o.origin;
  }

  /** What this pool is; for one from `createPool`, also the runtime and why it was chosen. */
  describe(): PoolDescription {
    return {
      poolClass: "HttpPool",
      name: this.#name,
      maxConnections: Infinity,
      ...structuredClone(this.#origin),
    };
  }

  /** The SQL endpoint requests go to. */
  get endpoint(): string {
    return this.#client.endpoint;
  }

  /** Whether the pool was closed. */
  get closed(): boolean {
    return this.#closeDone !== null;
  }

  /**
   * Runs one statement (one `POST`). `signal` aborts the request; `timeout`, a checkout
   * deadline on socket pools, does not apply. `BEGIN` and `START TRANSACTION` are refused
   * with `UNSUPPORTED` before anything is sent: the next query would not be in the
   * transaction. Use `batch()`.
   */
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>>;
  /** pg's form: the query config object, and parameters that take the place of its `values`. */
  query<Row = Record<string, unknown>>(
    config: QueryConfig,
    params?: readonly unknown[],
  ): Promise<QueryResult<Row>>;
  query<Row = Record<string, unknown>>(
    sql: string | QueryConfig,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>> {
    return this.#query<Row>("pool.query()", sql, params, options);
  }

  /**
   * Throws a `ConnectionError` `UNSUPPORTED`: rows are streamed through a portal, which lives
   * in a session, and over HTTP each query is a request of its own. Stream over a socket pool
   * (TCP or WebSocket), or read the rows whole with `query()`.
   */
  stream<Row = Record<string, unknown>>(
    _sql: string | QueryConfig,
    _params?: readonly unknown[] | StreamOptions,
    _options?: StreamOptions,
  ): RowStream<Row> {
    throw streamUnsupported(OVER_HTTP);
  }

  /**
   * Runs an `sql` template, as `query(template)` does: each `${value}` a parameter, `sql`
   * fragments spliced in (see the `sql` tag), on the extended protocol as one statement.
   *
   * @example
   * ```ts ignore
   * import { HttpPool } from "@edgepool/edgepool/transports/http";
   * await using pool = new HttpPool("postgres://app:secret@db.example.com/app");
   * const { rows } = await pool.sql`select ${41}::int + 1 as n`; // [{ n: 42 }]
   * ```
   */
  sql<Row = Record<string, unknown>>(
    strings: TemplateStringsArray,
    ...values: unknown[]
  ): Promise<QueryResult<Row>> {
    return runTemplate(strings, values, (template) => this.query<Row>(template));
  }

  /** Both forms of `query`, for the pool and its checkouts; `where` names the caller. */
  #query<Row>(
    where: string,
    sql: string | QueryConfig,
    params: readonly unknown[] | undefined,
    options: PoolQueryOptions | undefined,
  ): Promise<QueryResult<Row>> {
    if (typeof sql !== "string") {
      try {
        ({ sql, params, options } = fromConfig(sql, params, options));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const text = sql as string;
    if (opensTransaction(text)) {
      return Promise.reject(transactionRefused(where));
    }
    const { signal, rowMode, types, name, serializers } = options ?? {};
    return this.#run("query", 1, signal, async (aborted) => {
      const result = await this.#client.query<Row>(text, params, {
        rowMode,
        types,
        name,
        serializers,
        signal: aborted,
      });
      // What the text check missed (a nested comment): the server began a transaction, which
      // the endpoint rolls back as the request ends.
      if (result.command === "BEGIN" || result.command.startsWith("START")) {
        throw transactionRefused(where);
      }
      return result;
    });
  }

  /**
   * Runs statements as one transaction (one `POST`), as `Pool.batch()` does on a socket pool:
   * the results in order, or everything rolled back and the failing statement's error.
   */
  batch<Row = Record<string, unknown>>(
    queries: readonly BatchQuery[],
    options?: BatchOptions,
  ): Promise<QueryResult<Row>[]> {
    const statements = Array.isArray(queries) ? queries.length : 0;
    return this.#run(
      "batch",
      statements,
      options?.signal,
      (signal) => this.#client.batch<Row>(queries, { ...options, signal }),
    );
  }

  /**
   * A checkout with no session behind it: each query on it is one request, as
   * `pool.query()`, so code that always checks out (Kysely) runs plain queries. It opens no
   * transaction (`BEGIN` on it is refused with `UNSUPPORTED`: use `batch()`). There is nothing
   * to wait for: `options` (a socket pool's `signal` and `timeout`) are accepted and unused.
   * Rejects with `POOL_CLOSED` once the pool is closed.
   *
   * @example
   * ```ts ignore
   * import { HttpPool } from "@edgepool/edgepool/transports/http";
   * await using pool = new HttpPool("postgres://app:secret@db.example.com/app");
   * await using conn = await pool.connect();
   * const { rows } = await conn.query("select $1::int + 1 as n", [41]);
   * ```
   */
  connect(_options?: CheckoutOptions): Promise<HttpCheckout> {
    if (this.closed) {
      return Promise.reject(
        new PoolError("POOL_CLOSED", `Cannot check out a connection: ${this.#name} is closed`),
      );
    }
    const query = this.#query.bind(this) as HttpCheckoutQuery;
    return Promise.resolve(new HttpCheckout(query));
  }

  /** Rejects with `UNSUPPORTED`: over HTTP there is no session to COPY on. */
  copyFrom(_sql: string, _source: unknown, _options?: unknown): Promise<number> {
    return Promise.reject(copyOverHttp());
  }

  /** Throws `UNSUPPORTED`: over HTTP there is no session to COPY on. */
  copyTo(_sql: string, _options?: unknown): never {
    throw copyOverHttp();
  }

  /** Rejects with `UNSUPPORTED`: HTTP has no session to hold a transaction. Use `batch()`. */
  transaction(_fn: unknown, _options?: unknown): Promise<never> {
    return Promise.reject(
      new PoolError("UNSUPPORTED", `pool.transaction() is not available over HTTP: ${NO_SESSION}`),
    );
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof HttpPoolEvents>(
    event: K,
    listener: (value: HttpPoolEvents[K]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  /** Counters since creation, and the requests in flight now. */
  stats(): HttpPoolStats {
    return { ...this.#stats, requestsInFlight: this.#inFlight.size };
  }

  /** One readable line about the pool's state. */
  status(): string {
    const s = this.stats();
    return `${this.#name}: ${s.requestsInFlight} requests in flight, ${s.requestsNum} sent, ` +
      `${s.requestsErrors} failed, to ${redactUrl(this.#client.endpoint)}` +
      (this.closed ? ", closed" : "");
  }

  /**
   * Closes the pool: later calls reject with `POOL_CLOSED`; requests in flight finish, and
   * after `timeout` ms (default 5000) are aborted (rejecting with `POOL_CLOSED`). Idempotent;
   * resolves when none is left.
   */
  close(options?: { timeout?: number }): Promise<void> {
    if (this.#closeDone !== null) return this.#closeDone;
    const timeout = options?.timeout ?? CLOSE_TIMEOUT_MS;
    if (typeof timeout !== "number" || !(timeout >= 0)) {
      return Promise.reject(new RangeError(`timeout must be a number of ms, got ${timeout}`));
    }
    this.#closeDone = this.#drain(timeout);
    return this.#closeDone;
  }

  /** Same as `close()`: pg's name, which Kysely's `destroy()` calls. */
  end(): Promise<void> {
    return this.close();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #drain(timeout: number): Promise<void> {
    if (this.#inFlight.size === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const settled = Promise.allSettled([...this.#inFlight.keys()]);
    const expired = new Promise<void>((resolve) => timer = setTimeout(resolve, timeout));
    await Promise.race([settled, expired]);
    clearTimeout(timer);
    if (this.#inFlight.size > 0) {
      const reason = new PoolError(
        "POOL_CLOSED",
        `${this.#name} closed with this request still in flight after ${timeout} ms`,
      );
      for (const controller of this.#inFlight.values()) controller.abort(reason);
      await settled;
    }
  }

  #run<T>(
    kind: "query" | "batch",
    statements: number,
    signal: AbortSignal | undefined,
    send: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    if (this.closed) {
      return Promise.reject(
        new PoolError("POOL_CLOSED", `Cannot run a ${kind}: ${this.#name} is closed`),
      );
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return Promise.reject(new TypeError("options.signal must be an AbortSignal"));
    }
    // One controller per request, aborted by the caller's signal or by close(): no listener
    // piles up on a signal shared by every request.
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal!.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    const started = performance.now();
    this.#stats.requestsNum++;
    this.#stats.statementsNum += statements;
    const request = send(controller.signal);
    this.#inFlight.set(request, controller);
    request.then(
      () => this.#done(request, kind, statements, started, undefined),
      (error) => this.#done(request, kind, statements, started, error ?? new Error("failed")),
    ).finally(() => signal?.removeEventListener("abort", onAbort));
    return request;
  }

  #done(
    request: Promise<unknown>,
    kind: "query" | "batch",
    statements: number,
    started: number,
    error: unknown,
  ): void {
    this.#inFlight.delete(request);
    const ms = performance.now() - started;
    this.#stats.requestsMs += ms;
    if (error !== undefined) this.#stats.requestsErrors++;
    if (error instanceof ConnectionError) {
      this.#logger.warn?.(`${this.#name}: ${kind} failed: ${error.message}`);
      this.#events.emit("error", new PoolEventError(error, kind) as HttpPoolEvents["error"]);
    }
    this.#events.emit("request", { kind, statements, ms, error });
  }
}

/** How a checkout runs its queries: through its pool, which counts and tracks them. */
type HttpCheckoutQuery = <Row>(
  where: string,
  sql: string | QueryConfig,
  params: readonly unknown[] | undefined,
  options: PoolQueryOptions | undefined,
) => Promise<QueryResult<Row>>;

/**
 * What `HttpPool.connect()` gives: a handle shaped like a socket pool's `PooledConnection`
 * (`query`, `release`, `await using`), with no session behind it. Each query is one request,
 * as `pool.query()`; `BEGIN` and `START TRANSACTION` are refused with `UNSUPPORTED`, since the
 * next query would not be in the transaction (Kysely's `db.transaction()` fails so, before
 * its callback runs). A transaction over HTTP is `pool.batch()`.
 *
 * @example
 * ```ts ignore
 * import { HttpPool } from "@edgepool/edgepool/transports/http";
 * await using pool = new HttpPool("postgres://app:secret@db.example.com/app");
 * const conn = await pool.connect();
 * try {
 *   await conn.query("insert into t values ($1)", [1]);
 * } finally {
 *   await conn.release();
 * }
 * ```
 */
export class HttpCheckout implements AsyncDisposable {
  readonly #query: HttpCheckoutQuery;
  #released = false;

  /** Made by `HttpPool.connect()`. */
  constructor(query: HttpCheckoutQuery) {
    this.#query = query;
  }

  /** Whether this handle was released (or closed). */
  get released(): boolean {
    return this.#released;
  }

  /**
   * Runs one statement as one request. Rejects with `RELEASED` after `release()`, and with
   * `UNSUPPORTED` for `BEGIN` or `START TRANSACTION`, before anything is sent.
   */
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>>;
  /** pg's form: the query config object, and parameters that take the place of its `values`. */
  query<Row = Record<string, unknown>>(
    config: QueryConfig,
    params?: readonly unknown[],
  ): Promise<QueryResult<Row>>;
  /**
   * A cursor (edgepool's `Cursor`, as Kysely's `stream()` passes one): throws a
   * `ConnectionError` `UNSUPPORTED`: over HTTP there is no session for its portal to live in.
   */
  query<T extends QueryCursor>(cursor: T): T;
  query<Row = Record<string, unknown>>(
    sql: string | QueryConfig | QueryCursor,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>> {
    if (typeof (sql as QueryCursor)?.read === "function") throw streamUnsupported(OVER_HTTP);
    if (this.#released) return Promise.reject(released("run a query on"));
    return this.#query<Row>(
      "a connection from HttpPool.connect()",
      sql as QueryConfig,
      params,
      options,
    );
  }

  /** Throws a `ConnectionError` `UNSUPPORTED`, as `HttpPool.stream()` does. */
  stream<Row = Record<string, unknown>>(
    _sql: string | QueryConfig,
    _params?: readonly unknown[] | StreamOptions,
    _options?: StreamOptions,
  ): RowStream<Row> {
    throw streamUnsupported(OVER_HTTP);
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

  /** Rejects with `UNSUPPORTED`: over HTTP there is no session to COPY on. */
  copyFrom(_sql: string, _source: unknown, _options?: unknown): Promise<number> {
    return Promise.reject(copyOverHttp());
  }

  /** Throws `UNSUPPORTED`: over HTTP there is no session to COPY on. */
  copyTo(_sql: string, _options?: unknown): never {
    throw copyOverHttp();
  }

  /**
   * Ends the checkout; queries on it then reject with `RELEASED`, and a second release throws
   * `RELEASED`. There is no connection to return or to close, so `error` (pg's "this
   * connection is broken") changes nothing.
   */
  release(_error?: unknown): Promise<void> {
    if (this.#released) throw released("release");
    this.#released = true;
    return Promise.resolve();
  }

  /** Like `release()`, but a second call does nothing. */
  close(): Promise<void> {
    this.#released = true;
    return Promise.resolve();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function copyOverHttp(): ConnectionError {
  return new ConnectionError(
    "UNSUPPORTED",
    "COPY is not available over HTTP: each statement is a request of its own, with no session " +
      "to stream COPY data on; use a socket transport (TCP or WebSocket)",
  );
}

function released(action: string): PoolError {
  return new PoolError(
    "RELEASED",
    `Cannot ${action} a connection that was already released to the pool`,
  );
}

const OVER_HTTP = "over HTTP (HttpPool)";
