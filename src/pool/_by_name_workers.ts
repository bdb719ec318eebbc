// _by_name.ts as edgepool's Workers build has it (build/runtimes.ts puts it in its place): on
// Workers `createPool` makes the NullPool whose connections belong to their requests
// (RequestPool), and only that, so that a Worker bundles no other pool class. A Worker that
// wants another makes it itself, and bundles what it imports.

import type { Connection } from "../connection.ts";
import type { Creator, PoolOptions } from "./options.ts";
import type { Pool } from "./pool.ts";
import { RequestPool } from "./_request_pool.ts";

/** A NullPool for Workers; any other `poolClass` is a TypeError that says what to do. */
export function poolByName(
  poolClass: string,
  creator: Creator<Connection>,
  options: PoolOptions<Connection>,
  max: number | undefined,
): Pool<Connection> {
  if (poolClass === "NullPool") return new RequestPool(creator, { ...options, max });
  throw new TypeError(
    `poolClass ${poolClass}: createPool on Workers makes a NullPool only (a socket there ` +
      "cannot outlive its request); make other pools yourself, e.g. new QueuePool(() => " +
      "connect(url), options) inside the request",
  );
}
