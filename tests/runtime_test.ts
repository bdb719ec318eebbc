// Runtime detection and what createPool makes of it: the pool class, the transport, the pooler,
// the default application_name, and pool.describe() saying why.

import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, type CreatePool, createPool, detectRuntime, type RuntimeInfo } from "../mod.ts";
import { limitConcurrency, makeCreatePool } from "../src/create_pool.ts";
import { defaultApplicationName } from "../transports/auto.ts";
import { httpTransport } from "../transports/http.ts";
import { getServer } from "./_server.ts";

const T = { timeout: 30_000 };
const onDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";

test("detectRuntime names the runtime the tests run on", () => {
  const found = detectRuntime();
  assert.equal(found.name, onDeno ? "deno" : "node");
  assert.equal(found.edge, false);
  assert.equal(found.tcp, onDeno ? "deno" : "node");
});

test("detectRuntime tells the edge runtimes apart by their signs", () => {
  const deno = (env: Record<string, string> = {}, extra: object = {}) => ({
    Deno: { version: { deno: "2" }, env: { get: (name: string) => env[name] } },
    ...extra,
  });
  const cases: [object, Partial<RuntimeInfo>][] = [
    [{ navigator: { userAgent: "Cloudflare-Workers" } }, {
      name: "workers",
      edge: true,
      tcp: "workers",
    }],
    [{ EdgeRuntime: "edge-runtime" }, { name: "vercel-edge", edge: true, tcp: null }],
    [{ Netlify: { env: {} }, ...deno() }, { name: "netlify-edge", edge: true, tcp: "deno" }],
    [deno({}, { EdgeRuntime: { waitUntil() {} } }), { name: "supabase-edge", edge: true }],
    [deno({ SB_EXECUTION_ID: "x" }), { name: "supabase-edge", edge: true, tcp: "deno" }],
    [deno({ DENO_DEPLOYMENT_ID: "abc" }), { name: "deno-deploy", edge: true, tcp: "deno" }],
    [deno(), { name: "deno", edge: false, tcp: "deno" }],
    [{ Bun: {}, process: { versions: { node: "22" } } }, { name: "bun", edge: false, tcp: "node" }],
    [{ process: { versions: { node: "20.1.0" } } }, { name: "node", edge: false, tcp: "node" }],
    [{ window: {}, document: {} }, { name: "browser", edge: false, tcp: null }],
    [{}, { name: "unknown", edge: false, tcp: null }],
  ];
  for (const [scope, expected] of cases) {
    const found = detectRuntime(scope);
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(found[key as keyof RuntimeInfo], value, `${expected.name}: ${key}`);
    }
    assert.ok(found.sign.length > 0);
  }
  // An environment variable that needs a permission counts as unset.
  const denied = {
    Deno: {
      version: {},
      permissions: { querySync: () => ({ state: "prompt" }) },
      env: { get: () => "set" },
    },
  };
  assert.equal(detectRuntime(denied).name, "deno");
});

/** createPool for a pretend runtime; connecting is never needed here. */
function poolFor(runtime: RuntimeInfo): CreatePool {
  return makeCreatePool({
    connect: () => Promise.reject(new Error("not in this test")),
    runtime: () => runtime,
    embedded: () => {
      throw new Error("not in this test");
    },
  });
}

test("createPool picks NullPool on an edge runtime and QueuePool elsewhere, and says why", async () => {
  const workers = poolFor({ name: "workers", edge: true, tcp: "workers", sign: "ua" });
  await using edge = workers("postgres://u@db.example.com/d");
  const described = edge.describe();
  assert.equal(described.poolClass, "NullPool");
  assert.equal(described.runtime, "workers");
  assert.equal(described.edge, true);
  assert.equal(described.transport, "workers-tcp");
  assert.equal(described.pooler, "none");
  assert.match(described.reasons!.join("\n"), /NullPool: on an edge runtime/);

  const node = poolFor({ name: "node", edge: false, tcp: "node", sign: "Node 20" });
  await using server = node("postgres://u@h:6543/d", { poolSize: 3, maxOverflow: 2 });
  const d = server.describe();
  assert.deepEqual(
    [d.poolClass, d.transport, d.pooler, d.maxConnections],
    ["QueuePool", "node-tcp", "transaction", 5],
  );
  assert.match(d.reasons!.join("\n"), /pooler transaction: port 6543/);

  await using chosen = node("postgres://u@h/d", { poolClass: "NullPool", max: 7 });
  assert.equal(chosen.describe().maxConnections, 7);
  assert.match(chosen.describe().reasons!.join("\n"), /NullPool: the poolClass option/);
});

