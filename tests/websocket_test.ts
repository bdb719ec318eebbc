// The WebSocket transport (transports/websocket.ts): unit tests against an in-memory fake
// WebSocket (frames, URLs, TLS rules, failures), then connections to the real PostgreSQL 15 of
// tests/_server.ts through websockify, a third-party relay that passes bytes untouched, so the
// server asks for what pg_hba.conf says (SCRAM, MD5, cleartext, trust). The whole connection
// suite also runs over this transport (tests/connection_test.ts).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";
import { WebSocket as Ws } from "ws";
import { bundleOptions } from "../build/runtimes.ts";
import {
  connect,
  type Connection,
  type ConnectOptions,
  type PostgresNotice,
  type Transport,
} from "../mod.ts";
import {
  type WebSocketConstructor,
  websocketTransport,
  type WebSocketTransportOptions,
} from "../transports/websocket.ts";
import { getServer, type TestServer, type TestUser } from "./_server.ts";
import { WebSocketImpl } from "./_transports.ts";
import { startWebsockify, type Websockify } from "./_websockify.ts";
import {
  assertConnectionError,
  assertPostgresError,
  concat,
  cstr,
  delay,
  endStatement,
  eventually,
  int16,
  int32,
  message,
  rejection,
  show,
  within,
} from "./_helpers.ts";
import { closedPort, silentServer } from "./_net.ts";

const T = { timeout: 20_000 };
const PLAIN = { sslmode: "disable" };

// ---------------------------------------------------------------------------------------------
// Helpers

const encoder = new TextEncoder();

const SESSION_START = concat(
  message("R", int32(0)),
  message("K", int32(7), int32(8)),
  message("Z", encoder.encode("I")),
);

