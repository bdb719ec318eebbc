// QueuePool under 300 callers while the database goes away and comes back: PostgreSQL
// restarted with `-m fast` and `-m immediate` (a crash), with and without prePing; every pool
// backend terminated; PgBouncer restarted in front of the server.
//
// Each caller runs requests one after another (a ledger insert committed, one rolled back on
// purpose, a read), each recorded with when it started. The outage has three marks: the stop
// issued, the server down (the stop finished and every connection made before it has seen its
// end), the server back. What the pool promises:
//
// - no acknowledged commit is lost, no rolled-back write is visible;
// - only requests in flight when the server went down (started before "down") fail, each with
//   a disconnect error (CONNECTION_LOST/CLOSED, SQLSTATE 08xxx or 57P0x);
// - every request started after that succeeds once the server is back: checkouts made while
//   it is down retry their transient connect errors until their own deadline (30 s here).
//
// The restarts run on a server of this file's own (tests/_server.ts startOwnServer), with
// synchronous_commit on, so that an immediate shutdown loses no acknowledged commit on the
// server's side either. Each run prints a row of the restart table; all rows again at the end.
//
// Nothing here asserts on timings: waits are bounded only so that a hang fails the test.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { connect, type Connection, QueuePool } from "../mod.ts";
import {
  checkLedger,
  codeOf,
  failureCodes,
  ledgerTable,
  Load,
  type LoadRecord,
  type Outage,
  summarize,
  TABLE_HEADER,
  tableRow,
} from "./_load.ts";
import { getServer, type OwnServer, startOwnServer, type TestServer } from "./_server.ts";
import { startPgBouncer } from "./_pgbouncer.ts";
import { isDeno } from "./_transports.ts";
import { eventually, within } from "./_helpers.ts";

const T = { timeout: 180_000 };
const PLAIN = { sslmode: "disable" };
const CALLERS = 300;
const RUNTIME = isDeno ? "deno" : "node";
const RUN = `${RUNTIME}_${Math.random().toString(36).slice(2, 8)}`;

let ownPromise: Promise<OwnServer> | undefined;
/** This file's own server, started on first use. */
function ownServer(): Promise<OwnServer> {
  return ownPromise ??= startOwnServer({ config: "synchronous_commit = on" });
}

