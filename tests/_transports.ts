// The transports a test file can run over in this runtime.
//
// `transports`: the TCP ones. On Deno both Deno's own and the node:net one (Deno implements
// node:net), on Node only the node:net one.
//
// `connectionTransports`: those plus the ones that reach PostgreSQL some other way, each with
// what it can do, for suites such as tests/connection_test.ts. Another way to reach the server
// is one more entry in that list.

import type { Transport, TransportConnectOptions } from "../mod.ts";
import { nodeTcp } from "../transports/node.ts";
import { type WebSocketConstructor, websocketTransport } from "../transports/websocket.ts";
import { after } from "node:test";
import { getServer } from "./_server.ts";
import { startWebsockify, tokenFile } from "./_websockify.ts";

/** Whether this runs on Deno. */
export const isDeno: boolean =
  typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === "object";

/** Deno's transport, loaded only where the Deno namespace exists. */
export const denoTcp: Transport | undefined = isDeno
  ? (await import("../transports/deno.ts")).denoTcp
  : undefined;

/** Every TCP transport available here. */
export const transports: Transport[] = denoTcp ? [denoTcp, nodeTcp] : [nodeTcp];

export { nodeTcp };

/**
 * The runtime's WebSocket constructor: the global one (Deno, Node 22+), else the `ws`
 * package's (Node 20).
 */
export const WebSocketImpl: WebSocketConstructor =
  (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ??
    (await import("ws")).WebSocket;

/** A transport of a suite, with what it can do. */
export interface TestTransport {
  transport: Transport;
  /**
   * The client speaks TCP to the server itself: SSLRequest, TLS inside the connection
   * (`sslmode=prefer` encrypting, certificates, `ssl_only` users), TCP-level behaviour.
   * Otherwise a proxy stands between them and TLS is the proxy URL's business (`wss:`).
   */
  tcp: boolean;
  /**
   * Behind edgepool's gateway, which ends authentication itself: it always asks for a password
   * (as Neon's proxy does), so a trust user still needs one, and it answers for servers it
   * cannot reach.
   */
  gateway?: boolean;
}

/**
 * The WebSocket transport through a websockify relay (a third-party relay that passes bytes
 * untouched), started on first use. The relay reaches any `host:port` a test connects to (a
 * fake server, a closed port) through a token file, so the suite's own targets work unchanged.
 */
export const websockify: Transport = lazyTransport("websocket via websockify", async () => {
  const targets = tokenFile();
  const relay = await startWebsockify({ tokenFile: targets.path });
  return websocketTransport({
    proxy: (host, port) => `${relay.url}?token=${targets.token(host, port)}`,
    WebSocket: WebSocketImpl,
  });
});

let runningGateway: { close(): Promise<void> } | undefined;
// A listening gateway keeps a Node test process alive: stop it once the file's tests are done.
after(async () => {
  await runningGateway?.close();
  runningGateway = undefined;
});

/**
 * The WebSocket transport through edgepool's own gateway, which terminates authentication (it
 * asks for a cleartext password, then logs in upstream with SCRAM/MD5), started on first use.
 * Its allowlist admits every loopback port, so the suite's own targets work unchanged.
 */
export const gatewayWebSocket: Transport = lazyTransport("websocket via the gateway", async () => {
  const server = await getServer();
  const { startGateway } = await import("../gateway/mod.ts");
  const gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `${server.host}:${server.port}`,
    allow: /^127\.0\.0\.1:\d+$/,
  });
  runningGateway = gateway;
  return websocketTransport({
    proxy: (host, port) => `${gateway.wsUrl}/v2?address=${host}:${port}`,
    WebSocket: WebSocketImpl,
  });
});

/** Every transport the connection suite runs over here. */
export const connectionTransports: TestTransport[] = [
  ...transports.map((transport) => ({ transport, tcp: true })),
  { transport: websockify, tcp: false },
  { transport: gatewayWebSocket, tcp: false, gateway: true },
];

/**
 * A transport whose server side (a relay, a gateway) starts when the first test connects, and
 * stops when the process exits. It has the `pipelineConnect` of a WebSocket transport.
 */
export function lazyTransport(name: string, start: () => Promise<Transport>): Transport {
  let ready: Promise<Transport> | undefined;
  return {
    name,
    pipelineConnect: "password",
    async connect(options: TransportConnectOptions) {
      ready ??= start();
      return await (await ready).connect(options);
    },
  };
}
