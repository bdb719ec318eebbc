/**
 * `AssertionPool`: at most one checkout at a time, for finding code that holds two.
 *
 * @module
 */

import { Engine } from "./_engine.ts";
import { PoolError } from "../errors.ts";
import type { Creator, PoolOptions } from "./options.ts";
import { type CheckoutOptions, Pool } from "./pool.ts";
import type { PooledConnection } from "./pooled_connection.ts";

/**
 * One connection, and a second checkout while the first is out fails at once with
 * `ALREADY_CHECKED_OUT`, naming where the first was checked out (SQLAlchemy's
 * `AssertionPool(store_traceback=True)`).
 *
 * @example
 * ```ts ignore
 * import { AssertionPool, connect } from "@edgepool/edgepool";
 * const pool = new AssertionPool(() => connect(url));
 * const a = await pool.connect();
 * await pool.connect(); // rejects: already checked out at ...
 * ```
 */
export class AssertionPool<C> extends Pool<C> {
  #holder: string | undefined = undefined;
  #out = false;

  /** Makes a pool that allows one checkout at a time. */
  constructor(creator: Creator<C>, options?: PoolOptions<C>) {
    // Statements pipelined onto the one connection would hide a second checkout.
    super(creator, { ...options, queryPipeline: 1 }, {
      kind: "AssertionPool",
      poolSize: 1,
      max: 1,
      keepIdle: 1,
      min: 0,
      maxIdle: Infinity,
      maxLifetime: Infinity,
      recycle: Infinity,
      lifo: false,
      reconnectTimeout: 300_000,
    }, Engine);
    // Every way a checkout ends (release, close, a collected handle, detach) passes here.
    const free = () => {
      this.#out = false;
      this.#holder = undefined;
    };
    this.on("checkin", free);
    this.on("detach", free);
  }

  /**
   * Checks out the connection (a logged-in one, even for a statement), or fails if it is
   * already out.
   *
   * @internal
   */
  protected override async checkOut(
    options: CheckoutOptions | undefined,
  ): Promise<PooledConnection<C>> {
    if (this.#out) {
      throw new PoolError(
        "ALREADY_CHECKED_OUT",
        "AssertionPool: the connection is already checked out" +
          (this.#holder ? `, at:\n${this.#holder}` : ""),
      );
    }
    this.#out = true;
    // Below its own frames: this one, and `connect` or the statement that checked out.
    this.#holder = new Error("checked out here").stack?.split("\n").slice(3).join("\n");
    try {
      return await super.checkOut(options);
    } catch (error) {
      this.#out = false;
      this.#holder = undefined;
      throw error;
    }
  }

  /** A new, empty `AssertionPool` with the same creator and options. */
  recreate(): AssertionPool<C> {
    return new AssertionPool(this.creator, this.givenOptions);
  }
}
