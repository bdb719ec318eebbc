/**
 * Reading a query's rows a batch at a time: `stream()`, an async iterable of rows, and
 * {@link Cursor}, pg-cursor's shape (`read(n)`, `close()`), which Kysely's `stream()` uses.
 *
 * Both read a named portal with Execute's row limit (every other query replaces the unnamed
 * one). Every step ends with a Sync (so a
 * server error ends it like any query's, and the connection never waits on the reader), and
 * the portal outlives a Sync only inside a transaction block: outside one, the reader opens one
 * (`BEGIN`) and ends it (`COMMIT`) when it is done, breaks off or fails.
 *
 * @module
 */

import { ConnectionError } from "./errors.ts";
import { checkRowMode } from "./_query.ts";
import { fromConfig, type QueryConfig, type QueryOptions, type QueryResult } from "./result.ts";
import type { FieldDescription } from "./result.ts";
import type { TransactionStatus } from "./connection_events.ts";

/** Options of `stream()`. */
export interface StreamOptions extends QueryOptions {
  /**
   * Rows fetched per round trip (one Execute): memory holds about two batches, the one being
   * read and the next, which is fetched meanwhile. Default 1000.
   */
  batchSize?: number;
}

/** The key of a connection's portal steps (see `Connection`). @internal */
export const PORTAL: unique symbol = Symbol("edgepool.portal");

/** A step of a portal: bind and fetch, fetch more, or close. @internal */
export type PortalStep = "start" | "next" | "close";

/** The rows of one step, and whether the portal has none left. @internal */
export interface Batch {
  rows: unknown[];
  fields: FieldDescription[];
  done: boolean;
}

/** What a cursor reads from: edgepool's `Connection`. @internal */
export interface PortalHost {
  readonly transactionStatus: TransactionStatus;
  readonly pending: number;
  query(sql: string): Promise<QueryResult>;
  [PORTAL](
    step: PortalStep,
    portal: string,
    sql: string,
    params: readonly unknown[] | undefined,
    rows: number,
    options: QueryOptions | undefined,
  ): Promise<Batch>;
}

/** A connection to read from, and what to do with it after (a pool's checkout: release it). */
export interface Lease {
  host: PortalHost;
  release(): Promise<void> | void;
  /** The pool's `queryTimeout`, for each step that has none of its own. */
  queryTimeout?: number;
}

/** Cursors made so far, for their portals' names. */
let portals = 0;

/** The batch after the last. */
const NONE: Batch = { rows: [], fields: [], done: true };

const NEW = 0;
const OPEN = 1;
const DRAINED = 2;
const FAILED = 3;
const CLOSED = 4;

/**
 * pg-cursor's cursor over edgepool: pass one to `query()` of a connection (`conn.query(new
 * Cursor(text, values))` returns it), then `read(n)` the rows `n` at a time (fewer, then none, at
 * the end) and `close()` it. Kysely's `PostgresDialect` takes the class as its `cursor`, which
 * makes `.stream()` work. Over HTTP there is no session to keep a portal in: `query(cursor)`
 * throws there.
 *
 * Outside a transaction the cursor opens one for its portal and ends it with `close()` (a
 * `COMMIT`: the statement's effects are kept, as when pg-cursor's implicit transaction ends);
 * queries issued on the connection meanwhile run between its reads, inside it.
 *
 * @example
 * ```ts ignore
 * import { connect, Cursor } from "@edgepool/edgepool";
 * await using conn = await connect("postgres://app:secret@localhost/app");
 * const cursor = conn.query(new Cursor("select * from generate_series(1, $1) n", [2500]));
 * for (let rows = await cursor.read(1000); rows.length > 0; rows = await cursor.read(1000)) {
 *   console.log(rows.length); // 1000, 1000, 500
 * }
 * await cursor.close();
 * ```
 */
export class Cursor<Row = Record<string, unknown>> {
  readonly #text: string;
  readonly #params: readonly unknown[] | undefined;
  #options: QueryOptions | undefined;
  /** The portal's name: unique in the process, so in its connection. */
  readonly #portal = `edgepool_${++portals}`;
  #lease: Lease | null = null;
  #state = NEW;
  /** The transaction the cursor opened, to end at close; `null` when it ran inside one. */
  #began = false;
  #closed: Promise<void> | null = null;
  /** Steps in order: each starts after the one before has been written. */
  #last: Promise<unknown> = Promise.resolve();

