// Unix-domain sockets (issue 15): a host that starts with '/' is the directory of the server's
// socket, `.s.PGSQL.<port>` in it, as libpq reads it. Against the real PostgreSQL 15 of
// tests/_server.ts, which listens on its socket directory too, over every TCP transport of the
// runtime (Deno's and node:net's on Deno, node:net's on Node). The transports without Unix
// sockets (WebSocket, HTTP) must refuse at once with a TypeError; Workers' is in
// tests/workers_test.ts.
//
// Every wait is bounded; assertions are on outcomes and counts, never on timings.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  connect,
  createPool,
  type Transport,
  type TransportConnectOptions,
  websocketTransport,
} from "../mod.ts";
import { HttpClient, httpTransport } from "../transports/http.ts";
import {
  assertConnectionError,
  assertPostgresError,
  endStatement,
  eventually,
  rejection,
  uniqueName,
  within,
} from "./_helpers.ts";
import { getServer, passwordOf, TEST_DATABASE, type TestServer } from "./_server.ts";
import { transports, WebSocketImpl } from "./_transports.ts";

const T = { timeout: 60_000 };
const PASSWORD = passwordOf("scram");

/** The server, or `undefined` when it has no socket directory of the harness's (an external one). */
async function socketServer(): Promise<(TestServer & { socketDir: string }) | undefined> {
  const server = await getServer();
  return server.socketDir === undefined ? undefined : server as TestServer & { socketDir: string };
}

/** `postgres://scram:...@<socket dir, percent-encoded>:<port>/edgepool_test?<params>`. */
function socketUrl(dir: string, port: number, params: Record<string, string> = {}): string {
  const query = new URLSearchParams(params).toString();
  return `postgres://scram:${PASSWORD}@${encodeURIComponent(dir)}:${port}/${TEST_DATABASE}` +
    (query ? `?${query}` : "");
}

/** `transport`, remembering the host of every connect (the session's and the cancel's). */
function recording(transport: Transport): Transport & { hosts: string[] } {
  const hosts: string[] = [];
  return {
    name: transport.name,
    hosts,
    connect(options: TransportConnectOptions) {
      hosts.push(options.host);
      return transport.connect(options);
    },
  };
}

for (const transport of transports) {
  const on = ` (${transport.name})`;

  test(
    `connect reaches the server over its Unix-domain socket, in each URL form${on}`,
    T,
    async (t) => {
      const server = await socketServer();
      if (server === undefined) return t.skip("no socket directory (TEST_DATABASE_URL)");
      const { socketDir: dir, port } = server;
      const forms: [string, string | undefined, object][] = [
        ["percent-encoded host", socketUrl(dir, port), {}],
        [
          "?host= and ?port=",
          `postgres://scram:${PASSWORD}@/${TEST_DATABASE}?host=${dir}&port=${port}`,
          {},
        ],
        [
          "options.host",
          `postgres://scram:${PASSWORD}@127.0.0.1:1/${TEST_DATABASE}`,
          { host: `${dir}/`, port },
        ],
        ["options only", undefined, {
          host: dir,
          port,
          user: "scram",
          password: PASSWORD,
          database: TEST_DATABASE,
        }],
      ];
      for (const [form, url, options] of forms) {
        await using conn = await connect(url, { ...options, transport });
        const { rows } = await conn.query(
          "select inet_client_addr() as addr, current_user as who, $1::int + 1 as n",
          [41],
        );
        // No client address: the session came in over the Unix-domain socket, not TCP.
        assert.deepEqual(rows, [{ addr: null, who: "scram", n: 42 }], form);
        assert.equal(conn.encrypted, false, form);
      }
    },
  );

  test(
    `connect goes on without TLS over a Unix-domain socket whatever sslmode says, as libpq${on}`,
    T,
    async (t) => {
      const server = await socketServer();
      if (server === undefined) return t.skip("no socket directory (TEST_DATABASE_URL)");
      for (const sslmode of ["disable", "prefer", "require", "verify-full"]) {
        await using conn = await connect(socketUrl(server.socketDir, server.port, { sslmode }), {
          transport,
        });
        const { rows } = await conn.query("select inet_client_addr() as addr");
        assert.deepEqual(rows, [{ addr: null }], sslmode);
        assert.equal(conn.encrypted, false, sslmode);
      }
      // sslrootcert=system means verify-full: still no TLS on a socket.
      await using conn = await connect(
        socketUrl(server.socketDir, server.port, { sslrootcert: "system" }),
        { transport },
      );
      assert.equal(conn.encrypted, false);
    },
  );

  test(`a pool serves concurrent queries over a Unix-domain socket${on}`, T, async (t) => {
    const server = await socketServer();
    if (server === undefined) return t.skip("no socket directory (TEST_DATABASE_URL)");
    const name = uniqueName("unix_pool");
    const pool = createPool(
      socketUrl(server.socketDir, server.port, { application_name: name }),
      { transport, poolSize: 3, maxOverflow: 0 },
    );
    try {
      const results = await Promise.all(
        Array.from(
          { length: 12 },
          (_, i) => pool.query("select $1::int as i, inet_client_addr() as addr", [i]),
        ),
      );
      assert.deepEqual(results.map((r) => r.rows[0]), results.map((_, i) => ({ i, addr: null })));
      const seen = await server.psql(
        `select count(*) from pg_stat_activity where application_name = '${name}' ` +
          "and client_addr is null and client_port = -1",
      );
      assert.ok(Number(seen) >= 1 && Number(seen) <= 3, `backends over the socket: ${seen}`);
    } finally {
      await pool.close();
    }
  });

  test(`query's signal cancels over the same Unix-domain socket${on}`, T, async (t) => {
    const server = await socketServer();
    if (server === undefined) return t.skip("no socket directory (TEST_DATABASE_URL)");
    const spy = recording(transport);
    await using conn = await connect(socketUrl(server.socketDir, server.port), { transport: spy });
    const pid = conn.processId;
    try {
      const controller = new AbortController();
      const reason = new Error("enough");
      const slow = rejection(conn.query("select pg_sleep(600)", [], { signal: controller.signal }));
      await eventually("pg_sleep under way", async () =>
        await server.psql(
          `select state from pg_stat_activity where pid = ${pid}`,
        ) === "active");
      controller.abort(reason);
      assert.equal(await within(slow, 30_000, "the cancelled query"), reason);
      // The server ended the statement: the CancelRequest arrived.
      await eventually("the backend idle again", async () =>
        await server.psql(
          `select state from pg_stat_activity where pid = ${pid}`,
        ) === "idle");
      assert.deepEqual((await conn.query("select 2 as two")).rows, [{ two: 2 }]);
      // The session and each CancelRequest went to the socket directory, none over TCP.
      assert.ok(spy.hosts.length >= 2, `connects: ${spy.hosts.length}`);
      assert.deepEqual(new Set(spy.hosts), new Set([server.socketDir]));
    } finally {
      await endStatement(server, pid);
    }
  });

  test(
    `connect fails with CONNECT_FAILED naming the socket path, never the password${on}`,
    T,
    async (t) => {
      const server = await socketServer();
      if (server === undefined) return t.skip("no socket directory (TEST_DATABASE_URL)");
      const missing = join(server.socketDir, "no-such-dir");
      for (const [dir, port] of [[missing, server.port], [server.socketDir, 1]] as const) {
        const error = await rejection(connect(socketUrl(dir, port), { transport }));
        assertConnectionError(error, "CONNECT_FAILED");
        assert.ok(error.message.includes(`${dir}/.s.PGSQL.${port}`), error.message);
        assert.ok(!error.message.includes(PASSWORD), error.message);
      }
      // A wrong password over the socket is the server's answer, as over TCP.
      const wrong = socketUrl(server.socketDir, server.port).replace(PASSWORD, "wrong_pw");
      const error = await rejection(connect(wrong, { transport }));
      assertPostgresError(error, "28P01");
      assert.ok(!String(error.message).includes("wrong_pw"));
    },
  );

  test(
    `connectTimeout ends a connect to a silent Unix-domain socket, naming its path${on}`,
    T,
    async () => {
      await using silent = await silentUnixServer();
      const error = await rejection(
        within(
          connect(socketUrl(silent.dir, 5432), { transport, connectTimeout: 300 }),
          30_000,
          "the connect to a silent socket",
        ),
      );
      assertConnectionError(error, "CONNECT_TIMEOUT");
      assert.ok(error.message.includes(`${silent.dir}/.s.PGSQL.5432`), error.message);
      assert.ok(!error.message.includes(PASSWORD), error.message);
      assert.ok(silent.accepted >= 1, "the client reached the socket");
    },
  );
}

