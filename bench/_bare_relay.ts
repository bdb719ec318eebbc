// The least a WebSocket-to-TCP relay can be, for bench/transport_bench.ts's proxy CPU columns:
// `Deno.serve` and `Deno.upgradeWebSocket` on one side, `Deno.connect` to a fixed PostgreSQL
// on the other, bytes passed on as they come (binary frames one way, socket writes the other),
// no login, no checks, no limits. Whatever the gateway spends beyond this is the gateway's own.
//
// Usage: deno run -A bench/_bare_relay.ts HOST:PORT
// Prints `listening on http://127.0.0.1:PORT ` once it listens; runs until killed. Deno only.

const [target] = Deno.args;
const at = target?.lastIndexOf(":") ?? -1;
if (at < 0) throw new Error("usage: _bare_relay.ts HOST:PORT");
const hostname = target.slice(0, at);
const port = Number(target.slice(at + 1));

function relay(socket: WebSocket): void {
  socket.binaryType = "arraybuffer";
  const upstream = Deno.connect({ hostname, port });
  // Writes in the order the frames came: each waits for the one before.
  let writing = upstream.then((conn) => {
    conn.setNoDelay(true);
  }).catch(() => {}); // a failed connect closes the socket in onopen
  const close = () => {
    upstream.then((conn) => conn.close()).catch(() => {});
    if (socket.readyState === WebSocket.OPEN) socket.close();
  };
  socket.onmessage = (event) => {
    const bytes = new Uint8Array(event.data as ArrayBuffer);
    writing = writing.then(async () => {
      const conn = await upstream;
      for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
    }).catch(close);
  };
  socket.onclose = close;
  socket.onerror = close;
  socket.onopen = async () => {
    try {
      const conn = await upstream;
      for await (const chunk of conn.readable) socket.send(chunk);
    } catch {
      // the client or the server went away
    }
    close();
  };
}

Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`listening on http://127.0.0.1:${port} `),
}, (request) => {
  const { socket, response } = Deno.upgradeWebSocket(request);
  relay(socket);
  return response;
});
