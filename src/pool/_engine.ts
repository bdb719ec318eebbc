// The mechanics under every pool class: records (slots) moving between idle and checked out,
// checkout (queueing, one deadline, health checks), checkin with reset, connecting for waiters
// and up to `min`, invalidation by generation, loss, detaching, and closing. `Pool` (pool.ts)
// is the public face over it; the pool classes only choose a Policy.
//
// It decides; the parts beside it keep their own state and do the work: the books of records
// and their closes (_records.ts), waiters and the ends of their waits (_waiters.ts), deadline
// timers (_deadlines.ts), health checks (_health.ts), resets (_reset.ts), connection attempts
// and backoff (_connector.ts), `pool.wait()` (_ready.ts), shared connections (_sharing.ts),
// leaks (_leaks.ts) and upkeep (_upkeep.ts). Checkout and checkin stay here, in full: they
// are the hot path.

import type { Emitter } from "../_emitter.ts";
import { errorMessage, PoolError } from "../errors.ts";
import { PoolTime } from "./_clock.ts";
import { Connector, isTransientConnectError } from "./_connector.ts";
import { Deadlines } from "./_deadlines.ts";
import { healthCheck } from "./_health.ts";
import { checkoutStack, LeakWatch } from "./_leaks.ts";
import { ReadyWaiters } from "./_ready.ts";
import type { PoolRecord } from "./_record.ts";
import { Records } from "./_records.ts";
import { resetForReuse } from "./_reset.ts";
import { Sharing } from "./_sharing.ts";
import { Upkeep } from "./_upkeep.ts";
import { type Waiter, type WaiterQueue, Waiting } from "./_waiters.ts";
import type { PoolTransactionStatus } from "./adapter.ts";
import type { PoolCloseReason, PoolEvents } from "./events.ts";
import {
  checkAffinity,
  type CheckoutOptions,
  type Creator,
  milliseconds,
  type Policy,
  type ResolvedOptions,
} from "./options.ts";
import { handleRecord, PooledConnection, type PoolInternals } from "./pooled_connection.ts";
import type { PoolCounters, PoolGauges } from "./stats.ts";

/** What the engine asks of the pool class above it. */
export interface EngineHooks {
  /** How full the pool is, in the class's own terms, for error messages. */
  describeCapacity(): string;
  /** Background reconnecting gave up. */
  reconnectFailed(): void;
}

const RESOLVED: Promise<void> = /* @__PURE__ */ Promise.resolve();

/** The pool engine. */
export class Engine<C> {
  /** The sizing and lifetime rules. */
  policy: Policy;
  readonly #settings: ResolvedOptions<C>;

