// The books of a pool's open records: the idle list and the set of all, a record made for each
// new connection (with its lifetime), and every way one leaves: invalidated, lost while idle,
// detached, or closed, gracefully or cut, each close tracked until done so that closing the
// pool can wait for the connections still out and then for every close. Which record goes
// where, and when, the engine decides.

import { errorMessage } from "../errors.ts";
import type { Emitter } from "../_emitter.ts";
import { PoolRecord } from "./_record.ts";
import type { PoolCloseReason, PoolEvents } from "./events.ts";
import type { Policy, ResolvedOptions } from "./options.ts";
import type { PoolCounters } from "./stats.ts";

// Closes of healthy connections say goodbye (Terminate); the rest are cut at once.
const GRACEFUL = new Set<PoolCloseReason>([
  "overflow",
  "returned",
  "idle",
  "lifetime",
  "stale",
  "disposed",
  "pool closed",
  "unwanted",
]);

/** What the records need of the pool's settings. */
export type RecordSettings<C> = Pick<ResolvedOptions<C>, "adapter" | "clock" | "logger" | "name">;

/** A pool's open records. */
export class Records<C> {
  /** The idle records, oldest-returned first. */
  readonly idle: PoolRecord<C>[] = [];
  /** Every open record, idle or checked out: a move between the two touches only its state. */
  readonly live: Set<PoolRecord<C>> = new Set();
  readonly #settings: RecordSettings<C>;
  readonly #events: Emitter<PoolEvents<C>>;
  readonly #counters: PoolCounters;
  readonly #lostIdle: () => void;
  readonly #closing = new Set<Promise<void>>();
  #everConnected = false;
  /** Set while closing the pool waits for the connections still out. */
  #drained: (() => void) | null = null;

  /** `lostIdle` hears that an idle connection closed by itself (and was taken off the books). */
  constructor(
    settings: RecordSettings<C>,
    events: Emitter<PoolEvents<C>>,
    counters: PoolCounters,
    lostIdle: () => void,
  ) {
    this.#settings = settings;
    this.#events = events;
    this.#counters = counters;
    this.#lostIdle = lostIdle;
  }

  /** Open records that are checked out. */
  get busy(): number {
    return this.live.size - this.idle.length;
  }

  /** The record of a new connection, made in `generation` (it starts out busy). */
  add(connection: C, createdAt: number, generation: number, policy: Policy): PoolRecord<C> {
    const record = new PoolRecord(
      connection,
      createdAt,
      generation,
      createdAt + this.#lifetime(policy),
    );
    this.live.add(record);
    record.unsubscribe = this.#settings.adapter.onClose(connection, (error) => {
      this.#closedByItself(record, error);
    });
    const event = { connection, info: record.info };
    if (!this.#everConnected) {
      this.#everConnected = true;
      this.#events.emit("firstConnect", event);
    }
    this.#events.emit("connect", event);
    return record;
  }

  /** The lifetime of a new connection: `maxLifetime` less up to 5 % jitter, or `recycle`. */
  #lifetime(policy: Policy): number {
    const { maxLifetime, recycle } = policy;
    const jittered = maxLifetime === Infinity
      ? Infinity
      : maxLifetime * (1 - 0.05 * this.#settings.clock.random());
    return Math.min(jittered, recycle);
  }

  /** The connection closed by itself (server restart, idle timeout, network). */
  #closedByItself(record: PoolRecord<C>, error: Error | undefined): void {
    if (record.state !== "idle") return; // in use: its user sees the error; closed at checkin
    this.#counters.connectionsLost++;
    this.#events.emit("error", {
      error: error ?? new Error("the connection closed while idle"),
      context: "idle",
      connection: record.connection,
    });
    this.closeIdle(record, "lost");
    this.#lostIdle();
  }

  /**
   * Invalidates a record: with `soft` it is marked to be closed when returned, otherwise it is
   * closed now. Returns whether it was closed (a place in the pool is free).
   */
  invalidate(record: PoolRecord<C>, error: unknown, soft: boolean): boolean {
    if (record.state === "closed" || record.state === "detached") return false;
    const event = { connection: record.connection, info: record.info, error };
    if (soft) {
      record.soft = true;
      this.#events.emit("softInvalidate", event);
      return false;
    }
    this.#events.emit("invalidate", event);
    const settings = this.#settings;
    settings.logger.info?.(`${settings.name}: invalidated a connection`, {
      reason: error === undefined ? undefined : errorMessage(error),
    });
    this.close(record, "invalidated");
    return true;
  }

  /** Closes a record's connection; the record must not be in the idle list. */
  close(record: PoolRecord<C>, reason: PoolCloseReason, force?: boolean): void {
    if (record.state === "closed" || record.state === "detached") return;
    this.live.delete(record);
    record.state = "closed";
    record.unsubscribe();
    this.#events.emit("close", { connection: record.connection, info: record.info, reason });
    force ??= !GRACEFUL.has(reason);
    const closing = this.#settings.adapter.close(record.connection, force).catch(() => {});
    this.#closing.add(closing);
    closing.finally(() => this.#closing.delete(closing));
    this.#left();
  }

  /** Takes a record out of the idle list and closes it. */
  closeIdle(record: PoolRecord<C>, reason: PoolCloseReason): void {
    const at = this.idle.indexOf(record);
    if (at >= 0) this.idle.splice(at, 1);
    record.state = "busy";
    this.close(record, reason);
  }

  /** Closes the idle records made before `generation`. */
  closeOlder(generation: number, reason: PoolCloseReason): void {
    for (const record of this.idle.filter((r) => r.generation < generation)) {
      this.closeIdle(record, reason);
    }
  }

  /** Forgets a checked-out record: its connection leaves the pool with its handle. */
  detach(record: PoolRecord<C>): void {
    record.unsubscribe();
    this.live.delete(record);
    record.state = "detached";
    this.#left();
    this.#events.emit("detach", { connection: record.connection, info: record.info });
  }

  /** Closes a detached record's connection (its handle was released). */
  closeDetached(record: PoolRecord<C>): Promise<void> {
    record.state = "closed";
    this.#events.emit("closeDetached", { connection: record.connection, info: record.info });
    return this.#settings.adapter.close(record.connection, false).catch(() => {});
  }

  /** A checked-out record left the books: the last one ends the wait of `drain`. */
  #left(): void {
    if (this.#drained !== null && this.busy === 0) this.#drained();
  }

  /**
   * Closing the pool (idle records already closed): waits up to `timeout` ms for the records
   * still out, cuts the connections of those that are not back by then, and resolves when
   * every attempt in flight (`connector`: its connections close as they arrive) and every
   * close has finished.
   */
  async drain(timeout: number, connector: { settled(): Promise<void> }): Promise<void> {
    if (this.busy > 0) {
      const clock = this.#settings.clock;
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = clock.setTimeout(resolve, timeout);
      });
      clock.clearTimeout(timer);
      this.#drained = null;
      // Still out after the grace period: closed under their users' feet.
      for (const record of [...this.live]) {
        if (record.state === "busy") this.close(record, "pool closed", true);
      }
    }
    // Connections still being made close as they arrive (the engine's `#put`).
    await connector.settled();
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
  }
}
