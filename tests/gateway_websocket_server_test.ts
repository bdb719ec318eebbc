// The front listener's own WebSocket (gateway/_websocket_server.ts): the handshake it takes
// and the ones it leaves to Deno.serve, and the framing, checked two ways. In memory, over a
// byte pipe the test drives (every split of the input, each breach of the protocol, pause,
// idle pings); and through the real gateway with a raw client (node:net), where the same
// frames get the same answers on Deno (the front) and on Node (node:http + ws), and on Deno an
// upgrade the front does not take gets the answer Deno.serve alone gives; and wss://, with TLS
// ended on the front.

import assert from "node:assert/strict";
import * as net from "node:net";
import { test } from "node:test";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import type { BytePipe } from "../gateway/_request_heads.ts";
import { acceptResponse, FramedWebSocket, upgradeRequest } from "../gateway/_websocket_server.ts";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { WebSocket as Ws } from "ws";
import { connect } from "../mod.ts";
import { websocketTransport } from "../transports/websocket.ts";
import { concat, eventually, int32, text, within } from "./_helpers.ts";
import { getServer } from "./_server.ts";
import { isDeno } from "./_transports.ts";

const T = { timeout: 60_000 };
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const CLEAN = "GET /v2?address=127.0.0.1:5432 HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n" +
  `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
/** An SSLRequest: the gateway answers it with one byte, N, before any login. */
const SSL_REQUEST = concat(int32(8), int32(80877103));
const N = new Uint8Array([0x4e]);

// ---------------------------------------------------------------------------------------------
// The handshake

test("upgradeRequest reads a clean upgrade request's target and key", () => {
  assert.deepEqual(upgradeRequest(text(CLEAN)), { target: "/v2?address=127.0.0.1:5432", key: KEY });
  const lenient = CLEAN.replace("Upgrade: websocket", "upgrade:WebSocket ")
    .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade")
    .replace(
      "Host: gw\r\n",
      "Host: gw\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n",
    );
  assert.deepEqual(upgradeRequest(text(lenient)), {
    target: "/v2?address=127.0.0.1:5432",
    key: KEY,
  });
});

test("upgradeRequest leaves every request it cannot read without doubt (null)", () => {
  const variants: Record<string, string> = {
    "another method": CLEAN.replace("GET", "POST"),
    "HTTP/1.0": CLEAN.replace("HTTP/1.1", "HTTP/1.0"),
    "an absolute target": CLEAN.replace("GET /v2", "GET http://gw/v2"),
    "a space in the target": CLEAN.replace("/v2?", "/v 2?"),
    "no key": CLEAN.replace(`Sec-WebSocket-Key: ${KEY}\r\n`, ""),
    "a short key": CLEAN.replace(KEY, "dGhlIHNhbXBsZQ=="),
    "two keys": CLEAN.replace("Host: gw\r\n", `Host: gw\r\nSec-WebSocket-Key: ${KEY}\r\n`),
    "two hosts": CLEAN.replace("Host: gw\r\n", "Host: gw\r\nHost: other\r\n"),
    "no host": CLEAN.replace("Host: gw\r\n", ""),
    "version 8": CLEAN.replace("Version: 13", "Version: 8"),
    "no upgrade in Connection": CLEAN.replace("Connection: Upgrade", "Connection: keep-alive"),
    "another protocol": CLEAN.replace("Upgrade: websocket", "Upgrade: h2c"),
    "a body": CLEAN.replace("Host: gw\r\n", "Host: gw\r\nContent-Length: 5\r\n"),
    "chunked": CLEAN.replace("Host: gw\r\n", "Host: gw\r\nTransfer-Encoding: chunked\r\n"),
    "bare LF line ends": CLEAN.replaceAll("\r\n", "\n"),
    "a folded header": CLEAN.replace("Host: gw\r\n", "Host: gw\r\n  folded\r\n"),
    "a space before a colon": CLEAN.replace("Host: gw", "Host : gw"),
    "a control byte in a value": CLEAN.replace("Host: gw", "Host: g\x00w"),
    "a bare CR in a value": CLEAN.replace("Host: gw", "Host: g\rw"),
    "no blank line": CLEAN.slice(0, -2),
    "a blank line before it": "\r\n" + CLEAN,
  };
  for (const [name, head] of Object.entries(variants)) {
    assert.equal(upgradeRequest(text(head)), null, name);
  }
});

test("acceptResponse answers RFC 6455's sample key with its accept value", async () => {
  const response = new TextDecoder().decode(await acceptResponse(KEY));
  assert.match(response, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(response, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n\r\n$/);
});

// ---------------------------------------------------------------------------------------------
// Framing, in memory

/** A byte pipe the test feeds; it records what is written. */
class MemoryPipe implements BytePipe {
  readonly written: Uint8Array[] = [];
  /** Called with each write: a client that answers at once. */
  onWrite: ((bytes: Uint8Array) => void) | null = null;
  writeClosed = false;
  /** Writes wait (a client that does not read) while this is set. */
  stalled: Promise<void> | null = null;
  reads = 0;
  readonly #input: (Uint8Array | null)[] = [];
  #waiting: (() => void) | null = null;

  /** Everything pushed has been read. */
  get drained(): boolean {
    return this.#input.length === 0;
  }

  push(bytes: Uint8Array | null): void {
    this.#input.push(bytes);
    this.#waiting?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    this.reads++;
    while (this.#input.length === 0) await new Promise<void>((r) => this.#waiting = r);
    this.#waiting = null;
    const next = this.#input[0];
    if (next === null) return null;
    const n = Math.min(next.length, buffer.length);
    buffer.set(next.subarray(0, n));
    if (n === next.length) this.#input.shift();
    else this.#input[0] = next.subarray(n);
    return n;
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.stalled !== null) return this.stalled.then(() => this.write(bytes));
    this.written.push(bytes.slice());
    this.onWrite?.(bytes);
    return Promise.resolve(bytes.length);
  }

  closeWrite(): Promise<void> {
    this.writeClosed = true;
    return Promise.resolve();
  }

  /** The server's frames written after the preamble. */
  frames(preamble: number): { opcode: number; payload: Uint8Array }[] {
    return readFrames(concat(...this.written).subarray(preamble));
  }
}

/** A client's frame: masked unless told otherwise. */
function clientFrame(
  opcode: number,
  payload: Uint8Array,
  { fin = true, masked = true, rsv = 0 }: { fin?: boolean; masked?: boolean; rsv?: number } = {},
): Uint8Array {
  const n = payload.length;
  const length = n < 126
    ? new Uint8Array([n])
    : n < 65536
    ? new Uint8Array([126, n >> 8, n & 0xff])
    : concat(new Uint8Array([127, 0, 0, 0, 0]), int32(n).subarray(0, 4).slice(1 - 1));
  if (n >= 65536) length.set([127, 0, 0, 0, 0, ...int32(n)]);
  const mask = masked ? new Uint8Array([0x37, 0xfa, 0x21, 0x3d]) : new Uint8Array(0);
  const body = payload.map((byte, i) => masked ? byte ^ mask[i & 3] : byte);
  const first = new Uint8Array([(fin ? 0x80 : 0) | rsv << 4 | opcode]);
  if (masked) length[0] |= 0x80;
  return concat(first, length, mask, body);
}

/** Server frames (unmasked) in `bytes`. */
function readFrames(bytes: Uint8Array): { opcode: number; payload: Uint8Array }[] {
  const frames: { opcode: number; payload: Uint8Array }[] = [];
  let i = 0;
  while (i < bytes.length) {
    assert.equal(bytes[i] & 0xf0, 0x80, "a server frame is final, without extension bits");
    assert.equal(bytes[i + 1] & 0x80, 0, "a server frame is not masked");
    const opcode = bytes[i] & 0x0f;
    let n = bytes[i + 1] & 0x7f;
    let at = i + 2;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    if (n === 126) {
      n = view.getUint16(at);
      at += 2;
    } else if (n === 127) {
      n = Number(view.getBigUint64(at));
      at += 8;
    }
    frames.push({ opcode, payload: bytes.slice(at, at + n) });
    i = at + n;
  }
  return frames;
}

/** A FramedWebSocket on a MemoryPipe, recording what it hands on and whether it ended. */
function framed(input: Uint8Array = new Uint8Array(0), idleTimeout = 0) {
  const pipe = new MemoryPipe();
  const preamble = text("101\r\n\r\n");
  const got: (Uint8Array | string)[] = [];
  const state = { ended: 0, closed: 0 };
  const socket = new FramedWebSocket(pipe, () => state.ended++, preamble, input, idleTimeout);
  socket.onmessage = (data) => got.push(data);
  socket.onclose = () => state.closed++;
  socket.start();
  const closeCode = () => {
    const close = pipe.frames(preamble.length).find((f) => f.opcode === 0x8);
    return close === undefined ? undefined : close.payload[0] << 8 | close.payload[1];
  };
  return { pipe, socket, got, state, closeCode, frames: () => pipe.frames(preamble.length) };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

function bytesOf(got: (Uint8Array | string)[]): Uint8Array {
  return concat(...got.map((d) => typeof d === "string" ? text(d) : d));
}

test("FramedWebSocket hands on binary payloads whole however the input is split", async () => {
  const payloads = [
    new Uint8Array(0),
    text("x"),
    new Uint8Array(125).fill(7),
    new Uint8Array(300)
      .map((_, i) => i),
    new Uint8Array(70_000).map((_, i) => i * 31),
  ];
  const input = concat(...payloads.map((p) => clientFrame(0x2, p)));
  const expected = concat(...payloads);
  for (const step of [1, 2, 3, 5, 13, 4096, input.length]) {
    const { pipe, got, state } = framed();
    for (let i = 0; i < input.length; i += step) pipe.push(input.subarray(i, i + step));
    await eventually(`split by ${step}`, () => bytesOf(got).length === expected.length);
    assert.deepEqual(bytesOf(got), expected, `split by ${step}`);
    assert.equal(state.ended, 0);
    pipe.push(null);
    await eventually("ends", () => state.closed === 1);
  }
});

test("FramedWebSocket reads what came with the request head first, then the connection", async () => {
  const { pipe, got } = framed(clientFrame(0x2, text("first")));
  pipe.push(clientFrame(0x2, text("second")));
  await eventually("both", () => got.length === 2);
  assert.deepEqual(got.map((d) => new TextDecoder().decode(d as Uint8Array)), ["first", "second"]);
});

test("FramedWebSocket reassembles nothing: fragments pass on, a ping between them is answered", async () => {
  const { pipe, got, frames } = framed();
  pipe.push(concat(
    clientFrame(0x2, text("ab"), { fin: false }),
    clientFrame(0x9, text("hello")),
    clientFrame(0x0, text("cd"), { fin: false }),
    clientFrame(0x0, text("e")),
  ));
  await eventually("the message", () => bytesOf(got).length === 5);
  assert.equal(new TextDecoder().decode(bytesOf(got)), "abcde");
  await eventually("the pong", () => frames().length === 1);
  assert.deepEqual(frames(), [{ opcode: 0xa, payload: text("hello") }]);
});

test("FramedWebSocket sends each payload as one final binary frame of the right length", async () => {
  const { socket, frames } = framed();
  const sizes = [0, 1, 125, 126, 65535, 65536, 200_000];
  for (const size of sizes) socket.send(new Uint8Array(size).fill(size & 0xff));
  await settle();
  assert.deepEqual(frames().map((f) => [f.opcode, f.payload.length]), sizes.map((s) => [2, s]));
  for (const f of frames()) assert.ok(f.payload.every((b) => b === (f.payload.length & 0xff)));
  assert.equal(socket.bufferedAmount, 0);
});

test("FramedWebSocket copies what it is lent: a reused buffer changes nothing sent", async () => {
  const { socket, frames } = framed();
  const lent = text("abc");
  socket.send(lent);
  lent.fill(0x7a);
  socket.send(lent);
  await settle();
  assert.deepEqual(frames().map((f) => new TextDecoder().decode(f.payload)), ["abc", "zzz"]);
});

test("FramedWebSocket closes with 1002 on each breach of the protocol, and reads no further", async () => {
  const long = new Uint8Array([0x82, 0xff, 0, 0x20, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
  const breaches: Record<string, Uint8Array> = {
    "an unmasked frame": clientFrame(0x2, text("x"), { masked: false }),
    "an extension bit": clientFrame(0x2, text("x"), { rsv: 4 }),
    "a reserved data opcode": clientFrame(0x3, text("x")),
    "a reserved control opcode": clientFrame(0xb, text("x")),
    "a long ping": clientFrame(0x9, new Uint8Array(126)),
    "a fragmented ping": clientFrame(0x9, text("x"), { fin: false }),
    "a continuation without a message": clientFrame(0x0, text("x")),
    "a message inside a message": concat(
      clientFrame(0x2, text("x"), { fin: false }),
      clientFrame(0x2, text("y")),
    ),
    "a length past 2^53": long,
    "a close with one byte": clientFrame(0x8, new Uint8Array([3])),
    "a close with code 1005": clientFrame(0x8, new Uint8Array([0x03, 0xed])),
  };
  for (const [name, bytes] of Object.entries(breaches)) {
    const { pipe, got, state, closeCode } = framed();
    pipe.push(concat(bytes, clientFrame(0x2, text("after"))));
    await eventually(name, () => closeCode() !== undefined);
    assert.equal(closeCode(), 1002, name);
    assert.ok(
      !got.some((d) => typeof d !== "string" && new TextDecoder().decode(d) === "after"),
      name,
    );
    await eventually(`${name}: the end of writing`, () => pipe.writeClosed);
    assert.equal(state.closed, 0, `${name}: waits for the client's end`);
    pipe.push(null);
    await eventually(`${name}: ended`, () => state.closed === 1 && state.ended === 1);
  }
});

