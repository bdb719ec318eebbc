// Hostile bytes: the backend message Reader (src/_backend.ts) on split, oversized and random
// input, and Connection against fake servers (node:net, run over every TCP transport of the
// runtime) and an in-memory transport that send malformed or malicious protocol.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import {
  type ByteStream,
  connect,
  type Connection,
  ConnectionError,
  PostgresError,
  type StreamHandlers,
  type Transport,
} from "../mod.ts";
import { Reader } from "../src/_backend.ts";
import { transports } from "./_transports.ts";
import {
  assertConnectionError,
  concat,
  cstr,
  int16,
  int32,
  message,
  rejection,
  Resolved,
  show,
  SocketBytes,
  text,
  within,
} from "./_helpers.ts";

const T = { timeout: 20_000 };

// ---------------------------------------------------------------------------------------------
// Bytes

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);

const authOk = message("R", int32(0));
const keyData = message("K", int32(4242), int32(0x5ec7e7));
const ready = (status = "I"): Uint8Array => message("Z", text(status));
const parameterStatus = (name: string, value: string): Uint8Array =>
  message("S", cstr(name), cstr(value));
/** What a server sends once authentication succeeded. */
const SESSION_START = concat(
  parameterStatus("server_version", "15.0 (fake)"),
  keyData,
  ready(),
);

function rowDescription(names: string[], typeOid = 25): Uint8Array {
  const fields = names.map((name) =>
    concat(cstr(name), int32(0), int16(0), int32(typeOid), int16(-1), int32(-1), int16(0))
  );
  return message("T", int16(names.length), ...fields);
}

function dataRow(values: (string | null)[]): Uint8Array {
  const cells = values.map((v) => v === null ? int32(-1) : concat(int32(text(v).length), text(v)));
  return message("D", int16(values.length), ...cells);
}

const commandComplete = (tag: string): Uint8Array => message("C", cstr(tag));

function errorResponse(fields: Record<string, string>, type = "E"): Uint8Array {
  const parts = Object.entries(fields).map(([code, value]) => concat(text(code), cstr(value)));
  return message(type, ...parts, bytes(0));
}

/** mulberry32: a small seeded PRNG, so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// Assertions

function assertProtocolError(error: unknown): asserts error is ConnectionError {
  assertConnectionError(error, "PROTOCOL_ERROR");
}

// ---------------------------------------------------------------------------------------------
// Reader

interface Framed {
  type: number;
  body: number[];
}

/** Frames `chunks` with a fresh Reader and returns the messages, copied out. */
function frame(chunks: Uint8Array[], maxMessageSize = 1 << 20): Framed[] {
  const out: Framed[] = [];
  const reader = new Reader(maxMessageSize, (type, buf, start, end) => {
    assert.ok(0 <= start && start <= end && end <= buf.length, "body out of the buffer");
    out.push({ type, body: [...buf.subarray(start, end)] });
  });
  for (const chunk of chunks) reader.push(chunk);
  return out;
}

/** Messages of many shapes: empty body, short, longer than the Reader's 4096-byte start. */
const SAMPLE = [
  message("Z", text("I")),
  message("1"),
  dataRow(["héllo", null, ""]),
  message("d", new Uint8Array(5000).map((_, i) => i & 0xff)),
  commandComplete("SELECT 1"),
  message("N", text("M"), cstr("x".repeat(70)), bytes(0)),
];
const SAMPLE_STREAM = concat(...SAMPLE);
const SAMPLE_FRAMED: Framed[] = SAMPLE.map((m) => ({ type: m[0], body: [...m.subarray(5)] }));

test("Reader frames several messages from one chunk in order", () => {
  assert.deepEqual(frame([SAMPLE_STREAM]), SAMPLE_FRAMED);
});

test("Reader reassembles messages split at every byte boundary", () => {
  const small = concat(...SAMPLE.filter((m) => m.length < 200));
  const expected = frame([small]);
  assert.equal(expected.length, 5);
  for (let i = 0; i <= small.length; i++) {
    assert.deepEqual(frame([small.subarray(0, i), small.subarray(i)]), expected, `split at ${i}`);
    for (let j = i; j <= small.length; j += 7) {
      const three = [small.subarray(0, i), small.subarray(i, j), small.subarray(j)];
      assert.deepEqual(frame(three), expected, `split at ${i} and ${j}`);
    }
  }
  // The stream with the 5000-byte message: every split point, and one byte at a time.
  for (let i = 0; i <= SAMPLE_STREAM.length; i += 13) {
    const parts = [SAMPLE_STREAM.subarray(0, i), SAMPLE_STREAM.subarray(i)];
    assert.deepEqual(frame(parts), SAMPLE_FRAMED, `split at ${i}`);
  }
  const oneByOne = Array.from(SAMPLE_STREAM, (b) => bytes(b));
  assert.deepEqual(frame(oneByOne), SAMPLE_FRAMED);
});

