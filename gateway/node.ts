/**
 * The gateway served by Node (and Bun): `node:http`/`node:https` for HTTP(S), and the `ws`
 * package's WebSocketServer in `noServer` mode for the upgrades.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { Readable } from "node:stream";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import type { Gateway, GatewaySocket } from "./gateway.ts";
import { MAX_HEAD_BYTES, type ServedGateway, type ServeOptions } from "./_adapter.ts";

/** Node's default time limit for receiving a whole request, in ms. */
const REQUEST_TIMEOUT = 300_000;

/** Serves `gateway` on `options.hostname:options.port` (0 = any free port). */
export async function serve(gateway: Gateway, options: ServeOptions): Promise<ServedGateway> {
  const limit = options.headerTimeout;
  const timeouts: http.ServerOptions = {
    maxHeaderSize: MAX_HEAD_BYTES,
    // Node answers a late head with 408 and closes, for upgrade requests too. It looks for late
    // ones every connectionsCheckingInterval (30 s by default): often enough for the limit.
    headersTimeout: limit,
    requestTimeout: Math.max(REQUEST_TIMEOUT, limit),
    ...(limit > 0 ? { connectionsCheckingInterval: Math.max(10, Math.min(1000, limit / 4)) } : {}),
  };
  const server = options.tls
    ? https.createServer({ ...timeouts, cert: options.tls.cert, key: options.tls.key })
    : http.createServer(timeouts);
  const origin = `${options.tls ? "https" : "http"}://gateway`;
  const wss = new WebSocketServer({ noServer: true });
  server.on("request", (req, res) => {
    handleRequest(gateway, origin, req, res).catch(() => res.destroy());
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    if (req.headers.upgrade?.toLowerCase() !== "websocket") return void socket.destroy();
    const target = gateway.webSocketTarget(req.url ?? "/");
    if (target instanceof Response) return void refuseUpgrade(socket, target);
    wss.handleUpgrade(req, socket, head, (ws) => accept(gateway, ws, target));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      await gateway.close();
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

async function handleRequest(
  gateway: Gateway,
  origin: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  // A client that goes away mid-query cancels it.
  const controller = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) controller.abort(new Error("The client disconnected"));
  });
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) { for (const v of value) headers.append(name, v); }
    else if (value !== undefined) headers.set(name, value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(origin + (req.url ?? "/"), {
    method: req.method,
    headers,
    body: hasBody ? Readable.toWeb(req) as ReadableStream<Uint8Array> : undefined,
    signal: controller.signal,
    duplex: "half",
  } as RequestInit);
  const response = await gateway.fetch(request);
  const body = new Uint8Array(await response.arrayBuffer());
  if (res.destroyed) return;
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(body);
}

function accept(gateway: Gateway, ws: WebSocket, target: { host: string; port: number }): void {
  const wrapped: GatewaySocket = {
    send(data) {
      // ws writes `data` itself, maybe later: a copy (small ones come from Buffer's pool).
      if (ws.readyState === ws.OPEN) ws.send(Buffer.from(data));
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    close(code, reason) {
      ws.close(code, reason);
    },
    onmessage: null,
    onclose: null,
  };
  ws.on("message", (data: RawData, isBinary: boolean) => {
    const bytes = toBytes(data);
    wrapped.onmessage?.(isBinary ? bytes : new TextDecoder().decode(bytes));
  });
  ws.on("close", () => wrapped.onclose?.());
  ws.on("error", () => {}); // a close follows
  gateway.serveWebSocket(wrapped, target);
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

async function refuseUpgrade(socket: Duplex, response: Response): Promise<void> {
  const text = await response.text();
  const reason = http.STATUS_CODES[response.status] ?? "Error";
  let head = `HTTP/1.1 ${response.status} ${reason}\r\n`;
  for (const [name, value] of response.headers) head += `${name}: ${value}\r\n`;
  socket.end(
    head + `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}
