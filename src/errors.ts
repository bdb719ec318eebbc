/**
 * Stable codes carried by {@link ConnectionError}. They never change between releases, so code
 * may branch on them.
 *
 * - `CONNECTION_LOST`: the connection broke (socket closed, server terminated the backend) while
 *   queries were pending; every pending query rejects with it.
 * - `CONNECTION_CLOSED`: a query was issued on a connection that was already closed.
 * - `CONNECT_TIMEOUT`: connecting (transport, TLS and authentication) took longer than
 *   `connectTimeout`.
 * - `CONNECT_FAILED`: the transport could not reach the server (refused, unreachable, DNS).
 * - `TLS_UNAVAILABLE`: TLS was required but the server or the transport cannot provide it.
 * - `TLS_FAILED`: the TLS handshake or certificate verification failed.
 * - `AUTH_FAILED`: authentication could not proceed (unsupported method, a SCRAM server
 *   signature that does not verify). A wrong password is a {@link PostgresError} (28P01).
 * - `PROTOCOL_ERROR`: the server sent bytes that are not valid PostgreSQL protocol.
 * - `QUERY_TIMEOUT`: a query took longer than its `queryTimeout`; a CancelRequest was sent and
 *   the connection closed (the other queries pending on it reject with `CONNECTION_CLOSED`).
 * - `UNSUPPORTED`: the statement needs something edgepool does not do yet: `COPY ... FROM
 *   STDIN` or `COPY ... TO STDOUT` (the query rejects and the connection stays usable), or
 *   replication's CopyBoth mode (the connection is closed).
 */
export type ConnectionErrorCode =
  | "CONNECTION_LOST"
  | "CONNECTION_CLOSED"
  | "CONNECT_TIMEOUT"
  | "CONNECT_FAILED"
  | "TLS_UNAVAILABLE"
  | "TLS_FAILED"
  | "AUTH_FAILED"
  | "PROTOCOL_ERROR"
  | "QUERY_TIMEOUT"
  | "UNSUPPORTED";

/**
 * An error of the connection itself rather than of a query: see {@link ConnectionErrorCode}.
 * The underlying error, when there is one, is in `cause`.
 *
 * @example
 * ```ts
 * import { ConnectionError } from "@edgepool/edgepool";
 * const err = new ConnectionError("CONNECTION_LOST", "Connection lost: socket closed");
 * console.assert(err.code === "CONNECTION_LOST");
 * ```
 */
export class ConnectionError extends Error {
  /** The stable code of this error. */
  declare readonly code: ConnectionErrorCode;

  /** Makes an error with a stable `code`, a message and an optional `cause`. */
  constructor(code: ConnectionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConnectionError";
    this.code = code;
  }
}

/**
 * The fields of an ErrorResponse or NoticeResponse, named as in the PostgreSQL documentation
 * ("Error and Notice Message Fields"). Fields the server did not send are absent.
 */
export interface PostgresErrorFields {
  /** Severity, localized (`S`), e.g. `ERREUR`. */
  severityLocalized?: string;
  /** Severity, never localized (`V`): `ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`, ... */
  severity: string;
  /** SQLSTATE code (`C`), e.g. `23505`. */
  code: string;
  /** Primary message (`M`). */
  message: string;
  /** Detail (`D`). */
  detail?: string;
  /** Hint (`H`). */
  hint?: string;
  /** 1-based character position in the query string (`P`). */
  position?: number;
  /** Position in an internally generated query (`p`). */
  internalPosition?: number;
  /** The internally generated query (`q`). */
  internalQuery?: string;
  /** Context, such as a call stack of PL/pgSQL functions (`W`). */
  where?: string;
  /** Schema name (`s`). */
  schema?: string;
  /** Table name (`t`). */
  table?: string;
  /** Column name (`c`). */
  column?: string;
  /** Data type name (`d`). */
  dataType?: string;
  /** Constraint name (`n`). */
  constraint?: string;
  /** Source file of the server (`F`). */
  file?: string;
  /** Source line of the server (`L`). */
  line?: number;
  /** Source routine of the server (`R`). */
  routine?: string;
}

/**
 * An error reported by the PostgreSQL server. It carries every field the server sent; `code` is
 * the SQLSTATE (`28P01` for a wrong password, `23505` for a unique violation, ...).
 *
 * @example
 * ```ts
 * import { PostgresError } from "@edgepool/edgepool";
 * const err = new PostgresError({ severity: "ERROR", code: "23505", message: "duplicate key" });
 * console.assert(err.code === "23505" && err.message === "duplicate key");
 * ```
 */
