// Checkout deadlines: a caller still waiting at its deadline (in the queue, or while its
// connection is health-checked) is expired by the pool, which fails it with POOL_TIMEOUT.
//
// One timer serves every waiter, armed for the earliest deadline: no timer per checkout. Under
// `affinity` (Workers) that cannot work: a timer only fires while the request that set it
// lives, so a shared one could die with another request. There each checkout has its own.

import type { Clock } from "./_clock.ts";
import type { Waiter } from "./_waiters.ts";

/** What the deadlines need from the pool. */
export interface DeadlineTarget<T> {
  /** Reads the clock (the pool keeps the reading for its hot paths). */
  now(): number;
  /** Every waiter that may be due: queued, or having its connection health-checked. */
  waiting(): Iterable<Waiter<T>>;
  /** A waiter's deadline has come: fail it (it may have been settled meanwhile). */
  expire(waiter: Waiter<T>): void;
}

/** The timers behind checkout deadlines. */
export class Deadlines<T> {
  readonly #clock: Clock;
  /** `affinity`: a timer per checkout rather than the shared one. */
  readonly #perCheckout: boolean;
  readonly #target: DeadlineTarget<T>;
  #timer: unknown = null;
  /** The deadline the shared timer is armed for. */
  #at = Infinity;
  #stopped = false;

  constructor(clock: Clock, perCheckout: boolean, target: DeadlineTarget<T>) {
    this.#clock = clock;
    this.#perCheckout = perCheckout;
    this.#target = target;
  }

  /**
   * Watches a new waiter's deadline. A timer of its own is cleared by the waiter's `cleanup`
   * (which this chains before the one already set), so settling the waiter stops it.
   */
  watch(waiter: Waiter<T>): void {
    if (this.#perCheckout) {
      const clock = this.#clock;
      const target = this.#target;
      const timer = clock.setTimeout(() => target.expire(waiter), waiter.timeout);
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
    this.#timer = clock.setTimeout(() => this.#due(), Math.max(0, at - this.#target.now()));
  }

  /** The shared timer fired: expire every waiter that is due, re-arm for the next one. */
  #due(): void {
    this.#timer = null;
    this.#at = Infinity;
    const target = this.#target;
    const now = target.now();
    let next = Infinity;
    for (const waiter of target.waiting()) {
      if (waiter.settled) continue;
      if (waiter.deadline <= now) target.expire(waiter);
      else if (waiter.deadline < next) next = waiter.deadline;
    }
    if (next !== Infinity && !this.#stopped) this.#arm(next);
  }
}
