/**
 * The engine every pool class shares: checkout with one deadline, FIFO waiters, health checks,
 * reset on return, generations, background upkeep, events and stats. The classes
 * (`QueuePool`, `NullPool`, ...) only choose a {@link Policy}.
 *
 * @module
 */

import { Emitter } from "../_emitter.ts";
import { PoolError } from "../errors.ts";
import type { QueryOptions, QueryResult } from "../result.ts";
import { systemClock } from "./_clock.ts";
import { PoolRecord } from "./_record.ts";
import { type Waiter, WaiterQueue } from "./_waiters.ts";
import { connectionAdapter, type PoolAdapter } from "./adapter.ts";
import type { PoolCloseReason, PoolEvents } from "./events.ts";
import {
  callback,
  count,
  type Creator,
  milliseconds,
  type Policy,
  type PoolOptions,
  type ResolvedOptions,
} from "./options.ts";
import { handleRecord, PooledConnection, type PoolInternals } from "./pooled_connection.ts";
import { newCounters, type PoolCounters, type PoolStats } from "./stats.ts";
import { runTransaction, type TransactionOptions } from "./transaction.ts";

/** Options of one checkout. */
export interface CheckoutOptions {
  /** Gives up waiting: the checkout rejects with the signal's reason. */
  signal?: AbortSignal;
  /** This checkout's deadline in ms, instead of the pool's `timeout`. */
  timeout?: number;
}

/** Options of `pool.query()`: the query's and the checkout's. */
export type PoolQueryOptions = QueryOptions & { timeout?: number };

const RESOLVED: Promise<void> = Promise.resolve();
const RESET_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 5_000;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 60_000;

type ReadyWaiter = { resolve: () => void; reject: (error: unknown) => void };

/**
 * The base of every pool class. Not used directly: pick `QueuePool`, `NullPool`,
 * `StaticPool`, `AssertionPool` or `ContextPool`.
 */
export abstract class Pool<C> implements AsyncDisposable {
  /** The connection factory, for `recreate()`. */
  protected readonly creator: Creator<C>;
  /** The options as given, for `recreate()`. */
  protected readonly givenOptions: PoolOptions<C>;
  /** Validated options. */
  protected readonly settings: ResolvedOptions<C>;
  /** The sizing and lifetime rules of this pool class. */
  protected policy: Policy;

  readonly #events = new Emitter<PoolEvents<C>>();
  readonly #idle: PoolRecord<C>[] = [];
  readonly #busy = new Set<PoolRecord<C>>();
  readonly #waiters = new WaiterQueue<PooledConnection<C>>();
  readonly #ready: ReadyWaiter[] = [];
  readonly #counters = newCounters();
  readonly #internals: PoolInternals<C>;
  readonly #sharedInternals: PoolInternals<C>;
  readonly #creations = new AbortController();
  readonly #closing = new Set<Promise<void>>();
  readonly #leaks: FinalizationRegistry<PoolRecord<C>>;
  readonly #inflight = new Set<Promise<void>>();
  #connecting = 0;
  #generation = 0;
  #everConnected = false;
  #closed = false;
  #closeDone: Promise<void> | null = null;
  #timer: unknown = null;
  #lastError: unknown = undefined;
  #backoff: { startedAt: number; delay: number; until: number } | null = null;
  #gaveUp = false;

