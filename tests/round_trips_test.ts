// Cold-path round trips, counted by a relay (tests/_relay.ts) between the client and the real
// PostgreSQL 15 of tests/_server.ts, or edgepool's gateway in front of it: how many times the
// client waits for the network before its first row, for a connect and first query over TCP
// (SCRAM, MD5, cleartext), over WebSocket and over HTTP through the gateway, and for a batch on a
// warm connection of each transport. The relay holds each direction back by a few milliseconds
// so that flights cannot merge by luck; no assertion is about time.
//
// Also: the relay's own rule, and that a pipelined first query never hands over a result from a
// server whose SCRAM proof is wrong or missing (a hostile relay rewrites the real server's
// answer; the helpers of tests/protocol_test.ts play a fake server instead, which cannot show
// a real server's row arriving with the forged proof).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect, createServer } from "node:net";
import {
  connect,
  type Connection,
  type ConnectionErrorCode,
  type ConnectOptions,
  createPool,
  type Pool,
  PostgresError,
  QueuePool,
  type Transport,
  websocketTransport,
} from "../mod.ts";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { type HttpPool, httpTransport } from "../transports/http.ts";
import { type Relay, startRelay } from "./_relay.ts";
import { getServer, type TestServer, type TestUser } from "./_server.ts";
import { transports, WebSocketImpl } from "./_transports.ts";
import { assertConnectionError, codeOf, concat, rejection } from "./_helpers.ts";

const T = { timeout: 60_000 };
/** Each direction is held back this long: enough to keep flights apart, not asserted on. */
const DELAY_MS = 5;

const decoder = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Setup: the server, and one gateway in front of it

let setup: Promise<{ server: TestServer; gateway: RunningGateway }> | undefined;
const gateways: RunningGateway[] = [];

function env(): Promise<{ server: TestServer; gateway: RunningGateway }> {
  return setup ??= (async () => {
    const server = await getServer();
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `${server.host}:${server.port}`,
    });
    gateways.push(gateway);
    return { server, gateway };
  })();
}

// A listening gateway keeps a Node test process alive.
after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
});

/** A relay in front of `target`, holding each direction back by DELAY_MS. */
function relayTo(target: string, options?: { transform?: Transform }): Promise<Relay> {
  return startRelay({ target, delayMs: DELAY_MS, keepData: true, ...options });
}

type Transform = (chunk: Uint8Array, direction: "client" | "server") => Uint8Array;

/** A relay in front of the harness server. */
function serverRelay(server: TestServer, options?: { transform?: Transform }): Promise<Relay> {
  return relayTo(`${server.host}:${server.port}`, options);
}

/** A relay in front of the gateway. */
function gatewayRelay(gateway: RunningGateway): Promise<Relay> {
  return relayTo(`127.0.0.1:${gateway.port}`);
}

/** connect() to `url` through `relay`, over `tcp` under a new identity. */
function connectVia(
  relay: Relay,
  url: string,
  tcp: Transport,
  pipelineConnect?: ConnectOptions["pipelineConnect"],
): Promise<Connection> {
  return connect(url, { transport: fresh(tcp), port: relay.port, pipelineConnect });
}

/** Waits for the relay's connections to go quiet, then counts afresh. */
async function nextRound(relay: Relay): Promise<void> {
  await relay.drained();
  relay.reset();
}

/** `transport` under a new identity: what connect() learned about servers starts empty. */
function fresh(transport: Transport): Transport {
  return { name: transport.name, connect: (options) => transport.connect(options) };
}

/** A URL of the harness server for `user`, without TLS (the relay sees the protocol). */
function urlOf(server: TestServer, user: TestUser): string {
  return server.url(user, { sslmode: "disable" });
}

/** Round trips per connection the relay saw. */
function roundTrips(relay: Relay): number[] {
  return relay.connections().map((c) => c.roundTrips);
}

