// Checkouts that are never returned, or held too long: found by garbage collection and by the
// thresholds, and reported as `leak` and `idleInTransaction` events, with where the checkout
// happened when the pool records stacks.
//
// Garbage collection can only notice a handle that nothing else references; but registering
// every handle with a FinalizationRegistry costs more than the rest of a checkout. So a slot
// holds its current handle until the next upkeep tick, and only a checkout still out then is
// registered (and let go of): a dropped handle is noticed one tick plus one collection later,
// and short checkouts cost nothing.
//
// Some runtimes have no FinalizationRegistry (workerd before compatibility date 2025-05-05):
// there only `leakDetectionThreshold` finds leaks, and the pool says so once, in a debug line.

import type { Emitter } from "../_emitter.ts";
import type { Slot } from "./_engine.ts";
import type { PoolEvents } from "./events.ts";
import type { ResolvedOptions } from "./options.ts";

/** The pool's leak detection. */
export class LeakWatch<C> {
  readonly #settings: ResolvedOptions<C>;
  readonly #events: Emitter<PoolEvents<C>>;
  /** `null` where the runtime has no FinalizationRegistry. */
  readonly #registry: FinalizationRegistry<Slot<C>> | null;

  /** `collected` takes back the connection of a handle that was garbage-collected. */
  constructor(
    settings: ResolvedOptions<C>,
    events: Emitter<PoolEvents<C>>,
    collected: (slot: Slot<C>) => void,
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
    this.#registry = new FinalizationRegistry((slot) => {
      // Released and detached handles are unregistered, so this is the current checkout.
      if (slot.state !== "out") return;
      const heldMs = settings.clock.now() - slot.checkedOutAt;
      settings.logger.warn?.(
        `${settings.name}: a checked-out connection was garbage-collected without being ` +
          `returned after ${heldMs} ms`,
        { stack: slot.stack },
      );
      this.#emit("garbage-collected", slot, heldMs);
      collected(slot);
    });
  }

  /**
   * Upkeep tick at `now`, over every open slot: checkouts still out are watched by garbage
   * collection from now on, and those held or inside a transaction too long are reported.
   */
  tick(live: Iterable<Slot<C>>, now: number): void {
    const registry = this.#registry;
    const { leakDetectionThreshold, idleInTransactionThreshold, adapter } = this.#settings;
    for (const slot of live) {
      const handle = slot.handle;
      slot.handle = null;
      if (slot.state !== "out") continue;
      if (handle !== null && registry !== null) {
        registry.register(handle, slot, slot);
        slot.watched = true;
      }
      if (leakDetectionThreshold > 0 && !slot.leakReported) {
        const heldMs = now - slot.checkedOutAt;
        if (heldMs >= leakDetectionThreshold) {
          slot.leakReported = true;
          this.#threshold(slot, heldMs);
        }
      }
      if (idleInTransactionThreshold > 0) {
        const status = adapter.transactionStatus(slot.connection);
        if (status !== "transaction" && status !== "failed") {
          slot.transactionSeenAt = null;
          slot.transactionReported = false;
          continue;
        }
        // Counted from the first tick that sees it: it began at most one interval earlier, so
        // the time is known to within one `maintenanceInterval`.
        slot.transactionSeenAt ??= now;
        const heldMs = now - slot.transactionSeenAt;
        if (slot.transactionReported || heldMs < idleInTransactionThreshold) continue;
        slot.transactionReported = true;
        this.#longTransaction(slot, status, heldMs);
      }
    }
  }

  /** The checkout ended (returned or detached). */
  forget(slot: Slot<C>): void {
    slot.handle = null;
    if (!slot.watched) return;
    this.#registry!.unregister(slot);
    slot.watched = false;
  }

  /** A connection has been checked out longer than `leakDetectionThreshold`. */
  #threshold(slot: Slot<C>, heldMs: number): void {
    const settings = this.#settings;
    settings.logger.warn?.(
      `${settings.name}: a connection has been checked out for ${heldMs} ms ` +
        `(leakDetectionThreshold ${settings.leakDetectionThreshold} ms)`,
      { stack: slot.stack },
    );
    this.#emit("threshold", slot, heldMs);
  }

  /** A checked-out connection has been inside a transaction too long. */
  #longTransaction(slot: Slot<C>, status: "transaction" | "failed", heldMs: number): void {
    const settings = this.#settings;
    settings.logger.warn?.(
      `${settings.name}: a checked-out connection has been inside a ${
        status === "failed" ? "failed " : ""
      }transaction for ${heldMs} ms (idleInTransactionThreshold ` +
        `${settings.idleInTransactionThreshold} ms); commit or roll back sooner: it holds ` +
        "locks, and a whole server connection behind a pooler",
      { stack: slot.stack, heldMs },
    );
    this.#events.emit("idleInTransaction", {
      info: slot.info,
      status,
      heldMs,
      stack: slot.stack,
    });
  }

  #emit(reason: "threshold" | "garbage-collected", slot: Slot<C>, heldMs: number): void {
    this.#events.emit("leak", { reason, info: slot.info, heldMs, stack: slot.stack });
  }
}

/** Where the caller checked out: the stack below the pool's own frames. */
export function checkoutStack(): string | undefined {
  const stack = new Error("checked out here").stack;
  // Drop the pool's own frames: the first lines are this function and the pool internals.
  return stack?.split("\n").slice(4).join("\n");
}
