// The pool's state machine, under every pool class: a slot per open connection, in one named
// state at a time, and `move`, the one writer of that state, of the idle list and of the set
// of open slots (the gauges follow from those). Top to bottom: the slot; `move`; checkout
// (queueing, one deadline, health checks, shared statements); checkin (reset, reuse);
// connecting (for waiters and up to `min`); upkeep; invalidation, loss and detaching;
// closing. `Pool` (pool.ts) is the public face over it; the pool classes choose a Policy. (On
// Workers, createPool's NullPool runs on an engine of its own: _request_pool.ts.)
//
// Beside it, modules that keep their own state or are pure functions: waiters (_waiters.ts),
// the deadline timer (_deadlines.ts), health checks (_health.ts), resets (_reset.ts), shared
// connections (_sharing.ts), leaks (_leaks.ts), the upkeep timer and its jobs (_upkeep.ts),
// connection attempts and their backoff (_connector.ts).

import type { Emitter } from "../_emitter.ts";
import { errorMessage, PoolError, PoolEventError } from "../errors.ts";
import { PoolTime } from "./_clock.ts";
import { type Attempt, Connector, isConfigError, isTransientConnectError } from "./_connector.ts";
import { Deadlines } from "./_deadlines.ts";
import { healthCheck } from "./_health.ts";
import { Closing } from "./_closing.ts";
import { CheckoutRecord, checkoutStack, LeakWatch } from "./_leaks.ts";
import { pipelineable } from "./_pipeline.ts";
import { resetForReuse } from "./_reset.ts";
import { type SharedUse, Sharing } from "./_sharing.ts";
import { expired, idledOut, Upkeep } from "./_upkeep.ts";
import { newWaiter, poolClosed, type Waiter, type WaiterQueue, Waiting } from "./_waiters.ts";
import type { QueryResult } from "../result.ts";
import type { EngineHooks, PoolEngine, PoolQueryOptions } from "./pool.ts";
import type { PoolAdapter, PoolTransactionStatus } from "./adapter.ts";
import type { PoolCloseReason, PoolEvents } from "./events.ts";
import {
  type CheckoutOptions,
  checkoutTimeout,
  type Creator,
  type Policy,
  type ResolvedOptions,
} from "./options.ts";
import { PooledConnection, type PoolInternals } from "./pooled_connection.ts";
import type { PoolCounters, PoolGauges } from "./stats.ts";

// ---------------------------------------------------------------------------------------------
// The slot

/**
 * What is happening to a slot's connection:
 * - `new`: just made, not yet placed (it never sat idle, so it needs no health check);
 * - `idle`: in the idle list, ready to be checked out;
 * - `checking`: health-checked for a waiter before being handed over;
 * - `out`: checked out (a handle is out);
 * - `resetting`: returned, being made fit for reuse (its login awaited, rolled back, reset);
 * - `detached`: taken out of the pool with its handle, which closes it when released;
 * - `closed`: closed, or being closed.
 */
export type SlotState = "new" | "idle" | "checking" | "out" | "resetting" | "detached" | "closed";

/** Whether a slot may move from state `from` to `to`; any other move is a bug. */
function legal(from: SlotState, to: SlotState): boolean {
  // A switch, not a table: this runs on every checkout and checkin, and compares interned
  // strings where a table would be a keyed lookup.
  switch (from) {
    case "new":
      return to === "idle" || to === "out" || to === "checking" || to === "closed";
    case "idle":
      return to === "out" || to === "checking" || to === "closed";
    case "checking":
      return to === "out" || to === "checking" || to === "idle" || to === "closed";
    case "out":
      return to === "resetting" || to === "idle" || to === "detached" || to === "closed";
    case "resetting":
      return to === "idle" || to === "out" || to === "checking" || to === "closed";
    case "detached":
      return to === "closed";
    case "closed":
      return false;
  }
}

function illegalMove(from: SlotState, to: SlotState): Error {
  return new Error(`edgepool internal error: a pool slot cannot move from ${from} to ${to}`);
}

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

/**
 * A pool's long-lived slot for one connection (SQLAlchemy's _ConnectionRecord): the
 * connection, its generation and lifetime, the `info` that lives as long as it does, and what
 * the current checkout (one handle, a PooledConnection) needs kept beside it.
 */
