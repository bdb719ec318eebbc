// Making connections for a pool: attempts in flight, their timing, and the exponential
// backoff of background (re)connecting with its give-up point.

import type { Clock } from "./_clock.ts";
import type { PoolAdapter } from "./adapter.ts";
import type { Creator } from "./options.ts";
import type { PoolCounters } from "./stats.ts";

const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 60_000;

/** What the connector reports back to its pool. */
export interface ConnectorHooks<C> {
  /** A connection was made (and configured). */
  connected(connection: C, startedAt: number, owner: unknown): void;
  /** An attempt failed. */
  failed(error: unknown, owner: unknown): void;
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
  readonly #counters: PoolCounters;
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
    },
    counters: PoolCounters,
    hooks: ConnectorHooks<C>,
  ) {
    this.#creator = creator;
    this.#adapter = settings.adapter;
    this.#configure = settings.configure;
    this.#clock = settings.clock;
    this.#counters = counters;
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
    const started = this.#clock.now();
    const done = this.#make().then(
      (connection) => {
        this.connecting--;
        this.#counters.connectionsMs += this.#clock.now() - started;
        this.#backoff = null;
        this.gaveUp = false;
        this.lastError = undefined;
        this.#hooks.connected(connection, started, owner);
      },
      (error) => {
        this.connecting--;
        this.#counters.connectionsMs += this.#clock.now() - started;
        this.#counters.connectionsErrors++;
        this.lastError = error;
        this.#hooks.failed(error, owner);
      },
    );
    this.#inflight.add(done);
    done.finally(() => this.#inflight.delete(done));
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
   * Backs off after a failed background attempt: 1 s, doubling up to 60 s, ±10 %. Returns
   * `true` when `reconnectTimeout` has passed since the first failure: then it gives up.
   */
  backOff(reconnectTimeout: number): boolean {
    const now = this.#clock.now();
    if (this.#backoff === null) {
      this.#backoff = { startedAt: now, delay: FIRST_BACKOFF_MS, until: 0 };
    } else {
      this.#backoff.delay = Math.min(this.#backoff.delay * 2, MAX_BACKOFF_MS);
    }
    if (now - this.#backoff.startedAt >= reconnectTimeout) {
      this.#backoff = null;
      this.gaveUp = true;
      return true;
    }
    // Jitter, so that many pools do not retry in step.
    this.#backoff.until = now + this.#backoff.delay * (0.9 + 0.2 * this.#clock.random());
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
