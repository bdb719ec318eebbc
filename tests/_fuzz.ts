// A seeded protocol fuzzer for Connection: a fake server on an in-memory transport logs the
// client in, then answers its queries with a byte stream made from valid responses and, in most
// cases, mutated (truncated or mislabelled messages, wrong and huge lengths, unknown types, bad
// column counts, invalid UTF-8, ErrorResponses missing fields, dropped, doubled and swapped
// messages, early EOF), delivered in random chunks. Every case checks that:
//
// - every query (and connect) settles, within a bound, with a result or a typed error:
//   PostgresError, ConnectionError (PROTOCOL_ERROR, CONNECTION_LOST, UNSUPPORTED, AUTH_FAILED at
//   login) or the decoding TypeError ("Cannot decode ..."); nothing else, nothing thrown out of
//   the transport's callbacks, no unhandled rejection;
// - unmutated streams give exactly the expected rows, errors and COPY rejections, and the
//   connection still runs a query after them;
// - a header declaring more than maxMessageSize fails the connection at once, without waiting
//   for the bytes it declares or for the server to hang up;
// - the Reader, fed the same chunks, never holds more than max(4096, 2 × bytes received).
//
// A case is fully determined by its seed: `deno task fuzz --seed S --cases 1` replays case S.

import assert from "node:assert/strict";
import process from "node:process";
import {
  type ByteStream,
  connect,
  type Connection,
  ConnectionError,
  PostgresError,
  type QueryResult,
  type StreamHandlers,
  type Transport,
} from "../mod.ts";
import { Reader } from "../src/_backend.ts";
import { concat } from "./_helpers.ts";

// ---------------------------------------------------------------------------------------------
// Randomness

/** mulberry32: small, fast, seeded. */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<V>(list: readonly V[]): V {
    return list[this.int(list.length)];
  }

  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

// ---------------------------------------------------------------------------------------------
// Backend messages

const encoder = new TextEncoder();

interface Message {
  type: number;
  body: Uint8Array;
  /** The length field, when it is not the true one (a mutation). */
  length?: number;
  /** Bytes without a length field (a mutation): the type byte, then the body. */
  raw?: boolean;
}

/** A message body from strings (NUL-terminated), numbers as [int16|int32, value] and bytes. */
function body(...parts: (string | [16 | 32 | 8, number] | Uint8Array)[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const part of parts) {
    if (typeof part === "string") out.push(encoder.encode(part + "\0"));
    else if (part instanceof Uint8Array) out.push(part);
    else {
      const [bits, value] = part;
      const bytes = new Uint8Array(bits / 8);
      const view = new DataView(bytes.buffer);
      if (bits === 8) view.setUint8(0, value);
      else if (bits === 16) view.setInt16(0, value);
      else view.setInt32(0, value);
      out.push(bytes);
    }
  }
  return concat(...out);
}

const msg = (type: string, content: Uint8Array = new Uint8Array(0)): Message => ({
  type: type.charCodeAt(0),
  body: content,
});

function serialize(messages: Message[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const m of messages) {
    if (m.raw) {
      parts.push(new Uint8Array([m.type]), m.body);
      continue;
    }
    const head = new Uint8Array(5);
    head[0] = m.type;
    new DataView(head.buffer).setInt32(1, m.length ?? m.body.length + 4);
    parts.push(head, m.body);
  }
  return concat(...parts);
}

const ready = (status = "I") => msg("Z", encoder.encode(status));
const errorFields = (fields: [string, string][]) =>
  body(...fields.map(([code, value]) => code + value), new Uint8Array([0]));

const LOGIN: Message[] = [
  msg("R", body([32, 0])),
  msg("S", body("server_version", "15.0 (fuzz)")),
  msg("S", body("client_encoding", "UTF8")),
  msg("K", body([32, 4242], [32, 0x5ec7e7])),
  ready(),
];

// ---------------------------------------------------------------------------------------------
// Valid responses and what the client must make of them

