/**
 * The gateway's HTTP face: Neon's SQL-over-HTTP endpoint, `POST /sql`, as a fetch-style handler
 * over web `Request` and `Response` only, so any server (Deno's `serve`, node:http, Workers) can
 * mount it.
 *
 * Queries run through one `QueuePool` per distinct connection string (`manage()`), over TCP:
 * the gateway is itself a pooler. Each request still gets a clean session, as on Neon: the
 * session is reset after it, before the connection is reused (`_session_reset.ts`). It holds no credentials: each connection string carries its
 * own, and PostgreSQL checks them.
 *
 * @module
 */

import { createConnect } from "../src/connect.ts";
import type { Connection } from "../src/connection.ts";
import { ConnectionError, errorMessage, PoolError, PostgresError } from "../src/errors.ts";
import { isConfigError } from "../src/pool/_connector.ts";
import { manage, type ManagedPools } from "../src/pool/manage.ts";
import { runBatch } from "../src/pool/batch.ts";
import type { PooledConnection } from "../src/pool/pooled_connection.ts";
import { QueuePool } from "../src/pool/queue_pool.ts";
import {
  beginStatement,
  type IsolationLevel,
  type TransactionOptions,
} from "../src/pool/transaction.ts";
import type { Transport } from "../src/transport.ts";
import { type ClientLogin, readConnectionString } from "./_client_input.ts";
import { errorJson, paramsFromJson, resultJson } from "./_neon_json.ts";
import { RawTextTap } from "./_raw_text.ts";
import { RequestError } from "./_request_error.ts";
import { returnClean, startReset } from "./_session_reset.ts";
import type { ResolvedGatewayOptions } from "./options.ts";
import { formatTarget, type Target } from "./_target.ts";

const MiB = 1024 * 1024;
/** PostgreSQL's limit: the Bind message counts parameters in 16 bits. */
const MAX_PARAMETERS = 65535;
/** Neon-Batch-Isolation-Level's values, as `batch()` names them. */
const ISOLATION_LEVELS: Record<string, IsolationLevel> = {
  ReadUncommitted: "read uncommitted",
  ReadCommitted: "read committed",
  RepeatableRead: "repeatable read",
  Serializable: "serializable",
};
const BATCH_HEADERS = [
  "Neon-Batch-Isolation-Level",
  "Neon-Batch-Read-Only",
  "Neon-Batch-Deferrable",
] as const;
const PREFLIGHT_HEADERS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
  "Access-Control-Allow-Headers": "Neon-Connection-String, Neon-Raw-Text-Output, " +
    "Neon-Array-Mode, Neon-Batch-Isolation-Level, Neon-Batch-Read-Only, Neon-Batch-Deferrable, " +
    "Neon-Pool-Opt-In, Authorization, Content-Type",
  "Access-Control-Max-Age": "86400",
};

/**
 * Options of {@link createSqlHandler}: the gateway's own (`upstreamSslmode` — TLS to
 * PostgreSQL whatever the client's URL says —, `poolSize` per connection string, `maxPools`,
 * `connectTimeout`, `logger`) and what the core decided from them.
 */
export interface SqlHandlerOptions extends
  Pick<
    ResolvedGatewayOptions,
    "upstreamSslmode" | "poolSize" | "maxPools" | "connectTimeout" | "logger"
  >,
  Partial<Pick<ResolvedGatewayOptions, "upstreamTargetSessionAttrs" | "upstreamLoadBalance">> {
  /** How to reach PostgreSQL (the runtime's TCP transport). */
  transport: Transport;
  /**
   * The upstream, one host or a list: a connection string without a host (or naming any host
   * of it) means it, one without a port its port. A list's pools connect to the first host
   * that has `upstreamTargetSessionAttrs` (default `"any"`).
   */
  upstream: Target | readonly Target[];
  /** Whether a connection string may name `host:port`: the gateway is no open proxy. */
  isAllowed: (target: Target) => boolean;
  /** Largest request body, in bytes; larger ones get 400 (54000). Default 10 MiB. */
  maxRequestBytes?: number;
  /** Largest response body, in bytes; larger results get 400 (54000). Default 10 MiB. */
  maxResponseBytes?: number;
}

/** The handler {@link createSqlHandler} returns. */
export interface SqlHandler {
  /** Answers one HTTP request: `POST /sql`, or the CORS preflight. */
  handle(request: Request): Promise<Response>;
  /** Closes every pool; later requests get 503. */
  close(): Promise<void>;
}

