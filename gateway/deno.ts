/**
 * The gateway served by Deno: `Deno.serve` for HTTP(S) and `Deno.upgradeWebSocket` for the
 * WebSocket face.
 *
 * `Deno.serve` has no header timeout, so with one set, clients do not reach it directly: a
 * front listener (`Deno.listen`/`Deno.listenTls`) accepts them, times each request head as
 * `_request_heads.ts` frames it, disconnects a client whose head is late or longer than
 * {@link MAX_HEAD_BYTES}, and passes the bytes on to `Deno.serve` on a Unix socket in a private
 * temporary directory (loopback TCP on Windows). TLS ends at the front. After an upgrade the
 * front only pipes bytes. The price is one more copy of each byte in the process.
 *
 * @module
 */

import type { Gateway, GatewaySocket } from "./gateway.ts";
import { MAX_HEAD_BYTES, type ServedGateway, type ServeOptions } from "./_adapter.ts";
import { RequestHeads } from "./_request_heads.ts";

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
    for await (const conn of listener) front(conn, address, options.headerTimeout, open);
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

/** Passes one client connection to the inner server, timing its request heads. */
async function front(
  conn: Deno.Conn,
  address: Deno.ConnectOptions | Deno.UnixConnectOptions,
  headerTimeout: number,
  open: Set<() => void>,
): Promise<void> {
  let inner: Deno.Conn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const close = () => {
    clearTimeout(timer);
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
  const heads = new RequestHeads(MAX_HEAD_BYTES);
  let timed = 0;
  const time = () => {
    if (!heads.waiting) {
      clearTimeout(timer);
      timer = undefined;
    } else if (timed !== heads.head) {
      // Armed once per head, at its start: a trickle of bytes does not push it back.
      clearTimeout(timer);
      timed = heads.head;
      timer = setTimeout(close, headerTimeout);
    }
  };
  time();
  try {
    inner = await Deno.connect(address as Deno.ConnectOptions);
  } catch {
    return close();
  }
  // The inner server ending the connection ends it for the client too.
  const toClient = inner.readable.pipeTo(conn.writable).catch(() => {}).finally(close);
  const reader = conn.readable.getReader();
  const writer = inner.writable.getWriter();
  try {
    while (!heads.raw) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!heads.feed(value)) return close(); // a head past MAX_HEAD_BYTES
      time();
      await writer.write(value);
    }
    if (heads.raw) {
      clearTimeout(timer);
      reader.releaseLock();
      writer.releaseLock();
      await conn.readable.pipeTo(inner.writable);
    } else {
      await writer.close();
    }
    await toClient;
  } catch {
    // Either side went away.
  } finally {
    close();
  }
}

function handle(gateway: Gateway, request: Request): Response | Promise<Response> {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return gateway.fetch(request);
  const target = gateway.webSocketTarget(request.url);
  if (target instanceof Response) {
    // The front stops timing heads after an upgrade request: no second request on this one.
    target.headers.set("Connection", "close");
    return target;
  }
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
