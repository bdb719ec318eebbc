// Making connections for a pool: attempts in flight, their timing, their failures (reported,
// and which ones retrying will not fix), and the exponential backoff of background
// (re)connecting with its give-up point.

import { errorMessage } from "../errors.ts";
import type { Emitter } from "../_emitter.ts";
import type { Clock } from "./_clock.ts";
import type { PoolAdapter } from "./adapter.ts";
import type { PoolEvents } from "./events.ts";
import type { Creator, Policy, PoolLogger } from "./options.ts";
import type { PoolCounters } from "./stats.ts";

const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 60_000;

/** What the connector reports back to its pool. */
export interface ConnectorHooks<C> {
  /**
   * A connection was made (and configured); `login`, when its login is still under way, settles
   * with it (it goes to a caller `takesEarly` accepted; should it fail, `loginFailed` follows).
   */
  connected(connection: C, startedAt: number, owner: unknown, login: Promise<void> | null): void;
  /**
   * Whether the caller a new connection goes to (`owner`, else the first in line) takes one
   * whose login is still under way.
   */
  takesEarly(owner: unknown): boolean;
  /** The login of a connection handed over early failed (reported already). */
  loginFailed(error: unknown): void;
  /** An attempt failed (reported already, unless aborted). */
  failed(error: unknown, owner: unknown): void;
  /** Background reconnecting gave up (reported already). */
  gaveUp(): void;
}

/** Starts connection attempts and keeps the state of failing ones. */
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
  readonly #hooks: ConnectorHooks<C>;
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
    hooks: ConnectorHooks<C>,
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

  /** Whether background connecting should wait (a backoff delay is running). */
  get backingOff(): boolean {
    return this.#backoff !== null && this.#clock.now() < this.#backoff.until;
  }

  /** Whether a backoff is under way (so upkeep must keep running to retry). */
  get pending(): boolean {
    return this.#backoff !== null;
  }

  /** Starts one attempt; `owner`, if given, is handed back with its outcome. */
  start(owner?: unknown): void {
    this.connecting++;
    this.#counters.connectionsNum++;
    const done = this.#attempt(owner);
    this.#inflight.add(done);
    done.finally(() => this.#inflight.delete(done));
  }

  async #attempt(owner: unknown): Promise<void> {
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
   * up to `policy.min` unless backing off, never past `policy.max` open (`live`) plus
   * connecting. `waiting` and `live` are read afresh for every attempt.
   */
  fill(
    waiting: { readonly length: number } | null,
    live: { readonly size: number },
    policy: Policy,
  ): void {
    const max = policy.max;
    while (
      waiting !== null && waiting.length > this.connecting && live.size + this.connecting < max
    ) {
      this.start();
    }
    if (!this.backingOff && !this.gaveUp) {
      const min = Math.min(policy.min, max);
      while (live.size + this.connecting < min) this.start();
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
   * Backs off after a failed background attempt (`error`): 1 s, doubling up to 60 s, ±10 %.
   * When `reconnectTimeout` has passed since the first failure, it gives up instead.
   */
  backOff(reconnectTimeout: number, error: unknown): void {
    const now = this.#clock.now();
    if (this.#backoff === null) {
      this.#backoff = { startedAt: now, delay: FIRST_BACKOFF_MS, until: 0 };
    } else {
      this.#backoff.delay = Math.min(this.#backoff.delay * 2, MAX_BACKOFF_MS);
    }
    if (now - this.#backoff.startedAt >= reconnectTimeout) {
      this.#backoff = null;
      this.gaveUp = true;
      this.#logger.error?.(`${this.#name}: giving up reconnecting after ${reconnectTimeout} ms`);
      this.#events.emit("error", { error, context: "reconnect failed" });
      this.#hooks.gaveUp();
      return;
    }
    // Jitter, so that many pools do not retry in step.
    this.#backoff.until = now + this.#backoff.delay * (0.9 + 0.2 * this.#clock.random());
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
 * cannot work. Connection refused, timeouts and "too many connections" are worth retrying.
 */
export function isConfigError(error: unknown): boolean {
  if (error instanceof TypeError || error instanceof RangeError) return true;
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  return code.startsWith("28") || code === "3D000" || code === "AUTH_FAILED" ||
    code === "TLS_UNAVAILABLE" || code === "TLS_FAILED";
}
