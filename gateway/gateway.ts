/**
 * The gateway's core: the HTTP face (`POST /sql`) and the WebSocket face behind one allowlist,
 * in web APIs only. A runtime adapter (`deno.ts`, `node.ts`) serves it; `mod.ts` picks one.
 *
 * @module
 */

import type { Transport } from "../src/transport.ts";
import { errorJson } from "./_neon_json.ts";
import type { ResolvedGatewayOptions } from "./options.ts";
import {
  allowlist,
  formatTarget,
  isUpstream,
  parseTarget,
  parseTargets,
  type Target,
} from "./_target.ts";
import { createSqlHandler, respond } from "./sql.ts";
import { type GatewaySocket, serveWebSocket, type WebSocketSession } from "./websocket.ts";

export type { GatewaySocket } from "./websocket.ts";
export type { Target } from "./_target.ts";

/** The gateway, ready to be served. */
export interface Gateway {
  /** Answers an HTTP request that is not a WebSocket upgrade. */
  fetch(request: Request): Promise<Response>;
  /**
   * Where an upgrade request wants to go: `?address=host:port`, else the upstream (its first
   * host, standing for the whole list: see `serveWebSocket`). A `Response`
   * (400 for a malformed or refused address, 503 at `maxSessions` or when shutting down) when
   * it may not: send it instead of upgrading.
   */
  webSocketTarget(url: string): Target | Response;
  /**
   * Serves an upgraded WebSocket whose target `webSocketTarget` allowed. A target that is any
   * host of the upstream is served by the upstream: its hosts tried in order for one with
   * `upstreamTargetSessionAttrs`.
   */
  serveWebSocket(socket: GatewaySocket, target: Target): void;
  /** WebSocket sessions and `/sql` requests being served now. */
  readonly sessions: number;
  /** Stops: open WebSockets close, every pool closes, later requests get 503. */
  close(): Promise<void>;
}

/**
 * Makes the gateway core from checked options (`resolveOptions`) and the runtime's TCP
 * transport.
 *
 * @example
 * ```ts ignore
 * import { createGateway } from "./gateway.ts";
 * import { resolveOptions } from "./options.ts";
 * import { denoTcp } from "../transports/deno.ts";
 * const options = resolveOptions({ listen: "127.0.0.1:0", upstream: "127.0.0.1:5432" });
 * const gateway = createGateway(options, denoTcp);
 * serve((request) => gateway.fetch(request)); // any fetch-style server: Deno's, Bun's, Hono...
 * ```
 */
export function createGateway(options: ResolvedGatewayOptions, transport: Transport): Gateway {
  const upstream = parseTargets(options.upstream, "upstream");
  const allowed = allowlist(upstream, options.allow);
  const { logger, maxSessions } = options;
  const sql = createSqlHandler({ ...options, transport, upstream, isAllowed: allowed });
  const upstreamFace = {
    ...options,
    transport,
    targetSessionAttrs: options.upstreamTargetSessionAttrs,
    loadBalance: options.upstreamLoadBalance,
  };
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
      let target = upstream[0];
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
      const session = isUpstream(upstream, target)
        ? serveWebSocket(socket, upstream, upstreamFace)
        : serveWebSocket(socket, target, { ...options, transport });
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
