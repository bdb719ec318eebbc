// Checked-out connections with more than one user. `pool.query` statements share them (see
// `PoolOptions.queryPipeline`): when no connection is idle, none may be opened and nobody waits
// for a checkout, a statement that may be pipelined (_pipeline.ts) joins the busy connection
// with the fewest statements in flight instead of queueing. A connection is shared only while
// a `pool.query` statement holds it: the statement's checkout becomes the sharer, and the last
// statement to end returns it. And ContextPool hands out extra handles on the connection that
// another handle owns.

import type { QueryOptions, QueryResult } from "../result.ts";
import type { Slot } from "./_engine.ts";
import type { Waiting } from "./_waiters.ts";
import type { ResolvedOptions } from "./options.ts";
import {
  handleSlot,
  PooledConnection,
  type PoolInternals,
  sharedInternals,
} from "./pooled_connection.ts";

/** What sharing needs from the pool. */
export interface SharingTarget<C> {
  readonly settings: Pick<ResolvedOptions<C>, "adapter" | "queryPipeline">;
  /** The pool's waiters: `pool.query` statements at their head may join a shared connection. */
  readonly waiting: Waiting<PooledConnection<C>>;
  /** What the pool's own handles are given. */
  readonly internals: PoolInternals<C, Slot<C>>;
}

/** A checked-out slot's `pool.query` statements: one record per slot, reused while it lives. */
export interface SharedUse<C> {
  /** Statements running on it now. */
  count: number;
  /** The handle they run through, returned when the last one ends. */
  sharer: PooledConnection<C> | null;
}

/** The checked-out connections that `pool.query` statements may join, and shared handles. */
export class Sharing<C> {
  readonly #target: SharingTarget<C>;
  /** Checked-out slots running `pool.query` statements that others may join. */
  readonly #slots = new Set<Slot<C>>();
  /** What shared handles are given. */
  readonly #internals: PoolInternals<C, Slot<C>>;

  constructor(target: SharingTarget<C>) {
    this.#target = target;
    this.#internals = sharedInternals(target.internals);
  }

  /** Another handle on the connection behind `owner` (see `Pool.share`). */
  share(owner: PooledConnection<C>): PooledConnection<C> {
    return new PooledConnection(this.#internals, handleSlot(owner));
  }

  /**
   * A checked-out connection that a `pool.query` statement may join, counted as joined: only
   * when the pool is `saturated` (open, no connection idle, none may be opened) and nobody
   * waits for a checkout (those come first; sharing stops so that connections come back).
   * Connections made before `generation` are not joined (they close when returned).
   */
  join(saturated: boolean, generation: number): Slot<C> | undefined {
    const slots = this.#slots;
    const target = this.#target;
    if (slots.size === 0 || target.waiting.queue.length > 0 || !saturated) return undefined;
    let best: Slot<C> | undefined;
    for (const slot of slots) {
      if (slot.state !== "out" || slot.soft || slot.generation < generation) {
        slots.delete(slot); // going to be closed when returned
      } else if (slot.suspect) {
        // Another connection was lost, and this one may be too (a server gone down): nothing
        // joins it before it is pinged at its next checkout.
        continue;
      } else if (best === undefined || slot.share!.count < best.share!.count) best = slot;
    }
    if (best === undefined || best.share!.count >= target.settings.queryPipeline) return undefined;
    best.share!.count++;
    return best;
  }

  /**
   * The slot to run a `pool.query` statement on, from its checkout (`connect(options, true)`):
   * a connection of its own, which other statements may join from now on, or one it joined
   * while waiting.
   */
  start(connection: PooledConnection<C>): Slot<C> {
    const slot = handleSlot<C, Slot<C>>(connection);
    const share = slot.share ??= { count: 0, sharer: null };
    if (share.sharer === connection) return slot; // joined while waiting: counted then
    share.count = 1;
    share.sharer = connection;
    this.#slots.add(slot);
    if (this.#target.waiting.queue.length > 0) this.#joinWaiters(slot);
    return slot;
  }

  /** Runs a statement on a shared connection; the last one to end returns the connection. */
  async run<Row>(
    slot: Slot<C>,
    sql: string,
    params: readonly unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<QueryResult<Row>> {
    const share = slot.share!;
    try {
      return await share.sharer!.query<Row>(sql, params, options);
    } finally {
      if (--share.count === 0) {
        this.#slots.delete(slot);
        const sharer = share.sharer!;
        share.sharer = null;
        sharer.release();
      } else if (this.#target.settings.adapter.transactionStatus(slot.connection) !== "idle") {
        this.#slots.delete(slot); // not expected (see _pipeline.ts), but never join one
      } else if (this.#target.waiting.queue.length > 0) this.#joinWaiters(slot);
    }
  }

  /** Statements waiting at the head of the queue join `slot` while it has room. */
  #joinWaiters(slot: Slot<C>): void {
    const { settings, waiting } = this.#target;
    const limit = settings.queryPipeline;
    const share = slot.share!;
    while (share.count < limit && this.#slots.has(slot)) {
      const waiter = waiting.queue.head;
      if (waiter === null || !waiter.shareable) return;
      waiting.queue.shift();
      share.count++;
      waiting.served(waiter);
      waiter.resolve(share.sharer!);
    }
  }
}