export class Slot<C> {
  readonly connection: C;
  /** The pool generation this connection was made in; older ones are recycled. */
  readonly generation: number;
  /** When this connection must retire (lifetime with jitter, or recycle). */
  readonly expiresAt: number;
  /** What is happening to it: written by the engine's `move` only. */
  state: SlotState = "new";
  readonly info: Record<string, unknown> = {};
  /** When it was last returned (idle since). */
  lastUsedAt: number;
  /**
   * Handed over with its login still under way (to a checkout whose first act is a query):
   * settles with the login, and is `null` again once it succeeded.
   */
  login: Promise<void> | null = null;
  /** Soft-invalidated: close instead of reuse when returned. */
  soft = false;
  /** Another connection was lost since this one last proved itself: ping before reuse. */
  suspect = false;
  /** Stops listening for the connection closing by itself. */
  unsubscribe: () => void = () => {};
  /** Its checkouts: the count, and the current one as leak watching follows it (_leaks.ts). */
  readonly checkout: CheckoutRecord = new CheckoutRecord();
  /** `pool.query` statements sharing it while it is out (_sharing.ts); `null` until shared. */
  share: SharedUse<C> | null = null;

  constructor(connection: C, createdAt: number, generation: number, expiresAt: number) {
    this.connection = connection;
    this.lastUsedAt = createdAt;
    this.generation = generation;
    this.expiresAt = expiresAt;
  }
}

const RESOLVED: Promise<void> = /* @__PURE__ */ Promise.resolve();

