// The gateway (gateway/mod.ts) under hostile clients, against the real PostgreSQL 15 of
// tests/_server.ts: connection-string parameters that would make it read files or connect
// elsewhere, WebSocket startup parameters, over-long and malformed requests, slow headers,
// and more sessions than it serves. Neon's own client (@neondatabase/serverless) must get
// parsed errors. On Deno the gateway runs behind its front listener (gateway/deno.ts), on
// Node on node:http.
//
// Every wait is bounded; assertions are on outcomes and counts, never on timings.

import assert from "node:assert/strict";
import * as net from "node:net";
import process from "node:process";
import { after, test } from "node:test";
import { neon, neonConfig, Pool } from "@neondatabase/serverless";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { allowlist } from "../gateway/_target.ts";
import { concat, delay, errorOf, eventually, int32 } from "./_helpers.ts";
import { getServer, passwordOf, type TestServer } from "./_server.ts";
import { isDeno } from "./_transports.ts";

const T = { timeout: 60_000 };
const MiB = 1024 * 1024;
const RUN = `${isDeno ? "deno" : "node"}_${Math.random().toString(36).slice(2, 8)}`;
/** The header timeout of the slow-client tests: short, so that they run fast. */
const HEADER_TIMEOUT = 300;

const WebSocketClass: typeof WebSocket = isDeno
  ? globalThis.WebSocket
  : (await import("ws")).WebSocket as unknown as typeof WebSocket;

const started: RunningGateway[] = [];
after(async () => {
  await Promise.all(started.map((g) => g.close()));
});

async function gatewayFor(
  server: TestServer,
  options: { maxSessions?: number; headerTimeout?: number } = {},
): Promise<RunningGateway> {
  const gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `127.0.0.1:${server.port}`,
    headerTimeout: HEADER_TIMEOUT,
    ...options,
  });
  started.push(gateway);
  return gateway;
}

let shared: Promise<{ server: TestServer; gateway: RunningGateway }> | undefined;
function env(): Promise<{ server: TestServer; gateway: RunningGateway }> {
  return shared ??= (async () => {
    const server = await getServer();
    const gateway = await gatewayFor(server);
    neonConfig.fetchEndpoint = () => `${gateway.url}/sql`;
    return { server, gateway };
  })();
}

/** A connection string for the test server, built by hand (no port unless `port`). */
function connectionString(server: TestServer, query = "", port = true): string {
  const where = port ? `127.0.0.1:${server.port}` : "127.0.0.1";
  return `postgres://scram:${passwordOf("scram")}@${where}/edgepool_test${query}`;
}

function post(
  gateway: RunningGateway,
  body: string,
  headers: Record<string, string>,
): Promise<Response> {
  return fetch(`${gateway.url}/sql`, { method: "POST", body, headers });
}

/** A raw TCP client: what it was sent so far, and whether the server closed it. */
class RawClient {
  text = "";
  readonly closed: Promise<void>;
  readonly #socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.text += new TextDecoder().decode(chunk));
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  write(data: string | Uint8Array): void {
    this.#socket.write(data);
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Resolves with whether the server closed the connection within `ms` (a bound, not a check). */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms));
    const result = await Promise.race([this.closed.then(() => true), late]);
    clearTimeout(timer);
    return result;
  }

  /** Waits until the text holds `pattern`. */
  async until(pattern: RegExp): Promise<void> {
    await eventually(`the answer matches ${pattern}`, () => pattern.test(this.text));
  }
}

function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

// ---------------------------------------------------------------------------------------------
// Connection-string parameters

const REFUSED = [
  "sslrootcert",
  "sslcert",
  "sslkey",
  "sslcrl",
  "sslpassword",
  "sslmode",
  "passfile",
  "service",
  "host",
  "port",
  "connect_timeout",
  "no_such_parameter",
];

