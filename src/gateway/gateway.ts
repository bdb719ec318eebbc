/**
 * The gateway's core: the HTTP face (`POST /sql`) and the WebSocket face behind one allowlist,
 * in web APIs only. A runtime adapter (`gateway/deno.ts`, `gateway/node.ts`) serves it.
 *
 * @module
 */

import type { PoolLogger } from "../pool/options.ts";
import type { SslMode, Transport } from "../transport.ts";
import { errorJson } from "./_neon_json.ts";
import { allowlist, formatTarget, parseTarget, type Target } from "./_target.ts";
import { createSqlHandler, respond } from "./sql.ts";
import { type GatewaySocket, serveWebSocket, type WebSocketSession } from "./websocket.ts";

export type { GatewaySocket } from "./websocket.ts";
export type { Target } from "./_target.ts";

/** Options of {@link createGateway}. */
export interface GatewayCoreOptions {
  /** The default PostgreSQL `host:port`, always allowed. Required. */
  upstream: string;
  /** Other `host:port` targets clients may name, matched in full. Default: none. */
  allow?: RegExp;
  /** WebSocket face passes bytes through untouched instead of ending authentication. Default `false`. */
  relay?: boolean;
  /** How to reach PostgreSQL (the runtime's TCP transport). Required. */
  transport: Transport;
  /** Where the gateway logs; never with a password. Default: nowhere. */
  logger?: PoolLogger;
  /** Server connections kept per connection string by the HTTP face. Default 10. */
  poolSize?: number;
  /** Connection strings the HTTP face serves at once (a pool each). Default 100. */
  maxPools?: number;
  /** TLS from the gateway to PostgreSQL (not in relay mode). Default `"prefer"`. */
  upstreamSslmode?: SslMode;
  /** Time limit in ms for connecting to PostgreSQL. Default 30 000. */
  connectTimeout?: number;
  /**
   * WebSocket sessions and `/sql` requests served at once; beyond it a request or an upgrade
   * gets 503 with `Retry-After`. Default 1000.
   */
  maxSessions?: number;
}

/** The gateway, ready to be served. */
export interface Gateway {
  /** Answers an HTTP request that is not a WebSocket upgrade. */
  fetch(request: Request): Promise<Response>;
  /**
   * Where an upgrade request wants to go: `?address=host:port`, else the upstream. A `Response`
   * (400 for a malformed or refused address, 503 at `maxSessions` or when shutting down) when
   * it may not: send it instead of upgrading.
   */
  webSocketTarget(url: string): Target | Response;
  /** Serves an upgraded WebSocket whose target `webSocketTarget` allowed. */
  serveWebSocket(socket: GatewaySocket, target: Target): void;
  /** WebSocket sessions and `/sql` requests being served now. */
  readonly sessions: number;
  /** Stops: open WebSockets close, every pool closes, later requests get 503. */
  close(): Promise<void>;
}

/**
 * Makes the gateway core.
 *
 * @example
 * ```ts ignore
 * import { createGateway } from "./gateway.ts";
 * import { denoTcp } from "../../transports/deno.ts";
 * const gateway = createGateway({ upstream: "127.0.0.1:5432", transport: denoTcp });
 * serve((request) => gateway.fetch(request)); // any fetch-style server: Deno's, Bun's, Hono...
 * ```
 */
export function createGateway(options: GatewayCoreOptions): Gateway {
  const upstream = parseTarget(options.upstream, "upstream");
  const allowed = allowlist(upstream, options.allow);
  const logger = options.logger ?? {};
  const sql = createSqlHandler({
    transport: options.transport,
    upstream,
    isAllowed: (target) => allowed(target),
    upstreamSslmode: options.upstreamSslmode,
    poolSize: options.poolSize,
    maxPools: options.maxPools,
    connectTimeout: options.connectTimeout,
    logger,
  });
  const maxSessions = options.maxSessions ?? 1000;
  if (!Number.isInteger(maxSessions) || maxSessions < 1) {
    throw new RangeError(`maxSessions must be a whole number >= 1, got ${maxSessions}`);
  }
  const sessions = new Set<WebSocketSession>();
  let requests = 0;
  let closed = false;
  const full = () => sessions.size + requests >= maxSessions;
  const busy = () =>
    respond(
      503,
      errorJson(
        `The gateway serves ${maxSessions} sessions at once (maxSessions) and is full: ` +
          "try again later",
        undefined,
        "53300",
      ),
    );

  return {
    async fetch(request) {
      // A preflight holds nothing; everything else counts, the body read included.
      if (request.method === "OPTIONS" || closed) return await sql.handle(request);
      if (full()) return busy();
      requests++;
      try {
        return await sql.handle(request);
      } finally {
        requests--;
      }
    },
    webSocketTarget(url) {
      if (closed) {
        return respond(503, errorJson("The gateway is shutting down", undefined, "57P03"));
      }
      if (full()) return busy();
      let address: string | null;
      try {
        address = new URL(url, "http://gateway").searchParams.get("address");
      } catch {
        return respond(400, errorJson("The request URL is malformed", undefined, "08P01"));
      }
      let target = upstream;
      if (address !== null) {
        try {
          target = parseTarget(address, "The address parameter");
        } catch (error) {
          return respond(400, errorJson((error as Error).message, undefined, "08P01"));
        }
      }
      if (!allowed(target)) {
        logger.warn?.(`gateway ws: refused a connection to ${formatTarget(target)}`);
        return respond(
          400,
          errorJson(`proxying to ${formatTarget(target)} is not allowed`, undefined, "42501"),
        );
      }
      return target;
    },
    serveWebSocket(socket, target) {
      if (closed) return socket.close(1001, "the gateway is shutting down");
      // Upgrades checked at once may all have passed webSocketTarget: the cap holds here.
      if (full()) return socket.close(1013, "the gateway is full (maxSessions): try again later");
      const session = serveWebSocket(socket, target, {
        transport: options.transport,
        relay: options.relay,
        upstreamSslmode: options.upstreamSslmode,
        connectTimeout: options.connectTimeout,
        logger,
      });
      sessions.add(session);
      session.done.then(() => sessions.delete(session));
    },
    get sessions() {
      return sessions.size + requests;
    },
    async close() {
      closed = true;
      for (const session of sessions) session.close();
      await Promise.all([sql.close(), ...[...sessions].map((s) => s.done)]);
    },
  };
}
