// Fakes for the pool's unit tests: a controllable clock, an in-memory connection that
// understands just enough SQL (BEGIN/COMMIT/ROLLBACK and the empty ping), and a server that
// makes such connections and can be told to fail or to be slow.

import type { Clock, CommandTag, PoolAdapter, QueryOptions, QueryResult } from "../mod.ts";

// ---------------------------------------------------------------------------------------------
// Time

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Lets pending promise chains run: many microtask turns, no macrotask. */
export async function flush(turns = 40): Promise<void> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
}

/** One real macrotask (for FinalizationRegistry callbacks and the like). */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * A clock that stands still until told to move. Timers sit in a list sorted by due time (then
 * by creation); `advance()` fires them in order, letting promise chains settle after each.
 */
export class FakeClock implements Clock {
  #now: number;
  #timers: Timer[] = [];
  #seq = 0;
  /** What `random()` returns: set it to steer lifetime jitter and backoff. */
  randomValue = 0.5;

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    const i = this.#timers.findIndex((t) => t.at > timer.at);
    if (i === -1) this.#timers.push(timer);
    else this.#timers.splice(i, 0, timer);
    return timer;
  }

  clearTimeout(handle: unknown): void {
    const i = this.#timers.indexOf(handle as Timer);
    if (i !== -1) this.#timers.splice(i, 1);
  }

  random(): number {
    return this.randomValue;
  }

  /** A mark for {@link loseTimers}: timers set from now on are after it. */
  mark(): number {
    return this.#seq;
  }

  /**
   * Drops, without firing, the pending timers set before `mark` (default: all): what workerd
   * does to the timers of a request that has ended.
   */
  loseTimers(mark = Infinity): void {
    this.#timers = this.#timers.filter((t) => t.seq >= mark);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.#now + ms);
  }

  /** Moves time forward to `time`, firing every timer that falls due, in order. */
  async advanceTo(time: number): Promise<void> {
    await flush();
    for (;;) {
      const next = this.#timers[0];
      if (next === undefined || next.at > time) break;
      this.#timers.shift();
      this.#now = Math.max(this.#now, next.at);
      next.fn();
      await flush();
    }
    this.#now = Math.max(this.#now, time);
    await flush();
  }

  /** Resolves after `ms` of fake time (for the fakes' delays); aborts with `signal`. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        this.clearTimeout(timer);
        reject(signal!.reason);
      };
      const timer = this.setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

/** An error the fake adapter takes for a broken connection (`disconnect: true`). */
export class DisconnectError extends Error {
  readonly disconnect = true;
  constructor(message = "the server closed the connection") {
    super(message);
    this.name = "DisconnectError";
  }
}

/** An error with a SQLSTATE-like `code`, as a server error or a connect failure carries. */
export class CodedError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "CodedError";
    this.code = code;
  }
}

/** What a wrong password looks like: SQLSTATE 28P01. */
export function authError(): CodedError {
  return new CodedError("28P01", 'password authentication failed for user "app"');
}

// ---------------------------------------------------------------------------------------------
// Connection

export type FakeStatus = "idle" | "transaction" | "failed";

/** A connection held in memory. */
export class FakeConnection {
  readonly id: number;
  status: FakeStatus = "idle";
  closed = false;
  /** How it was closed: by the pool (`graceful`/`force`) or by itself (`broken`). */
  closedHow: "graceful" | "force" | "broken" | undefined = undefined;
  /** Every query text, pings ("") included, in order. */
  readonly log: string[] = [];
  /** Queries running now. */
  pending = 0;
  /** How long a ping ("") takes, in fake ms. */
  pingDelay = 0;
  /** How long every other query takes, in fake ms. */
  queryDelay = 0;
  /**
   * A login still under way (started early): queries wait for it, and a failed one fails
   * them with its error and breaks the connection. See `FakeServer.earlyLogin`.
   */
  login: Promise<void> | null = null;
  #finishLogin: ((error?: unknown) => void) | null = null;
  readonly #clock: FakeClock;
  readonly #failures: unknown[] = [];
  readonly #listeners = new Set<(error?: Error) => void>();

  constructor(id: number, clock: FakeClock) {
    this.id = id;
    this.#clock = clock;
  }