  /**
   * A cursor over `text` with `values` (`$1`, `$2`, ...); `config` takes `rowMode` and `types`
   * as `query()` does (and `signal` and `queryTimeout`, for each read). A template made by the
   * `sql` tag stands for both text and values.
   */
  constructor(text: string | QueryConfig, values?: readonly unknown[], config?: QueryOptions) {
    const query = typeof text === "string"
      ? { sql: text, params: values, options: config }
      : fromConfig(text, values, config);
    if (typeof query.sql !== "string") {
      throw new TypeError(`A cursor's text must be a string, not ${typeof text}`);
    }
    if (query.params != null && !Array.isArray(query.params)) {
      throw new TypeError("A cursor's values must be an array");
    }
    checkRowMode(query.options?.rowMode);
    this.#text = query.sql;
    this.#params = query.params ?? undefined;
    this.#options = query.options;
  }

  /**
   * Binds the cursor to the connection it reads from (`query(cursor)` does this).
   *
   * @internal
   */
  attach(lease: Lease): this {
    if (this.#lease !== null) {
      throw new TypeError("This cursor was passed to query() already: a cursor runs once");
    }
    this.#lease = lease;
    if (lease.queryTimeout && this.#options?.queryTimeout === undefined) {
      this.#options = { ...this.#options, queryTimeout: lease.queryTimeout };
    }
    return this;
  }

  /**
   * The next `rows` rows (a positive integer), fewer at the end, then none. A server error
   * ends the cursor and rejects; so does an abort (the query's `signal`): the connection stays
   * usable.
   */
  async read(rows: number): Promise<Row[]> {
    return (await this.fetch(rows)).rows as Row[];
  }

