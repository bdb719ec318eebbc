// Cold-path round trips and time to the first row, with 20 ms added each way by a relay
// (tests/_relay.ts) in front of the server, or in front of edgepool's gateway for WebSocket and
// HTTP: a connect and first query per transport and auth method, and a batch of statements in
// one transaction on a warm connection, for edgepool and, where it is cheap to set up, pg and
// postgres.js over TCP and @neondatabase/serverless (Pool over WebSocket, neon() over HTTP) with
// their defaults, against the same server and gateway.
//
// Usage:
//   deno run -A bench/round_trips_bench.ts postgres://... [--md5 postgres://...] [--json FILE]
// The URL's user logs in however the server asks it to (the table says which method that was);
// `--md5 URL` adds the MD5 rows for a user the server asks for MD5. Prints a markdown table;
// `--json FILE` also writes the rows. Runs on Node 20 too, bundled as bench/run.ts does.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { CLIENT_SOCKET_SETTINGS } from "../src/url.ts";
import {
  connect,
  type ConnectOptions,
  createPool,
  QueuePool,
  type Transport,
  type WebSocketConstructor,
  websocketTransport,
} from "../mod.ts";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { httpTransport } from "../transports/http.ts";
import { type Relay, startRelay } from "../tests/_relay.ts";

/** Added to each direction between client and server (or gateway), in ms. */
const DELAY_MS = 20;
/** Samples per scenario; the table shows their median. */
const SAMPLES = 5;

