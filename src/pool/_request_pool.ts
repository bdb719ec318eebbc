// `RequestPool`: the NullPool that `createPool` makes on Cloudflare Workers, where an I/O object
// belongs to the request that made it ("Cannot perform I/O on behalf of a different request").
// One pool in module scope serves request after request because each checkout gets the
// connection made for it, from its own call, and nothing else: no idle connection, no
// connection made for or returned by another caller, no background connecting, and every timer
// (its deadline, a retry, its turn under `max`) set from the caller's own call, since a timer
// fires only while the request that set it lives. A returned connection is closed.
//
// Its engine is a small one of its own, not the pool's state machine (_engine.ts): a Worker
// bundles only what a connection per checkout needs (no idle list, upkeep, shared statements,
// health checks, resets or leak watching), while the public face (`Pool`) is the same.
// Connection attempts (backoff, early logins, `configure`) go through the same Connector, and
// waits end through the same Waiting as in every pool.

import type { Emitter } from "../_emitter.ts";
import { errorMessage, type PoolError } from "../errors.ts";
import type { QueryResult } from "../result.ts";
import { PoolTime } from "./_clock.ts";
import { Closing } from "./_closing.ts";
import { Connector, isTransientConnectError } from "./_connector.ts";
import type { SlotState } from "./_engine.ts";
import { newWaiter, poolClosed, type Waiter, Waiting } from "./_waiters.ts";
import type { PoolAdapter } from "./adapter.ts";
import type { PoolCloseReason, PoolEvents } from "./events.ts";
import {
  type CheckoutOptions,
  checkoutTimeout,
  type Creator,
  nullPolicy,
  type Policy,
  type ResolvedOptions,
} from "./options.ts";
import type { NullPoolOptions } from "./null_pool.ts";
import { type EngineHooks, Pool, type PoolEngine } from "./pool.ts";
import { PooledConnection, type PoolInternals } from "./pooled_connection.ts";
import type { PoolCounters, PoolGauges } from "./stats.ts";

/**
 * A NullPool whose every connection belongs to the caller it was made for (see the top of this
 * file). `describe().poolClass` is `"NullPool"`: the semantics are NullPool's. `max` makes
 * checkouts beyond it wait their turn, each taking it up from a timer of its own.
 */
export class RequestPool<C> extends Pool<C> {
  /** Makes a pool that opens a connection per checkout, from the checkout's own call. */
  constructor(creator: Creator<C>, options?: NullPoolOptions<C>) {
    const o = options ?? {};
    for (const name of ["leakDetectionThreshold", "idleInTransactionThreshold"] as const) {
      if (o[name]) {
        throw new TypeError(
          `${name}: the NullPool of createPool on Workers watches no checkout (a checkout ends ` +
            "with its request there); leave it out",
        );
      }
    }
    super(creator, o, nullPolicy(o.max), RequestEngine);
  }

  /** A new, empty `RequestPool` with the same creator and options. */
  recreate(): RequestPool<C> {
    return new RequestPool(this.creator, this.givenOptions as NullPoolOptions<C>);
  }
}

/** A checkout's connection, for as long as it is out. */
interface RequestSlot<C> {
  readonly connection: C;
  readonly info: Record<string, unknown>;
  /** `out`, then `detached` or `closed`. */
  state: SlotState;
  /** Its login, while still under way; then `null`. */
  login: Promise<void> | null;
  /** When it was checked out. */
  readonly since: number;
}

/** How often a checkout waiting its turn under `max` looks whether it came. */
const TURN_POLL_MS = 5;

const RESOLVED: Promise<void> = /* @__PURE__ */ Promise.resolve();