const rows: string[] = [];
after(async () => {
  if (ownPromise) (await ownPromise.catch(() => undefined))?.close();
  if (rows.length > 0) {
    console.log(`\nRestart table (${RUNTIME}):\n${TABLE_HEADER}\n${rows.join("\n")}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** A pool of 10 + 10 over `url`, whose creator keeps every connection it made. */
function trackedPool(
  url: string,
  options: { prePing: boolean; pooler?: "transaction" },
): { pool: QueuePool<Connection>; made: Connection[] } {
  const made: Connection[] = [];
  const pool = new QueuePool<Connection>(async (signal) => {
    const connection = await connect(url, {
      signal,
      applicationName: `restart_${RUN}`,
      ...(options.pooler ? { pooler: options.pooler } : {}),
    });
    made.push(connection);
    return connection;
  }, { poolSize: 10, maxOverflow: 10, prePing: options.prePing });
  return { pool, made };
}

/** Waits until every connection in `connections` has seen its end. */
async function allClosed(connections: readonly Connection[], what: string): Promise<void> {
  await eventually(
    `${what}: every connection made before sees it`,
    () => connections.every((c) => c.closed),
    60_000,
  );
}

function showRecords(records: readonly LoadRecord[]): string {
  return records.slice(0, 5).map((r) =>
    `${r.kind} ${r.key} started ${Math.round(r.startedAt)}: ${codeOf(r.error)} ` +
    inspect(r.error, { depth: 1 }).split("\n").slice(0, 3).join(" ")
  ).join("\n") + (records.length > 5 ? `\n... and ${records.length - 5} more` : "");
}

/**
 * Runs the load on `pool`, lets `fault` take the database away and bring it back (it returns
 * the outage's marks), then runs until every caller has finished two requests started after
 * the database was back, and checks the ledger and the records.
 */
async function underLoad(options: {
  label: { fault: string; prePing: boolean };
  pool: QueuePool<Connection>;
  /** Runs SQL on the database that holds the ledger. */
  psql: (sql: string) => Promise<string>;
  fault: () => Promise<Outage>;
}): Promise<void> {
  const { pool, psql, label } = options;
  const table = `ledger_${RUN}_${label.fault.replace(/\W+/g, "_")}_${label.prePing ? 1 : 0}`;
  await psql(ledgerTable(table));
  const load = new Load({ pool, callers: CALLERS, table }).start();
  let outage: Outage | undefined;
  let recovered = false;
  try {
    // Warm up: the pool full, every caller served at least twice.
    await eventually("the warm-up", () => load.everyCallerDone(0, 2), 60_000);
    outage = await options.fault();
    const back = outage.readyAt;
    await eventually(
      "every caller served after the outage",
      () => load.everyCallerDone(back, 2),
      60_000,
    )
      .then(() => recovered = true, () => {});
  } finally {
    await within(load.stop(), 60_000, "the callers stopping");
  }
  const keys = (await psql(`select key from ${table}`)).split("\n").filter(Boolean);
  await psql(`drop table ${table}`);
  const ledger = checkLedger(load.records, keys);
  const summary = summarize(load.records, outage);
  const row = tableRow({ runtime: RUNTIME, ...label }, summary, ledger, failureCodes(load.records));
  rows.push(row);
  console.log(`${TABLE_HEADER}\n${row}`);

  assert.deepEqual(ledger.lost, [], "acknowledged commits missing from the ledger");
  assert.deepEqual(ledger.visibleRollbacks, [], "rolled-back writes visible");
  assert.equal(
    summary.failedLater.length,
    0,
    `requests started after the database was down failed:\n${showRecords(summary.failedLater)}`,
  );
  assert.equal(
    summary.untyped.length,
    0,
    `in-flight requests failed with other than a disconnect error:\n${
      showRecords(summary.untyped)
    }`,
  );
  assert.ok(recovered, "every caller was served again after the outage");
  const stats = pool.stats();
  assert.equal(stats.checkedOut, 0, pool.status());
  assert.equal(stats.requestsWaiting, 0, pool.status());
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL restarted

for (const mode of ["fast", "immediate"] as const) {
  for (const prePing of [false, true]) {
    test(
      `QueuePool${prePing ? " with prePing" : ""} fails only in-flight requests when the ` +
        `server restarts (-m ${mode}) under ${CALLERS} callers`,
      T,
      async () => {
        const server = await ownServer();
        const { pool, made } = trackedPool(server.url("scram", PLAIN), { prePing });
        try {
          await underLoad({
            label: { fault: `restart -m ${mode}`, prePing },
            pool,
            psql: (sql) => server.psql(sql),
            async fault() {
              const stopAt = performance.now();
              await server.shutdown(mode);
              await allClosed([...made], "the shutdown");
              const downAt = performance.now();
              await server.start();
              return { stopAt, downAt, readyAt: performance.now() };
            },
          });
        } finally {
          await within(pool.close(), 30_000, "closing the pool");
        }
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Every backend terminated

test(
  `QueuePool fails only in-flight requests when its backends are terminated under ${CALLERS} ` +
    "callers",
  T,
  async () => {
    const server = await ownServer();
    const { pool, made } = trackedPool(server.url("scram", PLAIN), { prePing: false });
    const killer = await connect(server.url("postgres", PLAIN));
    try {
      await underLoad({
        label: { fault: "pg_terminate_backend", prePing: false },
        pool,
        psql: (sql) => server.psql(sql),
        async fault() {
          // Those whose login has finished (a backend pid known); the others live on.
          const victims = made.filter((c) => !c.closed && c.processId > 0);
          const stopAt = performance.now();
          // In the select list, not in WHERE: the planner may call a WHERE function on every row.
          const { rows } = await killer.query<{ killed: boolean }>(
            "select pg_terminate_backend(pid) as killed from unnest($1::int[]) as pid",
            [victims.map((c) => c.processId)],
          );
          assert.ok(rows.every((r) => r.killed), "every victim terminated");
          await allClosed(victims, "the termination");
          const downAt = performance.now();
          return { stopAt, downAt, readyAt: downAt };
        },
      });
    } finally {
      await killer.close();
      await within(pool.close(), 30_000, "closing the pool");
    }
  },
);

// ---------------------------------------------------------------------------------------------
// PgBouncer restarted

test(
  `QueuePool behind PgBouncer fails only in-flight requests when PgBouncer restarts under ` +
    `${CALLERS} callers`,
  T,
  async () => {
    const server: TestServer = await getServer();
    const bouncer = await startPgBouncer({ poolSize: 20, maxClientConn: 400 });
    const { pool, made } = trackedPool(bouncer.url("scram"), {
      prePing: false,
      pooler: "transaction",
    });
    try {
      await underLoad({
        label: { fault: "pgbouncer restart", prePing: false },
        pool,
        psql: (sql) => server.psql(sql),
        async fault() {
          const stopAt = performance.now();
          let downAt = 0;
          await bouncer.restart({
            onDown: async () => {
              await allClosed([...made], "PgBouncer's stop");
              downAt = performance.now();
            },
          });
          return { stopAt, downAt, readyAt: performance.now() };
        },
      });
    } finally {
      await within(pool.close(), 30_000, "closing the pool");
      await bouncer.stop();
    }
  },
);
