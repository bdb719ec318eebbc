// Callers waiting for a connection, and how a wait ends when it is not served: its deadline
// passes (the timers are in _deadlines.ts), its AbortSignal fires, connecting for it fails, or
// the pool refuses it (`maxWaiting`) or closes. The queue is a doubly linked list, so that a
// waiter that times out or is aborted leaves it in O(1) wherever it stands.

import type { PoolTime } from "./_clock.ts";
import { errorMessage, PoolError } from "../errors.ts";
import type { ResolvedOptions } from "./options.ts";
import type { PoolCounters } from "./stats.ts";

/** One caller waiting in `connect()`. */
export interface Waiter<T> {
  /** Hands the caller its result; only the first of `resolve`/`reject` counts. */
  resolve(value: T): void;
  reject(error: unknown): void;
  /** When the caller started waiting (clock time). */
  readonly since: number;
  /** The checkout deadline (clock time). */
  readonly deadline: number;
  /** The checkout's timeout in ms, for the message. */
  readonly timeout: number;
  /** Where the caller checked out, when the pool records stacks. */
  readonly stack: string | undefined;
  /** The caller got an answer (or gave up): it no longer wants a connection. */
  settled: boolean;
  /**
   * A checkout whose first act is a query (`pool.query`, `transaction`, `batch`): it takes a
   * connection whose login is still under way.
   */
  statement: boolean;
  /** A `pool.query` statement that may join a shared connection (see `Pool.query`). */
  shareable: boolean;
  /** Removes the abort listener and clears the deadline timer, if there are any. */
  cleanup: (() => void) | null;
  prev: Waiter<T> | null;
  next: Waiter<T> | null;
}

/** A FIFO of waiters with O(1) removal. */
export class WaiterQueue<T> {
  #head: Waiter<T> | null = null;
  #tail: Waiter<T> | null = null;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(waiter: Waiter<T>): void {
    waiter.prev = this.#tail;
    waiter.next = null;
    if (this.#tail) this.#tail.next = waiter;
    else this.#head = waiter;
    this.#tail = waiter;
    this.#length++;
  }

