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
import { handleSlot, PooledConnection, type PoolInternals } from "./pooled_connection.ts";

/** What sharing needs from the pool. */
export interface SharingTarget<C> {
  readonly settings: Pick<ResolvedOptions<C>, "adapter" | "queryPipeline">;
  /** The pool's waiters: `pool.query` statements at their head may join a shared connection. */
  readonly waiting: Waiting<PooledConnection<C>>;
  /** What the pool's own handles are given. */
  readonly internals: PoolInternals<C>;
  /** The pool is open, no connection is idle and none may be opened. */
  saturated(): boolean;
  /** The pool's generation: connections made before it close when returned. */
  generation(): number;
}

const RESOLVED: Promise<void> = /* @__PURE__ */ Promise.resolve();

/** The checked-out connections that `pool.query` statements may join, and shared handles. */
export class Sharing<C> {
  readonly #target: SharingTarget<C>;
  /** Checked-out records running `pool.query` statements that others may join. */
  readonly #records = new Set<Slot<C>>();
  /** What shared handles are given. */
  readonly #internals: PoolInternals<C>;

  constructor(target: SharingTarget<C>) {
    this.#target = target;
    this.#internals = {
      ...target.internals,
      // A shared handle's release leaves the connection with the handle that owns it.
      checkin: () => RESOLVED,
      detach: () => {
        throw new TypeError("A shared connection cannot be detached; detach the one that owns it");
      },
    };
  }

  /** Another handle on the connection behind `owner` (see `Pool.share`). */
  share(owner: PooledConnection<C>): PooledConnection<C> {
    return new PooledConnection(this.#internals, handleSlot(owner));
  }

  /**
   * A checked-out connection that a `pool.query` statement may join, counted as joined: only
   * when no connection is idle, none may be opened, and nobody waits for a checkout (those
   * come first; sharing stops so that connections come back).
   */
  join(): Slot<C> | undefined {
    const records = this.#records;
    const target = this.#target;
    if (records.size === 0 || target.waiting.queue.length > 0 || !target.saturated()) {
      return undefined;
    }
    const generation = target.generation();
    let best: Slot<C> | undefined;
    for (const record of records) {
      if (record.state !== "out" || record.soft || record.generation < generation) {
        records.delete(record); // going to be closed when returned
      } else if (best === undefined || record.shared < best.shared) best = record;
    }
    if (best === undefined || best.shared >= target.settings.queryPipeline) return undefined;
    best.shared++;
    return best;
  }

  /**
   * The record to run a `pool.query` statement on, from its checkout (`connect(options, true)`):
   * a connection of its own, which other statements may join from now on, or one it joined
   * while waiting.
   */
  start(connection: PooledConnection<C>): Slot<C> {
    const record = handleSlot(connection);
    if (record.sharer === connection) return record; // joined while waiting: counted then
    record.shared = 1;
    record.sharer = connection;
    this.#records.add(record);
    if (this.#target.waiting.queue.length > 0) this.#joinWaiters(record);
    return record;
  }

  /** Runs a statement on a shared connection; the last one to end returns the connection. */
  async run<Row>(
    record: Slot<C>,
    sql: string,
    params: readonly unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<QueryResult<Row>> {
    try {
      return await (record.sharer as PooledConnection<C>).query<Row>(sql, params, options);
    } finally {
      if (--record.shared === 0) {
        this.#records.delete(record);
        const sharer = record.sharer!;
        record.sharer = null;
        sharer.release();
      } else if (this.#target.settings.adapter.transactionStatus(record.connection) !== "idle") {
        this.#records.delete(record); // not expected (see _pipeline.ts), but never join one
      } else if (this.#target.waiting.queue.length > 0) this.#joinWaiters(record);
    }
  }

  /** Statements waiting at the head of the queue join `record` while it has room. */
  #joinWaiters(record: Slot<C>): void {
    const { settings, waiting } = this.#target;
    const limit = settings.queryPipeline;
    while (record.shared < limit && this.#records.has(record)) {
      const waiter = waiting.queue.head;
      if (waiter === null || !waiter.shareable) return;
      waiting.queue.shift();
      record.shared++;
      waiting.served(waiter);
      waiter.resolve(record.sharer as PooledConnection<C>);
    }
  }
}
