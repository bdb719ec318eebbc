// Closing connections and pools: the closes in flight (so that closing the pool can wait for
// them), and closing a pool's wait for the checkouts still out, up to its grace period.

import type { Clock } from "./_clock.ts";

/** The closes a pool has in flight, and its wait for checkouts to come back. */
export class Closing {
  readonly #inflight = new Set<Promise<void>>();
  /** Set while closing the pool waits for the checkouts still out. */
  #allBack: (() => void) | null = null;

  /** Keeps `closing` (a connection's close, which never rejects) until it has finished. */
  add(closing: Promise<void>): void {
    this.#inflight.add(closing);
    closing.finally(() => this.#inflight.delete(closing));
  }

  /** Whether closing the pool is waiting for checkouts to come back. */
  get waiting(): boolean {
    return this.#allBack !== null;
  }

  /** Every checkout is back (or gone): ends the wait of `forCheckouts`. */
  allBack(): void {
    this.#allBack?.();
  }

  /** Waits until `allBack()`, for at most `timeout` ms. */
  async forCheckouts(clock: Clock, timeout: number): Promise<void> {
    let timer: unknown;
    await new Promise<void>((resolve) => {
      this.#allBack = resolve;
      timer = clock.setTimeout(resolve, timeout);
    });
    clock.clearTimeout(timer);
    this.#allBack = null;
  }

  /** Resolves when every close in flight, and those they lead to, have finished. */
  async settled(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all([...this.#inflight]);
  }
}
