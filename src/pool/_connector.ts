// Making connections for a pool: attempts in flight, their timing, their failures (reported,
// and which ones retrying will not fix), and the exponential backoff between attempts while
// connecting fails, with its timer and the give-up point of background (re)connecting.
//
// While connecting fails for a reason that may pass (the server restarting, refusing, too
// many connections), callers are not failed: they wait, within their own deadlines, while one
// attempt at a time probes the server after each backoff delay. The first success ends the
// backoff and the pool connects for everyone again.

import { errorMessage } from "../errors.ts";
import type { Emitter } from "../_emitter.ts";
import type { Clock } from "./_clock.ts";
import type { PoolAdapter } from "./adapter.ts";
import type { PoolEvents } from "./events.ts";
import type { Creator, Policy, PoolLogger } from "./options.ts";
import type { PoolCounters } from "./stats.ts";

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 60_000;
/** With callers waiting, the longest pause between attempts: they would rather not wait long. */
const MAX_DEMAND_BACKOFF_MS = 2_000;

/** What the connector reports back to its pool. */
export interface ConnectorHooks<C, O> {
  /**
   * A connection was made (and configured); `login`, when its login is still under way, settles
   * with it (it goes to a caller `takesEarly` accepted; should it fail, `loginFailed` follows).
   */
  connected(
    connection: C,
    startedAt: number,
    owner: O | undefined,
    login: Promise<void> | null,
  ): void;
  /**
   * Whether the caller a new connection goes to (`owner`, else the first in line) takes one
   * whose login is still under way.
   */
  takesEarly(owner: O | undefined): boolean;
  /** The login of a connection handed over early failed (reported already). */
  loginFailed(error: unknown): void;
  /** An attempt failed (reported already, unless aborted). */
  failed(error: unknown, owner: O | undefined): void;
  /** Background reconnecting gave up (reported already). */
  gaveUp(): void;
  /** A backoff delay has passed: time to try again (`fill`). */
  retry(): void;
}

/**
 * Starts connection attempts and keeps the state of failing ones. `O`: the caller an attempt
 * may be made for (its owner), handed back with the outcome.
 */
export class Connector<C, O extends { readonly settled: boolean }> {
  /** Attempts in flight. */
  connecting = 0;
  /** The latest failure, cleared by a success: the `cause` behind timeouts. */
  lastError: unknown = undefined;
  /** Background reconnecting gave up; only demand (a checkout, `wait()`) tries again. */
  gaveUp = false;
  readonly #creator: Creator<C>;
  readonly #adapter: PoolAdapter<C>;
  readonly #configure: ((connection: C) => void | Promise<void>) | undefined;
  readonly #clock: Clock;
  readonly #logger: PoolLogger;
  readonly #name: string;
  readonly #counters: PoolCounters;
  readonly #events: Emitter<PoolEvents<C>>;
  readonly #hooks: ConnectorHooks<C, O>;
  /** One controller per attempt in flight (one shared signal would gather a listener each). */
  readonly #attempts = new Set<AbortController>();
  #abortReason: unknown = undefined;
  #aborted = false;
  readonly #inflight = new Set<Promise<void>>();
  #backoff: { startedAt: number; delay: number; until: number } | null = null;
  /** The timer that ends the backoff delay, or `null`. */
  #retryTimer: unknown = null;

  constructor(
    creator: Creator<C>,
    settings: {
      adapter: PoolAdapter<C>;
      configure: ((connection: C) => void | Promise<void>) | undefined;
      clock: Clock;
      logger: PoolLogger;
      name: string;
    },
    counters: PoolCounters,
    events: Emitter<PoolEvents<C>>,
    hooks: ConnectorHooks<C, O>,
  ) {
    this.#creator = creator;
    this.#adapter = settings.adapter;
    this.#configure = settings.configure;
    this.#clock = settings.clock;
    this.#logger = settings.logger;
    this.#name = settings.name;
    this.#counters = counters;
    this.#events = events;
    this.#hooks = hooks;
  }

