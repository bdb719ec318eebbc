/**
 * `StaticPool`: exactly one connection for everything, as SQLAlchemy uses for in-memory
 * SQLite — here the embedded PGlite database.
 *
 * @module
 */

import { Engine } from "./_engine.ts";
import type { Creator, PoolOptions } from "./options.ts";
import { Pool } from "./pool.ts";

/**
 * Keeps exactly one connection and never retires it (an in-memory database would lose its
 * data). Unlike SQLAlchemy's, checkouts take turns: asynchronous callers would otherwise
 * interleave their transactions on the one connection.
 *
 * @example
 * ```ts ignore
 * import { connect, StaticPool } from "@edgepool/edgepool";
 * import { pgliteTransport } from "@edgepool/edgepool/transports/pglite";
 * const transport = pgliteTransport();
 * const pool = new StaticPool(() => connect("postgres://postgres@localhost/postgres", { transport }));
 * ```
 */
export class StaticPool<C> extends Pool<C> {
  /** Makes a pool of one connection. */
  constructor(creator: Creator<C>, options?: PoolOptions<C>) {
    super(creator, options, {
      kind: "StaticPool",
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
  }

  /** A new, empty `StaticPool` with the same creator and options. */
  recreate(): StaticPool<C> {
    return new StaticPool(this.creator, this.givenOptions);
  }
}