/** The frontend messages of a frame, as type letters (`0` for the StartupMessage). */
function types(frame: Uint8Array): string[] {
  const out: string[] = [];
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  for (let at = 0; at < frame.length;) {
    if (at === 0 && frame[0] === 0) {
      out.push("0");
      at += view.getInt32(0);
    } else {
      out.push(String.fromCharCode(frame[at]));
      at += 1 + view.getInt32(at + 1);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// An in-memory WebSocket: the test plays the proxy

class FakeSocket extends EventTarget {
  binaryType = "blob";
  readonly sent: Uint8Array[] = [];
  readonly closeCodes: (number | undefined)[] = [];
  /** Called on each send, to script the proxy's answers. */
  onSend: ((frame: Uint8Array, socket: FakeSocket) => void) | null = null;

  constructor(readonly url: string) {
    super();
  }

  send(data: Uint8Array): void {
    const frame = data.slice();
    this.sent.push(frame);
    this.onSend?.(frame, this);
  }

  close(code?: number): void {
    this.closeCodes.push(code);
    // The proxy completes the closing handshake.
    setTimeout(() => this.closed(code ?? 1005), 0);
  }

  open(): void {
    this.dispatchEvent(new Event("open"));
  }

  receive(data: unknown): void {
    this.dispatchEvent(Object.assign(new Event("message"), { data }));
  }

  fail(message: string): void {
    this.dispatchEvent(Object.assign(new Event("error"), { message }));
  }

  closed(code: number, reason = ""): void {
    this.dispatchEvent(Object.assign(new Event("close"), { code, reason }));
  }
}

/** A WebSocket constructor that makes FakeSockets and hands each to `script` (default: open). */
function fakeWebSocket(
  script: (socket: FakeSocket) => void = (s) => queueMicrotask(() => s.open()),
): { Impl: WebSocketConstructor; sockets: FakeSocket[] } {
  const sockets: FakeSocket[] = [];
  class Impl extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
      script(this);
    }
  }
  // EventTarget's addEventListener is typed for plain Events; the events sent carry the fields.
  return { Impl: Impl as unknown as WebSocketConstructor, sockets };
}

/**
 * A server behind a fake proxy that asks for a cleartext password, as Neon's proxy does: it
 * takes a password sent ahead or waits for it, then starts the session; later frames go to
 * `onQuery`.
 */
function cleartextProxy(
  onQuery: (frame: Uint8Array, socket: FakeSocket) => void = () => {},
): { Impl: WebSocketConstructor; sockets: FakeSocket[] } {
  const askPassword = message("R", int32(3));
  return fakeWebSocket((socket) => {
    let authenticated = false;
    socket.onSend = (frame) => {
      if (authenticated) return onQuery(frame, socket);
      const kinds = types(frame);
      if (kinds[0] === "0") socket.receive(askPassword.slice().buffer);
      if (kinds.at(-1) === "p") {
        authenticated = true;
        socket.receive(SESSION_START.slice().buffer);
      }
    };
    queueMicrotask(() => socket.open());
  });
}

const URL_FAKE = "postgres://u:pw@db.example:5433/app?sslmode=disable";

// ---------------------------------------------------------------------------------------------
// Unit tests

test("websocketTransport appends ?address=host:port to a proxy string", T, async () => {
  const { Impl, sockets } = cleartextProxy();
  const cases: [WebSocketTransportOptions["proxy"], string, string][] = [
    ["ws://proxy:8080/v2", "db.example", "ws://proxy:8080/v2?address=db.example:5433"],
    ["wss://proxy/v1?app=x", "db.example", "wss://proxy/v1?app=x&address=db.example:5433"],
    ["ws://proxy/v2", "::1", "ws://proxy/v2?address=[::1]:5433"],
    [(host, port) => `ws://gw/${host}/${port}`, "db.example", "ws://gw/db.example/5433"],
  ];
  for (const [proxy, host, expected] of cases) {
    const transport = websocketTransport({ proxy, WebSocket: Impl });
    await using _ = await connect(URL_FAKE, { transport, host });
    assert.equal(sockets.at(-1)!.url, expected);
    assert.equal(sockets.at(-1)!.binaryType, "arraybuffer");
  }
});

test("websocketTransport throws TypeError for a proxy that is not a ws: or wss: URL", () => {
  const { Impl } = fakeWebSocket();
  for (const proxy of ["http://proxy/v2", "proxy.example/v2", "", 42, undefined]) {
    assert.throws(
      () => websocketTransport({ proxy: proxy as string, WebSocket: Impl }),
      (e) => e instanceof TypeError && /ws:\/\/ or wss:\/\//.test(e.message),
      String(proxy),
    );
  }
  assert.throws(
    () => websocketTransport({ proxy: "ws://p/", WebSocket: Impl, pipelineConnect: true as never }),
    TypeError,
  );
});

test("connect rejects with TypeError when the proxy function returns no ws: URL", T, async () => {
  const { Impl, sockets } = fakeWebSocket();
  const transport = websocketTransport({ proxy: () => "https://proxy/?secret=1", WebSocket: Impl });
  const error = await rejection(connect(URL_FAKE, { transport }));
  assert.ok(error instanceof TypeError, show(error));
  assert.doesNotMatch(error.message, /secret/);
  assert.equal(sockets.length, 0);
});

test("websocketTransport without a WebSocket says to pass one where there is none", () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
  if (saved) delete (globalThis as { WebSocket?: unknown }).WebSocket;
  try {
    assert.throws(
      () => websocketTransport({ proxy: "ws://proxy/" }),
      (e) => e instanceof TypeError && /"ws" package/.test(e.message),
    );
  } finally {
    if (saved) Object.defineProperty(globalThis, "WebSocket", saved);
  }
});

test(
  "connect sends the startup and the password in one frame, then queries of a tick in one",
  T,
  async () => {
    const { Impl, sockets } = fakeWebSocket((socket) => {
      socket.onSend = (frame) => {
        // A cleartext server: asks for the password the client already sent.
        if (frame[0] === 0) socket.receive(concat(message("R", int32(3)), SESSION_START).buffer);
      };
      queueMicrotask(() => socket.open());
    });
    const transport = websocketTransport({ proxy: "ws://proxy/v2", WebSocket: Impl });
    assert.equal(transport.pipelineConnect, "password");
    const conn = await connect(URL_FAKE, { transport });
    const socket = sockets[0];
    assert.deepEqual(types(socket.sent[0]), ["0", "p"]);
    assert.equal(socket.sent.length, 1);
    for (let i = 0; i < 3; i++) conn.query("select $1::int", [i]).catch(() => {});
    conn.query("select 1").catch(() => {});
    await delay(0);
    assert.equal(socket.sent.length, 2);
    const queries = types(socket.sent[1]);
    // The default statement cache parses each statement once, behind one name (the one
    // without parameters too).
    assert.deepEqual(queries, [..."PBDES", ..."BDES".repeat(2), ..."PBDES"]);
    conn.destroy();
    assert.deepEqual(types(socket.sent.at(-1)!), ["X"]);
    assert.deepEqual(socket.closeCodes, [1000]);
  },
);