/** The messages of a statement's first run on the extended protocol, up to its Sync. */
const EXTENDED = ["P", "B", "D", "E", "S"];

/** The frontend message types of each flight of the relay's only connection. */
function flightTypes(relay: Relay): string[][] {
  const [connection] = relay.connections();
  return connection.flights.map((f, i) => frontendTypes(f.data!, i === 0));
}

// ---------------------------------------------------------------------------------------------
// Reading what the client sent

/** Frontend message types in `bytes`: `startup` for an untyped first message, then letters. */
function frontendTypes(bytes: Uint8Array, startup: boolean): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const types: string[] = [];
  let at = 0;
  if (startup) {
    types.push("startup");
    at = view.getInt32(0);
  }
  while (at < bytes.length) {
    types.push(String.fromCharCode(bytes[at]));
    at += 1 + view.getInt32(at + 1);
  }
  assert.equal(at, bytes.length, "a flight ends inside a message");
  return types;
}

/** What a WebSocket client's frames in `bytes` carry (client frames are masked), joined. */
function webSocketPayload(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const opcode = bytes[at] & 0x0f;
    let length = bytes[at + 1] & 0x7f;
    assert.ok(bytes[at + 1] & 0x80, "a client frame is masked");
    at += 2;
    if (length === 126) {
      length = view.getUint16(at);
      at += 2;
    } else if (length === 127) {
      length = Number(view.getBigUint64(at));
      at += 8;
    }
    const mask = bytes.subarray(at, at + 4);
    at += 4;
    const payload = bytes.slice(at, at + length).map((b, i) => b ^ mask[i % 4]);
    if (opcode === 0x2 || opcode === 0x0) parts.push(payload);
    at += length;
  }
  return concat(...parts);
}

// ---------------------------------------------------------------------------------------------
// The relay's rule

