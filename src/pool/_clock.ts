// Time for the pool, injectable so that unit tests can drive timeouts, lifetimes and backoff
// with a controllable clock instead of waiting.

/** What a pool needs of time and chance. */
export interface Clock {
  /** Milliseconds since some fixed point. */
  now(): number;
  /**
   * Runs `fn` after `ms` milliseconds; returns a handle for `clearTimeout`. Only a timer that
   * someone awaits (`keepAlive`: a caller waiting for a checkout) keeps a Node or Bun process
   * alive; the pool's upkeep alone does not.
   */
  setTimeout(fn: () => void, ms: number, keepAlive?: boolean): unknown;
  /** Cancels a `setTimeout`. */
  clearTimeout(handle: unknown): void;
  /** A number in [0, 1), for lifetime jitter and backoff. */
  random(): number;
}

/** The real clock: `Date.now`, the global timers, `Math.random`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms, keepAlive) {
    const handle = setTimeout(fn, ms);
    // Node and Bun: pool timers alone must not keep the process alive; a caller's wait does
    // (or a script awaiting a checkout during an outage would exit mid-await).
    if (!keepAlive) (handle as { unref?: () => void }).unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as number),
  random: () => Math.random(),
};

/**
 * The clock as the pool last read it: at every upkeep tick, and whenever a slower path reads
 * it. Checkout and checkin stamp slots with `time` rather than reading the clock (which
 * costs as much as the rest of a checkout), so the times kept per connection are precise to
 * about one `maintenanceInterval`; checkout deadlines and waits read the clock.
 */
export class PoolTime {
  /** The last reading. */
  time: number;
  readonly #clock: Clock;
  /** `time` was read in this run of microtasks. */
  #fresh = false;
  readonly #stale = (): void => {
    this.#fresh = false;
  };

  constructor(clock: Clock) {
    this.#clock = clock;
    this.time = clock.now();
  }

  /** Reads the clock, and keeps the reading. */
  now(): number {
    return (this.time = this.#clock.now());
  }

  /**
   * The clock for a checkout that starts waiting: read once per run of microtasks. No I/O and
   * no timer can happen within one, so every wait starting in it starts at that reading, give
   * or take the CPU time it has taken so far; under load, one reading serves many waits.
   */
  forWait(): number {
    if (this.#fresh) return this.time;
    this.#fresh = true;
    queueMicrotask(this.#stale);
    return this.now();
  }

  /**
   * How long a wait that began at `since` has lasted. A reading from this run of microtasks,
   * or one taken since the wait began (under load, by a later waiter), is close enough for the
   * stat; otherwise the clock is read.
   */
  waited(since: number): number {
    return (this.#fresh || this.time > since ? this.time : this.forWait()) - since;
  }
}
