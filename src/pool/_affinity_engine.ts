// The engine for pools with affinity (`PoolOptions.affinity`, which `createPool` sets for a
// NullPool on Cloudflare Workers, where an I/O object belongs to the request that made it):
// each caller gets the connection made for it, from its own call, and nothing else. No free
// connection goes to the queue, no background connect serves it, a failed connect is retried
// for its caller from a timer of the caller's own, and timers are armed per request.

import type { Emitter } from "../_emitter.ts";
import { Engine, type EngineHooks } from "./_engine.ts";
import type { Waiter, WaiterQueue } from "./_waiters.ts";
import type { PoolEvents } from "./events.ts";
import { checkAffinity, type Creator, type Policy, type ResolvedOptions } from "./options.ts";
import type { PooledConnection } from "./pooled_connection.ts";
import type { PoolCounters } from "./stats.ts";

/** Each checkout gets the connection made for it alone. */
export class AffinityEngine<C> extends Engine<C> {
  constructor(
    creator: Creator<C>,
    settings: ResolvedOptions<C>,
    policy: Policy,
    counters: PoolCounters,
    events: Emitter<PoolEvents<C>>,
    hooks: EngineHooks,
  ) {
    checkAffinity(settings, policy);
    super(creator, settings, policy, counters, events, hooks);
  }

  protected override get perRequestTimers(): boolean {
    return true;
  }

  protected override get served(): WaiterQueue<PooledConnection<C>> | null {
    return null;
  }

  /** The caller's connection is made here, in its own context. */
  protected override queued(waiter: Waiter<PooledConnection<C>>): void {
    this.connector.start(waiter);
  }

  protected override requeued(waiter: Waiter<PooledConnection<C>>): void {
    this.connector.start(waiter);
  }

  /** The caller's retry is made from its own context too. */
  protected override retryFor(owner: Waiter<PooledConnection<C>>): boolean {
    if (owner.settled) return false;
    this.connector.retryFor(owner);
    return true;
  }
}
