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

import type { Transport } from "../src/transport.ts";
import { autoTransport, detectRuntime } from "../transports/auto.ts";
import type { Serve } from "./_adapter.ts";
import { createGateway } from "./gateway.ts";
import { type GatewayOptions, resolveOptions } from "./options.ts";
import { formatTarget, isLoopback, parseTarget } from "./_target.ts";

export type { PoolLogger } from "../src/pool/options.ts";
export type { SslMode } from "../src/transport.ts";
export type { GatewayOptions } from "./options.ts";

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
  const o = resolveOptions(options);
  const listen = parseTarget(o.listen, "listen", 0);
  const { serve, transport } = await runtimeServer();
  const core = createGateway(o, transport);
  let served;
  try {
    served = await serve(core, {
      hostname: listen.host,
      port: listen.port,
      tls: o.tls,
      headerTimeout: o.headerTimeout,
    });
  } catch (error) {
    await core.close();
    throw error;
  }
  if (!o.tls && !isLoopback(listen.host)) {
    const where = formatTarget({ host: listen.host, port: served.port });
    const warning = `edgepool gateway: WARNING: listening on ${where} without TLS: clients ` +
      "send database passwords to it in clear text; give it a certificate and key, or listen " +
      "on 127.0.0.1 behind a TLS-terminating proxy";
    o.logger.warn?.(warning);
    console.error(warning);
  }
  // An unspecified address listens everywhere; this machine reaches it on loopback.
  const host = listen.host === "0.0.0.0" ? "127.0.0.1" : listen.host === "::" ? "::1" : listen.host;
  const authority = formatTarget({ host, port: served.port });
  const secure = o.tls !== undefined;
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

/** The server adapter and TCP transport of the runtime this runs on, loading only those. */
async function runtimeServer(): Promise<{ serve: Serve; transport: Transport }> {
  const runtime = detectRuntime();
  // A bundle for one runtime (build/runtimes.ts) leaves the other adapter out: `serve` is
  // then undefined.
  const serve = runtime.tcp === "deno"
    ? (await import("./deno.ts")).serve
    : runtime.tcp === "node"
    ? (await import("./node.ts")).serve
    : undefined;
  if (serve === undefined) {
    throw new TypeError(
      `edgepool gateway: ${runtime.name} (${runtime.sign}) cannot serve it: run it on Deno, ` +
        "Node or Bun",
    );
  }
  return { serve, transport: await autoTransport() };
}