/** One query of a request, checked. */
interface QueryData {
  query: string;
  params: (string | null)[];
  arrayMode: boolean | undefined;
}

/**
 * Makes the `/sql` handler.
 *
 * @example
 * ```ts ignore
 * import { createSqlHandler } from "./sql.ts";
 * import { denoTcp } from "../transports/deno.ts";
 * const upstream = { host: "127.0.0.1", port: 5432 };
 * const sql = createSqlHandler({
 *   transport: denoTcp,
 *   upstream, // or a host list: [{ host: "db1", port: 5432 }, { host: "db2", port: 5432 }]
 *   isAllowed: (target) => target.host === upstream.host && target.port === upstream.port,
 *   upstreamSslmode: "prefer",
 *   poolSize: 10,
 *   maxPools: 100,
 *   connectTimeout: 30_000,
 *   logger: console,
 * });
 * serve((request) => sql.handle(request)); // any fetch-style server
 * ```
 */
export function createSqlHandler(options: SqlHandlerOptions): SqlHandler {
  const { transport, isAllowed, logger, maxPools } = options;
  const upstream = {
    hosts: Array.isArray(options.upstream) ? options.upstream : [options.upstream as Target],
    targetSessionAttrs: options.upstreamTargetSessionAttrs ?? "any",
    loadBalance: options.upstreamLoadBalance ?? "disable",
  };
  const maxRequest = options.maxRequestBytes ?? 10 * MiB;
  const maxResponse = options.maxResponseBytes ?? 10 * MiB;
  const taps = new WeakMap<Connection, RawTextTap>();
  const open = createConnect(() => Promise.resolve(transport));
  // Keyed by the connection string the gateway made from a checked ClientLogin (`key`), which
  // carries no parameter of the client's but application_name.
  const logins = new Map<string, ClientLogin>();
  const pools: ManagedPools<string, Connection> = manage(async (url, signal) => {
    const tap = new RawTextTap();
    const connection = await open(url, {
      transport: tap.transport(transport),
      sslmode: options.upstreamSslmode,
      signal,
      connectTimeout: options.connectTimeout,
      // Unnamed statements only: the DISCARD ALL after each request (_session_reset.ts) would
      // drop a cache's, and while they lived, pg_prepared_statements would show one request
      // the SQL of others.
      statementCache: 0,
      // A row past the response limit is refused anyway; do not buffer a huge one whole.
      maxMessageSize: 2 * maxResponse + MiB,
    }).catch((error) => {
      throw loginRefusal(error) ?? error;
    });
    taps.set(connection, tap);
    return connection;
  }, {
    poolFactory: (creator, url) =>
      new QueuePool(creator, {
        poolSize: options.poolSize,
        logger,
        name: describe(logins.get(url)),
      }),
  });
  let closed = false;
  // Connection strings with a pool, least recently used first (a Map keeps insertion order).
  const recent = new Map<string, true>();

  /** Makes room for `url`'s pool: closes the least recently used idle pool when full. */
  async function admit(url: string): Promise<void> {
    if (recent.delete(url)) return void recent.set(url, true);
    if (recent.size >= maxPools) {
      let victim: string | undefined;
      for (const other of recent.keys()) {
        const stats = pools.pool(other).stats();
        if (
          stats.checkedOut === 0 && stats.requestsWaiting === 0 &&
          stats.poolSize === stats.checkedIn
        ) {
          victim = other;
          break;
        }
      }
      if (victim === undefined) {
        throw new RequestError(
          503,
          "53300",
          `The gateway serves ${maxPools} connection strings at once (maxPools) and all are busy`,
        );
      }
      recent.delete(victim);
      logins.delete(victim);
      await pools.delete(victim);
    }
    recent.set(url, true);
  }

  async function handle(request: Request): Promise<Response> {
    if (request.method === "OPTIONS") {
      return new Response(null, { status: 204, headers: PREFLIGHT_HEADERS });
    }
    try {
      if (closed) throw new RequestError(503, "57P03", "The gateway is shutting down");
      // 400 rather than 404 or 405, as Neon's proxy: its clients read error bodies on 400 only.
      const path = new URL(request.url).pathname;
      if (path !== "/sql") {
        throw new RequestError(
          400,
          "08P01",
          `Not found: ${truncate(path)}; the SQL endpoint is POST /sql`,
        );
      }
      if (request.method !== "POST") {
        throw new RequestError(
          400,
          "08P01",
          `Method ${truncate(request.method)} is not allowed: use POST /sql`,
        );
      }
      return await run(request);
    } catch (error) {
      return failure(error, request);
    }
  }

  async function run(request: Request): Promise<Response> {
    const headers = request.headers;
    const text = headers.get("Neon-Connection-String");
    if (text === null || text.trim() === "") {
      throw new RequestError(400, "08P01", "Missing the Neon-Connection-String header");
    }
    // Everything the client names is checked here, before a file or the network is touched.
    const login = readConnectionString(text, upstream);
    if (headers.has("Authorization")) {
      throw new RequestError(
        400,
        "0A000",
        "JWT authentication (the Authorization header) is not supported by this gateway: " +
          "put the password in the connection string",
      );
    }
    const target = formatTarget(login.target);
    if (!isAllowed(login.target)) {
      throw new RequestError(
        400,
        "42501",
        `The gateway does not connect to ${target}: not allowed`,
      );
    }
    const level = headers.get("Neon-Batch-Isolation-Level");
    if (level !== null && !Object.hasOwn(ISOLATION_LEVELS, level)) {
      throw new RequestError(
        400,
        "08P01",
        `invalid isolation level ${JSON.stringify(truncate(level))}: expected ${
          Object.keys(ISOLATION_LEVELS).join(", ")
        }`,
      );
    }
    const payload = parsePayload(await readBody(request, maxRequest));
    const raw = headers.get("Neon-Raw-Text-Output") === "true";
    const arrayMode = headers.get("Neon-Array-Mode") === "true";
    const url = login.key;
    const who = `${login.user}@${target}/${login.database}`;
    logger.debug?.(
      `gateway /sql: ${who}, ${Array.isArray(payload) ? `batch of ${payload.length}` : "query"}`,
    );

    const signal = request.signal;
    let conn: PooledConnection<Connection>;
    await admit(url);
    logins.set(url, login);
    try {
      conn = await pools.connect(url, { signal });
    } catch (error) {
      // A wrong password or a missing database will not improve: drop the pool it made (unless
      // others still wait on it: they get their own error first).
      const pool = pools.pool(url);
      if (isConfigError(error) && pool.stats().requestsWaiting === 0) {
        recent.delete(url);
        logins.delete(url);
        await pools.delete(url).catch(() => {});
      }
      if (
        login.upstream && upstream.hosts.length > 1 &&
        (error instanceof ConnectionError || error instanceof PoolError)
      ) {
        // The message names every host of the list and why it was passed over: the
        // operator's to read, not the client's.
        logger.warn?.(`gateway /sql: ${who}: ${errorMessage(error)}`);
        const attrs = upstream.targetSessionAttrs;
        const which = attrs === "any"
          ? ""
          : ` as a ${attrs} server (target_session_attrs=${attrs})`;
        throw error instanceof PoolError
          ? new RequestError(
            503,
            "53300",
            `Cannot check out a connection to the upstream (${error.code}): no server of it ` +
              `took the connection${which} in time`,
          )
          : new RequestError(
            502,
            "08001",
            `Cannot reach the database: no server of the upstream took the connection${which}`,
          );
      }
      throw error;
    }
    const tap = taps.get(conn.connection)!;
    // Settled by runQueries once the reset is written behind the request's statements.
    let clean: Promise<boolean> = Promise.resolve(false);
    const reset = (started: Promise<boolean>) => void (clean = started);
    try {
      const json = { raw, arrayMode, maxResponse };
      let body: unknown;
      const extra: Record<string, string> = {};
      if (!Array.isArray(payload)) {
        body = (await runQueries(conn, tap, [payload], null, json, signal, reset))[0];
      } else {
        body = {
          results: await runQueries(
            conn,
            tap,
            payload,
            {
              isolation: level === null ? undefined : ISOLATION_LEVELS[level],
              readOnly: headers.get("Neon-Batch-Read-Only") === "true" || undefined,
              deferrable: headers.get("Neon-Batch-Deferrable") === "true" || undefined,
            },
            json,
            signal,
            reset,
          ),
        };
        for (const name of BATCH_HEADERS) {
          const value = headers.get(name);
          if (value !== null && (name === BATCH_HEADERS[0] || value === "true")) {
            extra[name] = value;
          }
        }
      }
      const bytes = new TextEncoder().encode(JSON.stringify(body));
      if (bytes.length > maxResponse) throw new ResponseTooLarge(maxResponse);
      return new Response(bytes, {
        status: 200,
        headers: {
          "Content-Type": "application/json",
          "Access-Control-Allow-Origin": "*",
          ...extra,
        },
      });
    } finally {
      // The next request must not see this one's session: the connection goes back only once
      // its reset has answered (or it is closed).
      await returnClean(conn, clean);
    }
  }

  function failure(error: unknown, request: Request): Response {
    if (error instanceof RequestError) {
      return respond(error.status, errorJson(error.message, undefined, error.code));
    }
    const pg = postgresErrorIn(error);
    if (pg !== undefined) return respond(400, errorJson(pg.message, pg));
    if (request.signal.aborted) {
      return respond(
        400,
        errorJson("Query cancelled, connection was terminated", undefined, "08P01"),
      );
    }
    const code = (error as { code?: unknown })?.code;
    const message = errorMessage(error);
    if (error instanceof ConnectionError) {
      if (code === "AUTH_FAILED") return respond(400, errorJson(message, undefined, "28000"));
      logger.warn?.(`gateway /sql: ${message}`);
      return respond(502, errorJson(`Cannot reach the database: ${message}`, undefined, "08001"));
    }
    if (error instanceof PoolError) {
      logger.warn?.(`gateway /sql: ${message}`);
      return respond(503, errorJson(message, undefined, "53300"));
    }
    logger.error?.(`gateway /sql: internal error: ${message}`);
    return respond(500, errorJson(`Internal error: ${message}`, undefined, "XX000"));
  }

  return {
    handle,
    async close() {
      closed = true;
      await pools.close();
    },
  };
}