test("connect waits to be asked for the password with pipelineConnect false", T, async () => {
  const { Impl, sockets } = fakeWebSocket((socket) => {
    socket.onSend = (frame) => {
      if (frame[0] === 0) socket.receive(message("R", int32(3)).buffer);
      else if (frame[0] === 0x70) socket.receive(SESSION_START.buffer);
    };
    queueMicrotask(() => socket.open());
  });
  for (
    const options of [
      {
        transport: websocketTransport({
          proxy: "ws://p/",
          WebSocket: Impl,
          pipelineConnect: false,
        }),
      },
      {
        transport: websocketTransport({ proxy: "ws://p/", WebSocket: Impl }),
        pipelineConnect: false,
      },
    ] as ConnectOptions[]
  ) {
    await using _ = await connect(URL_FAKE, options);
    const socket = sockets.at(-1)!;
    assert.deepEqual(socket.sent.slice(0, 2).map(types), [["0"], ["p"]]);
  }
  assert.equal(
    websocketTransport({ proxy: "ws://p/", WebSocket: Impl, pipelineConnect: false })
      .pipelineConnect,
    undefined,
  );
});

test("the stream reassembles messages split across frames of any binary kind", T, async () => {
  const answer = concat(
    message(
      "T",
      int16(1),
      cstr("a"),
      int32(0),
      int16(0),
      int32(25),
      int16(-1),
      int32(-1),
      int16(0),
    ),
    message("D", int16(1), int32(2), encoder.encode("hi")),
    message("C", cstr("SELECT 1")),
    message("Z", encoder.encode("I")),
  );
  const { Impl } = cleartextProxy((_frame, socket) => {
    // An ArrayBuffer, a Uint8Array view into a larger buffer, the rest one byte at a time.
    socket.receive(answer.slice(0, 7).buffer);
    const padded = new Uint8Array(40);
    padded.set(answer.subarray(7, 30), 5);
    socket.receive(padded.subarray(5, 28));
    for (let i = 30; i < answer.length; i++) socket.receive(answer.slice(i, i + 1).buffer);
  });
  const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
  await using conn = await connect(URL_FAKE, { transport });
  assert.deepEqual((await conn.query("select 'hi' as a")).rows, [{ a: "hi" }]);
});

test("a text frame fails the connection with PROTOCOL_ERROR", T, async () => {
  const { Impl, sockets } = cleartextProxy((_frame, socket) => socket.receive("hello"));
  const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
  const conn = await connect(URL_FAKE, { transport });
  const outcome = rejection(conn.query("select 1"));
  const error = await outcome;
  assert.deepEqual(sockets[0].closeCodes, [1000]);
  assertConnectionError(error, "CONNECTION_LOST");
  assertConnectionError(error.cause, "PROTOCOL_ERROR");
  assert.match(error.message, /text message/);
});

test("an abnormal close mid-session rejects pending queries with CONNECTION_LOST", T, async () => {
  const { Impl, sockets } = cleartextProxy();
  const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
  const conn = await connect(URL_FAKE, { transport });
  const closeEvent = new Promise((resolve) => conn.on("close", resolve));
  const pending = rejection(conn.query("select pg_sleep(1)"));
  await delay(0);
  sockets[0].fail("connection reset");
  sockets[0].closed(1006);
  const error = await pending;
  assertConnectionError(error, "CONNECTION_LOST");
  assert.match(error.message, /connection reset/);
  assert.ok(await closeEvent instanceof Error);
  assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
});

