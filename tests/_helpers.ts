// Helpers shared by the test files: protocol bytes for fake servers, assertions on rejections
// and errors, bounded waits (`delay`, `within`, `eventually`), names unique to a run, and the
// server's view of a test's backends. One home each: a test file does not define its own.

import assert from "node:assert/strict";
import process from "node:process";
import type { Socket } from "node:net";
import { inspect } from "node:util";
import { ConnectionError, type ConnectionErrorCode, PostgresError } from "../mod.ts";
import type { TestServer } from "./_server.ts";
import type { ByteStream, Transport } from "../src/transport.ts";

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function int32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, n);
  return out;
}

export function int16(n: number): Uint8Array {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setInt16(0, n);
  return out;
}

const encoder = new TextEncoder();

/** `s` as UTF-8 bytes. */
export const text = (s: string): Uint8Array => encoder.encode(s);

/** `s` as a NUL-terminated string (the protocol's String). */
export const cstr = (s: string): Uint8Array => concat(text(s), new Uint8Array([0]));

/** A typed protocol message: type, length (itself included), body. */
export function message(type: string, ...body: Uint8Array[]): Uint8Array {
  const content = concat(...body);
  return concat(text(type), int32(content.length + 4), content);
}

/** What a fake server's client sent on `socket`: each chunk as it came (`packets`), and the
 * bytes in order, read `n` at a time as they arrive. */
export class SocketBytes {
  readonly packets: Uint8Array[] = [];
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;
  #buf: Uint8Array = new Uint8Array(0);
  #wake: (() => void) | null = null;
  #ended = false;

  constructor(socket: Socket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.packets.push(new Uint8Array(chunk));
      this.#buf = concat(this.#buf, chunk);
      this.#wake?.();
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.#ended = true;
        this.#wake?.();
        resolve();
      })
    );
  }

  /** How many bytes arrived that nobody has read. */
  get unread(): number {
    return this.#buf.length;
  }

  /** The next `n` bytes; rejects if the client closes the connection first. */
  async read(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (this.#ended) throw new Error("the client closed the connection");
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = null;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }
}

/** What `rejection()` gives for a promise that resolved instead. */
export class Resolved {
  constructor(readonly value: unknown) {}
}

/** The error `promise` rejects with (a `Resolved` if it resolves). Never rejects, so it can be
 * taken at once and awaited later without an unhandled rejection in between. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    return new Resolved(await promise);
  } catch (error) {
    return error;
  }
}

/** The error `promise` rejects with; fails the test ("expected a rejection") if it resolves.
 * Typed as a record of fields so that a test can compare any of them (`.code`, `.severity`).
 * Unlike `rejection()`, it rejects: await it at once, or handle it before the next turn. */
export async function errorOf(promise: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Record<string, unknown>;
  }
  return assert.fail("expected a rejection");
}

/** `error.code` when it is a string (ConnectionError, PoolError, PostgresError, Node's errors). */
export function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function show(value: unknown): string {
  return value instanceof Resolved
    ? `a resolved promise (${inspect(value.value, { depth: 1 })})`
    : inspect(value, { depth: 2 });
}

/** Follows a promise without awaiting it (and without an unhandled rejection). */
export function watch<T>(promise: Promise<T>) {
  const state = { done: false, failed: false, value: undefined as T | undefined, error: undefined };
  promise.then(
    (value) => Object.assign(state, { done: true, value }),
    (error) => Object.assign(state, { done: true, failed: true, error }),
  );
  return state as { done: boolean; failed: boolean; value: T | undefined; error: unknown };
}

