/**
 * Opening connections: URL and options in, a ready {@link Connection} out.
 *
 * @module
 */

import { PipelineRejected } from "./_auth.ts";
import {
  type ConfigDefaults,
  type ConnectionConfig,
  type ConnectOptions,
  parseConfig,
} from "./config.ts";
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
 * import { createConnect } from "./connect.ts";
 * import { nodeTcp } from "@edgepool/edgepool/transports/node";
 * const connect = createConnect(() => Promise.resolve(nodeTcp));
 * ```
 */
export function createConnect(
  defaultTransport: () => Promise<Transport>,
  defaults?: ConfigDefaults,
): ConnectFunction {
  return async (url, options) => {
    const config = parseConfig(url, options, defaults);
    return await openConnection(config, options?.transport ?? await defaultTransport(), options);
  };
}

// Per transport, what each server (address, database, user: what pg_hba.conf decides by) did
// with a password sent ahead: took it (`true`: later connects start early), or answered with
// another method (`false`: no password is sent ahead to it again). Bounded: a forgotten entry
// costs one extra attempt.
const cleartext = new WeakMap<Transport, Map<string, boolean>>();
const CLEARTEXT_MAX = 1000;

async function openConnection(
  given: ConnectionConfig,
  transport: Transport,
  options: ConnectOptions | undefined,
): Promise<Connection> {
  const signal = options?.signal;
  signal?.throwIfAborted();
  // A password function is called once per connect, even when the connect takes a second
  // attempt (TLS `prefer`, pipelined connect falling back).
  const source = given.password;
  let password: Promise<string> | undefined;
  const config = typeof source === "function"
    ? { ...given, password: () => password ??= Promise.resolve().then(source) }
    : given;
  const { host, port, connectTimeout } = config;
  const controller = new AbortController();
  const stop = controller.signal;
  let phase = "";
  const timer = connectTimeout > 0
    ? setTimeout(() => {
      controller.abort(
        new ConnectionError(
          "CONNECT_TIMEOUT",
          `Could not connect to ${host}:${port}: timed out after ${connectTimeout} ms while ${
            phase || "opening the connection"
          }`,
        ),
      );
    }, connectTimeout)
    : undefined;
  const onAbort = () => controller.abort(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  let known = cleartext.get(transport);
  if (known === undefined) cleartext.set(transport, known = new Map());
  const target = JSON.stringify([host, port, config.database, config.user]);
  const remember = (took: boolean) => {
    if (known.size >= CLEARTEXT_MAX) known.clear();
    known.set(target, took);
  };
  let deferCleanup: Promise<void> | undefined;
  const attempt = async (
    tls: TlsSettings | null,
    pipelineConnect: "password" | false,
    early: boolean,
  ): Promise<Connection> => {
    phase = "";
    const stream = await transport.connect({
      host,
      port,
      tls,
      signal: stop,
      keepAlive: config.keepAlive,
      keepAliveInitialDelay: config.keepAliveInitialDelay,
    });
    if (stop.aborted) {
      stream.close();
      throw stop.reason;
    }
    // Cancel requests go the way this connection went: over TLS only if it did.
    const connection = new Connection(
      stream,
      { ...config, pipelineConnect },
      transport,
      stream.encrypted ? tls : null,
    );
    if (options?.onNotice) connection.on("notice", options.onNotice);
    phase = "starting the session (authentication)";
    const abort = () => connection.destroy(stop.reason);
    stop.addEventListener("abort", abort, { once: true });
    try {
      await connection.start({ early });
    } catch (error) {
      stop.removeEventListener("abort", abort);
      throw stop.aborted ? stop.reason : error;
    }
    // Started early, the login is still under way: the deadline and the signal keep applying
    // to it until the first ReadyForQuery.
    const settled = connection.whenReady().then(() => {}, () => {});
    if (early) {
      deferCleanup = settled;
      connection.on("close", (error) => {
        // The server no longer takes a password sent ahead: learn it for the next connect.
        if (error instanceof PipelineRejected) remember(false);
      });
    }
    settled.finally(() => stop.removeEventListener("abort", abort));
    if (pipelineConnect && !early) remember(true);
    return connection;
  };
  let tls: TlsSettings | null = config.sslmode === "disable" ? null : {
    mode: config.sslmode,
    serverName: host,
    ca: config.ca,
    caFile: config.sslrootcert,
    cert: config.cert,
    certFile: config.sslcert,
    key: config.key,
    keyFile: config.sslkey,
    keyPassword: config.sslpassword,
  };
  const setting = config.pipelineConnect ?? transport.pipelineConnect ?? false;
  let pipeline: "password" | false = (setting === "password" || setting === "query") &&
    known.get(target) !== false && "password";
  // Early, connect resolves once the client has written its part of the login, and the first
  // query follows in the same flight. "auth": behind the last authentication message. "query":
  // behind a password sent ahead to a server that took one before (it will again), or, with
  // no password sent ahead, as "auth"; not on a first try, whose password the server may
  // refuse to take ahead (the attempt is then dropped, and the query with it).
  const earlyFor = (sentAhead: "password" | false): boolean =>
    setting === "auth" || (setting === "query" && (!sentAhead || known.get(target) === true));
  let early = earlyFor(pipeline);
  try {
    // Each fallback below happens at most once, so this ends.
    for (;;) {
      try {
        return await attempt(tls, pipeline, early);
      } catch (error) {
        if (stop.aborted) throw error;
        if (error instanceof PipelineRejected && pipeline) {
          // The server wants SCRAM, MD5 or no password at all: the usual exchange, and
          // no password sent ahead to this server again from this transport.
          remember(false);
          early = earlyFor(pipeline = false);
        } else if (
          // libpq's `prefer`: when TLS fails (say, a runtime that insists on verifying a
          // self-signed certificate), connect again without it.
          tls?.mode === "prefer" && error instanceof ConnectionError && error.code === "TLS_FAILED"
        ) {
          tls = null;
        } else throw error;
      }
    }
  } finally {
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (deferCleanup) deferCleanup.then(cleanup);
    else cleanup();
  }
}