  /**
   * The next batch of at most `rows` rows, with its columns, and whether the portal is done.
   *
   * @internal
   */
  fetch(rows: number): Promise<Batch> {
    if (!Number.isInteger(rows) || rows <= 0 || rows > 2_147_483_647) {
      return Promise.reject(new RangeError(`read() takes a positive integer, not ${rows}`));
    }
    const lease = this.#lease;
    if (lease === null) {
      return Promise.reject(
        new TypeError("This cursor is not bound to a connection: pass it to query() first"),
      );
    }
    const state = this.#state;
    if (state === CLOSED) {
      return Promise.reject(new TypeError("Cannot read from a cursor that was closed"));
    }
    if (state === DRAINED || state === FAILED) return Promise.resolve(NONE);
    const host = lease.host;
    // Each step after the one before has ended: a step written ahead of the start would read
    // a portal not yet bound.
    const step = state === NEW
      ? this.#start(host, rows)
      : this.#last.then(() => this.#state === OPEN ? this.#step(host, "next", rows) : NONE);
    this.#state = OPEN;
    const batch = step.then((batch) => {
      if (batch.done && this.#state === OPEN) this.#state = DRAINED;
      return batch;
    }, (error) => {
      if (this.#state === OPEN) this.#state = FAILED;
      throw error;
    });
    this.#last = batch.catch(() => {});
    return batch;
  }

  async #start(host: PortalHost, rows: number): Promise<Batch> {
    // Whether a transaction block is open decides whether the cursor needs one of its own:
    // read from the last ReadyForQuery, once what was issued before has been answered.
    if (host.pending > 0) await host.query("");
    const begin = host.transactionStatus === "idle" ? host.query("BEGIN") : null;
    this.#began = begin !== null;
    const first = host[PORTAL](
      "start",
      this.#portal,
      this.#text,
      this.#params,
      rows,
      this.#options,
    );
    if (begin !== null) {
      // Both were written in one flight; a failed BEGIN (say, the connection lost) fails both.
      first.catch(() => {});
      await begin;
    }
    return first;
  }

  #step(host: PortalHost, step: PortalStep, rows: number): Promise<Batch> {
    return host[PORTAL](step, this.#portal, this.#text, undefined, rows, this.#options);
  }

  /**
   * Closes the portal, and ends the transaction the cursor opened (`COMMIT`; a failed one rolls
   * back). Then returns the connection when the cursor has one of a pool's. Idempotent.
   */
  close(): Promise<void> {
    return this.#closed ??= this.#close();
  }

  async #close(): Promise<void> {
    const state = this.#state;
    this.#state = CLOSED;
    const lease = this.#lease;
    if (lease === null) return;
    try {
      if (state === NEW) return;
      // Behind the read in flight, if any (its rows are dropped).
      await this.#last;
      if (this.#began) await lease.host.query("COMMIT");
      else if (state === OPEN) await this.#step(lease.host, "close", 0);
    } catch (error) {
      // The failure that ended the cursor was reported by its read; this is its echo.
      if (state !== FAILED) throw error;
    } finally {
      await lease.release();
    }
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The rows of a query as an async iterable, read in batches through a {@link Cursor}: what
 * `stream()` returns. It can be iterated once. Breaking out of the loop, an error thrown in it,
 * or the query's `signal` closes the portal (and returns a pool's connection); the rows already
 * read are not read again.
 */
export class RowStream<Row = Record<string, unknown>> implements AsyncIterable<Row> {
  readonly #open: () => Promise<Lease>;
  readonly #cursor: Cursor<Row>;
  readonly #batchSize: number;
  readonly #signal: AbortSignal | undefined;
  #iterated = false;

  /** @internal */
  constructor(
    open: () => Promise<Lease>,
    sql: string | QueryConfig,
    params: readonly unknown[] | StreamOptions | undefined,
    options: StreamOptions | undefined,
  ) {
    // A template's options may stand beside it, where a string's parameters would.
    if (typeof sql === "object" && params != null && !Array.isArray(params)) {
      options = params as StreamOptions;
      params = undefined;
    }
    const batchSize = options?.batchSize ?? 1000;
    if (!Number.isInteger(batchSize) || batchSize <= 0 || batchSize > 2_147_483_647) {
      throw new RangeError(`batchSize must be a positive integer, not ${String(batchSize)}`);
    }
    this.#cursor = new Cursor<Row>(sql, params as readonly unknown[] | undefined, options);
    this.#open = open;
    this.#batchSize = batchSize;
    this.#signal = options?.signal ?? (typeof sql === "object" ? sql.signal : undefined);
  }

  /** The rows; throws a TypeError when called a second time. */
  [Symbol.asyncIterator](): AsyncIterator<Row> {
    if (this.#iterated) throw new TypeError("A row stream can be iterated once");
    this.#iterated = true;
    return new RowIterator(this.#open, this.#cursor, this.#batchSize, this.#signal);
  }
}

const END: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** Hands out the rows of one batch while the next one is fetched. */
class RowIterator<Row> implements AsyncIterator<Row> {
  readonly #open: () => Promise<Lease>;
  readonly #cursor: Cursor<Row>;
  readonly #batchSize: number;
  readonly #signal: AbortSignal | undefined;
  #rows: unknown[] = [];
  #index = 0;
  /** The next batch, asked for already; `null` before the first and after the last. */
  #next: Promise<Batch> | null = null;
  #started = false;
  #done = false;

  constructor(
    open: () => Promise<Lease>,
    cursor: Cursor<Row>,
    batchSize: number,
    signal: AbortSignal | undefined,
  ) {
    this.#open = open;
    this.#cursor = cursor;
    this.#batchSize = batchSize;
    this.#signal = signal;
  }

  next(): Promise<IteratorResult<Row>> {
    if (this.#index < this.#rows.length) {
      if (this.#signal?.aborted) return this.#fail(this.#signal.reason);
      return Promise.resolve({ done: false, value: this.#rows[this.#index++] as Row });
    }
    return this.#refill();
  }

  async #refill(): Promise<IteratorResult<Row>> {
    this.#rows = [];
    this.#index = 0;
    if (this.#done) return END;
    let batch: Batch;
    try {
      if (!this.#started) {
        this.#started = true;
        this.#signal?.throwIfAborted();
        this.#cursor.attach(await this.#open());
        this.#next = this.#cursor.fetch(this.#batchSize);
      }
      while (true) {
        if (this.#next === null) return await this.#end();
        batch = await this.#next;
        this.#signal?.throwIfAborted();
        // Fetch the next batch while this one is read: a round trip hidden behind the reader.
        this.#next = batch.done ? null : this.#prefetch();
        if (batch.rows.length > 0 || batch.done) break;
      }
    } catch (error) {
      return this.#fail(error);
    }
    if (batch.rows.length === 0) return await this.#end();
    this.#rows = batch.rows;
    this.#index = 1;
    return { done: false, value: batch.rows[0] as Row };
  }

  /** The rows ran out: close the portal (ends its transaction, returns a pool's connection). */
  async #end(): Promise<IteratorResult<Row>> {
    this.#done = true;
    await this.#cursor.close();
    return END;
  }

  #prefetch(): Promise<Batch> {
    const next = this.#cursor.fetch(this.#batchSize);
    // Seen by the next `next()`, or dropped by a close in between.
    next.catch(() => {});
    return next;
  }

  /** Ends the iteration with `error`, once the portal is closed. */
  async #fail(error: unknown): Promise<never> {
    this.#done = true;
    this.#rows = [];
    this.#next = null;
    await this.#cursor.close().catch(() => {});
    throw error;
  }

  async return(): Promise<IteratorResult<Row>> {
    this.#done = true;
    this.#rows = [];
    this.#next = null;
    await this.#cursor.close();
    return END;
  }
}

/** The error of `stream()` or `query(cursor)` where there is no session to read from. */
export function streamUnsupported(where: string): ConnectionError {
  return new ConnectionError(
    "UNSUPPORTED",
    `Cannot stream rows ${where}: a portal lives in a session, and there is none here; ` +
      "run the query whole, or stream over a TCP or WebSocket pool",
  );
}
