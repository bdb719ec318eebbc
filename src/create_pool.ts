/**
 * `createPool(url?, options)`: the pool that fits the URL and the runtime. The runtime-specific
 * pieces (how to connect, whether this is an edge runtime, the embedded database) are passed
 * in from outside `src/`.
 *
 * @module
 */

import type { ConnectFunction } from "./connect.ts";
import { type ConnectOptions, parseConfig } from "./config.ts";
import type { Connection } from "./connection.ts";
import { AssertionPool } from "./pool/assertion_pool.ts";
import { NullPool } from "./pool/null_pool.ts";
import type { Pool } from "./pool/pool.ts";
import { QueuePool, type QueuePoolOptions } from "./pool/queue_pool.ts";
import { StaticPool } from "./pool/static_pool.ts";
import type { Transport } from "./transport.ts";
import { type HttpTransport, isHttpTransport } from "./http_client.ts";
import { HttpPool } from "./pool/http_pool.ts";

/** The pool classes `createPool` can make. */
export type PoolClassName = "QueuePool" | "NullPool" | "StaticPool" | "AssertionPool";

/**
 * Options of {@link CreatePool}: how to connect (those of `connect()`), how to pool (those of
 * `QueuePool`, and `max` for a NullPool), and which pool class to use.
 */
export interface CreatePoolOptions
  extends Omit<ConnectOptions, "signal" | "transport">, QueuePoolOptions<Connection> {
  /**
   * How to reach the server: a socket transport (TCP, WebSocket, PGlite), or the HTTP transport
   * (`httpTransport()`), which gives an `HttpPool`. Default: the TCP transport of the runtime.
   * Over HTTP only `bigint`, `name` and `logger` apply; the URL is sent as given, so `host`,
   * `port`, `user`, `password`, `database`, `options` and `applicationName` must be in it.
   */
  transport?: Transport | HttpTransport;
  /**
   * The pool class. Default: `StaticPool` for the embedded database, `NullPool` on an edge
   * runtime (an external pooler does the pooling), `QueuePool` elsewhere.
   */
  poolClass?: PoolClassName;
  /** NullPool only: at most this many connections at once. Default: no limit. */
  max?: number;
}

/**
 * Makes a pool: `createPool(url?, options?)`. With the HTTP transport, an `HttpPool`; otherwise
 * a `Pool` of connections.
 */
export interface CreatePool {
  /** Over HTTP: an `HttpPool`. */
  (url: string | URL, options: CreatePoolOptions & { transport: HttpTransport }): HttpPool;
  /** Over a socket transport: a pool of connections. */
  (url?: string | URL, options?: CreatePoolOptions & { transport?: Transport }): Pool<Connection>;
  /** The transport known only at run time. */
  (url?: string | URL, options?: CreatePoolOptions): Pool<Connection> | HttpPool;
}

/** An in-process database the pool reaches through a transport, closed with the pool. */
export interface EmbeddedDatabase {
  /** The transport that reaches it. */
  transport: Transport;
  /** Shuts it down. */
  close(): Promise<void>;
}

/** What `createPool` needs from the runtime it runs on. */
export interface PoolEnvironment {
  /** Opens a connection (the runtime's TCP transport by default). */
  connect: ConnectFunction;
  /** Whether this runtime is an edge runtime, where connections cannot outlive a request. */
  isEdge(): boolean;
  /** Opens the embedded database at `location` (`"memory"` or a directory). */
  embedded(location: string): EmbeddedDatabase;
}

// The options that belong to connect(); everything else configures the pool.
const CONNECT_KEYS = new Set<string>([
  "host",
  "port",
  "user",
  "password",
  "database",
  "sslmode",
  "ca",
  "sslrootcert",
  "applicationName",
  "connectTimeout",
  "options",
  "bigint",
  "keepAlive",
  "maxMessageSize",
  "transport",
  "pipelineConnect",
  "onNotice",
]);

const EMBEDDED_URL = "postgres://postgres@localhost/postgres";