test("FramedWebSocket refuses an unmasked frame at its second byte, not waiting for more", async () => {
  const { pipe, closeCode } = framed();
  pipe.push(new Uint8Array([0x82, 0x01])); // a 1-byte binary frame, unmasked, its payload not sent
  await eventually("1002", () => closeCode() !== undefined);
  assert.equal(closeCode(), 1002);
});

test("FramedWebSocket echoes a client's close, then ends with the connection", async () => {
  const { pipe, socket, state, closeCode } = framed();
  pipe.push(clientFrame(0x8, concat(new Uint8Array([0x0f, 0xa0]), text("bye")))); // 4000
  await eventually("the echo", () => closeCode() !== undefined);
  assert.equal(closeCode(), 4000);
  socket.send(text("too late"));
  await settle();
  assert.equal(pipe.frames(7).length, 1, "nothing is sent after the close");
  pipe.push(null);
  await eventually("ended", () => state.closed === 1);
  assert.equal(state.ended, 1);
});

test("FramedWebSocket passes a text message on as a string, and refuses bad or long text", async () => {
  {
    const { pipe, got } = framed();
    pipe.push(concat(clientFrame(0x1, text("hé"), { fin: false }), clientFrame(0x0, text("llo"))));
    await eventually("the text", () => got.length === 1);
    assert.deepEqual(got, ["héllo"]);
  }
  {
    const { pipe, closeCode } = framed();
    pipe.push(clientFrame(0x1, new Uint8Array([0xc3, 0x28])));
    await eventually("1007", () => closeCode() !== undefined);
    assert.equal(closeCode(), 1007);
  }
  {
    const { pipe, closeCode, got } = framed();
    pipe.push(clientFrame(0x1, new Uint8Array(65 * 1024).fill(0x61)));
    await eventually("1009", () => closeCode() !== undefined);
    assert.equal(closeCode(), 1009);
    assert.deepEqual(got, []);
  }
});

