// The primary + streaming standby of tests/_replication.ts, seen through edgepool: it starts,
// replicates synchronously with remote_apply (a commit is on the standby when it returns), the
// standby refuses writes and says so in `in_hot_standby`, and after an immediate stop of the
// primary the promoted standby takes writes with every acknowledged commit. stop() leaves no
// process or dir behind. One pair for the whole file: the tests run in order.
//
// Nothing here asserts on timings: waits are bounded only so that a hang fails the test.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type Connection } from "../mod.ts";
import { type ReplicatedPair, STANDBY_NAME, startReplicatedPair } from "./_replication.ts";
import { assertPostgresError, eventually, rejection } from "./_helpers.ts";

const T = { timeout: 120_000 };
// The harness's scram user, over TCP without TLS (TLS is the single server's tests' business).
const PLAIN = { sslmode: "disable" };
const WRITERS = 5;
// The primary is stopped once this many inserts are acknowledged, while more are in flight.
const ACKED_BEFORE_STOP = 100;

let pairPromise: Promise<ReplicatedPair> | undefined;
function pair(): Promise<ReplicatedPair> {
  return pairPromise ??= startReplicatedPair();
}

const open: Connection[] = [];
async function connectTo(url: string): Promise<Connection> {
  const conn = await connect(url);
  open.push(conn);
  return conn;
}

// A failed test still stops the servers and closes what it opened.
after(async () => {
  await Promise.allSettled(open.map((c) => c.close()));
  if (pairPromise) await (await pairPromise.catch(() => undefined))?.stop();
});

// ---------------------------------------------------------------------------------------------
// Processes, from /proc: a pid with its start time, so that a pid reused by another process of
// the machine is not taken for a server process still running.

interface Proc {
  pid: number;
  start: string;
}