/** The result is larger than the response limit: the request asked for too much. */
class ResponseTooLarge extends RequestError {
  constructor(max: number) {
    super(400, "54000", `response is too large (max is ${max} bytes)`);
  }
}

/**
 * Runs one query alone (`begin` null), or several as one transaction: the pool's `runBatch`
 * writes BEGIN, the statements and COMMIT in one flight, and a failing statement's own error
 * is the batch's. Values come back as the server's text through `tap`, which also stops the
 * request once its rows pass `maxResponse` bytes. Each query keeps its own `arrayMode`.
 * `reset` gets the session reset, started behind the queries in the same flight.
 */
async function runQueries(
  conn: PooledConnection<Connection>,
  tap: RawTextTap,
  queries: QueryData[],
  begin: TransactionOptions | null,
  json: { raw: boolean; arrayMode: boolean; maxResponse: number },
  signal: AbortSignal,
  reset: (clean: Promise<boolean>) => void,
): Promise<Record<string, unknown>[]> {
  const tooLarge = new AbortController();
  tap.forget();
  tap.budget = {
    limit: json.maxResponse,
    used: 0,
    exceeded: () => tooLarge.abort(new ResponseTooLarge(json.maxResponse)),
  };
  const options = { rowMode: "array" as const, signal: AbortSignal.any([signal, tooLarge.signal]) };
  try {
    // Both write their statements before their first await: the reset goes right behind.
    const running = begin === null
      ? conn.query<unknown[]>(queries[0].query, queries[0].params, options).then((r) => [r])
      : runBatch<Connection, unknown[]>(
        conn,
        beginStatement(begin),
        queries.map((q) => ({ sql: q.query, params: q.params })),
        options,
      );
    reset(startReset(conn));
    const results = await running;
    return results.map((result, i) =>
      resultJson(
        result,
        tap.originalFields(result.fields),
        json.raw,
        queries[i].arrayMode ?? json.arrayMode,
      )
    );
  } catch (error) {
    // The connection refuses what cannot be sent with a TypeError or RangeError, before it
    // sends anything: the request's fault.
    if (error instanceof RangeError) throw new RequestError(400, "54000", error.message);
    if (error instanceof TypeError) throw new RequestError(400, "08P01", error.message);
    throw error;
  } finally {
    tap.budget = null;
  }
}