test("Reader copies partial messages, so a transport may reuse its chunk buffer", () => {
  const big = message("D", new Uint8Array(70_000).fill(7)); // past the 64 KiB buffer drop
  const stream = concat(...SAMPLE, big, ...SAMPLE);
  const expected = frame([stream]);
  const rand = prng(7);
  const shared = new Uint8Array(1024);
  const out: Framed[] = [];
  const reader = new Reader(1 << 20, (type, buf, start, end) => {
    out.push({ type, body: [...buf.subarray(start, end)] });
  });
  for (let at = 0; at < stream.length;) {
    const n = Math.min(stream.length - at, 1 + Math.floor(rand() * shared.length));
    shared.set(stream.subarray(at, at + n));
    reader.push(shared.subarray(0, n));
    shared.fill(0xee); // what a transport reading into the same buffer would do
    at += n;
  }
  assert.deepEqual(out, expected);
  assert.equal(reader.buffered, 0);
});

test("Reader rejects a length below 4 with PROTOCOL_ERROR", () => {
  for (const length of [3, 0, -1, -2147483648]) {
    const header = concat(text("D"), int32(length));
    assert.throws(() => frame([header]), (e) => {
      assertProtocolError(e);
      assert.match(e.message, /invalid length/);
      return true;
    });
    // Behind a good message, and with the header split across chunks.
    assert.throws(
      () => frame([concat(ready(), header.subarray(0, 2)), header.subarray(2)]),
      (e) => {
        assertProtocolError(e);
        return true;
      },
    );
  }
});

test("Reader rejects a length above maxMessageSize from the header alone", () => {
  const max = 1024;
  for (const length of [max + 1, 0x7fffffff]) {
    const header = concat(text("D"), int32(length));
    // Nothing of the body has arrived: the Reader must not wait for it (or allocate for it).
    assert.throws(() => frame([header], max), (e) => {
      assertProtocolError(e);
      assert.match(e.message, /exceeds maxMessageSize/);
      return true;
    });
    for (let i = 1; i < 5; i++) {
      const chunks = [concat(ready(), header.subarray(0, i)), header.subarray(i)];
      assert.throws(() => frame(chunks, max), (e) => {
        assertProtocolError(e);
        return true;
      }, `header split at ${i}`);
    }
  }
  // Exactly maxMessageSize is accepted.
  const largest = message("d", new Uint8Array(max - 4));
  assert.equal(frame([largest.subarray(0, 5), largest.subarray(5)], max).length, 1);
});

test("Reader allocates by the bytes received, not by the length a header declares", () => {
  // 20 headers declaring 200 MiB each once allocated 4 GiB for 2 KiB received.
  const declared = 200 * 1024 * 1024;
  const readers = Array.from({ length: 20 }, () => new Reader(256 * 1024 * 1024, () => {}));
  for (const reader of readers) {
    reader.push(concat(text("D"), int32(declared), new Uint8Array(95)));
    assert.equal(reader.buffered, 100);
    assert.ok(reader.capacity <= 4096, `capacity ${reader.capacity}`);
  }
  // The buffer doubles as the body arrives, never past twice what has arrived.
  const reader = readers[0];
  let received = 100;
  for (const size of [1, 5000, 70_000, 1 << 20, 3 << 20]) {
    reader.push(new Uint8Array(size));
    received += size;
    assert.equal(reader.buffered, received);
    const bound = Math.max(4096, 2 * received);
    assert.ok(reader.capacity <= bound, `${reader.capacity} bytes for ${received}`);
  }
});

test("Reader frames a large message split into many chunks", () => {
  const big = message("D", Uint8Array.from({ length: 300_000 }, (_, i) => i * 7));
  const stream = concat(ready(), big, ready());
  const expected = frame([stream]);
  for (const size of [1000, 65536, 100_003]) {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
    assert.deepEqual(frame(chunks), expected, `chunks of ${size}`);
  }
});

