// Checkout deadlines: a caller still waiting at its deadline (in the queue, or while its
// connection is health-checked) is expired by the pool, which fails it with POOL_TIMEOUT.
//
// One timer serves every waiter, armed for the earliest deadline: no timer per checkout.

import type { Clock, PoolTime } from "./_clock.ts";
import type { Waiter, Waiting } from "./_waiters.ts";

/** The timers behind checkout deadlines. */
export class Deadlines<T> {
  readonly #clock: Clock;
  readonly #time: PoolTime;
  /** The waits it ends: queued, or having their connection health-checked. */
  readonly #waiting: Waiting<T>;
  #timer: unknown = null;
  /** The deadline the shared timer is armed for. */
  #at = Infinity;
  #stopped = false;

  /** `time`: the pool's reading of `clock`, read afresh here (it keeps it for its hot paths). */
  constructor(clock: Clock, time: PoolTime, waiting: Waiting<T>) {
    this.#clock = clock;
    this.#time = time;
    this.#waiting = waiting;
  }

  /** Watches a new waiter's deadline. */
  watch(waiter: Waiter<T>): void {
    if (waiter.deadline < this.#at) this.#arm(waiter.deadline);
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
    // Not one that keeps a process alive: it stays armed after its waiter is served, and would
    // hold a finished script for up to a checkout timeout. While callers wait, what they wait
    // for does (a connect under way, a busy connection, the backoff's retry timer).
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