/** The engine of {@link RequestPool}: a connection per checkout, made for it alone. */
class RequestEngine<C> implements PoolEngine<C>, PoolInternals<C, RequestSlot<C>> {
  policy: Policy;
  readonly #settings: ResolvedOptions<C>;
  readonly #counters: PoolCounters;
  readonly #events: Emitter<PoolEvents<C>>;
  readonly #time: PoolTime;
  readonly #connector: Connector<C>;
  readonly #waiting: Waiting<PooledConnection<C>>;
  /** For the handles (see `PoolInternals`). */
  readonly adapter: PoolAdapter<C>;
  /** For the handles (see `PoolInternals`). */
  readonly queryTimeout: number;
  /** For the handles (see `PoolInternals`): the pool's events. */
  readonly events: Emitter<PoolEvents<C>>;
  /** The checked-out slots. */
  readonly #out = new Set<RequestSlot<C>>();
  /** Waiters under `max` whose turn came, until they take it up (each from its own timer). */
  readonly #granted = new Set<Waiter<PooledConnection<C>>>();
  /** Closes under way, so that closing the pool can wait for them. */
  readonly #closing = new Closing();
  #everConnected = false;
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
    this.policy = policy;
    this.#settings = settings;
    this.#counters = counters;
    this.#events = events;
    this.#time = new PoolTime(settings.clock);
    this.#connector = new Connector(creator, settings, counters, events);
    this.#waiting = new Waiting({
      settings,
      counters,
      time: this.#time,
      connector: this.#connector,
      describeCapacity: () => hooks.describeCapacity(),
    });
    this.adapter = settings.adapter;
    this.queryTimeout = settings.queryTimeout;
    this.events = events;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get connecting(): number {
    return this.#connector.connecting;
  }

  get time(): number {
    return this.#time.now();
  }

  now(): number {
    return this.#time.now();
  }

  // -------------------------------------------------------------------------------------------
  // Checkout

  connect(
    options: CheckoutOptions | undefined,
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
    const full = this.#taken() >= this.policy.max;
    const maxWaiting = this.#settings.maxWaiting;
    if (full && maxWaiting > 0 && this.#waiting.queue.length >= maxWaiting) {
      return Promise.reject(this.#waiting.refused());
    }
    return new Promise((resolve, reject) => {
      const now = this.#time.now();
      const waiter = newWaiter<PooledConnection<C>>(
        resolve,
        reject,
        now,
        timeout,
        undefined,
        statement,
      );
      const waiting = this.#waiting;
      if (signal !== undefined) waiting.abortOn(waiter, signal);
      // A deadline timer of its own: one shared by every checkout would die with the request
      // that set it.
      const clock = this.#settings.clock;
      const timer = clock.setTimeout(() => waiting.expire(waiter), timeout, true);
      const previous = waiter.cleanup;
      waiter.cleanup = () => {
        clock.clearTimeout(timer);
        previous?.();
      };
      if (!full) return this.#start(waiter);
      this.#counters.requestsQueued++;
      waiting.queue.push(waiter);
      this.#awaitTurn(waiter);
    });
  }

  /** Starts connecting for `waiter`, from its own call (or timer). */
  #start(waiter: Waiter<PooledConnection<C>>): void {
    // A login under way goes along to a statement, but not while connecting fails: a
    // statement riding behind a login that fails would fail with it, where a caller waiting
    // for a proven connection just waits.
    const takesEarly = () =>
      waiter.statement && !waiter.settled && !this.#closed &&
      this.#connector.lastError === undefined;
    this.#connector.attempt(takesEarly, (made) => {
      if (made.ok) this.#connected(made.connection, made.startedAt, waiter, made.login);
      else this.#connectFailed(made.error, waiter);
    });
  }

  /** Connections out, being made, or promised to a waiter whose turn came. */
  #taken(): number {
    return this.#out.size + this.#connector.connecting + this.#granted.size;
  }

  /**
   * Under `max`: the waiter takes up its turn, once `#grant` gave it one, from a timer of its
   * own, so that its connection is made in its own request.
   */
  #awaitTurn(waiter: Waiter<PooledConnection<C>>): void {
    this.#settings.clock.setTimeout(() => {
      if (this.#granted.delete(waiter)) {
        if (!waiter.settled && !this.#closed) return this.#start(waiter);
        return this.#grant();
      }
      if (!waiter.settled) this.#awaitTurn(waiter);
    }, TURN_POLL_MS);
  }

  /** Room under `max` was freed: the waiters first in line get their turns. */
  #grant(): void {
    const queue = this.#waiting.queue;
    while (queue.length > 0 && this.#taken() < this.policy.max) {
      this.#granted.add(queue.shift()!);
    }
  }

  #connected(
    connection: C,
    startedAt: number,
    owner: Waiter<PooledConnection<C>>,
    login: Promise<void> | null,
  ): void {
    const slot: RequestSlot<C> = {
      connection,
      info: {},
      state: "out",
      login,
      since: this.#time.now(),
    };
    this.#out.add(slot);
    const event = { connection, info: slot.info };
    if (!this.#everConnected) {
      this.#everConnected = true;
      this.#events.emit("firstConnect", event);
    }
    this.#events.emit("connect", event);
    if (login !== null) {
      login.then(() => void (slot.login = null), (error) => {
        // Its statement had the error; the next callers wait for proven connections.
        if (!this.#closed && isTransientConnectError(error)) {
          this.#connector.backOff(0, error, true);
        }
      });
    }
    this.#settings.logger.debug?.(`${this.#settings.name}: connected`, {
      ms: slot.since - startedAt,
      ...this.gauges(),
    });
    // Made for a caller who gave up: no one else may have it.
    if (owner.settled || this.#closed) return this.#close(slot, "unwanted");
    const waitedMs = this.#waiting.served(owner);
    if (this.#events.has("checkout")) {
      this.#events.emit("checkout", { connection, info: slot.info, waitedMs });
    }
    owner.resolve(new PooledConnection(this, slot));
  }

  /**
   * A connect for `owner` failed. One that may pass (see `isTransientConnectError`) is tried
   * again for it after the backoff delay, from its own timer, within its deadline (which then
   * fails it with `POOL_TIMEOUT`, this error as the cause); any other reaches it at once.
   */
  #connectFailed(error: unknown, owner: Waiter<PooledConnection<C>>): void {
    if (this.#closed) return;
    if (isTransientConnectError(error)) {
      this.#connector.backOff(0, error, true);
      if (!owner.settled) {
        // From a timer of its own: on Workers it runs in the caller's request.
        this.#settings.clock.setTimeout(() => {
          if (!owner.settled && !this.#closed) this.#start(owner);
        }, this.#connector.backoffLeft ?? 0);
        return;
      }
    } else this.#waiting.connectFailed(error, owner);
    this.#grant();
  }

  // -------------------------------------------------------------------------------------------
  // What a handle calls (the `PoolInternals` of pooled_connection.ts)

  checkin(slot: RequestSlot<C>): Promise<void> {
    this.#counters.usageMs += this.#time.now() - slot.since;
    if (this.#events.has("checkin")) {
      this.#events.emit("checkin", { connection: slot.connection, info: slot.info });
    }
    const login = slot.login;
    // Returned before its login ended: closed once it has (a Terminate in the middle of a
    // login would be a protocol error).
    if (login !== null) {
      const close = () => this.#close(slot, "returned");
      return login.then(close, close);
    }
    this.#close(slot, "returned");
    return RESOLVED;
  }

  invalidate(slot: RequestSlot<C>, error: unknown, soft: boolean): void {
    if (slot.state !== "out") return;
    const connection = slot.connection;
    // Closed when returned anyway.
    if (soft) {
      return this.#events.emit("softInvalidate", { connection, info: slot.info, error });
    }
    this.#events.emit("invalidate", { connection, info: slot.info, error });
    const settings = this.#settings;
    settings.logger.info?.(`${settings.name}: invalidated a connection`, {
      reason: error === undefined ? undefined : errorMessage(error),
    });
    this.#close(slot, "invalidated");
  }

  detach(slot: RequestSlot<C>): void {
    this.#leave(slot, "detached");
    this.#events.emit("detach", { connection: slot.connection, info: slot.info });
  }

  closeDetached(slot: RequestSlot<C>): Promise<void> {
    slot.state = "closed";
    this.#events.emit("closeDetached", { connection: slot.connection, info: slot.info });
    return this.#settings.adapter.close(slot.connection, false).catch(() => {});
  }

  /** Takes a slot out of the pool (closed or detached), making room for a waiter. */
  lost(slot: RequestSlot<C>, error: unknown): void {
    this.#counters.connectionsLost++;
    this.invalidate(slot, error, false);
  }

  stuck(slot: RequestSlot<C>, error: unknown): void {
    const settings = this.#settings;
    settings.logger.debug?.(
      `${settings.name}: closing a connection whose query was interrupted: ${errorMessage(error)}`,
    );
    this.#close(slot, "stuck");
  }

  #leave(slot: RequestSlot<C>, to: "closed" | "detached"): void {
    slot.state = to;
    this.#out.delete(slot);
    if (this.#out.size === 0) this.#closing.allBack();
    this.#grant();
  }

  /** Closes a slot's connection: gracefully when returned or unwanted, else cut at once. */
  #close(slot: RequestSlot<C>, reason: PoolCloseReason, force?: boolean): void {
    if (slot.state !== "out") return;
    this.#leave(slot, "closed");
    this.#events.emit("close", { connection: slot.connection, info: slot.info, reason });
    force ??= reason !== "returned" && reason !== "unwanted" && reason !== "pool closed";
    this.#closing.add(this.#settings.adapter.close(slot.connection, force).catch(() => {}));
  }

  // -------------------------------------------------------------------------------------------
  // What the face asks, and closing

  shareable(): boolean {
    return false; // a connection serves only the caller it was made for
  }

  joinShared(): undefined {
    return undefined;
  }

  startShared<Row>(): Promise<QueryResult<Row>> {
    throw new TypeError("edgepool internal error: RequestPool shares no connection");
  }

  share(): PooledConnection<C> {
    throw new TypeError("edgepool internal error: RequestPool shares no connection");
  }

  gauges(): PoolGauges {
    const out = this.#out.size;
    return {
      poolMin: 0,
      poolMax: this.policy.max,
      poolSize: out + this.#connector.connecting,
      poolAvailable: 0,
      requestsWaiting: this.#waiting.queue.length,
      checkedIn: 0,
      checkedOut: out,
      overflow: 0,
    };
  }

  ready(): Promise<void> {
    return this.#closed ? Promise.reject(this.#closedError()) : RESOLVED;
  }

  /** Nothing is idle, and what is out closes when returned. */
  dispose(): void {}

  applyPolicy(policy: Policy): void {
    this.policy = policy;
  }

  close(timeout: number): Promise<void> {
    if (this.#closeDone) return this.#closeDone;
    this.#closed = true;
    this.#settings.logger.info?.(`${this.#settings.name}: closing`, { ...this.gauges() });
    this.#connector.abort(this.#closedError());
    this.#granted.clear();
    this.#waiting.close(() => this.#closedError());
    this.#closeDone = this.#drain(timeout);
    return this.#closeDone;
  }

  /** Waits up to `timeout` ms for the connections out, then cuts those still out. */
  async #drain(timeout: number): Promise<void> {
    if (this.#out.size > 0) {
      await this.#closing.forCheckouts(this.#settings.clock, timeout);
      for (const slot of [...this.#out]) this.#close(slot, "pool closed", true);
    }
    await this.#connector.settled();
    await this.#closing.settled();
  }

  #closedError(): PoolError {
    return poolClosed(this.#settings.name);
  }
}