test(
  "connect rejects with CONNECT_FAILED when the WebSocket closes before it opens",
  T,
  async () => {
    const { Impl, sockets } = fakeWebSocket((socket) =>
      queueMicrotask(() => {
        socket.fail("Unexpected server response: 403");
        socket.closed(1006);
      })
    );
    const transport = websocketTransport({ proxy: "ws://p/v2?token=s3cret", WebSocket: Impl });
    const error = await rejection(connect(URL_FAKE, { transport }));
    assertConnectionError(error, "CONNECT_FAILED");
    assert.match(
      error.message,
      /db\.example:5433 through ws:\/\/p\/v2: Unexpected server response/,
    );
    assert.doesNotMatch(error.message, /s3cret/);
    assert.equal(sockets.length, 1);
  },
);

test(
  "connect rejects with CONNECT_FAILED when the proxy closes before the server answers",
  T,
  async () => {
    // websockify's answer to a target it cannot reach: upgrade, then close 1011.
    const { Impl } = fakeWebSocket((socket) => {
      socket.onSend = () => socket.closed(1011, "Failed to connect to downstream server");
      queueMicrotask(() => socket.open());
    });
    const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
    const error = await rejection(connect(URL_FAKE, { transport }));
    assertConnectionError(error, "CONNECT_FAILED");
    assert.match(error.message, /1011: Failed to connect to downstream server/);
  },
);

test("connect rejects with the signal's reason and closes the socket when aborted", T, async () => {
  const { Impl, sockets } = fakeWebSocket(() => {}); // never opens
  const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
  const controller = new AbortController();
  const reason = new Error("user gave up");
  setTimeout(() => controller.abort(reason), 20);
  assert.equal(
    await rejection(connect(URL_FAKE, { transport, signal: controller.signal })),
    reason,
  );
  assert.deepEqual(sockets[0].closeCodes, [1000]);
  const early = await rejection(
    connect(URL_FAKE, { transport, signal: AbortSignal.abort(reason) }),
  );
  assert.equal(early, reason);
  assert.equal(sockets.length, 1);
  const timedOut = await rejection(connect(URL_FAKE, { transport, connectTimeout: 50 }));
  assertConnectionError(timedOut, "CONNECT_TIMEOUT");
  assert.deepEqual(sockets[1].closeCodes, [1000]);
});

test(
  "connect refuses sslmode=require and verify-full over ws: with TLS_UNAVAILABLE",
  T,
  async () => {
    const { Impl, sockets } = cleartextProxy();
    const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
    for (const sslmode of ["require", "verify-full"]) {
      const url = URL_FAKE.replace("sslmode=disable", `sslmode=${sslmode}`);
      const error = await rejection(connect(url, { transport }));
      assertConnectionError(error, "TLS_UNAVAILABLE");
      assert.match(error.message, /wss:\/\//);
    }
    assert.equal(sockets.length, 0, "no WebSocket was opened");
    await using plain = await connect(URL_FAKE.replace("disable", "prefer"), { transport });
    assert.equal(plain.encrypted, false);
  },
);

test(
  "connect over wss: is encrypted and satisfies sslmode=require and verify-full",
  T,
  async () => {
    const { Impl } = cleartextProxy();
    const transport = websocketTransport({ proxy: "wss://p/", WebSocket: Impl });
    for (const sslmode of ["disable", "prefer", "require", "verify-full"]) {
      const url = URL_FAKE.replace("sslmode=disable", `sslmode=${sslmode}`);
      await using conn = await connect(url, { transport });
      assert.equal(conn.encrypted, true, sslmode);
    }
  },
);

test("the stream keeps what arrives before start() and delivers it first", T, async () => {
  const { Impl, sockets } = fakeWebSocket();
  const transport = websocketTransport({ proxy: "ws://p/", WebSocket: Impl });
  const stream = await transport.connect({ host: "h", port: 1, tls: null });
  sockets[0].receive(new Uint8Array([1, 2]).buffer);
  sockets[0].receive(new Uint8Array([3]).buffer);
  sockets[0].closed(1000);
  const got: number[] = [];
  const closed = new Promise<Error | undefined>((resolve) =>
    stream.start({ data: (chunk) => got.push(...chunk), close: resolve })
  );
  assert.equal(await closed, undefined);
  assert.deepEqual(got, [1, 2, 3]);
  stream.close(); // idempotent after the end
  stream.write(new Uint8Array([9])); // ignored
  assert.equal(sockets[0].sent.length, 0);
});

// ---------------------------------------------------------------------------------------------
// Through websockify to the real server

let server: TestServer;
let relay: Websockify;
let deadRelay: Websockify;

before(async () => {
  server = await getServer();
  const tls = server.caFile === undefined ? undefined : {
    cert: join(dirname(server.caFile), "server.crt"),
    key: join(dirname(server.caFile), "server.key"),
  };
  relay = await startWebsockify({ address: `${server.host}:${server.port}` }, tls);
  // A relay whose target refuses connections.
  const port = await closedPort();
  deadRelay = await startWebsockify({ address: `127.0.0.1:${port}` });
});

after(async () => {
  await relay?.stop();
  await deadRelay?.stop();
});

/** A fresh WebSocket transport to the relay (nothing remembered), counting its WebSockets. */
function viaRelay(
  options: Partial<WebSocketTransportOptions> = {},
): { transport: Transport; urls: string[] } {
  const urls: string[] = [];
  const Base = (options.WebSocket ?? WebSocketImpl) as WebSocketConstructor;
  class Counting extends (Base as new (url: string) => object) {
    constructor(url: string) {
      super(url);
      urls.push(url);
    }
  }
  const transport = websocketTransport({
    proxy: `${relay.url}v2`,
    ...options,
    WebSocket: Counting as unknown as WebSocketConstructor,
  });
  return { transport, urls };
}

async function open(
  transport: Transport,
  user: TestUser = "scram",
  options: ConnectOptions = {},
): Promise<Connection> {
  return await connect(server.url(user, PLAIN), { transport, ...options });
}

test("connect through websockify sends ?address= and runs a query", T, async () => {
  const { transport, urls } = viaRelay();
  await using conn = await open(transport, "password");
  assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: "password" }]);
  assert.deepEqual(urls, [`${relay.url}v2?address=${server.host}:${server.port}`]);
  assert.equal(conn.encrypted, false);
});

