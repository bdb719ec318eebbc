/**
 * The gateway's core: the HTTP face (`POST /sql`) and the WebSocket face behind one allowlist,
 * in web APIs only. A runtime adapter (`gateway/deno.ts`, `gateway/node.ts`) serves it.
 *
 * @module
 */

import type { PoolLogger } from "../pool/options.ts";
import type { SslMode, Transport } from "../transport.ts";
import { allowlist, formatTarget, parseTarget, type Target } from "./_target.ts";
import { createSqlHandler } from "./sql.ts";
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
}

/** The gateway, ready to be served. */
export interface Gateway {
  /** Answers an HTTP request that is not a WebSocket upgrade. */
  fetch(request: Request): Promise<Response>;
  /**
   * Where an upgrade request wants to go: `?address=host:port`, else the upstream. A `Response`
   * (400, 403, 503) when it may not: send it instead of upgrading.
   */
  webSocketTarget(url: string): Target | Response;
  /** Serves an upgraded WebSocket whose target `webSocketTarget` allowed. */
  serveWebSocket(socket: GatewaySocket, target: Target): void;
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
    isAllowed: (host, port) => allowed({ host, port }),
    upstreamSslmode: options.upstreamSslmode,
    poolSize: options.poolSize,
    maxPools: options.maxPools,
    connectTimeout: options.connectTimeout,
    logger,
  });
  const sessions = new Set<WebSocketSession>();
  let closed = false;

  return {
    fetch: (request) => sql.handle(request),
    webSocketTarget(url) {
      if (closed) return refuse(503, "The gateway is shutting down");
      const address = new URL(url, "http://gateway").searchParams.get("address");
      let target = upstream;
      if (address !== null) {
        try {
          target = parseTarget(address, "The address parameter");
        } catch (error) {
          return refuse(400, (error as Error).message);
        }
      }
      if (!allowed(target)) {
        logger.warn?.(`gateway ws: refused a connection to ${formatTarget(target)}`);
        return refuse(403, `proxying to ${formatTarget(target)} is not allowed`);
      }
      return target;
    },
    serveWebSocket(socket, target) {
      if (closed) return socket.close(1001, "the gateway is shutting down");
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
    async close() {
      closed = true;
      for (const session of sessions) session.close();
      await Promise.all([sql.close(), ...[...sessions].map((s) => s.done)]);
    },
  };
}

function refuse(status: number, message: string): Response {
  return new Response(message + "\n", {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Access-Control-Allow-Origin": "*" },
  });
}
