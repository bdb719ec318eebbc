// Checkouts that are never returned, or held too long: found by garbage collection and by the
// thresholds, and reported as `leak` and `idleInTransaction` events, with where the checkout
// happened when the pool records stacks.
//
// Garbage collection can only notice a handle that nothing else references; but registering
// every handle with a FinalizationRegistry costs more than the rest of a checkout. So a record
// holds its current handle until the next upkeep tick, and only a checkout still out then is
// registered (and let go of): a dropped handle is noticed one tick plus one collection later,
// and short checkouts cost nothing.
//
// Some runtimes have no FinalizationRegistry (workerd before compatibility date 2025-05-05):
// there only `leakDetectionThreshold` finds leaks, and the pool says so once, in a debug line.

import type { Emitter } from "../_emitter.ts";
import type { PoolRecord } from "./_record.ts";
import type { PoolEvents } from "./events.ts";
import type { ResolvedOptions } from "./options.ts";

/** The pool's leak detection. */
export class LeakWatch<C> {
  readonly #settings: ResolvedOptions<C>;
  readonly #events: Emitter<PoolEvents<C>>;
  /** `null` where the runtime has no FinalizationRegistry. */
  readonly #registry: FinalizationRegistry<PoolRecord<C>> | null;

  /** `collected` takes back the connection of a handle that was garbage-collected. */
  constructor(
    settings: ResolvedOptions<C>,
    events: Emitter<PoolEvents<C>>,
    collected: (record: PoolRecord<C>) => void,
  ) {
    this.#settings = settings;
    this.#events = events;
    if (typeof FinalizationRegistry !== "function") {
      this.#registry = null;
      settings.logger.debug?.(
        `${settings.name}: this runtime has no FinalizationRegistry: leaked checkouts are ` +
          "found by leakDetectionThreshold only" +
          (settings.leakDetectionThreshold > 0 ? "" : " (not set)"),
      );
      return;
    }
    this.#registry = new FinalizationRegistry((record) => {
      // Released and detached handles are unregistered, so this is the current checkout.
      if (record.state !== "busy" || !record.out) return;
      const heldMs = settings.clock.now() - record.checkedOutAt;
      settings.logger.warn?.(
        `${settings.name}: a checked-out connection was garbage-collected without being ` +
          `returned after ${heldMs} ms`,
        { stack: record.stack },
      );
      this.#emit("garbage-collected", record, heldMs);
      collected(record);
    });
  }

  /** Upkeep tick: checkouts still out are watched by garbage collection from now on. */
  watch(busy: Iterable<PoolRecord<C>>): void {
    const registry = this.#registry;
    if (registry === null) {
      for (const record of busy) record.handle = null;
      return;
    }
    for (const record of busy) {
      const handle = record.handle;
      if (handle === null) continue;
      record.handle = null;
      if (!record.out) continue;
      registry.register(handle, record, record);
      record.watched = true;
    }
  }

  /** The checkout ended (returned or detached). */
  forget(record: PoolRecord<C>): void {
    record.handle = null;
    if (!record.watched) return;
    this.#registry!.unregister(record);
    record.watched = false;
  }

  /** A connection has been checked out longer than `leakDetectionThreshold`. */
  threshold(record: PoolRecord<C>, heldMs: number): void {
    const settings = this.#settings;
    settings.logger.warn?.(
      `${settings.name}: a connection has been checked out for ${heldMs} ms ` +
        `(leakDetectionThreshold ${settings.leakDetectionThreshold} ms)`,
      { stack: record.stack },
    );
    this.#emit("threshold", record, heldMs);
  }

  /** A checked-out connection has been inside a transaction too long. */
  longTransaction(record: PoolRecord<C>, status: "transaction" | "failed", heldMs: number): void {
    const settings = this.#settings;
    settings.logger.warn?.(
      `${settings.name}: a checked-out connection has been inside a ${
        status === "failed" ? "failed " : ""
      }transaction for ${heldMs} ms (idleInTransactionThreshold ` +
        `${settings.idleInTransactionThreshold} ms); commit or roll back sooner: it holds ` +
        "locks, and a whole server connection behind a pooler",
      { stack: record.stack, heldMs },
    );
    this.#events.emit("idleInTransaction", {
      info: record.info,
      status,
      heldMs,
      stack: record.stack,
    });
  }

  #emit(reason: "threshold" | "garbage-collected", record: PoolRecord<C>, heldMs: number): void {
    this.#events.emit("leak", { reason, info: record.info, heldMs, stack: record.stack });
  }
}

/** Where the caller checked out: the stack below the pool's own frames. */
export function checkoutStack(): string | undefined {
  const stack = new Error("checked out here").stack;
  // Drop the pool's own frames: the first lines are this function and the pool internals.
  return stack?.split("\n").slice(4).join("\n");
}