async function readBody(request: Request, limit: number): Promise<string> {
  const tooLarge = () =>
    new RequestError(400, "54000", `The request body is larger than the limit of ${limit} bytes`);
  if (Number(request.headers.get("Content-Length")) > limit) throw tooLarge();
  if (request.body === null) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let read;
    try {
      read = await reader.read();
    } catch (error) {
      // The client went away or sent a malformed body (chunked encoding, length).
      throw new RequestError(
        400,
        "08P01",
        `The request body could not be read: ${errorMessage(error)}`,
      );
    }
    const { done, value } = read;
    if (done) break;
    size += value.length;
    if (size > limit) {
      reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new RequestError(400, "08P01", "The request body is not valid UTF-8");
  }
}

/** `{query, params, arrayMode}` or `{queries: [...]}`, checked. */
function parsePayload(text: string): QueryData | QueryData[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new RequestError(
      400,
      "08P01",
      `The request body is not valid JSON: ${errorMessage(error)}`,
    );
  }
  const shape = 'expected {"query": "...", "params": [...]} or {"queries": [...]}';
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new RequestError(400, "08P01", `The request body must be a JSON object: ${shape}`);
  }
  const object = body as Record<string, unknown>;
  if ("query" in object) return queryData(object, "The request body");
  if (!Array.isArray(object.queries)) {
    throw new RequestError(
      400,
      "08P01",
      `The request body has neither "query" nor "queries": ${shape}`,
    );
  }
  return object.queries.map((q, i) => {
    if (typeof q !== "object" || q === null || Array.isArray(q)) {
      throw new RequestError(
        400,
        "08P01",
        `queries[${i}] must be an object: {"query": "...", "params": [...]}`,
      );
    }
    return queryData(q as Record<string, unknown>, `queries[${i}]`);
  });
}

