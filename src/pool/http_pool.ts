/**
 * `HttpPool`: the pool-shaped face of the HTTP transport. There are no connections to pool (each
 * query is one `POST /sql`; the pooling happens behind the endpoint, in Neon's proxy or
 * edgepool's gateway), so it keeps what a pool means to its users: `query`, `batch`, stats,
 * events and a `close()` that waits for what is in flight.
 *
 * @module
 */

import type { PoolDescription, PoolOrigin } from "../runtime.ts";
import { Emitter } from "../_emitter.ts";
import { ConnectionError, PoolError } from "../errors.ts";
import { HttpClient, type HttpClientOptions } from "../http_client.ts";
import type { QueryResult } from "../result.ts";
import { redactUrl } from "../url.ts";
import type { BatchOptions, BatchQuery } from "./batch.ts";
import type { PoolLogger } from "./options.ts";
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
  error: { error: unknown; context: "query" | "batch" };
}

const CLOSE_TIMEOUT_MS = 5_000;

const NO_SESSION = "interactive transactions need a socket transport (TCP or WebSocket); over " +
  "HTTP use pool.batch([...]) for a transaction";

/**
 * A pool over Neon's HTTP protocol: `query()` and `batch()` as on a socket pool, each one
 * `POST` to the SQL endpoint; `connect()` and `transaction()` reject with `UNSUPPORTED`, since
 * HTTP has no session to hold a transaction open across round trips.
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
   * deadline on socket pools, does not apply.
   */
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>> {
    return this.#run(
      "query",
      1,
      options?.signal,
      (signal) => this.#client.query<Row>(sql, params, { rowMode: options?.rowMode, signal }),
    );
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

  /** Rejects with `UNSUPPORTED`: HTTP has no session to check out. Use `batch()`. */
  connect(_options?: unknown): Promise<never> {
    return Promise.reject(
      new PoolError("UNSUPPORTED", `pool.connect() is not available over HTTP: ${NO_SESSION}`),
    );
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
      this.#events.emit("error", { error, context: kind });
    }
    this.#events.emit("request", { kind, statements, ms, error });
  }
}
