// The gateway's own upstream as a host list (issue 15): `upstream: "db1:5432,db2:5432"` with
// `upstreamTargetSessionAttrs`, on both faces (WebSocket: the gateway logs in host after host
// and reads what each server reports; /sql: the pool per connection string connects through the
// list). Against the harness's PostgreSQL 15, a closed port, and a real primary with its
// synchronous streaming standby (tests/_replication.ts), promoted after the primary is stopped.
//
// Every wait is bounded; assertions are on outcomes and counts, never on timings.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { type GatewayOptions, resolveOptions } from "../gateway/options.ts";
import { MAX_UPSTREAM_HOSTS, parseTargets } from "../gateway/_target.ts";
import { connect } from "../mod.ts";
import { websocketTransport } from "../transports/websocket.ts";
import { closedPort } from "./_net.ts";
import { type ClusterNode, startReplicatedPair } from "./_replication.ts";
import { getServer, passwordOf, TEST_DATABASE } from "./_server.ts";
import { isDeno, WebSocketImpl } from "./_transports.ts";
import { codeOf, errorOf } from "./_helpers.ts";

const T = { timeout: 60_000 };
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PASSWORD = passwordOf("scram");

const started: RunningGateway[] = [];
after(async () => {
  await Promise.all(started.map((g) => g.close()));
});

async function gateway(options: Omit<GatewayOptions, "listen">): Promise<RunningGateway> {
  const running = await startGateway({ listen: "127.0.0.1:0", ...options });
  started.push(running);
  return running;
}

/** Which server answered, and whether it is a standby. */
interface Where {
  port: number;
  standby: boolean;
}

const WHERE_SQL = "select inet_server_port() as port, pg_is_in_recovery() as standby";

/** A connection string naming `host` (`""`: none, so the upstream). */
function connectionString(host: string): string {
  return `postgres://scram:${PASSWORD}@${host}/${TEST_DATABASE}`;
}

