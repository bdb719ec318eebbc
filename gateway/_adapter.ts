// What a runtime adapter (deno.ts, node.ts) takes and gives: the same shape for each.

import type { Gateway } from "./gateway.ts";

/** Where and how an adapter listens. */
export interface ServeOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 = any free port. */
  port: number;
  /** Serve HTTPS/WSS with this PEM certificate and key. */
  tls?: { cert: string; key: string };
  /**
   * Time in ms a client has to send a request's complete head (request line and headers),
   * counted from the connection's start for its first request and from a head's first byte
   * for later ones; then it is disconnected. `0` = no limit.
   */
  headerTimeout: number;
}

/** The longest request head (request line and headers) accepted, in bytes (Node's default). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** A gateway being served. */
export interface ServedGateway {
  /** The port listened on. */
  port: number;
  /** Closes WebSockets and pools, then stops listening. */
  close(): Promise<void>;
}

/** Serves a gateway core on this runtime. */
export type Serve = (gateway: Gateway, options: ServeOptions) => Promise<ServedGateway>;
