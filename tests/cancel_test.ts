// A CancelRequest can be lost: one that reaches the backend before it has begun the statement
// (a queued statement whose turn has just come, on a busy server) does nothing. Here a proxy
// in front of the real server swallows the first one, as if it had come too early, and the
// connection must send another.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect as tcpConnect, createServer, type Socket } from "node:net";
import { connect } from "../mod.ts";
import { getServer } from "./_server.ts";
import { delay } from "./_helpers.ts";

const CANCEL_CODE = 80877102;

/** A TCP proxy to `port` that closes the first `drop` CancelRequest connections unread. */
async function cancelDroppingProxy(port: number, drop: number) {
  const sockets = new Set<Socket>();
  let dropped = 0;
  const server = createServer((client) => {
    sockets.add(client);
    client.once("data", (first) => {
      const isCancel = first.length >= 8 && first.readInt32BE(4) === CANCEL_CODE;
      if (isCancel && dropped < drop) {
        dropped++;
        client.destroy(); // taken, as far as the client can tell; the backend never hears of it
        return;
      }
      const upstream = tcpConnect(port, "127.0.0.1");
      sockets.add(upstream);
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      upstream.on("close", () => sockets.delete(upstream));
    });
    client.on("close", () => sockets.delete(client));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    get dropped() {
      return dropped;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test("a cancel that was lost is sent again while the statement runs on", {
  timeout: 30_000,
}, async () => {
  const server = await getServer();
  const proxy = await cancelDroppingProxy(server.port, 1);
  try {
    const url = server.url("scram", { sslmode: "disable" }).replace(
      `:${server.port}/`,
      `:${proxy.port}/`,
    );
    await using conn = await connect(url);
    const controller = new AbortController();
    const reason = new Error("enough");
    // Without a second cancel this runs for 60 s, past the test's timeout.
    const slow = conn.query("select pg_sleep(60)", [], { signal: controller.signal });
    const rejected = assert.rejects(slow, (error) => error === reason);
    await delay(100); // under way on the server
    controller.abort(reason);
    await rejected;
    assert.deepEqual((await conn.query("select 2 as two")).rows, [{ two: 2 }]);
    assert.equal(proxy.dropped, 1);
  } finally {
    await proxy.close();
  }
});