const isDeno = typeof Deno !== "undefined";
const WebSocketImpl: WebSocketConstructor =
  (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ??
    ((await import("ws")).WebSocket as unknown as WebSocketConstructor);

/** One measured run: time to the first row (or to the batch's end), and round trips. */
interface Sample {
  ms: number;
  /** Round trips between the client and the server or gateway. */
  roundTrips: number;
  /** Round trips between the gateway and PostgreSQL, for the gateway's scenarios. */
  upstream?: number;
}

/** A row of the table. */
export interface RoundTripRecord {
  scenario: string;
  client: string;
  /** The count includes a WebSocket upgrade. */
  upgrade: boolean;
  roundTrips: number[];
  upstream: number[] | null;
  /** Median time to the first row (batch: to its end), in ms. */
  ms: number;
}

/** What a scenario gets: relays (new ones per cold sample) and the URLs through them. */
interface Net {
  /** A relay in front of PostgreSQL, 20 ms each way. */
  tcpRelay(): Promise<Relay>;
  /** A relay in front of the gateway, 20 ms each way. */
  gatewayRelay(): Promise<Relay>;
  /** `url` with its host and port replaced by `relay`'s. */
  via(url: string, relay: Relay): string;
  /** `url` pointing at the relay between the gateway and PostgreSQL (no delay, counts only). */
  behindGateway(url: string): string;
  /** The relay between the gateway and PostgreSQL. */
  upstream: Relay;
}

/** A warm scenario, prepared: its sample, and its cleanup. */
interface Prepared {
  run(): Promise<Sample>;
  close(): Promise<void>;
}

interface Scenario {
  scenario: string;
  client: string;
  upgrade?: boolean;
  /** Through the gateway: count its round trips to PostgreSQL too. */
  gateway?: boolean;
  /** Runs once before the samples; returns what `run` needs and how to clean up. */
  prepare?(net: Net): Promise<Prepared>;
  /** A cold sample: everything new. */
  run?(net: Net): Promise<Sample>;
}

const BATCH_EDGEPOOL = [
  "select 1 as a",
  { sql: "select $1::int as b", params: [2] },
  "select 3 as c",
];

/** Time from `start` to when `first` resolves, and the relay's round trips at that moment. */
async function measure(relay: Relay, first: () => Promise<unknown>): Promise<Sample> {
  const start = performance.now();
  await first();
  return { ms: performance.now() - start, roundTrips: relay.roundTrips };
}

/** A cold connect + `select 1` with edgepool's `connect()` over TCP. */
function edgepoolTcp(url: string, pipelineConnect: ConnectOptions["pipelineConnect"]) {
  return async (net: Net): Promise<Sample> => {
    await using relay = await net.tcpRelay();
    let conn: Awaited<ReturnType<typeof connect>> | undefined;
    const sample = await measure(relay, async () => {
      conn = await connect(net.via(url, relay), { pipelineConnect });
      await conn.query("select 1");
    });
    await conn?.close();
    return sample;
  };
}

/** A cold connect + `select 1` through the gateway, on one transport whose relay changes. */
function edgepoolWebSocket(url: string, pipelineConnect: ConnectOptions["pipelineConnect"]) {
  let relay: Relay | undefined;
  // One transport for every sample: what it learned about the gateway (it takes the password
  // ahead) is per transport, and a long-lived process keeps it.
  const transport: Transport = websocketTransport({
    proxy: (host, port) => `ws://${relay!.address}/v2?address=${host}:${port}`,
    WebSocket: WebSocketImpl,
  });
  let learned = false;
  return async (net: Net): Promise<Sample> => {
    const target = net.behindGateway(url);
    if (!learned) {
      learned = true;
      relay = await net.gatewayRelay();
      await (await connect(target, { transport, pipelineConnect })).close();
      await relay.close();
    }
    relay = await net.gatewayRelay();
    try {
      net.upstream.reset();
      let conn: Awaited<ReturnType<typeof connect>> | undefined;
      const sample = await measure(relay, async () => {
        conn = await connect(target, { transport, pipelineConnect });
        await conn.query("select 1");
      });
      sample.upstream = net.upstream.roundTrips;
      await conn?.close();
      return sample;
    } finally {
      await relay.close();
    }
  };
}

function scenarios(url: string, method: string, md5Url: string | undefined): Scenario[] {
  const list: Scenario[] = [];
  const tcpCold = (u: string, m: string) => [
    {
      scenario: `cold query, TCP, ${m}`,
      client: "edgepool (pipelineConnect false: connect()'s default)",
      run: edgepoolTcp(u, false),
    },
    {
      scenario: `cold query, TCP, ${m}`,
      client: 'edgepool (pipelineConnect "auth": createPool()\'s default)',
      run: edgepoolTcp(u, "auth"),
    },
  ];
  list.push(...tcpCold(url, method));
  list.push({
    scenario: `cold query, TCP, ${method}`,
    client: "pg",
    async run(net) {
      await using relay = await net.tcpRelay();
      const client = new pg.Client({ connectionString: net.via(url, relay) });
      const sample = await measure(relay, async () => {
        await client.connect();
        await client.query("select 1");
      });
      await client.end();
      return sample;
    },
  }, {
    scenario: `cold query, TCP, ${method}`,
    client: "postgres.js (defaults: fetch_types)",
    async run(net) {
      await using relay = await net.tcpRelay();
      const sql = postgres(net.via(url, relay), { max: 1, onnotice: () => {} });
      const sample = await measure(relay, () => sql`select 1`);
      await sql.end();
      return sample;
    },
  });
  if (md5Url !== undefined) list.push(...tcpCold(md5Url, "MD5"));
  list.push(
    {
      scenario: "cold query, WebSocket via the gateway",
      client: 'edgepool (pipelineConnect "password": connect()\'s default)',
      upgrade: true,
      gateway: true,
      run: edgepoolWebSocket(url, undefined),
    },
    {
      scenario: "cold query, WebSocket via the gateway",
      client: 'edgepool (pipelineConnect "query": createPool()\'s default)',
      upgrade: true,
      gateway: true,
      run: edgepoolWebSocket(url, "query"),
    },
    {
      scenario: "cold query, WebSocket via the gateway",
      client: "@neondatabase/serverless Pool (defaults)",
      upgrade: true,
      gateway: true,
      async run(net) {
        await using relay = await net.gatewayRelay();
        neonConfig.wsProxy = (host, port) => `${relay.address}/v2?address=${host}:${port}`;
        const pool = new NeonPool({ connectionString: net.behindGateway(url) });
        pool.on("error", () => {}); // a socket the relay cuts after end()
        net.upstream.reset();
        const sample = await measure(relay, () => pool.query("select 1"));
        sample.upstream = net.upstream.roundTrips;
        await pool.end();
        return sample;
      },
    },
    {
      scenario: "cold query, HTTP via the gateway",
      client: "edgepool HttpPool",
      gateway: true,
      async run(net) {
        await using relay = await net.gatewayRelay();
        const pool = createPool(net.behindGateway(url), {
          transport: httpTransport({ endpoint: `http://${relay.address}/sql` }),
        });
        net.upstream.reset();
        const sample = await measure(relay, () => pool.query("select 1"));
        sample.upstream = net.upstream.roundTrips;
        await pool.close();
        return sample;
      },
    },
    {
      scenario: "cold query, HTTP via the gateway",
      client: "@neondatabase/serverless neon()",
      gateway: true,
      async run(net) {
        await using relay = await net.gatewayRelay();
        neonConfig.fetchEndpoint = () => `http://${relay.address}/sql`;
        const sql = neon(withoutSocketSettings(net.behindGateway(url)));
        net.upstream.reset();
        const sample = await measure(relay, () => sql.query("select 1"));
        sample.upstream = net.upstream.roundTrips;
        return sample;
      },
    },
  );

  // Batches of three statements in one transaction, on a warm connection.
  const batch = "batch of 3 in a transaction, warm";
  list.push(
    {
      scenario: `${batch}, TCP`,
      client: "edgepool pool.batch()",
      async prepare(net) {
        const relay = await net.tcpRelay();
        const pool = new QueuePool(() => connect(net.via(url, relay)), { poolSize: 1 });
        return await warmBatch(pool, relay);
      },
    },
    {
      scenario: `${batch}, TCP`,
      client: "pg (BEGIN, each statement, COMMIT)",
      async prepare(net) {
        const relay = await net.tcpRelay();
        const client = new pg.Client({ connectionString: net.via(url, relay) });
        await client.connect();
        return {
          run: () => batchSample(relay, () => oneByOne(client)),
          close: async () => {
            await client.end();
            await relay.close();
          },
        };
      },
    },
    {
      scenario: `${batch}, TCP`,
      client: "postgres.js sql.begin(sql => [...])",
      async prepare(net) {
        const relay = await net.tcpRelay();
        const sql = postgres(net.via(url, relay), { max: 1, onnotice: () => {} });
        await sql`select 1`;
        return {
          run: () =>
            batchSample(
              relay,
              () =>
                sql.begin((t) => [t`select 1 as a`, t`select ${2}::int as b`, t`select 3 as c`]),
            ),
          close: async () => {
            await sql.end();
            await relay.close();
          },
        };
      },
    },
    {
      scenario: `${batch}, WebSocket via the gateway`,
      client: "edgepool pool.batch()",
      gateway: true,
      async prepare(net) {
        const relay = await net.gatewayRelay();
        const transport = websocketTransport({
          proxy: (host, port) => `ws://${relay.address}/v2?address=${host}:${port}`,
          WebSocket: WebSocketImpl,
        });
        const target = net.behindGateway(url);
        const pool = new QueuePool(() => connect(target, { transport }), { poolSize: 1 });
        return await warmBatch(pool, relay, net.upstream);
      },
    },
    {
      scenario: `${batch}, WebSocket via the gateway`,
      client: "@neondatabase/serverless Client (BEGIN, each, COMMIT)",
      gateway: true,
      async prepare(net) {
        const relay = await net.gatewayRelay();
        neonConfig.wsProxy = (host, port) => `${relay.address}/v2?address=${host}:${port}`;
        const pool = new NeonPool({ connectionString: net.behindGateway(url) });
        pool.on("error", () => {}); // a socket the relay cuts after end()
        const client = await pool.connect();
        return {
          run: () => batchSample(relay, () => oneByOne(client), net.upstream),
          close: async () => {
            client.release();
            await pool.end();
            await relay.close();
          },
        };
      },
    },
    {
      scenario: `${batch}, HTTP via the gateway`,
      client: "edgepool HttpPool.batch()",
      gateway: true,
      async prepare(net) {
        const relay = await net.gatewayRelay();
        const pool = createPool(net.behindGateway(url), {
          transport: httpTransport({ endpoint: `http://${relay.address}/sql` }),
        });
        return await warmBatch(pool, relay, net.upstream);
      },
    },
    {
      scenario: `${batch}, HTTP via the gateway`,
      client: "@neondatabase/serverless neon().transaction()",
      gateway: true,
      async prepare(net) {
        const relay = await net.gatewayRelay();
        neonConfig.fetchEndpoint = () => `http://${relay.address}/sql`;
        const sql = neon(withoutSocketSettings(net.behindGateway(url)));
        await sql.query("select 1");
        return {
          run: () =>
            batchSample(
              relay,
              () =>
                sql.transaction((
                  t,
                ) => [t`select 1 as a`, t`select ${2}::int as b`, t`select 3 as c`]),
              net.upstream,
            ),
          close: () => relay.close(),
        };
      },
    },
  );
  return list;
}

/** A warm edgepool pool's batch scenario: one connection open, then `BATCH_EDGEPOOL`. */
async function warmBatch(
  pool: {
    query(sql: string): Promise<unknown>;
    batch(q: typeof BATCH_EDGEPOOL): Promise<unknown>;
    close(): Promise<void>;
  },
  relay: Relay,
  upstream?: Relay,
): Promise<Prepared> {
  await pool.query("select 1");
  return {
    run: () => batchSample(relay, () => pool.batch(BATCH_EDGEPOOL), upstream),
    close: async () => {
      await pool.close();
      await relay.close();
    },
  };
}

/** The batch as a client without one runs it: BEGIN, each statement, COMMIT, one by one. */
async function oneByOne(client: { query(sql: string, params?: unknown[]): Promise<unknown> }) {
  await client.query("BEGIN");
  await client.query("select 1 as a");
  await client.query("select $1::int as b", [2]);
  await client.query("select 3 as c");
  await client.query("COMMIT");
}

/** One batch on a warm connection: its time and round trips. */
async function batchSample(
  relay: Relay,
  run: () => Promise<unknown>,
  upstream?: Relay,
): Promise<Sample> {
  await relay.settled();
  relay.reset();
  upstream?.reset();
  const sample = await measure(relay, run);
  if (upstream) sample.upstream = upstream.roundTrips;
  return sample;
}

/** Which password method the server asks `url`'s user for, seen in the first Authentication message. */
async function authMethod(url: string, target: string): Promise<string> {
  let method = "no password";
  await using relay = await startRelay({
    target,
    transform(chunk, direction) {
      // The first server message of a connection without TLS: R, length, code.
      if (
        direction === "server" && chunk[0] === 0x52 && chunk.length >= 9 && method === "no password"
      ) {
        const code = new DataView(chunk.buffer, chunk.byteOffset).getInt32(5);
        method = { 0: "no password", 3: "cleartext password", 5: "MD5", 10: "SCRAM" }[code] ??
          `method ${code}`;
      }
      return chunk;
    },
  });
  const conn = await connect(withHost(url, relay.address), { sslmode: "disable" });
  await conn.close();
  return method;
}

/** `url` with `host:port` instead of its own. */
/**
 * `url` for neon(), which sends the connection string as given: without the client's socket
 * settings (`sslmode`...), which the gateway refuses (over HTTP the TLS is the endpoint's).
 */
function withoutSocketSettings(url: string): string {
  const parsed = new URL(url);
  for (const name of CLIENT_SOCKET_SETTINGS) parsed.searchParams.delete(name);
  return parsed.href;
}

function withHost(url: string, address: string): string {
  const parsed = new URL(url);
  const [host, port] = address.split(":");
  parsed.hostname = host;
  parsed.port = port;
  return parsed.href;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function range(values: number[]): string {
  const low = Math.min(...values);
  const high = Math.max(...values);
  return low === high ? String(low) : `${low}–${high}`;
}

/** Runs every scenario and returns the markdown table and its rows. */
export async function benchRoundTrips(
  url: string,
  md5Url?: string,
): Promise<{ table: string; records: RoundTripRecord[] }> {
  const parsed = new URL(url);
  if (parsed.searchParams.get("sslmode") !== "disable") {
    // The relays count PostgreSQL's own messages, and TLS would add its handshake.
    parsed.searchParams.set("sslmode", "disable");
    url = parsed.href;
  }
  const server = `${parsed.hostname.replace(/^\[(.*)\]$/, "$1")}:${parsed.port || 5432}`;
  const method = await authMethod(url, server);
  const upstream = await startRelay({ target: server });
  const gateway: RunningGateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: server,
    allow: new RegExp(`^127\\.0\\.0\\.1:${upstream.port}$`),
  });
  neonConfig.useSecureWebSocket = false;
  if (!isDeno) neonConfig.webSocketConstructor = WebSocketImpl as unknown as typeof WebSocket;
  const net: Net = {
    tcpRelay: () => startRelay({ target: server, delayMs: DELAY_MS }),
    gatewayRelay: () => startRelay({ target: `127.0.0.1:${gateway.port}`, delayMs: DELAY_MS }),
    via: (u, relay) => withHost(u, relay.address),
    behindGateway: (u) => withHost(u, upstream.address),
    upstream,
  };
  const records: RoundTripRecord[] = [];
  try {
    for (const s of scenarios(url, method, md5Url)) {
      const samples: Sample[] = [];
      if (s.prepare) {
        const prepared = await s.prepare(net);
        try {
          await prepared.run(); // warm-up
          for (let i = 0; i < SAMPLES; i++) samples.push(await prepared.run());
        } finally {
          await prepared.close();
        }
      } else {
        for (let i = 0; i < SAMPLES; i++) samples.push(await s.run!(net));
      }
      records.push({
        scenario: s.scenario,
        client: s.client,
        upgrade: s.upgrade ?? false,
        roundTrips: samples.map((x) => s.upgrade ? x.roundTrips - 1 : x.roundTrips),
        upstream: s.gateway ? samples.map((x) => x.upstream ?? 0) : null,
        ms: median(samples.map((x) => x.ms)),
      });
    }
  } finally {
    await gateway.close();
    await upstream.close();
  }
  const runtime = isDeno ? `Deno ${Deno.version.deno}` : `Node ${process.version}`;
  const lines = [
    `### Cold-path round trips, ${DELAY_MS} ms added each way, ${runtime} ` +
    `(login: ${method}; time to the first row, or to the batch's end: median of ${SAMPLES})`,
    "",
    "| scenario | client | round trips | ms | gateway ↔ PostgreSQL round trips |",
    "|---|---|---:|---:|---:|",
    ...records.map((r) =>
      `| ${r.scenario} | ${r.client} | ${range(r.roundTrips)}${r.upgrade ? " + upgrade" : ""} | ` +
      `${r.ms.toFixed(0)} | ${r.upstream ? range(r.upstream) : "–"} |`
    ),
    "",
    "Round trips are counted by the relay: client flights, each a wait for the server (see " +
    "tests/_relay.ts). Not counted, and not delayed: TCP's handshake, one more round trip on a " +
    "real network for every cold row (TLS adds one or two). The WebSocket upgrade is counted " +
    "apart. Gateway ↔ PostgreSQL has no added delay (a gateway sits next to its database) and " +
    "counts its SSLRequest and TLS handshake (`upstreamSslmode` prefer) and its own login; an " +
    "HTTP connection string's first request opens the gateway's pool for it.",
  ];
  return { table: lines.join("\n"), records };
}

const isMain = isDeno ? import.meta.main : process.argv[1]?.endsWith("round_trips_bench.mjs");
if (isMain) {
  const args = isDeno ? Deno.args : process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const at = args.indexOf(name);
    return at >= 0 ? args[at + 1] : undefined;
  };
  const url = args.find((arg, i) => !arg.startsWith("--") && !args[i - 1]?.startsWith("--"));
  if (url === undefined) {
    throw new Error("usage: round_trips_bench <postgres-url> [--md5 <postgres-url>] [--json FILE]");
  }
  const { table, records } = await benchRoundTrips(url, option("--md5"));
  console.log(table);
  const json = option("--json");
  if (json !== undefined) {
    mkdirSync(dirname(json), { recursive: true });
    writeFileSync(json, JSON.stringify({ bench: "round_trips", records }, null, 2) + "\n");
  }
  // pg, postgres.js and Neon's driver may keep timers (idle sockets) alive.
  process.exit(0);
}
