// Query throughput over the WebSocket and HTTP transports, next to Neon's serverless driver,
// against the real server behind two local proxies:
//
// - WebSocket, pool of 10: edgepool's QueuePool over its WebSocket transport through
//   edgepool's gateway and through websockify (a third-party relay that passes bytes
//   untouched), @neondatabase/serverless `Pool` through the same two (neonConfig's defaults;
//   once more without coalesceWrites, to show what that default costs), edgepool's QueuePool
//   through a bare relay (bench/_bare_relay.ts: Deno.upgradeWebSocket + Deno.connect, nothing
//   else), and edgepool's QueuePool over TCP in the same run.
// - HTTP: edgepool's HttpPool and Neon's `neon()` against the gateway's `/sql`, which runs the
//   queries on its own pool of 10 per connection string.
//
// The bench starts the gateway (`gateway/cli.ts`, always on Deno, in a process of its own, like
// websockify: the proxies do not share the client's CPU time or event loop) and websockify on
// free loopback ports, and stops them at the end. The gateway talks to the server without TLS
// (`--upstream-sslmode disable`), as websockify's relayed stream does: both sit on loopback.
// It runs with its defaults otherwise, so with its header timeout: its front listener
// (gateway/deno.ts) serves the WebSocket sessions, framing them itself (the bare relay uses
// Deno's own WebSocket).
// Besides throughput and latency it reports the client process's CPU time per query, which
// tells the client's own cost apart from the proxy hop's, and the proxy's: the CPU time per
// relayed query of the gateway's process, of websockify's (with its per-connection children)
// and of the bare relay's, from /proc (bench/_server_cpu.ts), each under the same load; and
// the latency a proxy adds at 1 caller (median per-query latency through it minus over TCP).
// On 2 cores the proxy competes with client and server for the cores, so its throughput says
// little about it: its CPU per query does. No measurement runs past 2 s.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly with a URL:
//   deno run -A bench/transport_bench.ts postgres://... [--json FILE]

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { Client as NeonClient, neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { connect, QueuePool } from "../mod.ts";
import { CLIENT_SOCKET_SETTINGS } from "../src/url.ts";
import { HttpPool } from "../transports/http.ts";
import { type WebSocketConstructor, websocketTransport } from "../transports/websocket.ts";
import { startWebsockify } from "../tests/_websockify.ts";
import { childProcess, type CpuMeter, perQuery, processTreeCpu } from "./_server_cpu.ts";
import {
  benchArgs,
  type BenchRecord,
  median,
  medianOf,
  ms,
  runtimeName,
  type Sample,
  writeJson,
} from "./pool_query_bench.ts";

const MAX = 10;
const isDeno = typeof Deno !== "undefined";
/** The repository: this file's parent, or two up from the Node bundle in .tmp/bench/. */
const ROOT = fileURLToPath(
  new URL(import.meta.url.endsWith(".mjs") ? "../.." : "..", import.meta.url),
);

// Node 20 has no global WebSocket: the ws package stands in, for both drivers.
const WebSocketImpl: WebSocketConstructor =
  (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ??
    (await import("ws")).WebSocket;

/** Runs query number `i` of a workload. */
type Run = (i: number) => Promise<unknown>;

/** Anything with a pg-style `query(sql, params)`: edgepool's pools, Neon's Pool and `neon()`. */
interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

const statements: { name: string; run: (db: Queryable) => Run }[] = [
  { name: "select 1", run: (db) => () => db.query("select 1") },
  { name: "select $1::int + 1", run: (db) => (i) => db.query("select $1::int + 1", [i]) },
];

/** The processes between client and server, by name. */
type Proxy = "gateway" | "websockify" | "bare relay";

interface Contender {
  /** Column head: who, through what. */
  name: string;
  transport: "TCP" | "WebSocket" | "HTTP";
  /** What it goes through, whose CPU is measured with it. */
  proxy?: Proxy;
  open(): { db: Queryable; close(): Promise<void> };
}

interface Proxies {
  /** The gateway's `http://127.0.0.1:port`. */
  gateway: string;
  /** websockify's `ws://127.0.0.1:port/` (it ignores the path and query). */
  websockify: string;
  /** The bare relay's `ws://127.0.0.1:port/` (it ignores the path and query too). */
  bareRelay: string;
}

function edgepoolWs(url: string, proxy: string): Contender["open"] {
  return () => {
    const transport = websocketTransport({ proxy, WebSocket: WebSocketImpl });
    const pool = new QueuePool(() => connect(url, { transport }), {
      poolSize: MAX,
      maxOverflow: 0,
    });
    return { db: pool, close: () => pool.close() };
  };
}

/** How a Neon Pool is set up beyond its defaults (always plain ws:// to a local proxy). */
interface NeonSetup {
  /** The proxy without scheme, as neonConfig.wsProxy wants it. */
  proxy: string;
  pipelineConnect: "password" | false;
  coalesceWrites: boolean;
}

/**
 * Neon's Pool, configured per Client since the proxies differ: neonConfig's defaults but for
 * where its WebSocket goes. Through a relay the server's own authentication request comes
 * through, and a pipelined cleartext password only works where that is a cleartext one: so
 * `pipelineConnect` is off there (it only changes how a connection opens, not the queries
 * measured).
 */
function neonWs(url: string, setup: NeonSetup): Contender["open"] {
  return () => {
    class ProxiedClient extends NeonClient {
      constructor(config?: ConstructorParameters<typeof NeonClient>[0]) {
        super(config);
        this.neonConfig.wsProxy = (host, port) => `${setup.proxy}?address=${host}:${port}`;
        this.neonConfig.pipelineConnect = setup.pipelineConnect;
        this.neonConfig.coalesceWrites = setup.coalesceWrites;
      }
    }
    // No idle timeout (as pg.Pool in pool_query_bench): the pools sit idle while the others
    // are measured.
    const pool = new NeonPool({ connectionString: url, max: MAX, idleTimeoutMillis: 0 });
    pool.Client = ProxiedClient;
    return { db: pool, close: () => pool.end() };
  };
}

function socketClients(url: string, proxies: Proxies): Contender[] {
  const gatewayWs = proxies.gateway.replace(/^http/, "ws") + "/v2";
  const noScheme = (ws: string) => ws.replace(/^ws:\/\//, "");
  return [
    {
      name: "edgepool TCP",
      transport: "TCP",
      open() {
        const pool = new QueuePool(() => connect(url), { poolSize: MAX, maxOverflow: 0 });
        return { db: pool, close: () => pool.close() };
      },
    },
    {
      name: "edgepool gateway",
      transport: "WebSocket",
      proxy: "gateway",
      open: edgepoolWs(url, gatewayWs),
    },
    {
      name: "edgepool websockify",
      transport: "WebSocket",
      proxy: "websockify",
      open: edgepoolWs(url, proxies.websockify),
    },
    {
      name: "edgepool bare relay",
      transport: "WebSocket",
      proxy: "bare relay",
      open: edgepoolWs(url, proxies.bareRelay),
    },
    {
      name: "Neon Pool gateway",
      transport: "WebSocket",
      proxy: "gateway",
      open: neonWs(url, {
        proxy: noScheme(gatewayWs),
        pipelineConnect: "password",
        coalesceWrites: true,
      }),
    },
    {
      name: "Neon Pool websockify",
      transport: "WebSocket",
      proxy: "websockify",
      open: neonWs(url, {
        proxy: noScheme(proxies.websockify),
        pipelineConnect: false,
        coalesceWrites: true,
      }),
    },
    {
      // Not a default: Neon's coalesced writes wait for a setTimeout(0), at least a timer
      // tick per round trip. This column shows the driver without that wait.
      name: "Neon Pool gateway, no coalesceWrites",
      transport: "WebSocket",
      proxy: "gateway",
      open: neonWs(url, {
        proxy: noScheme(gatewayWs),
        pipelineConnect: "password",
        coalesceWrites: false,
      }),
    },
  ];
}

function httpClients(url: string, proxies: Proxies): Contender[] {
  const endpoint = `${proxies.gateway}/sql`;
  return [
    {
      name: "edgepool HttpPool",
      transport: "HTTP",
      proxy: "gateway",
      open() {
        const pool = new HttpPool(url, { endpoint });
        return { db: pool, close: () => pool.close() };
      },
    },
    {
      name: "neon()",
      transport: "HTTP",
      proxy: "gateway",
      open() {
        // neon() sends the connection string as given, and the gateway refuses a client's
        // socket settings (`sslmode`...): over HTTP the TLS is the endpoint's. edgepool's
        // HttpPool leaves them out itself.
        const bare = new URL(url);
        for (const name of CLIENT_SOCKET_SETTINGS) bare.searchParams.delete(name);
        const sql = neon(bare.href);
        return { db: sql, close: () => Promise.resolve() };
      },
    },
  ];
}

/**
 * Queries per measurement, by callers: fewer than pool_query_bench's, since Neon's Pool runs a
 * few hundred a second with one caller, and HTTP a thousand or two.
 */
type Concurrency = { callers: number; queries: number }[];
const socketConcurrency: Concurrency = [
  { callers: 1, queries: 500 },
  { callers: 10, queries: 2_000 },
  { callers: 100, queries: 2_000 },
];
const httpConcurrency: Concurrency = [
  { callers: 1, queries: 300 },
  { callers: 10, queries: 1_000 },
  { callers: 100, queries: 1_000 },
];

/** A measurement stops here, done or not: a client that stalls cannot stretch the run. */
const LIMIT_MS = 2_000;

/** A measurement, with the client process's CPU time per query (user + system) in µs. */
interface Measured extends Sample {
  cpuUs: number;
  /** The proxy's CPU time per query, µs, when it has one and /proc shows it. */
  proxyCpuUs?: number;
  /** Whether it hit LIMIT_MS before all its queries ran. */
  cut: boolean;
}

/** The medians of a client in one row; `cut` if any round was. */
type Figures = BenchRecord & { cpuUs: number; proxyCpuUs?: number; cut: boolean };

/**
 * pool_query_bench's `measure()` with a time limit: `queries` queries spread over `callers`
 * sequential loops, none started after `LIMIT_MS`; throughput and latency (ms) over those that
 * ran, and the CPU time this process (and `proxy`, if given) spent per query.
 */
async function measure(
  run: Run,
  callers: number,
  queries: number,
  proxy?: CpuMeter,
): Promise<Measured> {
  const latencies = new Float64Array(queries);
  let next = 0;
  // The proxy's /proc scan runs outside the client's CPU window and the clock.
  const proxyBefore = proxy?.read();
  const before = process.cpuUsage();
  const start = performance.now();
  const deadline = start + LIMIT_MS;
  const caller = async () => {
    while (next < queries && performance.now() < deadline) {
      const i = next++;
      const begin = performance.now();
      await run(i);
      latencies[i] = performance.now() - begin;
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  const seconds = (performance.now() - start) / 1000;
  const { user, system } = process.cpuUsage(before);
  const proxyUs = proxy === undefined ? undefined : proxy.read() - proxyBefore!;
  const done = latencies.subarray(0, next).sort();
  return {
    qps: next / seconds,
    p50: done[Math.floor(next * 0.5)],
    p99: done[Math.floor(next * 0.99)],
    cpuUs: (user + system) / next,
    proxyCpuUs: proxyUs === undefined ? undefined : proxyUs / next,
    cut: next < queries,
  };
}

/** Every statement at every concurrency on every client, 3 rounds interleaved: the medians. */
async function run(
  clients: Contender[],
  concurrency: Concurrency,
  meters: Partial<Record<Proxy, CpuMeter>>,
): Promise<Figures[]> {
  const opened = clients.map((c) => c.open());
  const records: Figures[] = [];
  try {
    const runs = opened.map((o) => statements.map((s) => s.run(o.db)));
    // Open every connection before timing anything.
    for (const r of runs) await measure(r[0], 100, 500);
    for (const [s, statement] of statements.entries()) {
      for (const { callers, queries } of concurrency) {
        const samples: Measured[][] = clients.map(() => []);
        for (let round = 0; round < 3; round++) {
          for (const [c, r] of runs.entries()) {
            await measure(r[s], callers, Math.max(100, 2 * callers)); // warm-up
            const proxy = clients[c].proxy;
            const meter = proxy === undefined ? undefined : meters[proxy];
            samples[c].push(await measure(r[s], callers, queries, meter));
          }
        }
        for (const [c, client] of clients.entries()) {
          records.push({
            transport: client.transport,
            client: client.name,
            statement: statement.name,
            callers,
            ...medianOf(samples[c]),
            cpuUs: median(samples[c].map((x) => x.cpuUs)),
            proxyCpuUs: samples[c].every((x) => x.proxyCpuUs !== undefined)
              ? median(samples[c].map((x) => x.proxyCpuUs!))
              : undefined,
            cut: samples[c].some((x) => x.cut),
          });
        }
      }
    }
  } finally {
    for (const o of opened) await o.close();
  }
  return records;
}

function count(r: Figures): string {
  return Math.round(r.qps).toLocaleString("en-US") + (r.cut ? "*" : "");
}

/** The footnote for `*`, if any figure has one. */
function cutNote(records: Figures[]): string[] {
  return records.some((r) => r.cut)
    ? [
      "",
      `\\* Some rounds stopped at the ${LIMIT_MS / 1000} s limit before all their queries ran.`,
    ]
    : [];
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}x`;
}

function latency(r: Figures): string {
  return `${ms(r.p50)} / ${ms(r.p99)}`;
}

function cpu(r: Figures): string {
  return r.cpuUs.toFixed(r.cpuUs < 10 ? 1 : 0);
}

/** One row per statement and concurrency: `cells(records of that row, in client order)`. */
function rows(
  clients: Contender[],
  records: Figures[],
  cells: (row: Figures[]) => string[],
): string[] {
  const lines: string[] = [];
  for (const statement of statements) {
    for (const { callers } of socketConcurrency) {
      const row = clients.map((c) =>
        records.find((r) =>
          r.client === c.name && r.statement === statement.name && r.callers === callers
        )!
      );
      lines.push(`| ${statement.name} | ${callers} | ${cells(row).join(" | ")} |`);
    }
  }
  return lines;
}

function head(columns: string[]): string[] {
  return [
    `| statement | callers | ${columns.join(" | ")} |`,
    `|---|---:|${columns.map(() => "---:").join("|")}|`,
  ];
}

function socketTables(runtime: string, clients: Contender[], records: Figures[]): string {
  const names = clients.map((c) => c.name);
  const relayed = clients.filter((c) => c.proxy !== undefined);
  const byName = (row: Figures[], name: string) => row[names.indexOf(name)];
  return [
    `### WebSocket, pool of ${MAX}, ${runtime} (queries per second, median of 3)`,
    "",
    "Through edgepool's gateway (a Deno process), websockify and a bare relay (a Deno process of",
    "Deno.upgradeWebSocket + Deno.connect), on loopback; edgepool TCP is its QueuePool straight to",
    "the server, in the same run. Neon's Pool has neonConfig's defaults (coalesceWrites on,",
    "pipelined connect) over ws://, and once more without coalesceWrites. edgepool / Neon compare",
    "through the same proxy. On 2 cores the proxy takes its share of the cores from client and",
    "server: throughput over WebSocket measures the hop, the proxy's CPU per query (below) the",
    "proxy.",
    "",
    ...head([
      ...names,
      "edgepool / Neon gateway",
      "edgepool / Neon websockify",
      "edgepool / Neon no coalesceWrites",
    ]),
    ...rows(clients, records, (row) => {
      const qps = (name: string) => byName(row, name).qps;
      return [
        ...row.map(count),
        ratio(qps("edgepool gateway"), qps("Neon Pool gateway")),
        ratio(qps("edgepool websockify"), qps("Neon Pool websockify")),
        ratio(qps("edgepool gateway"), qps("Neon Pool gateway, no coalesceWrites")),
      ];
    }),
    ...cutNote(records),
    "",
    `Per-query latency, ${runtime} (p50 / p99 in ms, median of 3):`,
    "",
    ...head(names),
    ...rows(clients, records, (row) => row.map(latency)),
    "",
    `CPU time of the client process per query, ${runtime} (µs, user + system, median of 3; the`,
    "proxies and the server run in other processes):",
    "",
    ...head(names),
    ...rows(clients, records, (row) => row.map(cpu)),
    "",
    `CPU time of the proxy per relayed query, ${runtime} (µs, user + system of its process and`,
    "its children, from /proc, median of 3; each measured while the column's client ran through",
    "it, the others idle; — where /proc does not show it):",
    "",
    ...head([
      ...relayed.map((c) => c.name),
      "gateway / websockify",
      "gateway / bare relay",
    ]),
    ...rows(clients, records, (row) => {
      const proxyUs = (name: string) => byName(row, name).proxyCpuUs;
      const of = (a: number | undefined, b: number | undefined) =>
        a === undefined || b === undefined ? "—" : ratio(a, b);
      return [
        ...relayed.map((c) => perQuery(byName(row, c.name).proxyCpuUs, 1)),
        of(proxyUs("edgepool gateway"), proxyUs("edgepool websockify")),
        of(proxyUs("edgepool gateway"), proxyUs("edgepool bare relay")),
      ];
    }),
    "",
    `Latency a proxy adds at 1 caller, ${runtime} (µs: edgepool's median per-query latency`,
    "through it minus over TCP, medians of 3):",
    "",
    "| statement | gateway | websockify | bare relay |",
    "|---|---:|---:|---:|",
    ...statements.map((statement) => {
      const at1 = (name: string) =>
        records.find((r) => r.client === name && r.statement === statement.name && r.callers === 1)!
          .p50;
      const added = (name: string) =>
        Math.round((at1(name) - at1("edgepool TCP")) * 1000).toString();
      return `| ${statement.name} | ${added("edgepool gateway")} | ` +
        `${added("edgepool websockify")} | ${added("edgepool bare relay")} |`;
    }),
  ].join("\n");
}

function httpTable(runtime: string, clients: Contender[], records: Figures[]): string {
  const names = clients.map((c) => c.name);
  return [
    `### HTTP, gateway /sql, ${runtime} ` +
    "(queries per second and per-query latency p50 / p99 in ms, median of 3)",
    "",
    "Each query is one POST to edgepool's gateway, which runs it on its pool of " +
    `${MAX} per connection string. Client CPU and the gateway's CPU in µs per query, as above.`,
    "",
    ...head([
      ...names.map((name) => `${name} q/s`),
      `${names[0]} / ${names[1]}`,
      ...names.map((name) => `${name} p50 / p99`),
      ...names.map((name) => `${name} CPU µs`),
      ...names.map((name) => `gateway CPU µs, ${name}`),
    ]),
    ...rows(clients, records, (row) => [
      ...row.map(count),
      ratio(row[0].qps, row[1].qps),
      ...row.map(latency),
      ...row.map(cpu),
      ...row.map((r) => perQuery(r.proxyCpuUs, 1)),
    ]),
    ...cutNote(records),
  ].join("\n");
}

/** A proxy in a process of its own. */
interface ProxyProcess {
  url: string;
  /** Its process's CPU time, from /proc; undefined where /proc does not show it. */
  meter: CpuMeter | undefined;
  stop(): Promise<void>;
}

/** The gateway CLI on Deno, in a process of its own; resolves once it listens. */
function startGatewayProcess(upstream: string): Promise<ProxyProcess> {
  const args = ["run", "-A", "--unstable-no-legacy-abort", "gateway/cli.ts"];
  args.push("--listen", "127.0.0.1:0", "--upstream", upstream, "--upstream-sslmode", "disable");
  return startDenoProcess("the gateway", args);
}

/** bench/_bare_relay.ts on Deno, in a process of its own; resolves once it listens. */
async function startBareRelay(upstream: string): Promise<ProxyProcess> {
  const relay = await startDenoProcess("the bare relay", [
    "run",
    "-A",
    "bench/_bare_relay.ts",
    upstream,
  ]);
  return { ...relay, url: relay.url.replace(/^http/, "ws") + "/" };
}

/** websockify (tests/_websockify.ts), with a meter of its process found in /proc. */
async function startWebsockifyProcess(upstream: string): Promise<ProxyProcess> {
  const relay = await startWebsockify({ address: upstream });
  // It is this process's child with its listening address among its arguments.
  const listen = `127.0.0.1:${relay.port}`;
  const pid = childProcess((argv) => argv.includes(listen));
  return {
    url: relay.url,
    meter: pid === undefined ? undefined : processTreeCpu(pid),
    stop: () => relay.stop(),
  };
}

/** A Deno program that prints `listening on http://...␠`: resolves once it does. */
async function startDenoProcess(what: string, args: string[]): Promise<ProxyProcess> {
  const deno = isDeno ? Deno.execPath() : `${ROOT}/node_modules/.bin/deno`;
  const child: ChildProcess = spawn(deno, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const kill = () => child.kill("SIGTERM");
  process.on("exit", kill);
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`${what} did not start within 30 s:\n${output}`));
    }, 30_000);
    const read = (chunk: Uint8Array) => {
      output = (output + new TextDecoder().decode(chunk)).slice(-4000);
      const match = /listening on (http:\/\/\S+?) /.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout!.on("data", read);
    child.stderr!.on("data", read);
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${what} exited:\n${output}`));
    });
  });
  return {
    url,
    meter: child.pid === undefined ? undefined : processTreeCpu(child.pid),
    async stop() {
      process.off("exit", kill);
      kill();
      await exited;
    },
  };
}

/** Starts the proxies, runs both groups, stops the proxies; returns the tables and the medians. */
export async function benchTransports(
  url: string,
  runtime: string,
): Promise<{ table: string; records: BenchRecord[] }> {
  const { hostname, port } = new URL(url);
  const upstream = `${hostname}:${port || 5432}`;
  const started: ProxyProcess[] = [];
  try {
    const gateway = await startGatewayProcess(upstream);
    started.push(gateway);
    const websockify = await startWebsockifyProcess(upstream);
    started.push(websockify);
    const bareRelay = await startBareRelay(upstream);
    started.push(bareRelay);
    const meters = {
      gateway: gateway.meter,
      websockify: websockify.meter,
      "bare relay": bareRelay.meter,
    };
    neonConfig.useSecureWebSocket = false;
    neonConfig.webSocketConstructor =
      WebSocketImpl as unknown as typeof neonConfig.webSocketConstructor;
    neonConfig.fetchEndpoint = () => `${gateway.url}/sql`;
    const proxies = { gateway: gateway.url, websockify: websockify.url, bareRelay: bareRelay.url };
    const sockets = socketClients(url, proxies);
    const socketRecords = await run(sockets, socketConcurrency, meters);
    const http = httpClients(url, proxies);
    const httpRecords = await run(http, httpConcurrency, meters);
    return {
      table: [
        socketTables(runtime, sockets, socketRecords),
        "",
        httpTable(runtime, http, httpRecords),
      ].join("\n"),
      records: [...socketRecords, ...httpRecords],
    };
  } finally {
    for (const proxy of started.reverse()) await proxy.stop();
  }
}

const isMain = isDeno ? import.meta.main : process.argv[1]?.endsWith("transport_bench.mjs");
if (isMain) {
  const { url, json } = benchArgs("transport_bench <postgres-url> [--json FILE]");
  const runtime = runtimeName();
  const { table, records } = await benchTransports(url, runtime);
  console.log(table);
  if (json !== undefined) writeJson(json, { bench: "transport", runtime, records });
}