  /** Puts a waiter back at the front (its health-checked connection failed: it keeps its turn). */
  unshift(waiter: Waiter<T>): void {
    waiter.prev = null;
    waiter.next = this.#head;
    if (this.#head) this.#head.prev = waiter;
    else this.#tail = waiter;
    this.#head = waiter;
    this.#length++;
  }

  /** The first waiter, left in the queue. */
  get head(): Waiter<T> | null {
    return this.#head;
  }

  shift(): Waiter<T> | null {
    const waiter = this.#head;
    if (waiter) this.remove(waiter);
    return waiter;
  }

  remove(waiter: Waiter<T>): void {
    if (waiter.prev) waiter.prev.next = waiter.next;
    else if (this.#head === waiter) this.#head = waiter.next;
    else return; // not queued
    if (waiter.next) waiter.next.prev = waiter.prev;
    else this.#tail = waiter.prev;
    waiter.prev = waiter.next = null;
    this.#length--;
  }

  /** Every queued waiter, front to back (a copy: the queue may change meanwhile). */
  toArray(): Waiter<T>[] {
    const all: Waiter<T>[] = [];
    for (let w = this.#head; w; w = w.next) all.push(w);
    return all;
  }

  /** Removes and returns every waiter. */
  drain(): Waiter<T>[] {
    const all: Waiter<T>[] = [];
    for (let w = this.shift(); w; w = this.shift()) all.push(w);
    return all;
  }
}

/** A new waiter, waiting from `now` for `timeout` ms (see {@link Waiter}). */
export function newWaiter<T>(
  resolve: (value: T) => void,
  reject: (error: unknown) => void,
  now: number,
  timeout: number,
  stack: string | undefined,
  statement: "shareable" | "alone" | undefined,
): Waiter<T> {
  return {
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
}

/** The error of a checkout from a closed pool. */
export function poolClosed(name: string): PoolError {
  return new PoolError("POOL_CLOSED", `Cannot check out a connection: ${name} is closed`);
}

/** Ends a wait with `error`, unless it has ended already. */
export function settle<T>(waiter: Waiter<T>, error: unknown): void {
  if (waiter.settled) return;
  waiter.settled = true;
  waiter.cleanup?.();
  waiter.reject(error);
}

/** What waiting needs from the pool: to count waits and failures, and to say why one timed out. */
export interface WaitingTarget {
  readonly settings: Pick<ResolvedOptions<unknown>, "maxWaiting">;
  readonly counters: PoolCounters;
  readonly time: PoolTime;
  /** Connection attempts in flight, and the latest failure (the cause behind timeouts). */
  readonly connector: { readonly connecting: number; readonly lastError: unknown };
  /** How full the pool is, in the pool class's terms. */
  describeCapacity(): string;
}

/** The callers waiting in `connect()`, and the ends of their waits other than being served. */
export class Waiting<T> {
  /** Waiting for a connection, first come first served. */
  readonly queue: WaiterQueue<T> = new WaiterQueue();
  /** Given a connection that is being health-checked (out of the queue meanwhile). */
  readonly checking: Set<Waiter<T>> = new Set();
  readonly #target: WaitingTarget;

  constructor(target: WaitingTarget) {
    this.#target = target;
  }

  /**
   * Ends `waiter`'s wait as served (its caller is resolved next): counts how long it waited,
   * in ms, and returns that.
   */
  served(waiter: Waiter<T>): number {
    waiter.settled = true;
    waiter.cleanup?.();
    const waited = this.#target.time.waited(waiter.since);
    this.#target.counters.requestsWaitMs += waited;
    return waited;
  }

  /** Lets `signal` end a new waiter's wait (set before anything else sets its `cleanup`). */
  abortOn(waiter: Waiter<T>, signal: AbortSignal): void {
    const onAbort = () => {
      if (waiter.settled) return;
      this.queue.remove(waiter);
      this.checking.delete(waiter);
      settle(waiter, signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    waiter.cleanup = () => signal.removeEventListener("abort", onAbort);
  }

  /** The error of a checkout refused because `maxWaiting` callers wait already (counted). */
  refused(): PoolError {
    const target = this.#target;
    target.counters.requestsErrors++;
    return new PoolError(
      "TOO_MANY_WAITERS",
      `Cannot check out a connection: ${this.queue.length} callers are already waiting ` +
        `(maxWaiting ${target.settings.maxWaiting}); ${target.describeCapacity()}`,
    );
  }

  /** The waiter's deadline has passed: it fails with POOL_TIMEOUT, unless it has ended. */
  expire(waiter: Waiter<T>): void {
    if (waiter.settled) return;
    this.queue.remove(waiter);
    this.checking.delete(waiter);
    const target = this.#target;
    target.counters.requestsErrors++;
    const cause = target.connector.lastError;
    settle(
      waiter,
      new PoolError(
        "POOL_TIMEOUT",
        `Cannot check out a connection: timed out after ${waiter.timeout} ms with ` +
          `${target.describeCapacity()}, ${target.connector.connecting} connecting, ` +
          `${this.queue.length} others waiting` +
          (cause === undefined ? "" : `; the last connect attempt failed: ${errorMessage(cause)}`),
        cause === undefined ? undefined : { cause },
      ),
    );
  }

  /**
   * A connection attempt failed: the caller it was made for (`owner`; else the first in line)
   * gets its error, not a timeout later.
   */
  connectFailed(error: unknown, owner: Waiter<T> | undefined): void {
    const waiter = owner === undefined ? this.queue.shift() : owner;
    if (owner !== undefined) this.queue.remove(owner);
    if (waiter !== null && !waiter.settled) {
      this.#target.counters.requestsErrors++;
      settle(waiter, error);
    }
  }

  /** The pool is closing: every wait fails, each with an error from `error`. */
  close(error: () => unknown): void {
    for (const waiter of [...this.queue.drain(), ...this.checking]) {
      if (waiter.settled) continue;
      this.#target.counters.requestsErrors++;
      settle(waiter, error());
    }
  }
}
