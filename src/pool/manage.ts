/**
 * `manage()`: one pool per distinct set of connect arguments, as SQLAlchemy's `pool.manage`
 * did. The gateway keeps a pool per connection string this way.
 *
 * @module
 */

import type { Pool } from "./pool.ts";
import type { CheckoutOptions } from "./pool.ts";
import type { PooledConnection } from "./pooled_connection.ts";
import { QueuePool, type QueuePoolOptions } from "./queue_pool.ts";

/** Makes the pool for one set of arguments. */
export type PoolFactory<A, C> = (
  creator: (signal: AbortSignal) => Promise<C>,
  args: A,
) => Pool<C>;

/** Options of {@link manage}: a pool factory, or QueuePool options for the default one. */
export interface ManageOptions<A, C> extends QueuePoolOptions<C> {
  /** Makes each pool. Default: a QueuePool with the other options. */
  poolFactory?: PoolFactory<A, C>;
}

/** The registry `manage()` returns. */
export interface ManagedPools<A, C> extends AsyncDisposable {
  /** Checks out a connection from the pool for `args`, making that pool on first use. */
  connect(args: A, options?: CheckoutOptions): Promise<PooledConnection<C>>;
  /** The pool for `args`, made on first use. */
  pool(args: A): Pool<C>;
  /** How many pools there are. */
  readonly size: number;
  /** Closes and forgets the pool for `args`, if there is one (a later use makes a new one). */
  delete(args: A): Promise<void>;
  /** Closes and forgets every pool. */
  close(): Promise<void>;
}

/**
 * Keeps one pool per distinct `args` (compared by value: same keys and values in any order).
 *
 * @example
 * ```ts ignore
 * import { connect, manage } from "@edgepool/edgepool";
 * const pools = manage((url: string) => connect(url), { poolSize: 2 });
 * const conn = await pools.connect("postgres://app@db1/app");
 * await conn.release();
 * await pools.close();
 * ```
 */
export function manage<A, C>(
  connect: (args: A, signal: AbortSignal) => Promise<C>,
  options?: ManageOptions<A, C>,
): ManagedPools<A, C> {
  if (typeof connect !== "function") throw new TypeError("manage() needs a connect function");
  const { poolFactory, ...poolOptions } = options ?? {};
  const factory: PoolFactory<A, C> = poolFactory ??
    ((creator) => new QueuePool(creator, poolOptions));
  const pools = new Map<string, Pool<C>>();
  const ids = new WeakMap<object, number>();
  const key = (args: A) => stableKey(args, ids);
  const pool = (args: A): Pool<C> => {
    const k = key(args);
    let found = pools.get(k);
    if (found === undefined || found.closed) {
      found = factory((signal) => connect(args, signal), args);
      pools.set(k, found);
    }
    return found;
  };
  const close = async () => {
    const all = [...pools.values()];
    pools.clear();
    await Promise.all(all.map((p) => p.close()));
  };
  const remove = async (args: A) => {
    const k = key(args);
    const found = pools.get(k);
    pools.delete(k);
    await found?.close();
  };
  return {
    connect: (args, checkout) => pool(args).connect(checkout),
    pool,
    delete: remove,
    get size() {
      return pools.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

let nextId = 0;

/**
 * A string equal for equal arguments: plain objects by their sorted keys and values, dates and
 * URLs by value, functions and other objects (maps, class instances) by identity.
 */
function stableKey(value: unknown, ids: WeakMap<object, number>): string {
  if (typeof value === "function") {
    let id = ids.get(value);
    if (id === undefined) ids.set(value, id = ++nextId);
    return `fn#${id}`;
  }
  if (value === null || typeof value !== "object") {
    if (typeof value === "symbol") throw new TypeError("manage(): arguments cannot be symbols");
    return typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? "undefined";
  }
  if (Array.isArray(value)) return `[${value.map((v) => stableKey(v, ids)).join(",")}]`;
  if (value instanceof URL) return JSON.stringify(value.href);
  if (value instanceof Date) return `date:${value.getTime()}`;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    // A Map, a class instance...: equal only to itself.
    let id = ids.get(value);
    if (id === undefined) ids.set(value, id = ++nextId);
    return `obj#${id}`;
  }
  const keys = Object.keys(value).sort();
  return `{${
    keys.map((k) => `${JSON.stringify(k)}:${stableKey((value as Record<string, unknown>)[k], ids)}`)
      .join(",")
  }}`;
}
