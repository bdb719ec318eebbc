// The FIFO queue of callers waiting for a connection. A doubly linked list, so that a waiter
// that times out or is aborted leaves the queue in O(1) wherever it stands.

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
  /** A `pool.query` statement: it may join a shared connection (see `Pool.query`). */
  shareable: boolean;
  /** Removes the abort listener, if there is one. */
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
