// Callers of `pool.wait()`, waiting until `min` connections are open, each with its own
// timeout: resolved when enough connections are open, rejected at once when connecting fails
// for a reason retrying will not fix (a wrong password, a missing database), or when the pool
// closes.

import { PoolError } from "../errors.ts";
import type { Clock } from "./_clock.ts";
import { isConfigError } from "./_connector.ts";

type Entry = { resolve: () => void; reject: (error: unknown) => void };

/** What the ready waiters need from the pool. */
export interface ReadyTarget {
  readonly clock: Clock;
  /** Connections open now. */
  open(): number;
  /** The connections to wait for (`min`). */
  min(): number;
  /** The latest connect failure (the cause behind a timeout). */
  lastError(): unknown;
}

/** The callers waiting for the pool to be ready. */
export class ReadyWaiters {
  readonly #target: ReadyTarget;
  readonly #entries: Entry[] = [];

  constructor(target: ReadyTarget) {
    this.#target = target;
  }

  /** Waits for `min` open connections, for up to `timeout` ms (then rejects: POOL_TIMEOUT). */
  wait(timeout: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const target = this.#target;
      const clock = target.clock;
      const entry: Entry = {
        resolve: () => {
          clock.clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clock.clearTimeout(timer);
          reject(error);
        },
      };
      const timer = clock.setTimeout(() => {
        this.#entries.splice(this.#entries.indexOf(entry), 1);
        reject(
          new PoolError(
            "POOL_TIMEOUT",
            `The pool is not ready: ${target.open()} of ${target.min()} connections open after ` +
              `${timeout} ms`,
            { cause: target.lastError() },
          ),
        );
      }, timeout);
      this.#entries.push(entry);
    });
  }

  /** A connection was made: enough now? */
  connected(): void {
    const target = this.#target;
    if (target.open() >= target.min()) {
      for (const entry of this.#entries.splice(0)) entry.resolve();
    }
  }

  /** Connecting failed: if retrying will not fix it, waiting is over. */
  connectFailed(error: unknown): void {
    if (!isConfigError(error)) return;
    for (const entry of this.#entries.splice(0)) entry.reject(error);
  }

  /** The pool is closing: every wait fails, each with an error from `error`. */
  close(error: () => unknown): void {
    for (const entry of this.#entries.splice(0)) entry.reject(error());
  }
}
