// A pool's long-lived slot for one connection (SQLAlchemy's _ConnectionRecord): the connection,
// its age, generation and lifetime, and the `info` that lives as long as it does. Handed out
// through a PooledConnection, one per checkout.

/** Where a record stands. Only the pool's `move` changes it. */
export type RecordState = "idle" | "busy" | "closed" | "detached";

export class PoolRecord<C> {
  readonly connection: C;
  readonly createdAt: number;
  /** The pool generation this connection was made in; older ones are recycled. */
  readonly generation: number;
  /** When this connection must retire (lifetime with jitter, or recycle). */
  readonly expiresAt: number;
  state: RecordState = "busy";
  readonly info: Record<string, unknown> = {};
  /** When it was last returned (idle since). */
  lastUsedAt: number;
  /** When the current checkout started. */
  checkedOutAt = 0;
  /** Checkouts so far; the current one's number while busy. */
  checkouts = 0;
  /** A checkout is open (a handle is out). */
  out = false;
  /** Where the current checkout happened, when the pool records stacks. */
  stack: string | undefined = undefined;
  /** Never idle yet: handed straight from connecting to its first caller, it needs no ping. */
  fresh = true;
  /**
   * Handed over with its login still under way (to a checkout whose first act is a query):
   * settles with the login, and is `null` again once it succeeded.
   */
  login: Promise<void> | null = null;
  /** Soft-invalidated: close instead of reuse when returned. */
  soft = false;
  /** Another connection was lost since this one last proved itself: ping before reuse. */
  suspect = false;
  /** When the current checkout was first seen inside a transaction, or `null`. */
  transactionSeenAt: number | null = null;
  /** An `idleInTransaction` report was given for the current transaction. */
  transactionReported = false;
  /** A `leak` warning was given for the current checkout. */
  leakReported = false;
  /**
   * The current checkout's handle, held until the next upkeep tick; then, if still out, it is
   * watched by garbage collection instead (see `_leaks.ts`).
   */
  handle: object | null = null;
  /** The current checkout's handle is registered for garbage-collection detection. */
  watched = false;
  /** `pool.query` statements running on it, while it is shared (see `Pool.query`). */
  shared = 0;
  /** The checkout those statements run through, returned when the last one ends. */
  sharer: { release(): Promise<void> } | null = null;
  /** Stops listening for the connection closing by itself. */
  unsubscribe: () => void = () => {};

  constructor(connection: C, createdAt: number, generation: number, expiresAt: number) {
    this.connection = connection;
    this.createdAt = createdAt;
    this.lastUsedAt = createdAt;
    this.generation = generation;
    this.expiresAt = expiresAt;
  }
}
