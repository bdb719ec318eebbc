// The soak: a QueuePool under mixed load for minutes while the network between it and
// PostgreSQL keeps failing, to find leaks and slow drifts that short tests cannot see.
//
//   deno task soak [--minutes N] [--callers N]        (default 3 minutes, 50 callers)
//
// A server of its own (tests/_server.ts), the fault proxy of tests/_faults.ts in front of it,
// a pool of 10 + 10 with prePing and a 2 s queryTimeout. The callers run ledger commits,
// deliberate rollbacks, reads, aborted statements and statements past their queryTimeout
// (tests/_load.ts). Every few seconds a fault hits: every link cut, reset or blackholed for a
// while, new connections refused for a while, a delay, and once a run a server restart.
//
// Each minute it prints memory (RSS, V8 heap after a GC when --expose-gc is on) and counts. At
// the end, with the faults stopped, the pool must serve every caller again, the ledger must
// hold every acknowledged commit and no rolled-back write, and the heap must not have grown
// beyond a bound (max(32 MiB, 50 %) over its size after the first minute). Exit code 1 when any
// of that does not hold.
//
// Not part of `deno task test`.

import process from "node:process";
import { parseArgs } from "node:util";
import { connect, type Connection, QueuePool, type QueuePoolOptions } from "../mod.ts";
import { type FaultProxy, startFaultProxy } from "./_faults.ts";
import { codeOf, ledgerTable, Load, type RequestKind } from "./_load.ts";
import { type OwnServer, startOwnServer } from "./_server.ts";
import { delay } from "./_helpers.ts";

const MiB = 1024 * 1024;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "3" },
    callers: { type: "string", default: "50" },
  },
});
const minutes = Number(values.minutes);
const callers = Number(values.callers);
if (!(minutes > 0 && minutes <= 24 * 60)) throw new RangeError("--minutes must be from 0 to 1440");
if (!(Number.isInteger(callers) && callers > 0 && callers <= 1000)) {
  throw new RangeError("--callers must be a whole number from 1 to 1000");
}

const gc = (globalThis as { gc?: () => void }).gc;

function heap(): { rss: number; heapUsed: number } {
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed };
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

// 4 in 10 commit, 1 rolls back, 3 read, 1 aborts, 1 runs past its queryTimeout.
function kindOf(n: number): RequestKind {
  const slot = n % 10;
  if (slot < 4) return "commit";
  if (slot === 4) return "rollback";
  if (slot < 8) return "read";
  return slot === 8 ? "abort" : "timeout";
}

/** The faults, one after another, each followed by a quiet spell. */
function faults(
  proxy: FaultProxy,
  server: OwnServer,
): { name: string; run: () => Promise<void> }[] {
  return [
    { name: "cut every link", run: () => Promise.resolve(proxy.cutAll()) },
    {
      name: "blackhole every link for 3 s",
      run: async () => {
        const held = proxy.links;
        proxy.blackholeAll();
        await delay(3_000);
        // A partition that outlasts TCP's patience ends the connections it held (passing them
        // again would deliver a stream with holes in it, which no real network does).
        for (const link of held) link.reset();
      },
    },
    {
      name: "refuse new connections for 2 s",
      run: async () => {
        await proxy.refuse();
        await delay(2_000);
        await proxy.accept();
      },
    },
    { name: "reset every link", run: () => Promise.resolve(proxy.resetAll()) },
    {
      name: "delay 50 ms for 5 s",
      run: async () => {
        proxy.mode = { delay: 50 };
        proxy.delayAll(50);
        await delay(5_000);
        proxy.mode = "pass";
        proxy.passAll();
      },
    },
    {
      name: "blackhole new connections for 2 s",
      run: async () => {
        proxy.mode = "blackhole";
        await delay(2_000);
        proxy.mode = "pass";
        // Those opened meanwhile have given up (connectTimeout) or will: end them.
        for (const link of proxy.links) if (link.mode === "blackhole") link.reset();
      },
    },
    {
      name: "restart the server (-m fast)",
      run: async () => {
        await server.restart("fast");
      },
    },
  ];
}

