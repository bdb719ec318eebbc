// The mechanics under every pool class: records (slots) moving between idle and checked out,
// the FIFO of waiters, checkout with one deadline and health checks, checkin with reset,
// invalidation by generation, loss, detaching, leaks, and closing. `Pool` (pool.ts) is the
// public face over it; the pool classes only choose a Policy.

import type { Emitter } from "../_emitter.ts";
import { PoolError } from "../errors.ts";
import { Connector } from "./_connector.ts";
import { LeakWatch } from "./_leaks.ts";
import { PoolRecord } from "./_record.ts";
import { resetForReuse } from "./_reset.ts";
import { Upkeep } from "./_upkeep.ts";
import { type Waiter, WaiterQueue } from "./_waiters.ts";
import type { PoolTransactionStatus } from "./adapter.ts";
import type { PoolCloseReason, PoolEvents } from "./events.ts";
import { type Creator, milliseconds, type Policy, type ResolvedOptions } from "./options.ts";
import { handleRecord, PooledConnection, type PoolInternals } from "./pooled_connection.ts";
import type { PoolCounters, PoolGauges } from "./stats.ts";
import type { QueryOptions, QueryResult } from "../result.ts";

/** Options of one checkout. */
export interface CheckoutOptions {
  /** Gives up waiting: the checkout rejects with the signal's reason. */
  signal?: AbortSignal;
  /** This checkout's deadline in ms, instead of the pool's `timeout`. */
  timeout?: number;
}

/** What the engine asks of the pool class above it. */
export interface EngineHooks {
  /** How full the pool is, in the class's own terms, for error messages. */
  describeCapacity(): string;
  /** Background reconnecting gave up. */
  reconnectFailed(): void;
}

const RESOLVED: Promise<void> = Promise.resolve();
// Closes of healthy connections say goodbye (Terminate); the rest are cut at once.
const GRACEFUL = new Set<PoolCloseReason>([
  "overflow",
  "returned",
  "idle",
  "lifetime",
  "stale",
  "disposed",
  "pool closed",
  "unwanted",
]);

type ReadyWaiter = { resolve: () => void; reject: (error: unknown) => void };

/** The pool engine. */
export class Engine<C> {
  /** The sizing and lifetime rules. */
  policy: Policy;
  readonly #settings: ResolvedOptions<C>;
  readonly #hooks: EngineHooks;

  readonly #events: Emitter<PoolEvents<C>>;
  readonly #idle: PoolRecord<C>[] = [];
  /** Every open record, idle or checked out: a move between the two touches only its state. */
  readonly #live = new Set<PoolRecord<C>>();
  readonly #waiters = new WaiterQueue<PooledConnection<C>>();
  /** Checked-out records running `pool.query` statements that others may join. */
  readonly #sharing = new Set<PoolRecord<C>>();
  readonly #ready: ReadyWaiter[] = [];
  /** Waiters whose connection is being health-checked (out of the queue meanwhile). */
  readonly #checking = new Set<Waiter<PooledConnection<C>>>();
  #deadlineTimer: unknown = null;
  #deadlineAt = Infinity;
  readonly #counters: PoolCounters;
  readonly #internals: PoolInternals<C>;
  readonly #sharedInternals: PoolInternals<C>;
  readonly #closing = new Set<Promise<void>>();
  readonly #leaks: LeakWatch<C>;
  readonly #connector: Connector<C>;
  readonly #upkeep: Upkeep<C>;
  #generation = 0;
  /**
   * The clock as last read: at every upkeep tick and whenever a slower path reads it. Checkout
   * and checkin stamp records with it rather than reading the clock (which costs as much as
   * the rest of a checkout), so the times kept per connection are precise to about one
   * `maintenanceInterval`; checkout deadlines read the clock.
   */
  #time: number;
  #everConnected = false;
  #closed = false;
  #closeDone: Promise<void> | null = null;
  #drained: (() => void) | null = null;