test("FramedWebSocket stops answering pings of a client that does not read past 1 MiB", async () => {
  const { pipe, socket, frames } = framed();
  let release!: () => void;
  pipe.stalled = new Promise((resolve) => release = resolve);
  socket.send(new Uint8Array(10)); // the write that stalls
  const ping = clientFrame(0x9, new Uint8Array(125).fill(1));
  const pings = 20_000; // 2.6 MB of pongs, were each answered
  for (let i = 0; i < pings; i += 1000) {
    pipe.push(concat(...Array.from({ length: 1000 }, () => ping)));
  }
  await eventually("every ping read", () => pipe.drained);
  for (let i = 0; i < 5; i++) await settle();
  const held = socket.bufferedAmount;
  assert.ok(held <= 1024 * 1024 + 200, `holds ${held} bytes`);
  pipe.stalled = null;
  release();
  await eventually("written", () => socket.bufferedAmount === 0);
  const pongs = frames().filter((f) => f.opcode === 0xa).length;
  assert.ok(pongs < pings, `${pongs} pongs for ${pings} pings`);
});

test("FramedWebSocket reads nothing while paused, and reads on after resume", async () => {
  const { pipe, socket, got } = framed();
  pipe.push(clientFrame(0x2, text("one")));
  await eventually("one", () => got.length === 1);
  socket.pause();
  pipe.push(clientFrame(0x2, text("two")));
  // The read under way when it paused may complete; none after it starts.
  await eventually("the read under way", () => got.length >= 1);
  await settle();
  const reads = pipe.reads;
  pipe.push(clientFrame(0x2, text("three")));
  for (let i = 0; i < 5; i++) await settle();
  assert.equal(pipe.reads, reads, "no read while paused");
  socket.resume();
  await eventually("all three", () => got.length === 3);
});

