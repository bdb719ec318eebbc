/**
 * `NullPool`: a new connection per checkout, closed when returned — for use in front of an
 * external pooler (PgBouncer, Supavisor, Neon's, Hyperdrive) and on edge runtimes.
 *
 * @module
 */

import { Engine } from "./_engine.ts";
import { type Creator, nullPolicy, type PoolOptions } from "./options.ts";
import { Pool } from "./pool.ts";

/** Options of {@link NullPool}. */
export interface NullPoolOptions<C> extends PoolOptions<C> {
  /**
   * At most this many connections at once; more checkouts wait (up to `timeout`) as in any
   * pool (psycopg's NullConnectionPool `max_size`). Default: no limit.
   */
  max?: number;
}

/**
 * Opens a connection for every checkout and closes it on return. Nothing is kept between
 * checkouts, so it is what to use where connections cannot outlive a request, or where a
 * pooler downstream does the pooling.
 *
 * @example
 * ```ts ignore
 * import { connect, NullPool } from "@edgepool/edgepool";
 * const pool = new NullPool(() => connect(env.PGBOUNCER_URL), { max: 5 });
 * await pool.query("select 1");
 * ```
 */
export class NullPool<C> extends Pool<C> {
  /** Makes a pool that opens a connection per checkout. */
  constructor(creator: Creator<C>, options?: NullPoolOptions<C>) {
    const o = options ?? {};
    super(creator, o, nullPolicy(o.max), Engine);
  }

  /** A new, empty `NullPool` with the same creator and options. */
  recreate(): NullPool<C> {
    return new NullPool(this.creator, this.givenOptions as NullPoolOptions<C>);
  }
}
