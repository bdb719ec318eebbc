// Background upkeep: small named jobs (retire by lifetime, shrink idle, report leaks, refill)
// run from one timer that only runs while there is something to look after.

import type { LeakWatch } from "./_leaks.ts";
import type { Records } from "./_records.ts";
import type { Policy, ResolvedOptions } from "./options.ts";

/** What the jobs need from the pool. */
export interface UpkeepTarget<C> {
  /**
   * The pool's records: `idle` (oldest-returned first), `live` (every open one, idle and
   * checked out: `state` tells which), and `closeIdle` to close an idle one.
   */
  readonly records: Pick<Records<C>, "idle" | "live" | "closeIdle">;
  /** Where held connections and long transactions are reported. */
  readonly leaks: Pick<LeakWatch<C>, "threshold" | "longTransaction">;
  /** The pool's current policy. */
  policy(): Policy;
  readonly settings: ResolvedOptions<C>;
  /** Whether the pool is closed (then nothing runs). */
  closed(): boolean;
  /** Whether the timer must keep running. */
  needed(): boolean;
  /** A tick begins, at `now`: the first job. */
  tick(now: number): void;
  /** Connects up to `min` and for waiters. */
  fill(): void;
}

/** The pool's one upkeep timer. */
export class Upkeep<C> {
  readonly #target: UpkeepTarget<C>;
  #timer: unknown = null;
  #due = 0;

  readonly #affinity: boolean;

  constructor(target: UpkeepTarget<C>) {
    this.#target = target;
    this.#affinity = target.settings.affinity;
  }

  /** Makes sure a tick is coming, if one is needed. */
  schedule(): void {
    // On every checkin and wait: the common case first, a tick already coming.
    if (this.#timer !== null && !this.#affinity) return;
    const target = this.#target;
    const { clock, maintenanceInterval } = target.settings;
    if (this.#timer !== null) {
      // A tick a whole interval overdue was lost: on Workers (where pools have affinity) a timer
      // dies with the request that set it. Arm another (from this request).
      if (clock.now() <= this.#due + maintenanceInterval) return;
      clock.clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (target.closed() || !target.needed()) return;
    this.#due = clock.now() + maintenanceInterval;
    this.#timer = clock.setTimeout(() => {
      this.#timer = null;
      if (target.closed()) return;
      const now = clock.now();
      target.tick(now);
      retire(target, now);
      shrink(target, now);
      reportLeaks(target, now);
      reportLongTransactions(target, now);
      target.fill(); // schedules the next tick
    }, maintenanceInterval);
  }

  /** Cancels the coming tick. */
  stop(): void {
    if (this.#timer === null) return;
    this.#target.settings.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}

/** Closes idle connections past their lifetime (the refill replaces them up to `min`). */
function retire<C>(target: UpkeepTarget<C>, now: number): void {
  const records = target.records;
  for (const record of records.idle.filter((r) => now >= r.expiresAt)) {
    records.closeIdle(record, "lifetime");
  }
}

/** Closes idle connections above `min` that sat unused longer than `maxIdle`. */
function shrink<C>(target: UpkeepTarget<C>, now: number): void {
  const maxIdle = target.policy().maxIdle;
  if (maxIdle === Infinity) return;
  const records = target.records;
  for (const record of [...records.idle]) {
    if (records.live.size <= target.policy().min) return;
    if (now - record.lastUsedAt >= maxIdle) records.closeIdle(record, "idle");
  }
}

/** Warns once per checkout about connections held longer than `leakDetectionThreshold`. */
function reportLeaks<C>(target: UpkeepTarget<C>, now: number): void {
  const threshold = target.settings.leakDetectionThreshold;
  if (threshold === 0) return;
  for (const record of target.records.live) {
    if (record.state !== "busy" || record.leakReported || !record.out) continue;
    const heldMs = now - record.checkedOutAt;
    if (heldMs < threshold) continue;
    record.leakReported = true;
    target.leaks.threshold(record, heldMs);
  }
}

/**
 * Reports checked-out connections inside one transaction for longer than
 * `idleInTransactionThreshold`, once per transaction. The time counts from the first tick that
 * saw the transaction, so it is known to within one `maintenanceInterval`.
 */
function reportLongTransactions<C>(target: UpkeepTarget<C>, now: number): void {
  const threshold = target.settings.idleInTransactionThreshold;
  if (threshold === 0) return;
  const adapter = target.settings.adapter;
  for (const record of target.records.live) {
    if (record.state !== "busy" || !record.out) continue;
    const status = adapter.transactionStatus(record.connection);
    if (status !== "transaction" && status !== "failed") {
      record.transactionSeenAt = null;
      record.transactionReported = false;
      continue;
    }
    // Counted from the first tick that sees it: it began at most one interval earlier.
    record.transactionSeenAt ??= now;
    const heldMs = now - record.transactionSeenAt;
    if (record.transactionReported || heldMs < threshold) continue;
    record.transactionReported = true;
    target.leaks.longTransaction(record, status, heldMs);
  }
}