function queryData(object: Record<string, unknown>, where: string): QueryData {
  if (typeof object.query !== "string") {
    throw new RequestError(400, "08P01", `${where}: "query" must be a string`);
  }
  if (object.arrayMode !== undefined && typeof object.arrayMode !== "boolean") {
    throw new RequestError(400, "08P01", `${where}: "arrayMode" must be a boolean`);
  }
  if (Array.isArray(object.params) && object.params.length > MAX_PARAMETERS) {
    throw new RequestError(
      400,
      "54000",
      `${where}: a query takes at most ${MAX_PARAMETERS} parameters, got ${object.params.length}`,
    );
  }
  let params;
  try {
    params = paramsFromJson(object.params, where);
  } catch (error) {
    throw new RequestError(400, "08P01", errorMessage(error));
  }
  // PostgreSQL's text has no NUL, and the protocol ends strings at one: refused here, before it
  // could cut a message short on a pooled connection.
  if (object.query.includes("\0") || params.some((p) => p !== null && p.includes("\0"))) {
    throw new RequestError(
      400,
      "22021",
      `${where}: invalid byte sequence for encoding "UTF8": 0x00 (a NUL character)`,
    );
  }
  return { query: object.query, params, arrayMode: object.arrayMode as boolean | undefined };
}

/** An answer with Neon's JSON; a 503 says when to try again (in seconds). */
export function respond(status: number, body: unknown): Response {
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    "Access-Control-Allow-Origin": "*",
  };
  if (status === 503) headers["Retry-After"] = "1";
  return new Response(JSON.stringify(body), { status, headers });
}

/** A pool name for logs: who and where, without the password. */
function describe(login: ClientLogin | undefined): string {
  if (login === undefined) return "gateway";
  return `gateway ${login.user}@${formatTarget(login.target)}/${login.database}`;
}

/** A client's text, cut short for a message. */
function truncate(text: string): string {
  return text.length > 100 ? text.slice(0, 100) + "..." : text;
}

/**
 * A host list's server that refused the login itself (a wrong password, no such database:
 * SQLSTATE class 28, 3D000), when another host was down: that answer, which waiting for the
 * other host would not change (the servers of one upstream share their roles), rather than
 * the list's CONNECT_FAILED, which the pool would retry until its deadline.
 */
function loginRefusal(error: unknown): PostgresError | undefined {
  if (!(error instanceof ConnectionError) || error.code !== "CONNECT_FAILED") return undefined;
  const errors = error.cause instanceof AggregateError ? error.cause.errors : [];
  return errors.find((e): e is PostgresError =>
    e instanceof PostgresError && (e.code.startsWith("28") || e.code === "3D000")
  );
}

function postgresErrorIn(error: unknown): PostgresError | undefined {
  for (let e = error, depth = 0; e !== undefined && depth < 5; depth++) {
    if (e instanceof PostgresError) return e;
    e = (e as { cause?: unknown } | null)?.cause;
  }
  return undefined;
}
