// The pool classes `createPool` makes by name (its `poolClass` option), for every build but
// Workers', which takes _by_name_workers.ts in its place (build/runtimes.ts): a Worker bundles
// only the NullPool it makes there.

import type { Connection } from "../connection.ts";
import { AssertionPool } from "./assertion_pool.ts";
import { NullPool } from "./null_pool.ts";
import type { Creator, PoolOptions } from "./options.ts";
import type { Pool } from "./pool.ts";
import { QueuePool } from "./queue_pool.ts";
import { RequestPool } from "./_request_pool.ts";
import { StaticPool } from "./static_pool.ts";

/**
 * A pool of class `poolClass` (`max`: a NullPool's). On Workers a NullPool is a
 * `RequestPool`: a socket there belongs to the request that opened it.
 */
export function poolByName(
  poolClass: string,
  creator: Creator<Connection>,
  options: PoolOptions<Connection>,
  max: number | undefined,
  workers: boolean,
): Pool<Connection> {
  switch (poolClass) {
    case "QueuePool":
      return new QueuePool(creator, options);
    case "NullPool":
      return workers
        ? new RequestPool(creator, { ...options, max })
        : new NullPool(creator, { ...options, max });
    case "StaticPool":
      return new StaticPool(creator, options);
    case "AssertionPool":
      return new AssertionPool(creator, options);
  }
  throw new TypeError(
    `poolClass must be QueuePool, NullPool, StaticPool or AssertionPool, not ${poolClass}`,
  );
}
