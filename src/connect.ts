/**
 * Opening connections: URL and options in, a ready {@link Connection} out.
 *
 * @module
 */

import { type ConnectOptions, parseConfig } from "./config.ts";
import { Connection } from "./connection.ts";
import { ConnectionError } from "./errors.ts";
import type { TlsSettings, Transport } from "./transport.ts";

/** Opens a connection: `connect(url?, options?)`. */
export type ConnectFunction = (
  url?: string | URL,
  options?: ConnectOptions,
) => Promise<Connection>;

/**
 * Makes a `connect` function that uses `defaultTransport()` when the options name no transport.
 * The runtime-specific choice is made outside `src/` and passed in here.
 *
 * @example
 * ```ts ignore
 * import { createConnect } from "@edgepool/edgepool";
 * import { nodeTcp } from "@edgepool/edgepool/transports/node";
 * const connect = createConnect(() => Promise.resolve(nodeTcp));
 * ```
 */
export function createConnect(defaultTransport: () => Promise<Transport>): ConnectFunction {
  return async (url, options) => {
    const config = parseConfig(url, options);
    const transport = options?.transport ?? await defaultTransport();
    return await openConnection(config, transport, options);
  };
}

async function openConnection(
  config: ReturnType<typeof parseConfig>,
  transport: Transport,
  options: ConnectOptions | undefined,
): Promise<Connection> {
  const signal = options?.signal;
  signal?.throwIfAborted();
  const where = `${config.host}:${config.port}`;
  const controller = new AbortController();
  let phase = "opening the connection";
  const timer = config.connectTimeout > 0
    ? setTimeout(() => {
      controller.abort(
        new ConnectionError(
          "CONNECT_TIMEOUT",
          `Could not connect to ${where}: timed out after ${config.connectTimeout} ms while ${phase}`,
        ),
      );
    }, config.connectTimeout)
    : undefined;
  const onAbort = () => controller.abort(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const attempt = async (tls: TlsSettings | null): Promise<Connection> => {
    phase = "opening the connection";
    const stream = await transport.connect({
      host: config.host,
      port: config.port,
      tls,
      signal: controller.signal,
      keepAlive: config.keepAlive,
    });
    if (controller.signal.aborted) {
      stream.close();
      throw controller.signal.reason;
    }
    // Cancel requests go the way this connection went: over TLS only if it did.
    const connection = new Connection(stream, config, transport, stream.encrypted ? tls : null);
    if (options?.onNotice) connection.on("notice", options.onNotice);
    phase = "starting the session (authentication)";
    const abort = () => connection.destroy(controller.signal.reason);
    controller.signal.addEventListener("abort", abort, { once: true });
    try {
      await connection.start();
    } catch (error) {
      throw controller.signal.aborted ? controller.signal.reason : error;
    } finally {
      controller.signal.removeEventListener("abort", abort);
    }
    return connection;
  };
  const tls: TlsSettings | null = config.sslmode === "disable" ? null : {
    mode: config.sslmode,
    serverName: config.host,
    ca: config.ca,
    caFile: config.sslrootcert,
  };
  try {
    try {
      return await attempt(tls);
    } catch (error) {
      // libpq's `prefer`: when TLS fails (say, a runtime that insists on verifying a
      // self-signed certificate), connect again without it.
      if (
        tls?.mode !== "prefer" || !(error instanceof ConnectionError) ||
        error.code !== "TLS_FAILED" || controller.signal.aborted
      ) throw error;
      return await attempt(null);
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}