  readonly #events: Emitter<PoolEvents<C>>;
  readonly #records: Records<C>;
  /** `#records.idle` and `#records.live`, held here too for the hot paths. */
  readonly #idle: PoolRecord<C>[];
  readonly #live: Set<PoolRecord<C>>;
  readonly #waiting: Waiting<PooledConnection<C>>;
  /** `#waiting.queue`, held here too for the hot paths. */
  readonly #waiters: WaiterQueue<PooledConnection<C>>;
  readonly #deadlines: Deadlines<PooledConnection<C>>;
  /** Callers of `pool.wait()`. */
  readonly #ready: ReadyWaiters;
  /** Checked-out connections shared: by `pool.query` statements, and by `Pool.share`. */
  readonly sharing: Sharing<C>;
  readonly #counters: PoolCounters;
  readonly #internals: PoolInternals<C>;
  readonly #leaks: LeakWatch<C>;
  readonly #connector: Connector<C>;
  readonly #upkeep: Upkeep<C>;
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
    this.#internals = {
      adapter: this.#settings.adapter,
      checkin: (record) => this.#checkin(record),
      invalidate: (record, error, soft) => this.#invalidate(record, error, soft),
      detach: (record) => this.#detach(record),
      closeDetached: (record) => this.#records.closeDetached(record),
      lost: (record, error) => this.#lostInUse(record, error),
      stuck: (record, error) => this.#stuck(record, error),
      queryTimeout: settings.queryTimeout,
    };
    this.#time = new PoolTime(settings.clock);
    this.#connector = new Connector(creator, settings, counters, events, {
      connected: (connection, startedAt, owner, login) =>
        this.#added(connection, startedAt, owner as Waiter<PooledConnection<C>> | undefined, login),
      failed: (error, owner) =>
        this.#createFailed(error, owner as Waiter<PooledConnection<C>> | undefined),
      takesEarly: (owner) => {
        const waiter = (owner as Waiter<PooledConnection<C>> | undefined) ??
          (this.#settings.affinity ? null : this.#waiters.head);
        // Not while connecting fails: a statement riding behind a login that fails would
        // fail with it, where a caller waiting for a proven connection just waits.
        return waiter !== null && !waiter.settled && waiter.statement && !this.#closed &&
          this.#connector.lastError === undefined;
      },
      loginFailed: (error) => this.#createFailed(error, null),
      gaveUp: () => hooks.reconnectFailed(),
      retry: () => this.#fill(),
    });
    this.#records = new Records(settings, events, counters, () => this.#dispatch());
    this.#idle = this.#records.idle;
    this.#live = this.#records.live;
    this.#ready = new ReadyWaiters({
      clock: settings.clock,
      open: () => this.#open(),
      min: () => this.policy.min,
      lastError: () => this.#connector.lastError,
    });
    this.#waiting = new Waiting({
      settings,
      counters,
      time: this.#time,
      connector: this.#connector,
      describeCapacity: () => hooks.describeCapacity(),
    });
    this.#waiters = this.#waiting.queue;
    this.#deadlines = new Deadlines(settings.clock, settings.affinity, {
      now: () => this.#time.now(),
      waiting: () => [...this.#waiters.toArray(), ...this.#waiting.checking],
      expire: (waiter) => this.#waiting.expire(waiter),
    });
    this.sharing = new Sharing<C>({
      settings,
      waiting: this.#waiting,
      internals: this.#internals,
      saturated: () =>
        !this.#closed && this.#idle.length === 0 &&
        this.#open() + this.#connector.connecting >= this.policy.max,
      generation: () => this.#generation,
    });
    this.#leaks = new LeakWatch(settings, events, (record) => this.#checkin(record));
    checkAffinity(settings, policy);
    this.#upkeep = new Upkeep<C>({
      records: this.#records,
      leaks: this.#leaks,
      policy: () => this.policy,
      settings,
      closed: () => this.#closed,
      needed: () => this.#open() > 0 || this.policy.min > 0 || this.#connector.pending,
      tick: (now) => {
        this.#time.time = now;
        this.#leaks.watch(this.#live);
      },
      fill: () => this.#fill(),
    });
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

  /** Whether `connection` was handed over with its login under way, not yet done. */
  loggingIn(connection: PooledConnection<C>): boolean {
    return handleRecord(connection).login !== null;
  }

  /**
   * Whether `error`, from a statement on `connection`, is the failure of the login it rode
   * behind for a reason that may pass (the server restarting): then the statement never ran,
   * and can run again on another connection.
   */
  loginFailedTransiently(connection: PooledConnection<C>, error: unknown): boolean {
    return handleRecord(connection).login !== null && isTransientConnectError(error);
  }

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
        return this.#wait(timeout, signal, stack, record, statement);
      }
    }
    return this.#wait(timeout, signal, stack, undefined, statement);
  }

  /** Resolves when `min` connections are open (see `Pool.wait`). */
  ready(timeout: number): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#open() >= this.policy.min) return RESOLVED;
    const ready = this.#ready.wait(timeout);
    this.#connector.gaveUp = false;
    this.#fill();
    return ready;
  }

  /** Closes idle connections now and the others when returned (see `Pool.dispose`). */
  dispose(): void {
    this.#generation++;
    this.#records.closeOlder(this.#generation, "disposed");
    this.#dispatch();
  }

  /** Closes the pool (see `Pool.close`); idempotent. */
  close(timeout: number): Promise<void> {
    if (this.#closeDone) return this.#closeDone;
    this.#closed = true;
    this.#settings.logger.info?.(`${this.#settings.name}: closing`, { ...this.gauges() });
    this.#upkeep.stop();
    this.#deadlines.stop();
    this.#connector.abort(this.#closedError());
    this.#waiting.close(() => this.#closedError());
    this.#ready.close(() => this.#closedError());
    for (const record of this.#idle.splice(0)) this.#records.close(record, "pool closed");
    this.#closeDone = this.#records.drain(timeout, this.#connector);
    return this.#closeDone;
  }

  /** Applies a changed policy: closes surplus idle connections, serves waiters. */
  applyPolicy(policy: Policy): void {
    this.policy = policy;
    while (this.#idle.length > policy.keepIdle) {
      this.#records.close(this.#idle.shift()!, "overflow");
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
    statement: "shareable" | "alone" | undefined,
  ): Promise<PooledConnection<C>> {
    const maxWaiting = this.#settings.maxWaiting;
    if (record === undefined && maxWaiting > 0 && this.#waiters.length >= maxWaiting) {
      return Promise.reject(this.#waiting.refused());
    }
    return new Promise((resolve, reject) => {
      const now = this.#time.forWait();
      const waiter: Waiter<PooledConnection<C>> = {
        resolve,
        reject,
        since: now,
        deadline: now + timeout,
        timeout,
        stack,
        settled: false,
        statement: statement !== undefined,
        shareable: statement === "shareable",
        cleanup: null,
        prev: null,
        next: null,
      };
      if (signal !== undefined) this.#waiting.abortOn(waiter, signal);
      this.#deadlines.watch(waiter);
      if (record !== undefined) return this.#deliver(record, waiter);
      this.#counters.requestsQueued++;
      this.#waiters.push(waiter);
      // Affinity: this caller's connection is made here, in its own context, and is its alone.
      if (this.#settings.affinity) this.#connector.start(waiter);
      // A full pool (the usual reason to wait) has nothing to open: skip the fill.
      else if (this.#live.size + this.#connector.connecting < this.policy.max) this.#fill();
    });
  }

  #needsCheck(record: PoolRecord<C>): boolean {
    // A connection handed over straight from connecting needs no proof that it works; one
    // that sat idle (even if never used: `min`) does, and so does one suspected since
    // another connection was lost.
    return !record.fresh &&
      (this.#settings.prePing || this.#settings.check !== undefined || record.suspect);
  }

  /** Hands `record` to `waiter`, health-checking it first when asked to. */
  #deliver(record: PoolRecord<C>, waiter: Waiter<PooledConnection<C>>): void {
    this.#move(record, "busy");
    if (!this.#needsCheck(record)) return this.#hand(record, waiter);
    this.#waiting.checking.add(waiter);
    healthCheck(record.connection, waiter.deadline, this.#settings).then((outcome) => {
      this.#waiting.checking.delete(waiter);
      if (outcome === "ok") {
        record.suspect = false;
        if (waiter.settled || this.#closed) this.#put(record);
        else this.#hand(record, waiter);
        return;
      }
      if (outcome === "cut short" || outcome === "timed out") {
        // A ping that does not answer may be on a connection that never will (a network that
        // went silent): it is closed, not trusted again, and its place freed at once.
        this.#close(record, "stuck");
        if (outcome === "cut short") this.#waiting.expire(waiter);
      } else {
        if (this.#settings.adapter.isDisconnect(outcome.error)) {
          this.#counters.connectionsLost++;
          this.#suspectOthers(record);
        }
        this.#invalidate(record, outcome.error, false);
      }
      // The caller keeps its turn, and tries another connection within its deadline.
      if (!waiter.settled && !this.#closed) {
        this.#waiters.unshift(waiter);
        if (this.#settings.affinity) this.#connector.start(waiter);
      }
      this.#dispatch();
    });
  }

  #hand(record: PoolRecord<C>, waiter: Waiter<PooledConnection<C>>): void {
    const waited = this.#waiting.served(waiter);
    waiter.resolve(this.#checkout(record, waited, waiter.stack));
  }

  #checkout(
    record: PoolRecord<C>,
    waitedMs: number,
    stack: string | undefined,
  ): PooledConnection<C> {
    this.#move(record, "busy");
    record.checkedOutAt = this.#time.time;
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
      record.state = "busy"; // out of the idle list: `Records.close` must not look for it there
      this.#records.close(record, stale);
    }
    return undefined;
  }

  #staleReason(record: PoolRecord<C>): PoolCloseReason | undefined {
    if (this.#settings.adapter.isClosed(record.connection)) return "lost";
    if (record.generation < this.#generation) return "stale";
    // The last reading may be up to a tick old: near the end of a lifetime, read the clock.
    const expiresAt = record.expiresAt;
    const time = this.#time;
    if (time.time + this.#settings.maintenanceInterval >= expiresAt && time.now() >= expiresAt) {
      return "lifetime";
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Making connections

  #open(): number {
    return this.#live.size;
  }

  /** Starts connecting for the waiters not yet covered, and up to `min`. */
  #fill(): void {
    if (this.#closed) return;
    // Affinity: a waiter's connection is made from its own call (see `#wait`).
    this.#connector.fill(this.#settings.affinity ? null : this.#waiters, this.#live, this.policy);
    this.#upkeep.schedule();
  }

  #added(
    connection: C,
    createdAt: number,
    owner: Waiter<PooledConnection<C>> | undefined,
    login: Promise<void> | null,
  ): void {
    const record = this.#records.add(connection, createdAt, this.#generation, this.policy);
    if (login !== null) {
      record.login = login;
      login.then(() => {
        record.login = null;
        this.#ready.connected();
      }, () => {});
    }
    this.#settings.logger.debug?.(`${this.#settings.name}: connected`, {
      ms: this.#time.now() - createdAt,
      ...this.gauges(),
    });
    if (owner === undefined) this.#put(record);
    else if (owner.settled || this.#closed) this.#records.close(record, "unwanted");
    else {
      this.#waiters.remove(owner);
      this.#deliver(record, owner);
    }
    if (login === null) this.#ready.connected();
    // Connecting works again: connect for the callers who waited out the failures. (And leaks,
    // lifetimes and idle limits need watching from the first connection on: `#fill` schedules
    // upkeep.)
    this.#fill();
  }

  /**
   * A connect failed: for `owner` (else the first in line; `null`: nobody, it had the error).
   * A failure that may pass (refused, reset, timed out, the server starting up or shutting
   * down, too many connections: see `isTransientConnectError`) fails nobody: callers wait
   * within their own deadlines while the pool tries again after a backoff delay, and one whose
   * deadline comes first gets `POOL_TIMEOUT` with this error as its cause. Any other (a wrong
   * password, a missing database) reaches that caller at once.
   */
  #createFailed(error: unknown, owner: Waiter<PooledConnection<C>> | null | undefined): void {
    if (this.#closed) return; // aborted by close(): nobody is waiting for it
    this.#ready.connectFailed(error);
    if (!isTransientConnectError(error)) {
      if (owner !== null) this.#waiting.connectFailed(error, owner);
      if (this.#open() + this.#connector.connecting < this.policy.min) {
        this.#connector.backOff(this.policy.reconnectTimeout, error, false);
      }
    } else {
      const wanted = owner != null ? !owner.settled : this.#waiters.length > 0;
      this.#connector.backOff(this.policy.reconnectTimeout, error, wanted);
      // Affinity: the caller's connection is made from its own context, so its retry is too.
      if (this.#settings.affinity && owner != null && !owner.settled) {
        return this.#connector.retryFor(owner);
      }
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
    if (this.#closed) return this.#records.close(record, "pool closed");
    if (!fresh) {
      const stale = this.#staleReason(record);
      if (stale !== undefined || record.soft) {
        this.#records.close(record, stale ?? "invalidated");
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
      return this.#records.close(record, reason);
    }
    record.fresh = false;
    this.#move(record, "idle");
    record.lastUsedAt = this.#time.time;
    this.#idle.push(record);
    this.#upkeep.schedule();
  }

  #checkin(record: PoolRecord<C>): Promise<void> {
    this.#leaks.forget(record);
    record.out = false;
    this.#counters.usageMs += this.#time.time - record.checkedOutAt;
    const connection = record.connection;
    if (this.#events.has("checkin")) {
      this.#events.emit("checkin", { connection, info: record.info });
    }
    // Returned before its login ended (no query went out on it): it is reused once logged in,
    // so that only a query ever rides behind a login.
    const login = record.login;
    if (login !== null) {
      return login.then(() => this.#reuse(record), () => {
        if (record.state !== "busy") return;
        this.#records.close(record, "returned broken");
        this.#dispatch();
      });
    }
    return this.#reuse(record);
  }

  /** A returned connection goes back to the idle list or to a waiter, reset where needed. */
  #reuse(record: PoolRecord<C>): Promise<void> {
    const connection = record.connection;
    if (record.state !== "busy") return RESOLVED; // invalidated or closed while out
    const stale = this.#staleReason(record);
    if (stale !== undefined || record.soft) {
      // Broken, or going to be closed anyway: no point resetting it first.
      if (stale === "lost") this.#counters.returnsBad++;
      this.#records.close(record, stale === "lost" ? "returned broken" : stale ?? "invalidated");
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
        `${this.#settings.name}: closing a returned connection: reset failed: ${
          errorMessage(error)
        }`,
      );
      this.#events.emit("error", { error, context: "reset", connection });
      if (record.state === "busy") this.#records.close(record, "reset failed");
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
    if (this.#records.invalidate(record, error, soft)) this.#dispatch();
  }

  /**
   * A checked-out connection failed with a disconnect error: it goes, and the others are
   * suspected. A dead connection does not prove the others dead (a backend terminated, a
   * pooler's idle timeout); so rather than closing them (SQLAlchemy's rule), each is pinged
   * before its next use and closed only if that fails. A server that restarted closes its
   * sessions, which the pool hears of one by one.
   */
  #lostInUse(record: PoolRecord<C>, error: unknown): void {
    this.#counters.connectionsLost++;
    this.#suspectOthers(record);
    this.#invalidate(record, error, false);
  }

  /** Every open connection but `lost` is pinged before its next checkout. */
  #suspectOthers(lost: PoolRecord<C>): void {
    for (const record of this.#live) if (record !== lost) record.suspect = true;
  }

  /**
   * A checked-out connection may be stuck: its query was aborted or timed out. It is closed
   * at once (a cancel goes first if a statement runs) and its place freed; its holder's
   * handle stays out, and a query on it fails.
   */
  #stuck(record: PoolRecord<C>, error: unknown): void {
    this.#settings.logger.debug?.(
      `${this.#settings.name}: closing a connection whose query was interrupted: ${
        errorMessage(error)
      }`,
    );
    this.#close(record, "stuck");
    this.#dispatch();
  }

  #close(record: PoolRecord<C>, reason: PoolCloseReason): void {
    if (record.state === "idle") this.#records.closeIdle(record, reason);
    else this.#records.close(record, reason);
  }

  #detach(record: PoolRecord<C>): void {
    this.#leaks.forget(record);
    record.out = false;
    this.#records.detach(record);
    this.#dispatch();
  }

  #move(record: PoolRecord<C>, state: "idle" | "busy"): void {
    // The one place a record changes between idle and busy.
    record.state = state;
  }

  /** The gauges of `stats()`. */
  gauges(): PoolGauges {
    const busy = this.#records.busy;
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