test("Reader never throws anything but PROTOCOL_ERROR on random bytes", () => {
  const rand = prng(20240229);
  let parsed = 0, rejected = 0;
  for (let n = 0; n < 500; n++) {
    // Half the cases are plausible frames (small lengths, printable types), half pure noise.
    const plausible = n % 2 === 0;
    const parts: Uint8Array[] = [];
    for (let m = Math.floor(rand() * 8); m >= 0; m--) {
      if (plausible) {
        const length = Math.floor(rand() * 24) - 2;
        const body = Uint8Array.from({ length: Math.max(0, length - 4) }, () => rand() * 256);
        parts.push(concat(bytes(0x31 + Math.floor(rand() * 74)), int32(length), body));
      } else {
        parts.push(Uint8Array.from({ length: Math.floor(rand() * 64) }, () => rand() * 256));
      }
    }
    const all = concat(...parts);
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < all.length;) {
      const size = Math.floor(rand() * 12); // 0 included: empty chunks happen
      chunks.push(all.subarray(at, at + size));
      at += size;
    }
    const reader = new Reader(256, (_type, buf, start, end) => {
      assert.ok(0 <= start && start <= end && end <= buf.length && end - start <= 256);
      parsed++;
    });
    try {
      for (const chunk of chunks) reader.push(chunk);
    } catch (error) {
      assertProtocolError(error);
      rejected++;
    }
  }
  assert.ok(parsed > 0 && rejected > 0, `parsed ${parsed}, rejected ${rejected}`);
});

// ---------------------------------------------------------------------------------------------
// Fake servers over TCP

const SSL_REQUEST_CODE = 80877103;
const PROTOCOL_3_0 = 196608;

/** One client connection to a fake server, read as frontend messages. */
class Peer {
  readonly socket: Socket;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;
  /** StartupMessage parameters. */
  params: Record<string, string> = {};
  /** Whether the client asked for TLS first. */
  askedForTls = false;
  readonly #bytes: SocketBytes;

  constructor(socket: Socket) {
    this.socket = socket;
    this.#bytes = new SocketBytes(socket);
    this.closed = this.#bytes.closed;
  }

