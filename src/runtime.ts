/**
 * The runtimes edgepool tells apart, and what `createPool` reports about its choices. Only
 * types: detecting the runtime reads runtime-specific globals, which happens outside `src/`
 * (`transports/auto.ts`).
 *
 * @module
 */

import type { Pooler } from "./config.ts";

/** The runtimes `detectRuntime()` tells apart. */
export type RuntimeName =
  | "workers"
  | "deno-deploy"
  | "vercel-edge"
  | "netlify-edge"
  | "supabase-edge"
  | "bun"
  | "node"
  | "deno"
  | "browser"
  | "unknown";

/** The TCP transports, by the runtime API they use. */
export type TcpRuntime = "workers" | "deno" | "node";

/** What `detectRuntime()` found: the runtime, and what follows from it for a pool. */
export interface RuntimeInfo {
  /** The runtime. */
  name: RuntimeName;
  /**
   * An edge runtime: connections should not outlive a request, and an external pooler
   * (PgBouncer, Supavisor, Neon's, Hyperdrive) does the pooling, so `createPool` makes a
   * NullPool.
   */
  edge: boolean;
  /** The TCP transport it has, or `null` when it has no sockets (WebSocket or HTTP then). */
  tcp: TcpRuntime | null;
  /** The sign it was recognised by, for `pool.describe()` and logs. */
  sign: string;
}

/** How `createPool` chose a pool: what `pool.describe()` adds to the pool's own facts. */
export interface PoolOrigin {
  /** The runtime detected. */
  runtime: RuntimeName;
  /** Whether it counts as an edge runtime. */
  edge: boolean;
  /** The transport's name (`"node-tcp"`, `"websocket"`, `"pglite"`, `"http"`, ...). */
  transport: string;
  /** The pooler in front of the server, given or guessed. */
  pooler: Pooler;
  /** Why each choice was made, in words. */
  reasons: string[];
}

/** What `pool.describe()` returns. */
export interface PoolDescription extends Partial<PoolOrigin> {
  /** The pool class: `"QueuePool"`, `"NullPool"`, `"StaticPool"`, ... */
  poolClass: string;
  /** The pool's name (`name` option). */
  name: string;
  /** At most this many connections at once (`Infinity`: no limit). */
  maxConnections: number;
}
