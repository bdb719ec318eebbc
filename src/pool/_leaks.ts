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

/**
 * A slot's current checkout, as leak watching follows it: one record per slot, started afresh
 * by each checkout (so that a checkout allocates nothing for it).
 */
export class CheckoutRecord {
  /** Checkouts of this slot so far. */
  count = 0;
  /** When the current one started (pool time). */
  at = 0;
  /** Where it happened, when the pool records stacks. */
  stack: string | undefined = undefined;
  /**
   * Its handle, held until the next upkeep tick; then, if still out, it is watched by garbage
   * collection instead.
   */
  handle: object | null = null;
  /** Its handle is registered for garbage-collection detection. */
  watched = false;
  /** A `leak` warning was given for it. */
  leakReported = false;
  /** When it was first seen inside a transaction, or `null`. */
  transactionSeenAt: number | null = null;
  /** An `idleInTransaction` report was given for its transaction. */
  transactionReported = false;

  /** A checkout starts, at pool time `at`. */
  start(handle: object, at: number, stack: string | undefined): void {
    this.count++;
    this.at = at;
    this.stack = stack;
    this.handle = handle;
    this.leakReported = false;
    this.transactionSeenAt = null;
    this.transactionReported = false;
  }
}

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
      const heldMs = settings.clock.now() - slot.checkout.at;
      settings.logger.warn?.(
        `${settings.name}: a checked-out connection was garbage-collected without being ` +
          `returned after ${heldMs} ms`,
        { stack: slot.checkout.stack },
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
      const checkout = slot.checkout;
      const handle = checkout.handle;
      checkout.handle = null;
      if (slot.state !== "out") continue;
      if (handle !== null && registry !== null) {
        registry.register(handle, slot, slot);
        checkout.watched = true;
      }
      if (leakDetectionThreshold > 0 && !checkout.leakReported) {
        const heldMs = now - checkout.at;
        if (heldMs >= leakDetectionThreshold) {
          checkout.leakReported = true;
          this.#threshold(slot, heldMs);
        }
      }
      if (idleInTransactionThreshold > 0) {
        const status = adapter.transactionStatus(slot.connection);
        if (status !== "transaction" && status !== "failed") {
          checkout.transactionSeenAt = null;
          checkout.transactionReported = false;
          continue;
        }
        // Counted from the first tick that sees it: it began at most one interval earlier, so
        // the time is known to within one `maintenanceInterval`.
        checkout.transactionSeenAt ??= now;
        const heldMs = now - checkout.transactionSeenAt;
        if (checkout.transactionReported || heldMs < idleInTransactionThreshold) continue;
        checkout.transactionReported = true;
        this.#longTransaction(slot, status, heldMs);
      }
    }
  }

  /** The checkout ended (returned or detached). */
  forget(slot: Slot<C>): void {
    const checkout = slot.checkout;
    checkout.handle = null;
    if (!checkout.watched) return;
    this.#registry!.unregister(slot);
    checkout.watched = false;
  }

  /** A connection has been checked out longer than `leakDetectionThreshold`. */
  #threshold(slot: Slot<C>, heldMs: number): void {
    const settings = this.#settings;
    settings.logger.warn?.(
      `${settings.name}: a connection has been checked out for ${heldMs} ms ` +
        `(leakDetectionThreshold ${settings.leakDetectionThreshold} ms)`,
      { stack: slot.checkout.stack },
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
      { stack: slot.checkout.stack, heldMs },
    );
    this.#events.emit("idleInTransaction", {
      info: slot.info,
      status,
      heldMs,
      stack: slot.checkout.stack,
    });
  }

  #emit(reason: "threshold" | "garbage-collected", slot: Slot<C>, heldMs: number): void {
    this.#events.emit("leak", { reason, info: slot.info, heldMs, stack: slot.checkout.stack });
  }
}

/** Where the caller checked out: the stack below the pool's own frames. */
export function checkoutStack(): string | undefined {
  const stack = new Error("checked out here").stack;
  // Drop the pool's own frames: the first lines are this function and the pool internals.
  return stack?.split("\n").slice(4).join("\n");
}