  /** Validates the shared options; `policy` comes from the subclass. */
  protected constructor(creator: Creator<C>, options: PoolOptions<C> | undefined, policy: Policy) {
    if (typeof creator !== "function") {
      throw new TypeError(`A pool needs a creator function, not ${typeof creator}`);
    }
    const o = options ?? {};
    if (typeof o !== "object") throw new TypeError("Pool options must be an object");
    this.creator = creator;
    this.givenOptions = o;
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
    this.settings = {
      adapter: (o.adapter ?? connectionAdapter) as PoolAdapter<C>,
      timeout: milliseconds(o.timeout, "timeout", 30_000),
      prePing: o.prePing === true,
      check: callback(o.check, "check"),
      configure: callback(o.configure, "configure"),
      reset: callback(o.reset, "reset"),
      resetOnReturn,
      maxWaiting: count(o.maxWaiting, "maxWaiting", 0),
      leakDetectionThreshold,
      recordStacks: o.recordStacks ?? leakDetectionThreshold > 0,
      logger: o.logger ?? {},
      name: o.name ?? this.constructor.name,
      clock: o.clock ?? systemClock,
      maintenanceInterval: Math.max(
        10,
        milliseconds(o.maintenanceInterval, "maintenanceInterval", 1000),
      ),
    };
    this.policy = policy;
    this.#internals = {
      adapter: this.settings.adapter,
      checkin: (record, handle) => this.#checkin(record, handle),
      invalidate: (record, error, soft) => this.#invalidate(record, error, soft),
      detach: (record, handle) => this.#detach(record, handle),
      closeDetached: (record) => this.#closeDetached(record),
      lost: (record, error) => this.#lostInUse(record, error),
    };
    this.#sharedInternals = {
      ...this.#internals,
      // A shared handle's release leaves the connection with the handle that owns it.
      checkin: () => RESOLVED,
      detach: () => {
        throw new TypeError("A shared connection cannot be detached; detach the one that owns it");
      },
    };
    this.#leaks = new FinalizationRegistry((record) => this.#collected(record));
  }

  /** Whether the pool was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Checks out a connection. One deadline (`timeout`, default the pool's) covers waiting in the
   * queue, connecting and the health check; waiters are served first come, first served.
   */
  connect(options?: CheckoutOptions): Promise<PooledConnection<C>> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#counters.requestsNum++;
    if (this.#waiters.length === 0) {
      const record = this.#takeIdle();
      if (record !== undefined) {
        if (!this.#needsCheck(record)) return Promise.resolve(this.#checkout(record, 0));
        return this.#wait(options, record);
      }
    }
    return this.#wait(options, undefined);
  }

  /** Checks out a connection, runs one query, and returns the connection. */
  async query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: PoolQueryOptions,
  ): Promise<QueryResult<Row>> {
    const connection = await this.connect(options);
    try {
      return await connection.query<Row>(sql, params, options);
    } finally {
      connection.release();
    }
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
    const connection = await this.connect(options);
    try {
      return await runTransaction(connection, fn, options);
    } finally {
      connection.release();
    }
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
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#open() >= this.policy.min) return RESOLVED;
    const timeout = milliseconds(options?.timeout, "timeout", this.settings.timeout);
    return new Promise<void>((resolve, reject) => {
      const clock = this.settings.clock;
      const entry: ReadyWaiter = {
        resolve: () => {
          clock.clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clock.clearTimeout(timer);
          reject(error);
        },
      };
      const timer = clock.setTimeout(() => {
        this.#ready.splice(this.#ready.indexOf(entry), 1);
        reject(
          new PoolError(
            "POOL_TIMEOUT",
            `The pool is not ready: ${this.#open()} of ${this.policy.min} connections open after ` +
              `${timeout} ms`,
            { cause: this.#lastError },
          ),
        );
      }, timeout);
      this.#ready.push(entry);
      this.#gaveUp = false;
      this.#fill();
    });
  }

  /**
   * Closes every idle connection now, and every checked-out one when it is returned; the pool
   * stays usable and opens fresh connections (SQLAlchemy's `dispose()`).
   */
  dispose(): void {
    this.#generation++;
    this.#closeStaleIdle("disposed");
    this.#dispatch();
  }

  /** A new, empty pool of the same class with the same creator and options. */
  abstract recreate(): Pool<C>;

  /**
   * Closes the pool: waiters and later checkouts fail with `POOL_CLOSED`, idle connections close
   * now, checked-out ones when returned, and after `timeout` ms (default 5000) they are closed
   * anyway. Idempotent; resolves when every connection is closed.
   */
  close(options?: { timeout?: number }): Promise<void> {
    if (this.#closeDone) return this.#closeDone;
    const timeout = milliseconds(options?.timeout, "timeout", CLOSE_TIMEOUT_MS);
    this.#closed = true;
    this.settings.logger.info?.(`${this.settings.name}: closing`, { ...this.#gauges() });
    this.#stopTimer();
    this.#creations.abort(this.#closedError());
    for (const waiter of this.#waiters.drain()) this.#settle(waiter, this.#closedError());
    for (const entry of this.#ready.splice(0)) entry.reject(this.#closedError());
    for (const record of this.#idle.splice(0)) this.#closeRecord(record, "pool closed");
    this.#closeDone = this.#drain(timeout);
    return this.#closeDone;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Counters and gauges: psycopg_pool's names in camelCase, plus SQLAlchemy's. */
  stats(): PoolStats {
    return { ...this.#counters, ...this.#gauges() };
  }

  /** One readable line about the pool's state. */
  status(): string {
    const g = this.#gauges();
    return `${this.settings.name}: ${g.poolSize} connections (${g.checkedIn} idle, ` +
      `${g.checkedOut} checked out, ${this.#connecting} connecting) of ${
        describeLimit(this.policy.max)
      }, ${g.requestsWaiting} waiting${this.#closed ? ", closed" : ""}`;
  }

  /**
   * Another handle on the connection behind `owner` (ContextPool): it queries and invalidates
   * like the owner, but releasing it leaves the connection checked out to the owner.
   */
  protected share(owner: PooledConnection<C>): PooledConnection<C> {
    return new PooledConnection(this.#sharedInternals, handleRecord(owner));
  }

  /** What the pool can hold, for the timeout message: subclasses say it their way. */
  protected describeCapacity(): string {
    return `${this.#busy.size} of ${describeLimit(this.policy.max)} connections in use`;
  }

  /** Applies a changed policy (`resize()`): closes surplus idle connections, serves waiters. */
  protected applyPolicy(policy: Policy): void {
    this.policy = policy;
    while (this.#idle.length > policy.keepIdle) {
      this.#closeRecord(this.#idle.shift()!, "overflow");
    }
    this.#dispatch();
  }

  /** Connections open now (idle and checked out). */
  protected openCount(): number {
    return this.#open();
  }

  // -------------------------------------------------------------------------------------------
  // Checkout

  #wait(
    options: CheckoutOptions | undefined,
    record: PoolRecord<C> | undefined,
  ): Promise<PooledConnection<C>> {
    const maxWaiting = this.settings.maxWaiting;
    if (record === undefined && maxWaiting > 0 && this.#waiters.length >= maxWaiting) {
      this.#counters.requestsErrors++;
      return Promise.reject(
        new PoolError(
          "TOO_MANY_WAITERS",
          `Cannot check out a connection: ${this.#waiters.length} callers are already waiting ` +
            `(maxWaiting ${maxWaiting}); ${this.describeCapacity()}`,
        ),
      );
    }
    const timeout = options?.timeout === undefined
      ? this.settings.timeout
      : milliseconds(options.timeout, "timeout", 0);
    const signal = options?.signal;
    const clock = this.settings.clock;
    return new Promise((resolve, reject) => {
      const now = clock.now();
      const waiter: Waiter<PooledConnection<C>> = {
        resolve,
        reject,
        since: now,
        deadline: now + timeout,
        settled: false,
        cleanup: null,
        prev: null,
        next: null,
      };
      const timer = clock.setTimeout(() => this.#expire(waiter, timeout), timeout);
      const onAbort = () => {
        if (waiter.settled) return;
        this.#waiters.remove(waiter);
        this.#settle(waiter, signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      waiter.cleanup = () => {
        clock.clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      if (record !== undefined) return this.#deliver(record, waiter);
      this.#counters.requestsQueued++;
      this.#waiters.push(waiter);
      this.#fill();
    });
  }

  #expire(waiter: Waiter<PooledConnection<C>>, timeout: number): void {
    if (waiter.settled) return;
    this.#waiters.remove(waiter);
    this.#counters.requestsErrors++;
    const cause = this.#lastError;
    this.#settle(
      waiter,
      new PoolError(
        "POOL_TIMEOUT",
        `Cannot check out a connection: timed out after ${timeout} ms with ` +
          `${this.describeCapacity()}, ${this.#connecting} connecting, ` +
          `${this.#waiters.length} others waiting` +
          (cause === undefined ? "" : `; the last connect attempt failed: ${message(cause)}`),
        cause === undefined ? undefined : { cause },
      ),
    );
  }

  /** Rejects a waiter that is no longer queued. */
  #settle(waiter: Waiter<PooledConnection<C>>, error: unknown): void {
    if (waiter.settled) return;
    waiter.settled = true;
    waiter.cleanup?.();
    waiter.reject(error);
  }

  #needsCheck(record: PoolRecord<C>): boolean {
    // A connection that was just made needs no proof that it works.
    return record.checkouts > 0 && (this.settings.prePing || this.settings.check !== undefined);
  }

  /** Hands `record` to `waiter`, health-checking it first when asked to. */
  #deliver(record: PoolRecord<C>, waiter: Waiter<PooledConnection<C>>): void {
    this.#move(record, "busy");
    if (!this.#needsCheck(record)) return this.#hand(record, waiter);
    this.#healthCheck(record, waiter).then((error) => {
      if (error === undefined) {
        if (waiter.settled) this.#put(record);
        else this.#hand(record, waiter);
        return;
      }
      // SQLAlchemy's pre-ping rule: a dead connection suggests its elders are dead too.
      this.#invalidate(record, error, false);
      this.#generation++;
      this.#closeStaleIdle("stale");
      if (!waiter.settled) this.#waiters.unshift(waiter);
      this.#dispatch();
    });
  }

  async #healthCheck(
    record: PoolRecord<C>,
    waiter: Waiter<PooledConnection<C>>,
  ): Promise<unknown> {
    const clock = this.settings.clock;
    const controller = new AbortController();
    const timer = clock.setTimeout(
      () => controller.abort(new Error("health check timed out")),
      Math.max(1, waiter.deadline - clock.now()),
    );
    try {
      if (this.settings.prePing) {
        await this.settings.adapter.ping(record.connection, controller.signal);
      }
      if (this.settings.check) await this.settings.check(record.connection);
      return undefined;
    } catch (error) {
      return error ?? new Error("health check failed");
    } finally {
      clock.clearTimeout(timer);
    }
  }

  #hand(record: PoolRecord<C>, waiter: Waiter<PooledConnection<C>>): void {
    waiter.settled = true;
    waiter.cleanup?.();
    const waited = this.settings.clock.now() - waiter.since;
    this.#counters.requestsWaitMs += waited;
    waiter.resolve(this.#checkout(record, waited));
  }

  #checkout(record: PoolRecord<C>, waitedMs: number): PooledConnection<C> {
    this.#move(record, "busy");
    record.checkedOutAt = this.settings.clock.now();
    record.checkouts++;
    record.leakReported = false;
    record.stack = this.settings.recordStacks ? checkoutStack() : undefined;
    const handle = new PooledConnection(this.#internals, record);
    record.out = true;
    this.#leaks.register(handle, record, handle);
    if (this.#events.has("checkout")) {
      this.#events.emit("checkout", {
        connection: record.connection,
        info: record.info,
        waitedMs,
      });
    }
    return handle;
  }

  /** Takes an idle connection, retiring stale ones on the way. */
  #takeIdle(): PoolRecord<C> | undefined {
    const idle = this.#idle;
    while (idle.length > 0) {
      const record = this.policy.lifo ? idle.pop()! : idle.shift()!;
      const stale = this.#staleReason(record);
      if (stale === undefined) return record;
      record.state = "busy"; // out of the idle list: closeRecord must not look for it there
      this.#closeRecord(record, stale);
    }
    return undefined;
  }

  #staleReason(record: PoolRecord<C>): PoolCloseReason | undefined {
    if (record.generation < this.#generation) return "stale";
    if (this.settings.clock.now() >= record.expiresAt) return "lifetime";
    if (this.settings.adapter.isClosed(record.connection)) return "lost";
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Making connections

  #open(): number {
    return this.#idle.length + this.#busy.size;
  }

  /** Starts connecting for the waiters not yet covered, and up to `min`. */
  #fill(): void {
    if (this.#closed) return;
    const max = this.policy.max;
    while (this.#waiters.length > this.#connecting && this.#open() + this.#connecting < max) {
      this.#create();
    }
    const backingOff = this.#backoff !== null && this.settings.clock.now() < this.#backoff.until;
    while (
      !backingOff && !this.#gaveUp && this.#open() + this.#connecting < this.policy.min &&
      this.#open() + this.#connecting < max
    ) {
      this.#create();
    }
    this.#schedule();
  }

  #create(): void {
    this.#connecting++;
    this.#counters.connectionsNum++;
    const clock = this.settings.clock;
    const started = clock.now();
    const configure = this.settings.configure;
    const make = async () => {
      const connection = await this.creator(this.#creations.signal);
      if (configure) {
        try {
          await configure(connection);
        } catch (error) {
          await this.settings.adapter.close(connection, true).catch(() => {});
          throw error;
        }
      }
      return connection;
    };
    const done = make().then(
      (connection) => {
        this.#connecting--;
        this.#counters.connectionsMs += clock.now() - started;
        this.#backoff = null;
        this.#gaveUp = false;
        this.#lastError = undefined;
        this.#added(connection, started);
      },
      (error) => {
        this.#connecting--;
        this.#counters.connectionsMs += clock.now() - started;
        this.#counters.connectionsErrors++;
        this.#createFailed(error);
      },
    );
    this.#inflight.add(done);
    done.finally(() => this.#inflight.delete(done));
  }

  #added(connection: C, createdAt: number): void {
    const clock = this.settings.clock;
    const record = new PoolRecord(
      connection,
      createdAt,
      this.#generation,
      createdAt + this.#lifetime(),
    );
    this.#busy.add(record);
    record.unsubscribe = this.settings.adapter.onClose(connection, (error) => {
      this.#lostIdle(record, error);
    });
    const event = { connection, info: record.info };
    if (!this.#everConnected) {
      this.#everConnected = true;
      this.#events.emit("firstConnect", event);
    }
    this.#events.emit("connect", event);
    this.settings.logger.debug?.(`${this.settings.name}: connected`, {
      ms: clock.now() - createdAt,
      ...this.#gauges(),
    });
    this.#put(record);
    if (this.#open() >= this.policy.min) {
      for (const entry of this.#ready.splice(0)) entry.resolve();
    }
  }

  /** The lifetime of a new connection: `maxLifetime` less up to 5 % jitter, or `recycle`. */
  #lifetime(): number {
    const { maxLifetime, recycle } = this.policy;
    const jittered = maxLifetime === Infinity
      ? Infinity
      : maxLifetime * (1 - 0.05 * this.settings.clock.random());
    return Math.min(jittered, recycle);
  }

  #createFailed(error: unknown): void {
    if (this.#closed) return; // aborted by close(): nobody is waiting for it
    this.#lastError = error;
    const logger = this.settings.logger;
    logger.warn?.(`${this.settings.name}: connecting failed: ${message(error)}`);
    this.#events.emit("error", { error, context: "connect" });
    // The caller that this attempt was for gets its error, not a timeout later.
    const waiter = this.#waiters.shift();
    if (waiter !== null) {
      this.#counters.requestsErrors++;
      this.#settle(waiter, error);
    }
    if (isConfigError(error)) {
      for (const entry of this.#ready.splice(0)) entry.reject(error);
    }
    if (this.#open() + this.#connecting < this.policy.min) this.#backOff();
    this.#fill();
  }

  /** Exponential backoff for background connecting, giving up after `reconnectTimeout`. */
  #backOff(): void {
    const clock = this.settings.clock;
    const now = clock.now();
    if (this.#backoff === null) {
      this.#backoff = { startedAt: now, delay: FIRST_BACKOFF_MS, until: 0 };
    } else {
      this.#backoff.delay = Math.min(this.#backoff.delay * 2, MAX_BACKOFF_MS);
    }
    if (now - this.#backoff.startedAt >= this.policy.reconnectTimeout) {
      this.#backoff = null;
      this.#gaveUp = true;
      this.settings.logger.error?.(
        `${this.settings.name}: giving up reconnecting after ${this.policy.reconnectTimeout} ms`,
      );
      this.#events.emit("error", { error: this.#lastError, context: "reconnect failed" });
      this.reconnectFailed();
      return;
    }
    // ±10 % so that many pools do not retry in step.
    this.#backoff.until = now + this.#backoff.delay * (0.9 + 0.2 * clock.random());
  }

  /** Called when background reconnecting gives up (psycopg's `reconnect_failed`). */
  protected reconnectFailed(): void {}

  // -------------------------------------------------------------------------------------------
  // Returning connections

  /** A connection is available (new, or returned and reset): to a waiter, idle, or closed. */
  #put(record: PoolRecord<C>): void {
    if (this.#closed) return this.#closeRecord(record, "pool closed");
    const stale = this.#staleReason(record);
    if (stale !== undefined || record.soft) {
      this.#closeRecord(record, stale ?? "invalidated");
      return this.#dispatch();
    }
    const waiter = this.#waiters.shift();
    if (waiter !== null) return this.#deliver(record, waiter);
    if (this.#idle.length >= this.policy.keepIdle) return this.#closeRecord(record, "overflow");
    this.#move(record, "idle");
    record.lastUsedAt = this.settings.clock.now();
    this.#idle.push(record);
    this.#schedule();
  }

  #checkin(record: PoolRecord<C>, handle: PooledConnection<C> | null): Promise<void> {
    if (handle !== null) this.#leaks.unregister(handle);
    record.out = false;
    const now = this.settings.clock.now();
    this.#counters.usageMs += now - record.checkedOutAt;
    const connection = record.connection;
    if (this.#events.has("checkin")) {
      this.#events.emit("checkin", { connection, info: record.info });
    }
    if (record.state !== "busy") return RESOLVED; // invalidated or closed while out
    const adapter = this.settings.adapter;
    if (adapter.isClosed(connection)) {
      this.#counters.returnsBad++;
      this.#closeRecord(record, "returned broken");
      this.#dispatch();
      return RESOLVED;
    }
    const status = adapter.transactionStatus(connection);
    if (status === "idle" && !adapter.isBusy(connection) && this.settings.reset === undefined) {
      this.#put(record);
      return RESOLVED;
    }
    return this.#resetAndPut(record, status);
  }

  async #resetAndPut(record: PoolRecord<C>, status: string): Promise<void> {
    const { adapter, resetOnReturn, reset, clock } = this.settings;
    const connection = record.connection;
    const dirty = status !== "idle" || adapter.isBusy(connection);
    try {
      if (dirty) {
        if (resetOnReturn === "none") throw new Error(`returned with transaction status ${status}`);
        const action = status === "transaction" && resetOnReturn === "commit"
          ? "commit"
          : "rollback";
        const controller = new AbortController();
        const timer = clock.setTimeout(() => controller.abort(), RESET_TIMEOUT_MS);
        try {
          await adapter.query(connection, action === "commit" ? "COMMIT" : "ROLLBACK", undefined, {
            signal: controller.signal,
          });
        } finally {
          clock.clearTimeout(timer);
        }
        this.#events.emit("reset", { connection, info: record.info, action });
      }
      if (reset !== undefined) {
        await reset(connection);
        this.#events.emit("reset", { connection, info: record.info, action: "callback" });
      }
      // Whatever happened above, only an idle connection goes back.
      const after = adapter.transactionStatus(connection);
      if (after !== "idle" || adapter.isBusy(connection)) {
        throw new Error(`still not idle after reset (status ${after})`);
      }
    } catch (error) {
      this.#counters.returnsBad++;
      this.settings.logger.warn?.(
        `${this.settings.name}: closing a returned connection: reset failed: ${message(error)}`,
      );
      this.#events.emit("error", { error, context: "reset", connection });
      if (record.state === "busy") this.#closeRecord(record, "reset failed");
      this.#dispatch();
      return;
    }
    if (record.state === "busy") this.#put(record);
    else this.#dispatch();
  }

  /** Serves waiters from idle connections, then connects for the rest. */
  #dispatch(): void {
    while (this.#waiters.length > 0) {
      const record = this.#takeIdle();
      if (record === undefined) break;
      this.#deliver(record, this.#waiters.shift()!);
    }
    this.#fill();
  }

  // -------------------------------------------------------------------------------------------
  // Invalidation, detaching, loss

  #invalidate(record: PoolRecord<C>, error: unknown, soft: boolean): void {
    if (record.state === "closed" || record.state === "detached") return;
    const event = { connection: record.connection, info: record.info, error };
    if (soft) {
      record.soft = true;
      this.#events.emit("softInvalidate", event);
      return;
    }
    this.#events.emit("invalidate", event);
    this.settings.logger.info?.(`${this.settings.name}: invalidated a connection`, {
      reason: error === undefined ? undefined : message(error),
    });
    this.#closeRecord(record, "invalidated");
    this.#dispatch();
  }

  /** A checked-out connection failed with a disconnect error: it and its elders must go. */
  #lostInUse(record: PoolRecord<C>, error: unknown): void {
    this.#counters.connectionsLost++;
    this.#invalidate(record, error, false);
    if (record.generation === this.#generation) this.#generation++;
    this.#closeStaleIdle("stale");
    this.#dispatch();
  }

  /** The connection closed by itself (server restart, idle timeout, network). */
  #lostIdle(record: PoolRecord<C>, error: Error | undefined): void {
    if (record.state !== "idle") return; // in use: its user sees the error; closed at checkin
    this.#counters.connectionsLost++;
    this.#idle.splice(this.#idle.indexOf(record), 1);
    record.state = "busy";
    this.#events.emit("error", {
      error: error ?? new Error("the connection closed while idle"),
      context: "idle",
      connection: record.connection,
    });
    this.#closeRecord(record, "lost");
    this.#dispatch();
  }

  #detach(record: PoolRecord<C>, handle: PooledConnection<C>): void {
    this.#leaks.unregister(handle);
    record.out = false;
    record.unsubscribe();
    this.#busy.delete(record);
    record.state = "detached";
    this.#events.emit("detach", { connection: record.connection, info: record.info });
    this.#dispatch();
  }

  #closeDetached(record: PoolRecord<C>): Promise<void> {
    record.state = "closed";
    this.#events.emit("closeDetached", { connection: record.connection, info: record.info });
    return this.settings.adapter.close(record.connection, false).catch(() => {});
  }

  #closeStaleIdle(reason: PoolCloseReason): void {
    const generation = this.#generation;
    for (const record of this.#idle.filter((r) => r.generation < generation)) {
      this.#idle.splice(this.#idle.indexOf(record), 1);
      record.state = "busy";
      this.#closeRecord(record, reason);
    }
  }

  /** Closes a record's connection; the record must not be in the idle list. */
  #closeRecord(record: PoolRecord<C>, reason: PoolCloseReason): void {
    if (record.state === "closed" || record.state === "detached") return;
    this.#busy.delete(record);
    record.state = "closed";
    record.unsubscribe();
    this.#events.emit("close", { connection: record.connection, info: record.info, reason });
    const force = reason !== "overflow" && reason !== "idle" && reason !== "lifetime" &&
      reason !== "pool closed" && reason !== "disposed" && reason !== "stale";
    const closing = this.settings.adapter.close(record.connection, force).catch(() => {});
    this.#closing.add(closing);
    closing.finally(() => this.#closing.delete(closing));
    if (this.#closed && this.#busy.size === 0) this.#drained?.();
  }

  /**
   * A checked-out connection's handle was garbage-collected without being returned. Released
   * and detached handles are unregistered, so this is always the record's current checkout.
   */
  #collected(record: PoolRecord<C>): void {
    if (record.state !== "busy" || !record.out) return;
    const heldMs = this.settings.clock.now() - record.checkedOutAt;
    this.settings.logger.warn?.(
      `${this.settings.name}: a checked-out connection was garbage-collected without being ` +
        `returned after ${heldMs} ms`,
      { stack: record.stack },
    );
    this.#events.emit("leak", {
      reason: "garbage-collected",
      info: record.info,
      heldMs,
      stack: record.stack,
    });
    this.#checkin(record, null);
  }

  #move(record: PoolRecord<C>, state: "idle" | "busy"): void {
    // The one place a record changes between idle and busy.
    if (state === "busy") this.#busy.add(record);
    else this.#busy.delete(record);
    record.state = state;
  }

  // -------------------------------------------------------------------------------------------
  // Background upkeep: small jobs on one timer, nothing once closed.

  #schedule(): void {
    if (this.#timer !== null || this.#closed) return;
    if (this.#open() === 0 && this.policy.min === 0 && this.#backoff === null) return;
    this.#timer = this.settings.clock.setTimeout(() => {
      this.#timer = null;
      if (this.#closed) return;
      this.#retire();
      this.#shrink();
      this.#reportLeaks();
      this.#fill();
    }, this.settings.maintenanceInterval);
  }

  #stopTimer(): void {
    if (this.#timer === null) return;
    this.settings.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Closes idle connections past their lifetime (then `fill` replaces them up to `min`). */
  #retire(): void {
    const now = this.settings.clock.now();
    for (const record of this.#idle.filter((r) => now >= r.expiresAt)) {
      this.#idle.splice(this.#idle.indexOf(record), 1);
      record.state = "busy";
      this.#closeRecord(record, "lifetime");
    }
  }

  /** Closes idle connections above `min` that were idle longer than `maxIdle`. */
  #shrink(): void {
    const maxIdle = this.policy.maxIdle;
    if (maxIdle === Infinity) return;
    const now = this.settings.clock.now();
    // Oldest-returned first: with FIFO checkout they sit at the front.
    for (const record of [...this.#idle]) {
      if (this.#open() <= this.policy.min) return;
      if (now - record.lastUsedAt < maxIdle) continue;
      this.#idle.splice(this.#idle.indexOf(record), 1);
      record.state = "busy";
      this.#closeRecord(record, "idle");
    }
  }

  #reportLeaks(): void {
    const threshold = this.settings.leakDetectionThreshold;
    if (threshold === 0) return;
    const now = this.settings.clock.now();
    for (const record of this.#busy) {
      if (record.leakReported || !record.out) continue;
      const heldMs = now - record.checkedOutAt;
      if (heldMs < threshold) continue;
      record.leakReported = true;
      this.settings.logger.warn?.(
        `${this.settings.name}: a connection has been checked out for ${heldMs} ms ` +
          `(leakDetectionThreshold ${threshold} ms)`,
        { stack: record.stack },
      );
      this.#events.emit("leak", {
        reason: "threshold",
        info: record.info,
        heldMs,
        stack: record.stack,
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Closing

  #drained: (() => void) | null = null;

  async #drain(timeout: number): Promise<void> {
    if (this.#busy.size > 0) {
      const clock = this.settings.clock;
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = clock.setTimeout(resolve, timeout);
      });
      clock.clearTimeout(timer);
      this.#drained = null;
      // Still out after the grace period: closed under their users' feet.
      for (const record of [...this.#busy]) this.#closeRecord(record, "pool closed");
    }
    // Connections still being made close as they arrive (#put); wait for every close.
    while (this.#closing.size > 0 || this.#inflight.size > 0) {
      await Promise.all([...this.#closing, ...this.#inflight]);
    }
  }

  #gauges(): Omit<PoolStats, keyof PoolCounters> {
    const busy = this.#busy.size;
    const idle = this.#idle.length;
    return {
      poolMin: this.policy.min,
      poolMax: this.policy.max,
      poolSize: busy + idle + this.#connecting,
      poolAvailable: idle,
      requestsWaiting: this.#waiters.length,
      checkedIn: idle,
      checkedOut: busy,
      overflow: Math.max(0, busy + idle - this.policy.keepIdle),
    };
  }

  #closedError(): PoolError {
    return new PoolError(
      "POOL_CLOSED",
      `Cannot check out a connection: ${this.settings.name} is closed`,
    );
  }
}

function describeLimit(max: number): string {
  return max === Infinity ? "no limit" : String(max);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function checkoutStack(): string | undefined {
  const stack = new Error("checked out here").stack;
  // Drop the pool's own frames: the first lines are this function and the pool internals.
  return stack?.split("\n").slice(4).join("\n");
}

/**
 * Whether a connect error is one that retrying will not fix: bad arguments, authentication and
 * authorization failures (SQLSTATE class 28), a missing database (3D000), or a TLS setup that
 * cannot work. Connection refused, timeouts and "too many connections" are worth retrying.
 */
export function isConfigError(error: unknown): boolean {
  if (error instanceof TypeError || error instanceof RangeError) return true;
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  return code.startsWith("28") || code === "3D000" || code === "AUTH_FAILED" ||
    code === "TLS_UNAVAILABLE" || code === "TLS_FAILED";
}