/** A server on `<dir>/.s.PGSQL.5432` that accepts and never says a word. */
async function silentUnixServer() {
  const dir = mkdtempSync(join(tmpdir(), "edgepool-unix-"));
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.resume();
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(join(dir, ".s.PGSQL.5432"), resolve);
  });
  return {
    dir,
    get accepted() {
      return accepted;
    },
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test(
  "the WebSocket transport refuses a Unix-domain socket with a TypeError, asking no proxy",
  T,
  async () => {
    const asked: string[] = [];
    const transport = websocketTransport({
      proxy: (host, port) => {
        asked.push(`${host}:${port}`);
        return "ws://127.0.0.1:1/v2";
      },
      WebSocket: WebSocketImpl,
    });
    const url = socketUrl("/var/run/postgresql", 5432);
    const error = await rejection(within(connect(url, { transport }), 30_000, "connect"));
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /Unix-domain socket \/var\/run\/postgresql\/\.s\.PGSQL\.5432/);
    assert.match(error.message, /WebSocket transport/);
    assert.ok(!error.message.includes(PASSWORD));
    // A pool fails the checkout with it at once instead of retrying until its deadline.
    const pool = createPool(url, { transport, timeout: 30_000 });
    try {
      const failed = await rejection(within(pool.query("select 1"), 20_000, "pool.query"));
      const cause = (failed as { cause?: unknown }).cause ?? failed;
      assert.ok(cause instanceof TypeError, String(failed));
      assert.match(cause.message, /Unix-domain socket/);
    } finally {
      await pool.close();
    }
    assert.deepEqual(asked, []);
  },
);

test("the HTTP transport refuses a Unix-domain socket with a TypeError, in each URL form", () => {
  const forms = [
    socketUrl("/var/run/postgresql", 5432),
    `postgres://scram:${PASSWORD}@/${TEST_DATABASE}?host=/var/run/postgresql`,
    `postgres://scram:${PASSWORD}@/${TEST_DATABASE}?host=%2Fvar%2Frun%2Fpostgresql`,
  ];
  for (const url of forms) {
    assert.throws(() => new HttpClient(url, { endpoint: "http://127.0.0.1:1/sql" }), (error) => {
      assert.ok(error instanceof TypeError, String(error));
      assert.match(error.message, /Unix-domain socket \/var\/run\/postgresql\/\.s\.PGSQL/);
      assert.match(error.message, /HTTP transport/);
      assert.ok(!error.message.includes(PASSWORD));
      return true;
    }, url);
    assert.throws(
      () => createPool(url, { transport: httpTransport({ endpoint: "http://127.0.0.1:1/sql" }) }),
      /Unix-domain socket/,
    );
  }
});