  /** Starts a login that `finishLogin()` ends. */
  startLogin(): void {
    this.login = new Promise<void>((resolve, reject) => {
      this.#finishLogin = (error) => {
        this.#finishLogin = null;
        if (error === undefined) {
          this.login = null;
          return resolve();
        }
        reject(error);
        this.breakIt(error as Error);
      };
    });
    this.login.catch(() => {});
  }

  /** Ends the login started by `startLogin()`: logged in, or failed with `error`. */
  finishLogin(error?: unknown): void {
    this.#finishLogin?.(error);
  }

  /** The next query (a ping included) fails with `error`; a disconnect error breaks it too. */
  failNext(error: unknown): void {
    this.#failures.push(error);
  }

  /** The connection breaks by itself (server gone): its close listeners hear `error`. */
  breakIt(error: Error = new DisconnectError()): void {
    if (this.closed) return;
    this.closed = true;
    this.closedHow = "broken";
    this.status = "idle";
    for (const listener of [...this.#listeners]) listener(error);
  }

  onClose(listener: (error?: Error) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(force: boolean): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.closedHow = force ? "force" : "graceful";
      for (const listener of [...this.#listeners]) listener(undefined);
    }
    return Promise.resolve();
  }

  async query(sql: string, signal?: AbortSignal): Promise<QueryResult> {
    if (this.closed) throw new DisconnectError("the connection is closed");
    this.log.push(sql);
    this.pending++;
    try {
      if (this.login !== null) await this.login;
      const delay = sql === "" ? this.pingDelay : this.queryDelay;
      if (delay > 0) await this.#clock.sleep(delay, signal);
      else if (signal?.aborted) throw signal.reason;
      if (this.closed) throw new DisconnectError("the connection closed during the query");
      if (this.#failures.length > 0) {
        const error = this.#failures.shift();
        if ((error as { disconnect?: unknown })?.disconnect === true) this.breakIt();
        else if (this.status === "transaction") this.status = "failed";
        throw error;
      }
      return this.#run(sql);
    } finally {
      this.pending--;
    }
  }

  #run(sql: string): QueryResult {
    const word = sql.trim().split(/\s+/)[0].toUpperCase();
    if (word === "BEGIN") {
      this.status = "transaction";
      return result("BEGIN");
    }
    if (word === "COMMIT") {
      const failed = this.status === "failed";
      this.status = "idle";
      // As PostgreSQL does: COMMIT of a failed transaction answers ROLLBACK.
      return result(failed ? "ROLLBACK" : "COMMIT");
    }
    if (word === "ROLLBACK") {
      this.status = "idle";
      return result("ROLLBACK");
    }
    if (this.status === "failed") {
      throw new CodedError(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
      );
    }
    if (word === "") return result("");
    return { ...result(word), rowCount: 1, rows: [{ sql, connection: this.id }] };
  }
}

function result(command: string): QueryResult {
  return { command: command as CommandTag, rowCount: null, rows: [], fields: [] };
}

/** The adapter for {@link FakeConnection}: `disconnect: true` errors are disconnects. */
export const fakeAdapter: PoolAdapter<FakeConnection> = {
  query<Row = Record<string, unknown>>(
    connection: FakeConnection,
    sql: string,
    _params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>> {
    return connection.query(sql, options?.signal) as Promise<QueryResult<Row>>;
  },
  close: (connection, force) => connection.close(force),
  transactionStatus: (connection) => connection.closed ? "unknown" : connection.status,
  isClosed: (connection) => connection.closed,
  isBusy: (connection) => connection.pending > 0,
  async ping(connection, signal) {
    await connection.query("", signal);
  },
  isDisconnect: (error) => (error as { disconnect?: unknown })?.disconnect === true,
  onClose: (connection, listener) => connection.onClose(listener),
  loggingIn: (connection) => connection.login,
};

// ---------------------------------------------------------------------------------------------
// Server

/** Makes {@link FakeConnection}s for a pool's `creator`; can fail, be slow, or hold connects. */
export class FakeServer {
  readonly clock: FakeClock;
  /** Every connection made, in order. */
  readonly created: FakeConnection[] = [];
  /** Connect attempts, failed ones included. */
  attempts = 0;
  /** Clock time of every attempt. */
  readonly attemptTimes: number[] = [];
  /** How long a connect takes, in fake ms. */
  connectDelay = 0;
  /** New connections come with their login under way (`FakeConnection.finishLogin`). */
  earlyLogin = false;
  #failure: { error: unknown; remaining: number } | null = null;
  #held: (() => void)[] | null = null;

  constructor(clock: FakeClock = new FakeClock()) {
    this.clock = clock;
  }

  /** The next `n` connects (default: all from now on) fail with `error`. */
  failConnects(error: unknown, n = Infinity): void {
    this.#failure = { error, remaining: n };
  }

  /** Connects succeed again. */
  stopFailing(): void {
    this.#failure = null;
  }

  /** Connects from now on wait until `release()` (on top of `connectDelay`). */
  hold(): void {
    this.#held ??= [];
  }

  /** Lets every held connect go on, and stops holding. */
  release(): void {
    const held = this.#held ?? [];
    this.#held = null;
    for (const go of held) go();
  }

  /** Connects waiting for `release()`. */
  get holding(): number {
    return this.#held?.length ?? 0;
  }

  /** Connections not closed. */
  get open(): FakeConnection[] {
    return this.created.filter((c) => !c.closed);
  }

  /** The pool's `creator`. Aborts with `signal`. */
  readonly creator = async (signal: AbortSignal): Promise<FakeConnection> => {
    this.attempts++;
    this.attemptTimes.push(this.clock.now());
    if (this.#held !== null) {
      const held = this.#held;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = held.indexOf(go);
          if (i !== -1) held.splice(i, 1);
          reject(signal.reason);
        };
        const go = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        held.push(go);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
    if (this.connectDelay > 0) await this.clock.sleep(this.connectDelay, signal);
    if (signal.aborted) throw signal.reason;
    const failure = this.#failure;
    if (failure !== null) {
      if (--failure.remaining <= 0) this.#failure = null;
      throw failure.error;
    }
    const connection = new FakeConnection(this.created.length + 1, this.clock);
    if (this.earlyLogin) connection.startLogin();
    this.created.push(connection);
    return connection;
  };
}
