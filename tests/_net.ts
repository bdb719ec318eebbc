// Loopback ports for the test harness's servers (PostgreSQL, PgBouncer, websockify).

import { connect, createServer, type Socket } from "node:net";

/** The loopback address every harness server listens on. */
export const HOST = "127.0.0.1";

/** A port the kernel picks, free now (another process may still take it before a bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A port nothing listens on: `freePort()`, under the name a test that wants a refusal means. */
export const closedPort: () => Promise<number> = freePort;

/** A TCP server that accepts and never says a word (not even a WebSocket upgrade's answer);
 * `socketClosed` resolves when the first client socket closes. */
export interface SilentServer extends AsyncDisposable {
  port: number;
  socketClosed: Promise<void>;
}

export async function silentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let closed!: () => void;
  const socketClosed = new Promise<void>((resolve) => closed = resolve);
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.resume(); // read (and drop) what comes, so the client's FIN is seen
    socket.on("close", () => {
      sockets.delete(socket);
      closed();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as { port: number }).port,
    socketClosed,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Whether something accepts connections on `port` now. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
