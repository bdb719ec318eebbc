/**
 * The gateway served by Deno: `Deno.serve` for HTTP(S) and `Deno.upgradeWebSocket` for the
 * WebSocket face.
 *
 * `Deno.serve` has no header timeout, so with one set, clients do not reach it directly: a
 * front listener (`Deno.listen`/`Deno.listenTls`) accepts them, times each request head as
 * `_request_heads.ts` frames it, disconnects a client whose head is late or longer than
 * 16 KiB, and passes the bytes on to `Deno.serve` on a Unix socket in a private
 * temporary directory (loopback TCP on Windows). TLS ends at the front. After an upgrade the
 * front only pipes bytes. The price is a second hop inside the process: each chunk is read and
 * written once more each way (a relayed query costs 4 socket reads and 4 writes instead of 2
 * and 2), a quarter to two fifths of the relay's CPU per query. With `headerTimeout` 0 there
 * is no front.
 *
 * @module
 */

import type { Gateway } from "./gateway.ts";
import { acceptWebSocket, type ServedGateway, type ServeOptions } from "./_adapter.ts";
import { pipeTimingHeads } from "./_request_heads.ts";

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
function front(
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
  return pipeTimingHeads(conn, connect, headerTimeout, close);
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
  acceptWebSocket(gateway, socket, target);
  return response;
}
