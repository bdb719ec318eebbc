// The gateway's WebSocket face (gateway/websocket.ts) under a client that does not read: it
// asks for a result of about 200 MB, then stops reading its socket; and under a client that
// sends while the database does not read (a query waits for a lock). Against the real
// PostgreSQL 15 of tests/_server.ts and the real gateway, on Deno (by default the front
// listener of gateway/deno.ts, which serves WebSocket sessions itself; and Deno.serve's own
// WebSocket, without the front) and on Node (node:http + ws).
//
// Between the gateway and the server sits a counting TCP relay that passes bytes on with
// backpressure (it reads from one side only as fast as the other takes them), so what it read
// from the server is what the gateway read, plus what the sockets between them hold. The
// client is raw node:net: the WebSocket handshake and frames by hand, so that `pause()` stops
// all reading and nothing in a WebSocket library reads on its behalf.
//
// Every wait is bounded; assertions are on bytes, rows and states, never on timings.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import process from "node:process";
import { test } from "node:test";
import { connect, type Connection } from "../mod.ts";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { websocketTransport } from "../transports/websocket.ts";
import { concat, cstr, eventually, int32, message, within } from "./_helpers.ts";
import { getServer, passwordOf, TEST_DATABASE, type TestServer } from "./_server.ts";
import { isDeno, WebSocketImpl } from "./_transports.ts";

const T = { timeout: 90_000 };
const MiB = 1024 * 1024;
const RUN = `${isDeno ? "deno" : "node"}_${Math.random().toString(36).slice(2, 8)}`;

/** The stalled client's result: ROWS rows of one WIDTH-byte text column (202 MB on the wire). */
const ROWS = 200_000;
const WIDTH = 1000;
const BIG_QUERY = `select repeat('x', ${WIDTH}) from generate_series(1, ${ROWS})`;
/** DataRow: type, length, column count, column length, value. */
const RESULT_BYTES = ROWS * (1 + 4 + 2 + 4 + WIDTH);

/** gateway/websocket.ts's HIGH_WATER: past it, the gateway stops reading from the other side. */
const HIGH_WATER = 1 * MiB;
/** gateway/websocket.ts's MAX_BUFFERED: where a side that cannot be paused is cut off. */
const MAX_BUFFERED = 64 * MiB;

/**
 * What the sockets between the server and the stalled client may hold besides the gateway's
 * own backlog: two TCP connections (relay to gateway, gateway to client), each a send and a
 * receive buffer at their largest (Linux' tcp_wmem/tcp_rmem maxima; 4 and 6 MiB elsewhere),
 * and a Unix socket pair on Deno's front. The kernel seldom grows them that far for a reader
 * that stopped, so this is generous; still far below the result.
 */
function socketAllowance(): number {
  const max = (file: string, fallback: number) => {
    try {
      return Number(readFileSync(file, "utf8").trim().split(/\s+/)[2]) || fallback;
    } catch {
      return fallback;
    }
  };
  const tcp = max("/proc/sys/net/ipv4/tcp_wmem", 4 * MiB) +
    max("/proc/sys/net/ipv4/tcp_rmem", 6 * MiB);
  return 2 * tcp + 2 * MiB;
}

/** Growth of the process' resident memory allowed while the client stalls (gc'd before). */
const RSS_ALLOWANCE = 64 * MiB;

