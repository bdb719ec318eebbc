/**
 * A PostgreSQL protocol 3.0 session over any {@link Transport}.
 *
 * @module
 */

import { Authenticator } from "./_auth.ts";
import {
  parseErrorFields,
  parseNotification,
  parseParameterStatus,
  protocolError,
  Reader,
  readInt32,
  truncated,
  typeName,
} from "./_backend.ts";
import { cancelQuietly, sendCancelRequest } from "./_cancel.ts";
import { Emitter } from "./_emitter.ts";
import * as frontend from "./_frontend.ts";
import { ColumnTypes, TYPE_LOOKUP, type TypeRow } from "./_column_types.ts";
import { checkRowMode, encodeParams, PendingQuery } from "./_query.ts";
import { type BindValue, encodeBound, textOnly } from "./_binary_params.ts";
import {
  checkSerializers,
  Describe,
  encodeTypedParams,
  ParamTypes,
  type Serializers,
  type Waiter,
} from "./_param_types.ts";
import {
  checkCopy,
  checkSource,
  type CopyFromOptions,
  CopyIn,
  CopyOut,
  type CopySource,
  type CopyToOptions,
  CopyToStream,
  FROM_HIGH_WATER,
  TO_HIGH_WATER,
} from "./copy.ts";
import { type Statement, StatementCache } from "./_statement_cache.ts";
import { runTemplate } from "./sql.ts";
import {
  type Batch,
  Cursor,
  PORTAL,
  type PortalStep,
  RowStream,
  type StreamOptions,
} from "./cursor.ts";
import { Writer } from "./_writer.ts";
import type { ConnectionConfig } from "./config.ts";
import { ConnectionError, PostgresError } from "./errors.ts";
import {
  fromConfig,
  type QueryConfig,
  type QueryOptions,
  type QueryResult,
  type RowMode,
  type TypeParsers,
} from "./result.ts";
import type { ByteStream, TlsSettings, Transport } from "./transport.ts";
import type { TargetSessionAttrs } from "./url.ts";
import type { ConnectionEvents, TransactionStatus } from "./connection_events.ts";

export type { ConnectionEvents, Notification, TransactionStatus } from "./connection_events.ts";

// The session's states, in the order it goes through them (numbers: the bundle is smaller).
const STARTUP = 0;
const READY = 1;
const CLOSING = 2;
const CLOSED = 3;
type State = typeof STARTUP | typeof READY | typeof CLOSING | typeof CLOSED;

/**
 * An open PostgreSQL session. Get one with `connect(url)`; close it with `close()` or
 * `await using`.
 *
 * Queries issued together are pipelined: they are written to the server in one flight and
 * answered in order. A query error leaves the connection usable; a lost connection rejects
 * every pending query with a `ConnectionError` whose code is `CONNECTION_LOST`.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@edgepool/edgepool";
 * await using conn = await connect("postgres://app:secret@localhost/app");
 * const { rows } = await conn.query("select $1::int + 1 as n", [41]);
 * console.log(rows[0].n); // 42
 * ```
 */
export class Connection implements AsyncDisposable {
  readonly #stream: ByteStream;
  readonly #config: ConnectionConfig;
  readonly #transport: Transport;
  readonly #tls: TlsSettings | null;
  readonly #reader: Reader;
  readonly #writer = new Writer();
  readonly #events = new Emitter<ConnectionEvents>();
  readonly #queue: PendingQuery[] = [];
  #state: State = STARTUP;
  #flushScheduled = false;
  #transactionStatus: TransactionStatus = "idle";
  #parameters: Record<string, string> = {};
  /** Prepared statements (`statementCache`), null without that cache. */
  readonly #statements: StatementCache | null;
  /** A CancelRequest on its way: writes wait for it (see `cancel()`). */
  #cancelling: Promise<void> | null = null;
  /** The same request's delivery, for a second `cancel()` meanwhile (an abort, then the pool). */
  #cancelSent: Promise<void> | null = null;
  #processId = 0;
  #secretKey: Uint8Array | null = null;
  /** A FATAL/PANIC error from the server: the reason the connection is about to end. */
  #fatal: PostgresError | null = null;
  /**
   * The startup phase: the StartupMessage, authentication, BackendKeyData, and the first
   * ReadyForQuery, which ends it (`null` from then on).
   */
  #auth: Authenticator | null;
  /**
   * Messages that arrived while an authentication step was still working (whole messages,
   * type byte first), replayed in order after it. The server may send AuthenticationOk and more
   * right behind a SASL message; nothing may be read until that step is done, or a server could
   * skip the proof.
   */
  #held: Uint8Array[] | null = null;
  #startup: { resolve: () => void; reject: (error: unknown) => void } | null = null;
  #closed: Promise<void>;
  /** The first ReadyForQuery (or the failure to get there). */
  #ready: Promise<void> | null = null;
  /** Resolves when an early start has written the startup and the password. */
  #earlyStart: Promise<void> | null = null;
  /** Started early: queries may be written before the first ReadyForQuery. */
  #early = false;
  /** Early start: takes the login's last bytes, written and not yet sent. */
  #loginWritten: (() => void) | null = null;
  /** Early start: the timer that sends the login's last bytes if no query joins them first. */
  #hold: ReturnType<typeof setTimeout> | undefined;
  #resolveClosed!: () => void;
  /** The `queryTimeout` timer, armed for `#timeoutAt` (clock time), the earliest deadline. */
  #timeoutTimer: ReturnType<typeof setTimeout> | undefined;
  #timeoutAt = Infinity;
  /**
   * A query that may run `COPY ... FROM STDIN`, sent and not yet answered: bytes written after
   * it wait for its ReadyForQuery, because a server in COPY-in mode would read them as COPY
   * messages (and swallow the next query). A describe of parameter types is held the same
   * way: the queries waiting for it take their places right behind it (see `#sendDescribed`).
   */
  #copyGuard: PendingQuery | null = null;
  /** Such queries written and not yet sent, with where their bytes end in the writer. */
  readonly #copyGuards: { query: PendingQuery; end: number }[] = [];
  /** The parsers of columns, for queries without their own `types`. */
  readonly #columns: ColumnTypes;
  /** The connection's `types` in pg's shape, which stand for a query's own. */
  readonly #types: TypeParsers | undefined;
  /** The connection's `serializers`, by OID. */
  readonly #serializers: Serializers | undefined;
  /** Parameter types by SQL text, for serializers (see _param_types.ts); made on first use. */
  #paramTypes: ParamTypes | null = null;
  /**
   * Queries that wait for their parameter types, in the order of their places in the writer:
   * each one's bytes go there once the types are known (bytes after a describe wait for its
   * answer, so no place is sent empty).
   */
  readonly #holes: Waiter[] = [];