test("connect sends the password ahead to a cleartext server: one WebSocket", T, async () => {
  const { transport, urls } = viaRelay();
  for (let i = 0; i < 2; i++) {
    await using conn = await open(transport, "password");
    assert.equal((await conn.query("select 1 as one")).rows[0].one, 1);
  }
  assert.equal(urls.length, 2);
});

for (const user of ["scram", "md5", "trust"] as const) {
  test(
    `connect falls back once when the ${user} server does not ask for cleartext`,
    T,
    async () => {
      const { transport, urls } = viaRelay();
      {
        await using conn = await open(transport, user);
        assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: user }]);
        // The attempt with the password sent ahead, then the usual exchange.
        assert.equal(urls.length, 2);
      }
      // Remembered for this transport, server and user: no second failed attempt.
      await using again = await open(transport, user);
      assert.equal(urls.length, 3);
      assert.equal(again.closed, false);
    },
  );

  test(`connect with pipelineConnect false authenticates ${user} at once`, T, async () => {
    const { transport, urls } = viaRelay({ pipelineConnect: false });
    await using conn = await open(transport, user);
    assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: user }]);
    assert.equal(urls.length, 1);
  });
}

test("connect reports a wrong password as 28P01, with or without the fallback", T, async () => {
  for (const [user, sockets] of [["password", 1], ["scram", 2], ["md5", 2]] as const) {
    const { transport, urls } = viaRelay();
    const error = await rejection(open(transport, user, { password: "wrong" }));
    assertPostgresError(error, "28P01");
    assert.equal(urls.length, sockets, user);
  }
});

test("query round-trips parameters of several types through websockify", T, async () => {
  const { transport } = viaRelay();
  await using conn = await open(transport);
  const at = new Date("2024-02-29T12:34:56.789Z");
  const bytes = new Uint8Array([0, 1, 127, 128, 255]);
  const { rows } = await conn.query(
    "select $1::int4 as i, $2::text as t, $3::bool as b, $4::float8 as f, $5::timestamptz as at, " +
      "$6::bytea as bytes, $7::int4[] as ints, $8::jsonb as j, $9::text as nothing",
    [42, "héllo 🐘", true, 1.5, at, bytes, [1, null, 3], JSON.stringify({ a: 1 }), null],
  );
  assert.deepEqual(rows[0], {
    i: 42,
    t: "héllo 🐘",
    b: true,
    f: 1.5,
    at,
    bytes,
    ints: [1, null, 3],
    j: { a: 1 },
    nothing: null,
  });
  // A result larger than one relay read (64 KiB) arrives in several frames.
  const big = await conn.query("select repeat('x', 300000) as s");
  assert.equal((big.rows[0].s as string).length, 300_000);
});