  #read(n: number): Promise<Uint8Array> {
    return this.#bytes.read(n);
  }

  async #untyped(): Promise<DataView> {
    const length = new DataView((await this.#read(4)).buffer).getInt32(0);
    return new DataView((await this.#read(length - 4)).buffer);
  }

  /** Reads the SSLRequest, if any (answering `sslAnswer`), and the StartupMessage. */
  async startup(sslAnswer: Uint8Array = text("N")): Promise<void> {
    let body = await this.#untyped();
    if (body.getInt32(0) === SSL_REQUEST_CODE) {
      this.askedForTls = true;
      this.write(sslAnswer);
      body = await this.#untyped();
    }
    assert.equal(body.getInt32(0), PROTOCOL_3_0);
    const pairs = new TextDecoder().decode(new Uint8Array(body.buffer, 4)).split("\0");
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      if (pairs[i]) this.params[pairs[i]] = pairs[i + 1];
    }
  }

  /** Startup without authentication: AuthenticationOk and the session start. */
  async handshake(): Promise<void> {
    await this.startup();
    this.write(authOk, SESSION_START);
  }

  /** The next frontend message. */
  async next(): Promise<{ type: string; body: Uint8Array }> {
    const head = await this.#read(5);
    const length = new DataView(head.buffer).getInt32(1);
    return { type: String.fromCharCode(head[0]), body: await this.#read(length - 4) };
  }

  /** Reads until the end of the next query: a simple Query, or a Sync. */
  async nextQuery(): Promise<void> {
    for (;;) {
      const { type } = await this.next();
      if (type === "Q" || type === "S") return;
    }
  }

  write(...parts: Uint8Array[]): void {
    if (!this.socket.destroyed) this.socket.write(concat(...parts));
  }
}

interface FakeServer extends AsyncDisposable {
  port: number;
  /** The first client connection. */
  peer: Promise<Peer>;
  /** A URL to this server with `params` as query parameters (sslmode=disable by default). */
  url(params?: Record<string, string>): string;
}

/** A node:net server on 127.0.0.1 that runs `script` for each client. Errors of the script
 * (a client that hung up, say) are the test's business, not the server's. */
async function fakeServer(script: (peer: Peer) => Promise<void>): Promise<FakeServer> {
  const peers = new Set<Peer>();
  let first!: (peer: Peer) => void;
  const peer = new Promise<Peer>((resolve) => first = resolve);
  const server: Server = createServer((socket) => {
    const p = new Peer(socket);
    peers.add(p);
    first(p);
    script(p).catch(() => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    peer,
    url(params = { sslmode: "disable" }) {
      const query = new URLSearchParams(params).toString();
      return `postgres://fake:fake_pw@127.0.0.1:${port}/db${query ? `?${query}` : ""}`;
    },
    async [Symbol.asyncDispose]() {
      for (const p of peers) p.socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Replies to a query that each must make the connection fail with PROTOCOL_ERROR. */
const HOSTILE_REPLIES: [string, Uint8Array][] = [
  ["an unknown message type", message("~", bytes(1, 2, 3))],
  ["a message length below 4", concat(rowDescription(["a"]), text("D"), int32(2))],
  ["a message length of 2^31-1", concat(text("D"), int32(0x7fffffff))],
  [
    "a DataRow with more columns than the RowDescription",
    concat(rowDescription(["a"]), dataRow(["1", "2"])),
  ],
  ["a DataRow before any RowDescription of more columns", dataRow(["1"])],
  ["a truncated RowDescription", message("T", int16(1), cstr("a"), int32(0), int16(0))],
  ["a RowDescription with more fields than it holds", message("T", int16(3), cstr("a"))],
  [
    "a truncated DataRow",
    concat(rowDescription(["a"]), message("D", int16(1), int32(10), text("abc"))),
  ],
  [
    "a DataRow value of length -2 (only -1, NULL, is below 0)",
    concat(rowDescription(["a"]), message("D", int16(1), int32(-2))),
  ],
  ["a ReadyForQuery without its transaction status", message("Z")],
  ["a CommandComplete without the NUL of its tag", message("C", text("SELECT 1"))],
  ["an ErrorResponse field without its NUL", message("E", text("SERROR"))],
  ["a ParameterStatus without the NUL of its value", message("S", cstr("a"), text("b"))],
  ["an Authentication message after startup", authOk],
  ["a BackendKeyData after startup", keyData],
];

const HOSTILE_STARTUPS: [string, Uint8Array][] = [
  ["garbage (an HTTP response)", text("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")],
  ["a DataRow", concat(authOk, dataRow(["x"]))],
  ["ReadyForQuery before AuthenticationOk", ready()],
  ["a message length below 4", concat(authOk, text("K"), int32(0))],
  ["a truncated BackendKeyData", concat(authOk, message("K", int32(1)))],
  ["a truncated Authentication message", message("R", int16(0))],
];

for (const transport of transports) {
  const name = (s: string) => `${s} [${transport.name}]`;

  /** Connects to `fake` over this transport and waits for a close event on the connection. */
  const open = async (fake: FakeServer, params?: Record<string, string>) => {
    const conn = await connect(fake.url(params), { transport, connectTimeout: 10_000 });
    const closeEvent = new Promise<Error | undefined>((resolve) => conn.on("close", resolve));
    return { conn, closeEvent };
  };

  test(
    name("Connection runs a query against the fake server (the fake itself works)"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
        await peer.nextQuery();
        peer.write(rowDescription(["a", "b"]), dataRow(["x", null]), commandComplete("SELECT 1"));
        peer.write(ready());
      });
      const { conn } = await open(fake);
      await using _ = conn;
      assert.equal(conn.processId, 4242);
      assert.equal(conn.parameters.server_version, "15.0 (fake)");
      const result = await conn.query("select whatever");
      assert.deepEqual(result.rows, [{ a: "x", b: null }]);
      assert.deepEqual([result.command, result.rowCount], ["SELECT", 1]);
      assert.equal((await fake.peer).params.user, "fake");
    },
  );

  for (const [what, reply] of HOSTILE_REPLIES) {
    test(name(`query fails with PROTOCOL_ERROR and closes on ${what}`), T, async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
        await peer.nextQuery();
        peer.write(reply); // and keep the socket open: the client must not wait for more
      });
      const { conn, closeEvent } = await open(fake);
      await using _ = conn;
      const first = rejection(conn.query("select 1"));
      const queued = rejection(conn.query("select $1::int", [2]));
      // The fake never sends another byte nor closes: a client that waited for more would wait
      // for ever, so each step is bounded (a hang guard; the outcome is what is asserted).
      const error = await within(first, 10_000, `the rejection on ${what}`);
      assertProtocolError(error);
      assert.equal(await queued, error);
      assert.equal(conn.closed, true);
      assert.equal(await closeEvent, error);
      assertConnectionError(await rejection(conn.query("select 3")), "CONNECTION_CLOSED");
      await within((await fake.peer).closed, 10_000, "the client hanging up");
    });
  }

  test(
    name("query fails with PROTOCOL_ERROR on a RowDescription with a negative column count"),
    T,
    async () => {
      // A signed count of -1 once reached `new Array(count)` and threw a RangeError instead.
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
        await peer.nextQuery();
        peer.write(message("T", int16(-1)));
      });
      const { conn, closeEvent } = await open(fake);
      await using _ = conn;
      const error = await rejection(conn.query("select 1"));
      assert.equal(conn.closed, true);
      assert.equal(await closeEvent, error);
      assertProtocolError(error);
    },
  );

  test(
    name("query fails with UNSUPPORTED and closes on a CopyBothResponse (replication)"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
        await peer.nextQuery();
        peer.write(message("W", bytes(0), int16(0)));
      });
      const { conn, closeEvent } = await open(fake);
      await using _ = conn;
      const first = rejection(conn.query("start_replication 0/0"));
      const queued = rejection(conn.query("select 1"));
      const error = await first;
      assertConnectionError(error, "UNSUPPORTED");
      assert.match(error.message, /Replication/);
      assert.equal(await queued, error);
      assert.equal(await closeEvent, error);
    },
  );

  test(
    name("Connection closes with PROTOCOL_ERROR on a ReadyForQuery with no query pending"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
        await peer.nextQuery();
        peer.write(commandComplete("SELECT 0"), ready(), ready());
      });
      const { conn, closeEvent } = await open(fake);
      await using _ = conn;
      const result = await conn.query("select 1");
      assert.equal(result.command, "SELECT");
      const reason = await closeEvent;
      assertProtocolError(reason);
      assert.match(reason.message, /no query pending/);
      assert.equal(conn.closed, true);
      assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
      await (await fake.peer).closed;
    },
  );

  test(name("query fails with CONNECTION_LOST when the server closes mid-message"), T, async () => {
    await using fake = await fakeServer(async (peer) => {
      await peer.handshake();
      await peer.nextQuery();
      const row = dataRow(["a long enough value"]);
      peer.write(rowDescription(["a"]), row.subarray(0, 9));
      peer.socket.end();
    });
    const { conn, closeEvent } = await open(fake);
    await using _ = conn;
    const first = rejection(conn.query("select 1"));
    const queued = rejection(conn.query("select 2"));
    assertConnectionError(await first, "CONNECTION_LOST");
    assertConnectionError(await queued, "CONNECTION_LOST");
    assert.equal(conn.closed, true);
    assert.ok((await closeEvent) instanceof Error);
  });

  test(
    name("query fails with CONNECTION_LOST whose cause is the FATAL error the server sent"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
        await peer.nextQuery();
        peer.write(
          errorResponse({ S: "FATAL", V: "FATAL", C: "57P01", M: "terminating connection" }),
        );
        peer.socket.end();
      });
      const { conn } = await open(fake);
      await using _ = conn;
      const error = await rejection(conn.query("select 1"));
      assertConnectionError(error, "CONNECTION_LOST");
      assert.ok(error.cause instanceof PostgresError);
      assert.equal(error.cause.code, "57P01");
      assert.match(error.message, /terminating connection \(SQLSTATE 57P01\)/);
    },
  );

  for (const [what, reply] of HOSTILE_STARTUPS) {
    test(name(`connect fails with PROTOCOL_ERROR on ${what} during startup`), T, async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.startup();
        peer.write(reply);
      });
      const error = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
      assertProtocolError(error);
      await (await fake.peer).closed;
    });
  }

  test(
    name("connect fails with CONNECTION_LOST when the server hangs up during startup"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.startup();
        peer.write(message("R", int32(3)).subarray(0, 6));
        peer.socket.end();
      });
      const error = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
      assertConnectionError(error, "CONNECTION_LOST");
    },
  );

  test(
    name("connect rejects with the server's PostgresError when startup is refused"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.startup();
        peer.write(errorResponse({ S: "FATAL", V: "FATAL", C: "53300", M: "too many clients" }));
        peer.socket.end();
      });
      const error = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
      assert.ok(error instanceof PostgresError, show(error));
      assert.equal(error.code, "53300");
    },
  );

  test(
    name("connect fails with AUTH_FAILED when the server asks for an unsupported method"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.startup();
        peer.write(message("R", int32(7))); // GSSAPI
      });
      const error = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
      assertConnectionError(error, "AUTH_FAILED");
      assert.match(error.message, /GSSAPI/);
      await (await fake.peer).closed;
    },
  );

  // -------------------------------------------------------------------------------------------
  // SSLRequest

  test(
    name("connect refuses data injected after the server's 'S' (CVE-2021-23222)"),
    T,
    async () => {
      // The injected bytes would complete the session if they were read as protocol.
      await using fake = await fakeServer(async (peer) => {
        await peer.startup(concat(text("S"), authOk, SESSION_START));
      });
      const error = await rejection(
        connect(fake.url({ sslmode: "require" }), { transport, connectTimeout: 10_000 }),
      );
      assertProtocolError(error);
      assert.match(error.message, /SSLRequest/);
      assert.equal((await fake.peer).askedForTls, true);
      await (await fake.peer).closed;
    },
  );

  test(
    name("connect fails with PROTOCOL_ERROR when SSLRequest is answered with neither S nor N"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.startup(text("X"));
      });
      const error = await rejection(
        connect(fake.url({ sslmode: "prefer" }), { transport, connectTimeout: 10_000 }),
      );
      assertProtocolError(error);
    },
  );

  for (const sslmode of ["require", "verify-full"]) {
    test(
      name(`connect fails with TLS_UNAVAILABLE when the server says N to sslmode=${sslmode}`),
      T,
      async () => {
        await using fake = await fakeServer(async (peer) => {
          await peer.handshake();
        });
        const error = await rejection(
          connect(fake.url({ sslmode }), { transport, connectTimeout: 10_000 }),
        );
        assertConnectionError(error, "TLS_UNAVAILABLE");
        assert.equal((await fake.peer).askedForTls, true);
      },
    );
  }

  test(
    name("connect falls back to plain TCP when the server says N to sslmode=prefer"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.handshake();
      });
      const { conn } = await open(fake, { sslmode: "prefer" });
      await using _ = conn;
      assert.equal(conn.encrypted, false);
      assert.equal((await fake.peer).askedForTls, true);
    },
  );

  // -------------------------------------------------------------------------------------------
  // SCRAM

  test(name("connect completes SCRAM with a fake server that proves the password"), T, async () => {
    await using fake = await fakeServer((peer) => scramServer(peer, "right"));
    const { conn } = await open(fake);
    await using _ = conn;
    assert.equal(conn.closed, false);
  });

  for (const together of [true, false]) {
    const how = together ? "sent with AuthenticationOk" : "sent alone";
    test(
      name(`connect fails with AUTH_FAILED on a wrong SCRAM server signature (${how})`),
      T,
      async () => {
        // Sent together with AuthenticationOk, the messages behind an authentication step must
        // wait for it: otherwise the ReadyForQuery fails first with PROTOCOL_ERROR and hides
        // the AUTH_FAILED.
        await using fake = await fakeServer((peer) => scramServer(peer, "wrong", together));
        const error = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
        assertConnectionError(error, "AUTH_FAILED");
        assert.match(error.message, /signature/);
        await (await fake.peer).closed;
      },
    );
  }

  test(
    name("connect fails with AUTH_FAILED on AuthenticationOk without SASLFinal"),
    T,
    async () => {
      // A real server sends AuthenticationOk, ParameterStatus, BackendKeyData and ReadyForQuery
      // together: the error must still be AUTH_FAILED, not PROTOCOL_ERROR.
      await using fake = await fakeServer((peer) => scramServer(peer, "skip"));
      const error = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
      assertConnectionError(error, "AUTH_FAILED");
      assert.match(error.message, /without proving itself/);
      await (await fake.peer).closed;
    },
  );

  test(
    name("connect fails when AuthenticationOk is pipelined behind AuthenticationSASL"),
    T,
    async () => {
      // An impostor pipelines AuthenticationOk right behind AuthenticationSASL: unless the
      // client waits for its SCRAM step, it finds no exchange under way and accepts a server
      // that never proved it knows the password.
      await using fake = await fakeServer(async (peer) => {
        await peer.startup();
        peer.write(message("R", int32(10), cstr("SCRAM-SHA-256"), bytes(0)), authOk, SESSION_START);
      });
      const outcome = await rejection(connect(fake.url(), { transport, connectTimeout: 10_000 }));
      if (outcome instanceof Resolved) await (outcome.value as Connection).close();
      assertConnectionError(outcome, "AUTH_FAILED");
    },
  );
}

