/**
 * The gateway served by Deno: `Deno.serve` for HTTP(S) and `Deno.upgradeWebSocket` for the
 * WebSocket face.
 *
 * @module
 */

import type { Gateway, GatewaySocket } from "../src/gateway/gateway.ts";
import type { ServedGateway, ServeOptions } from "./_adapter.ts";

/** Serves `gateway` on `options.hostname:options.port` (0 = any free port). */
export function serve(gateway: Gateway, options: ServeOptions): Promise<ServedGateway> {
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
    onListen() {}, // the caller logs its own line
    onError: () => new Response("Internal error\n", { status: 500 }),
  }, (request) => handle(gateway, request));
  return Promise.resolve({
    port: server.addr.port,
    async close() {
      await gateway.close();
      await server.shutdown();
    },
  });
}

function handle(gateway: Gateway, request: Request): Response | Promise<Response> {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return gateway.fetch(request);
  const target = gateway.webSocketTarget(request.url);
  if (target instanceof Response) return target;
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.binaryType = "arraybuffer";
  const wrapped: GatewaySocket = {
    send(data) {
      // Deno's send copies the bytes into the frame before it returns.
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
  return response;
}
