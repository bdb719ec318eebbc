// `pool.listen()`: one connection of its own for LISTEN, made with the pool's creator outside
// the pool's slots (it is never checked out), LISTENing to every channel someone listens to,
// delivering each notification to that channel's listeners in the order the server sent them,
// and, when the connection is lost, connecting again after a backoff (250 ms doubling to 5 s,
// from timers of the pool's clock) and LISTENing again to every channel. It closes once nobody
// listens, and with the pool.

import type { Clock } from "./_clock.ts";
import { errorMessage, PoolEventError } from "../errors.ts";
import type { Emitter } from "../_emitter.ts";
import type { Creator, PoolLogger } from "./options.ts";
import type { PoolEvents } from "./events.ts";

/** What the listener needs of a connection: edgepool's `Connection` has all of it. */
interface ListenConnection {
  query(sql: string): Promise<unknown>;
  on(event: "notification", listener: (n: { channel: string; payload: string }) => void): unknown;
  on(event: "close", listener: (error?: Error) => void): unknown;
  close(): Promise<void>;
  readonly closed: boolean;
}

/** Called with each notification's payload (and its channel). */
export type NotificationListener = (payload: string, channel: string) => void;

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;

/** A channel name as an SQL identifier. */
function quoted(channel: string): string {
  return `"${channel.replaceAll('"', '""')}"`;
}

/** The pool's listening connection and its channels. */
export class Listener<C> {
  readonly #creator: Creator<C>;
  readonly #clock: Clock;
  readonly #logger: PoolLogger;
  readonly #name: string;
  readonly #events: Emitter<PoolEvents<C>>;
  readonly #channels = new Map<string, Set<NotificationListener>>();
  #connection: ListenConnection | null = null;
  /** The channels the server LISTENs to on `#connection`. */
  #listening = new Set<string>();
  /** Connecting (and LISTENing to every channel), or `null`. */
  #connecting: Promise<void> | null = null;
  #retry: unknown = null;
  #backoff = FIRST_BACKOFF_MS;
  #closed = false;
  readonly #abort = new AbortController();

  constructor(
    creator: Creator<C>,
    settings: { clock: Clock; logger: PoolLogger; name: string },
    events: Emitter<PoolEvents<C>>,
  ) {
    this.#creator = creator;
    this.#clock = settings.clock;
    this.#logger = settings.logger;
    this.#name = settings.name;
    this.#events = events;
  }

  /**
   * Listens to `channel` with `fn`; resolves, once the server LISTENs, with the function that
   * stops (and UNLISTENs when it was the channel's last listener).
   */
  async listen(channel: string, fn: NotificationListener): Promise<() => Promise<void>> {
    if (typeof channel !== "string" || channel === "" || channel.includes("\0")) {
      throw new TypeError("listen(channel, fn) needs a channel name: a non-empty string, no NUL");
    }
    if (typeof fn !== "function") throw new TypeError("listen(channel, fn) needs a function");
    let listeners = this.#channels.get(channel);
    if (listeners === undefined) this.#channels.set(channel, listeners = new Set());
    const own = (payload: string, name: string) => fn(payload, name);
    listeners.add(own);
    try {
      if (this.#connection === null || this.#connection.closed) await this.#connect();
      const connection = this.#connection;
      if (connection === null) throw new TypeError(`${this.#name} is closed: nothing can listen`);
      // A channel added while connecting may have missed the LISTEN of every channel.
      if (!this.#listening.has(channel)) {
        this.#listening.add(channel);
        await connection.query(`LISTEN ${quoted(channel)}`);
      }
    } catch (error) {
      listeners.delete(own);
      if (listeners.size === 0) this.#channels.delete(channel);
      throw error;
    }
    let listening = true;
    return async () => {
      if (!listening) return;
      listening = false;
      listeners.delete(own);
      if (listeners.size > 0 || this.#channels.get(channel) !== listeners) return;
      this.#channels.delete(channel);
      const connection = this.#connection;
      if (this.#channels.size === 0) return await this.#stop();
      this.#listening.delete(channel);
      if (connection !== null && !connection.closed) {
        await connection.query(`UNLISTEN ${quoted(channel)}`).catch(() => {});
      }
    };
  }

  /** Connects (once at a time) and LISTENs to every channel. */
  #connect(): Promise<void> {
    if (this.#connecting !== null) return this.#connecting;
    this.#connecting = this.#open().finally(() => this.#connecting = null);
    return this.#connecting;
  }

  async #open(): Promise<void> {
    if (this.#closed) throw new TypeError(`${this.#name} is closed: nothing can listen`);
    const connection = await this.#creator(this.#abort.signal) as unknown as ListenConnection;
    if (typeof (connection as { on?: unknown }).on !== "function") {
      await connection.close?.();
      throw new TypeError("listen() needs edgepool's connections (a pool made from connect())");
    }
    connection.on("notification", (n) => this.#deliver(n.channel, n.payload));
    connection.on("close", (error) => this.#lost(connection, error));
    const channels = [...this.#channels.keys()];
    try {
      if (channels.length > 0) {
        await connection.query(channels.map((c) => `LISTEN ${quoted(c)}`).join("; "));
      }
    } catch (error) {
      await connection.close().catch(() => {});
      throw error;
    }
    if (this.#closed || this.#channels.size === 0) return void await connection.close();
    this.#connection = connection;
    this.#listening = new Set(channels);
    this.#backoff = FIRST_BACKOFF_MS;
  }

  #deliver(channel: string, payload: string): void {
    for (const fn of this.#channels.get(channel) ?? []) {
      try {
        fn(payload, channel);
      } catch (error) {
        this.#logger.warn?.(
          `${this.#name}: a listener of "${channel}" threw: ${errorMessage(error)}`,
        );
      }
    }
  }

  /** The listening connection closed: connect again after the backoff while anyone listens. */
  #lost(connection: ListenConnection, error: Error | undefined): void {
    if (this.#connection !== connection) return;
    this.#connection = null;
    if (this.#closed || this.#channels.size === 0) return;
    if (error !== undefined) this.#events.emit("error", new PoolEventError(error, "listen"));
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#retry !== null || this.#closed) return;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_MS);
    this.#retry = this.#clock.setTimeout(() => {
      this.#retry = null;
      if (this.#closed || this.#channels.size === 0) return;
      this.#connect().catch((error) => {
        this.#logger.warn?.(`${this.#name}: listening again failed: ${errorMessage(error)}`);
        this.#events.emit("error", new PoolEventError(error, "listen"));
        this.#scheduleRetry();
      });
    }, delay);
  }

  /** Nobody listens: the connection closes. */
  async #stop(): Promise<void> {
    const connection = this.#connection;
    this.#connection = null;
    if (this.#retry !== null) this.#clock.clearTimeout(this.#retry);
    this.#retry = null;
    await connection?.close().catch(() => {});
  }

  /** The pool closes: so does the listening connection, for good. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    this.#abort.abort(new TypeError(`${this.#name} is closed`));
    await this.#connecting?.catch(() => {});
    await this.#stop();
  }
}
