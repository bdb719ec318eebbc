// What a runtime adapter (deno.ts, node.ts) takes and gives: the same shape for each, and
// what they share in web APIs.

import type { Gateway, GatewaySocket, Target } from "./gateway.ts";

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

/**
 * Serves an upgraded web-standard `WebSocket` (Deno's; any runtime's whose `send` copies the
 * bytes before it returns) as the gateway's WebSocket face once it opens.
 */
export function acceptWebSocket(gateway: Gateway, socket: WebSocket, target: Target): void {
  socket.binaryType = "arraybuffer";
  const wrapped: GatewaySocket = {
    send(data) {
      if (socket.readyState === WebSocket.OPEN) socket.send(data);
    },
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
    close(code, reason) {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
        socket.close(code, reason);
      }
    },
    onmessage: null,
    onclose: null,
  };
  socket.onopen = () => gateway.serveWebSocket(wrapped, target);
  socket.onmessage = (event) => {
    const data = event.data;
    wrapped.onmessage?.(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
  };
  socket.onclose = () => wrapped.onclose?.();
  socket.onerror = () => {}; // a close follows
}