test("createPool without a transport on a runtime without sockets explains what to pass", () => {
  const vercel = poolFor({ name: "vercel-edge", edge: true, tcp: null, sign: "EdgeRuntime" });
  assert.throws(
    () => vercel("postgres://u@h/d"),
    /vercel-edge \(EdgeRuntime\) has no TCP sockets; pass a transport: websocketTransport/,
  );
  // Over HTTP it works, and says so.
  const pool = vercel("postgres://u@h/d", {
    transport: httpTransport({ endpoint: "http://127.0.0.1:1/sql" }),
  });
  assert.equal(pool.describe().poolClass, "HttpPool");
  assert.equal(pool.describe().transport, "http");
  assert.equal(pool.describe().runtime, "vercel-edge");
});

test("createPool logs its choice at debug level", async () => {
  const logged: [string, Record<string, unknown> | undefined][] = [];
  await using pool = createPool("postgres://u@db.example.com/d?pgbouncer=true", {
    logger: { debug: (message, data) => logged.push([message, data]) },
  });
  assert.equal(logged.length, 1);
  assert.match(logged[0][0], /^createPool: QueuePool/);
  assert.equal(logged[0][1]?.pooler, "transaction");
  assert.equal(pool.describe().runtime, onDeno ? "deno" : "node");
});

test(
  "connect reports where it comes from in application_name, unless told otherwise",
  T,
  async () => {
    const server = await getServer();
    const name = defaultApplicationName();
    assert.match(name, new RegExp(`^edgepool:[^@]+_test\\.(ts|mjs)@${onDeno ? "deno" : "node"}$`));
    const show = async (url: string, options = {}) => {
      await using conn = await connect(url, options);
      const { rows } = await conn.query<{ name: string }>(
        "select current_setting('application_name') as name",
      );
      return rows[0].name;
    };
    const url = server.url("scram", { sslmode: "disable" });
    assert.equal(await show(url), name);
    assert.equal(await show(url, { applicationName: "billing-worker" }), "billing-worker");
    assert.equal(
      await show(server.url("scram", { sslmode: "disable", application_name: "from-url" })),
      "from-url",
    );
  },
);

test("limitConcurrency keeps to its limit, first come first served, and lets aborts leave", async () => {
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const gates: (() => void)[] = [];
  const open = limitConcurrency(async (_signal: AbortSignal) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise<void>((resolve) => gates.push(resolve));
    running--;
    return running;
  }, 6);
  const controllers = Array.from({ length: 20 }, () => new AbortController());
  const calls = controllers.map((c, i) =>
    open(c.signal).then(() => order.push(i), (error) => order.push(-i - 1) && error)
  );
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(running, 6);
  controllers[10].abort(new Error("gave up"));
  while (gates.length > 0 || running > 0) {
    gates.shift()?.();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await Promise.all(calls);
  assert.equal(peak, 6);
  assert.ok(order.includes(-11), "the aborted call left the line");
  assert.deepEqual(order.filter((i) => i >= 0), [...Array(20).keys()].filter((i) => i !== 10));
});

test("pool.scope runs fn on a pool of its own and closes it afterwards", T, async () => {
  const server = await getServer();
  await using pool = createPool(server.url("scram", { sslmode: "disable" }), { poolSize: 2 });
  const handed: Promise<unknown>[] = [];
  const ctx = { waitUntil: (promise: Promise<unknown>) => void handed.push(promise) };
  let inner: { closed: boolean; stats(): { poolSize: number } } | undefined;
  const pid = await pool.scope(ctx, async (db) => {
    inner = db;
    assert.notEqual(db, pool);
    return (await db.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0].pid;
  });
  assert.equal(typeof pid, "number");
  assert.equal(handed.length, 1, "the close went to ctx.waitUntil");
  await handed[0];
  assert.equal(inner!.closed, true);
  assert.equal(pool.stats().poolSize, 0, "the module pool opened nothing");
  // Without ctx the close is awaited; a throw still closes it.
  await assert.rejects(
    pool.scope(undefined, async (db) => {
      inner = db;
      await db.query("select 1");
      throw new Error("handler failed");
    }),
    /handler failed/,
  );
  assert.equal(inner!.closed, true);
});