/** What a test started, stopped in reverse order when it ends, passed or failed. */
class Cleanups {
  readonly #steps: (() => unknown)[] = [];

  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    for (const step of this.#steps.reverse()) {
      try {
        await step();
      } catch {
        // Going anyway.
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A relay that counts, with backpressure

interface CountingRelay {
  port: number;
  /** Bytes read from the server, over all connections. */
  readonly fromServer: number;
  /** Bytes read from the gateway, over all connections. */
  readonly fromClient: number;
  /** The gateway's ports of the connections accepted, in order. */
  readonly peerPorts: readonly number[];
  close(): Promise<void>;
}

async function countingRelay(target: { host: string; port: number }): Promise<CountingRelay> {
  const sockets = new Set<net.Socket>();
  let fromServer = 0;
  let fromClient = 0;
  const peerPorts: number[] = [];
  const server = net.createServer((client) => {
    peerPorts.push(client.remotePort!);
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    // pipe() pauses the source while the destination's buffer is full: no backlog here.
    upstream.on("data", (chunk: Uint8Array) => fromServer += chunk.length);
    client.on("data", (chunk: Uint8Array) => fromClient += chunk.length);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get fromServer() {
      return fromServer;
    },
    get fromClient() {
      return fromClient;
    },
    peerPorts,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A WebSocket client by hand, over node:net

/** Counts what a PostgreSQL byte stream holds, one message at a time, keeping none of it. */
class ResultCounter {
  rows = 0;
  valueBytes = 0;
  /** DataRows that are not one column of WIDTH 'x' bytes. */
  badRows = 0;
  readyForQuery = 0;
  tags: string[] = [];
  errors: string[] = [];
  #header = new Uint8Array(5);
  #headerLength = 0;
  #body = new Uint8Array(2048);
  #bodyLength = -1;
  #bodyFilled = 0;
  static readonly #xs = Buffer.alloc(WIDTH, "x");

  push(bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length) {
      if (this.#bodyLength < 0) {
        const take = Math.min(5 - this.#headerLength, bytes.length - i);
        this.#header.set(bytes.subarray(i, i + take), this.#headerLength);
        this.#headerLength += take;
        i += take;
        if (this.#headerLength < 5) return;
        this.#bodyLength = new DataView(this.#header.buffer).getInt32(1) - 4;
        this.#bodyFilled = 0;
        if (this.#body.length < this.#bodyLength) this.#body = new Uint8Array(this.#bodyLength);
      }
      const take = Math.min(this.#bodyLength - this.#bodyFilled, bytes.length - i);
      this.#body.set(bytes.subarray(i, i + take), this.#bodyFilled);
      this.#bodyFilled += take;
      i += take;
      if (this.#bodyFilled < this.#bodyLength) return;
      this.#message(String.fromCharCode(this.#header[0]), this.#body.subarray(0, this.#bodyLength));
      this.#headerLength = 0;
      this.#bodyLength = -1;
    }
  }

  #message(type: string, body: Uint8Array): void {
    const view = new DataView(body.buffer, body.byteOffset, body.length);
    switch (type) {
      case "D": {
        this.rows++;
        const length = view.getInt32(2);
        if (length > 0) this.valueBytes += length;
        const value = Buffer.from(body.buffer, body.byteOffset + 6, Math.max(0, length));
        if (view.getInt16(0) !== 1 || !value.equals(ResultCounter.#xs)) this.badRows++;
        return;
      }
      case "C":
        this.tags.push(new TextDecoder().decode(body.subarray(0, body.length - 1)));
        return;
      case "Z":
        this.readyForQuery++;
        return;
      case "E":
        this.errors.push(new TextDecoder().decode(body).replaceAll("\0", " "));
    }
  }
}

/**
 * A WebSocket client on a raw node:net socket: handshake, masked binary frames out, frames in
 * (their payloads to `counter`), and `pause()`/`resume()` of all reading.
 */
class RawWebSocket {
  readonly counter = new ResultCounter();
  /** Payload bytes received. */
  received = 0;
  /** The close frame's code and reason, when one came. */
  closeFrame: { code: number; reason: string } | null = null;
  readonly closed: Promise<void>;
  readonly #socket: net.Socket;
  #head: number[] = [];
  #opcode = 0;
  #remaining = 0;
  #control: number[] = [];

  private constructor(socket: net.Socket, rest: Uint8Array) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
    socket.on("data", (chunk: Uint8Array) => this.#data(chunk));
    if (rest.length > 0) this.#data(rest);
  }

  /** Connects to the gateway on `port` and upgrades. */
  static async open(port: number): Promise<RawWebSocket> {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(
      "GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}` +
        "\r\n\r\n",
    );
    let answer = Buffer.alloc(0);
    const rest = await within(
      new Promise<Uint8Array>((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          answer = Buffer.concat([answer, chunk]);
          const end = answer.indexOf("\r\n\r\n");
          if (end < 0) return;
          socket.off("data", onData);
          socket.pause();
          const head = answer.subarray(0, end).toString("latin1");
          if (!head.startsWith("HTTP/1.1 101")) reject(new Error(`no upgrade: ${head}`));
          else resolve(new Uint8Array(answer.subarray(end + 4)));
        };
        socket.on("data", onData);
        socket.once("close", () => reject(new Error("closed during the handshake")));
      }),
      20_000,
      "the WebSocket handshake",
    );
    const client = new RawWebSocket(socket, rest);
    socket.resume();
    return client;
  }

  /**
   * Writes bytes (a frame of {@link frame}); resolves once the socket takes more, or has closed.
   */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#socket.write(bytes)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#socket.off("drain", done);
        this.#socket.off("close", done);
        resolve();
      };
      this.#socket.on("drain", done);
      this.#socket.on("close", done);
    });
  }

  /** Bytes the operating system took from this client (written, not waiting in node:net). */
  get accepted(): number {
    return this.#socket.bytesWritten - this.#socket.writableLength;
  }

  get isClosed(): boolean {
    return this.#socket.destroyed;
  }

  /** Sends `payload` as one masked binary frame. */
  send(payload: Uint8Array, opcode = 0x2): void {
    this.#socket.write(frame(payload, opcode));
  }

  /** Stops reading: what the gateway sends stays in the sockets' buffers. */
  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #data(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining === 0 && !this.#frameHeadDone()) {
        this.#head.push(chunk[i++]);
        if (this.#frameHeadDone()) this.#startFrame();
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - i);
      const payload = chunk.subarray(i, i + take);
      i += take;
      this.#remaining -= take;
      if (this.#opcode >= 0x8) this.#control.push(...payload);
      else {
        this.received += payload.length;
        this.counter.push(payload);
      }
      if (this.#remaining === 0) this.#endFrame();
    }
  }

  /** Whether `#head` holds a whole frame header (servers do not mask). */
  #frameHeadDone(): boolean {
    if (this.#head.length < 2) return false;
    const size = this.#head[1] & 0x7f;
    return this.#head.length >= (size === 126 ? 4 : size === 127 ? 10 : 2);
  }

  #startFrame(): void {
    const head = Uint8Array.from(this.#head);
    const size = head[1] & 0x7f;
    const view = new DataView(head.buffer);
    this.#opcode = head[0] & 0x0f;
    this.#remaining = size === 126
      ? view.getUint16(2)
      : size === 127
      ? Number(view.getBigUint64(2))
      : size;
    this.#control = [];
    if (this.#remaining === 0) this.#endFrame();
  }

  #endFrame(): void {
    this.#head = [];
    const payload = Uint8Array.from(this.#control);
    if (this.#opcode === 0x8) {
      const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
      this.closeFrame = { code, reason: new TextDecoder().decode(payload.subarray(2)) };
      // The closing handshake: answer, then end our side.
      this.send(payload.subarray(0, 2), 0x8);
      this.#socket.end();
    } else if (this.#opcode === 0x9) {
      this.send(payload, 0xa); // a pong
    }
  }
}

/** `payload` as one masked client frame (binary by default). */
function frame(payload: Uint8Array, opcode = 0x2): Uint8Array {
  const mask = randomBytes(4);
  const length = payload.length;
  const head = length < 126
    ? [0x80 | opcode, 0x80 | length]
    : length < 65536
    ? [0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff]
    : [0x80 | opcode, 0x80 | 127, 0, 0, 0, 0, ...int32(length)];
  const masked = new Uint8Array(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return concat(new Uint8Array(head), mask, masked);
}

/** StartupMessage, PasswordMessage and a Query in one frame, as Neon's driver pipelines them. */
function loginAndQuery(app: string, query: string): Uint8Array {
  const params = { user: "scram", database: TEST_DATABASE, application_name: app };
  const text = Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join("") + "\0";
  const body = new TextEncoder().encode(text);
  return concat(
    int32(body.length + 8),
    int32(196608),
    body,
    message("p", cstr(passwordOf("scram"))),
    message("Q", cstr(query)),
  );
}

// ---------------------------------------------------------------------------------------------

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** The memory this process holds (the gateway runs in it): resident, after a collection. */
function rss(): number {
  gc();
  return process.memoryUsage().rss;
}

const TCP_STATES = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2"];

/**
 * The state of the loopback TCP socket from `localPort` to `remotePort` as Linux' socket table
 * has it ("ESTABLISHED", "FIN_WAIT1"...; "gone" when not listed), or undefined where there is
 * no /proc/net/tcp.
 */
function tcpState(localPort: number, remotePort: number): string | undefined {
  let table: string;
  try {
    table = readFileSync("/proc/net/tcp", "utf8");
  } catch {
    return undefined;
  }
  const hex = (port: number) => `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of table.split("\n").slice(1)) {
    const [, local, remote, state] = line.trim().split(/\s+/);
    if (local === hex(localPort) && remote === hex(remotePort)) {
      const n = Number.parseInt(state, 16);
      return TCP_STATES[n] ?? `state ${n}`;
    }
  }
  return "gone";
}

/** `wait_event` (or the state when none) of the backend with `app` as application_name. */
async function backendState(monitor: Connection, app: string): Promise<string> {
  const { rows } = await monitor.query<{ s: string }>(
    "select coalesce(wait_event, state) as s from pg_stat_activity where application_name = $1",
    [app],
  );
  return rows[0]?.s ?? "gone";
}

/** Ways to serve the gateway on this runtime: on Deno, without and with the front listener. */
const SERVINGS: { name: string; headerTimeout: number | undefined }[] = isDeno
  ? [
    { name: "Deno.serve without the front listener", headerTimeout: 0 },
    { name: "Deno behind its front listener (the default)", headerTimeout: undefined },
  ]
  : [{ name: "node:http and ws", headerTimeout: undefined }];

for (const serving of SERVINGS) {
  test(
    `serveWebSocket holds the server back for a client that does not read, serves others ` +
      `meanwhile, and delivers the whole result once it reads, on ${serving.name}`,
    T,
    () => withCleanups((cleanups) => stalledClient(serving, cleanups)),
  );
}

/** Runs `body`, then what it added to its cleanups, however it ended. */
async function withCleanups(body: (cleanups: Cleanups) => Promise<void>): Promise<void> {
  const cleanups = new Cleanups();
  try {
    await body(cleanups);
  } finally {
    await cleanups.run();
  }
}

/**
 * The server, a counting relay in front of it, the gateway served as `serving` says with the
 * relay as its upstream, and a monitoring connection, all closed by `cleanups`.
 */
async function setUp(
  serving: { name: string; headerTimeout: number | undefined },
  cleanups: Cleanups,
): Promise<
  { server: TestServer; relay: CountingRelay; gateway: RunningGateway; monitor: Connection }
> {
  const server = await getServer();
  const relay = await countingRelay({ host: "127.0.0.1", port: server.port });
  cleanups.add(() => relay.close());
  const gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `127.0.0.1:${relay.port}`,
    ...(serving.headerTimeout === undefined ? {} : { headerTimeout: serving.headerTimeout }),
  });
  cleanups.add(() => gateway.close());
  const monitor = await connect(server.url("scram"));
  cleanups.add(() => monitor.close());
  return { server, relay, gateway, monitor };
}

/** The stalled-client test, served as `serving` says. */
async function stalledClient(
  serving: { name: string; headerTimeout: number | undefined },
  cleanups: Cleanups,
): Promise<void> {
  const { server, relay, gateway, monitor } = await setUp(serving, cleanups);
  const app = `${RUN}_stall_${serving.headerTimeout ?? "front"}`;
  const bound = HIGH_WATER + socketAllowance();

  const before = rss();
  const stalled = await RawWebSocket.open(gateway.port);
  cleanups.add(() => stalled.destroy());
  stalled.send(loginAndQuery(app, BIG_QUERY));
  stalled.pause();

  // 1. The server is held back: its backend waits to write to its client (the relay) and
  // the relay's count stops growing, below the bound. Were the gateway to buffer the
  // result, the backend would finish (ClientRead: idle) and the count settle at the result.
  await eventually(
    "the server blocks on the stalled client, or finishes the query",
    async () => ["ClientWrite", "ClientRead"].includes(await backendState(monitor, app)),
    20_000,
    50,
  );
  let last = -1;
  let same = 0;
  const samples: number[] = [];
  await eventually(
    "the relay's count settles",
    () => {
      const now = relay.fromServer;
      samples.push(now);
      same = now === last ? same + 1 : 0;
      last = now;
      return same >= 5;
    },
    30_000,
    100,
  );
  const read = relay.fromServer;
  const show = `${(read / MiB).toFixed(1)} MiB read of a ${
    (RESULT_BYTES / MiB).toFixed(0)
  } MiB result (bound ${(bound / MiB).toFixed(1)} MiB)`;
  console.log(`stalled client, ${serving.name}: ${show}`);
  assert.ok(Math.max(...samples) <= bound, show);
  assert.ok(read > HIGH_WATER, `the stall was reached: ${show}`);
  assert.equal(await backendState(monitor, app), "ClientWrite", show);
  const grown = rss() - before;
  console.log(`  rss grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.ok(grown < RSS_ALLOWANCE, `rss grew by ${(grown / MiB).toFixed(1)} MiB`);

  // 2. Another client through the same gateway is served meanwhile.
  const other = await connect(server.url("scram", { application_name: `${app}_other` }), {
    transport: websocketTransport({
      proxy: () => `${gateway.wsUrl}/v2`,
      WebSocket: WebSocketImpl,
    }),
  });
  try {
    for (let i = 0; i < 20; i++) {
      const { rows } = await within(
        other.query<{ n: number; s: string }>("select $1::int as n, repeat('y', 100) as s", [
          i,
        ]),
        20_000,
        `the other client's query ${i}`,
      );
      assert.deepEqual(rows, [{ n: i, s: "y".repeat(100) }]);
    }
  } finally {
    await other.close();
  }
  assert.equal(await backendState(monitor, app), "ClientWrite", "still held back");
  assert.ok(relay.fromServer <= bound, `after the other client: ${relay.fromServer}`);
  assert.equal(stalled.closeFrame, null, "the stalled session is still open");

  // 3. Reading again, the client gets the whole result, intact.
  stalled.resume();
  await eventually(
    "the stalled client has the whole result",
    () => stalled.counter.readyForQuery >= 2 || stalled.closeFrame !== null,
    60_000,
    50,
  );
  const counter = stalled.counter;
  assert.equal(stalled.closeFrame, null, `closed: ${JSON.stringify(stalled.closeFrame)}`);
  assert.deepEqual(counter.errors, []);
  assert.equal(counter.rows, ROWS);
  assert.equal(counter.badRows, 0);
  assert.equal(counter.valueBytes, ROWS * WIDTH);
  assert.deepEqual(counter.tags, [`SELECT ${ROWS}`]);
  assert.ok(relay.fromServer >= RESULT_BYTES, "the whole result passed the relay");
  stalled.send(message("X"));
  await within(stalled.closed, 20_000, "the stalled session closes after Terminate");
  await eventually("the gateway's sessions are over", () => gateway.sessions === 0);
}

// ---------------------------------------------------------------------------------------------
// The other way: a client that sends while the database does not read

for (const serving of SERVINGS) {
  // Deno's own WebSocket (Deno.serve's, without the front) has no way to stop reading; the
  // front's WebSocket (gateway/_websocket_server.ts) and Node's ws do.
  const pausable = serving.headerTimeout !== 0;
  test(
    pausable
      ? "serveWebSocket stops reading a client while the database does not read, and passes " +
        `everything on once it does, on ${serving.name}`
      : "serveWebSocket cuts off a client that sends more than MAX_BUFFERED while the " +
        `database does not read, on ${serving.name} (whose WebSocket cannot stop reading)`,
    T,
    () => withCleanups((cleanups) => floodingClient(serving, pausable, cleanups)),
  );
}

async function floodingClient(
  serving: { name: string; headerTimeout: number | undefined },
  pausable: boolean,
  cleanups: Cleanups,
): Promise<void> {
  const { relay, gateway, monitor } = await setUp(serving, cleanups);
  const lock = Math.floor(Math.random() * 2 ** 31);
  await monitor.query("select pg_advisory_lock($1)", [lock]);
  const app = `${RUN}_flood_${serving.headerTimeout ?? "default"}`;
  const client = await RawWebSocket.open(gateway.port);
  cleanups.add(() => client.destroy());
  client.send(loginAndQuery(app, `select pg_advisory_lock(${lock})`));
  await eventually(
    "the session waits for the lock",
    async () => (await backendState(monitor, app)) === "advisory",
    20_000,
    50,
  );

  // PostgreSQL reads nothing while a query runs: from here on, what the client sends piles up.
  const flood = frame(message("Q", cstr(`select 1 /* ${"x".repeat(MiB)} */`)));
  const bound = HIGH_WATER + socketAllowance();
  const frames = Math.ceil((Math.max(bound, MAX_BUFFERED) + 64 * MiB) / flood.length);
  let written = 0;
  const writing = (async () => {
    for (; written < frames && !client.isClosed; written++) await client.write(flood);
  })();
  cleanups.add(() => writing);
  const before = rss();
  let last = -1;
  let same = 0;
  await eventually(
    "the client's writes are held, or the session ends",
    () => {
      const now = client.accepted;
      same = now === last ? same + 1 : 0;
      last = now;
      return same >= 5 || client.closeFrame !== null;
    },
    30_000,
    100,
  );
  const accepted = client.accepted;
  const held = accepted - relay.fromClient;
  const show = `${(accepted / MiB).toFixed(1)} MiB taken from the client, ` +
    `${(held / MiB).toFixed(1)} MiB of it not past the relay (bound ${
      (bound / MiB).toFixed(1)
    } MiB), of ${(frames * flood.length / MiB).toFixed(0)} MiB`;
  console.log(`flooding client, ${serving.name}: ${show}`);

  if (!pausable) {
    // The gateway cannot stop reading the WebSocket: it ends the session past MAX_BUFFERED.
    await within(client.closed, 30_000, "the flooding session closes");
    // Deno's WebSocket does not always get its close frame out to a client that floods it:
    // the connection's end is what counts; a close frame that arrives says why.
    if (client.closeFrame !== null) {
      assert.equal(client.closeFrame.code, 1011, show);
      assert.match(client.closeFrame.reason, /does not read what the client sends/);
    }
    assert.ok(accepted > MAX_BUFFERED, show);
    assert.ok(written < frames, `the client could not send it all: ${show}`);
    // What it had queued for the server goes with the connection, which does not wait for a
    // database that does not read (transports/deno.ts' close grace). The relay does not read
    // either, so it cannot see the gateway's end: the kernel's socket table does.
    const port = relay.peerPorts.at(-1)!;
    if (tcpState(port, relay.port) !== undefined) {
      await eventually(
        "the gateway closed its server connection",
        () => tcpState(port, relay.port) !== "ESTABLISHED",
        30_000,
        100,
      );
    }
    // The backend notices once its lock wait ends.
    await monitor.query("select pg_advisory_unlock($1)", [lock]);
    await eventually(
      "the server ended the session",
      async () => (await backendState(monitor, app)) === "gone",
    );
    await writing;
    return;
  }
  // The gateway pauses the WebSocket; the client's writes wait in its own socket.
  assert.equal(client.closeFrame, null, show);
  assert.ok(written < frames, `the client is held back: ${show}`);
  assert.ok(held <= bound, show);
  const grown = rss() - before;
  assert.ok(grown < RSS_ALLOWANCE, `rss grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.equal(await backendState(monitor, app), "advisory");

  // The database reads again: every query gets through and is answered, in order.
  await monitor.query("select pg_advisory_unlock($1)", [lock]);
  await within(writing, 60_000, "the client writes the rest");
  assert.equal(written, frames);
  await eventually(
    "every query is answered",
    () => client.counter.readyForQuery >= frames + 2 || client.closeFrame !== null,
    60_000,
    50,
  );
  assert.equal(client.closeFrame, null);
  assert.deepEqual(client.counter.errors, []);
  assert.equal(client.counter.tags.length, frames + 1);
  assert.ok(client.counter.tags.every((tag) => tag === "SELECT 1"), client.counter.tags[0]);
  client.send(message("X"));
  await within(client.closed, 20_000, "the session closes after Terminate");
}