/** The pool engine. */
export class Engine<C> implements PoolEngine<C>, PoolInternals<C, Slot<C>> {
  /** The sizing and lifetime rules. */
  policy: Policy;
  readonly #settings: ResolvedOptions<C>;
  readonly #events: Emitter<PoolEvents<C>>;
  readonly #counters: PoolCounters;
  /** The idle slots, oldest-returned first. Written by `move` only. */
  readonly #idle: Slot<C>[] = [];
  /** Every open slot, whatever its state. Written by `move` only. */
  readonly #live = new Set<Slot<C>>();
  /** Closes under way, so that closing the pool can wait for them. */
  readonly #closing = new Closing();
  #everConnected = false;
  readonly #waiting: Waiting<PooledConnection<C>>;
  /** `#waiting.queue`, the queue of callers waiting for a connection. */
  readonly #waiters: WaiterQueue<PooledConnection<C>>;
  readonly #deadlines: Deadlines<PooledConnection<C>>;
  /** Callers of `pool.wait()`. */
  /** Callers of `pool.wait()`: settled when `min` connections are open, or waiting fails. */
  readonly #ready: { resolve(): void; reject(error: unknown): void }[] = [];
  /** Checked-out connections shared: by `pool.query` statements, and by `Pool.share`. */
  readonly #sharing: Sharing<C>;
  /** For the handles (see `PoolInternals`). */
  readonly adapter: PoolAdapter<C>;
  /** For the handles (see `PoolInternals`). */
  readonly queryTimeout: number;
  /** For the handles (see `PoolInternals`): the pool's events. */
  readonly events: Emitter<PoolEvents<C>>;
  readonly #leaks: LeakWatch<C>;
  /** Connection attempts. */
  readonly #connector: Connector<C>;
  /** The timer that tries connecting again once the backoff has passed, or `null`. */
  #retryTimer: unknown = null;
  readonly #hooks: EngineHooks;
  readonly #upkeep: Upkeep;
  #generation = 0;
  /** The clock as last read, for the hot paths (see `PoolTime`). */
  readonly #time: PoolTime;
  #closed = false;
  #closeDone: Promise<void> | null = null;

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
    this.policy = policy;
    this.adapter = settings.adapter;
    this.queryTimeout = settings.queryTimeout;
    this.events = events;
    this.#time = new PoolTime(settings.clock);
    this.#hooks = hooks;
    this.#connector = new Connector(creator, settings, counters, events);
    this.#waiting = new Waiting({
      settings,
      counters,
      time: this.#time,
      connector: this.#connector,
      describeCapacity: () => hooks.describeCapacity(),
    });
    this.#waiters = this.#waiting.queue;
    this.#deadlines = new Deadlines(settings.clock, this.#time, this.#waiting);
    this.#sharing = new Sharing<C>({
      settings,
      waiting: this.#waiting,
      internals: this,
    });
    this.#leaks = new LeakWatch(settings, events, (slot) => this.checkin(slot));
    this.#upkeep = new Upkeep(settings, (now) => this.#upkeepTick(now));
    // `min` connections open at start, once the pool class has finished constructing.
    if (policy.min > 0) queueMicrotask(() => this.#fill());
  }

  /** Whether the pool was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connections being opened now. */
  get connecting(): number {
    return this.#connector.connecting;
  }

  /** The clock as last read (up to a maintenance tick old; see `PoolTime`). */
  get time(): number {
    return this.#time.time;
  }

  /** Reads the clock. */
  now(): number {
    return this.#time.now();
  }

  /**
   * Whether a `pool.query` statement may share a connection with others (see `Pool.query`):
   * when the pool pipelines, and it is a single statement with no `signal` and no time limit.
   */
  shareable(sql: string, options: PoolQueryOptions | undefined): boolean {
    const settings = this.#settings;
    return settings.queryPipeline > 1 && options?.signal === undefined &&
      (options?.queryTimeout ?? settings.queryTimeout) === 0 && pipelineable(sql);
  }

  /**
   * Runs a shareable statement on a busy connection with room, when no connection is free and
   * none may be opened: the connection and the outcome. `undefined`: none to join; check out
   * (`"shareable"`) and `startShared` on it.
   */
  joinShared<Row>(
    sql: string,
    params: readonly unknown[] | undefined,
    options: PoolQueryOptions | undefined,
  ): [PooledConnection<C>, Promise<QueryResult<Row>>] | undefined {
    const saturated = !this.#closed && this.#idle.length === 0 &&
      this.#live.size + this.#connector.connecting >= this.policy.max;
    const joined = this.#sharing.join(saturated, this.#generation);
    if (joined === undefined) return undefined;
    return [
      joined.share!.sharer!,
      this.#sharing.run<Row>(joined, sql, params, options),
    ];
  }

  /** Runs a shareable statement on `on`, its own checkout, which others may join meanwhile. */
  startShared<Row>(
    on: PooledConnection<C>,
    sql: string,
    params: readonly unknown[] | undefined,
    options: PoolQueryOptions | undefined,
  ): Promise<QueryResult<Row>> {
    return this.#sharing.run<Row>(this.#sharing.start(on), sql, params, options);
  }

  /** Another handle on `owner`'s connection (see `Pool.share`). */
  share(owner: PooledConnection<C>): PooledConnection<C> {
    return this.#sharing.share(owner);
  }

  /** The gauges of `stats()`. */
  gauges(): PoolGauges {
    const idle = this.#idle.length;
    const busy = this.#live.size - idle;
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

  // -------------------------------------------------------------------------------------------
  // Moving a slot

  /**
   * Moves `slot` to state `to`, keeping the idle list and the set of open slots in step: the
   * only writer of all three. An illegal move is a bug in the pool, and throws.
   */
  #move(slot: Slot<C>, to: SlotState): void {
    const from = slot.state;
    // A checkout's and a checkin's moves (idle to out, and back) are checked in place; the
    // rest by `legal`, out of line, so that this stays small enough to inline.
    if ((from === "idle" ? to !== "out" : from !== "out" || to !== "idle") && !legal(from, to)) {
      throw illegalMove(from, to);
    }
    slot.state = to;
    if (from === "idle") this.#leaveIdle(slot);
    else if (from === "new") this.#live.add(slot);
    if (to === "idle") {
      slot.lastUsedAt = this.#time.time;
      this.#idle.push(slot);
    } else if (to === "closed" || to === "detached") this.#leave(slot, from);
  }

  /** Takes `slot` out of the idle list (for `move`). */
  #leaveIdle(slot: Slot<C>): void {
    const idle = this.#idle;
    // Taken from either end (FIFO or LIFO) but for closes by upkeep and loss.
    if (idle[0] === slot) idle.shift();
    else if (idle[idle.length - 1] === slot) idle.pop();
    else idle.splice(idle.indexOf(slot), 1);
  }

  /** Takes `slot`, closed or detached, out of the open ones (for `move`). */
  #leave(slot: Slot<C>, from: SlotState): void {
    if (this.#live.delete(slot) && this.#closing.waiting && from !== "idle") {
      // A checked-out connection left: the last one ends the wait of `#drain`.
      if (this.#live.size === this.#idle.length) this.#closing.allBack();
    }
  }

  /** Closes a slot's connection, gracefully or (`force`, default by reason) cut at once. */
  #close(slot: Slot<C>, reason: PoolCloseReason, force?: boolean): void {
    if (slot.state === "closed" || slot.state === "detached") return;
    this.#move(slot, "closed");
    slot.unsubscribe();
    this.#events.emit("close", { connection: slot.connection, info: slot.info, reason });
    force ??= !GRACEFUL.has(reason);
    this.#closing.add(this.#settings.adapter.close(slot.connection, force).catch(() => {}));
  }

  // -------------------------------------------------------------------------------------------
  // Checkout

  /**
   * Checks out a connection (see `Pool.connect`). `statement`: for a checkout whose first act
   * is a query (a `pool.query` statement, a transaction's BEGIN, a batch), which takes a new
   * connection whose login is still under way (the login's failure is then its own), and, if
   * `"shareable"`, may later be joined by other statements.
   */
  connect(
    options?: CheckoutOptions,
    statement?: "shareable" | "alone",
  ): Promise<PooledConnection<C>> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let timeout: number;
    try {
      timeout = checkoutTimeout(options, this.#settings.timeout);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#counters.requestsNum++;
    // Where the caller asked, not where the pool happened to hand the connection over.
    const stack = this.#settings.recordStacks ? checkoutStack() : undefined;
    if (this.#waiters.length === 0) {
      const slot = this.#takeIdle();
      if (slot !== undefined) {
        if (!this.#needsCheck(slot)) return Promise.resolve(this.#checkout(slot, 0, stack));
        return this.#wait(timeout, signal, stack, slot, statement);
      }
    }
    return this.#wait(timeout, signal, stack, undefined, statement);
  }

  /**
   * `connect`'s quick way, taken at once: an idle connection that needs no check, checked out
   * now, with nobody waiting ahead; `undefined` when there is none (or the options are bad:
   * `connect` then says why). A `pool.query` statement that starts on it this way is on it
   * before the callers behind it in the same tick look for a connection to join, so their
   * statements leave in its first write rather than each in one of its own.
   */
  connectNow(options?: CheckoutOptions): PooledConnection<C> | undefined {
    if (this.#closed || this.#waiters.length > 0 || options?.signal?.aborted) return undefined;
    try {
      checkoutTimeout(options, this.#settings.timeout);
    } catch {
      return undefined;
    }
    const slot = this.#takeIdle();
    if (slot === undefined || this.#needsCheck(slot)) return undefined;
    this.#counters.requestsNum++;
    const stack = this.#settings.recordStacks ? checkoutStack() : undefined;
    return this.#checkout(slot, 0, stack);
  }

  /** Queues a caller (or, with `slot`, health-checks that idle slot for it). */
  #wait(
    timeout: number,
    signal: AbortSignal | undefined,
    stack: string | undefined,
    slot: Slot<C> | undefined,
    statement: "shareable" | "alone" | undefined,
  ): Promise<PooledConnection<C>> {
    const maxWaiting = this.#settings.maxWaiting;
    if (slot === undefined && maxWaiting > 0 && this.#waiters.length >= maxWaiting) {
      return Promise.reject(this.#waiting.refused());
    }
    return new Promise((resolve, reject) => {
      const now = this.#time.forWait();
      const waiter = newWaiter<PooledConnection<C>>(
        resolve,
        reject,
        now,
        timeout,
        stack,
        statement,
      );
      if (signal !== undefined) this.#waiting.abortOn(waiter, signal);
      this.#deadlines.watch(waiter);
      if (slot !== undefined) return this.#offer(slot, waiter);
      this.#counters.requestsQueued++;
      this.#waiters.push(waiter);
      // A full pool (the usual reason to wait) has nothing to open: skip the fill.
      if (this.#live.size + this.#connector.connecting < this.policy.max) this.#fill();
    });
  }

  #needsCheck(slot: Slot<C>): boolean {
    // A connection handed over straight from connecting needs no proof that it works; one
    // that sat idle (even if never used: `min`) does, and so does one suspected since
    // another connection was lost.
    return slot.state !== "new" &&
      (this.#settings.prePing || this.#settings.check !== undefined || slot.suspect);
  }

  /** Offers `slot` to `waiter`: checked out to it, health-checked first when asked to. */
  #offer(slot: Slot<C>, waiter: Waiter<PooledConnection<C>>): void {
    if (!this.#needsCheck(slot)) return this.#handOver(slot, waiter);
    this.#move(slot, "checking");
    this.#waiting.checking.add(waiter);
    healthCheck(slot.connection, waiter.deadline, this.#settings).then((outcome) => {
      this.#waiting.checking.delete(waiter);
      if (slot.state !== "checking") return; // closed meanwhile (the pool closing)
      if (outcome === "ok") {
        slot.suspect = false;
        if (waiter.settled || this.#closed) this.#place(slot, false);
        else this.#handOver(slot, waiter);
        return;
      }
      if (outcome === "cut short" || outcome === "timed out") {
        // A ping that does not answer may be on a connection that never will (a network that
        // went silent): it is closed, not trusted again, and its place freed at once.
        this.#close(slot, "stuck");
        if (outcome === "cut short") this.#waiting.expire(waiter);
      } else {
        if (this.#settings.adapter.isDisconnect(outcome.error)) {
          this.#counters.connectionsLost++;
          this.#suspectOthers(slot);
        }
        this.invalidate(slot, outcome.error, false);
      }
      // The caller keeps its turn, and tries another connection within its deadline.
      if (!waiter.settled && !this.#closed) this.#waiters.unshift(waiter);
      this.#serve();
    });
  }

  /** Ends `waiter`'s wait with `slot` checked out to it. */
  #handOver(slot: Slot<C>, waiter: Waiter<PooledConnection<C>>): void {
    const waited = this.#waiting.served(waiter);
    waiter.resolve(this.#checkout(slot, waited, waiter.stack));
  }

  #checkout(slot: Slot<C>, waitedMs: number, stack: string | undefined): PooledConnection<C> {
    this.#move(slot, "out");
    const handle = new PooledConnection(this, slot);
    slot.checkout.start(handle, this.#time.time, stack);
    if (this.#events.has("checkout")) {
      this.#events.emit("checkout", { connection: slot.connection, info: slot.info, waitedMs });
    }
    return handle;
  }

  /** The idle slot to check out next (left idle), closing stale ones on the way. */
  #takeIdle(): Slot<C> | undefined {
    const idle = this.#idle;
    while (idle.length > 0) {
      const slot = this.policy.lifo ? idle[idle.length - 1] : idle[0];
      const stale = this.#staleReason(slot);
      if (stale === undefined) return slot;
      this.#close(slot, stale);
    }
    return undefined;
  }

  #staleReason(slot: Slot<C>): PoolCloseReason | undefined {
    if (this.#settings.adapter.isClosed(slot.connection)) return "lost";
    if (slot.generation < this.#generation) return "stale";
    // The last reading may be up to a tick old: near the end of a lifetime, read the clock.
    const expiresAt = slot.expiresAt;
    const time = this.#time;
    if (time.time + this.#settings.maintenanceInterval >= expiresAt && time.now() >= expiresAt) {
      return "lifetime";
    }
    return undefined;
  }

  /** Serves waiters from idle connections, then connects for the rest. */
  #serve(): void {
    while (this.#waiters.length > 0) {
      const slot = this.#takeIdle();
      if (slot === undefined) break;
      this.#offer(slot, this.#waiters.shift()!);
    }
    this.#fill();
  }

  // -------------------------------------------------------------------------------------------
  // Checkin (this and the methods of the next section are what a handle calls: the
  // `PoolInternals` of pooled_connection.ts)

  checkin(slot: Slot<C>): Promise<void> {
    this.#leaks.forget(slot);
    this.#counters.usageMs += this.#time.time - slot.checkout.at;
    if (this.#events.has("checkin")) {
      this.#events.emit("checkin", { connection: slot.connection, info: slot.info });
    }
    const login = slot.login;
    // Unless it was closed while out (stuck, invalidated, the pool closing).
    if (slot.state === "out") {
      if (login === null && this.#backToIdle(slot)) return RESOLVED;
      this.#move(slot, "resetting");
    }
    // Returned before its login ended (no query went out on it): it is reused once logged in,
    // so that only a query ever rides behind a login.
    if (login !== null) {
      return login.then(() => this.#reset(slot), () => {
        if (slot.state !== "resetting") return;
        this.#close(slot, "returned broken");
        this.#serve();
      });
    }
    return this.#reset(slot);
  }

  /**
   * The common return, on the hot path: a connection idle on the server, neither stale nor
   * invalidated, nobody waiting and room in the idle list goes straight back to it, without
   * passing through `resetting` (what `#reset` and `#place` would decide, in one step).
   */
  #backToIdle(slot: Slot<C>): boolean {
    if (
      this.#closed || this.#waiters.length > 0 || slot.soft ||
      this.#idle.length >= this.policy.keepIdle || this.#settings.reset !== undefined
    ) return false;
    const adapter = this.#settings.adapter;
    const connection = slot.connection;
    if (
      adapter.transactionStatus(connection) !== "idle" || adapter.isBusy(connection) ||
      this.#staleReason(slot) !== undefined
    ) return false;
    this.#move(slot, "idle");
    this.#upkeep.schedule(true);
    return true;
  }

  /** Makes a returned slot fit for reuse where needed (roll back, `reset`), then places it. */
  #reset(slot: Slot<C>): Promise<void> {
    if (slot.state !== "resetting") return RESOLVED; // invalidated or closed while out
    const stale = this.#staleReason(slot);
    if (stale !== undefined || slot.soft) {
      // Broken, or going to be closed anyway: no point resetting it first.
      if (stale === "lost") this.#counters.returnsBad++;
      this.#close(slot, stale === "lost" ? "returned broken" : stale ?? "invalidated");
      this.#serve();
      return RESOLVED;
    }
    const connection = slot.connection;
    const adapter = this.#settings.adapter;
    const status = adapter.transactionStatus(connection);
    if (status === "idle" && !adapter.isBusy(connection) && this.#settings.reset === undefined) {
      this.#place(slot, true);
      return RESOLVED;
    }
    return this.#resetThenPlace(slot, status);
  }

  async #resetThenPlace(slot: Slot<C>, status: PoolTransactionStatus): Promise<void> {
    const connection = slot.connection;
    try {
      await resetForReuse(connection, status, this.#settings, (action) => {
        this.#events.emit("reset", { connection, info: slot.info, action });
      });
    } catch (error) {
      this.#counters.returnsBad++;
      this.#settings.logger.warn?.(
        `${this.#settings.name}: closing a returned connection: reset failed: ${
          errorMessage(error)
        }`,
      );
      this.#events.emit("error", new PoolEventError(error, "reset", connection));
      if (slot.state === "resetting") this.#close(slot, "reset failed");
      return this.#serve();
    }
    if (slot.state === "resetting") this.#place(slot, false);
    else this.#serve();
  }

  /**
   * A connection is available (new, health-checked for a caller who left, or returned and
   * reset): to a waiter, idle, or closed. `vetted`: the caller has just found it neither stale
   * nor soft-invalidated.
   */
  #place(slot: Slot<C>, vetted: boolean): void {
    if (this.#closed) return this.#close(slot, "pool closed");
    if (!vetted) {
      const stale = this.#staleReason(slot);
      if (stale !== undefined || slot.soft) {
        this.#close(slot, stale ?? "invalidated");
        return this.#serve();
      }
    }
    const waiter = this.#waiters.shift();
    if (waiter !== null) return this.#offer(slot, waiter);
    if (this.#idle.length >= this.policy.keepIdle) {
      // A new connection can arrive after the caller it was made for got another one.
      const reason = slot.checkout.count === 0
        ? "unwanted"
        : this.policy.keepIdle === 0
        ? "returned"
        : "overflow";
      return this.#close(slot, reason);
    }
    this.#move(slot, "idle");
    this.#upkeep.schedule(true);
  }

  // -------------------------------------------------------------------------------------------
  // Connecting

  /**
   * Starts connecting for the waiters no attempt in flight covers yet, then up to `min` unless
   * background connecting gave up, never past `max` open plus connecting. While connecting
   * fails, one attempt at a time, once the backoff delay has passed (a timer comes back then).
   */
  #fill(): void {
    if (this.#closed) return;
    const connector = this.#connector;
    const live = this.#live;
    const waiters = this.#waiters;
    const max = this.policy.max;
    const min = connector.gaveUp ? 0 : Math.min(this.policy.min, max);
    const wanted = () =>
      live.size + connector.connecting < max &&
      (waiters.length > connector.connecting || live.size + connector.connecting < min);
    const wait = connector.backoffLeft;
    if (wait === undefined) {
      while (wanted()) this.#start();
    } else if (wanted()) {
      if (wait > 0) this.#retryIn(wait);
      // One attempt probes; the others wait for its outcome.
      else if (connector.connecting === 0) this.#start();
    }
    this.#upkeep.schedule(live.size > 0 || this.policy.min > 0 || wait !== undefined);
  }

  #retryIn(wait: number): void {
    if (this.#retryTimer !== null) return;
    this.#retryTimer = this.#settings.clock.setTimeout(
      () => {
        this.#retryTimer = null;
        this.#fill();
      },
      wait,
      this.#waiting.queue.length > 0,
    );
  }

  /** Starts one connection attempt. */
  #start(): void {
    this.#connector.attempt(this.#takesEarly, this.#attempted);
  }

  readonly #attempted = (made: Attempt<C>): void => {
    if (made.ok) this.#connected(made.connection, made.startedAt, made.login);
    else this.#connectFailed(made.error, true);
  };

  /**
   * Whether the caller a new connection goes to, the first in line, takes one whose login is
   * still under way: a statement does, but not while connecting fails (a statement riding
   * behind a login that fails would fail with it, where a caller waiting for a proven
   * connection just waits).
   */
  readonly #takesEarly = (): boolean => {
    const waiter = this.#waiters.head;
    return waiter !== null && !waiter.settled && waiter.statement && !this.#closed &&
      this.#connector.lastError === undefined;
  };

  /** A connection was made: a new slot, placed (to the first in line, usually). */
  #connected(connection: C, createdAt: number, login: Promise<void> | null): void {
    const slot = new Slot(
      connection,
      createdAt,
      this.#generation,
      createdAt + this.#lifetime(),
    );
    slot.unsubscribe = this.#settings.adapter.onClose(connection, (error) => {
      this.#closedByItself(slot, error);
    });
    const event = { connection, info: slot.info };
    if (!this.#everConnected) {
      this.#everConnected = true;
      this.#events.emit("firstConnect", event);
    }
    this.#events.emit("connect", event);
    if (login !== null) {
      slot.login = login;
      login.then(() => {
        slot.login = null;
        this.#readyIfMin();
      }, (error) => this.#connectFailed(error, false));
    }
    this.#settings.logger.debug?.(`${this.#settings.name}: connected`, {
      ms: this.#time.now() - createdAt,
      ...this.gauges(),
    });
    this.#place(slot, false);
    if (login === null) this.#readyIfMin();
    // Connecting works again: connect for the callers who waited out the failures. (And leaks,
    // lifetimes and idle limits need watching from the first connection on: `#fill` schedules
    // upkeep.)
    this.#fill();
  }

  /** The lifetime of a new connection: `maxLifetime` less up to 5 % jitter, or `recycle`. */
  #lifetime(): number {
    const { maxLifetime, recycle } = this.policy;
    const jittered = maxLifetime === Infinity
      ? Infinity
      : maxLifetime * (1 - 0.05 * this.#settings.clock.random());
    return Math.min(jittered, recycle);
  }

  /**
   * A connect failed (`first`: the first in line waited for it; else it was the login of a
   * connection handed over early, whose statement had the error). A failure that may pass
   * (refused, reset, timed out, the server starting up or shutting down, too many
   * connections: see `isTransientConnectError`) fails nobody: callers wait within their own
   * deadlines while the pool tries again after a backoff delay, and one whose deadline comes
   * first gets `POOL_TIMEOUT` with this error as its cause. Any other (a wrong password, a
   * missing database) reaches the first in line at once.
   */
  #connectFailed(error: unknown, first: boolean): void {
    if (this.#closed) return; // aborted by close(): nobody is waiting for it
    // `pool.wait()` is over if retrying will not fix it.
    if (isConfigError(error)) { for (const entry of this.#ready.splice(0)) entry.reject(error); }
    if (!isTransientConnectError(error)) {
      if (first) this.#waiting.connectFailed(error, undefined);
      if (this.#live.size + this.#connector.connecting < this.policy.min) {
        this.#backOff(error, false);
      }
    } else this.#backOff(error, this.#waiters.length > 0);
    this.#fill();
  }

  #backOff(error: unknown, waiting: boolean): void {
    if (this.#connector.backOff(this.policy.reconnectTimeout, error, waiting)) {
      this.#hooks.reconnectFailed();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Upkeep

  /** An upkeep tick at `now`: the jobs of _upkeep.ts, then refilling (which schedules the next). */
  #upkeepTick(now: number): void {
    if (this.#closed) return;
    this.#time.time = now;
    for (const slot of expired(this.#idle, now)) this.#close(slot, "lifetime");
    const { min, maxIdle } = this.policy;
    for (const slot of idledOut(this.#idle, this.#live.size, min, maxIdle, now)) {
      this.#close(slot, "idle");
    }
    this.#leaks.tick(this.#live, now);
    this.#fill();
  }

  // -------------------------------------------------------------------------------------------
  // Invalidation, loss, detaching

  /**
   * Invalidates a slot: with `soft` it is marked to be closed when returned, otherwise it is
   * closed now and its place given to a waiter.
   */
  invalidate(slot: Slot<C>, error: unknown, soft: boolean): void {
    if (slot.state === "closed" || slot.state === "detached") return;
    if (soft) {
      slot.soft = true;
      this.#events.emit("softInvalidate", { connection: slot.connection, info: slot.info, error });
      return;
    }
    this.#events.emit("invalidate", { connection: slot.connection, info: slot.info, error });
    const settings = this.#settings;
    settings.logger.info?.(`${settings.name}: invalidated a connection`, {
      reason: error === undefined ? undefined : errorMessage(error),
    });
    this.#close(slot, "invalidated");
    this.#serve();
  }

  /**
   * A checked-out connection failed with a disconnect error: it goes, and the others are
   * suspected. A dead connection does not prove the others dead (a backend terminated, a
   * pooler's idle timeout); so rather than closing them (SQLAlchemy's rule), each is pinged
   * before its next use and closed only if that fails. A server that restarted closes its
   * sessions, which the pool hears of one by one.
   */
  lost(slot: Slot<C>, error: unknown): void {
    this.#counters.connectionsLost++;
    this.#suspectOthers(slot);
    this.invalidate(slot, error, false);
  }

  /** Every open connection but `lost` is pinged before its next checkout. */
  #suspectOthers(lost: Slot<C>): void {
    for (const slot of this.#live) if (slot !== lost) slot.suspect = true;
  }

  /** The connection closed by itself (server restart, idle timeout, network). */
  #closedByItself(slot: Slot<C>, error: Error | undefined): void {
    if (slot.state !== "idle") return; // in use: its user sees the error; closed at checkin
    this.#counters.connectionsLost++;
    this.#events.emit(
      "error",
      new PoolEventError(
        error ?? new Error("the connection closed while idle"),
        "idle",
        slot.connection,
      ),
    );
    this.#close(slot, "lost");
    this.#serve();
  }

  /**
   * A checked-out connection may be stuck: its query was aborted or timed out. It is closed
   * at once (a cancel goes first if a statement runs) and its place freed; its holder's
   * handle stays out, and a query on it fails.
   */
  stuck(slot: Slot<C>, error: unknown): void {
    this.#settings.logger.debug?.(
      `${this.#settings.name}: closing a connection whose query was interrupted: ${
        errorMessage(error)
      }`,
    );
    this.#close(slot, "stuck");
    this.#serve();
  }

  /** Forgets a checked-out slot: its connection leaves the pool with its handle. */
  detach(slot: Slot<C>): void {
    this.#leaks.forget(slot);
    slot.unsubscribe();
    this.#move(slot, "detached");
    this.#events.emit("detach", { connection: slot.connection, info: slot.info });
    this.#serve();
  }

  /** Closes a detached slot's connection (its handle was released). */
  closeDetached(slot: Slot<C>): Promise<void> {
    this.#move(slot, "closed");
    this.#events.emit("closeDetached", { connection: slot.connection, info: slot.info });
    return this.#settings.adapter.close(slot.connection, false).catch(() => {});
  }

  // -------------------------------------------------------------------------------------------
  // Policy changes, disposing, closing

  /** Applies a changed policy: closes surplus idle connections, serves waiters. */
  applyPolicy(policy: Policy): void {
    this.policy = policy;
    while (this.#idle.length > policy.keepIdle) this.#close(this.#idle[0], "overflow");
    this.#serve();
  }

  /**
   * Resolves when `min` connections are open (see `Pool.wait`); rejects with `POOL_TIMEOUT`
   * after `timeout` ms, at once when connecting fails for a reason retrying will not fix, and
   * when the pool closes.
   */
  ready(timeout: number): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#live.size >= this.policy.min) return RESOLVED;
    const ready = new Promise<void>((resolve, reject) => {
      const clock = this.#settings.clock;
      const entry = {
        resolve: () => {
          clock.clearTimeout(timer);
          resolve();
        },
        reject: (error: unknown) => {
          clock.clearTimeout(timer);
          reject(error);
        },
      };
      const timer = clock.setTimeout(
        () => {
          this.#ready.splice(this.#ready.indexOf(entry), 1);
          reject(
            new PoolError(
              "POOL_TIMEOUT",
              `The pool is not ready: ${this.#live.size} of ${this.policy.min} connections open ` +
                `after ${timeout} ms`,
              { cause: this.#connector.lastError },
            ),
          );
        },
        timeout,
        true,
      );
      this.#ready.push(entry);
    });
    this.#connector.gaveUp = false;
    this.#fill();
    return ready;
  }

  /** A connection was made: `pool.wait()` is over if `min` are open now. */
  #readyIfMin(): void {
    if (this.#live.size >= this.policy.min) {
      for (const entry of this.#ready.splice(0)) entry.resolve();
    }
  }

  /** Closes idle connections now and the others when returned (see `Pool.dispose`). */
  dispose(): void {
    this.#generation++;
    for (const slot of [...this.#idle]) this.#close(slot, "disposed");
    this.#serve();
  }

  /** Closes the pool (see `Pool.close`); idempotent. */
  close(timeout: number): Promise<void> {
    if (this.#closeDone) return this.#closeDone;
    this.#closed = true;
    this.#settings.logger.info?.(`${this.#settings.name}: closing`, { ...this.gauges() });
    this.#upkeep.stop();
    this.#deadlines.stop();
    if (this.#retryTimer !== null) this.#settings.clock.clearTimeout(this.#retryTimer);
    this.#connector.abort(this.#closedError());
    this.#waiting.close(() => this.#closedError());
    for (const entry of this.#ready.splice(0)) entry.reject(this.#closedError());
    while (this.#idle.length > 0) this.#close(this.#idle[0], "pool closed");
    this.#closeDone = this.#drain(timeout);
    return this.#closeDone;
  }

  /**
   * Closing the pool (idle slots already closed): waits up to `timeout` ms for the slots still
   * out, cuts the connections of those that are not back by then, and resolves when every
   * attempt in flight (its connections close as they arrive: `#place`) and every close has
   * finished.
   */
  async #drain(timeout: number): Promise<void> {
    if (this.#live.size > 0) {
      await this.#closing.forCheckouts(this.#settings.clock, timeout);
      // Still out after the grace period: closed under their users' feet.
      for (const slot of [...this.#live]) this.#close(slot, "pool closed", true);
    }
    await this.#connector.settled();
    await this.#closing.settled();
  }

  #closedError(): PoolError {
    return poolClosed(this.#settings.name);
  }
}
