// The pool's own cost, with no I/O: every pool manages trivial fake connections (an object,
// made at once), and we time acquire + release cycles and the heap that queued waiters take.
// edgepool's QueuePool side by side with tarn, generic-pool and pg-pool, in the runtime that
// runs this file.
//
// Usage: `deno task bench` (runs this on Deno and on Node 20), or directly:
//   deno run -A --v8-flags=--expose-gc bench/pool_overhead_bench.ts
//   node --expose-gc .tmp/bench/pool_overhead_bench.mjs   (after bench/run.ts bundled it)

import { EventEmitter } from "node:events";
import process from "node:process";
import { createPool as createGenericPool } from "generic-pool";
import pg from "pg";
import { Pool as TarnPool } from "tarn";
import { type PoolAdapter, QueuePool } from "../mod.ts";

/** The fake connection: nothing but an identity. */
interface Fake {
  id: number;
}

/** One pool under test, reduced to what a cycle needs. */
interface Handle {
  acquire(): Promise<unknown>;
  release(resource: unknown): void;
  close(): Promise<void>;
}

interface Peer {
  name: string;
  open(max: number): Handle;
}

const RESOLVED: Promise<void> = Promise.resolve();
let fakes = 0;
const makeFake = (): Promise<Fake> => Promise.resolve({ id: fakes++ });

const fakeAdapter: PoolAdapter<Fake> = {
  query: () => Promise.resolve({ command: "SELECT", rowCount: 0, rows: [], fields: [] }),
  close: () => RESOLVED,
  transactionStatus: () => "idle",
  isClosed: () => false,
  isBusy: () => false,
  ping: () => RESOLVED,
  isDisconnect: () => false,
  onClose: () => () => {},
};

/** What pg-pool calls on a client: connect(cb), end(cb), the EventEmitter, two flags. */
class FakeClient extends EventEmitter {
  readonly id = fakes++;
  _queryable = true;
  _ending = false;
  connect(callback: (error?: Error) => void): void {
    queueMicrotask(() => callback());
  }
  end(callback?: () => void): Promise<void> {
    this._ending = true;
    callback?.();
    return RESOLVED;
  }
}

/** The floor: the same loop, where acquiring is awaiting an already resolved promise. */
const floor: Peer = {
  name: "await floor",
  open: () => ({ acquire: () => RESOLVED, release: () => {}, close: () => RESOLVED }),
};

const peers: Peer[] = [
  {
    name: "edgepool",
    open(max) {
      const pool = new QueuePool(makeFake, { adapter: fakeAdapter, poolSize: max, maxOverflow: 0 });
      type Conn = Awaited<ReturnType<typeof pool.connect>>;
      return {
        acquire: () => pool.connect(),
        release: (conn) => void (conn as Conn).release(),
        close: () => pool.close(),
      };
    },
  },
  {
    name: "tarn",
    open(max) {
      const pool = new TarnPool<Fake>({ create: makeFake, destroy: () => {}, min: 0, max });
      return {
        acquire: () => pool.acquire().promise,
        release: (fake) => void pool.release(fake as Fake),
        close: async () => void await pool.destroy(),
      };
    },
  },
  {
    name: "generic-pool",
    open(max) {
      const pool = createGenericPool<Fake>({ create: makeFake, destroy: () => RESOLVED }, {
        min: 0,
        max,
      });
      return {
        acquire: () => pool.acquire(),
        release: (fake) => void pool.release(fake as Fake),
        close: async () => {
          await pool.drain();
          await pool.clear();
        },
      };
    },
  },
  {
    name: "pg-pool",
    open(max) {
      const pool = new pg.Pool({ max, Client: FakeClient });
      return {
        acquire: () => pool.connect(),
        release: (client) => (client as { release(): void }).release(),
        close: () => pool.end(),
      };
    },
  },
];

interface Workload {
  name: string;
  callers: number;
  max: number;
  cycles: number;
}

const workloads: Workload[] = [
  { name: "1 caller, pool of 10", callers: 1, max: 10, cycles: 200_000 },
  { name: "100 callers, pool of 10", callers: 100, max: 10, cycles: 200_000 },
];

/** Runs `total` acquire + release cycles spread over `callers` loops; ns per cycle. */
async function cycles(handle: Handle, callers: number, total: number): Promise<number> {
  let left = total;
  const caller = async () => {
    while (left > 0) {
      left--;
      const resource = await handle.acquire();
      handle.release(resource);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  return (performance.now() - start) * 1e6 / total;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const gc = (globalThis as { gc?: () => void }).gc;

async function settledHeap(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** Heap growth per waiter with `waiters` acquires queued on a pool of 1 whose one is out. */
async function bytesPerWaiter(peer: Peer, waiters: number): Promise<number> {
  const handle = peer.open(1);
  const held = await handle.acquire();
  const pending: Promise<unknown>[] = new Array(waiters).fill(RESOLVED);
  const before = await settledHeap();
  for (let i = 0; i < waiters; i++) pending[i] = handle.acquire();
  const after = await settledHeap();
  handle.release(held);
  for (const waiter of pending) handle.release(await waiter);
  await handle.close();
  return (after - before) / waiters;
}

function ns(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1);
}

/** Times every pool on every workload (3 rounds, interleaved) and measures queued waiters. */
export async function benchPoolOverhead(runtime: string): Promise<string> {
  const all = [floor, ...peers];
  const others = peers.slice(1);
  const lines = [
    `### Pool overhead, fake connections, ${runtime} (ns per acquire + release, median of 3)`,
    "",
    `| workload | ${all.map((p) => p.name).join(" | ")} | ${
      others.map((p) => `edgepool / ${p.name}`).join(" | ")
    } |`,
    `|---|${all.map(() => "---:").join("|")}|${others.map(() => "---:").join("|")}|`,
  ];
  for (const w of workloads) {
    const samples = new Map<string, number[]>(all.map((p) => [p.name, []]));
    for (let round = 0; round < 3; round++) {
      for (const peer of all) {
        const handle = peer.open(w.max);
        await cycles(handle, w.callers, w.cycles / 10); // warm-up, and fills the pool
        samples.get(peer.name)!.push(await cycles(handle, w.callers, w.cycles));
        await handle.close();
      }
    }
    const medians = all.map((p) => median(samples.get(p.name)!));
    const edgepool = medians[1];
    lines.push(
      `| ${w.name} | ${medians.map(ns).join(" | ")} | ${
        medians.slice(2).map((m) => `${(edgepool / m).toFixed(2)}x`).join(" | ")
      } |`,
    );
  }

  const waiters = 10_000;
  lines.push(
    "",
    `Heap growth per queued waiter (${waiters.toLocaleString("en-US")} acquires waiting on a ` +
      `pool of 1, bytes${gc ? ", after gc" : ", no --expose-gc so without gc: rough"}):`,
    "",
    `| | ${peers.map((p) => p.name).join(" | ")} |`,
    `|---|${peers.map(() => "---:").join("|")}|`,
  );
  const bytes: number[] = [];
  for (const peer of peers) bytes.push(await bytesPerWaiter(peer, waiters));
  lines.push(`| bytes per waiter | ${bytes.map((b) => Math.round(b)).join(" | ")} |`);
  return lines.join("\n");
}

const isMain = typeof Deno !== "undefined"
  ? import.meta.main
  : process.argv[1]?.endsWith("pool_overhead_bench.mjs");
if (isMain) {
  const runtime = typeof Deno !== "undefined"
    ? `Deno ${Deno.version.deno}`
    : `Node ${process.version}`;
  console.log(await benchPoolOverhead(runtime));
}