/** A server that answers each chunk it reads with `ok`. */
async function echoServer(): Promise<{ address: string; close(): Promise<void> }> {
  const server = createServer((socket) => {
    socket.on("data", () => socket.write("ok"));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Opens a plain TCP client to the relay; `next()` waits for the next answer. */
async function client(relay: Relay) {
  const socket = netConnect({ host: relay.host, port: relay.port });
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  let wake: (() => void) | null = null;
  socket.on("data", () => wake?.());
  return {
    write: (text: string) => socket.write(text),
    next: () => new Promise<void>((resolve) => wake = resolve),
    end: () => new Promise<void>((resolve) => socket.end(resolve)),
  };
}

for (const delayMs of [0, DELAY_MS]) {
  test(`Relay counts one flight per wait for the server (delay ${delayMs} ms)`, T, async () => {
    const echo = await echoServer();
    try {
      await using relay = await startRelay({ target: echo.address, delayMs, keepData: true });
      const c = await client(relay);
      // Written together: one flight, however many writes.
      const answered = c.next();
      c.write("a");
      c.write("bb");
      await answered;
      // Written after the answer arrived: a second round trip.
      const again = c.next();
      c.write("ccc");
      await again;
      await relay.settled();
      const [connection] = relay.connections();
      assert.deepEqual(connection.flights.map((f) => decoder.decode(f.data)), ["abb", "ccc"]);
      assert.equal(connection.flights[0].clientBytes, 3);
      assert.ok(connection.flights[0].serverBytes >= 2);
      assert.equal(relay.roundTrips, 2);
      relay.reset();
      assert.equal(relay.roundTrips, 0);
      const third = c.next();
      c.write("d");
      await third;
      assert.deepEqual(roundTrips(relay), [1]);
      await c.end();
    } finally {
      await echo.close();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// TCP: connect and the first query

for (const tcp of transports) {
  const name = (s: string) => `${s} [${tcp.name}]`;

  // [user, pipelineConnect, round trips to the first row, what each flight held]
  const cases: [TestUser, ConnectOptions["pipelineConnect"], number, string[][]][] = [
    ["scram", false, 4, [["startup"], ["p"], ["p"], [...EXTENDED]]],
    ["scram", "auth", 3, [["startup"], ["p"], ["p", ...EXTENDED]]],
    ["md5", false, 3, [["startup"], ["p"], [...EXTENDED]]],
    ["md5", "auth", 2, [["startup"], ["p", ...EXTENDED]]],
    ["password", false, 3, [["startup"], ["p"], [...EXTENDED]]],
    ["password", "auth", 2, [["startup"], ["p", ...EXTENDED]]],
    ["trust", "auth", 2, [["startup"], [...EXTENDED]]],
  ];
  for (const [user, pipelineConnect, expected, flights] of cases) {
    test(
      name(
        `connect and a first query over TCP take ${expected} round trips with ${user} and ` +
          `pipelineConnect ${pipelineConnect}`,
      ),
      T,
      async () => {
        const { server } = await env();
        await using relay = await serverRelay(server);
        await using conn = await connectVia(relay, urlOf(server, user), tcp, pipelineConnect);
        assert.deepEqual((await conn.query("select 42 as n")).rows, [{ n: 42 }]);
        assert.deepEqual(roundTrips(relay), [expected]);
        assert.deepEqual(flightTypes(relay), flights);
        await conn.whenReady();
        assert.ok(conn.processId > 0);
      },
    );
  }

  test(
    name(
      "pipelineConnect query over TCP: a cleartext server takes the first query in 1 round trip",
    ),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      const options = {
        transport: fresh(tcp),
        port: relay.port,
        pipelineConnect: "query",
      } as const;
      // The first connect learns that the server takes the password ahead...
      const first = await connect(urlOf(server, "password"), options);
      assert.deepEqual((await first.query("select 1 as n")).rows, [{ n: 1 }]);
      assert.deepEqual(flightTypes(relay), [["startup", "p"], [...EXTENDED]]);
      await first.close();
      await nextRound(relay);
      // ...so the next sends startup, password and query in one flight.
      await using second = await connect(urlOf(server, "password"), options);
      assert.deepEqual((await second.query("select 1 as n")).rows, [{ n: 1 }]);
      assert.deepEqual(roundTrips(relay), [1]);
      assert.deepEqual(flightTypes(relay), [["startup", "p", ...EXTENDED]]);
    },
  );

  test(
    name("pipelineConnect query over TCP: a SCRAM server gets the first query behind SCRAM"),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      const options = {
        transport: fresh(tcp),
        port: relay.port,
        pipelineConnect: "query",
      } as const;
      // The password sent ahead is refused (the server wants SCRAM): a second connection, on
      // which the first query already rides behind the client-final message.
      const first = await connect(urlOf(server, "scram"), options);
      assert.deepEqual((await first.query("select 1 as n")).rows, [{ n: 1 }]);
      assert.deepEqual(roundTrips(relay), [1, 3]);
      await first.close();
      await nextRound(relay);
      // Known by now: no password ahead, 3 round trips.
      await using second = await connect(urlOf(server, "scram"), options);
      assert.deepEqual((await second.query("select 1 as n")).rows, [{ n: 1 }]);
      assert.deepEqual(roundTrips(relay), [3]);
      assert.deepEqual(flightTypes(relay), [["startup"], ["p"], ["p", ...EXTENDED]]);
    },
  );

  test(
    name("pipelineConnect auth: close() before any query lets the login finish, then ends it"),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      const conn = await connectVia(relay, urlOf(server, "scram"), tcp, "auth");
      await conn.close();
      assert.equal(conn.closed, true);
      await relay.drained();
      // The client-final message left alone (no query joined it); Terminate after the login.
      assert.deepEqual(flightTypes(relay), [["startup"], ["p"], ["p"], ["X"]]);
    },
  );

  test(
    name("pipelineConnect auth reports a wrong SCRAM password on the first query"),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      const wrong = urlOf(server, "scram").replace("scram_pw", "wrong");
      const conn = await connectVia(relay, wrong, tcp, "auth");
      const error = await rejection(conn.query("select 1"));
      assert.equal(codeOf(error), "28P01", String(error));
      assert.equal(conn.closed, true);
      assert.deepEqual(roundTrips(relay), [3]);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// TCP: createPool's default (pipelineConnect "auth", for checkouts that start with a query)

/** `createPool(url)` with its defaults, its connections going through `relay` over `tcp`. */
function poolVia(
  relay: Relay,
  url: string,
  tcp: Transport,
  options?: { poolClass?: "NullPool" },
): Pool<Connection> {
  return createPool(url, { transport: fresh(tcp), port: relay.port, ...options });
}

for (const tcp of transports) {
  const name = (s: string) => `${s} [${tcp.name}]`;

  test(
    name("createPool: a cold pool.query over TCP with SCRAM takes 3 round trips"),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      await using pool = poolVia(relay, urlOf(server, "scram"), tcp);
      assert.deepEqual((await pool.query("select 42 as n")).rows, [{ n: 42 }]);
      assert.deepEqual(roundTrips(relay), [3]);
      assert.deepEqual(flightTypes(relay), [["startup"], ["p"], ["p", ...EXTENDED]]);
      assert.equal(pool.stats().connectionsErrors, 0);
    },
  );

  test(name("createPool: a cold transaction or batch rides behind the login too"), T, async () => {
    const { server } = await env();
    await using relay = await serverRelay(server);
    await using pool = poolVia(relay, urlOf(server, "scram"), tcp, { poolClass: "NullPool" });
    const [row] = await pool.batch(["select 1 as n"]);
    assert.deepEqual(row.rows, [{ n: 1 }]);
    assert.deepEqual(roundTrips(relay), [3]);
    await nextRound(relay);
    // A transaction's BEGIN rides behind the login; its statements follow one by one.
    const n = await pool.transaction(async (tx) => (await tx.query("select 2 as n")).rows[0].n);
    assert.equal(n, 2);
    assert.deepEqual(roundTrips(relay), [3 + 2]);
  });

  test(
    name("createPool: a checkout waits for the login, so it takes 4 round trips to a row"),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      await using pool = poolVia(relay, urlOf(server, "scram"), tcp);
      const connection = await pool.connect();
      try {
        assert.equal(connection.connection.loggingIn, false);
        assert.deepEqual((await connection.query("select 42 as n")).rows, [{ n: 42 }]);
      } finally {
        await connection.release();
      }
      assert.deepEqual(roundTrips(relay), [4]);
    },
  );

  test(
    name("createPool: a wrong password fails pool.query and connect() with the server's 28P01"),
    T,
    async () => {
      const { server } = await env();
      await using relay = await serverRelay(server);
      await using pool = poolVia(relay, urlOf(server, "scram").replace("scram_pw", "wrong"), tcp);
      const errors: string[] = [];
      pool.on("error", (e) => errors.push(e.context));
      // The statement rode behind the login: it fails with the login's error, as written.
      const failed = await rejection(pool.query("select 1"));
      assert.ok(failed instanceof PostgresError, String(failed));
      assert.equal(failed.code, "28P01");
      assert.deepEqual(roundTrips(relay), [3]);
      // A checkout is handed over only once logged in: it fails with the same error.
      const checkout = await rejection(pool.connect());
      assert.ok(checkout instanceof PostgresError, String(checkout));
      assert.equal(checkout.code, "28P01");
      assert.deepEqual(errors, ["connect", "connect"]);
      assert.equal(pool.stats().connectionsErrors, 2);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// TCP: a server that does not prove itself never answers the pipelined query

/**
 * A relay transform that rewrites the server's SASLFinal with `edit`. From that message on it
 * holds the server's output back until the first query's row and ReadyForQuery are in, then
 * passes it all on at once: the client gets the forged proof and the row in one chunk, and must
 * still refuse the row. Messages pass whole (a partial one waits for its rest).
 */
function forgeSaslFinal(
  edit: (final: Uint8Array) => Uint8Array,
): { transform: Transform; rowsHeld(): number } {
  let buffer: Uint8Array = new Uint8Array(0);
  let held: Uint8Array[] | null = null;
  let rows = 0;
  const transform = (chunk: Uint8Array, direction: "client" | "server"): Uint8Array => {
    if (direction === "client") return chunk;
    buffer = concat(buffer, chunk);
    const out: Uint8Array[] = [];
    let at = 0;
    while (at + 5 <= buffer.length) {
      const length = new DataView(buffer.buffer, buffer.byteOffset + at + 1).getInt32(0);
      if (at + 1 + length > buffer.length) break;
      let message: Uint8Array = buffer.slice(at, at + 1 + length);
      at += 1 + length;
      const type = String.fromCharCode(message[0]);
      if (type === "R" && new DataView(message.buffer, message.byteOffset).getInt32(5) === 12) {
        message = edit(message);
        held = [];
      }
      if (held === null) {
        out.push(message);
        continue;
      }
      held.push(message);
      if (type === "D") rows++;
      if (type === "Z" && rows > 0) {
        out.push(...held);
        held = null;
      }
    }
    buffer = buffer.slice(at);
    return concat(...out);
  };
  return { transform, rowsHeld: () => rows };
}

/** A pipelineConnect "auth" login as scram through a relay that rewrites SASLFinal with `edit`;
 * disposing of it closes the connection and the relay. */
async function forgedLogin(edit: (final: Uint8Array) => Uint8Array) {
  const { server } = await env();
  const forge = forgeSaslFinal(edit);
  const relay = await serverRelay(server, { transform: forge.transform });
  const conn = await connectVia(relay, urlOf(server, "scram"), transports[0], "auth");
  return {
    forge,
    relay,
    conn,
    async [Symbol.asyncDispose]() {
      await conn.close();
      await relay[Symbol.asyncDispose]();
    },
  };
}

/** AuthenticationCleartextPassword. */
const ASK_CLEARTEXT = new Uint8Array([0x52, 0, 0, 0, 8, 0, 0, 0, 3]);

const forgeries: [string, (final: Uint8Array) => Uint8Array, ConnectionErrorCode, RegExp][] = [
  [
    "a wrong server signature",
    (final) => {
      const out = final.slice();
      const at = 9 + 2; // R, length, code 12, "v="
      out[at] = out[at] === 0x41 ? 0x42 : 0x41; // still base64, no longer the signature
      return out;
    },
    "AUTH_FAILED",
    /signature does not match/,
  ],
  ["no SASLFinal at all", () => new Uint8Array(0), "AUTH_FAILED", /without proving itself/],
  [
    "a request for a cleartext password instead of SASLFinal",
    () => ASK_CLEARTEXT,
    "PROTOCOL_ERROR",
    /asked for a cleartext password after the client's last authentication message/,
  ],
];

for (const [what, edit, code, message] of forgeries) {
  test(
    `pipelineConnect auth never delivers the first query's row after ${what}`,
    T,
    async () => {
      await using login = await forgedLogin(edit);
      const { forge, relay, conn } = login;
      const outcome = await rejection(conn.query("select 'for the real server only' as s"));
      assertConnectionError(outcome, code);
      assert.match(outcome.message, message);
      assert.equal(conn.closed, true);
      assertConnectionError(await rejection(conn.whenReady()), code);
      // The server did answer, and its row reached the client with the forgery.
      assert.equal(forge.rowsHeld(), 1);
      await relay.settled();
      // The query left with the client-final message; nothing followed (no password either).
      assert.deepEqual(flightTypes(relay), [["startup"], ["p"], ["p", ...EXTENDED]]);
    },
  );
}

test("pipelineConnect auth delivers the row when the relay forges nothing", T, async () => {
  await using login = await forgedLogin((final) => final);
  const { relay, conn } = login;
  assert.deepEqual((await conn.query("select 'ok' as s")).rows, [{ s: "ok" }]);
  assert.deepEqual(roundTrips(relay), [3]);
});

// ---------------------------------------------------------------------------------------------
// WebSocket through the gateway: 1 round trip at the PostgreSQL level, plus the upgrade

/** The WebSocket transport to the gateway, through `relay`. */
function webSocketVia(relay: Relay): Transport {
  return websocketTransport({
    proxy: (host, port) => `ws://${relay.address}/v2?address=${host}:${port}`,
    WebSocket: WebSocketImpl,
  });
}

/** The PostgreSQL messages in each WebSocket flight after the upgrade. */
function webSocketFlightTypes(relay: Relay): string[][] {
  const [connection] = relay.connections();
  const [upgrade, ...rest] = connection.flights;
  assert.match(decoder.decode(upgrade.head), /^GET \/v2\?address=/);
  return rest.map((f, i) => frontendTypes(webSocketPayload(f.data!), i === 0));
}

test(
  "WebSocket via the gateway: pipelineConnect query takes the first row in 1 round trip + the upgrade",
  T,
  async () => {
    const { server, gateway } = await env();
    await using relay = await gatewayRelay(gateway);
    const options = { transport: webSocketVia(relay), pipelineConnect: "query" } as const;
    // The first connect of a process learns that the gateway takes the password ahead.
    const first = await connect(urlOf(server, "scram"), options);
    assert.deepEqual((await first.query("select 1 as n")).rows, [{ n: 1 }]);
    assert.deepEqual(roundTrips(relay), [1 + 2]);
    assert.deepEqual(webSocketFlightTypes(relay), [["startup", "p"], [...EXTENDED]]);
    await first.close();
    await nextRound(relay);
    // Every connect after it: startup, password and query in one flight.
    await using conn = await connect(urlOf(server, "scram"), options);
    assert.deepEqual((await conn.query("select 1 as n")).rows, [{ n: 1 }]);
    assert.deepEqual(roundTrips(relay), [1 + 1]);
    assert.deepEqual(webSocketFlightTypes(relay), [["startup", "p", ...EXTENDED]]);
  },
);

test(
  "WebSocket via the gateway: the transport's default takes 2 round trips + the upgrade",
  T,
  async () => {
    const { server, gateway } = await env();
    await using relay = await gatewayRelay(gateway);
    await using conn = await connect(urlOf(server, "scram"), { transport: webSocketVia(relay) });
    assert.deepEqual((await conn.query("select 1 as n")).rows, [{ n: 1 }]);
    assert.deepEqual(roundTrips(relay), [1 + 2]);
    assert.deepEqual(webSocketFlightTypes(relay), [["startup", "p"], [...EXTENDED]]);
  },
);

test(
  "WebSocket via the gateway: createPool's default takes 1 round trip + the upgrade once learnt",
  T,
  async () => {
    const { server, gateway } = await env();
    await using relay = await gatewayRelay(gateway);
    // NullPool: a connection per statement, as on an edge runtime.
    await using pool = createPool(urlOf(server, "scram"), {
      transport: webSocketVia(relay),
      poolClass: "NullPool",
    });
    assert.deepEqual((await pool.query("select 1 as n")).rows, [{ n: 1 }]);
    assert.deepEqual(roundTrips(relay), [1 + 2]);
    await nextRound(relay);
    assert.deepEqual((await pool.query("select 2 as n")).rows, [{ n: 2 }]);
    assert.deepEqual(roundTrips(relay), [1 + 1]);
    assert.deepEqual(webSocketFlightTypes(relay), [["startup", "p", ...EXTENDED]]);
  },
);

// ---------------------------------------------------------------------------------------------
// HTTP through the gateway: one request, one round trip

/** `createPool` with the HTTP transport, its requests going through `relay` to the gateway. */
function httpPoolVia(relay: Relay, server: TestServer): HttpPool {
  return createPool(urlOf(server, "scram"), {
    transport: httpTransport({ endpoint: `http://${relay.address}/sql` }),
  });
}

test("HTTP via the gateway: a cold first query takes 1 round trip", T, async () => {
  const { server, gateway } = await env();
  await using relay = await gatewayRelay(gateway);
  await using pool = httpPoolVia(relay, server);
  assert.deepEqual((await pool.query("select $1::int as n", [7])).rows, [{ n: 7 }]);
  assert.deepEqual(roundTrips(relay), [1]);
  const request = decoder.decode(relay.connections()[0].flights[0].data);
  assert.match(request, /^POST \/sql /);
  assert.match(request, /select \$1::int as n/);
});

// ---------------------------------------------------------------------------------------------
// A batch on a warm connection: one round trip on every transport

const BATCH = [
  "create temporary table if not exists round_trips (n int)",
  { sql: "insert into round_trips values ($1), ($2)", params: [1, 2] },
  "select count(*)::int as n from round_trips",
];

/** Parse, Bind, Describe, Execute, Sync: one statement with the extended protocol. */
/** The test `name`: a batch on a warm QueuePool connection takes 1 round trip, connecting with
 * `options` through the relay `relayFor` starts; `payload` takes the client's messages out of
 * a flight's bytes (a WebSocket's frames unwrapped). */
function warmBatchTest(
  name: string,
  relayFor: (env: { server: TestServer; gateway: RunningGateway }) => Promise<Relay>,
  options: (relay: Relay) => ConnectOptions,
  payload: (data: Uint8Array) => Uint8Array = (data) => data,
): void {
  test(name, T, async () => {
    const setup = await env();
    await using relay = await relayFor(setup);
    const url = urlOf(setup.server, "scram");
    const connectOptions = options(relay);
    await using pool = new QueuePool(() => connect(url, connectOptions), { poolSize: 1 });
    await pool.query("select 1"); // warm: the one connection is open and idle
    relay.reset();
    const results = await pool.batch(BATCH);
    assert.deepEqual(results[2].rows, [{ n: 2 }]);
    assert.deepEqual(roundTrips(relay), [1]);
    const [connection] = relay.connections();
    // BEGIN, the three statements and COMMIT, in one flight.
    assert.deepEqual(frontendTypes(payload(connection.flights[0].data!), false), [
      "Q",
      ...EXTENDED,
      ...EXTENDED,
      ...EXTENDED,
      "Q",
    ]);
  });
}

for (const tcp of transports) {
  warmBatchTest(
    `QueuePool batch on a warm TCP connection takes 1 round trip [${tcp.name}]`,
    ({ server }) => serverRelay(server),
    (relay) => ({ transport: tcp, port: relay.port }),
  );
}

warmBatchTest(
  "QueuePool batch on a warm WebSocket connection via the gateway takes 1 round trip",
  ({ gateway }) => gatewayRelay(gateway),
  (relay) => ({ transport: webSocketVia(relay) }),
  webSocketPayload,
);

test("HttpPool batch via the gateway takes 1 round trip, cold or warm", T, async () => {
  const { server, gateway } = await env();
  await using relay = await gatewayRelay(gateway);
  await using pool = httpPoolVia(relay, server);
  const http = [
    "select 1 as a",
    { sql: "select $1::int as b", params: [2] },
    "select 3 as c",
  ];
  for (let i = 0; i < 2; i++) {
    relay.reset();
    const results = await pool.batch(http);
    assert.deepEqual(results.map((r) => r.rows[0]), [{ a: 1 }, { b: 2 }, { c: 3 }]);
    assert.equal(relay.roundTrips, 1, `batch ${i + 1}`);
  }
});