  constructor(
    creator: Creator<C>,
    settings: ResolvedOptions<C>,
    policy: Policy,
    counters: PoolCounters,
    events: Emitter<PoolEvents<C>>,
    hooks: EngineHooks,
  ) {
    this.#settings = settings;
    this.#counters = counters;
    this.#events = events;
    this.#hooks = hooks;
    this.policy = policy;
    this.#internals = {
      adapter: this.#settings.adapter,
      checkin: (record) => this.#checkin(record),
      invalidate: (record, error, soft) => this.#invalidate(record, error, soft),
      detach: (record) => this.#detach(record),
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
    this.#time = settings.clock.now();
    this.#leaks = new LeakWatch(settings, events, (record) => this.#checkin(record));
    this.#connector = new Connector(creator, this.#settings, this.#counters, {
      connected: (connection, startedAt, owner) =>
        this.#added(connection, startedAt, owner as Waiter<PooledConnection<C>> | undefined),
      failed: (error, owner) =>
        this.#createFailed(error, owner as Waiter<PooledConnection<C>> | undefined),
    });
    if (settings.affinity && (policy.max !== Infinity || policy.keepIdle > 0 || policy.min > 0)) {
      throw new TypeError(
        `${settings.name}: affinity needs a pool that keeps nothing idle and has no connection ` +
          "limit (a NullPool without max): a connection kept or queued for would reach another " +
          "caller, on Workers another request; let the external pooler limit connections",
      );
    }
    this.#upkeep = new Upkeep<C>({
      idle: this.#idle,
      live: this.#live,
      policy: () => this.policy,
      settings,
      open: () => this.#open(),
      closed: () => this.#closed,
      needed: () => this.#open() > 0 || this.policy.min > 0 || this.#connector.pending,
      closeIdle: (record, reason) => this.#closeIdle(record, reason),
      tick: (now) => {
        this.#time = now;
        this.#leaks.watch(this.#live);
      },
      leak: (record, heldMs) => this.#leaks.threshold(record, heldMs),
      longTransaction: (record, status, heldMs) =>
        this.#leaks.longTransaction(record, status, heldMs),
      fill: () => this.#fill(),
    });
    // `min` connections open at start, once the pool class has finished constructing.
    if (policy.min > 0) queueMicrotask(() => this.#fill());
  }

  /** Reads the clock, and keeps the reading for the hot paths (see `#time`). */
  #now(): number {
    return (this.#time = this.#settings.clock.now());
  }

  /** Whether the pool was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connections being opened now. */
  get connecting(): number {
    return this.#connector.connecting;
  }

  /** Connections open now (idle and checked out). */
  open(): number {
    return this.#open();
  }

  /** Checks out a connection (see `Pool.connect`). */
  connect(options?: CheckoutOptions, shareable = false): Promise<PooledConnection<C>> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let timeout = this.#settings.timeout;
    if (options?.timeout !== undefined) {
      try {
        timeout = milliseconds(options.timeout, "timeout", 0);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    this.#counters.requestsNum++;
    // Where the caller asked, not where the pool happened to hand the connection over.
    const stack = this.#settings.recordStacks ? checkoutStack() : undefined;
    if (this.#waiters.length === 0) {
      const record = this.#takeIdle();
      if (record !== undefined) {
        if (!this.#needsCheck(record)) return Promise.resolve(this.#checkout(record, 0, stack));
        return this.#wait(timeout, signal, stack, record, shareable);
      }
    }
    return this.#wait(timeout, signal, stack, undefined, shareable);
  }

  /** Resolves when `min` connections are open (see `Pool.wait`). */
  ready(timeout: number): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#open() >= this.policy.min) return RESOLVED;
    return new Promise<void>((resolve, reject) => {
      const clock = this.#settings.clock;
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
            { cause: this.#connector.lastError },
          ),
        );
      }, timeout);
      this.#ready.push(entry);
      this.#connector.gaveUp = false;
      this.#fill();
    });
  }

  /** Closes idle connections now and the others when returned (see `Pool.dispose`). */
  dispose(): void {
    this.#generation++;
    this.#closeStaleIdle("disposed");
    this.#dispatch();
  }

  /** Closes the pool (see `Pool.close`); idempotent. */
  close(timeout: number): Promise<void> {
    if (this.#closeDone) return this.#closeDone;
    this.#closed = true;
    this.#settings.logger.info?.(`${this.#settings.name}: closing`, { ...this.gauges() });
    this.#upkeep.stop();
    if (this.#deadlineTimer !== null) this.#settings.clock.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = null;
    this.#connector.abort(this.#closedError());
    for (const waiter of [...this.#waiters.drain(), ...this.#checking]) {
      if (waiter.settled) continue;
      this.#counters.requestsErrors++;
      this.#settle(waiter, this.#closedError());
    }
    for (const entry of this.#ready.splice(0)) entry.reject(this.#closedError());
    for (const record of this.#idle.splice(0)) this.#closeRecord(record, "pool closed");
    this.#closeDone = this.#drain(timeout);
    return this.#closeDone;
  }

  // -------------------------------------------------------------------------------------------
  // `pool.query` statements sharing connections (see `PoolOptions.queryPipeline`)

  /**
   * A checked-out connection that a `pool.query` statement may join, counted as joined: only
   * when no connection is idle, none may be opened, and nobody waits for a checkout (those
   * come first; sharing stops so that connections come back).
   */
  join(): PoolRecord<C> | undefined {
    const sharing = this.#sharing;
    if (
      sharing.size === 0 || this.#closed || this.#idle.length > 0 || this.#waiters.length > 0 ||
      this.#open() + this.#connector.connecting < this.policy.max
    ) {
      return undefined;
    }
    let best: PoolRecord<C> | undefined;
    for (const record of sharing) {
      if (record.state !== "busy" || record.soft || record.generation < this.#generation) {
        sharing.delete(record); // going to be closed when returned
      } else if (best === undefined || record.shared < best.shared) best = record;
    }
    if (best === undefined || best.shared >= this.#settings.queryPipeline) return undefined;
    best.shared++;
    return best;
  }

  /**
   * The record to run a `pool.query` statement on, from its checkout (`connect(options, true)`):
   * a connection of its own, which other statements may join from now on, or one it joined
   * while waiting.
   */
  startSharing(connection: PooledConnection<C>): PoolRecord<C> {
    const record = handleRecord(connection);
    if (record.sharer === connection) return record; // joined while waiting: counted then
    record.shared = 1;
    record.sharer = connection;
    this.#sharing.add(record);
    if (this.#waiters.length > 0) this.#joinWaiters(record);
    return record;
  }

  /** Statements waiting at the head of the queue join `record` while it has room. */
  #joinWaiters(record: PoolRecord<C>): void {
    const limit = this.#settings.queryPipeline;
    while (record.shared < limit && this.#sharing.has(record)) {
      const waiter = this.#waiters.head;
      if (waiter === null || !waiter.shareable) return;
      this.#waiters.shift();
      record.shared++;
      waiter.settled = true;
      waiter.cleanup?.();
      this.#counters.requestsWaitMs += this.#now() - waiter.since;
      waiter.resolve(record.sharer as PooledConnection<C>);
    }
  }

  /** Runs a statement on a shared connection; the last one to end returns the connection. */
  async runShared<Row>(
    record: PoolRecord<C>,
    sql: string,
    params: readonly unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<QueryResult<Row>> {
    try {
      return await (record.sharer as PooledConnection<C>).query<Row>(sql, params, options);
    } finally {
      if (--record.shared === 0) {
        this.#sharing.delete(record);
        const sharer = record.sharer!;
        record.sharer = null;
        sharer.release();
      } else if (this.#settings.adapter.transactionStatus(record.connection) !== "idle") {
        this.#sharing.delete(record); // not expected (see _pipeline.ts), but never join one
      } else if (this.#waiters.length > 0) this.#joinWaiters(record);
    }
  }

  /** Another handle on the connection behind `owner` (see `Pool.share`). */
  share(owner: PooledConnection<C>): PooledConnection<C> {
    return new PooledConnection(this.#sharedInternals, handleRecord(owner));
  }

  /** Applies a changed policy: closes surplus idle connections, serves waiters. */
  applyPolicy(policy: Policy): void {
    this.policy = policy;
    while (this.#idle.length > policy.keepIdle) {
      this.#closeRecord(this.#idle.shift()!, "overflow");
    }
    this.#dispatch();
  }

  // -------------------------------------------------------------------------------------------
  // Checkout

  #wait(
    timeout: number,
    signal: AbortSignal | undefined,
    stack: string | undefined,
    record: PoolRecord<C> | undefined,
    shareable: boolean,
  ): Promise<PooledConnection<C>> {
    const maxWaiting = this.#settings.maxWaiting;
    if (record === undefined && maxWaiting > 0 && this.#waiters.length >= maxWaiting) {
      this.#counters.requestsErrors++;
      return Promise.reject(
        new PoolError(
          "TOO_MANY_WAITERS",
          `Cannot check out a connection: ${this.#waiters.length} callers are already waiting ` +
            `(maxWaiting ${maxWaiting}); ${this.#hooks.describeCapacity()}`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const now = this.#now();
      const waiter: Waiter<PooledConnection<C>> = {
        resolve,
        reject,
        since: now,
        deadline: now + timeout,
        timeout,
        stack,
        settled: false,
        shareable,
        cleanup: null,
        prev: null,
        next: null,
      };
      if (signal !== undefined) {
        const onAbort = () => {
          if (waiter.settled) return;
          this.#waiters.remove(waiter);
          this.#checking.delete(waiter);
          this.#settle(waiter, signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      if (this.#settings.affinity) {
        // On Workers a timer only fires while the request that set it lives, so a shared one
        // could die with another request: here each checkout has its own.
        const clock = this.#settings.clock;
        const timer = clock.setTimeout(() => this.#expire(waiter), timeout);
        const previous = waiter.cleanup;
        waiter.cleanup = () => {
          clock.clearTimeout(timer);
          previous?.();
        };
      } else if (waiter.deadline < this.#deadlineAt) {
        // One timer for all waiters, armed for the earliest deadline: no timer per checkout.
        this.#armDeadline(waiter.deadline);
      }
      if (record !== undefined) return this.#deliver(record, waiter);
      this.#counters.requestsQueued++;
      this.#waiters.push(waiter);
      // Affinity: this caller's connection is made here, in its own context, and is its alone.
      if (this.#settings.affinity) this.#connector.start(waiter);
      else this.#fill();
    });
  }

  #armDeadline(at: number): void {
    const clock = this.#settings.clock;
    if (this.#deadlineTimer !== null) clock.clearTimeout(this.#deadlineTimer);
    this.#deadlineAt = at;
    this.#deadlineTimer = clock.setTimeout(
      () => this.#deadlinesDue(),
      Math.max(0, at - this.#now()),
    );
  }

  /** The deadline timer fired: expire every waiter that is due, re-arm for the next one. */
  #deadlinesDue(): void {
    this.#deadlineTimer = null;
    this.#deadlineAt = Infinity;
    const now = this.#now();
    let next = Infinity;
    for (const waiter of [...this.#waiters.toArray(), ...this.#checking]) {
      if (waiter.settled) continue;
      if (waiter.deadline <= now) this.#expire(waiter);
      else if (waiter.deadline < next) next = waiter.deadline;
    }
    if (next !== Infinity && !this.#closed) this.#armDeadline(next);
  }

  #expire(waiter: Waiter<PooledConnection<C>>): void {
    if (waiter.settled) return;
    this.#waiters.remove(waiter);
    this.#checking.delete(waiter);
    this.#counters.requestsErrors++;
    const cause = this.#connector.lastError;
    this.#settle(
      waiter,
      new PoolError(
        "POOL_TIMEOUT",
        `Cannot check out a connection: timed out after ${waiter.timeout} ms with ` +
          `${this.#hooks.describeCapacity()}, ${this.#connector.connecting} connecting, ` +
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
    // A connection handed over straight from connecting needs no proof that it works; one
    // that sat idle (even if never used: `min`) does.
    return !record.fresh && (this.#settings.prePing || this.#settings.check !== undefined);
  }

  /** Hands `record` to `waiter`, health-checking it first when asked to. */
  #deliver(record: PoolRecord<C>, waiter: Waiter<PooledConnection<C>>): void {
    this.#move(record, "busy");
    if (!this.#needsCheck(record)) return this.#hand(record, waiter);
    this.#checking.add(waiter);
    this.#healthCheck(record, waiter).then((outcome) => {
      this.#checking.delete(waiter);
      if (outcome === "ok") {
        if (waiter.settled || this.#closed) this.#put(record);
        else this.#hand(record, waiter);
        return;
      }
      if (outcome === "cut short") {
        // The caller's deadline ended the check, not the connection: it is not known to be
        // bad. Take it back as if returned (a ping still in flight is waited for).
        this.#expire(waiter);
        this.#resetAndPut(record, this.#settings.adapter.transactionStatus(record.connection));
        return;
      }
      // SQLAlchemy's pre-ping rule: a dead connection suggests its elders are dead too.
      if (this.#settings.adapter.isDisconnect(outcome.error)) this.#counters.connectionsLost++;
      this.#invalidate(record, outcome.error, false);
      this.#generation++;
      this.#closeStaleIdle("stale");
      if (!waiter.settled && !this.#closed) {
        this.#waiters.unshift(waiter);
        if (this.#settings.affinity) this.#connector.start(waiter);
      }
      this.#dispatch();
    });
  }

  /** Pre-ping and `check`, bounded by the waiter's deadline. */
  async #healthCheck(
    record: PoolRecord<C>,
    waiter: Waiter<PooledConnection<C>>,
  ): Promise<"ok" | "cut short" | { error: unknown }> {
    const clock = this.#settings.clock;
    const controller = new AbortController();
    const timer = clock.setTimeout(
      () => controller.abort(new Error("health check cut short by the checkout deadline")),
      Math.max(1, waiter.deadline - clock.now()),
    );
    try {
      if (this.#settings.prePing) {
        await this.#settings.adapter.ping(record.connection, controller.signal);
      }
      if (this.#settings.check) await this.#settings.check(record.connection);
      return "ok";
    } catch (error) {
      return controller.signal.aborted
        ? "cut short"
        : { error: error ?? new Error("check failed") };
    } finally {
      clock.clearTimeout(timer);
    }
  }

  #hand(record: PoolRecord<C>, waiter: Waiter<PooledConnection<C>>): void {
    waiter.settled = true;
    waiter.cleanup?.();
    const waited = this.#now() - waiter.since;
    this.#counters.requestsWaitMs += waited;
    waiter.resolve(this.#checkout(record, waited, waiter.stack));
  }

  #checkout(
    record: PoolRecord<C>,
    waitedMs: number,
    stack: string | undefined,
  ): PooledConnection<C> {
    this.#move(record, "busy");
    record.checkedOutAt = this.#time;
    record.checkouts++;
    record.fresh = false;
    record.leakReported = false;
    record.transactionSeenAt = null;
    record.transactionReported = false;
    record.stack = stack;
    const handle = new PooledConnection(this.#internals, record);
    record.out = true;
    record.handle = handle;
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
    if (this.#settings.adapter.isClosed(record.connection)) return "lost";
    if (record.generation < this.#generation) return "stale";
    // `#time` may be up to a tick old: near the end of a lifetime, read the clock.
    const expiresAt = record.expiresAt;
    if (
      this.#time + this.#settings.maintenanceInterval >= expiresAt && this.#now() >= expiresAt
    ) {
      return "lifetime";
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Making connections

  #busyCount(): number {
    return this.#live.size - this.#idle.length;
  }

  #open(): number {
    return this.#live.size;
  }

  /** Starts connecting for the waiters not yet covered, and up to `min`. */
  #fill(): void {
    if (this.#closed) return;
    const connector = this.#connector;
    const max = this.policy.max;
    while (
      !this.#settings.affinity &&
      this.#waiters.length > connector.connecting && this.#open() + connector.connecting < max
    ) {
      connector.start();
    }
    if (!connector.backingOff && !connector.gaveUp) {
      const min = Math.min(this.policy.min, max);
      while (this.#open() + connector.connecting < min) connector.start();
    }
    this.#upkeep.schedule();
  }

  #added(connection: C, createdAt: number, owner?: Waiter<PooledConnection<C>>): void {
    const record = new PoolRecord(
      connection,
      createdAt,
      this.#generation,
      createdAt + this.#lifetime(),
    );
    this.#live.add(record);
    record.unsubscribe = this.#settings.adapter.onClose(connection, (error) => {
      this.#lostIdle(record, error);
    });
    const event = { connection, info: record.info };
    if (!this.#everConnected) {
      this.#everConnected = true;
      this.#events.emit("firstConnect", event);
    }
    this.#events.emit("connect", event);
    this.#settings.logger.debug?.(`${this.#settings.name}: connected`, {
      ms: this.#now() - createdAt,
      ...this.gauges(),
    });
    if (owner === undefined) this.#put(record);
    else if (owner.settled || this.#closed) this.#closeRecord(record, "unwanted");
    else {
      this.#waiters.remove(owner);
      this.#deliver(record, owner);
    }
    if (this.#open() >= this.policy.min) {
      for (const entry of this.#ready.splice(0)) entry.resolve();
    }
    // Leaks, lifetimes and idle limits need watching from the first connection on.
    this.#upkeep.schedule();
  }

  /** The lifetime of a new connection: `maxLifetime` less up to 5 % jitter, or `recycle`. */
  #lifetime(): number {
    const { maxLifetime, recycle } = this.policy;
    const jittered = maxLifetime === Infinity
      ? Infinity
      : maxLifetime * (1 - 0.05 * this.#settings.clock.random());
    return Math.min(jittered, recycle);
  }

  #createFailed(error: unknown, owner?: Waiter<PooledConnection<C>>): void {
    if (this.#closed) return; // aborted by close(): nobody is waiting for it
    this.#settings.logger.warn?.(`${this.#settings.name}: connecting failed: ${message(error)}`);
    this.#events.emit("error", { error, context: "connect" });
    // The caller that this attempt was for gets its error, not a timeout later.
    const waiter = owner === undefined ? this.#waiters.shift() : owner;
    if (owner !== undefined) this.#waiters.remove(owner);
    if (waiter !== null && !waiter.settled) {
      this.#counters.requestsErrors++;
      this.#settle(waiter, error);
    }
    if (isConfigError(error)) {
      for (const entry of this.#ready.splice(0)) entry.reject(error);
    }
    if (
      this.#open() + this.#connector.connecting < this.policy.min &&
      this.#connector.backOff(this.policy.reconnectTimeout)
    ) {
      this.#settings.logger.error?.(
        `${this.#settings.name}: giving up reconnecting after ${this.policy.reconnectTimeout} ms`,
      );
      this.#events.emit("error", { error, context: "reconnect failed" });
      this.#hooks.reconnectFailed();
    }
    this.#fill();
  }

  // -------------------------------------------------------------------------------------------
  // Returning connections

  /**
   * A connection is available (new, or returned and reset): to a waiter, idle, or closed.
   * `fresh`: the caller has just found it neither stale nor soft-invalidated.
   */
  #put(record: PoolRecord<C>, fresh = false): void {
    if (this.#closed) return this.#closeRecord(record, "pool closed");
    if (!fresh) {
      const stale = this.#staleReason(record);
      if (stale !== undefined || record.soft) {
        this.#closeRecord(record, stale ?? "invalidated");
        return this.#dispatch();
      }
    }
    // Affinity: a connection only ever serves the caller it was made for (on Workers, a
    // returned connection belongs to the request that opened it).
    const waiter = this.#settings.affinity ? null : this.#waiters.shift();
    if (waiter !== null) return this.#deliver(record, waiter);
    if (this.#idle.length >= this.policy.keepIdle) {
      // A new connection can arrive after the caller it was made for got another one.
      const reason = record.checkouts === 0
        ? "unwanted"
        : this.policy.keepIdle === 0
        ? "returned"
        : "overflow";
      return this.#closeRecord(record, reason);
    }
    record.fresh = false;
    this.#move(record, "idle");
    record.lastUsedAt = this.#time;
    this.#idle.push(record);
    this.#upkeep.schedule();
  }

  #checkin(record: PoolRecord<C>): Promise<void> {
    this.#leaks.forget(record);
    record.out = false;
    const now = this.#time;
    this.#counters.usageMs += now - record.checkedOutAt;
    const connection = record.connection;
    if (this.#events.has("checkin")) {
      this.#events.emit("checkin", { connection, info: record.info });
    }
    if (record.state !== "busy") return RESOLVED; // invalidated or closed while out
    const stale = this.#staleReason(record);
    if (stale !== undefined || record.soft) {
      // Broken, or going to be closed anyway: no point resetting it first.
      if (stale === "lost") this.#counters.returnsBad++;
      this.#closeRecord(record, stale === "lost" ? "returned broken" : stale ?? "invalidated");
      this.#dispatch();
      return RESOLVED;
    }
    const adapter = this.#settings.adapter;
    const status = adapter.transactionStatus(connection);
    if (status === "idle" && !adapter.isBusy(connection) && this.#settings.reset === undefined) {
      this.#put(record, true);
      return RESOLVED;
    }
    return this.#resetAndPut(record, status);
  }

  async #resetAndPut(record: PoolRecord<C>, status: PoolTransactionStatus): Promise<void> {
    const connection = record.connection;
    try {
      await resetForReuse(connection, status, this.#settings, (action) => {
        this.#events.emit("reset", { connection, info: record.info, action });
      });
    } catch (error) {
      this.#counters.returnsBad++;
      this.#settings.logger.warn?.(
        `${this.#settings.name}: closing a returned connection: reset failed: ${message(error)}`,
      );
      this.#events.emit("error", { error, context: "reset", connection });
      if (record.state === "busy") this.#closeRecord(record, "reset failed");
      return this.#dispatch();
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
    this.#settings.logger.info?.(`${this.#settings.name}: invalidated a connection`, {
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
    this.#events.emit("error", {
      error: error ?? new Error("the connection closed while idle"),
      context: "idle",
      connection: record.connection,
    });
    this.#closeIdle(record, "lost");
    this.#dispatch();
  }

  #detach(record: PoolRecord<C>): void {
    this.#leaks.forget(record);
    record.out = false;
    record.unsubscribe();
    this.#live.delete(record);
    record.state = "detached";
    if (this.#closed && this.#busyCount() === 0) this.#drained?.();
    this.#events.emit("detach", { connection: record.connection, info: record.info });
    this.#dispatch();
  }

  #closeDetached(record: PoolRecord<C>): Promise<void> {
    record.state = "closed";
    this.#events.emit("closeDetached", { connection: record.connection, info: record.info });
    return this.#settings.adapter.close(record.connection, false).catch(() => {});
  }

  #closeStaleIdle(reason: PoolCloseReason): void {
    const generation = this.#generation;
    for (const record of this.#idle.filter((r) => r.generation < generation)) {
      this.#closeIdle(record, reason);
    }
  }

  /** Takes a record out of the idle list and closes it. */
  #closeIdle(record: PoolRecord<C>, reason: PoolCloseReason): void {
    const at = this.#idle.indexOf(record);
    if (at >= 0) this.#idle.splice(at, 1);
    record.state = "busy";
    this.#closeRecord(record, reason);
  }

  /** Closes a record's connection; the record must not be in the idle list. */
  #closeRecord(record: PoolRecord<C>, reason: PoolCloseReason, force?: boolean): void {
    if (record.state === "closed" || record.state === "detached") return;
    this.#live.delete(record);
    record.state = "closed";
    record.unsubscribe();
    this.#events.emit("close", { connection: record.connection, info: record.info, reason });
    force ??= !GRACEFUL.has(reason);
    const closing = this.#settings.adapter.close(record.connection, force).catch(() => {});
    this.#closing.add(closing);
    closing.finally(() => this.#closing.delete(closing));
    if (this.#closed && this.#busyCount() === 0) this.#drained?.();
  }

  #move(record: PoolRecord<C>, state: "idle" | "busy"): void {
    // The one place a record changes between idle and busy.
    record.state = state;
  }

  // -------------------------------------------------------------------------------------------
  // Closing

  async #drain(timeout: number): Promise<void> {
    if (this.#busyCount() > 0) {
      const clock = this.#settings.clock;
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = clock.setTimeout(resolve, timeout);
      });
      clock.clearTimeout(timer);
      this.#drained = null;
      // Still out after the grace period: closed under their users' feet.
      for (const record of [...this.#live]) {
        if (record.state === "busy") this.#closeRecord(record, "pool closed", true);
      }
    }
    // Connections still being made close as they arrive (#put); wait for every close.
    await this.#connector.settled();
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
  }

  /** The gauges of `stats()`. */
  gauges(): PoolGauges {
    const busy = this.#busyCount();
    const idle = this.#idle.length;
    return {
      poolMin: this.policy.min,
      poolMax: this.policy.max,
      poolSize: busy + idle + this.#connector.connecting,
      poolAvailable: idle,
      requestsWaiting: this.#waiters.length,
      checkedIn: idle,
      checkedOut: busy,
      overflow: Math.max(0, busy + idle - this.policy.poolSize),
    };
  }

  #closedError(): PoolError {
    return new PoolError(
      "POOL_CLOSED",
      `Cannot check out a connection: ${this.#settings.name} is closed`,
    );
  }
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