test(
  "gateway /sql refuses file and TLS parameters by name, the same whether a file exists",
  T,
  async () => {
    const { server, gateway } = await env();
    for (const name of REFUSED) {
      const bodies: string[] = [];
      for (const path of ["/etc/passwd", "/nonexistent/edgepool"]) {
        const response = await post(gateway, '{"query":"select 1"}', {
          "Neon-Connection-String": connectionString(
            server,
            `?${name}=${encodeURIComponent(path)}`,
          ),
        });
        assert.equal(response.status, 400, name);
        bodies.push(await response.text());
      }
      assert.equal(bodies[0], bodies[1], `${name}: the answer tells whether a file exists`);
      const body = JSON.parse(bodies[0]);
      assert.ok(body.message.includes(`"${name}"`), `${name}: ${body.message}`);
      assert.equal(body.code, "42501", name);
      assert.doesNotMatch(bodies[0], /passwd|nonexistent|scram_pw/, name);
    }
    // options: only Neon's endpoint=, which the gateway reads past.
    const options = await post(gateway, '{"query":"select 1"}', {
      "Neon-Connection-String": connectionString(server, "?options=-c%20search_path%3Dx"),
    });
    assert.equal(options.status, 400);
    assert.match((await options.json()).message, /"options"/);
    const endpoint = await post(gateway, '{"query":"select 1 as one"}', {
      "Neon-Connection-String": connectionString(server, "?options=endpoint%3Dep-test-123"),
    });
    assert.equal(endpoint.status, 200, await endpoint.clone().text());
    assert.deepEqual((await endpoint.json()).rows, [{ one: 1 }]);
  },
);

test("gateway /sql answers sslrootcert=/dev/zero with 400 and no memory growth", T, async () => {
  const { server, gateway } = await env();
  const before = process.memoryUsage().rss;
  for (let i = 0; i < 20; i++) {
    const response = await post(gateway, '{"query":"select 1"}', {
      "Neon-Connection-String": connectionString(server, "?sslrootcert=/dev/zero"),
    });
    assert.equal(response.status, 400);
    assert.match((await response.json()).message, /"sslrootcert"/);
  }
  // Reading /dev/zero took the gateway past 1 GiB; 20 small answers take almost nothing.
  const growth = process.memoryUsage().rss - before;
  assert.ok(growth < 200 * MiB, `rss grew by ${Math.round(growth / MiB)} MiB`);
});

test(
  "gateway /sql refuses a client key or its passphrase with 400, never echoing either",
  T,
  async () => {
    const { server, gateway } = await env();
    const secret = "-----BEGIN PRIVATE KEY-----\nS3cretKeyMaterial\n-----END PRIVATE KEY-----";
    for (const name of ["sslkey", "sslcert", "sslpassword"]) {
      const response = await post(gateway, '{"query":"select 1"}', {
        "Neon-Connection-String": connectionString(
          server,
          `?${name}=${encodeURIComponent(secret)}`,
        ),
      });
      assert.equal(response.status, 400, name);
      const body = await response.text();
      assert.ok(body.includes(`\\"${name}\\"`), `${name}: ${body}`);
      assert.doesNotMatch(body, /S3cret|BEGIN/, name);
    }
  },
);

test(
  "gateway /sql takes a connection string without a port as the upstream's port",
  T,
  async () => {
    const { server, gateway } = await env();
    const response = await post(gateway, '{"query":"select 1 as one"}', {
      "Neon-Connection-String": connectionString(
        server,
        `?application_name=${RUN}_portless`,
        false,
      ),
    });
    assert.equal(response.status, 200, await response.clone().text());
    assert.deepEqual((await response.json()).rows, [{ one: 1 }]);
  },
);

test("gateway /sql answers a refused address with 400 and Neon's error body", T, async () => {
  const { server, gateway } = await env();
  const elsewhere = connectionString(server).replace(`127.0.0.1:${server.port}`, "127.0.0.2:5432");
  const response = await post(gateway, '{"query":"select 1"}', {
    "Neon-Connection-String": elsewhere,
  });
  assert.equal(response.status, 400);
  const body = await response.json();
  assert.match(body.message, /127\.0\.0\.2:5432: not allowed/);
  assert.equal(body.code, "42501");
  for (const field of ["detail", "hint", "position", "where", "table", "routine"]) {
    assert.ok(field in body, `${field} is in the body`);
  }
});

// ---------------------------------------------------------------------------------------------
// Neon's own client