test("query pipelines 50 queries through websockify and answers them in order", T, async () => {
  const { transport } = viaRelay();
  await using conn = await open(transport);
  const order: number[] = [];
  const pending = Array.from(
    { length: 50 },
    (_, i) =>
      conn.query<{ i: number }>("select $1::int as i", [i]).then((r) => {
        order.push(r.rows[0].i);
      }),
  );
  await Promise.all(pending);
  assert.deepEqual(order, Array.from({ length: 50 }, (_, i) => i));
});

test(
  "query error leaves the connection usable, notices and transactionStatus work",
  T,
  async () => {
    const { transport } = viaRelay();
    const notices: PostgresNotice[] = [];
    await using conn = await open(transport, "scram", { onNotice: (n) => notices.push(n) });
    assertPostgresError(await rejection(conn.query("select 1/0")), "22012");
    assert.deepEqual((await conn.query("select 1 as ok")).rows, [{ ok: 1 }]);
    await conn.query("do $$ begin raise notice 'over ws'; end $$");
    assert.deepEqual(notices.map((n) => n.message), ["over ws"]);
    await conn.query("begin");
    assert.equal(conn.transactionStatus, "transaction");
    assertPostgresError(await rejection(conn.query("select nope")), "42703");
    assert.equal(conn.transactionStatus, "failed");
    await conn.query("rollback");
    assert.equal(conn.transactionStatus, "idle");
  },
);

test("cancel stops a running pg_sleep through a WebSocket of its own", T, async () => {
  const { transport, urls } = viaRelay();
  await using conn = await open(transport);
  await using observer = await open(viaRelay().transport, "postgres");
  try {
    // Ten minutes: it fails within the test only by the cancel (57014 says so too).
    const sleeping = rejection(conn.query("select pg_sleep(600)"));
    await eventually("the pg_sleep running on the server", async () => {
      const { rows } = await observer.query(
        "select state from pg_stat_activity where pid = $1",
        [conn.processId],
      );
      return rows[0]?.state === "active";
    });
    const before = urls.length;
    await conn.cancel();
    assertPostgresError(await within(sleeping, 10_000, "the cancelled pg_sleep(600)"), "57014");
    assert.equal(urls.length, before + 1, "the CancelRequest went over a WebSocket of its own");
    assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
  } finally {
    await endStatement(server, conn.processId);
  }
});

test("a backend terminated mid-query rejects with CONNECTION_LOST", T, async () => {
  const { transport } = viaRelay();
  await using victim = await open(transport);
  await using killer = await open(transport, "postgres");
  const sleeping = rejection(victim.query("select pg_sleep(30)"));
  const queued = rejection(victim.query("select 1"));
  await delay(100);
  await killer.query("select pg_terminate_backend($1)", [victim.processId]);
  for (const outcome of [await sleeping, await queued]) {
    assertConnectionError(outcome, "CONNECTION_LOST");
    assertPostgresError(outcome.cause, "57P01");
  }
  assert.equal(victim.closed, true);
});

test("close through websockify is idempotent and fires close once", T, async () => {
  const { transport } = viaRelay();
  const conn = await open(transport);
  const events: (Error | undefined)[] = [];
  conn.on("close", (e) => events.push(e));
  await Promise.all([conn.close(), conn.close()]);
  await conn.close();
  assert.deepEqual(events, [undefined]);
  assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
});

test("connect to a proxy that is not there fails fast with CONNECT_FAILED", T, async () => {
  const port = await closedPort();
  const transport = websocketTransport({
    proxy: `ws://127.0.0.1:${port}/v2`,
    WebSocket: WebSocketImpl,
  });
  // A ten-minute connectTimeout: within the test, only the refusal itself can end the connect
  // (a wait for a deadline of the client's would end in CONNECT_TIMEOUT, and much later).
  const error = await within(
    rejection(open(transport, "scram", { connectTimeout: 600_000 })),
    10_000,
    "the connect to a proxy that is not there",
  );
  assertConnectionError(error, "CONNECT_FAILED");
  assert.match(error.message, new RegExp(`through ws://127\\.0\\.0\\.1:${port}/v2`));
});