  /** Use `connect()`; this constructor is internal. */
  constructor(
    stream: ByteStream,
    config: ConnectionConfig,
    transport: Transport,
    tls: TlsSettings | null,
  ) {
    this.#stream = stream;
    this.#config = config;
    this.#transport = transport;
    this.#tls = tls;
    this.#statements = config.statementCache > 0
      ? new StatementCache(config.statementCache, config.statementCacheCautious)
      : null;
    this.#serializers = config.serializers;
    const types = config.types;
    this.#types = types instanceof Map ? undefined : types as TypeParsers | undefined;
    this.#columns = new ColumnTypes(
      types instanceof Map ? types : undefined,
      config.bigint,
      (oids) => this.#lookUpTypes(oids),
    );
    this.#reader = new Reader(config.maxMessageSize, (type, buf, start, end) => {
      if (this.#auth !== null) this.#receive(type, buf, start, end);
      else this.#message(type, buf, start, end);
    });
    this.#auth = new Authenticator(config, this.#writer);
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** Transaction status from the latest ReadyForQuery. */
  get transactionStatus(): TransactionStatus {
    return this.#transactionStatus;
  }

  /** Settings the server reported with ParameterStatus (`server_version`, `TimeZone`, ...). */
  get parameters(): Readonly<Record<string, string>> {
    return this.#parameters;
  }

  /**
   * The server this connection was asked for (`targetSessionAttrs`): a pool whose connections
   * want one that takes writes retires them all when one finds its server read-only.
   */
  get targetSessionAttrs(): TargetSessionAttrs {
    return this.#config.targetSessionAttrs;
  }

  /** Backend process ID (from BackendKeyData), 0 if the server sent none. */
  get processId(): number {
    return this.#processId;
  }

  /** Whether TLS protects the connection. */
  get encrypted(): boolean {
    return this.#stream.encrypted;
  }

  /** Whether the connection is closed or closing: no new queries are accepted. */
  get closed(): boolean {
    return this.#state >= CLOSING;
  }

  /**
   * Started early (`pipelineConnect` `"auth"` or `"query"`) and the login is still under way:
   * queries may already be issued, and its outcome reaches them (`whenReady()` settles with it).
   */
  get loggingIn(): boolean {
    return this.#state === STARTUP && this.#early;
  }

  /** Queries written and not yet answered. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof ConnectionEvents>(
    event: K,
    listener: (value: ConnectionEvents[K]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  /**
   * Runs a query. With `params` (even `[]`) it uses the extended protocol, `$1`, `$2`, ...
   * standing for the parameters, and a statement of the `statementCache` (prepared on first
   * use, reused after), or the unnamed statement without that cache. Without `params`, one
   * plannable statement (`select`, `with`, `insert`, `update`, `delete`, `values`, `table`,
   * `merge`; a trailing `;` allowed) is prepared the same way, and anything else (several
   * statements in one string, `set`, `begin`, DDL, COPY, a string that starts with a comment)
   * runs on the simple protocol. pg's form, `query({ text, values, rowMode,
   * types, name }, values?)`, does the same (see {@link QueryConfig}), and so does a template
   * made by the `sql` tag (`query(template)`; `conn.sql` runs one directly).
   */
  query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>>;
  /** pg's form: the query config object, and parameters that take the place of its `values`. */
  query<Row = Record<string, unknown>>(
    config: QueryConfig,
    params?: readonly unknown[],
  ): Promise<QueryResult<Row>>;
  /**
   * A {@link Cursor} (pg-cursor's shape, as Kysely's `stream()` passes one): binds it to this
   * connection and returns it, to `read(n)` rows from.
   */
  query<T extends Cursor<unknown>>(cursor: T): T;
  query<Row = Record<string, unknown>>(
    sql: string | QueryConfig | Cursor<unknown>,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>> | Cursor<unknown> {
    if (sql instanceof Cursor) return sql.attach({ host: this, release: noop });
    if (this.#state !== READY && !(this.#state === STARTUP && this.#early)) {
      return Promise.reject(
        new ConnectionError("CONNECTION_CLOSED", "Cannot run a query: the connection is closed"),
      );
    }
    if (typeof sql !== "string") {
      try {
        ({ sql, params, options } = fromConfig(sql, params, options));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let values: BindValue[] | undefined;
    /** The parameters, when some of `values` are binary (see _binary_params.ts). */
    let binary: readonly unknown[] | undefined;
    /** How the parameters (an array) become text, by their types when known. */
    let text: ((params: readonly unknown[]) => (string | null)[]) | undefined;
    let rowMode: RowMode;
    let timeout = this.#config.queryTimeout;
    const types = options?.types ?? this.#types;
    // Serialized by the types of the parameters (`serializers`), learned from the server first
    // if not known yet (`held`): only with serializers and parameters.
    let typed = false;
    let held = false;
    let own: Serializers | undefined;
    try {
      own = checkSerializers(options?.serializers, "serializers");
      if (
        (own ?? this.#serializers) !== undefined && Array.isArray(params) && params.length > 0 &&
        params.length <= 65535
      ) {
        typed = true;
        const oids = this.#paramTypes?.get(sql);
        const shared = this.#serializers;
        if (oids === undefined) held = true;
        else text = (list) => encodeTypedParams(list, oids, own, shared);
      } else if (Array.isArray(params)) text = encodeText;
      else values = encodeParams(params);
      if (text !== undefined) {
        // A cached statement with parameters of types sent in binary: looked up only while the
        // connection has one.
        const statement = this.#statements?.bindable(sql, this.#transactionStatus === "idle");
        if (statement === undefined) values = text(params!);
        else {
          values = encodeBound(params!, statement.params!, own, this.#serializers, text);
          binary = params;
        }
      }
      if (
        values === undefined && options?.name === undefined && this.#statements !== null &&
        this.#statements.usable(this.#transactionStatus === "idle") && preparable(sql)
      ) {
        // One plannable statement without parameters is prepared like one with them: its later
        // runs skip the server's parse and plan (and Describe), where a simple Query pays both
        // every time.
        values = NO_VALUES;
      }
      rowMode = checkRowMode(options?.rowMode);
      if (options?.queryTimeout !== undefined) timeout = checkTimeout(options.queryTimeout);
      if (types !== undefined && typeof types?.getTypeParser !== "function") {
        throw new TypeError("types must be an object with a getTypeParser(oid) function");
      }
      if (options?.name !== undefined) {
        if (typeof options.name !== "string") {
          throw new TypeError(`name must be a string, not ${typeof options.name}`);
        }
        if (this.#statements === null) {
          throw new ConnectionError(
            "UNSUPPORTED",
            `Cannot prepare the statement "${options.name}": this connection's statement ` +
              "cache is off (statementCache 0, as behind a transaction pooler, where a " +
              "prepared statement would not outlive its transaction); leave out name",
          );
        }
        if (!held) values ??= [];
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const text = sql as string;
      if (typed) {
        const settle = reject;
        reject = (error) => {
          this.#paramTypes?.failed(text, error);
          settle(error);
        };
      }
      const query = held
        ? this.#sendDescribed({
          placeholder: null!,
          at: 0,
          sql: text,
          params: params!,
          own,
          rowMode,
          types,
          signal,
          resolve: resolve as (r: QueryResult) => void,
          reject,
        })
        : this.#send(
          text,
          values,
          rowMode,
          types,
          signal,
          resolve as (r: QueryResult) => void,
          reject,
          true,
          undefined,
          binary,
        );
      if (timeout > 0) this.#watchTimeout(query, timeout);
    });
  }

  /**
   * The rows of a query as an async iterable, fetched `batchSize` (1000) at a time through a
   * portal, the next batch while the current one is read: memory holds about two batches,
   * whatever the size of the result. `sql` is a string (with `params`) or an `sql` template
   * (with its options in the place of `params`, or after them).
   * Outside a transaction it runs in one of its own, committed when the rows are read (or the
   * loop is left). Breaking out, throwing, or aborting with `options.signal` closes the portal;
   * the connection stays usable. Queries issued on the connection while the loop runs go
   * between its batches (inside its transaction).
   *
   * @example
   * ```ts ignore
   * import { connect } from "@edgepool/edgepool";
   * await using conn = await connect("postgres://app:secret@localhost/app");
   * let total = 0;
   * for await (const row of conn.stream("select n from generate_series(1, 1000000) n")) {
   *   total += row.n as number;
   * }
   * ```
   */
  stream<Row = Record<string, unknown>>(
    sql: string | QueryConfig,
    params?: readonly unknown[] | StreamOptions,
    options?: StreamOptions,
  ): RowStream<Row> {
    const lease = Promise.resolve({ host: this, release: noop });
    return new RowStream<Row>(() => lease, sql, params, options);
  }

  /**
   * Runs an `sql` template, as `query(template)` does: each `${value}` a parameter, `sql`
   * fragments spliced in (see the `sql` tag), on the extended protocol as one statement.
   *
   * @example
   * ```ts ignore
   * import { connect } from "@edgepool/edgepool";
   * await using conn = await connect("postgres://app:secret@localhost/app");
   * const { rows } = await conn.sql`select ${41}::int + 1 as n`; // [{ n: 42 }]
   * ```
   */
  sql<Row = Record<string, unknown>>(
    strings: TemplateStringsArray,
    ...values: unknown[]
  ): Promise<QueryResult<Row>> {
    return runTemplate(strings, values, (template) => this.query<Row>(template));
  }

  /**
   * Writes a query and queues its handler. With parameters and a `statementCache`, a named
   * statement: prepared on first use, reused after; a statement the server no longer has is
   * sent again unprepared, once (`retry`), when the session is not inside a transaction.
   * With `held`, the query takes the place kept for it (see `#sendDescribed`). `binary`: the
   * parameters, when some `values` are binary (for the cached statement `sql` has now).
   */
  #send(
    sql: string,
    values: BindValue[] | undefined,
    rowMode: RowMode,
    types: TypeParsers | undefined,
    signal: AbortSignal | undefined,
    resolve: (result: QueryResult) => void,
    reject: (error: unknown) => void,
    retry: boolean,
    held?: Waiter,
    binary?: readonly unknown[],
  ): PendingQuery {
    let name = "";
    let parse = true;
    let known: Statement | null = null;
    const statements = this.#statements;
    const w = held === undefined ? this.#writer : new Writer(256);
    if (values !== undefined && statements !== null) {
      if (retry && statements.usable(this.#transactionStatus === "idle")) {
        [name, parse, known] = statements.use(sql);
      }
      statements.closeUnwanted(w);
    }
    const query = new PendingQuery(
      rowMode,
      types,
      this.#columns,
      values !== undefined,
      // A prepared statement's first run shows its result's columns and its parameters' types,
      // which later runs reuse.
      name === "" || known !== null ? resolve : (result) => {
        this.#statements!.described(sql, name, result.fields, query.paramTypes);
        resolve(result);
      },
      name === "" ? reject : (error) => {
        const stale = this.#statements!.failed(sql, name, parse && !query.parsed, error);
        if (stale && this.#transactionStatus === "idle" && this.#state === READY) {
          if (!signal?.aborted) {
            // Unprepared, its parameters' types are the server's to infer again: all text.
            const text = binary === undefined ? values : textOnly(values!, binary);
            const again = this.#send(sql, text, rowMode, types, signal, resolve, reject, false);
            if (query.timeout > 0) this.#watchTimeout(again, query.timeout, query.deadline);
            return;
          }
        }
        reject(error);
      },
    );
    if (values === undefined) frontend.query(w, sql);
    else if (known !== null) {
      // Its columns are known: the server is not asked to describe them again, and those of
      // some types come in binary (some parameters go so too).
      const formats = query.bound(known, this.#parameters);
      frontend.boundQuery(w, name, values, formats, binary !== undefined);
    } else {
      // Binary values are for a known statement only; `query()` picked them with this one.
      const text = binary === undefined ? values as (string | null)[] : textOnly(values, binary);
      if (name === "") frontend.extendedQuery(w, sql, text, name, parse);
      else frontend.preparedQuery(w, sql, text, name, parse);
    }
    if (held === undefined) return this.#enqueue(query, MAY_COPY_IN.test(sql), signal);
    // A held query has parameters, which no COPY statement takes: it cannot enter COPY mode.
    this.#fill(held, query, w.take());
    return this.#enqueue(query, false, signal, true);
  }

  /**
   * Queues `query`, whose messages are written (and which is in the queue already when
   * `placed`), and sends them with what joins them.
   */
  #enqueue(
    query: PendingQuery,
    mayCopyIn: boolean,
    signal: AbortSignal | undefined,
    placed = false,
  ): PendingQuery {
    if (!placed) this.#queue.push(query);
    if (mayCopyIn) this.#copyGuards.push({ query, end: this.#writer.length });
    this.#scheduleFlush();
    if (signal) {
      const onAbort = () => this.#abort(query, signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      query.cleanup = () => signal.removeEventListener("abort", onAbort);
    }
    return query;
  }

  /**
   * A step of the portal `portal` a {@link Cursor} reads: `start` binds the statement and
   * fetches the first `rows` rows, `next` the next ones, `close` closes it. Each step ends with
   * a Sync, so the portal outlives it only inside a transaction block (the cursor opens one);
   * it has a name, since every other query replaces the unnamed portal.
   *
   * @internal
   */
  [PORTAL](
    step: PortalStep,
    portal: string,
    sql: string,
    params: readonly unknown[] | undefined,
    rows: number,
    options: QueryOptions | undefined,
  ): Promise<Batch> {
    if (this.#state !== READY && !(this.#state === STARTUP && this.#early)) {
      return Promise.reject(
        new ConnectionError("CONNECTION_CLOSED", "Cannot read rows: the connection is closed"),
      );
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let values: (string | null)[] | undefined;
    if (step === "start") {
      // Parameters serialized by their types (`serializers`), learned first if not known yet.
      const list = params ?? [];
      try {
        const own = checkSerializers(options?.serializers, "serializers");
        if ((own ?? this.#serializers) === undefined || list.length === 0) {
          values = encodeParams(list);
        } else {
          const oids = this.#paramTypes?.get(sql);
          if (oids === undefined) {
            return this.#learnParamTypes(sql).then(() =>
              this[PORTAL](step, portal, sql, params, rows, options)
            );
          }
          values = encodeTypedParams(list, oids, own, this.#serializers);
        }
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise((resolve, reject) => {
      const query: PendingQuery = new PendingQuery(
        options?.rowMode ?? "object",
        options?.types ?? this.#types,
        this.#columns,
        true,
        ({ rows, fields }) => resolve({ rows, fields, done: !query.suspended }),
        reject,
      );
      const w = this.#writer;
      if (step === "start") frontend.extendedQuery(w, sql, values!, "", true, rows, portal);
      else if (step === "next") frontend.portalNext(w, rows, portal);
      else frontend.portalClose(w, portal);
      this.#enqueue(query, false, signal);
      const timeout = options?.queryTimeout ?? this.#config.queryTimeout;
      if (timeout > 0) this.#watchTimeout(query, timeout);
    });
  }

  /**
   * Runs `COPY ... FROM STDIN` (`sql`) with the data of `source`: an async or sync iterable, or
   * a `ReadableStream`, of `Uint8Array` or string chunks (strings as UTF-8; chunks need not be
   * whole rows). Resolves to the number of rows copied. The source is pulled only as fast as
   * the transport sends (see `highWaterMark`), and its small chunks leave together in CopyData
   * messages of up to 64 KiB. Queries issued meanwhile wait for the COPY to end.
   *
   * - The source throws: the COPY ends with CopyFail (nothing is copied) and this rejects with
   *   the source's error.
   * - The server fails the COPY (a malformed row): the source is not pulled again and is
   *   closed (`return()`, or `cancel()` of a stream), and this rejects with the `PostgresError`.
   * - `signal` aborts: CopyFail, the source closed, and this rejects with the signal's reason;
   *   an abort after the source's last chunk and CopyDone were sent comes too late to call the
   *   COPY off, and this resolves with the rows the server copied.
   * - A statement that is not `COPY ... FROM STDIN` rejects with `UNSUPPORTED` (a COPY TO is
   *   drained and dropped); a source the COPY never started on is left as it is.
   *
   * The connection stays usable in every case. `queryTimeout` does not apply.
   *
   * @example
   * ```ts ignore
   * import { connect } from "@edgepool/edgepool";
   * await using conn = await connect("postgres://app:secret@localhost/app");
   * async function* rows() {
   *   for (let i = 0; i < 1000; i++) yield `${i}\titem ${i}\n`;
   * }
   * const count = await conn.copyFrom("copy items (id, name) from stdin", rows());
   * console.log(count); // 1000
   * ```
   */
  copyFrom(sql: string, source: CopySource, options?: CopyFromOptions): Promise<number> {
    let highWater: number;
    try {
      highWater = checkCopy("copyFrom", sql, options, FROM_HIGH_WATER);
      checkSource(source);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#state !== READY) return Promise.reject(closedFor("run a COPY"));
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const query = new CopyIn(this.#stream, source, highWater, this.#columns, resolve, reject);
      this.#sendCopy(query, sql, signal, (reason) => query.abort(reason));
    });
  }

  /**
   * Issues a query whose parameters wait for their types (`serializers`, see _param_types.ts):
   * its statement is described (or the describe under way joined), and the query keeps its
   * place in the queue (a placeholder) and in the writer (a hole), filled once the types are
   * known. Bytes written after the describe wait for its answer, so a query issued later, of
   * any kind, cannot overtake this one. Returns the placeholder.
   */
  #sendDescribed(waiter: Waiter): PendingQuery {
    const paramTypes = this.#paramTypes ??= new ParamTypes();
    const describe = paramTypes.describing(waiter.sql) ?? this.#describe(waiter.sql, paramTypes);
    const { rowMode, types, resolve, reject, signal } = waiter;
    const placeholder = new PendingQuery(rowMode, types, this.#columns, true, resolve, reject);
    waiter.placeholder = placeholder;
    waiter.at = this.#writer.length;
    this.#queue.push(placeholder);
    this.#holes.push(waiter);
    describe.waiters.push(waiter);
    if (signal) {
      const onAbort = () => this.#abort(placeholder, signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      placeholder.cleanup = () => signal.removeEventListener("abort", onAbort);
    }
    return placeholder;
  }

  /** Learns the parameter types of `sql` (a describe, or the one under way), for a cursor. */
  #learnParamTypes(sql: string): Promise<void> {
    const paramTypes = this.#paramTypes ??= new ParamTypes();
    const describe = paramTypes.describing(sql) ?? this.#describe(sql, paramTypes);
    return new Promise((resolve, reject) => {
      describe.listeners.push((error) => error === null ? resolve() : reject(error));
    });
  }

  /** Writes Parse + Describe statement + Sync of `sql`, answered as any query. */
  #describe(sql: string, paramTypes: ParamTypes): Describe {
    let name = "";
    const statements = this.#statements;
    if (statements !== null) {
      // A cached statement's first use is prepared here, in the describe's flight: the query
      // then only binds it. One prepared already is described unnamed, sparing a round trip
      // for a statement the server might have lost.
      if (statements.usable(this.#transactionStatus === "idle")) {
        const [cached, parse] = statements.use(sql);
        if (parse) name = cached;
      }
      statements.closeUnwanted(this.#writer);
    }
    const describe: Describe = new Describe(
      this.#columns,
      () => this.#described(sql, describe, describe.oids, null),
      (error) => {
        if (name !== "") this.#statements!.failed(sql, name, !describe.parsed, error);
        this.#described(sql, describe, null, error);
      },
    );
    frontend.describeStatement(this.#writer, sql, name, true);
    this.#queue.push(describe);
    this.#copyGuards.push({ query: describe, end: this.#writer.length });
    paramTypes.started(sql, describe);
    this.#scheduleFlush();
    return describe;
  }

  /**
   * The describe of `sql` ended (at its ReadyForQuery, or with the connection): its queries are
   * serialized and written in their places, or fail with its error.
   */
  #described(sql: string, describe: Describe, oids: number[] | null, error: unknown): void {
    if (oids === null && error === null) {
      error = protocolError("no ParameterDescription answered a Describe");
    }
    this.#paramTypes!.ended(sql, oids);
    for (const listener of describe.listeners) listener(error);
    for (const waiter of describe.waiters) {
      const placeholder = waiter.placeholder;
      let values: (string | null)[] | undefined;
      let failure = error;
      if (oids !== null && !placeholder.settled && this.#state !== CLOSED) {
        try {
          values = encodeTypedParams(waiter.params, oids, waiter.own, this.#serializers);
        } catch (thrown) {
          failure = thrown;
        }
      }
      if (values === undefined) {
        // Nothing of it was written: its places go.
        this.#holes.splice(this.#holes.indexOf(waiter), 1);
        const at = this.#queue.indexOf(placeholder);
        if (at !== -1) this.#queue.splice(at, 1);
        placeholder.fail(failure);
        continue;
      }
      placeholder.cleanup?.();
      const { rowMode, types, signal, resolve, reject } = waiter;
      const query = this.#send(sql, values, rowMode, types, signal, resolve, reject, true, waiter);
      if (placeholder.timeout > 0) {
        this.#watchTimeout(query, placeholder.timeout, placeholder.deadline);
      }
    }
  }

  /** Puts `query`, written as `bytes`, in the places `held` kept for it. */
  #fill(held: Waiter, query: PendingQuery, bytes: Uint8Array): void {
    this.#queue[this.#queue.indexOf(held.placeholder)] = query;
    this.#writer.insert(held.at, bytes);
    for (const guard of this.#copyGuards) if (guard.end > held.at) guard.end += bytes.length;
    // The holes behind it are those after it in the list (one at the same place too).
    const holes = this.#holes;
    const i = holes.indexOf(held);
    holes.splice(i, 1);
    for (let j = i; j < holes.length; j++) holes[j].at += bytes.length;
  }

  /**
   * Runs `COPY ... TO STDOUT` (`sql`) and returns its data: an async iterable of `Uint8Array`
   * chunks, or, as `.readable`, a `ReadableStream` (one of the two, once). The COPY starts
   * when the consumption does. The rows that arrive in one transport read come as one chunk,
   * the consumer's own; past `highWaterMark` bytes not yet consumed the transport stops
   * reading (where it can: `ByteStream.pause`), so memory stays bounded by it.
   *
   * Leaving early (`break`, a consumer that throws, a cancelled stream) or `signal` cancels
   * the COPY (a CancelRequest; the rest of the data is dropped) and leaves the connection
   * usable; with `signal` the iteration rejects with its reason. A statement that is not
   * `COPY ... TO STDOUT` rejects with `UNSUPPORTED`. `queryTimeout` does not apply.
   *
   * @example
   * ```ts ignore
   * import { connect } from "@edgepool/edgepool";
   * await using conn = await connect("postgres://app:secret@localhost/app");
   * const out = conn.copyTo("copy items to stdout (format csv)");
   * await out.readable.pipeTo(someWritableStream);
   * ```
   */
  copyTo(sql: string, options?: CopyToOptions): CopyToStream {
    const highWater = checkCopy("copyTo", sql, options, TO_HIGH_WATER);
    return new CopyToStream(() => {
      if (this.#state !== READY) throw closedFor("run a COPY");
      const signal = options?.signal;
      signal?.throwIfAborted();
      const query: CopyOut = new CopyOut(this.#stream, highWater, this.#columns, () => {
        if (this.#queue[0] === query) this.#cancelQuietly(query);
        else query.cancelWanted = true;
      });
      this.#sendCopy(query, sql, signal, (reason) => query.abort(reason));
      return query;
    });
  }

  /** Writes a COPY's simple Query and queues `query`, its handler. */
  #sendCopy(
    query: PendingQuery,
    sql: string,
    signal: AbortSignal | undefined,
    abort: (reason: unknown) => void,
  ): void {
    frontend.query(this.#writer, sql);
    this.#queue.push(query);
    if (MAY_COPY_IN.test(sql)) this.#copyGuards.push({ query, end: this.#writer.length });
    this.#scheduleFlush();
    if (signal) {
      const onAbort = () => abort(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      query.cleanup = () => signal.removeEventListener("abort", onAbort);
    }
  }

  /** pg_type's rows of `oids` (see _column_types.ts), read as text, behind the queries sent. */
  #lookUpTypes(oids: number[]): Promise<TypeRow[]> {
    if (this.#state !== READY) return Promise.reject(new Error("connection not ready"));
    return new Promise((resolve, reject) => {
      this.#send(
        TYPE_LOOKUP,
        [`{${oids.join(",")}}`],
        "array",
        TEXT_ONLY,
        undefined,
        (result) => resolve(result.rows as unknown as TypeRow[]),
        reject,
        false,
      );
    });
  }

  /**
   * Gives `query` its `queryTimeout`. One timer serves every query, armed for the earliest
   * deadline and looking again when it fires, so a query costs a clock read, not a timer.
   */
  #watchTimeout(query: PendingQuery, timeout: number, deadline = Date.now() + timeout): void {
    query.timeout = timeout;
    query.deadline = deadline;
    if (deadline >= this.#timeoutAt) return;
    clearTimeout(this.#timeoutTimer);
    this.#timeoutAt = deadline;
    this.#timeoutTimer = setTimeout(() => this.#timeoutDue(), Math.max(0, deadline - Date.now()));
  }

  #timeoutDue(): void {
    this.#timeoutTimer = undefined;
    this.#timeoutAt = Infinity;
    if (this.#state === CLOSED) return;
    const now = Date.now();
    let next = Infinity;
    for (const query of this.#queue) {
      if (query.deadline === 0) continue;
      if (query.deadline <= now) return this.#timedOut(query);
      if (query.deadline < next) next = query.deadline;
    }
    if (next === Infinity) return;
    this.#timeoutAt = next;
    this.#timeoutTimer = setTimeout(() => this.#timeoutDue(), next - now);
  }

  /**
   * A query outlived its `queryTimeout`. A server that is slow and a network that has gone
   * silent look the same from here, so the connection is not trusted again: the statement
   * running now is cancelled (with the socket gone the server would run it to its end) and
   * the connection closed.
   */
  #timedOut(query: PendingQuery): void {
    const error = new ConnectionError(
      "QUERY_TIMEOUT",
      `Query timed out after ${query.timeout} ms (queryTimeout); a cancel was sent and the ` +
        "connection closed",
    );
    query.fail(error);
    this.cancel().catch(() => {});
    this.destroy(error);
  }

  /**
   * Asks the server to cancel the statement running now (CancelRequest on a new transport
   * connection). Resolves once the request was delivered; whether anything was cancelled
   * shows in the query's own result (SQLSTATE 57014).
   */
  async cancel(): Promise<void> {
    if (this.#secretKey === null || this.#state === CLOSED) return;
    // One already on its way cancels whatever runs now: nothing new can start before it lands.
    if (this.#cancelSent !== null) return await this.#cancelSent;
    const target = { host: this.#config.host, port: this.#config.port, tls: this.#tls };
    const sent = sendCancelRequest(this.#transport, target, this.#processId, this.#secretKey);
    this.#cancelSent = sent;
    // Until the server has taken the request (it closes the cancel connection once it has
    // signalled the backend), later statements wait here: sent now, they could be running when
    // the signal lands, and be cancelled instead of the statement it was meant for.
    const held = sent.then(() => {}, () => {});
    this.#cancelling = held;
    held.then(() => {
      if (this.#cancelling !== held) return;
      this.#cancelling = null;
      this.#cancelSent = null;
      this.#flush();
    });
    await sent;
  }

  /**
   * Closes the connection: queries already issued still get their answers, then Terminate is
   * sent and the transport closed. Idempotent; resolves once closed.
   */
  close(): Promise<void> {
    if (this.#state === STARTUP && this.#early) {
      // Started early, the login is still under way: close once it is done (or has failed).
      return this.#ready!.then(() => this.close(), () => this.#closed);
    }
    if (this.#state === READY) {
      this.#state = CLOSING;
      frontend.terminate(this.#writer);
      this.#flush();
      if (this.#queue.length === 0) this.#stream.close();
    }
    return this.#closed;
  }

  /**
   * Closes the connection at once: pending queries reject with `CONNECTION_CLOSED` (with
   * `reason` as the cause). Idempotent.
   */
  destroy(reason?: unknown): void {
    if (this.#state === CLOSED) return;
    const error = new ConnectionError(
      "CONNECTION_CLOSED",
      "Connection closed by the client" + (this.#queue.length ? " with queries pending" : ""),
      { cause: reason },
    );
    if (this.#state === READY) {
      frontend.terminate(this.#writer);
      this.#flush();
    }
    this.#end(error, undefined);
    this.#stream.close();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Starts the session: reads, sends the StartupMessage (and, with `pipelineConnect`, the
   * cleartext password behind it), resolves at the first ReadyForQuery — or, with `early`, as
   * soon as the client has written all the login needs from it, so that the first query follows
   * in the same flight: with a password sent ahead, once both are written (a server known to
   * ask for a cleartext password); otherwise once the last authentication message is (the
   * password asked for, or SCRAM's client-final message). The login's outcome, the SCRAM
   * server signature included, then reaches the queries. `whenReady()` still resolves at the
   * first ReadyForQuery.
   */
  start(options?: { early?: boolean }): Promise<void> {
    this.#ready ??= this.#begin(options?.early === true);
    return this.#earlyStart ?? this.#ready;
  }

  /** Resolves at the first ReadyForQuery; rejects if the session could not start. */
  whenReady(): Promise<void> {
    return this.#ready ?? Promise.reject(new Error("start() was not called"));
  }

  #begin(early: boolean): Promise<void> {
    let earlyStarted!: () => void;
    const setting = this.#config.pipelineConnect ?? this.#transport.pipelineConnect;
    const pipeline = setting === "query" ? "password" : setting;
    const written = new Promise<void>((resolve) => earlyStarted = resolve);
    if (early) {
      this.#loginWritten = () => {
        if (this.#state !== STARTUP) return this.#flush();
        this.#early = true;
        // The first query joins these bytes in one write, or a timer sends them alone. One
        // write is one TCP segment and one WebSocket frame; a second small one right behind it
        // can wait a round trip for the first one's ACK (Deno's WebSocket keeps Nagle's
        // algorithm on).
        this.#hold = setTimeout(() => this.#flush(), 0);
        earlyStarted();
      };
    }
    const ready = new Promise<void>((resolve, reject) => {
      this.#startup = { resolve, reject };
      this.#stream.start({
        data: (chunk) => {
          // The query whose answer arrives: COPY TO gathers each read's rows in one chunk.
          const head = this.#queue[0];
          try {
            head?.readStarts(chunk.length + this.#reader.buffered);
            this.#reader.push(chunk);
            head?.readEnds();
          } catch (error) {
            this.#failHard(error);
          }
        },
        close: (error) => this.#onStreamClose(error),
      });
      if (pipeline !== "password") return this.#sendStartup(undefined, false);
      this.#auth!.passwordAhead().then(
        (password) => this.#sendStartup(password, true),
        (error) => this.#failHard(error),
      );
    });
    // Early: whichever comes first, the login's part written, or the session's end (ready,
    // also when no password was asked for, or failed before anything was written).
    if (early) {
      this.#earlyStart = Promise.race([written, ready]);
      // Its outcome then reaches the queries; whoever else awaits it still sees it.
      ready.catch(() => {});
    }
    return ready;
  }

  /**
   * Writes the StartupMessage and, with `ahead`, `password` right behind it: one flight, and,
   * with `ahead`, all the client sends for the login (a server that asks for anything but a
   * cleartext password, or for one when none was given, fails the connection).
   */
  #sendStartup(password: string | undefined, ahead: boolean): void {
    // Not if destroyed while a password function ran.
    if (this.#state !== STARTUP) return;
    frontend.startup(this.#writer, frontend.startupParameters(this.#config));
    if (!ahead) return this.#flush();
    if (password !== undefined) this.#auth!.writeAhead(password);
    this.#written();
  }

  /**
   * Sends the last bytes the client writes for the login: the StartupMessage and the password
   * sent ahead, the password asked for, or SCRAM's client-final message. What is written after
   * them reaches the server after the login, so an early start holds them back for the first
   * query to join (`pipelineConnect`).
   */
  #written(): void {
    if (this.#loginWritten !== null) this.#loginWritten();
    else this.#flush();
  }

  /** A message of the startup phase (or held back while an authentication step runs). */
  #receive(type: number, buf: Uint8Array, start: number, end: number): void {
    if (this.#held !== null) this.#held.push(buf.slice(start - 5, end));
    else if (this.#state !== STARTUP) this.#message(type, buf, start, end);
    else this.#startupMessage(type, buf, start, end);
  }

  #startupMessage(type: number, buf: Uint8Array, start: number, end: number): void {
    const auth = this.#auth!;
    switch (type) {
      case 0x52: // R: Authentication*
        this.#held = [];
        auth.message(buf, start, end).then(
          (wrote) => {
            if (wrote && auth.lastSent) this.#written();
            else if (wrote) this.#flush();
            this.#replay();
          },
          (error) => this.#failHard(error),
        );
        return;
      case 0x4b: // K: BackendKeyData
        if (end - start < 8) throw truncated("BackendKeyData");
        this.#processId = readInt32(buf, start);
        this.#secretKey = buf.slice(start + 4, end);
        return;
      case 0x5a: // Z: ReadyForQuery — the session is ready
        if (!auth.done) throw protocolError("ReadyForQuery before authentication completed");
        if (end - start !== 1) throw protocolError(NO_STATUS);
        this.#auth = null;
        this.#state = READY;
        this.#transactionStatus = status(buf[start]);
        this.#startup!.resolve();
        this.#startup = null;
        return;
      case 0x45: // E: the server refused (wrong password, no such database, ...)
        return this.#failHard(new PostgresError(parseErrorFields(buf, start, end)));
      case 0x76: // v: NegotiateProtocolVersion — we ask for 3.0 with no options; accept.
        return;
      default:
        this.#common(type, buf, start, end);
    }
  }

  /** Handles the messages held back during an authentication step, until the next such step. */
  #replay(): void {
    const held = this.#held!;
    this.#held = null;
    for (let i = 0; i < held.length; i++) {
      if (this.#state === CLOSED) return;
      // A message replayed below may begin another authentication step (TypeScript cannot
      // see that the field changes behind its back, hence the cast).
      const again = this.#held as Uint8Array[] | null;
      if (again !== null) {
        // Keep the rest for after that step.
        again.push(...held.slice(i));
        return;
      }
      const message = held[i];
      try {
        this.#receive(message[0], message, 5, message.length);
      } catch (error) {
        return this.#failHard(error);
      }
    }
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Writes issued in the same tick leave as one write: a microtask, never a timer. A promise
    // reaction, not queueMicrotask: workerd runs those in whichever request drains the queue,
    // and a socket of one request cannot be written from another.
    Promise.resolve().then(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    clearTimeout(this.#hold);
    this.#hold = undefined;
    if (this.#writer.length === 0 || this.#state === CLOSED || this.#cancelling !== null) return;
    if (this.#copyGuard !== null) return;
    const guard = this.#copyGuards.shift();
    if (guard === undefined) return this.#stream.write(this.#writer.take());
    this.#stream.write(this.#writer.take(guard.end));
    for (const later of this.#copyGuards) later.end -= guard.end;
    for (const hole of this.#holes) hole.at -= guard.end;
    this.#copyGuard = guard.query;
  }

  #message(type: number, buf: Uint8Array, start: number, end: number): void {
    const head = this.#queue[0];
    if (head !== undefined && head.message(type, buf, start, end)) return;
    switch (type) {
      case 0x5a: { // Z: ReadyForQuery
        const query = this.#head(head, type);
        // Without its status byte, buf[start] would be the next message's first byte.
        if (end - start < 1) throw protocolError(NO_STATUS);
        this.#transactionStatus = status(buf[start]);
        this.#queue.shift();
        query.finish();
        if (query === this.#copyGuard) {
          this.#copyGuard = null;
          this.#flush();
        }
        const next = this.#queue[0];
        if (next !== undefined && next.cancelWanted) this.#cancelQuietly(next);
        if (this.#state === CLOSING && this.#queue.length === 0) this.#stream.close();
        return;
      }
      case 0x45: { // E: ErrorResponse
        const error = new PostgresError(parseErrorFields(buf, start, end));
        if (error.severity === "FATAL" || error.severity === "PANIC") {
          // The server ends the session next; the close reports it to every pending query.
          this.#fatal = error;
          return;
        }
        const query = this.#head(head, type);
        if (query.error === null) query.error = error;
        return;
      }
      case 0x47: { // G: CopyInResponse — make the server fail the COPY: there is no data to send.
        const query = this.#head(head, type);
        if (query !== this.#copyGuard && this.#queue.length > 1) {
          // Sent as any query (its text has no STDIN), so the queries behind it are on the wire
          // already and the server reads them as COPY messages: their answers cannot be told.
          throw protocolError("CopyInResponse to a query that has no STDIN in it");
        }
        query.copying("in");
        // copyFrom's query sends its data itself.
        if (query.copyIn()) return;
        // Straight to the stream: the writer may hold later queries, which wait for the
        // ReadyForQuery. In copy-in mode the server ignored the Sync of an extended query: the
        // second one ends the error that CopyFail causes.
        const w = new Writer(64);
        frontend.copyFail(w, "COPY FROM STDIN is not supported by query(); use copyFrom()");
        if (query.extended) frontend.sync(w);
        this.#stream.write(w.take());
        return;
      }
      case 0x57: // W: CopyBothResponse (replication): no way back to queries that edgepool has.
        throw new ConnectionError(
          "UNSUPPORTED",
          "Replication (CopyBothResponse) is not supported by edgepool: the connection was closed",
        );
      default:
        this.#common(type, buf, start, end);
    }
  }

  /** Messages valid in any phase. */
  #common(type: number, buf: Uint8Array, start: number, end: number): void {
    switch (type) {
      case 0x53: { // S: ParameterStatus
        const [name, value] = parseParameterStatus(buf, start, end);
        this.#parameters = { ...this.#parameters, [name]: value };
        this.#events.emit("parameter", { name, value });
        return;
      }
      case 0x4e: // N: NoticeResponse
        if (this.#events.has("notice")) {
          this.#events.emit("notice", parseErrorFields(buf, start, end));
        }
        return;
      case 0x41: // A: NotificationResponse
        this.#events.emit("notification", parseNotification(buf, start, end));
        return;
      default:
        throw protocolError(
          `unexpected message '${typeName(type)}' ${
            this.#state === STARTUP ? "during startup" : "while running queries"
          }`,
        );
    }
  }

  #head(head: PendingQuery | undefined, type: number): PendingQuery {
    if (head === undefined) {
      throw protocolError(`message '${typeName(type)}' arrived with no query pending`);
    }
    return head;
  }

  #abort(query: PendingQuery, reason: unknown): void {
    if (query.settled) return;
    query.fail(reason);
    // Cancel only the statement that runs now; one queued behind others is cancelled when its
    // turn comes, so the request does not hit a query that came before it.
    if (this.#queue[0] === query) this.#cancelQuietly(query);
    else query.cancelWanted = true;
  }

  /** Cancels `query`, the one running now, and again while it still is (see `cancelQuietly`). */
  #cancelQuietly(query: PendingQuery): void {
    cancelQuietly(() => this.cancel(), () => this.#queue[0] === query && this.#state !== CLOSED);
  }

  #onStreamClose(error?: Error): void {
    if (this.#state === CLOSED) return;
    if (this.#state === CLOSING && this.#queue.length === 0 && this.#fatal === null) {
      return this.#end(undefined, undefined);
    }
    const cause = this.#fatal ?? error;
    const reason = this.#fatal
      ? `${this.#fatal.message} (SQLSTATE ${this.#fatal.code})`
      : error
      ? error.message
      : "the server closed the connection";
    if (this.#state === STARTUP) {
      // A server that refuses us says why in an ErrorResponse, and a transport that failed
      // (TLS, say) says so with its own ConnectionError: report those themselves.
      const failure = this.#fatal ?? (error instanceof ConnectionError ? error : undefined) ??
        new ConnectionError("CONNECTION_LOST", `Connection lost during startup: ${reason}`, {
          cause,
        });
      return this.#end(failure, cause);
    }
    this.#end(
      new ConnectionError("CONNECTION_LOST", `Connection lost: ${reason}`, { cause }),
      cause ?? new Error(reason),
    );
  }

  /** A protocol violation or a failure during startup: close at once and report `error`. */
  #failHard(error: unknown): void {
    if (this.#state === CLOSED) return;
    this.#end(error, error);
    this.#stream.close();
  }

  #end(queryError: unknown, closeReason: unknown): void {
    this.#state = CLOSED;
    clearTimeout(this.#timeoutTimer);
    this.#timeoutTimer = undefined;
    if (this.#startup !== null) {
      this.#startup.reject(queryError);
      this.#startup = null;
    }
    const queue = this.#queue.splice(0);
    for (const query of queue) query.fail(queryError);
    this.#events.emit(
      "close",
      closeReason === undefined || closeReason instanceof Error
        ? closeReason
        : new Error(String(closeReason)),
    );
    this.#resolveClosed();
  }
}

function closedFor(action: string): ConnectionError {
  return new ConnectionError("CONNECTION_CLOSED", `Cannot ${action}: the connection is closed`);
}

function checkTimeout(value: unknown): number {
  if (typeof value !== "number" || !(value >= 0 && value <= 2_147_483_647)) {
    throw new RangeError(
      `queryTimeout must be a number of ms from 0 to 2147483647, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Whether a query may be `COPY ... FROM STDIN`: the grammar has no other way to say STDIN, and
 * COPY to or from the client runs only as a statement of the query text itself (not from a
 * function). A false positive only costs that query its pipelining.
 */
const MAY_COPY_IN = /stdin/i;

const NO_VALUES: (string | null)[] = [];

/** Text values of a parameter list (an array). */
function encodeText(params: readonly unknown[]): (string | null)[] {
  return encodeParams(params)!;
}

/** Statements worth preparing: ones the server plans (never COPY, SET, BEGIN, DISCARD...). */
const PLANNED = /^\s*(?:select|with|insert|update|delete|values|table|merge)\b/i;
const PLACEHOLDER = /\$\d/;

/**
 * Whether `sql` is one plannable statement (a trailing `;` allowed): a string holding several
 * runs on the simple protocol, which alone takes them. A `;` anywhere else (even in a literal)
 * keeps the string on the simple protocol: a wrong guess there costs only speed.
 */
function preparable(sql: string): boolean {
  // A `$1` with no parameters given: the simple protocol's error says so ("there is no
  // parameter $1"), a Bind's would name the statement and a count.
  if (!PLANNED.test(sql) || PLACEHOLDER.test(sql)) return false;
  const semicolon = sql.indexOf(";");
  if (semicolon < 0) return true;
  for (let i = semicolon + 1; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c !== 0x20 && (c < 0x09 || c > 0x0d)) return false;
  }
  return true;
}
// The type lookup's parsers: its text as is, whatever the connection's own parsers do with oids.
const TEXT_ONLY: TypeParsers = { getTypeParser: () => String };

const NO_STATUS = "ReadyForQuery has no transaction status";

function noop(): void {}

function status(byte: number): TransactionStatus {
  return byte === 0x54 ? "transaction" : byte === 0x45 ? "failed" : "idle";
}