/**
 * Plays the server side of SCRAM-SHA-256 for the password `fake_pw`, checks the client's proof,
 * then ends with a correct (`right`) or a wrong (`wrong`) server signature, or skips the
 * SASLFinal (`skip`). `together`: send the final message with the rest of the startup, as
 * PostgreSQL does.
 */
async function scramServer(
  peer: Peer,
  ending: "right" | "wrong" | "skip",
  together = true,
): Promise<void> {
  await peer.startup();
  peer.write(message("R", int32(10), cstr("SCRAM-SHA-256"), bytes(0)));
  const initial = await peer.next();
  assert.equal(initial.type, "p");
  const mechanismEnd = initial.body.indexOf(0);
  assert.equal(new TextDecoder().decode(initial.body.subarray(0, mechanismEnd)), "SCRAM-SHA-256");
  const clientFirst = new TextDecoder().decode(initial.body.subarray(mechanismEnd + 5));
  assert.match(clientFirst, /^n,,n=[^,]*,r=[^,]+$/);
  const clientFirstBare = clientFirst.slice(3);
  if (ending === "skip") {
    peer.write(authOk, SESSION_START);
    return;
  }
  const nonce = clientFirstBare.split(",r=")[1] + randomBytes(12).toString("base64");
  const salt = randomBytes(16);
  const serverFirst = `r=${nonce},s=${salt.toString("base64")},i=4096`;
  peer.write(message("R", int32(11), text(serverFirst)));
  const response = await peer.next();
  assert.equal(response.type, "p");
  const clientFinal = new TextDecoder().decode(response.body);
  const withoutProof = clientFinal.slice(0, clientFinal.indexOf(",p="));
  assert.equal(withoutProof, `c=biws,r=${nonce}`);
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  const salted = pbkdf2Sync("fake_pw", salt, 4096, 32, "sha256");
  const hmac = (key: Uint8Array, data: string) => createHmac("sha256", key).update(data).digest();
  const clientKey = hmac(salted, "Client Key");
  const storedKey = createHash("sha256").update(clientKey).digest();
  const clientSignature = hmac(storedKey, authMessage);
  const proof = clientKey.map((b, i) => b ^ clientSignature[i]);
  assert.equal(clientFinal.slice(withoutProof.length + 3), Buffer.from(proof).toString("base64"));
  const signature = hmac(hmac(salted, "Server Key"), authMessage);
  if (ending === "wrong") signature[0] ^= 1;
  const final = message("R", int32(12), text(`v=${signature.toString("base64")}`));
  if (together) peer.write(final, authOk, SESSION_START);
  else peer.write(final);
}

