// Background upkeep: one timer, running only while there is something to look after and never
// once the pool is closed, and the jobs it runs that choose what to close (pure functions; the
// engine closes, and runs the other jobs: leak reports, refilling to `min`).

import type { Slot } from "./_engine.ts";
import type { ResolvedOptions } from "./options.ts";

/** The pool's one upkeep timer. */
export class Upkeep {
  readonly #settings: Pick<ResolvedOptions<unknown>, "clock" | "maintenanceInterval">;
  readonly #tick: (now: number) => void;
  #timer: unknown = null;
  #stopped = false;

  /** `tick` runs the jobs, at clock time `now`. */
  constructor(
    settings: Pick<ResolvedOptions<unknown>, "clock" | "maintenanceInterval">,
    tick: (now: number) => void,
  ) {
    this.#settings = settings;
    this.#tick = tick;
  }

  /** Makes sure a tick is coming, if one is `needed`. */
  schedule(needed: boolean): void {
    // On every checkin and wait: the common case first, a tick already coming.
    if (this.#timer !== null) return;
    if (this.#stopped || !needed) return;
    const { clock, maintenanceInterval } = this.#settings;
    this.#timer = clock.setTimeout(() => {
      this.#timer = null;
      if (!this.#stopped) this.#tick(clock.now());
    }, maintenanceInterval);
  }

  /** Cancels the coming tick, for good (the pool is closing). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer === null) return;
    this.#settings.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}

/** The idle slots past their lifetime at `now` (the refill replaces them up to `min`). */
export function expired<C>(idle: readonly Slot<C>[], now: number): Slot<C>[] {
  return idle.filter((slot) => now >= slot.expiresAt);
}

/**
 * The idle slots (oldest-returned first) that sat unused longer than `maxIdle` at `now`, as
 * many as leave at least `min` of the `open` connections.
 */
export function idledOut<C>(
  idle: readonly Slot<C>[],
  open: number,
  min: number,
  maxIdle: number,
  now: number,
): Slot<C>[] {
  const out: Slot<C>[] = [];
  if (maxIdle === Infinity) return out;
  for (const slot of idle) {
    if (open - out.length <= min) break;
    if (now - slot.lastUsedAt >= maxIdle) out.push(slot);
  }
  return out;
}
