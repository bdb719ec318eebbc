// Making connections for a pool: attempts in flight, their timing, their failures (reported,
// and which ones retrying will not fix), and the exponential backoff between attempts while
// connecting fails, with the give-up point of background (re)connecting.
//
// While connecting fails for a reason that may pass (the server restarting, refusing, too
// many connections), callers are not failed: they wait, within their own deadlines, while one
// attempt at a time probes the server after each backoff delay. The first success ends the
// backoff and the pool connects for everyone again.

import { errorMessage, PoolEventError } from "../errors.ts";
import type { Emitter } from "../_emitter.ts";
import type { Clock } from "./_clock.ts";
import type { PoolAdapter } from "./adapter.ts";
import type { PoolEvents } from "./events.ts";
import type { Creator, PoolLogger } from "./options.ts";
import type { PoolCounters } from "./stats.ts";

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 60_000;
/** With callers waiting, the longest pause between attempts: they would rather not wait long. */
const MAX_DEMAND_BACKOFF_MS = 2_000;

/** How an attempt ended: a connection (its login still under way, or `null`), or an error. */
export type Attempt<C> =
  | { ok: true; connection: C; startedAt: number; login: Promise<void> | null }
  | { ok: false; error: unknown };

/**
 * Makes connections, and keeps the state of failing ones: attempts in flight, the latest
 * failure, the backoff between tries, and whether background reconnecting gave up. Its pool
 * decides when to attempt (and keeps the timer that retries once the backoff has passed).
 */
export class Connector<C> {
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
  /** One controller per attempt in flight (one shared signal would gather a listener each). */
  readonly #attempts = new Set<AbortController>();
  #abortReason: unknown = undefined;
  #aborted = false;
  readonly #inflight = new Set<Promise<void>>();
  #backoff: { startedAt: number; delay: number; until: number } | null = null;

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
  ) {
    this.#creator = creator;
    this.#adapter = settings.adapter;
    this.#configure = settings.configure;
    this.#clock = settings.clock;
    this.#logger = settings.logger;
    this.#name = settings.name;
    this.#counters = counters;
    this.#events = events;
  }

  /**
   * While connecting fails (a backoff is under way): how long until the next try may start,
   * in ms (0: now). `undefined` when connecting works.
   */
  get backoffLeft(): number | undefined {
    const backoff = this.#backoff;
    return backoff === null ? undefined : Math.max(0, backoff.until - this.#clock.now());
  }

  /**
   * Makes a connection (and configures it), and hands `done` the outcome, in the same turn as
   * the attempt stops counting as `connecting` (so that the pool never counts it neither way).
   * A login still under way (started early) goes on only if `takesEarly()`, asked once the
   * connection is made, says the caller it goes to takes the login's outcome as its own (a
   * checkout whose first act is a query); otherwise the login is awaited first. A failed
   * attempt is counted, logged and reported (`error` event), unless the pool is closing; so is
   * the failure of a login that went on.
   */
  attempt(takesEarly: () => boolean, done: (made: Attempt<C>) => void): void {
    this.connecting++;
    this.#counters.connectionsNum++;
    const attempt = this.#attempt(takesEarly, done);
    this.#inflight.add(attempt);
    attempt.finally(() => this.#inflight.delete(attempt));
  }

  async #attempt(takesEarly: () => boolean, done: (made: Attempt<C>) => void): Promise<void> {
    const started = this.#clock.now();
    let connection: C;
    let login: Promise<void> | null;
    try {
      connection = await this.#make();
      login = this.#adapter.loggingIn?.(connection) ?? null;
      if (login !== null && !takesEarly()) {
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
      return done({ ok: false, error });
    }
    this.connecting--;
    this.#counters.connectionsMs += this.#clock.now() - started;
    if (login === null) this.#succeeded();
    else login.then(() => this.#succeeded(), (error) => this.#failed(error));
    done({ ok: true, connection, startedAt: started, login });
  }

  #succeeded(): void {
    this.#backoff = null;
    this.gaveUp = false;
    this.lastError = undefined;
  }

  #failed(error: unknown): void {
    this.#counters.connectionsErrors++;
    this.lastError = error;
    // Aborted by the pool closing: nobody is waiting for it.
    if (!this.#aborted) {
      this.#logger.warn?.(`${this.#name}: connecting failed: ${errorMessage(error)}`);
      this.#events.emit("error", new PoolEventError(error, "connect"));
    }
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
   * instead (reported; demand, a checkout or `wait()`, tries again): then it returns `true`.
   */
  backOff(reconnectTimeout: number, error: unknown, waiting: boolean): boolean {
    const now = this.#clock.now();
    if (this.#backoff === null) {
      this.#backoff = { startedAt: now, delay: FIRST_BACKOFF_MS, until: 0 };
    } else if (now < this.#backoff.until) {
      // Another attempt of the wave that already set this delay (many fail together when a
      // server goes down): the delay doubles once per try, not once per failure.
      return false;
    } else {
      this.#backoff.delay = Math.min(this.#backoff.delay * 2, MAX_BACKOFF_MS);
    }
    if (!waiting && now - this.#backoff.startedAt >= reconnectTimeout) {
      this.#backoff = null;
      this.gaveUp = true;
      this.#logger.error?.(`${this.#name}: giving up reconnecting after ${reconnectTimeout} ms`);
      this.#events.emit("error", new PoolEventError(error, "reconnect failed"));
      return true;
    }
    const delay = waiting
      ? Math.min(this.#backoff.delay, MAX_DEMAND_BACKOFF_MS)
      : this.#backoff.delay;
    // Jitter, so that many pools do not retry in step.
    this.#backoff.until = now + delay * (0.9 + 0.2 * this.#clock.random());
    return false;
  }

  /** Aborts every attempt in flight (the pool is closing). */
  abort(reason: unknown): void {
    this.#aborted = true;
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
