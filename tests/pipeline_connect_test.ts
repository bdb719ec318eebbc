// Pipelined connect (src/connect.ts, src/_auth.ts, Connection.start): the cleartext password
// goes out right behind the StartupMessage, and a server that wants something else gets a
// second, ordinary connect. Against fake servers (node:net) that record each packet, over
// every transport of tests/_transports.ts `connectionTransports` (the TCP ones with the
// option turned on, the WebSocket one through websockify by default).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { inspect } from "node:util";
import { connect, ConnectionError, type ConnectOptions, PostgresError } from "../mod.ts";
import { connectionTransports } from "./_transports.ts";
import {
  concat,
  cstr,
  delay,
  int16,
  int32,
  message,
  rejection,
  SocketBytes,
  text,
} from "./_helpers.ts";

const T = { timeout: 20_000 };
const PASSWORD = "fake_pw";

// ---------------------------------------------------------------------------------------------
// Bytes

const decoder = new TextDecoder();

const authOk = message("R", int32(0));
const askCleartext = message("R", int32(3));
const askMd5 = message("R", int32(5), new Uint8Array([1, 2, 3, 4]));
const askSasl = message("R", int32(10), cstr("SCRAM-SHA-256"), new Uint8Array([0]));
const SESSION_START = concat(
  message("S", cstr("server_version"), cstr("15.0 (fake)")),
  message("K", int32(4242), int32(77)),
  message("Z", text("I")),
);
/** RowDescription of one text column `a`. */
const rowDescription = message(
  "T",
  int16(1),
  cstr("a"),
  int32(0),
  int16(0),
  int32(25),
  int16(-1),
  int32(-1),
  int16(0),
);

function fatal(code: string, why: string): Uint8Array {
  return message("E", text(`SFATAL\0VFATAL\0C${code}\0M${why}\0\0`));
}

// ---------------------------------------------------------------------------------------------
// A fake server that keeps what each client sent, packet by packet

interface Frontend {
  /** `startup` for the StartupMessage, else the message's type letter. */
  type: string;
  body: Uint8Array;
}

/** One client connection: its packets as they arrived, and its messages read one by one. */
class Peer {
  readonly packets: Uint8Array[];
  readonly closed: Promise<void>;
  readonly #bytes: SocketBytes;
  #startupRead = false;

  constructor(readonly socket: Socket) {
    this.#bytes = new SocketBytes(socket);
    this.packets = this.#bytes.packets;
    this.closed = this.#bytes.closed;
  }