// ---------------------------------------------------------------------------------------------
// An in-memory transport: exact control over chunk boundaries, and fast enough to fuzz.

class MemoryStream implements ByteStream {
  readonly encrypted = false;
  #handlers: StreamHandlers | null = null;
  #closed = false;
  #started = false;

  start(handlers: StreamHandlers): void {
    this.#handlers = handlers;
  }

  write(_data: Uint8Array): void {
    // The first write is the StartupMessage: answer it as a trust server would.
    if (this.#started) return;
    this.#started = true;
    queueMicrotask(() => this.feed(concat(authOk, SESSION_START)));
  }

  close(): void {
    this.hangUp();
  }

  /** Delivers bytes to the client as one chunk. */
  feed(chunk: Uint8Array): void {
    if (!this.#closed) this.#handlers!.data(chunk);
  }

  /** Ends the stream from the server side. */
  hangUp(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    queueMicrotask(() => this.#handlers!.close(error));
  }
}

async function memoryConnection(): Promise<{ conn: Connection; stream: MemoryStream }> {
  const stream = new MemoryStream();
  const transport: Transport = { name: "memory", connect: () => Promise.resolve(stream) };
  const conn = await connect("postgres://fake@memory/db?sslmode=disable", { transport });
  return { conn, stream };
}

test("query fails with PROTOCOL_ERROR on a DataRow shorter than its columns", T, async () => {
  // A DataRow with a column count and nothing else must not read past its end: in the Reader's
  // reassembly buffer the bytes after it are stale bytes of an earlier message, here 0xff
  // (length -1, NULL), which would accept the row as [null].
  const { conn, stream } = await memoryConnection();
  await using _ = conn;
  const outcome = rejection(conn.query("select 1"));
  const notice = message("N", text("M"), new Uint8Array(100).fill(0xff), bytes(0, 0));
  const short = message("D", int16(1)); // one column announced, no length, no value
  stream.feed(concat(rowDescription(["a"]), notice.subarray(0, 3)));
  stream.feed(notice.subarray(3)); // the notice is reassembled in the Reader's buffer
  stream.feed(short.subarray(0, 2));
  stream.feed(short.subarray(2)); // and so is the DataRow, at the start of the same buffer
  stream.feed(concat(commandComplete("SELECT 1"), ready()));
  assertProtocolError(await outcome);
  assert.equal(conn.closed, true);
});

test("Connection never fails with anything but its own errors on random messages", T, async () => {
  // Random but well-framed backend messages after startup, in random chunks, then a hang-up:
  // every query must settle, with a result, a PostgresError, a decoding TypeError or a
  // ConnectionError; nothing may throw out of the connection.
  // Seed 1729 case 44 once found the negative RowDescription count (see the test on it).
  const rand = prng(1729);
  const pick = <V>(list: readonly V[]): V => list[Math.floor(rand() * list.length)];
  const noise = (max: number) =>
    Uint8Array.from({ length: Math.floor(rand() * max) }, () => rand() * 256);
  const TYPES = "123ACDEGHIKNRSTZcdnstv~";
  const OIDS = [16, 17, 20, 21, 23, 25, 114, 700, 1007, 1184, 3802, 0, 99999];
  const randomMessage = (): Uint8Array => {
    switch (Math.floor(rand() * 8)) {
      case 0:
        return rowDescription(
          Array.from({ length: Math.floor(rand() * 3) }, (_, i) => `c${i}`),
          pick(OIDS),
        );
      case 1:
        return dataRow(
          Array.from(
            { length: Math.floor(rand() * 3) },
            () => pick([null, "1", "t", "{1,NULL}", "\\x0g", "{", "2024-01-01 00:00:00+00"]),
          ),
        );
      case 2:
        return message(pick(["T", "D"]), int16(Math.floor(rand() * 6) - 2), noise(24));
      case 3:
        return message("Z", text(pick(["I", "T", "E", "?"])));
      case 4:
        return commandComplete(pick(["SELECT 1", "INSERT 0 2", "", "COPY x"]));
      case 5:
        return errorResponse(
          { V: pick(["ERROR", "FATAL", "NOTICE"]), C: "XX000", M: "m" },
          pick(["E", "N"]),
        );
      default:
        return message(pick([...TYPES]), noise(16));
    }
  };
  const allowed = (outcome: unknown): boolean =>
    outcome instanceof Resolved || outcome instanceof ConnectionError ||
    outcome instanceof PostgresError ||
    (outcome instanceof TypeError && outcome.message.startsWith("Cannot decode"));
  for (let n = 0; n < 300; n++) {
    const { conn, stream } = await memoryConnection();
    const outcomes = Array.from(
      { length: 1 + Math.floor(rand() * 3) },
      (_, i) => rejection(i % 2 ? conn.query("select $1", [i]) : conn.query("select 1")),
    );
    const all = concat(...Array.from({ length: 1 + Math.floor(rand() * 10) }, randomMessage));
    for (let at = 0; at < all.length;) {
      const size = 1 + Math.floor(rand() * 40);
      stream.feed(all.slice(at, at + size));
      at += size;
      await Promise.resolve();
    }
    stream.hangUp();
    for (const outcome of await Promise.all(outcomes)) {
      assert.ok(allowed(outcome), `case ${n}: ${show(outcome)}`);
    }
    assert.equal(conn.closed, true, `case ${n}`);
    await conn.close();
  }
});
