/**
 * edgepool's gateway: one server with two faces in front of any PostgreSQL, speaking Neon's
 * protocols — the WebSocket face (one PostgreSQL byte stream per WebSocket, authentication
 * ended at the gateway so clients can pipeline their login) and the HTTP face (`POST /sql`,
 * queries pooled per connection string). Runs on Deno and on Node.
 *
 * @example
 * ```ts ignore
 * import { startGateway } from "@edgepool/edgepool/gateway";
 * const gateway = await startGateway({ listen: "127.0.0.1:4444", upstream: "127.0.0.1:5432" });
 * console.log(gateway.url, gateway.wsUrl);
 * await gateway.close();
 * ```
 *
 * @module
 */

import type { PoolLogger } from "../src/pool/options.ts";
import type { SslMode, Transport } from "../src/transport.ts";
import { createGateway } from "../src/gateway/gateway.ts";
import { formatTarget, isLoopback, parseTarget } from "../src/gateway/_target.ts";
import type { Serve } from "./_adapter.ts";

export type { PoolLogger } from "../src/pool/options.ts";
export type { SslMode } from "../src/transport.ts";

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** Address to listen on, `host:port`; port 0 picks a free one. E.g. `"127.0.0.1:4444"`. */
  listen: string;
  /** The PostgreSQL server, `host:port`: the WebSocket default and always allowed. */
  upstream: string;
  /**
   * More `host:port` targets clients may name (`?address=` or a connection string's host), matched
   * in full. Default: only `upstream`.
   */
  allow?: RegExp;
  /** WebSocket face: pass bytes through untouched instead of ending authentication. Default `false`. */
  relay?: boolean;
  /** Serve HTTPS and WSS with this PEM certificate and key. Default: plain HTTP and WS. */
  tls?: { cert: string; key: string };
  /** Where the gateway logs (`console` fits); never with a password. Default: nowhere. */
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
   * gets 503 with `Retry-After: 1`. Default 1000.
   */
  maxSessions?: number;
  /**
   * Time in ms a client has to send a request's complete head (request line and headers):
   * counted from the connection's start for its first request, from a head's first byte for
   * later ones on the same connection; then it is disconnected. `0` = no limit. Default 10 000.
   */
  headerTimeout?: number;
}

/** A running gateway. */
export interface RunningGateway {
  /** `http(s)://host:port`; the SQL endpoint is `url + "/sql"`. */
  url: string;
  /** `ws(s)://host:port`; any path is accepted (`/v1`, `/v2`...). */
  wsUrl: string;
  /** The port listened on. */
  port: number;
  /** WebSocket sessions and `/sql` requests being served now (see `maxSessions`). */
  readonly sessions: number;
  /** Stops listening, closes every WebSocket and every pool. */
  close(): Promise<void>;
}

/**
 * Starts the gateway with the server of the runtime it runs on (Deno.serve, or node:http with
 * `ws`). Warns (logger and stderr) when it listens without TLS beyond this machine: clients send
 * passwords to it.
 *
 * @example
 * ```ts ignore
 * import { startGateway } from "@edgepool/edgepool/gateway";
 * const gateway = await startGateway({
 *   listen: "127.0.0.1:0",
 *   upstream: "127.0.0.1:5432",
 *   logger: console,
 * });
 * // neonConfig.fetchEndpoint = () => gateway.url + "/sql";
 * await gateway.close();
 * ```
 */
export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const listen = parseTarget(options.listen, "listen", 0);
  parseTarget(options.upstream, "upstream");
  const headerTimeout = options.headerTimeout ?? 10_000;
  if (!(Number.isInteger(headerTimeout) && headerTimeout >= 0 && headerTimeout <= 2 ** 31 - 1)) {
    throw new RangeError(
      `headerTimeout must be a whole number of ms from 0 to 2147483647, got ${headerTimeout}`,
    );
  }
  const deno = typeof (globalThis as { Deno?: { serve?: unknown } }).Deno?.serve === "function";
  let serve: Serve;
  let transport: Transport;
  if (deno) {
    serve = (await import("./deno.ts")).serve;
    transport = (await import("../transports/deno.ts")).denoTcp;
  } else {
    serve = (await import("./node.ts")).serve;
    transport = (await import("../transports/node.ts")).nodeTcp;
  }
  const logger = options.logger ?? {};
  const core = createGateway({
    upstream: options.upstream,
    allow: options.allow,
    relay: options.relay,
    transport,
    logger,
    poolSize: options.poolSize,
    maxPools: options.maxPools,
    upstreamSslmode: options.upstreamSslmode,
    connectTimeout: options.connectTimeout,
    maxSessions: options.maxSessions,
  });
  let served;
  try {
    served = await serve(core, {
      hostname: listen.host,
      port: listen.port,
      tls: options.tls,
      headerTimeout,
    });
  } catch (error) {
    await core.close();
    throw error;
  }
  if (!options.tls && !isLoopback(listen.host)) {
    const where = formatTarget({ host: listen.host, port: served.port });
    const warning = `edgepool gateway: WARNING: listening on ${where} without TLS: clients ` +
      "send database passwords to it in clear text; give it a certificate and key, or listen " +
      "on 127.0.0.1 behind a TLS-terminating proxy";
    logger.warn?.(warning);
    console.error(warning);
  }
  // An unspecified address listens everywhere; this machine reaches it on loopback.
  const host = listen.host === "0.0.0.0" ? "127.0.0.1" : listen.host === "::" ? "::1" : listen.host;
  const authority = formatTarget({ host, port: served.port });
  const secure = options.tls !== undefined;
  return {
    url: `${secure ? "https" : "http"}://${authority}`,
    wsUrl: `${secure ? "wss" : "ws"}://${authority}`,
    port: served.port,
    get sessions() {
      return core.sessions;
    },
    close: () => served.close(),
  };
}
