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
import { poolByName } from "./pool/_by_name.ts";
import type { Pool } from "./pool/pool.ts";
import type { QueuePoolOptions } from "./pool/queue_pool.ts";
import type { Transport } from "./transport.ts";
import {
  type HttpTransport,
  isHttpTransport,
  MAKE_HTTP_POOL,
  type MakeHttpPool,
} from "./http_transport.ts";
import type { HttpPool } from "./pool/http_pool.ts";
import type { PoolOrigin, RuntimeInfo } from "./runtime.ts";

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
  /** The runtime: whether it is an edge runtime, and which TCP transport it has. */
  runtime(): RuntimeInfo;
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
  "cert",
  "key",
  "sslcert",
  "sslkey",
  "sslpassword",
  "applicationName",
  "connectTimeout",
  "options",
  "bigint",
  "types",
  "serializers",
  "keepAlive",
  "keepAliveInitialDelay",
  "maxMessageSize",
  "transport",
  "pipelineConnect",
  "onNotice",
  "pooler",
  "statementCache",
]);

const WORKERS_CONNECTING = 6;

/**
 * `open` with at most `limit` calls in progress; later ones wait their turn, first come first
 * served, and leave the line when their signal aborts. A waiting call opens its connection from
 * its own continuation, so on Workers the socket belongs to the caller's request.
 */
export function limitConcurrency<T>(
  open: (signal: AbortSignal) => Promise<T>,
  limit: number,
): (signal: AbortSignal) => Promise<T> {
  let running = 0;
  const line: { granted: boolean }[] = [];
  return async (signal) => {
    if (running >= limit) {
      // The turn is handed over by another call (another request, on Workers), but taken up
      // by a timer of this call's own: on workerd before compatibility date 2024-10-14 a
      // promise resolved from another request continues in that request (and a request with
      // nothing of its own pending is ended as hung).
      const turn = { granted: false };
      line.push(turn);
      await new Promise<void>((resolve, reject) => {
        let timer: ReturnType<typeof setTimeout>;
        const onAbort = () => {
          clearTimeout(timer);
          const i = line.indexOf(turn);
          if (i !== -1) line.splice(i, 1);
          else if (turn.granted) handOn();
          reject(signal.reason);
        };
        const poll = () => {
          if (!turn.granted) return void (timer = setTimeout(poll, TURN_POLL_MS));
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
        poll();
      });
    } else {
      running++;
    }
    try {
      return await open(signal);
    } finally {
      handOn();
    }
  };

  // Hands the slot straight to the next in line, or frees it.
  function handOn(): void {
    const next = line.shift();
    if (next !== undefined) next.granted = true;
    else running--;
  }
}

/** How often a call waiting its turn in `limitConcurrency` looks whether it came. */
const TURN_POLL_MS = 5;

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
    if (isHttpTransport(given.transport)) {
      const runtime = env.runtime();
      // The transport makes its pool, so that this file names no HTTP code (a Worker over
      // TCP bundles none).
      const make = (given.transport as { [MAKE_HTTP_POOL]?: MakeHttpPool })[MAKE_HTTP_POOL];
      if (typeof make !== "function") {
        throw new TypeError(
          "options.transport is not an HTTP transport from httpTransport(): make it with " +
            'httpTransport() from "edgepool/transports/http"',
        );
      }
      return make(given.transport, url, given, {
        runtime: runtime.name,
        edge: runtime.edge,
        transport: "http",
        pooler: "none",
        reasons: [
          `runtime ${runtime.name}: ${runtime.sign}`,
          "HttpPool: the HTTP transport has no session to pool; each query is one request",
        ],
      });
    }
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
    const config = parseConfig(target, connectOptions as ConnectOptions);
    const runtime = env.runtime();
    const transport = connectOptions.transport as Transport | undefined;
    if (transport === undefined && runtime.tcp === null) {
      throw new TypeError(
        `createPool: ${runtime.name} (${runtime.sign}) has no TCP sockets; pass a transport: ` +
          "websocketTransport({ proxy }) or httpTransport({ endpoint })",
      );
    }
    const poolClass = given.poolClass ??
      (embedded ? "StaticPool" : runtime.edge ? "NullPool" : "QueuePool");
    const origin: PoolOrigin = {
      runtime: runtime.name,
      edge: runtime.edge,
      transport: transport?.name ?? `${runtime.tcp}-tcp`,
      pooler: config.pooler,
      reasons: [
        `runtime ${runtime.name}: ${runtime.sign}`,
        given.poolClass !== undefined
          ? `${poolClass}: the poolClass option`
          : embedded
          ? "StaticPool: the embedded database is one session"
          : runtime.edge
          ? "NullPool: on an edge runtime connections do not outlive a request; an external " +
            "pooler does the pooling"
          : "QueuePool: a long-lived runtime keeps connections",
        ...(runtime.name === "workers"
          ? [`at most ${WORKERS_CONNECTING} connections opening at once (Workers' limit)`]
          : []),
        transport !== undefined
          ? `transport ${transport.name}: ${embedded ? "the embedded database" : "the option"}`
          : `transport ${runtime.tcp}-tcp: the runtime's TCP sockets`,
        `pooler ${config.pooler}: ${config.poolerSign}`,
      ],
    };
    poolOptions.origin = origin;
    // The first statement on a new connection leaves with the login's last message (one round
    // trip less): the pool hands a connection whose login is under way only to a `pool.query`
    // statement, which takes the login's failure as its own (see `pipelineConnect`).
    if (!embedded && connectOptions.pipelineConnect === undefined) {
      connectOptions.pipelineConnect = transport?.pipelineConnect === "password" ? "query" : "auth";
    }
    const open = (signal: AbortSignal) =>
      env.connect(target, { ...connectOptions, signal } as ConnectOptions);
    // Workers lets an invocation wait on at most 6 connections opening at once.
    const creator = runtime.name === "workers" ? limitConcurrency(open, WORKERS_CONNECTING) : open;
    const made = poolByName(poolClass, creator, poolOptions, given.max, runtime.name === "workers");
    (given.logger?.debug)?.(`createPool: ${made.status()}`, { ...made.describe() });
    return made;
  }) as CreatePool;
}

/** `pglite://memory` → "memory"; `pglite:///var/db` → "/var/db"; no URL → "memory". */
function embeddedLocation(url: string | undefined): string {
  if (url === undefined) return "memory";
  const rest = url.replace(/^pglite:(\/\/)?/i, "");
  if (rest === "" || rest === "memory" || rest === "memory/") return "memory";
  return decodeURIComponent(rest);
}