  /** Whether a backoff is under way (so upkeep must keep running to retry). */
  get pending(): boolean {
    return this.#backoff !== null;
  }

  /** Starts one attempt; `owner`, if given, is handed back with its outcome. */
  start(owner?: O): void {
    this.connecting++;
    this.#counters.connectionsNum++;
    const done = this.#attempt(owner);
    this.#inflight.add(done);
    done.finally(() => this.#inflight.delete(done));
  }

  async #attempt(owner: O | undefined): Promise<void> {
    const started = this.#clock.now();
    let connection: C;
    let login: Promise<void> | null;
    try {
      connection = await this.#make();
      // A login still under way (started early) goes on only to a caller who takes its
      // outcome as its own: a checkout whose first act is a query. Everyone else gets a
      // logged-in connection.
      login = this.#adapter.loggingIn?.(connection) ?? null;
      if (login !== null && !this.#hooks.takesEarly(owner)) {
        try {
          await login;
        } catch (error) {
          await this.#adapter.close(connection, true).catch(() => {});
          throw error;
        }
        login = null;
      }
    } catch (error) {
      this.connecting--;
      this.#counters.connectionsMs += this.#clock.now() - started;
      this.#failed(error);
      this.#hooks.failed(error, owner);
      return;
    }
    this.connecting--;
    this.#counters.connectionsMs += this.#clock.now() - started;
    if (login === null) this.#succeeded();
    else {
      login.then(() => this.#succeeded(), (error) => {
        // The query it went to failed with it; the pool counts it as a failed connect.
        this.#failed(error);
        this.#hooks.loginFailed(error);
      });
    }
    this.#hooks.connected(connection, started, owner, login);
  }

  #succeeded(): void {
    this.#backoff = null;
    this.#stopRetry();
    this.gaveUp = false;
    this.lastError = undefined;
  }

  #failed(error: unknown): void {
    this.#counters.connectionsErrors++;
    this.lastError = error;
    // Aborted by the pool closing: nobody is waiting for it.
    if (!this.#aborted) {
      this.#logger.warn?.(`${this.#name}: connecting failed: ${errorMessage(error)}`);
      this.#events.emit("error", { error, context: "connect" });
    }
  }

  /**
   * Starts an attempt for each caller in `waiting` that no attempt in flight covers yet, then
   * up to `policy.min` unless background connecting gave up, never past `policy.max` open
   * (`live`) plus connecting. While connecting fails it starts one attempt at a time, once the
   * backoff delay has passed (its timer calls `retry` then). `waiting` and `live` are read
   * afresh for every attempt.
   */
  fill(
    waiting: { readonly length: number } | null,
    live: { readonly size: number },
    policy: Policy,
  ): void {
    const max = policy.max;
    const min = this.gaveUp ? 0 : Math.min(policy.min, max);
    const wanted = () =>
      live.size + this.connecting < max &&
      ((waiting !== null && waiting.length > this.connecting) || live.size + this.connecting < min);
    const backoff = this.#backoff;
    if (backoff !== null) {
      if (!wanted()) return;
      const wait = backoff.until - this.#clock.now();
      if (wait > 0) return this.#armRetry(wait);
      // One attempt probes; the others wait for its outcome.
      if (this.connecting === 0) this.start();
      return;
    }
    while (wanted()) this.start();
  }

  #armRetry(wait: number): void {
    if (this.#retryTimer !== null || this.#aborted) return;
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#aborted) this.#hooks.retry();
    }, wait);
  }

  #stopRetry(): void {
    if (this.#retryTimer === null) return;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  /**
   * Tries again for `owner` alone once the backoff delay has passed, from a timer set here:
   * RequestPool makes a caller's connection from its own context (on Workers, a timer
   * runs in the request that set it), not by the shared retry.
   */
  retryFor(owner: O): void {
    const wait = this.#backoff === null ? 0 : Math.max(0, this.#backoff.until - this.#clock.now());
    this.#clock.setTimeout(() => {
      if (!owner.settled && !this.#aborted) this.start(owner);
    }, wait);
  }

  async #make(): Promise<C> {
    const controller = new AbortController();
    if (this.#aborted) controller.abort(this.#abortReason);
    this.#attempts.add(controller);
    let connection: C;
    try {
      connection = await this.#creator(controller.signal);
    } finally {
      this.#attempts.delete(controller);
    }
    if (this.#configure !== undefined) {
      try {
        await this.#configure(connection);
      } catch (error) {
        await this.#adapter.close(connection, true).catch(() => {});
        throw error;
      }
    }
    return connection;
  }

  /**
   * Backs off after an attempt failed for a reason that may pass (`error`): 250 ms, doubling
   * with each try that fails (not with each failure: attempts in flight together are one try)
   * up to 60 s (2 s while callers are `waiting`), ±10 %. With nobody waiting, once
   * `reconnectTimeout` has passed since the first failure, background connecting gives up
   * instead (demand, a checkout or `wait()`, tries again).
   */
  backOff(reconnectTimeout: number, error: unknown, waiting: boolean): void {
    const now = this.#clock.now();
    if (this.#backoff === null) {
      this.#backoff = { startedAt: now, delay: FIRST_BACKOFF_MS, until: 0 };
    } else if (now < this.#backoff.until) {
      // Another attempt of the wave that already set this delay (many fail together when a
      // server goes down): the delay doubles once per try, not once per failure.
      return;
    } else {
      this.#backoff.delay = Math.min(this.#backoff.delay * 2, MAX_BACKOFF_MS);
    }
    if (!waiting && now - this.#backoff.startedAt >= reconnectTimeout) {
      this.#backoff = null;
      this.gaveUp = true;
      this.#logger.error?.(`${this.#name}: giving up reconnecting after ${reconnectTimeout} ms`);
      this.#events.emit("error", { error, context: "reconnect failed" });
      this.#hooks.gaveUp();
      return;
    }
    const delay = waiting
      ? Math.min(this.#backoff.delay, MAX_DEMAND_BACKOFF_MS)
      : this.#backoff.delay;
    // Jitter, so that many pools do not retry in step.
    this.#backoff.until = now + delay * (0.9 + 0.2 * this.#clock.random());
  }

  /** Aborts every attempt in flight (the pool is closing). */
  abort(reason: unknown): void {
    this.#aborted = true;
    this.#stopRetry();
    this.#abortReason = reason;
    for (const controller of this.#attempts) controller.abort(reason);
  }

  /** Resolves when no attempt is in flight. */
  async settled(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all([...this.#inflight]);
  }
}

/**
 * Whether a connect error is one that retrying will not fix: bad arguments, authentication and
 * authorization failures (SQLSTATE class 28), a missing database (3D000), or a TLS setup that
 * cannot work. Connection refused or reset, timeouts, a server starting up or shutting down
 * (57P03) and "too many connections" (53300) are worth retrying.
 */
export function isConfigError(error: unknown): boolean {
  if (error instanceof TypeError || error instanceof RangeError) return true;
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  return code.startsWith("28") || code === "3D000" || code === "42501" || code === "AUTH_FAILED" ||
    code === "TLS_UNAVAILABLE" || code === "TLS_FAILED";
}

// Socket errors of other drivers (Node's error codes) that mean "not reachable right now".
const TRANSIENT_CODES = new Set([
  "CONNECT_FAILED",
  "CONNECT_TIMEOUT",
  "CONNECTION_LOST",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EAI_AGAIN",
]);

/**
 * Whether a connect error may pass by itself, so that the pool tries again within its callers'
 * deadlines rather than failing them: the server unreachable for now (refused, reset, timed
 * out), starting up or shutting down (57P03, 57P01, 57P02), out of connections or other
 * resources (class 53: 53300 "too many connections"), or a connection exception (class 08).
 * Anything else (a wrong password, a missing database, TLS that cannot work, a failing
 * `configure`) fails the caller at once.
 */
export function isTransientConnectError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  return TRANSIENT_CODES.has(code) || code.startsWith("08") || code.startsWith("53") ||
    code === "57P01" || code === "57P02" || code === "57P03";
}