test(
  "connect through a relay that cannot reach the server fails with CONNECT_FAILED",
  T,
  async () => {
    const transport = websocketTransport({ proxy: deadRelay.url, WebSocket: WebSocketImpl });
    const error = await rejection(open(transport));
    assertConnectionError(error, "CONNECT_FAILED");
  },
);

test("connect aborted while the WebSocket handshake hangs rejects with the reason", T, async () => {
  await using silent = await silentServer();
  const transport = websocketTransport({
    proxy: `ws://127.0.0.1:${silent.port}/`,
    WebSocket: WebSocketImpl,
  });
  const controller = new AbortController();
  const reason = new Error("user gave up");
  setTimeout(() => controller.abort(reason), 100);
  assert.equal(await rejection(open(transport, "scram", { signal: controller.signal })), reason);
  await silent.socketClosed;
  const timedOut = await rejection(open(transport, "scram", { connectTimeout: 200 }));
  assertConnectionError(timedOut, "CONNECT_TIMEOUT");
});

test("connect with sslmode=require over ws:// fails with TLS_UNAVAILABLE", T, async () => {
  const { transport, urls } = viaRelay();
  const error = await rejection(
    connect(server.url("scram", { sslmode: "require" }), { transport }),
  );
  assertConnectionError(error, "TLS_UNAVAILABLE");
  assert.match(error.message, /use a wss:\/\/ proxy URL/);
  assert.equal(urls.length, 0);
  await using prefer = await connect(server.url("scram", { sslmode: "prefer" }), { transport });
  assert.equal(prefer.encrypted, false);
});

test("connect over wss:// verifies the proxy and satisfies sslmode=verify-full", T, async (t) => {
  if (relay.secureUrl === undefined) return t.skip("no certificate (TEST_DATABASE_URL)");
  const ca = readFileSync(server.caFile!, "utf8");
  // The `ws` package on both runtimes: it takes the test CA, which the global WebSocket cannot.
  class Trusting extends Ws {
    constructor(url: string) {
      super(url, { ca });
    }
  }
  const transport = websocketTransport({ proxy: relay.secureUrl, WebSocket: Trusting });
  await using conn = await connect(server.url("scram", { sslmode: "verify-full" }), {
    transport,
  });
  assert.equal(conn.encrypted, true);
  assert.deepEqual((await conn.query("select current_user as who")).rows, [{ who: "scram" }]);
  // Cancel goes the same way.
  const sleeping = rejection(conn.query("select pg_sleep(10)"));
  await delay(200);
  await conn.cancel();
  assertPostgresError(await sleeping, "57014");
  // Without the CA, the proxy's certificate does not verify.
  const untrusted = websocketTransport({ proxy: relay.secureUrl, WebSocket: Ws });
  const error = await rejection(connect(server.url("scram", PLAIN), { transport: untrusted }));
  assertConnectionError(error, "CONNECT_FAILED");
  assert.match(error.message, /certificate/);
});

test("connect in workerd reaches the server through websockify with its own WebSocket", {
  timeout: 60_000,
}, async () => {
  const bundle = await esbuild.build({
    ...bundleOptions(new URL("./_ws_worker.ts", import.meta.url).pathname, "workers"),
    write: false,
  });
  await esbuild.stop();
  const mf = new Miniflare({
    modules: true,
    script: bundle.outputFiles![0].text,
    compatibilityDate: "2026-04-01",
    bindings: { PROXY_URL: `${relay.url}v2` },
  });
  try {
    // A cleartext server (the password goes ahead), and a SCRAM one (the fallback).
    for (const user of ["password", "scram"] as const) {
      const url = encodeURIComponent(server.url(user, PLAIN));
      const body = await (await mf.dispatchFetch(`http://worker/?url=${url}`)).json() as Record<
        string,
        unknown
      >;
      assert.equal(body.failed, undefined, String(body.message));
      assert.equal(body.userAgent, "Cloudflare-Workers");
      assert.deepEqual(body.answer, { n: 42, who: user });
      assert.deepEqual(body.pipelined, [10, 20, 30]);
    }
  } finally {
    await mf.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// Network helpers