// Fields after the command name (which may hold spaces and parentheses): state, ppid, ...
function statOf(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

function alive(proc: Proc): boolean {
  const fields = statOf(proc.pid);
  return fields !== undefined && fields[0] !== "Z" && fields[19] === proc.start;
}

/** The postmaster of `dataDir` and its children, now. */
function serverProcesses(dataDir: string): Proc[] {
  const postmaster = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  const procs: Proc[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const fields = statOf(pid);
    if (fields && (pid === postmaster || Number(fields[1]) === postmaster)) {
      procs.push({ pid, start: fields[19] });
    }
  }
  assert.ok(procs.some((p) => p.pid === postmaster), `postmaster ${postmaster} not running`);
  return procs;
}

// Recorded by the first test, checked by the last.
const started: { procs: Proc[]; dirs: string[] } = { procs: [], dirs: [] };

// ---------------------------------------------------------------------------------------------

test("startReplicatedPair starts a primary and a synchronous streaming standby", T, async () => {
  const begun = performance.now();
  const p = await pair();
  console.log(`pair started in ${Math.round(performance.now() - begun)} ms`);
  const { primary, standby } = p;
  for (const node of [primary, standby]) {
    started.procs.push(...serverProcesses(node.dataDir));
    started.dirs.push(node.dir);
  }
  assert.deepEqual(await p.replication(), { state: "streaming", syncState: "sync" });
  assert.equal(await primary.psql("show synchronous_commit"), "remote_apply");
  assert.equal(await primary.psql("show synchronous_standby_names"), STANDBY_NAME);
  assert.equal(await primary.role(), "primary");
  assert.equal(await standby.role(), "standby");
  assert.notEqual(primary.port, standby.port);
  // The harness's roles and passwords on both (the standby's are the primary's, replicated).
  for (const node of [primary, standby]) {
    await using conn = await connect(node.url("scram", PLAIN));
    const { rows } = await conn.query("select current_user as user");
    assert.equal(rows[0].user, "scram");
  }
});

test("a commit on the primary is on the standby when it returns (remote_apply)", T, async () => {
  const { primary, standby } = await pair();
  const writer = await connectTo(primary.url("scram", PLAIN));
  const reader = await connectTo(standby.url("scram", PLAIN));
  await writer.query("create table visible (id int primary key)");
  for (let id = 1; id <= 30; id++) {
    if (id % 2 === 0) {
      await writer.query("insert into visible values ($1)", [id]);
    } else {
      await writer.query("begin");
      await writer.query("insert into visible values ($1)", [id]);
      await writer.query("commit");
    }
    const { rows } = await reader.query("select count(*)::int as n, max(id) as last from visible");
    assert.deepEqual({ ...rows[0] }, { n: id, last: id }, `after commit ${id}`);
  }
  // A commit that does not wait for the standby is there once it has caught up.
  await writer.query("set synchronous_commit = local");
  await writer.query("insert into visible values (31)");
  await writer.query("reset synchronous_commit");
  await (await pair()).waitForStandbyCaughtUp();
  const { rows } = await reader.query("select count(*)::int as n from visible");
  assert.equal(rows[0].n, 31);
});

test("the standby refuses writes with SQLSTATE 25006", T, async () => {
  const { standby } = await pair();
  const conn = await connectTo(standby.url("scram", PLAIN));
  assertPostgresError(await rejection(conn.query("insert into visible values (-1)")), "25006");
  assertPostgresError(await rejection(conn.query("create table refused (id int)")), "25006");
  // Reads still work on the same session.
  const { rows } = await conn.query("select count(*)::int as n from visible");
  assert.equal(rows[0].n, 31);
});

test("a standby stopped and started again is the synchronous standby again", T, async () => {
  const p = await pair();
  await p.standby.stop("fast");
  // The primary's walsender sees the connection end on its own time.
  await eventually("the standby gone from pg_stat_replication", async () => {
    return (await p.replication()) === undefined;
  });
  await p.standby.start();
  await p.waitForSynchronousStandby();
  assert.deepEqual(await p.replication(), { state: "streaming", syncState: "sync" });
  // Commits go through and reach it at once again.
  await p.primary.psql("insert into visible values (32)");
  assert.equal(await p.standby.psql("select count(*) from visible"), "32");
});

test("pg_is_in_recovery() and in_hot_standby tell the primary from the standby", T, async () => {
  const { primary, standby } = await pair();
  const expected = [[primary, false, "off"], [standby, true, "on"]] as const;
  for (const [node, inRecovery, hotStandby] of expected) {
    await using conn = await connect(node.url("scram", PLAIN));
    assert.equal(conn.parameters.in_hot_standby, hotStandby, `port ${node.port}`);
    const { rows } = await conn.query("select pg_is_in_recovery() as r");
    assert.equal(rows[0].r, inRecovery, `port ${node.port}`);
  }
});

test(
  "promote after an immediate stop of the primary keeps every acknowledged commit",
  T,
  async () => {
    const { primary, standby } = await pair();
    const setup = await connectTo(primary.url("scram", PLAIN));
    await setup.query("create table ledger (id int primary key, writer int not null)");
    // A session on the standby from before the failover, to see in_hot_standby change.
    const watcher = await connectTo(standby.url("scram", PLAIN));
    assert.equal(watcher.parameters.in_hot_standby, "on");

    // Writers insert one row after another until the primary goes away under them.
    const acked = new Set<number>();
    const attempted = new Set<number>();
    const writers = await Promise.all(
      Array.from({ length: WRITERS }, () => connectTo(primary.url("scram", PLAIN))),
    );
    const ends = writers.map(async (conn, w) => {
      for (let n = 1;; n++) {
        const id = w * 1_000_000 + n;
        attempted.add(id);
        try {
          await conn.query("insert into ledger values ($1, $2)", [id, w]);
        } catch (error) {
          return error;
        }
        acked.add(id);
      }
    });
    await eventually(`${ACKED_BEFORE_STOP} acknowledged inserts`, () => {
      return acked.size >= ACKED_BEFORE_STOP;
    }, 60_000);
    await primary.stop("immediate");
    const errors = await Promise.all(ends);
    assert.equal(errors.length, WRITERS);
    assert.equal(await standby.role(), "standby");

    const promoting = performance.now();
    await standby.promote();
    const promoteMs = Math.round(performance.now() - promoting);
    assert.equal(await standby.role(), "primary");

    // Every acknowledged row is there; any other row is one that was in flight at the stop.
    const conn = await connectTo(standby.url("scram", PLAIN));
    assert.equal(conn.parameters.in_hot_standby, "off");
    const { rows } = await conn.query("select id from ledger");
    const present = new Set(rows.map((r) => r.id as number));
    const lost = [...acked].filter((id) => !present.has(id));
    assert.deepEqual(lost, [], `acknowledged but lost (${acked.size} acknowledged)`);
    const unknown = [...present].filter((id) => !attempted.has(id));
    assert.deepEqual(unknown, []);
    assert.ok(present.size - acked.size <= WRITERS, `${present.size} rows, ${acked.size} acked`);
    console.log(
      `failover: ${acked.size} inserts acknowledged, 0 lost, ${present.size - acked.size} of ` +
        `${WRITERS} in flight committed; promoted (writes accepted) in ${promoteMs} ms`,
    );

    // It takes writes now, as a primary of its own (no synchronous standby to wait for).
    await conn.query("insert into ledger values (-1, -1)");
    const total = await conn.query("select count(*)::int as n from ledger");
    assert.equal(total.rows[0].n, present.size + 1);
    // The server reports the change to a session opened before it, at its next query.
    await watcher.query("select 1");
    assert.equal(watcher.parameters.in_hot_standby, "off");
  },
);

test("ReplicatedPair.stop leaves no server process and no dir behind", T, async () => {
  const p = await pair();
  assert.ok(started.procs.length >= 2, "the first test recorded the server processes");
  // And those of the standby since its restart.
  started.procs.push(...serverProcesses(p.standby.dataDir));
  await p.stop();
  const left = started.procs.filter(alive).map((proc) => proc.pid);
  assert.deepEqual(left, [], "server processes still running");
  for (const dir of started.dirs) assert.equal(existsSync(dir), false, `${dir} is still there`);
  await p.stop(); // idempotent
});
