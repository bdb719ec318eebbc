/**
 * The gateway served by Deno: `Deno.serve` for HTTP(S) and `Deno.upgradeWebSocket` for the
 * WebSocket face, or, by default, a front listener of its own in front of them.
 *
 * `Deno.serve` has no header timeout, so with one set, clients do not reach it directly: a
 * front listener (`Deno.listen`/`Deno.listenTls`) accepts them, times each request head as
 * `_request_heads.ts` frames it, and disconnects a client whose head is late or longer than
 * 16 KiB. TLS ends at the front. A connection whose first request is a clean WebSocket
 * upgrade (`_websocket_server.ts` says which) stays with the front, which answers the
 * handshake and serves the session's frames on the client's own connection. Any other is
 * passed on to `Deno.serve` on a Unix socket in a private temporary directory (loopback TCP
 * on Windows), which judges it: HTTP `/sql`, and upgrade requests that are not clean. That
 * second hop costs each chunk one more read and write each way, which is why WebSocket
 * sessions, the gateway's long-lived load, do not take it. With `headerTimeout` 0 there is no
 * front.
 *
 * @module
 */

import type { Gateway } from "./gateway.ts";
import { acceptWebSocket, type ServedGateway, type ServeOptions } from "./_adapter.ts";
import { pipeTimingHeads, writeAll } from "./_request_heads.ts";
import { acceptResponse, FramedWebSocket, upgradeRequest } from "./_websocket_server.ts";

/** Ping a WebSocket client heard nothing from for this long, in ms (as `Deno.serve` does). */
const IDLE_TIMEOUT = 120_000;

/** Serves `gateway` on `options.hostname:options.port` (0 = any free port). */
export async function serve(gateway: Gateway, options: ServeOptions): Promise<ServedGateway> {
  const handler = (request: Request) => handle(gateway, request);
  const common = {
    onListen() {}, // the caller logs its own line
    onError: () => new Response("Internal error\n", { status: 500 }),
  };
  if (options.headerTimeout <= 0) {
    const server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
      ...common,
    }, handler);
    return {
      port: server.addr.port,
      async close() {
        await gateway.close();
        await server.shutdown();
      },
    };
  }
  const unix = Deno.build.os !== "windows";
  const dir = unix ? await Deno.makeTempDir({ prefix: "edgepool-gateway-" }) : "";
  const inner = unix
    ? Deno.serve({ path: `${dir}/http.sock`, ...common }, handler)
    : Deno.serve({ hostname: "127.0.0.1", port: 0, ...common }, handler);
  const listen = { hostname: options.hostname, port: options.port };
  let listener: Deno.Listener;
  try {
    listener = options.tls
      ? Deno.listenTls({ ...listen, cert: options.tls.cert, key: options.tls.key })
      : Deno.listen(listen);
  } catch (error) {
    await inner.shutdown();
    if (unix) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  const address: Deno.ConnectOptions | Deno.UnixConnectOptions = unix
    ? { transport: "unix", path: `${dir}/http.sock` }
    : { hostname: "127.0.0.1", port: (inner.addr as Deno.NetAddr).port };
  const open = new Set<() => void>();
  (async () => {
    for await (const conn of listener) {
      front(gateway, conn, address, options.headerTimeout, open);
    }
  })().catch(() => {}); // the listener closed
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      await gateway.close();
      listener.close();
      for (const close of open) close();
      await inner.shutdown();
      if (unix) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Serves one client connection: a WebSocket session when its first request is a clean
 * upgrade, else passed on to the inner server, timing its request heads.
 */
function front(
  gateway: Gateway,
  conn: Deno.Conn,
  address: Deno.ConnectOptions | Deno.UnixConnectOptions,
  headerTimeout: number,
  open: Set<() => void>,
): Promise<void> {
  let inner: Deno.Conn | undefined;
  const close = () => {
    open.delete(close);
    for (const c of [conn, inner]) {
      try {
        c?.close();
      } catch {
        // closed already
      }
    }
  };
  open.add(close);
  // As Deno.serve does: small writes (a WebSocket frame per PostgreSQL message) go out at once
  // instead of waiting for the client's delayed ACK. A TlsConn has no such switch.
  if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  const connect = async () => inner = await Deno.connect(address as Deno.ConnectOptions);
  const take = (head: Uint8Array, rest: Uint8Array) => {
    const request = upgradeRequest(head);
    if (request === null) return false;
    const target = gateway.webSocketTarget(request.target);
    (async () => {
      if (target instanceof Response) {
        await writeAll(conn, await responseBytes(target));
        return close();
      }
      const preamble = await acceptResponse(request.key);
      const socket = new FramedWebSocket(conn, close, preamble, rest, IDLE_TIMEOUT);
      gateway.serveWebSocket(socket, target);
      socket.start();
    })().catch(close);
    return true;
  };
  return pipeTimingHeads(conn, connect, headerTimeout, close, take);
}

/** `response` as HTTP/1.1 bytes, ending the connection after it. */
async function responseBytes(response: Response): Promise<Uint8Array> {
  const body = new Uint8Array(await response.arrayBuffer());
  let head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Error"}\r\n`;
  response.headers.forEach((value, name) => {
    if (name !== "content-length" && name !== "connection") head += `${name}: ${value}\r\n`;
  });
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  const head8 = new TextEncoder().encode(head);
  const out = new Uint8Array(head8.length + body.length);
  out.set(head8);
  out.set(body, head8.length);
  return out;
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

function handle(gateway: Gateway, request: Request): Response | Promise<Response> {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return gateway.fetch(request);
  const target = gateway.webSocketTarget(request.url);
  if (target instanceof Response) {
    // The front stops timing heads after an upgrade request: no second request on this one.
    target.headers.set("Connection", "close");
    return target;
  }
  const { socket, response } = Deno.upgradeWebSocket(request);
  acceptWebSocket(gateway, socket, target);
  return response;
}