export class PostgresError extends Error implements PostgresErrorFields {
  // `declare`: the fields come from Object.assign below; those the server did not send stay
  // absent, and the class carries no initialiser for each.
  declare severityLocalized?: string;
  declare severity: string;
  declare code: string;
  declare detail?: string;
  declare hint?: string;
  declare position?: number;
  declare internalPosition?: number;
  declare internalQuery?: string;
  declare where?: string;
  declare schema?: string;
  declare table?: string;
  declare column?: string;
  declare dataType?: string;
  declare constraint?: string;
  declare file?: string;
  declare line?: number;
  declare routine?: string;

  /** Makes an error from the fields of an ErrorResponse. */
  constructor(fields: PostgresErrorFields) {
    super(fields.message);
    this.name = "PostgresError";
    Object.assign(this, fields);
  }
}

/** A NoticeResponse from the server: the same fields as an error, at a lower severity. */
export type PostgresNotice = PostgresErrorFields;

/**
 * Stable codes carried by {@link PoolError}.
 *
 * - `POOL_TIMEOUT`: no connection could be checked out within the checkout deadline (which
 *   covers waiting, connecting and the health check), or `wait()` timed out.
 * - `TOO_MANY_WAITERS`: `maxWaiting` callers were already waiting; this one failed at once.
 * - `POOL_CLOSED`: the pool is closed (or closed while the caller waited).
 * - `CONNECTION_LOST`: the pooled connection broke (a driver's disconnect error, wrapped).
 * - `RELEASED`: a checked-out connection was used or released after it was released.
 * - `ALREADY_CHECKED_OUT`: `AssertionPool` was asked for a second connection at once.
 * - `ROLLED_BACK`: `transaction()` asked to COMMIT and the server rolled back instead, because a
 *   statement in the transaction had failed.
 * - `UNSUPPORTED`: the pool cannot do this over its transport: a transaction over HTTP, which
 *   has no session (`transaction()`, or `BEGIN` through `query()` or a checkout's `query()`;
 *   use `batch()` there).
 * - `TRANSACTION_LEFT_OPEN`: a `pool.query` statement left its connection inside a
 *   transaction; it was rolled back (use `transaction()`, or a connection from `connect()`).
 */
export type PoolErrorCode =
  | "POOL_TIMEOUT"
  | "TOO_MANY_WAITERS"
  | "POOL_CLOSED"
  | "CONNECTION_LOST"
  | "RELEASED"
  | "ALREADY_CHECKED_OUT"
  | "ROLLED_BACK"
  | "UNSUPPORTED"
  | "TRANSACTION_LEFT_OPEN";

/**
 * An error of a pool: see {@link PoolErrorCode}. The underlying error, when there is one (the
 * last connect failure behind a timeout, say), is in `cause`.
 *
 * @example
 * ```ts
 * import { PoolError } from "@edgepool/edgepool";
 * const err = new PoolError("POOL_CLOSED", "Cannot check out a connection: the pool is closed");
 * console.assert(err.code === "POOL_CLOSED");
 * ```
 */
export class PoolError extends Error {
  /** The stable code of this error. */
  declare readonly code: PoolErrorCode;

  /** Makes an error with a stable `code`, a message and an optional `cause`. */
  constructor(code: PoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PoolError";
    this.code = code;
  }
}

/** The message of an error, or the thrown value as a string (for messages and logs). */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A pool's background error, as its `error` event delivers it (a connection failing while
 * idle, a failed background connect, a failed reset): an Error, as pg's pool emits one, so
 * that `pool.on("error", (err) => log(err.message))` works as written for pg; it also says
 * where it happened (`context`), on which connection, and holds the error itself (`error`,
 * also the `cause`).
 *
 * @example
 * ```ts
 * import { PoolEventError } from "@edgepool/edgepool";
 * const event = new PoolEventError(new Error("connection reset"), "idle");
 * console.assert(event.message === "idle: connection reset" && event.context === "idle");
 * ```
 */
export class PoolEventError<C = unknown> extends Error {
  /** The error itself. */
  readonly error: unknown;
  /** Where it happened: `connect`, `idle`, `reset`, `reconnect failed`, ... */
  readonly context: string;
  /** The connection it happened on, when there is one. */
  readonly connection?: C;

  /** Wraps `error`, which happened in `context` (on `connection`). */
  constructor(error: unknown, context: string, connection?: C) {
    super(`${context}: ${errorMessage(error)}`, { cause: error });
    this.name = "PoolEventError";
    this.error = error;
    this.context = context;
    if (connection !== undefined) this.connection = connection;
  }
}