test(
  "Neon's neon() and Pool with poolQueryViaFetch get parsed errors from the gateway",
  T,
  async () => {
    const { server } = await env();
    const sql = neon(connectionString(server));
    const syntax = await errorOf(sql.query("selec 1"));
    assert.equal(syntax.code, "42601");
    assert.equal(syntax.name, "NeonDbError");
    const refused = await errorOf(
      neon(connectionString(server).replace(`127.0.0.1:${server.port}`, "127.0.0.2:5432"))
        .query("select 1"),
    );
    assert.match(String(refused.message), /not allowed/);
    assert.doesNotMatch(String(refused.message), /HTTP status/);
    assert.equal(refused.code, "42501");

    neonConfig.poolQueryViaFetch = true;
    try {
      // Neon's Pool leaves the port out of the Neon-Connection-String it sends.
      const pool = new Pool({ connectionString: connectionString(server, "", false) });
      try {
        const { rows } = await pool.query("select $1::int + 1 as n", [41]);
        assert.deepEqual(rows, [{ n: 42 }]);
        const error = await errorOf(pool.query("selec 1"));
        assert.equal(error.code, "42601");
        const tooMany = await errorOf(
          pool.query("select 1", Array.from({ length: 65536 }, () => 1)),
        );
        assert.equal(tooMany.code, "54000");
        assert.match(String(tooMany.message), /65535/);
      } finally {
        await pool.end();
      }
    } finally {
      neonConfig.poolQueryViaFetch = false;
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Malformed and over-long requests

test("gateway /sql answers client mistakes with 400 and keeps serving", T, async () => {
  const { server, gateway } = await env();
  const url = connectionString(server);
  const params = JSON.stringify({
    query: "select 1",
    params: Array.from({ length: 65536 }, () => 1),
  });
  const cases: [string, Promise<Response>, string][] = [
    ["too many params", post(gateway, params, { "Neon-Connection-String": url }), "54000"],
    [
      "a NUL in a parameter",
      post(gateway, '{"query":"select $1::text","params":["a\\u0000b"]}', {
        "Neon-Connection-String": url,
      }),
      "22021",
    ],
    [
      "a body past 10 MiB",
      post(gateway, JSON.stringify({ query: "x".repeat(11 * MiB) }), {
        "Neon-Connection-String": url,
      }),
      "54000",
    ],
    [
      "a connection string past 8 KiB",
      post(gateway, '{"query":"select 1"}', {
        "Neon-Connection-String": `${url}?application_name=${"a".repeat(9000)}`,
      }),
      "54000",
    ],
    ["bad JSON", post(gateway, "{nope", { "Neon-Connection-String": url }), "08P01"],
    ["wrong path", fetch(`${gateway.url}/etc/passwd`, { method: "POST" }), "08P01"],
  ];
  for (const [name, pending, code] of cases) {
    const response = await pending;
    assert.equal(response.status, 400, name);
    assert.equal((await response.json()).code, code, name);
  }
  // Unknown headers are ignored.
  const junk = await post(gateway, '{"query":"select 1 as one"}', {
    "Neon-Connection-String": url,
    "Neon-No-Such-Header": "x".repeat(1000),
    "X-Anything": "y",
  });
  assert.equal(junk.status, 200);
  assert.deepEqual((await junk.json()).rows, [{ one: 1 }]);
});

test("the gateway refuses a request head past 16 KiB and serves others", T, async () => {
  const { server, gateway } = await env();
  const client = await RawClient.open(gateway.port);
  try {
    client.write(
      `POST /sql HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(20 * 1024)}\r\n` +
        "Content-Length: 2\r\n\r\n{}",
    );
    assert.ok(await client.closedWithin(20_000), "the connection was closed");
    const status = statusOf(client.text);
    assert.ok(status === 0 || status === 431, `answered ${status}`);
  } finally {
    client.destroy();
  }
  const response = await post(gateway, '{"query":"select 1 as one"}', {
    "Neon-Connection-String": connectionString(server),
  });
  assert.equal(response.status, 200);
  await response.body?.cancel();
});

test("the gateway frames chunked bodies and keep-alive requests on one connection", T, async () => {
  const { server, gateway } = await env();
  const client = await RawClient.open(gateway.port);
  try {
    const body = '{"query":"select 7 as seven"}';
    const head = `POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: ${
      connectionString(server)
    }\r\n`;
    client.write(`${head}Content-Length: ${body.length}\r\n\r\n${body}`);
    await client.until(/"seven":7/);
    const half = Math.floor(body.length / 2);
    client.write(
      `${head}Transfer-Encoding: chunked\r\n\r\n` +
        `${half.toString(16)}\r\n${body.slice(0, half)}\r\n` +
        `${(body.length - half).toString(16)}\r\n${body.slice(half)}\r\n0\r\n\r\n`,
    );
    await client.until(/"seven":7[\s\S]*"seven":7/);
    assert.equal(client.text.match(/HTTP\/1\.1 200/g)?.length, 2);
  } finally {
    client.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// Slow clients

test("the gateway disconnects a client whose headers are late and serves others", T, async () => {
  const server = await getServer();
  const gateway = await gatewayFor(server);
  const url = connectionString(server);
  // Silent after a partial head; trickling a byte at a time; late on its second request.
  const silent = await RawClient.open(gateway.port);
  silent.write("POST /sql HTTP/1.1\r\nHost: x\r\n");
  const trickle = await RawClient.open(gateway.port);
  let trickling = true;
  const drip = (async () => {
    for (const byte of "POST /sql HTTP/1.1\r\nHost: x\r\nX-Slow: yes") {
      if (!trickling) break;
      trickle.write(byte);
      await delay(HEADER_TIMEOUT / 6);
    }
  })();
  const second = await RawClient.open(gateway.port);
  try {
    const body = '{"query":"select 1 as one"}';
    second.write(
      `POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: ${url}\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
    );
    await second.until(/"one":1/);
    second.write("POST /sql HTTP/1.1\r\nHost: x\r\n");
    // Meanwhile others are served.
    for (let i = 0; i < 3; i++) {
      const response = await post(gateway, body, { "Neon-Connection-String": url });
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
    for (const [name, client] of [["silent", silent], ["trickle", trickle], ["second", second]]) {
      const raw = client as RawClient;
      assert.ok(await raw.closedWithin(20_000), `${name}: disconnected`);
    }
    assert.ok(!/HTTP\/1\.1 2/.test(silent.text + trickle.text), "no late request was served");
    assert.equal(second.text.match(/HTTP\/1\.1 200/g)?.length, 1);
  } finally {
    trickling = false;
    await drip;
    for (const client of [silent, trickle, second]) client.destroy();
  }
});

test(
  "the gateway answers 503 with Retry-After beyond --max-sessions, and recovers",
  T,
  async () => {
    const server = await getServer();
    const gateway = await gatewayFor(server, { maxSessions: 2 });
    const url = connectionString(server);
    // One session: a WebSocket; another: a /sql request whose body is still on its way.
    const socket = new WebSocketClass(`${gateway.wsUrl}/v2`);
    const opened = new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("the WebSocket did not open"));
    });
    const socketClosed = new Promise((resolve) => socket.onclose = resolve);
    await opened;
    const holding = await RawClient.open(gateway.port);
    try {
      holding.write(
        `POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: ${url}\r\n` +
          "Content-Length: 100\r\n\r\n{",
      );
      await eventually("two sessions are open", () => gateway.sessions === 2);

      const refused = await post(gateway, '{"query":"select 1"}', {
        "Neon-Connection-String": url,
      });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.equal((await refused.json()).code, "53300");
      const upgrade = await RawClient.open(gateway.port);
      upgrade.write(
        "GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
      );
      await upgrade.until(/\r\n\r\n[\s\S]*\}/);
      upgrade.destroy();
      assert.equal(statusOf(upgrade.text), 503);
      assert.match(upgrade.text, /retry-after: 1/i);
      assert.equal(gateway.sessions, 2);
    } finally {
      holding.destroy();
      socket.close();
    }
    await socketClosed;
    await eventually("the sessions are over", () => gateway.sessions === 0);
    const response = await post(gateway, '{"query":"select 1 as one"}', {
      "Neon-Connection-String": url,
    });
    assert.equal(response.status, 200);
    assert.deepEqual((await response.json()).rows, [{ one: 1 }]);
  },
);

// ---------------------------------------------------------------------------------------------
// The WebSocket face

function startupPacket(params: Record<string, string>): Uint8Array {
  const text = Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join("") + "\0";
  const body = new TextEncoder().encode(text);
  return concat(int32(body.length + 8), int32(196608), body);
}

/** Sends a startup packet on a new WebSocket; resolves with all it got back once closed. */
async function startup(gateway: RunningGateway, params: Record<string, string>) {
  const socket = new WebSocketClass(`${gateway.wsUrl}/v2`);
  socket.binaryType = "arraybuffer";
  let received: Uint8Array = new Uint8Array(0);
  socket.onmessage = (event) => {
    received = concat(received, new Uint8Array(event.data as ArrayBuffer));
  };
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error("the WebSocket did not open"));
  });
  socket.send(startupPacket(params));
  await closed;
  return new TextDecoder().decode(received);
}

test("gateway WebSocket refuses libpq's client-side startup parameters by name", T, async () => {
  const { gateway } = await env();
  const names = ["sslrootcert", "sslcert", "sslkey", "sslpassword", "host", "port", "passfile"];
  for (const name of names) {
    const answers: string[] = [];
    for (const path of ["/etc/passwd", "/nonexistent/edgepool"]) {
      answers.push(
        await startup(gateway, { user: "scram", database: "edgepool_test", [name]: path }),
      );
    }
    assert.equal(answers[0], answers[1], name);
    assert.ok(answers[0].startsWith("E"), `${name}: an ErrorResponse`);
    assert.ok(answers[0].includes(`"${name}"`), `${name}: ${answers[0]}`);
    assert.ok(answers[0].includes("42501"), name);
    assert.doesNotMatch(answers[0], /passwd|nonexistent/, `${name}: the value is echoed`);
  }
});

test("gateway WebSocket refuses an address beyond the allowlist with 400", T, async () => {
  const { gateway } = await env();
  const client = await RawClient.open(gateway.port);
  try {
    client.write(
      "GET /v2?address=127.0.0.2:5432 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n" +
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    await client.until(/\r\n\r\n[\s\S]*\}/);
    assert.equal(statusOf(client.text), 400);
    const body = JSON.parse(client.text.slice(client.text.indexOf("{")));
    assert.match(body.message, /127\.0\.0\.2:5432 is not allowed/);
    assert.equal(body.code, "42501");
  } finally {
    client.destroy();
  }
});

test(
  "the gateway never lets a client reach a Unix-domain socket, even with allow /.*/",
  T,
  async (t) => {
    const server = await getServer();
    if (server.socketDir === undefined) return t.skip("no socket directory (TEST_DATABASE_URL)");
    // The server's real socket directory, where scram would log in: only the gateway's refusal
    // stands between the client and it.
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `127.0.0.1:${server.port}`,
      allow: /.*/,
      headerTimeout: HEADER_TIMEOUT,
    });
    started.push(gateway);
    assert.equal(allowlist({ host: "127.0.0.1", port: 1 }, /.*/)({ host: "/tmp", port: 1 }), false);
    const bodies: string[] = [];
    for (const dir of [server.socketDir, "/nonexistent/edgepool"]) {
      for (const host of [`${encodeURIComponent(dir)}:${server.port}`, encodeURIComponent(dir)]) {
        const url = `postgres://scram:${passwordOf("scram")}@${host}/edgepool_test`;
        const response = await post(gateway, '{"query":"select 1"}', {
          "Neon-Connection-String": url,
        });
        const body = await response.text();
        assert.equal(response.status, 400, body);
        assert.equal(JSON.parse(body).code, "42501", body);
        assert.match(JSON.parse(body).message, /Unix-domain socket/);
        assert.doesNotMatch(body, /edgepool-pg|nonexistent|scram_pw/);
        bodies.push(body);
      }
    }
    assert.equal(new Set(bodies).size, 1, "the answer tells whether a socket exists");
    // ?host= is refused by name, before anything is parsed.
    const byName = await post(gateway, '{"query":"select 1"}', {
      "Neon-Connection-String": connectionString(server, `?host=${server.socketDir}`),
    });
    assert.equal(byName.status, 400);
    assert.match((await byName.json()).message, /"host"/);
    // WebSocket: the address is host:port, never a path.
    for (
      const address of [`${server.socketDir}:${server.port}`, encodeURIComponent(server.socketDir)]
    ) {
      const client = await RawClient.open(gateway.port);
      try {
        client.write(
          `GET /v2?address=${address} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n` +
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
        await client.until(/\r\n\r\n[\s\S]*\}/);
        assert.equal(statusOf(client.text), 400, address);
      } finally {
        client.destroy();
      }
    }
    assert.equal(gateway.sessions, 0);
  },
);
