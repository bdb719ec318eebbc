// pipelineConnect "query": on a server known to take a password sent ahead, connect() resolves
// once StartupMessage and password are written, and the first query goes out in the same flight
// — a cold query costs one round trip.

import assert from "node:assert/strict";
import * as net from "node:net";
import { test } from "node:test";
import { connect, PostgresError } from "../mod.ts";
import { gatewayWebSocket } from "./_transports.ts";
import { nodeTcp } from "../transports/node.ts";
import { getServer } from "./_server.ts";
import { message } from "./_helpers.ts";

const T = { timeout: 20_000 };

const int32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n);
  return b;
};
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
};
const text = (s: string) => new TextEncoder().encode(s + "\0");

const LOGIN = concat(
  message("R", int32(3)), // AuthenticationCleartextPassword (already answered: sent ahead)
  message("R", int32(0)),
  message("K", concat(int32(7), int32(9))),
  message("Z", new TextEncoder().encode("I")),
);
/** The answer to `select 1 as n`, prepared (the default statement cache): Parse to Sync. */
const ANSWER = concat(
  message("1", new Uint8Array(0)),
  message("2", new Uint8Array(0)),
  message(
    "T",
    concat(
      new Uint8Array([0, 1]),
      text("n"),
      int32(0),
      new Uint8Array([0, 0]),
      int32(23),
      new Uint8Array([0, 4]),
      int32(-1),
      new Uint8Array([0, 0]),
    ),
  ),
  message("D", concat(new Uint8Array([0, 1]), int32(1), new TextEncoder().encode("1"))),
  message("C", text("SELECT 1")),
  message("Z", new TextEncoder().encode("I")),
);

/**
 * A server asking for a cleartext password. Session 1 answers as usual. Later sessions answer
 * nothing until the first query has arrived: a client that waits for ReadyForQuery before
 * sending its query would wait forever.
 */
async function strictServer() {
  const sessions: { queryArrivedBeforeAnswer: boolean }[] = [];
  const server = net.createServer((socket) => {
    const session = { queryArrivedBeforeAnswer: false };
    const n = sessions.push(session);
    let buffer = new Uint8Array(0);
    let answered = false;
    socket.on("data", (chunk: Uint8Array) => {
      buffer = concat(buffer, chunk);
      // Skip the StartupMessage (untyped), then look at the typed messages behind it.
      if (buffer.length < 4) return;
      const startupLength = new DataView(buffer.buffer, buffer.byteOffset).getInt32(0);
      let at = startupLength;
      const types: string[] = [];
      while (at + 5 <= buffer.length) {
        const length = new DataView(buffer.buffer, buffer.byteOffset + at + 1).getInt32(0);
        if (at + 1 + length > buffer.length) break;
        types.push(String.fromCharCode(buffer[at]));
        at += 1 + length;
      }
      if (answered) {
        return;
      }
      const hasPassword = types.includes("p");
      const hasQuery = types.includes("S"); // the query's Sync
      if (!hasPassword) return;
      if (n === 1 || hasQuery) {
        answered = true;
        session.queryArrivedBeforeAnswer = hasQuery;
        socket.write(hasQuery ? concat(LOGIN, ANSWER) : LOGIN);
        if (!hasQuery) {
          // Session 1: the query comes after ReadyForQuery.
          socket.on("data", () => socket.write(ANSWER));
        }
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `postgres://app:secret@127.0.0.1:${port}/app?sslmode=disable`,
    sessions,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test("pipelineConnect query sends the first query before the server has answered", T, async () => {
  const server = await strictServer();
  try {
    // Session 1 teaches the transport that this server takes a password sent ahead.
    const first = await connect(server.url, { transport: nodeTcp, pipelineConnect: "query" });
    assert.deepEqual((await first.query("select 1 as n")).rows, [{ n: 1 }]);
    first.destroy();
    // Session 2: connect resolves at once; the query rides in the same flight.
    const second = await connect(server.url, { transport: nodeTcp, pipelineConnect: "query" });
    assert.deepEqual((await second.query("select 1 as n")).rows, [{ n: 1 }]);
    assert.equal(server.sessions[1].queryArrivedBeforeAnswer, true);
    await second.whenReady();
    assert.equal(second.processId, 7);
    second.destroy();
  } finally {
    await server.close();
  }
});

test(
  "pipelineConnect query through the gateway: queries work, a wrong password reaches the first query",
  T,
  async () => {
    const server = await getServer();
    const url = server.url("scram", { sslmode: "disable" });
    const options = { transport: gatewayWebSocket, pipelineConnect: "query" as const };
    for (let i = 0; i < 3; i++) {
      await using conn = await connect(url, options);
      assert.deepEqual((await conn.query("select $1::int as i", [i])).rows, [{ i }]);
      await conn.whenReady();
      assert.ok(conn.processId > 0);
    }
    // Known by now: the next connect starts early (it resolves), and the login's failure
    // reaches the first query instead.
    const conn = await connect(url.replace("scram_pw", "nope"), options);
    const wrong = await conn.query("select 1").then(() => undefined, (e: unknown) => e);
    assert.ok(wrong instanceof PostgresError, String(wrong));
    assert.equal(conn.closed, true);
    assert.equal(wrong.code, "28P01");
  },
);