async function main(): Promise<number> {
  console.log(`soak: ${minutes} min, ${callers} callers${gc ? "" : " (no --expose-gc)"}`);
  const server = await startOwnServer({ config: "synchronous_commit = on" });
  const proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
  const url = proxy.url(server.url("scram", { sslmode: "disable" }));
  const options: QueuePoolOptions<Connection> & { queryTimeout?: number } = {
    poolSize: 10,
    maxOverflow: 10,
    prePing: true,
    queryTimeout: 2_000,
  };
  const pool = new QueuePool<Connection>(
    (signal) => connect(url, { signal, connectTimeout: 1_000, applicationName: "soak" }),
    options,
  );
  const table = "soak_ledger";
  await server.psql(ledgerTable(table));
  const load = new Load({ pool, callers, table, kindOf, keepRecords: false, pause: 2 }).start();
  const failures: string[] = [];
  const started = performance.now();
  const end = started + minutes * 60_000;
  let baseline: { rss: number; heapUsed: number } | undefined;
  let last = { rss: 0, heapUsed: 0 };
  const first = heap();
  let lastRequests = 0;

  const report = (minute: number | "end") => {
    const m = heap();
    last = m;
    const c = load.counts;
    const codes = [...c.codes].sort((a, b) => b[1] - a[1]).slice(0, 4)
      .map(([code, n]) => `${code}×${n}`).join(" ") || "-";
    const s = pool.stats();
    console.log(
      `[${minute === "end" ? "end" : `${minute} min`}] rss ${mib(m.rss)} heap ${
        mib(m.heapUsed)
      } | ` +
        `requests ${c.requests} (+${c.requests - lastRequests}) ok ${c.ok} ` +
        `rolled back ${c.rolledBack} failed ${c.failed} | pool ${s.poolSize} open ` +
        `${s.checkedOut} out ${s.requestsWaiting} waiting, lost ${s.connectionsLost}, connect ` +
        `errors ${s.connectionsErrors} | links ${proxy.links.length} | ${codes}`,
    );
    lastRequests = c.requests;
    return m;
  };

  let minute = 0;
  const ticker = setInterval(() => {
    const m = report(++minute);
    if (minute === 1) baseline = m;
  }, 60_000);
  try {
    const list = faults(proxy, server);
    for (let i = 0; performance.now() < end; i++) {
      // The restart once a run, halfway; the others in turn.
      let fault = list[i % (list.length - 1)];
      if (i === Math.floor((minutes * 60_000 / 12_000) / 2)) fault = list[list.length - 1];
      const at = Math.round((performance.now() - started) / 1000);
      console.log(`[${Math.floor(at / 60)}:${String(at % 60).padStart(2, "0")}] ${fault.name}`);
      await fault.run();
      // A quiet spell, so that every fault is followed by recovery.
      await delay(Math.min(7_000, Math.max(0, end - performance.now())));
    }
  } finally {
    clearInterval(ticker);
  }

  // Recovery: no faults now; every caller must be served again.
  proxy.mode = "pass";
  proxy.passAll();
  const since = load.counts.ok;
  const recovered = await Promise.race([
    (async () => {
      while (load.counts.ok < since + callers * 2) await delay(50);
      return true;
    })(),
    delay(60_000).then(() => false),
  ]);
  // A caller stuck in a request that never ends is a failure of its own; do not wait forever.
  const stopped = await Promise.race([
    load.stop().then(() => true),
    delay(30_000).then(() => false),
  ]);
  if (!stopped) failures.push("callers still stuck in a request 30 s after the faults stopped");
  const final = report("end");
  // Faults make requests fail; a statement that outlives its queryTimeout or its abort and
  // returns a result is the pool's own failure.
  for (const [code, n] of load.counts.codes) {
    if (code.includes("did not give up (result)")) failures.push(`${n} × ${code}`);
  }
  if (!recovered) {
    failures.push("the pool did not serve the callers again within 60 s of the faults");
  }

  const [present] = (await server.psql(`select count(*) from ${table}`)).split("\n").map(Number);
  const c = load.counts;
  console.log(
    `ledger: ${present} rows; ${c.committed} acknowledged commits, ${c.commitsFailed} failed ` +
      `(rows must lie between the two bounds: ${c.committed} ≤ rows ≤ ` +
      `${c.committed + c.commitsFailed})`,
  );
  if (present < c.committed) failures.push(`${c.committed - present} acknowledged commits lost`);
  if (present > c.committed + c.commitsFailed) {
    failures.push(`${present - c.committed - c.commitsFailed} rows nobody committed (rollbacks?)`);
  }

  const base = baseline ?? first;
  const bound = base.heapUsed + Math.max(32 * MiB, base.heapUsed * 0.5);
  console.log(
    `memory: start rss ${mib(first.rss)} heap ${mib(first.heapUsed)}; after warm-up rss ` +
      `${mib(base.rss)} heap ${mib(base.heapUsed)}; end rss ${mib(final.rss)} heap ` +
      `${mib(final.heapUsed)} (bound ${mib(bound)})`,
  );
  if (last.heapUsed > bound) {
    failures.push(`heap grew to ${mib(last.heapUsed)}, over ${mib(bound)}`);
  }

  const open = proxy.links.filter((l) => !l.clientClosed).length;
  console.log(
    `links at the end: ${proxy.links.length}, of which ${open} still open on the pool's side ` +
      `(the pool holds ${pool.stats().poolSize})`,
  );
  await Promise.race([pool.close(), delay(30_000)])
    .catch((e) => failures.push(`closing the pool: ${codeOf(e)}`));
  // Every socket the pool opened is closed once it is: one still open is a connection it lost.
  for (let i = 0; i < 100 && proxy.links.some((l) => !l.clientClosed); i++) await delay(100);
  const leaked = proxy.links.filter((l) => !l.clientClosed).length;
  if (leaked > 0) failures.push(`${leaked} sockets still open 10 s after pool.close()`);
  await proxy.close();
  server.close();
  for (const f of failures) console.log(`FAIL: ${f}`);
  console.log(failures.length === 0 ? "soak passed" : "soak FAILED");
  return failures.length === 0 ? 0 : 1;
}

Deno.exit(await main());