/**
 * Makes `createPool` for an environment: no URL (or `pglite://memory`, `pglite:///dir`) gives
 * the embedded database in a StaticPool; a `postgres://` URL gives a QueuePool, or a NullPool
 * on an edge runtime; `poolClass` overrides the choice.
 */
export function makeCreatePool(env: PoolEnvironment): CreatePool {
  return ((url?: string | URL, options?: CreatePoolOptions): Pool<Connection> | HttpPool => {
    const given = options ?? {};
    if (typeof given !== "object" || given === null) {
      throw new TypeError("createPool options must be an object");
    }
    if (isHttpTransport(given.transport)) return httpPool(url, given, given.transport);
    const connectOptions: Record<string, unknown> = {};
    const poolOptions: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(given)) {
      if (key === "poolClass" || key === "max") continue;
      (CONNECT_KEYS.has(key) ? connectOptions : poolOptions)[key] = value;
    }
    const text = url === undefined ? undefined : String(url);
    const embedded = text === undefined || /^pglite:/i.test(text);
    let target = text;
    let database: EmbeddedDatabase | undefined;
    if (embedded) {
      database = env.embedded(embeddedLocation(text));
      target = EMBEDDED_URL;
      connectOptions.transport = database.transport;
      const onClose = poolOptions.onClose as (() => void | Promise<void>) | undefined;
      poolOptions.onClose = async () => {
        try {
          await onClose?.();
        } finally {
          await database!.close();
        }
      };
    }
    // Bad URLs and options fail here, not at the first checkout.
    parseConfig(target, connectOptions as ConnectOptions);
    const poolClass = given.poolClass ??
      (embedded ? "StaticPool" : env.isEdge() ? "NullPool" : "QueuePool");
    const creator = (signal: AbortSignal) =>
      env.connect(target, { ...connectOptions, signal } as ConnectOptions);
    switch (poolClass) {
      case "QueuePool":
        return new QueuePool(creator, poolOptions);
      case "NullPool":
        return new NullPool(creator, { ...poolOptions, max: given.max });
      case "StaticPool":
        return new StaticPool(creator, poolOptions);
      case "AssertionPool":
        return new AssertionPool(creator, poolOptions);
      default:
        throw new TypeError(
          `poolClass must be QueuePool, NullPool, StaticPool or AssertionPool, not ${
            String(poolClass)
          }`,
        );
    }
  }) as CreatePool;
}

// Connect options that would change where or as whom the server is reached: over HTTP the URL
// goes as given in the Neon-Connection-String header, so these belong in it.
const URL_KEYS = ["host", "port", "user", "password", "database", "options", "applicationName"];

function httpPool(
  url: string | URL | undefined,
  given: CreatePoolOptions,
  transport: HttpTransport,
): HttpPool {
  if (url === undefined || /^pglite:/i.test(String(url))) {
    throw new TypeError("The HTTP transport needs a postgres:// URL");
  }
  if (given.poolClass !== undefined) {
    throw new TypeError(
      `poolClass ${given.poolClass} does not apply over HTTP: the HTTP transport makes an HttpPool`,
    );
  }
  const misplaced = URL_KEYS.filter((key) => given[key as keyof CreatePoolOptions] !== undefined);
  if (misplaced.length > 0) {
    throw new TypeError(
      `Over HTTP the connection URL is sent as given: put ${misplaced.join(", ")} in the URL ` +
        "instead of the options",
    );
  }
  return new HttpPool(url, {
    endpoint: transport.endpoint,
    fetch: transport.fetch,
    bigint: given.bigint,
    name: given.name,
    logger: given.logger,
  });
}

/** `pglite://memory` → "memory"; `pglite:///var/db` → "/var/db"; no URL → "memory". */
function embeddedLocation(url: string | undefined): string {
  if (url === undefined) return "memory";
  const rest = url.replace(/^pglite:(\/\/)?/i, "");
  if (rest === "" || rest === "memory" || rest === "memory/") return "memory";
  return decodeURIComponent(rest);
}
