// Time for the pool, injectable so that unit tests can drive timeouts, lifetimes and backoff
// with a controllable clock instead of waiting.

/** What a pool needs of time and chance. */
export interface Clock {
  /** Milliseconds since some fixed point. */
  now(): number;
  /** Runs `fn` after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a `setTimeout`. */
  clearTimeout(handle: unknown): void;
  /** A number in [0, 1), for lifetime jitter and backoff. */
  random(): number;
}

/** The real clock: `Date.now`, the global timers, `Math.random`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, ms);
    // Node and Bun: pool timers alone must not keep the process alive.
    (handle as { unref?: () => void }).unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as number),
  random: () => Math.random(),
};