/** Column values by type OID: [text as sent, value the client must return]. */
const SAMPLES: Record<number, [string, unknown][]> = {
  23: [["42", 42], ["-7", -7]],
  20: [["9007199254740993", "9007199254740993"]],
  25: [["héllo", "héllo"], ["", ""], ["日本 😀", "日本 😀"]],
  16: [["t", true], ["f", false]],
  701: [["1.5", 1.5], ["NaN", NaN], ["-Infinity", -Infinity]],
  1007: [["{1,NULL,3}", [1, null, 3]], ["{}", []]],
  1009: [['{"a b",NULL,"c\\"d"}', ["a b", null, 'c"d']]],
  114: [['{"a":[1,"x"]}', { a: [1, "x"] }]],
  17: [["\\x00ff", new Uint8Array([0, 255])]],
  1184: [["2024-02-29 13:45:00.123+05:30", new Date("2024-02-29T08:15:00.123Z")]],
  1700: [["3.14159", "3.14159"]],
};
const OIDS = Object.keys(SAMPLES).map(Number);

type Expected =
  | { kind: "result"; command: string; rowCount: number | null; names: string[]; rows: unknown[][] }
  | { kind: "error"; code: string }
  | { kind: "copy" };

interface Planned {
  sql: string;
  params: unknown[] | undefined;
  rowMode: "object" | "array";
  response: Message[];
  expected: Expected;
}

function rowDescription(names: string[], oids: number[]): Message {
  const fields = names.map((name, i) =>
    body(name, [32, 0], [16, 0], [32, oids[i]], [16, -1], [32, -1], [16, 0])
  );
  return msg("T", body([16, names.length], ...fields));
}

function dataRow(cells: (string | null)[]): Message {
  const parts: Uint8Array[] = [body([16, cells.length])];
  for (const cell of cells) {
    if (cell === null) parts.push(body([32, -1]));
    else {
      const bytes = encoder.encode(cell);
      parts.push(body([32, bytes.length]), bytes);
    }
  }
  return msg("D", concat(...parts));
}

/** One query and the server's valid answer to it. */
function planQuery(rand: Random, index: number): Planned {
  const extended = rand.chance(0.5);
  const params = extended ? Array.from({ length: rand.int(3) }, (_, i) => i) : undefined;
  const rowMode = rand.chance(0.3) ? "array" as const : "object" as const;
  const response: Message[] = [];
  if (extended) response.push(msg("1"), msg("2"));
  const kind = rand.int(10);
  let expected: Expected;
  let sql = `select ${index}`;
  if (kind < 5) { // rows
    const width = rand.int(4);
    const names = Array.from(
      { length: width },
      (_, i) => i === 1 && rand.chance(0.1) ? "__proto__" : `c${i}`,
    );
    const oids = names.map(() => rand.pick(OIDS));
    const rows: unknown[][] = [];
    response.push(rowDescription(names, oids));
    for (let r = rand.int(4); r > 0; r--) {
      const cells: (string | null)[] = [];
      const values: unknown[] = [];
      for (const oid of oids) {
        if (rand.chance(0.15)) {
          cells.push(null);
          values.push(null);
        } else {
          const [text, value] = rand.pick(SAMPLES[oid]);
          cells.push(text);
          values.push(value);
        }
      }
      response.push(dataRow(cells));
      rows.push(values);
    }
    response.push(msg("C", body(`SELECT ${rows.length}`)));
    expected = { kind: "result", command: "SELECT", rowCount: rows.length, names, rows };
  } else if (kind < 6) { // a command without rows
    if (extended) response.push(msg("n"));
    response.push(msg("C", body("INSERT 0 3")));
    expected = { kind: "result", command: "INSERT", rowCount: 3, names: [], rows: [] };
  } else if (kind < 7) { // an empty query
    if (extended) response.push(msg("n"));
    response.push(msg("I"));
    expected = { kind: "result", command: "", rowCount: null, names: [], rows: [] };
  } else if (kind < 8) { // an error
    const code = rand.pick(["42601", "23505", "08P01", "57014", "XX000"]);
    const fields: [string, string][] = [["S", "ERROR"], ["V", "ERROR"], ["C", code], [
      "M",
      "fuzzed error é",
    ]];
    if (rand.chance(0.5)) fields.push(["D", "detail"], ["P", "3"], ["Z", "unknown field"]);
    response.push(msg("E", errorFields(fields)));
    expected = { kind: "error", code };
  } else if (kind < 9) { // COPY TO STDOUT
    sql = `copy (select ${index}) to stdout`;
    response.push(msg("H", body([8, 0], [16, 1], [16, 0])));
    for (let r = rand.int(4); r > 0; r--) response.push(msg("d", rand.bytes(rand.int(40))));
    response.push(msg("c"), msg("C", body("COPY 2")));
    expected = { kind: "copy" };
  } else { // COPY FROM STDIN: the client answers CopyFail, the server the error it causes
    sql = `copy t${index} from stdin`;
    response.push(msg("G", body([8, 0], [16, 1], [16, 0])));
    response.push(
      msg("E", errorFields([["S", "ERROR"], ["V", "ERROR"], ["C", "57014"], ["M", "failed"]])),
    );
    expected = { kind: "copy" };
  }
  response.push(ready());
  return { sql, params, rowMode, response, expected };
}

