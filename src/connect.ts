/**
 * Opening connections: URL and options in, a ready {@link Connection} out.
 *
 * @module
 */

import { PipelineRejected } from "./_auth.ts";
import { sessionRefusal, shuffled } from "./_session_attrs.ts";
import {
  type ConfigDefaults,
  type ConnectionConfig,
  type ConnectOptions,
  parseConfig,
} from "./config.ts";
import { Connection } from "./connection.ts";
import { ConnectionError, errorMessage } from "./errors.ts";
import { isTransientConnectError } from "./pool/_connector.ts";
import { serverAddress, type TlsSettings, type Transport } from "./transport.ts";
import type { TargetSessionAttrs } from "./url.ts";

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

/**
 * Opens a connection to the one host of `config`, or, given several hosts or session
 * attributes to look for, to the first host that takes it and has them (see `openAny`).
 */
function openConnection(
  config: ConnectionConfig,
  transport: Transport,
  options: ConnectOptions | undefined,
): Promise<Connection> {
  return config.hosts.length === 1 && config.targetSessionAttrs === "any"
    ? openHost(config, transport, options)
    : openAny(config, transport, options);
}

/**
 * libpq's multi-host connect: tries the hosts in order (shuffled with `loadBalanceHosts`), each
 * within its own `connectTimeout`, and keeps the first connection whose server has the
 * `targetSessionAttrs` asked for (`prefer-standby`: a standby, else the first that took the
 * connection). Fails, once every host was tried, with an error that names each one and why it
 * was passed over: the first host's own error when none could have worked by trying again (a
 * wrong password everywhere), else `CONNECT_FAILED`, which a pool retries within its callers'
 * deadlines (a failover under way: the old primary down, the standby not yet promoted).
 */
async function openAny(
  config: ConnectionConfig,
  transport: Transport,
  options: ConnectOptions | undefined,
): Promise<Connection> {
  const attrs = config.targetSessionAttrs;
  const hosts = config.loadBalanceHosts ? shuffled(config.hosts) : config.hosts;
  const refusals: string[] = [];
  const errors: unknown[] = [];
  let fallback: Connection | null = null;
  for (const { host, port } of hosts) {
    options?.signal?.throwIfAborted();
    const where = host.includes(":") ? `[${host}]:${port}` : serverAddress(host, port);
    let connection: Connection | null = null;
    let why: string | null;
    try {
      connection = await openHost(
        { ...config, host, port, hosts: [{ host, port }] },
        transport,
        options,
      );
      await connection.whenReady();
      why = await refusal(connection, attrs === "prefer-standby" ? "standby" : attrs);
    } catch (error) {
      connection?.destroy(error);
      // The caller's abort ends the search; any other failure passes on to the next host.
      if (options?.signal?.aborted) throw error;
      errors.push(error);
      const message = errorMessage(error);
      refusals.push(message.includes(where) ? message : `${where}: ${message}`);
      continue;
    }
    if (why === null) {
      fallback?.close().catch(() => {});
      return connection;
    }
    if (attrs === "prefer-standby" && fallback === null) {
      fallback = connection;
      continue;
    }
    connection.close().catch(() => {});
    refusals.push(`${where}: ${why}`);
    errors.push(new ConnectionError("CONNECT_FAILED", `${where} ${why}`));
  }
  if (fallback !== null) return fallback;
  // Nothing retrying could fix (a wrong password, a missing database on every host): that error.
  if (errors.length > 0 && !errors.some(isTransientConnectError)) throw errors[0];
  const wanted = attrs === "any"
    ? `any of ${hosts.length} hosts`
    : `a ${attrs} server (target_session_attrs=${attrs}) among ${hosts.length} hosts`;
  throw new ConnectionError(
    "CONNECT_FAILED",
    `Could not connect to ${wanted}: ${refusals.join("; ")}`,
    {
      cause: new AggregateError(errors, "every host was passed over"),
    },
  );
}

/**
 * Why the server of `connection` does not have the session attributes `want` (`null`: it has
 * them), from the settings it reports at login (PostgreSQL 14 and later), else by a query.
 */
async function refusal(
  connection: Connection,
  want: TargetSessionAttrs,
): Promise<string | null> {
  if (want === "any") return null;
  let standby = connection.parameters.in_hot_standby;
  let readOnly = connection.parameters.default_transaction_read_only;
  if (standby === undefined || readOnly === undefined) {
    const { rows } = await connection.query<{ standby: string; read_only: string }>(
      "select case when pg_is_in_recovery() then 'on' else 'off' end as standby, " +
        "current_setting('transaction_read_only') as read_only",
    );
    ({ standby, read_only: readOnly } = rows[0]);
  }
  return sessionRefusal(want, standby, readOnly);
}

async function openHost(
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
          `Could not connect to ${
            serverAddress(host, port)
          }: timed out after ${connectTimeout} ms while ${phase || "opening the connection"}`,
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