test("FramedWebSocket pings a silent client and drops it when the ping goes unanswered", async () => {
  const { state, frames } = framed(undefined, 20);
  await eventually("a ping", () => frames().some((f) => f.opcode === 0x9), 10_000);
  await eventually("dropped", () => state.closed === 1, 10_000);
  assert.equal(state.ended, 1);
});

test("FramedWebSocket keeps a client that answers its pings", async () => {
  const { pipe, state, frames } = framed(undefined, 20);
  // The client answers each ping as it is written, well before the next period.
  pipe.onWrite = (bytes) => {
    if ((bytes[0] & 0x0f) === 0x9) pipe.push(clientFrame(0xa, new Uint8Array(0)));
  };
  await eventually("five pings", () => frames().filter((f) => f.opcode === 0x9).length >= 5);
  assert.equal(state.closed, 0);
  pipe.push(null);
  await eventually("ended", () => state.closed === 1);
});

// ---------------------------------------------------------------------------------------------
// Through the real gateway

/** A raw WebSocket client: the handshake and frames by hand. */
class RawClient {
  readonly socket: net.Socket;
  #buffer: Uint8Array = new Uint8Array(0);
  ended = false;
  #notify: (() => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (data: Uint8Array) => {
      this.#buffer = concat(this.#buffer, new Uint8Array(data));
      this.#notify?.();
    });
    socket.on("close", () => {
      this.ended = true;
      this.#notify?.();
    });
    socket.on("error", () => {});
  }

  static async open(port: number): Promise<RawClient> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Everything received, once `done` says it is enough (or the connection ended). */
  async until(done: (bytes: Uint8Array) => boolean, what: string): Promise<Uint8Array> {
    await within(
      (async () => {
        while (!done(this.#buffer) && !this.ended) {
          await new Promise<void>((r) => this.#notify = r);
        }
      })(),
      20_000,
      what,
    );
    return this.#buffer;
  }

  /**
   * The response head and the frames after it, once the connection ended. A close frame is
   * answered with one, as a client does (ws waits for it before it ends the connection).
   */
  async response(): Promise<{ head: string; frames: { opcode: number; payload: Uint8Array }[] }> {
    const closeOf = (bytes: Uint8Array) => {
      const text = new TextDecoder("latin1").decode(bytes);
      if (!text.startsWith("HTTP/1.1 101") || !text.includes("\r\n\r\n")) return undefined;
      try {
        return readFrames(bytes.subarray(text.indexOf("\r\n\r\n") + 4))
          .find((f) => f.opcode === 0x8);
      } catch {
        return undefined; // a frame not complete yet
      }
    };
    const seen = await this.until((b) => closeOf(b) !== undefined, "a close frame or the end");
    const close = closeOf(seen);
    if (close !== undefined && !this.ended) {
      this.write(clientFrame(0x8, close.payload.subarray(0, 2)));
      this.socket.end();
    }
    const bytes = await this.until(() => false, "the connection's end");
    const text = new TextDecoder("latin1").decode(bytes);
    const end = text.indexOf("\r\n\r\n") + 4;
    const head = text.slice(0, end);
    return { head, frames: head.startsWith("HTTP/1.1 101") ? readFrames(bytes.subarray(end)) : [] };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The gateway's answer to `bytes` sent at once, up to `until` or the connection's end. */
async function exchange(
  gateway: RunningGateway,
  bytes: Uint8Array,
  until: (bytes: Uint8Array) => boolean,
): Promise<Uint8Array> {
  const client = await RawClient.open(gateway.port);
  try {
    client.write(bytes);
    return await client.until(until, "the gateway's answer");
  } finally {
    client.destroy();
  }
}

const upgradeTo = (port: number) => text(CLEAN.replace("127.0.0.1:5432", `127.0.0.1:${port}`));

/** The frames after a 101 head in `bytes` (which must hold a complete frame or more). */
function framesAfterHead(bytes: Uint8Array): { opcode: number; payload: Uint8Array }[] {
  const text = new TextDecoder("latin1").decode(bytes);
  assert.match(text, /^HTTP\/1\.1 101 /);
  return readFrames(bytes.subarray(text.indexOf("\r\n\r\n") + 4));
}

/** Whether `bytes` holds a response head and at least `n` whole frames after it. */
function hasFrames(n: number) {
  return (bytes: Uint8Array) => {
    const text = new TextDecoder("latin1").decode(bytes);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return false;
    try {
      return readFrames(bytes.subarray(end + 4)).length >= n;
    } catch {
      return false;
    }
  };
}

async function withGateway(
  options: { headerTimeout?: number },
  body: (gateway: RunningGateway) => Promise<void>,
): Promise<void> {
  // The SSLRequest the tests send is answered before any server is reached.
  const gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: "127.0.0.1:5432",
    ...options,
  });
  try {
    await body(gateway);
  } finally {
    await gateway.close();
  }
}

test(
  "the gateway's WebSocket serves frames sent with the upgrade request, split and fragmented",
  T,
  async () => {
    await withGateway({}, async (gateway) => {
      const bytes = await exchange(
        gateway,
        concat(
          upgradeTo(5432),
          clientFrame(0x2, SSL_REQUEST.subarray(0, 3), { fin: false }),
          clientFrame(0x9, text("p")),
          clientFrame(0x0, SSL_REQUEST.subarray(3)),
        ),
        hasFrames(2),
      );
      const frames = framesAfterHead(bytes);
      assert.deepEqual(frames.slice(0, 2), [
        { opcode: 0xa, payload: text("p") },
        { opcode: 0x2, payload: N },
      ]);
    });
  },
);

test("the gateway's WebSocket closes with 1002 on a breach, and with 1003 on text", T, async () => {
  await withGateway({}, async (gateway) => {
    const cases: [string, Uint8Array, number][] = [
      ["an unmasked frame", clientFrame(0x2, SSL_REQUEST, { masked: false }), 1002],
      ["an extension bit", clientFrame(0x2, SSL_REQUEST, { rsv: 4 }), 1002],
      ["a reserved opcode", clientFrame(0x3, SSL_REQUEST), 1002],
      ["a long ping", clientFrame(0x9, new Uint8Array(200)), 1002],
      ["a text frame", clientFrame(0x1, text("select 1")), 1003],
    ];
    for (const [name, frameBytes, code] of cases) {
      const client = await RawClient.open(gateway.port);
      try {
        client.write(concat(upgradeTo(5432), frameBytes));
        const { head, frames } = await client.response();
        assert.match(head, /^HTTP\/1\.1 101 /, name);
        const close = frames.find((f) => f.opcode === 0x8);
        assert.ok(close !== undefined, `${name}: a close frame`);
        assert.equal(close.payload[0] << 8 | close.payload[1], code, name);
        assert.ok(!frames.some((f) => f.opcode === 0x2), `${name}: nothing relayed`);
      } finally {
        client.destroy();
      }
    }
    await eventually("the sessions are over", () => gateway.sessions === 0);
  });
});

test("the gateway's WebSocket answers a client's close and ends the connection", T, async () => {
  await withGateway({}, async (gateway) => {
    const client = await RawClient.open(gateway.port);
    try {
      client.write(concat(upgradeTo(5432), clientFrame(0x8, new Uint8Array([0x03, 0xe8]))));
      const { frames } = await client.response();
      const close = frames.find((f) => f.opcode === 0x8);
      assert.ok(close !== undefined);
      assert.equal(close.payload[0] << 8 | close.payload[1], 1000);
    } finally {
      client.destroy();
    }
    await eventually("the session is over", () => gateway.sessions === 0);
  });
});

test(
  "the gateway refuses an upgrade to an address beyond the allowlist with 400 and closes",
  T,
  async () => {
    await withGateway({}, async (gateway) => {
      const client = await RawClient.open(gateway.port);
      try {
        client.write(text(CLEAN.replace("127.0.0.1:5432", "10.1.2.3:5432")));
        const { head } = await client.response();
        assert.match(head, /^HTTP\/1\.1 400 /);
        assert.match(head, /\r\nconnection: close\r\n/i);
      } finally {
        client.destroy();
      }
    });
  },
);

test(
  "on Deno the front leaves an upgrade it does not read as clean to Deno.serve, whose answer " +
    "is the same as without the front",
  { ...T, skip: !isDeno },
  async () => {
    const odd: Record<string, string> = {
      "version 8": CLEAN.replace("Version: 13", "Version: 8"),
      "no key": CLEAN.replace(`Sec-WebSocket-Key: ${KEY}\r\n`, ""),
      "bare LF line ends": CLEAN.replaceAll("\r\n", "\n"),
      "a header repeated": CLEAN.replace(
        "Host: gw\r\n",
        `Host: gw\r\nSec-WebSocket-Key: ${KEY}\r\n`,
      ),
      "a refused address, not clean": CLEAN.replace("127.0.0.1:5432", "10.1.2.3:5432")
        .replaceAll("\r\n", "\n"),
    };
    const statusOf = async (gateway: RunningGateway, head: string) => {
      const bytes = await exchange(gateway, text(head), (b) => {
        const t = new TextDecoder("latin1").decode(b);
        return /\r?\n\r?\n/.test(t);
      });
      return new TextDecoder("latin1").decode(bytes).split("\r\n")[0];
    };
    const alone: Record<string, string> = {};
    await withGateway({ headerTimeout: 0 }, async (gateway) => {
      for (const [name, head] of Object.entries(odd)) alone[name] = await statusOf(gateway, head);
    });
    await withGateway({}, async (gateway) => {
      for (const [name, head] of Object.entries(odd)) {
        assert.equal(await statusOf(gateway, head), alone[name], name);
      }
    });
  },
);

test(
  "the gateway serves wss:// with TLS ended on its own listener, login, queries and close",
  T,
  async (t) => {
    const server = await getServer();
    if (server.caFile === undefined) return t.skip("no certificate (TEST_DATABASE_URL)");
    const dir = dirname(server.caFile);
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `127.0.0.1:${server.port}`,
      tls: {
        cert: readFileSync(join(dir, "server.crt"), "utf8"),
        key: readFileSync(join(dir, "server.key"), "utf8"),
      },
    });
    try {
      const ca = readFileSync(server.caFile, "utf8");
      // The certificate is for localhost; the ws package takes the test CA.
      class Trusting extends Ws {
        constructor(url: string) {
          super(url, { ca });
        }
      }
      const transport = websocketTransport({
        proxy: `wss://localhost:${gateway.port}/v2`,
        WebSocket: Trusting,
      });
      const conn = await connect(server.url("scram", { sslmode: "disable" }), { transport });
      try {
        for (let i = 0; i < 20; i++) {
          const { rows } = await conn.query<{ n: number; b: string }>(
            "select $1::int as n, repeat('b', 70000) as b",
            [i],
          );
          assert.equal(rows[0].n, i);
          assert.equal(rows[0].b.length, 70000);
        }
      } finally {
        await conn.close();
      }
      await eventually("the session is over", () => gateway.sessions === 0);
    } finally {
      await gateway.close();
    }
  },
);