/** Nothing checked out of `pool`, nobody waiting for it (its status in the message). */
export function assertIdle(
  pool: { stats(): { checkedOut: number; requestsWaiting: number }; status(): string },
): void {
  const stats = pool.stats();
  assert.equal(stats.checkedOut, 0, pool.status());
  assert.equal(stats.requestsWaiting, 0, pool.status());
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a failure naming `what` if it has not settled after `ms` (a hang guard, not a
 * measurement); `detail`, if given, adds what it says at that time (a log tail). */
export async function within<R>(
  promise: Promise<R>,
  ms: number,
  what: string,
  detail?: () => string,
): Promise<R> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const more = detail ? `\n${detail()}` : "";
      reject(new Error(`${what}: still pending after ${ms} ms${more}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `probe` every `every` ms until it holds; fails naming `what` once `ms` have passed
 * (a hang guard: the probe decides, the clock only ends a wait that would never end). */
export async function eventually(
  what: string,
  probe: () => boolean | Promise<boolean>,
  ms = 10_000,
  every = 25,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await probe())) {
    if (performance.now() > deadline) assert.fail(`${what}: not reached after ${ms} ms`);
    await delay(every);
  }
}

let sequence = 0;

/** `${prefix}_<pid>_<n>`: a name (application_name, table) no other test of this run uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${++sequence}`;
}

/** Pids of the backends with application_name `name`, in pid order, seen by the superuser. */
export async function backends(server: TestServer, name: string): Promise<number[]> {
  const out = await server.psql(
    `select pid from pg_stat_activity where application_name = '${name}' order by pid`,
  );
  return out === "" ? [] : out.split("\n").map(Number);
}

/** Terminates backend `pid` if it is still running a statement: the `finally` of a test whose
 * long statement (a ten-minute pg_sleep) should have ended by a cancel, so that a failed run
 * leaves no backend sleeping behind it (and `close()` has nothing to wait for). Works through
 * psql, not through the client under test. */
export async function endStatement(server: TestServer, pid: number): Promise<void> {
  await server.psql(
    `select pg_terminate_backend(pid) from pg_stat_activity where pid = ${pid} and state = 'active'`,
  );
}

export function assertConnectionError(
  error: unknown,
  code: ConnectionErrorCode,
): asserts error is ConnectionError {
  assert.ok(
    error instanceof ConnectionError,
    `expected ConnectionError ${code}, got ${show(error)}`,
  );
  assert.equal(error.code, code, `expected ${code}: ${error.message}`);
}

export function assertPostgresError(error: unknown, code: string): asserts error is PostgresError {
  assert.ok(error instanceof PostgresError, `expected PostgresError ${code}, got ${show(error)}`);
  assert.equal(error.code, code, `expected SQLSTATE ${code}: ${error.message}`);
}

/**
 * `base`, named `base.name+suffix`, whose streams show `onWrite` each chunk they write, before it
 * goes out: what the tests that count or record a connection's writes wrap a transport in.
 */
export function tapWrites(
  base: Transport,
  suffix: string,
  onWrite: (data: Uint8Array) => void,
): Transport {
  return {
    name: `${base.name}+${suffix}`,
    async connect(options: Parameters<Transport["connect"]>[0]): Promise<ByteStream> {
      const stream = await base.connect(options);
      return {
        get encrypted() {
          return stream.encrypted;
        },
        start: (handlers) => stream.start(handlers),
        write(data) {
          onWrite(data);
          stream.write(data);
        },
        close: () => stream.close(),
      };
    },
  };
}

/**
 * A transport whose streams count the frontend messages of type `type` (a char code: 0x45
 * Execute, 0x44 Describe) they write, in `count`, and each write's count in `writes`. The
 * startup message, which has no type byte, is walked over without counting (its length's first
 * byte is 0).
 */
export function countingMessages(
  base: Transport,
  type: number,
): Transport & { count: number; writes: number[] } {
  const wrapper: Transport & { count: number; writes: number[] } = Object.assign(
    tapWrites(base, "count", (data) => {
      // Walk the messages: a type byte, then a length that counts itself.
      let count = 0;
      for (let pos = 0; pos + 5 <= data.length;) {
        const length = new DataView(data.buffer, data.byteOffset + pos + 1, 4).getInt32(0);
        if (data[pos] === type) count++;
        pos += 1 + length;
      }
      wrapper.count += count;
      wrapper.writes.push(count);
    }),
    { count: 0, writes: [] as number[] },
  );
  return wrapper;
}
