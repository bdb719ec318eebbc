// Checkout deadlines: a caller still waiting at its deadline (in the queue, or while its
// connection is health-checked) is expired by the pool, which fails it with POOL_TIMEOUT.
//
// One timer serves every waiter, armed for the earliest deadline: no timer per checkout. With
// affinity (Workers) that cannot work: a timer only fires while the request that set it
// lives, so a shared one could die with another request. There each checkout has its own.

import type { Clock, PoolTime } from "./_clock.ts";
import type { Waiter, Waiting } from "./_waiters.ts";

/** The timers behind checkout deadlines. */
export class Deadlines<T> {
  readonly #clock: Clock;
  /** A timer per checkout rather than the shared one (a timer lives as long as its request). */
  readonly #perCheckout: boolean;
  readonly #time: PoolTime;
  /** The waits it ends: queued, or having their connection health-checked. */
  readonly #waiting: Waiting<T>;
  #timer: unknown = null;
  /** The deadline the shared timer is armed for. */
  #at = Infinity;
  #stopped = false;

  /** `time`: the pool's reading of `clock`, read afresh here (it keeps it for its hot paths). */
  constructor(clock: Clock, perCheckout: boolean, time: PoolTime, waiting: Waiting<T>) {
    this.#clock = clock;
    this.#perCheckout = perCheckout;
    this.#time = time;
    this.#waiting = waiting;
  }

  /**
   * Watches a new waiter's deadline. A timer of its own is cleared by the waiter's `cleanup`
   * (which this chains before the one already set), so settling the waiter stops it.
   */
  watch(waiter: Waiter<T>): void {
    if (this.#perCheckout) {
      const clock = this.#clock;
      const waiting = this.#waiting;
      const timer = clock.setTimeout(() => waiting.expire(waiter), waiter.timeout);
      const previous = waiter.cleanup;
      waiter.cleanup = () => {
        clock.clearTimeout(timer);
        previous?.();
      };
    } else if (waiter.deadline < this.#at) this.#arm(waiter.deadline);
  }

  /** Cancels the shared timer for good (the pool is closing and settles its waiters itself). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(at: number): void {
    const clock = this.#clock;
    if (this.#timer !== null) clock.clearTimeout(this.#timer);
    this.#at = at;
    this.#timer = clock.setTimeout(() => this.#due(), Math.max(0, at - this.#time.now()));
  }

  /** The shared timer fired: expire every waiter that is due, re-arm for the next one. */
  #due(): void {
    this.#timer = null;
    this.#at = Infinity;
    const waiting = this.#waiting;
    const now = this.#time.now();
    let next = Infinity;
    for (const waiter of [...waiting.queue.toArray(), ...waiting.checking]) {
      if (waiter.settled) continue;
      if (waiter.deadline <= now) waiting.expire(waiter);
      else if (waiter.deadline < next) next = waiter.deadline;
    }
    if (next !== Infinity && !this.#stopped) this.#arm(next);
  }
}
