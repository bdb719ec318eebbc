// The fault-injecting proxy of tests/_faults.ts on its own, between plain node:net sockets and
// an echo server, so that the fault tests can trust what it does: forward and count, cut with
// a FIN, reset, half-close, blackhole, delay, refuse and accept again, turn new links away,
// and close everything.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { type FaultProxy, startFaultProxy } from "./_faults.ts";
import { HOST } from "./_net.ts";

const T = { timeout: 20_000 };

/** What one end of a connection saw. */
class End {
  text = "";
  ended = false;
  closed = false;
  error: string | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      this.text += text;
      this.#wake();
    });
    socket.on("end", () => {
      this.ended = true;
      this.#wake();
    });
    socket.on("error", (e: Error & { code?: string }) => {
      this.error = e.code ?? e.message;
      this.#wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.#wake();
    });
  }

  /**
   * Resolves once `done()` holds (rechecked on every event of this socket, and every 10 ms for
   * what it does not see, such as the proxy's counters), failing after 5 s.
   */
  until(what: string, done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting until ${what}: ${JSON.stringify(this.#state())}`));
      }, 5_000);
      const poll = setInterval(() => check(), 10);
      const finish = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.#waiters.delete(check);
      };
      const check = () => {
        if (!done()) return;
        finish();
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  #state() {
    return { text: this.text, ended: this.ended, closed: this.closed, error: this.error };
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** An echo server that keeps its side of every connection for the test to look at. */
async function echoServer(
  options: { halfOpen?: boolean } = {},
): Promise<
  { server: Server; port: number; ends: End[] } & AsyncDisposable
> {
  const ends: End[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const end = new End(socket);
    // Echo upper-cased, so that an echo is never mistaken for the client's own bytes.
    socket.on("data", (text: string) => {
      if (!socket.destroyed && socket.writable) socket.write(text.toUpperCase());
    });
    // Unless told to stay half open, a FIN from the client ends the server's side too.
    if (!options.halfOpen) socket.on("end", () => socket.end());
    ends.push(end);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    ends,
    async [Symbol.asyncDispose]() {
      for (const end of ends) end.socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function client(proxy: FaultProxy, allowHalfOpen = false): Promise<End> {
  const socket = connect({ host: HOST, port: proxy.port, allowHalfOpen });
  const end = new End(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return end;
}

/** A client connected through `proxy`, and the echo server's end of it. */
async function pair(
  proxy: FaultProxy,
  echo: { ends: End[] },
  allowHalfOpen = false,
): Promise<{ near: End; far: End }> {
  const before = echo.ends.length;
  const near = await client(proxy, allowHalfOpen);
  near.socket.write("hi");
  await near.until("the first echo", () => near.text === "HI");
  return { near, far: echo.ends[before] };
}

function connectError(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (e: Error & { code?: string }) => resolve(e.code ?? e.message));
  });
}

test("FaultProxy forwards both ways and counts the bytes", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port } });
  const { near, far } = await pair(proxy, echo);
  near.socket.write("abc");
  await near.until("the echo", () => near.text === "HIABC");
  assert.equal(far.text, "hiabc");
  assert.equal(proxy.counts.accepted, 1);
  assert.equal(proxy.counts.linked, 1);
  assert.equal(proxy.counts.bytesToServer, 5);
  assert.equal(proxy.counts.bytesToClient, 5);
  assert.equal(proxy.links.length, 1);
  assert.equal(proxy.links[0].bytesToServer, 5);
  // A client's FIN reaches the server and the server's close reaches the client.
  near.socket.end();
  await far.until("the server sees the FIN", () => far.ended);
  await near.until("the client sees the close", () => near.closed);
  await proxy.links[0]?.closed;
  assert.equal(proxy.counts.closed, 1);
});

test("FaultProxy cut closes both sides with a FIN", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port } });
  const { near, far } = await pair(proxy, echo);
  proxy.cutAll();
  await near.until("the client sees the FIN", () => near.ended && near.closed);
  await far.until("the server sees the FIN", () => far.ended && far.closed);
  assert.equal(near.error, undefined);
  assert.equal(far.error, undefined);
  assert.equal(proxy.links.length, 0);
});

test("FaultProxy reset resets both sides", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port } });
  const { near, far } = await pair(proxy, echo);
  proxy.resetAll();
  await near.until("the client sees the reset", () => near.closed);
  await far.until("the server sees the reset", () => far.closed);
  assert.equal(near.error, "ECONNRESET");
  assert.equal(far.error, "ECONNRESET");
  assert.equal(near.ended, false);
});