  #read(n: number): Promise<Uint8Array> {
    return this.#bytes.read(n);
  }

  /** The next message: the StartupMessage first, then typed ones. */
  async next(): Promise<Frontend> {
    if (!this.#startupRead) {
      this.#startupRead = true;
      const length = new DataView((await this.#read(4)).buffer).getInt32(0);
      return { type: "startup", body: await this.#read(length - 4) };
    }
    const head = await this.#read(5);
    const length = new DataView(head.buffer).getInt32(1);
    return { type: String.fromCharCode(head[0]), body: await this.#read(length - 4) };
  }

  /** The next message, which must be of `type`. */
  async expect(type: string): Promise<Uint8Array> {
    const got = await this.next();
    assert.equal(got.type, type, `expected '${type}', got '${got.type}'`);
    return got.body;
  }

  /** Resolves once the client hung up, failing if it sent anything more first. */
  async hungUp(): Promise<void> {
    await this.closed;
    assert.equal(this.#bytes.unread, 0, `the client sent ${this.#bytes.unread} more bytes`);
  }

  write(...parts: Uint8Array[]): void {
    if (!this.socket.destroyed) this.socket.write(concat(...parts));
  }
}

interface FakeServer extends AsyncDisposable {
  /** Every client connection so far. */
  peers: Peer[];
  url(user?: string): string;
}

/** Runs `script` for the n-th client connection (0-based). */
async function fakeServer(script: (peer: Peer, n: number) => Promise<void>): Promise<FakeServer> {
  const peers: Peer[] = [];
  const server: Server = createServer((socket) => {
    const peer = new Peer(socket);
    peers.push(peer);
    script(peer, peers.length - 1).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    peers,
    url: (user = "fake") => `postgres://${user}:${PASSWORD}@127.0.0.1:${port}/db?sslmode=disable`,
    async [Symbol.asyncDispose]() {
      for (const p of peers) p.socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The password of a PasswordMessage body. */
function passwordOf(body: Uint8Array): string {
  return decoder.decode(body.subarray(0, body.length - 1));
}

/** Ends the startup and answers one query with a row `{ a: "x" }`. */
async function sessionAndOneQuery(peer: Peer): Promise<void> {
  peer.write(authOk, SESSION_START);
  // The default statement cache prepares the statement: Parse, Bind, Describe, Execute, Sync.
  for (const type of "PBDES") await peer.expect(type);
  const row = message("D", int16(1), int32(1), text("x"));
  peer.write(
    message("1", new Uint8Array(0)),
    message("2", new Uint8Array(0)),
    rowDescription,
    row,
    message("C", cstr("SELECT 1")),
    message("Z", text("I")),
  );
}

/** Plays SCRAM-SHA-256 for `PASSWORD` from the SASL request on, checking the client's proof. */
async function scram(peer: Peer): Promise<void> {
  peer.write(askSasl);
  const initial = await peer.expect("p");
  const mechanismEnd = initial.indexOf(0);
  assert.equal(decoder.decode(initial.subarray(0, mechanismEnd)), "SCRAM-SHA-256");
  const clientFirstBare = decoder.decode(initial.subarray(mechanismEnd + 5)).slice(3);
  const nonce = clientFirstBare.split(",r=")[1] + randomBytes(12).toString("base64");
  const salt = randomBytes(16);
  const serverFirst = `r=${nonce},s=${salt.toString("base64")},i=4096`;
  peer.write(message("R", int32(11), text(serverFirst)));
  const clientFinal = decoder.decode(await peer.expect("p"));
  const withoutProof = clientFinal.slice(0, clientFinal.indexOf(",p="));
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  const salted = pbkdf2Sync(PASSWORD, salt, 4096, 32, "sha256");
  const hmac = (key: Uint8Array, data: string) => createHmac("sha256", key).update(data).digest();
  const clientKey = hmac(salted, "Client Key");
  const storedKey = createHash("sha256").update(clientKey).digest();
  const proof = clientKey.map((b, i) => b ^ hmac(storedKey, authMessage)[i]);
  assert.equal(clientFinal.slice(withoutProof.length + 3), btoa(String.fromCharCode(...proof)));
  const signature = hmac(hmac(salted, "Server Key"), authMessage);
  peer.write(message("R", int32(12), text(`v=${signature.toString("base64")}`)));
}

/** Whether a packet holds the StartupMessage followed by exactly one PasswordMessage. */
function startupAndPassword(packet: Uint8Array): string | undefined {
  const startupLength = new DataView(packet.buffer, packet.byteOffset).getInt32(0);
  const rest = packet.subarray(startupLength);
  if (rest.length === 0 || rest[0] !== 0x70) return undefined;
  const length = new DataView(rest.buffer, rest.byteOffset).getInt32(1);
  assert.equal(rest.length, 1 + length, "more than the PasswordMessage behind the startup");
  return passwordOf(rest.subarray(5));
}

// ---------------------------------------------------------------------------------------------

// Not through the gateway: it ends authentication itself, so the fake servers would see its
// login, not the client's bytes that these tests inspect.
for (const { transport, tcp } of connectionTransports.filter((t) => !t.gateway)) {
  const name = (s: string) => `${s} [${transport.name}]`;
  /** Pipelining on: the option on TCP, the transport's own default behind the WebSocket. */
  const PIPELINE: ConnectOptions = tcp ? { transport, pipelineConnect: "password" } : { transport };

  test(
    name("connect sends the StartupMessage and the cleartext password in one packet"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.expect("startup");
        assert.equal(passwordOf(await peer.expect("p")), PASSWORD);
        peer.write(askCleartext);
        await sessionAndOneQuery(peer);
      });
      await using conn = await connect(fake.url(), PIPELINE);
      assert.deepEqual((await conn.query("select 'x' as a")).rows, [{ a: "x" }]);
      assert.equal(fake.peers.length, 1);
      // Nothing was sent in answer to AuthenticationCleartextPassword: the query came next.
      assert.equal(startupAndPassword(fake.peers[0].packets[0]), PASSWORD);
    },
  );

  test(
    name("connect calls a password function once and sends its password ahead"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.expect("startup");
        assert.equal(passwordOf(await peer.expect("p")), "rotated");
        peer.write(askCleartext);
        await sessionAndOneQuery(peer);
      });
      let calls = 0;
      const password = async () => {
        calls++;
        await delay(10);
        return "rotated";
      };
      await using conn = await connect(fake.url(), { ...PIPELINE, password });
      assert.equal(calls, 1);
      assert.equal(startupAndPassword(fake.peers[0].packets[0]), "rotated");
      assert.equal(conn.closed, false);
    },
  );

  for (
    const [method, ask, usual] of [
      ["SCRAM", askSasl, scram],
      ["MD5", askMd5, async (peer: Peer) => {
        peer.write(askMd5);
        assert.match(decoder.decode(await peer.expect("p")), /^md5[0-9a-f]{32}\0$/);
      }],
      ["no password (trust)", authOk, async () => {}],
    ] as const
  ) {
    test(
      name(`connect falls back to the usual exchange when the server asks for ${method}`),
      T,
      async () => {
        let calls = 0;
        await using fake = await fakeServer(async (peer, n) => {
          await peer.expect("startup");
          if (n === 0) {
            await peer.expect("p"); // sent ahead: the server would take it for its own method
            peer.write(ask);
            return await peer.hungUp(); // and the client sends nothing more
          }
          await usual(peer);
          await sessionAndOneQuery(peer);
        });
        const password = () => {
          calls++;
          return PASSWORD;
        };
        const user = `fallback_${method.replace(/\W/g, "")}`;
        await using conn = await connect(fake.url(user), { ...PIPELINE, password });
        assert.deepEqual((await conn.query("select 'x' as a")).rows, [{ a: "x" }]);
        assert.equal(fake.peers.length, 2);
        await fake.peers[0].hungUp(); // having sent nothing after the password
        // The second connection waited to be asked.
        assert.equal(startupAndPassword(fake.peers[1].packets[0]), undefined);
        assert.equal(calls, 1, "the password function was called once for the connect");

        // The transport remembers: the next connect there does not send the password ahead.
        await using again = await connect(fake.url(user), PIPELINE);
        assert.equal(fake.peers.length, 3);
        assert.equal(startupAndPassword(fake.peers[2].packets[0]), undefined);
        assert.equal(again.closed, false);
      },
    );
  }

  test(
    name("connect reports a wrong password sent ahead as 28P01, without a second attempt"),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        await peer.expect("startup");
        await peer.expect("p");
        peer.write(askCleartext, fatal("28P01", 'password authentication failed for user "fake"'));
        peer.socket.end();
      });
      const error = await rejection(connect(fake.url(), PIPELINE));
      assert.ok(error instanceof PostgresError, inspect(error));
      assert.equal(error.code, "28P01");
      assert.equal(fake.peers.length, 1);
    },
  );

  test(name("connect sends nothing ahead when there is no password"), T, async () => {
    await using fake = await fakeServer(async (peer) => {
      await peer.expect("startup");
      await sessionAndOneQuery(peer);
    });
    const url = fake.url().replace(`:${PASSWORD}@`, "@");
    await using conn = await connect(url, PIPELINE);
    assert.deepEqual((await conn.query("select 'x' as a")).rows, [{ a: "x" }]);
    assert.equal(startupAndPassword(fake.peers[0].packets[0]), undefined);
  });

  test(
    name(
      tcp
        ? "connect waits to be asked for the password by default"
        : "connect waits to be asked for the password with pipelineConnect false",
    ),
    T,
    async () => {
      await using fake = await fakeServer(async (peer) => {
        assert.equal((await peer.next()).type, "startup");
        peer.write(askCleartext);
        assert.equal(passwordOf(await peer.expect("p")), PASSWORD);
        await sessionAndOneQuery(peer);
      });
      const options: ConnectOptions = tcp ? { transport } : { transport, pipelineConnect: false };
      await using conn = await connect(fake.url(), options);
      assert.deepEqual((await conn.query("select 'x' as a")).rows, [{ a: "x" }]);
      assert.equal(startupAndPassword(fake.peers[0].packets[0]), undefined);
      assert.equal(fake.peers.length, 1);
    },
  );

  test(
    name("connect fails with the server's error when it refuses before any authentication"),
    T,
    async () => {
      // pg_hba.conf `reject`: no fallback, the refusal is not about the password sent ahead.
      await using fake = await fakeServer(async (peer) => {
        await peer.expect("startup");
        peer.write(fatal("28000", 'no pg_hba.conf entry for host "127.0.0.1"'));
        peer.socket.end();
      });
      const error = await rejection(connect(fake.url(), PIPELINE));
      assert.ok(error instanceof PostgresError, inspect(error));
      assert.equal(error.code, "28000");
      assert.equal(fake.peers.length, 1);
    },
  );

  test(
    name("connect gives up after one fallback when the second server asks differently"),
    T,
    async () => {
      // A server that would take the password ahead and then, on the ordinary attempt, asks
      // for a method edgepool lacks: the second attempt's error is reported, no third.
      await using fake = await fakeServer(async (peer, n) => {
        await peer.expect("startup");
        if (n === 0) {
          await peer.expect("p");
          peer.write(askSasl);
          return await peer.hungUp();
        }
        peer.write(message("R", int32(7))); // GSSAPI
        await peer.closed;
      });
      const error = await rejection(connect(fake.url("gss"), PIPELINE));
      assert.ok(error instanceof ConnectionError, inspect(error));
      assert.equal(error.code, "AUTH_FAILED");
      assert.match(error.message, /GSSAPI/);
      assert.equal(fake.peers.length, 2);
    },
  );
}