/** POSTs one query to `/sql`: the status and the parsed body. */
async function sql(
  gw: RunningGateway,
  host: string,
  query = WHERE_SQL,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${gw.url}/sql`, {
    method: "POST",
    headers: { "Neon-Connection-String": connectionString(host) },
    body: JSON.stringify({ query, params: [] }),
  });
  return { status: response.status, body: await response.json() };
}

/** Where a `/sql` query landed; fails the test on an error answer. */
async function sqlWhere(gw: RunningGateway, host: string): Promise<Where> {
  const { status, body } = await sql(gw, host);
  assert.equal(status, 200, JSON.stringify(body));
  const row = (body.rows as { port: number; standby: boolean }[])[0];
  return { port: Number(row.port), standby: row.standby };
}

/** Connects over the WebSocket face: to `address` (`null`: none, so the upstream). */
function wsConnect(gw: RunningGateway, address: string | null, host = "127.0.0.1:5432") {
  const transport = websocketTransport({
    proxy: () => `${gw.wsUrl}/v2${address === null ? "" : `?address=${address}`}`,
    WebSocket: WebSocketImpl,
  });
  return connect(connectionString(host), { transport, connectTimeout: 20_000 });
}

/** Where a WebSocket session landed. */
async function wsWhere(gw: RunningGateway, address: string | null): Promise<Where> {
  await using connection = await wsConnect(gw, address);
  const { rows } = await connection.query<{ port: number; standby: boolean }>(WHERE_SQL);
  return { port: Number(rows[0].port), standby: rows[0].standby };
}

// ---------------------------------------------------------------------------------------------
// Options and the command line

test("parseTargets reads a host list, IPv6 in brackets, and refuses empty entries, repeats and too many", () => {
  assert.deepEqual(parseTargets("db1:5432, DB2:5433,[::1]:6432", "upstream"), [
    { host: "db1", port: 5432 },
    { host: "db2", port: 5433 },
    { host: "::1", port: 6432 },
  ]);
  assert.deepEqual(parseTargets("127.0.0.1:5432", "upstream"), [{ host: "127.0.0.1", port: 5432 }]);
  const bad: [string, RegExp][] = [
    ["db1:5432,", /^upstream must be host:port or a comma-separated list/],
    [",db1:5432", /^upstream must be host:port or a comma-separated list/],
    ["db1:5432,db2", /^upstream must be host:port \(e\.g\./],
    ["db1:5432,[::1]", /^upstream must be host:port/],
    ["db1:5432,db1:5432", /^upstream lists db1:5432 twice$/],
    ["db1:5432,db2:0", /^upstream must be host:port/],
    [
      Array.from({ length: MAX_UPSTREAM_HOSTS + 1 }, (_, i) => `db${i}:5432`).join(","),
      /^upstream lists 17 hosts: at most 16/,
    ],
  ];
  for (const [text, message] of bad) {
    assert.throws(
      () => parseTargets(text, "upstream"),
      (e) => e instanceof TypeError && message.test(e.message),
      text,
    );
  }
});

test("resolveOptions makes read-write the default of a host list and any of one host, and checks the values", () => {
  const listen = "127.0.0.1:0";
  const one = resolveOptions({ listen, upstream: "127.0.0.1:5432" });
  assert.equal(one.upstreamTargetSessionAttrs, "any");
  assert.equal(one.upstreamLoadBalance, "disable");
  const list = resolveOptions({ listen, upstream: "db1:5432,db2:5432" });
  assert.equal(list.upstreamTargetSessionAttrs, "read-write");
  const given = resolveOptions({
    listen,
    upstream: "db1:5432,[::1]:5432",
    upstreamTargetSessionAttrs: "prefer-standby",
    upstreamLoadBalance: "random",
  });
  assert.equal(given.upstreamTargetSessionAttrs, "prefer-standby");
  assert.equal(given.upstreamLoadBalance, "random");
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ upstream: "db1:5432,db1:5432" }, /^upstream lists db1:5432 twice/],
    [{ upstream: "db1:5432,,db2:5432" }, /^upstream must be host:port or a comma-separated/],
    [
      { upstream: "db1:5432", upstreamTargetSessionAttrs: "master" },
      /^upstreamTargetSessionAttrs must be one of any, read-write, read-only, primary, standby, prefer-standby$/,
    ],
    [
      { upstream: "db1:5432", upstreamLoadBalance: "yes" },
      /^upstreamLoadBalance must be one of disable, random$/,
    ],
    // A relay does not read the session: it cannot tell a primary from a standby.
    [
      { upstream: "db1:5432,db2:5432", relay: true },
      /^relay cannot check upstreamTargetSessionAttrs \(read-write\)/,
    ],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => resolveOptions({ listen, ...options } as unknown as GatewayOptions),
      (e) => e instanceof TypeError && message.test((e as Error).message),
      JSON.stringify(options),
    );
  }
  const relay = resolveOptions({
    listen,
    upstream: "db1:5432,db2:5432",
    relay: true,
    upstreamTargetSessionAttrs: "any",
  });
  assert.equal(relay.relay, true);
});

/** Runs the Deno CLI: its exit code and output, or, given `until`, stops it once that matched. */
function cli(
  args: string[],
  until?: RegExp,
): Promise<{ code: unknown; output: string; url?: string }> {
  const child = spawn(process.execPath, ["run", "-A", "gateway/cli.ts", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`the CLI did not get there in 45 s:\n${output}`));
    }, 45_000);
    const read = (chunk: Uint8Array) => {
      output += new TextDecoder().decode(chunk);
      const match = until?.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ code: null, output, url: match[1] });
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
    if (until) after(() => void child.kill("SIGTERM"));
  });
}

test(
  "the gateway CLI takes an upstream list, --upstream-target-session-attrs and --upstream-load-balance",
  {
    ...T,
    skip: isDeno ? false : "the CLI's flags are one table on both runtimes (gateway_cli_test.ts)",
  },
  async () => {
    const bad = await cli([
      ...["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1,127.0.0.1:2"],
      ...["--upstream-target-session-attrs", "master"],
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.output, /--upstream-target-session-attrs must be one of any, read-write/);
    const empty = await cli(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1,"]);
    assert.equal(empty.code, 2);
    assert.match(empty.output, /--upstream must be host:port or a comma-separated list/);

    const server = await getServer();
    const down = await closedPort();
    const running = await cli([
      ...["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${down},127.0.0.1:${server.port}`],
      ...["--upstream-target-session-attrs", "primary", "--upstream-load-balance", "disable"],
    ], /listening on (http:\/\/\S+?) .*upstream \S+ \(primary\)/);
    assert.ok(running.url, running.output);
    const response = await fetch(`${running.url}/sql`, {
      method: "POST",
      headers: { "Neon-Connection-String": connectionString("") },
      body: JSON.stringify({ query: WHERE_SQL, params: [] }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(Number(body.rows[0].port), server.port);
  },
);

// ---------------------------------------------------------------------------------------------
// A host down, and what a client may name

test(
  "an upstream list whose first host is down is served by the second, on both faces",
  T,
  async () => {
    const server = await getServer();
    const down = await closedPort();
    const gw = await gateway({ upstream: `127.0.0.1:${down},127.0.0.1:${server.port}` });
    // No host, and either host of the list: the upstream, whose second host serves.
    for (const host of ["", `127.0.0.1:${down}`, `127.0.0.1:${server.port}`, "127.0.0.1"]) {
      assert.deepEqual(await sqlWhere(gw, host), { port: server.port, standby: false }, host);
    }
    for (const address of [null, `127.0.0.1:${down}`, `127.0.0.1:${server.port}`]) {
      assert.deepEqual(
        await wsWhere(gw, address),
        { port: server.port, standby: false },
        address ?? "",
      );
    }
    // A wrong password reaches the client as the server said it, on both faces.
    const wrong = `postgres://scram:wrong@/${TEST_DATABASE}`;
    const response = await fetch(`${gw.url}/sql`, {
      method: "POST",
      headers: { "Neon-Connection-String": wrong },
      body: JSON.stringify({ query: "select 1", params: [] }),
    });
    assert.equal(response.status, 400);
    assert.equal((await response.json()).code, "28P01");
    const transport = websocketTransport({
      proxy: () => `${gw.wsUrl}/v2`,
      WebSocket: WebSocketImpl,
    });
    const error = await errorOf(
      connect(`postgres://scram:wrong@127.0.0.1:5432/${TEST_DATABASE}`, { transport }),
    );
    assert.equal(codeOf(error), "28P01");
  },
);

test(
  "a gateway client cannot name a host list, a host outside the allowlist or a socket, and is told no upstream host",
  {
    ...T,
    timeout: 120_000,
  },
  async () => {
    const server = await getServer();
    const [down, other] = [await closedPort(), await closedPort()];
    const gw = await gateway({ upstream: `127.0.0.1:${down},127.0.0.1:${server.port}` });
    // A list of the client's own, even of the upstream's hosts.
    const list = await sql(gw, `127.0.0.1:${down},127.0.0.1:${server.port}`);
    assert.equal(list.status, 400);
    assert.match(String(list.body.message), /a host list is not accepted/);
    // Over WebSocket the upgrade is refused (400): the transport never opens.
    const wsList = await errorOf(wsConnect(gw, `127.0.0.1:${down},127.0.0.1:${server.port}`));
    assert.doesNotMatch(String(wsList), /ReadyForQuery/);
    // A host that is not the upstream's, nor allowed.
    const outside = await sql(gw, `127.0.0.1:${other}`);
    assert.equal(outside.status, 400);
    assert.equal(outside.body.code, "42501");
    await errorOf(wsConnect(gw, `127.0.0.1:${other}`));
    // A socket directory.
    const socket = await fetch(`${gw.url}/sql`, {
      method: "POST",
      headers: { "Neon-Connection-String": `postgres://scram:${PASSWORD}@%2Ftmp/${TEST_DATABASE}` },
      body: JSON.stringify({ query: "select 1", params: [] }),
    });
    assert.equal(socket.status, 400);
    assert.equal((await socket.json()).code, "42501");

    // No host of the list takes the connection: the client learns none of them (the log does).
    const logs: string[] = [];
    const log = (message: string) => void logs.push(message);
    const dead = await gateway({
      upstream: `127.0.0.1:${down},127.0.0.1:${other}`,
      logger: { warn: log, error: log },
    });
    const ws = await errorOf(wsConnect(dead, null));
    assert.equal(codeOf(ws), "08001");
    assert.match(
      String(ws),
      /could not log in to the upstream: no server of it took the connection as a read-write server/,
    );
    // The /sql face keeps trying within its pool's checkout deadline (30 s), then gives up.
    const http = await sql(dead, "");
    assert.equal(http.status, 503, JSON.stringify(http.body));
    assert.equal(http.body.code, "53300");
    for (const text of [String(ws), JSON.stringify(http.body)]) {
      for (const port of [down, other]) {
        assert.ok(!text.includes(String(port)), `${port} in ${text}`);
      }
    }
    assert.ok(
      logs.some((line) =>
        line.includes(`127.0.0.1:${down}`) && line.includes(`127.0.0.1:${other}`)
      ),
      logs.join("\n"),
    );
  },
);

// ---------------------------------------------------------------------------------------------
// A primary and its standby: session attributes and failover

/** `host:port` of a node. */
const at = (node: ClusterNode) => `${node.host}:${node.port}`;

test(
  "an upstream primary,standby: read-write skips the standby, standby finds it, and after the promotion both faces reach the new primary",
  {
    timeout: 240_000,
  },
  async () => {
    const pair = await startReplicatedPair();
    try {
      const { primary, standby } = pair;
      const onPrimary = { port: primary.port, standby: false };
      const onStandby = { port: standby.port, standby: true };
      await primary.psql(
        "create table gateway_writes (id serial primary key, face text); " +
          "grant all on gateway_writes to public; grant all on sequence gateway_writes_id_seq to public",
      );
      const sslDisable = { upstreamSslmode: "disable" as const };

      // The standby listed first: read-write passes it over; standby takes it.
      const readWrite = await gateway({ upstream: `${at(standby)},${at(primary)}`, ...sslDisable });
      assert.deepEqual(await sqlWhere(readWrite, ""), onPrimary);
      assert.deepEqual(await sqlWhere(readWrite, at(standby)), onPrimary);
      assert.deepEqual(await wsWhere(readWrite, null), onPrimary);
      assert.deepEqual(await wsWhere(readWrite, at(standby)), onPrimary);
      const standbys = await gateway({
        upstream: `${at(primary)},${at(standby)}`,
        upstreamTargetSessionAttrs: "standby",
        ...sslDisable,
      });
      assert.deepEqual(await sqlWhere(standbys, ""), onStandby);
      assert.deepEqual(await wsWhere(standbys, null), onStandby);

      // Failover: the primary listed first, stopped at once, and the standby promoted.
      const gw = await gateway({ upstream: `${at(primary)},${at(standby)}`, ...sslDisable });
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(await sqlWhere(gw, ""), onPrimary);
        assert.deepEqual(await wsWhere(gw, null), onPrimary);
      }
      await primary.stop("immediate");
      // Meanwhile a WebSocket session fails at once, naming no host; a /sql request waits.
      const outage = await errorOf(wsConnect(gw, null));
      assert.equal(codeOf(outage), "08001", String(outage));
      for (const port of [primary.port, standby.port]) {
        assert.ok(!String(outage).includes(String(port)), String(outage));
      }
      const waiting = sql(gw, "", "insert into gateway_writes (face) values ('sql') returning id");
      await standby.promote();
      const onNew = { port: standby.port, standby: false };

      // The request that waited: served by the new primary, or failed on a connection the old
      // one left in the pool (each such failure a 502, at most one per pooled connection).
      let failed = 0;
      const waited = await waiting;
      if (waited.status !== 200) {
        failed++;
        assert.equal(waited.status, 502, JSON.stringify(waited.body));
      }
      let served = 0;
      for (let i = 0; i < 20 && served < 5; i++) {
        const { status, body } = await sql(
          gw,
          "",
          "insert into gateway_writes (face) values ('sql') returning inet_server_port() as port",
        );
        if (status === 200) {
          served++;
          assert.equal(Number((body.rows as { port: number }[])[0].port), standby.port);
        } else {
          failed++;
          assert.equal(status, 502, JSON.stringify(body));
        }
      }
      assert.equal(served, 5);
      assert.ok(failed <= 3, `${failed} /sql requests failed after the promotion`);
      // A WebSocket session is new each time: every one reaches the new primary, and writes.
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(await wsWhere(gw, null), onNew);
        await using connection = await wsConnect(gw, at(primary));
        await connection.query("insert into gateway_writes (face) values ('ws')");
      }
      assert.equal(
        await standby.psql("select count(*) from gateway_writes where face = 'ws'"),
        "5",
      );
    } finally {
      await pair.stop();
    }
  },
);