test("FaultProxy halfClose ends one direction and lets the other flow", T, async () => {
  await using echo = await echoServer({ halfOpen: true });
  await using proxy = await startFaultProxy({ target: { port: echo.port } });

  const one = await pair(proxy, echo, true);
  proxy.links[0].halfClose("toClient");
  await one.near.until("the client sees the FIN", () => one.near.ended);
  one.near.socket.write("more");
  await one.far.until("the server still hears the client", () => one.far.text === "himore");
  assert.equal(one.far.ended, false);
  assert.equal(one.near.text, "HI", "nothing more reaches the client");

  const two = await pair(proxy, echo, true);
  proxy.links.at(-1)!.halfClose("toServer");
  await two.far.until("the server sees the FIN", () => two.far.ended);
  two.far.socket.write("late");
  await two.near.until("the client still hears the server", () => two.near.text === "HIlate");
  assert.equal(two.near.ended, false);
});

test("FaultProxy blackhole drops bytes both ways until it passes again", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port } });
  const { near, far } = await pair(proxy, echo);
  proxy.blackholeAll();
  near.socket.write("lost");
  far.socket.write("gone");
  // Both chunks are read and dropped (not queued): the counter says so.
  await far.until("both chunks dropped", () => proxy.counts.bytesDropped === 8);
  proxy.passAll();
  near.socket.write("x");
  await near.until("the echo after passing", () => near.text === "HIX");
  assert.equal(far.text, "hix");
  assert.equal(near.ended || far.ended, false);

  // A close on one side does not cross a blackhole: the server's socket stays open.
  proxy.blackholeAll();
  const link = proxy.links[0];
  near.socket.destroy();
  await near.until("the client closed", () => near.closed);
  far.socket.write("into the void");
  await far.until("dropped", () => proxy.counts.bytesDropped === 8 + 13);
  assert.equal(far.ended || far.closed, false);
  assert.equal(link.gone, false);
  await proxy.close();
  await far.until("the server's side closed by close()", () => far.closed);
  assert.equal(link.gone, true);
});

test("FaultProxy delay forwards every chunk, in order", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port }, mode: { delay: 20 } });
  const { near, far } = await pair(proxy, echo);
  const words = Array.from({ length: 20 }, (_, i) => `w${i};`);
  for (const word of words) near.socket.write(word);
  const all = "HI" + words.join("").toUpperCase();
  await near.until("every echo", () => near.text === all);
  assert.equal(far.text, "hi" + words.join(""));
  // Lifting the delay with chunks still queued keeps their order.
  proxy.delayAll(200);
  near.socket.write("a;");
  near.socket.write("b;");
  proxy.passAll();
  near.socket.write("c;");
  await near.until("the last echoes", () => near.text === all + "A;B;C;");
});

test("FaultProxy refuse stops listening, accept listens again on the same port", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port } });
  const { near } = await pair(proxy, echo);
  await proxy.refuse();
  assert.equal(proxy.listening, false);
  assert.equal(await connectError(proxy.port), "ECONNREFUSED");
  // Open links are not touched by refusing.
  near.socket.write("still");
  await near.until("the open link still echoes", () => near.text === "HISTILL");
  await proxy.accept();
  const again = await pair(proxy, echo);
  assert.equal(again.near.text, "HI");
  assert.equal(proxy.counts.accepted, 2);
});

test("FaultProxy turns new links away with a FIN or a reset", T, async () => {
  await using echo = await echoServer();
  await using proxy = await startFaultProxy({ target: { port: echo.port }, mode: "cut" });
  const cut = await client(proxy);
  await cut.until("closed", () => cut.closed);
  assert.equal(cut.ended, true);
  assert.equal(cut.error, undefined);
  proxy.mode = "rst";
  // The reset may come before the client's connect completes, or just after.
  const reset = new End(connect({ host: HOST, port: proxy.port }));
  await reset.until("closed", () => reset.closed);
  assert.equal(reset.error, "ECONNRESET");
  assert.equal(proxy.counts.turnedAway, 2);
  assert.equal(proxy.counts.linked, 0);
  assert.equal(echo.ends.length, 0, "nothing reached the target");
});

test("FaultProxy resets the client when the target refuses", T, async () => {
  let port: number;
  {
    await using echo = await echoServer();
    port = echo.port;
  }
  await using proxy = await startFaultProxy({ target: { port } });
  const near = await client(proxy);
  await near.until("closed", () => near.closed);
  assert.equal(near.error, "ECONNRESET");
  assert.equal(proxy.counts.targetFailed, 1);
});

test("FaultProxy close destroys every link and stops listening", T, async () => {
  await using echo = await echoServer();
  const proxy = await startFaultProxy({ target: { port: echo.port } });
  const ends = [await pair(proxy, echo), await pair(proxy, echo)];
  proxy.blackholeAll();
  await proxy.close();
  for (const { near, far } of ends) {
    await near.until("client closed", () => near.closed);
    await far.until("server closed", () => far.closed);
  }
  assert.equal(proxy.links.length, 0);
  assert.equal(proxy.counts.closed, 2);
  assert.equal(await connectError(proxy.port), "ECONNREFUSED");
  await proxy.close();
});