/** Messages a server may send at any time. */
function asyncMessage(rand: Random): Message {
  switch (rand.int(3)) {
    case 0:
      return msg("N", errorFields([["S", "NOTICE"], ["V", "NOTICE"], ["C", "00000"], ["M", "n"]]));
    case 1:
      return msg("S", body(rand.pick(["TimeZone", "__proto__", "x"]), "UTC"));
    default:
      return msg("A", body([32, 7], "channel", "payload ✓"));
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations

const MUTATIONS = [
  "truncate body",
  "wrong length",
  "huge length",
  "unknown type",
  "retype",
  "bad count",
  "invalid utf-8",
  "error fields missing",
  "drop message",
  "double message",
  "swap messages",
  "flip bytes",
  "early eof",
  "negative cell length",
  "FATAL",
  "random message",
  "raw bytes",
] as const;
type Mutation = (typeof MUTATIONS)[number];

/** Applies one mutation to `messages` (in place); returns what it did. */
function mutate(rand: Random, messages: Message[], maxMessageSize: number): string {
  if (messages.length === 0) return "none";
  const mutation: Mutation = rand.pick(MUTATIONS);
  const i = rand.int(messages.length);
  const m = messages[i];
  const type = String.fromCharCode(m.type);
  switch (mutation) {
    case "truncate body":
      messages[i] = { type: m.type, body: m.body.subarray(0, rand.int(m.body.length + 1)) };
      break;
    case "wrong length":
      messages[i] = { ...m, length: m.body.length + 4 + rand.pick([-4, -1, 1, 2, 100, -5]) };
      break;
    case "huge length":
      messages[i] = {
        ...m,
        length: rand.pick([
          maxMessageSize - 4,
          maxMessageSize + 1,
          200 * 1024 * 1024,
          0x7fffffff,
          rand.int(0x7fffffff),
        ]),
      };
      break;
    case "unknown type":
      messages.splice(i, 0, { type: rand.pick([0, 0x7e, 0xff, 0x46, 0x56]), body: rand.bytes(6) });
      break;
    case "retype":
      messages[i] = { ...m, type: rand.pick([..."TDCZEHGWdcsnItA12S3NK"]).charCodeAt(0) };
      break;
    case "bad count": {
      const at = type === "H" || type === "G" ? 1 : 0;
      if (m.body.length >= at + 2 && "TDHG".includes(type)) {
        const copy = m.body.slice();
        new DataView(copy.buffer).setInt16(at, rand.pick([-1, -32768, 32767, 0, 1, 2, 7]));
        messages[i] = { ...m, body: copy };
      }
      break;
    }
    case "invalid utf-8":
      if (m.body.length > 0) {
        const copy = m.body.slice();
        const bad = rand.pick([[0xff], [0xc3], [0xe2, 0x28, 0xa1], [0xed, 0xa0, 0x80], [0x80]]);
        copy.set(bad.slice(0, copy.length), rand.int(Math.max(1, copy.length - bad.length)));
        messages[i] = { ...m, body: copy };
      }
      break;
    case "error fields missing": {
      const fields: [string, string][] = [["S", "ERROR"], ["V", "ERROR"], ["C", "42000"], [
        "M",
        "m",
      ]].filter(() => rand.chance(0.5)) as [string, string][];
      let content = errorFields(fields);
      if (rand.chance(0.3)) content = content.subarray(0, content.length - 1); // no terminator
      messages.splice(i, 0, msg(rand.pick(["E", "N"]), content));
      break;
    }
    case "drop message":
      messages.splice(i, 1);
      break;
    case "double message":
      messages.splice(i, 0, m);
      break;
    case "swap messages": {
      const j = rand.int(messages.length);
      [messages[i], messages[j]] = [messages[j], messages[i]];
      break;
    }
    case "flip bytes":
      if (m.body.length > 0) {
        const copy = m.body.slice();
        for (let n = 1 + rand.int(3); n > 0; n--) copy[rand.int(copy.length)] = rand.int(256);
        messages[i] = { ...m, body: copy };
      }
      break;
    case "early eof":
      messages.splice(i);
      break;
    case "negative cell length":
      messages.splice(
        i,
        0,
        msg("D", body([16, 1], [32, rand.pick([-2, -100, -2147483648])])),
      );
      break;
    case "random message":
      messages.splice(i, 0, {
        type: rand.pick([..."123ACDEGHIKNRSTWZcdnstv~"]).charCodeAt(0),
        body: rand.bytes(rand.int(24)),
      });
      break;
    case "raw bytes": // unframed: the next header is read from the middle of them
      messages.splice(i, 0, { type: rand.int(256), body: rand.bytes(rand.int(12)), raw: true });
      break;
    case "FATAL":
      messages.splice(
        i,
        0,
        msg("E", errorFields([["S", "FATAL"], ["V", "FATAL"], ["C", "57P01"], ["M", "bye"]])),
      );
      break;
  }
  return `${mutation} at ${i} (${type})`;
}

// ---------------------------------------------------------------------------------------------
// The in-memory transport

class MemoryStream implements ByteStream {
  readonly encrypted = false;
  #handlers: StreamHandlers | null = null;
  #closed = false;
  /** Bytes the client wrote. */
  written = 0;
  #onFirstWrite: (() => void) | null;
  /** Something thrown out of the client's handlers: a bug (a transport would crash on it). */
  thrown: unknown[] = [];

  constructor(onFirstWrite: () => void) {
    this.#onFirstWrite = onFirstWrite;
  }

  start(handlers: StreamHandlers): void {
    this.#handlers = handlers;
  }

  write(data: Uint8Array): void {
    this.written += data.length;
    const first = this.#onFirstWrite;
    this.#onFirstWrite = null;
    if (first !== null) queueMicrotask(first);
  }

  close(): void {
    this.hangUp();
  }

  get closed(): boolean {
    return this.#closed;
  }

  feed(chunk: Uint8Array): void {
    if (this.#closed || this.#handlers === null) return;
    try {
      this.#handlers.data(chunk);
    } catch (error) {
      this.thrown.push(error);
    }
  }

  hangUp(): void {
    if (this.#closed) return;
    this.#closed = true;
    queueMicrotask(() => {
      try {
        this.#handlers?.close();
      } catch (error) {
        this.thrown.push(error);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
// One case

/** What settling looks like. */
class Resolved<T = QueryResult> {
  constructor(readonly value: T) {}
}

async function outcome<T>(promise: Promise<T>): Promise<Resolved<T> | unknown> {
  try {
    return new Resolved(await promise);
  } catch (error) {
    return error;
  }
}

/** Upper bound for a case to settle: only a hang reaches it (a failure, not a measurement). */
const SETTLE_BOUND_MS = 5000;

async function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not settle within ${SETTLE_BOUND_MS} ms`)),
      SETTLE_BOUND_MS,
    );
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(timer);
  }
}

const QUERY_CODES = new Set(["PROTOCOL_ERROR", "CONNECTION_LOST", "UNSUPPORTED"]);
const CONNECT_CODES = new Set([...QUERY_CODES, "AUTH_FAILED"]);

/** Why `value` is not an allowed outcome, or null. */
function disallowed(value: unknown, codes: Set<string>): string | null {
  if (value instanceof Resolved || value instanceof PostgresError) return null;
  if (value instanceof ConnectionError) {
    return codes.has(value.code) ? null : `ConnectionError with code ${value.code}`;
  }
  if (value instanceof TypeError && value.message.startsWith("Cannot decode")) return null;
  const shown = value instanceof Error ? `${value.name}: ${value.message}` : String(value);
  return `an untyped outcome: ${shown}`;
}

function expectedRow(names: string[], values: unknown[], rowMode: "object" | "array"): unknown {
  if (rowMode === "array") return values;
  const row: Record<string, unknown> = {};
  names.forEach((name, i) =>
    Object.defineProperty(row, name, { value: values[i], enumerable: true, writable: true })
  );
  return row;
}

function check(planned: Planned, got: unknown): void {
  const want = planned.expected;
  if (want.kind === "copy") {
    assert.ok(got instanceof ConnectionError && got.code === "UNSUPPORTED", `COPY: ${got}`);
  } else if (want.kind === "error") {
    assert.ok(got instanceof PostgresError, `expected PostgresError ${want.code}, got ${got}`);
    assert.equal(got.code, want.code);
  } else {
    assert.ok(got instanceof Resolved, `expected a result, got ${got}`);
    const result = got.value as QueryResult;
    assert.equal(result.command, want.command);
    assert.equal(result.rowCount, want.rowCount);
    assert.deepEqual(result.fields.map((f) => f.name), want.names);
    assert.deepEqual(
      result.rows,
      want.rows.map((values) => expectedRow(want.names, values, planned.rowMode)),
    );
  }
}

/** Splits `bytes` at random points, now and then into empty or one-byte chunks. */
function chunks(rand: Random, bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const style = rand.int(4);
  for (let at = 0; at < bytes.length;) {
    const size = style === 0
      ? bytes.length
      : style === 1
      ? rand.int(4)
      : style === 2
      ? rand.int(64)
      : 1 + rand.int(4096);
    // A transport may hand over a view into a larger buffer it reuses afterwards.
    const chunk = bytes.slice(at, at + size);
    out.push(chunk);
    at += size;
  }
  return out;
}

/** Lets promise chains run: `n` microtask turns (no macrotask, unlike pool_faults' `turns`). */
async function microtasks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

/** Lets the client run between chunks: a few microtasks, rarely a macrotask. */
async function yieldTo(rand: Random): Promise<void> {
  if (rand.chance(0.002)) await new Promise((resolve) => setTimeout(resolve, 0));
  else await microtasks(rand.int(4));
}

/** Statistics of a run. */
export interface FuzzStats {
  cases: number;
  queries: number;
  resolved: number;
  postgresErrors: number;
  decodeErrors: number;
  connectionErrors: Record<string, number>;
  connectFailures: number;
}

/** Runs the case of `seed`; returns why it failed, or null. */
export async function fuzzCase(seed: number, stats?: FuzzStats): Promise<string | null> {
  const rand = new Random(seed);
  const mode = rand.int(10); // 0-1 valid, 2 oversized header without hang-up, else mutated
  const maxMessageSize = rand.pick([1024, 65536, 256 * 1024 * 1024]);
  const mutateLogin = mode >= 3 && rand.chance(0.15);
  const login = LOGIN.slice();
  const notes: string[] = [`mode ${mode}`, `maxMessageSize ${maxMessageSize}`];
  if (mutateLogin) notes.push("login: " + mutate(rand, login, maxMessageSize));
  const loginBytes = serialize(login);

  // The Reader's memory bound, checked on the same chunks the connection gets.
  const shadow = new Reader(maxMessageSize, () => {});
  let shadowFailed = false;
  let received = 0;
  const problems: string[] = [];
  // A transport may hand over views of one buffer that it reuses once the callback returns.
  const reuse = rand.chance(0.3) ? new Uint8Array(8192) : null;
  const deliver = async (bytes: Uint8Array) => {
    for (const chunk of chunks(rand, bytes)) {
      if (reuse !== null && chunk.length <= reuse.length) {
        reuse.set(chunk);
        stream.feed(reuse.subarray(0, chunk.length));
        reuse.fill(0xee);
      } else stream.feed(chunk);
      received += chunk.length;
      if (!shadowFailed) {
        try {
          shadow.push(chunk);
        } catch (error) {
          shadowFailed = true;
          if (!(error instanceof ConnectionError && error.code === "PROTOCOL_ERROR")) {
            problems.push(`the Reader threw ${error}`);
          }
        }
        const bound = Math.max(4096, 2 * received);
        if (shadow.capacity > bound) {
          problems.push(`the Reader holds ${shadow.capacity} bytes for ${received} received`);
        }
      }
      await yieldTo(rand);
    }
  };

  let connectSettled = false;
  const stream: MemoryStream = new MemoryStream(async () => {
    await deliver(loginBytes);
    // A mutated login may leave the client waiting for more, as it should: end it.
    await microtasks(50);
    if (!connectSettled) stream.hangUp();
  });
  const transport: Transport = { name: "fuzz", connect: () => Promise.resolve(stream) };
  const opened = await bounded(
    outcome(connect("postgres://fuzz@memory/db?sslmode=disable", {
      transport,
      maxMessageSize,
      statementCache: rand.pick([0, 0, 10]),
      connectTimeout: 0,
    })),
    "connect",
  ).catch((error) => error);
  connectSettled = true;
  if (!(opened instanceof Resolved)) {
    stats && stats.connectFailures++;
    const why = disallowed(opened, CONNECT_CODES);
    if (why !== null) problems.push(`connect: ${why}`);
    if (!mutateLogin) problems.push(`connect failed on a valid login: ${opened}`);
    stream.hangUp();
    return report(problems, stream, notes);
  }
  const conn = opened.value as Connection;
  conn.on("notice", () => {});
  conn.on("notification", () => {});
  conn.on("parameter", () => {});

  // Queries issued on a connection that a mutated login already closed fail with that.
  const codes = conn.closed ? new Set([...QUERY_CODES, "CONNECTION_CLOSED"]) : QUERY_CODES;
  const planned = Array.from({ length: 1 + rand.int(4) }, (_, i) => planQuery(rand, i));
  const outcomes = planned.map((p) => outcome(conn.query(p.sql, p.params, { rowMode: p.rowMode })));
  const messages: Message[] = [];
  for (const p of planned) {
    for (const m of p.response) {
      if (rand.chance(0.05)) messages.push(asyncMessage(rand));
      messages.push(m);
    }
  }
  if (mode === 2) {
    // A header declaring more than maxMessageSize after valid answers: the connection must fail
    // at once, not wait for the bytes it declares nor for the server to hang up.
    messages.push({
      type: 0x44,
      body: rand.bytes(rand.int(20)),
      length: maxMessageSize + 1 + rand.int(1000),
    });
    notes.push("oversized header at the end");
  } else if (mode >= 3) {
    for (let n = 1 + rand.int(rand.chance(0.2) ? 8 : 3); n > 0; n--) {
      notes.push(mutate(rand, messages, maxMessageSize));
    }
  }
  // A server answers what it has received: let the client write first.
  await microtasks(10);
  await deliver(serialize(messages));

  let settled: unknown[];
  if (mode <= 2) {
    // No hang-up: everything must settle from the bytes alone.
    settled = await bounded(Promise.all(outcomes), "queries (without a hang-up)").catch((e) => {
      problems.push(String(e));
      return [];
    });
    if (mode === 2 && !conn.closed) problems.push("the connection survived an oversized header");
  } else {
    stream.hangUp();
    settled = await bounded(Promise.all(outcomes), "queries").catch((e) => {
      problems.push(String(e));
      return [];
    });
  }

  for (let i = 0; i < settled.length; i++) {
    const value = settled[i];
    if (stats) {
      stats.queries++;
      if (value instanceof Resolved) stats.resolved++;
      else if (value instanceof PostgresError) stats.postgresErrors++;
      else if (value instanceof ConnectionError) {
        stats.connectionErrors[value.code] = (stats.connectionErrors[value.code] ?? 0) + 1;
      } else if (value instanceof TypeError) stats.decodeErrors++;
    }
    const why = disallowed(value, codes);
    if (why !== null) problems.push(`query ${i}: ${why}`);
    if (mode <= 1) {
      try {
        check(planned[i], value);
      } catch (error) {
        problems.push(`query ${i} (${planned[i].sql}): ${(error as Error).message}`);
      }
    }
  }

  if (mode <= 1 && problems.length === 0) {
    // After valid answers the connection goes on.
    const next = outcome(conn.query("select 'after'"));
    await deliver(
      serialize([
        rowDescription(["a"], [25]),
        dataRow(["after"]),
        msg("C", body("SELECT 1")),
        ready(),
      ]),
    );
    const after = await bounded(next, "the query after");
    if (!(after instanceof Resolved) || (after.value as QueryResult).rows[0]?.a !== "after") {
      problems.push(`the query after valid answers failed: ${after}`);
    }
  }
  if (mode <= 2) stream.hangUp();
  await bounded(conn.close(), "close").catch((e) => problems.push(String(e)));
  if (!conn.closed) problems.push("the connection is not closed after a hang-up");
  return report(problems, stream, notes);
}

function report(problems: string[], stream: MemoryStream, notes: string[]): string | null {
  for (const error of stream.thrown) problems.push(`thrown out of a stream handler: ${error}`);
  return problems.length === 0 ? null : `${problems.join("; ")} [${notes.join(", ")}]`;
}

/** A failing case: its seed replays it. */
export interface FuzzFailure {
  seed: number;
  reason: string;
}

/** Runs `cases` cases, seeds `seed`, `seed + 1`, ...; unhandled rejections count as failures. */
export async function fuzz(
  options: { cases: number; seed: number; onFailure?: (failure: FuzzFailure) => void },
): Promise<{ failures: FuzzFailure[]; stats: FuzzStats }> {
  const stats: FuzzStats = {
    cases: 0,
    queries: 0,
    resolved: 0,
    postgresErrors: 0,
    decodeErrors: 0,
    connectionErrors: {},
    connectFailures: 0,
  };
  const failures: FuzzFailure[] = [];
  let current = options.seed;
  const unhandled = (reason: unknown) => {
    const failure = { seed: current, reason: `unhandled rejection: ${reason}` };
    failures.push(failure);
    options.onFailure?.(failure);
  };
  // Deno reports them as a web event (process.on sees them, but Deno still fails on them).
  const target = globalThis as unknown as Partial<EventTarget>;
  const web = typeof target.addEventListener === "function";
  const onEvent = (event: Event) => {
    event.preventDefault();
    unhandled((event as PromiseRejectionEvent).reason);
  };
  if (web) target.addEventListener!("unhandledrejection", onEvent);
  else process.on("unhandledRejection", unhandled);
  try {
    for (let i = 0; i < options.cases; i++) {
      current = (options.seed + i) >>> 0;
      let reason: string | null;
      try {
        reason = await fuzzCase(current, stats);
      } catch (error) {
        reason = `the case threw: ${error instanceof Error ? error.stack : error}`;
      }
      stats.cases++;
      if (reason !== null) {
        const failure = { seed: current, reason };
        failures.push(failure);
        options.onFailure?.(failure);
      }
    }
    // Rejections are reported as unhandled after a turn or two of the event loop.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 1));
  } finally {
    if (web) target.removeEventListener!("unhandledrejection", onEvent);
    else process.off("unhandledRejection", unhandled);
  }
  return { failures, stats };
}
