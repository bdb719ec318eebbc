// Failover in the pool (issue 15), against a real primary and its synchronous streaming standby
// (tests/_replication.ts, `synchronous_commit = remote_apply`): 50 callers write through one
// pool over the host list `primary,standby` with `target_session_attrs=read-write` while the
// primary is stopped with `-m immediate` and, a moment later, the standby promoted. Asserted:
// no acknowledged write is lost; only writes on the old primary as it went down fail, each with
// a lost connection (none with a timeout or a refusal: a caller that came during the outage
// waited for the promotion within its deadline), none once the new primary has served; and
// every caller writes again after the promotion. The figures (time from the promotion to the first success, failed writes)
// are printed for the README's Reliability section, not asserted: this machine is shared.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, createPool, type PoolError, type PostgresError } from "../mod.ts";
import { startReplicatedPair } from "./_replication.ts";
import { startOwnServer } from "./_server.ts";

const CALLERS = 50;
/** Acknowledged writes before the primary is stopped, and per caller after the promotion. */
const BEFORE = 500;
const AFTER_EACH = 5;

test(
  "a pool over primary,standby with read-write fails over to the promoted standby, losing no acknowledged write",
  {
    timeout: 180_000,
  },
  async () => {
    const pair = await startReplicatedPair();
    try {
      const { primary, standby } = pair;
      const base = new URL(primary.url("scram", { sslmode: "disable" }));
      const url = `postgres://${base.username}:${base.password}@${primary.host}:${primary.port},` +
        `${standby.host}:${standby.port}${base.pathname}?sslmode=disable` +
        "&target_session_attrs=read-write&connect_timeout=5";
      await primary.psql(
        "create table writes (id bigserial primary key, caller int, seq int); " +
          "grant all on writes to public; grant all on sequence writes_id_seq to public",
      );

      await using pool = createPool(url, { poolSize: 10, maxOverflow: 0, timeout: 60_000 });
      const acknowledged: { caller: number; seq: number }[] = [];
      const failures: unknown[] = [];
      let phase: "before" | "outage" | "after" = "before";
      let stoppedAt = 0;
      let promotedAt = 0;
      let firstAfter = 0;
      /** Writes that failed once the new primary had served one: there must be none. */
      let failedAfterRecovery = 0;
      const afterPromotion = new Array(CALLERS).fill(0);

      const caller = async (id: number) => {
        for (let seq = 0;; seq++) {
          if (phase === "after" && afterPromotion[id] >= AFTER_EACH) return;
          try {
            await pool.query("insert into writes (caller, seq) values ($1, $2)", [id, seq]);
          } catch (error) {
            failures.push(error);
            if (firstAfter !== 0) failedAfterRecovery++;
            // Bounded: a write that fails at once again and again ends the test, not a hang.
            if (failures.length > 3 * CALLERS) throw error;
            continue;
          }
          acknowledged.push({ caller: id, seq });
          if (phase === "after") {
            if (firstAfter === 0) firstAfter = performance.now();
            afterPromotion[id]++;
          }
        }
      };
      const callers = Array.from({ length: CALLERS }, (_, i) => caller(i));

      // Writes flow; then the primary goes down at once, and the standby is promoted.
      while (acknowledged.length < BEFORE) await new Promise((r) => setTimeout(r, 10));
      phase = "outage";
      const ackedAtStop = acknowledged.length;
      await primary.stop("immediate");
      stoppedAt = performance.now();
      await new Promise((r) => setTimeout(r, 500)); // callers keep coming meanwhile
      await standby.promote();
      promotedAt = performance.now();
      phase = "after";
      await Promise.all(callers);

      // Every acknowledged write is on the promoted standby.
      await using check = await connect(standby.url("scram", { sslmode: "disable" }));
      const { rows } = await check.query<{ caller: number; seq: number }>(
        "select caller, seq from writes",
      );
      const stored = new Set(rows.map((r) => `${r.caller}:${r.seq}`));
      const lost = acknowledged.filter((w) => !stored.has(`${w.caller}:${w.seq}`));
      assert.equal(lost.length, 0, `lost ${lost.length} acknowledged writes`);
      // Failures: writes in flight at the stop only, at most one per caller, connection errors.
      // Failures: writes on the old primary while it went down (a caller whose write failed
      // may retry onto another of its connections before the pool hears that one is gone too),
      // each a lost connection; none with a timeout or a refusal (callers that came during the
      // outage waited for the promotion), and none once the new primary served.
      assert.ok(
        failures.length <= 3 * CALLERS,
        `${failures.length} failed writes: ${
          [...new Set(failures.map((e) => String(e).slice(0, 160)))].join(" | ")
        }`,
      );
      assert.equal(failedAfterRecovery, 0, "a write failed after the new primary served");
      for (const error of failures) {
        const code = (error as { code?: string }).code;
        assert.ok(
          code === "CONNECTION_LOST" || code === "CONNECTION_CLOSED" || code === "57P01",
          `a write failed with ${String(error)}`,
        );
      }
      assert.ok(afterPromotion.every((n) => n >= AFTER_EACH));
      console.log(
        `failover: ${ackedAtStop} writes acknowledged before the stop, ${acknowledged.length} in ` +
          `all; ${failures.length} failed (on the old primary as it went down), 0 lost; promotion ` +
          `${Math.round(promotedAt - stoppedAt)} ms after the stop; first write on the new ` +
          `primary ${Math.round(firstAfter - promotedAt)} ms after the promotion`,
      );
    } finally {
      await pair.stop();
    }
  },
);

test("a read-write pool retires every connection when its server turns read-only", {
  timeout: 120_000,
}, async () => {
  const server = await startOwnServer();
  try {
    const url = server.url("scram", { sslmode: "disable", target_session_attrs: "read-write" });
    await using pool = createPool(url, { poolSize: 3, maxOverflow: 0, timeout: 2000 });
    await pool.query("create table t (n int)");
    // Three connections, each checked out at once (pool.query would pipeline onto one).
    const pids = async () => {
      const held = await Promise.all([1, 2, 3].map(() => pool.connect()));
      const found = await Promise.all(
        held.map(async (c) =>
          (await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0].pid
        ),
      );
      await Promise.all(held.map((c) => c.release()));
      return new Set(found);
    };
    const before = await pids();
    assert.equal(before.size, 3);
    await server.psql("alter system set default_transaction_read_only = on");
    await server.psql("select pg_reload_conf()");
    // The first write refused as read-only retires them all; connecting again is refused too.
    // (A backend reads the reloaded setting at its next statement once signalled: bounded tries.)
    let refused: unknown;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      refused = await pool.query("insert into t values (1)").then(() => undefined, (e) => e);
      if (refused === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((refused as PostgresError)?.code, "25006", String(refused));
    const timedOut = await pool.query("insert into t values (2)").then(() => undefined, (e) => e);
    assert.equal((timedOut as PoolError)?.code, "POOL_TIMEOUT", String(timedOut));
    assert.match(String((timedOut as PoolError).cause), /is read-only/);
    // Writable again: new connections, none of the old ones.
    await server.psql("alter system reset default_transaction_read_only");
    await server.psql("select pg_reload_conf()");
    await pool.query("insert into t values (3)", [], { timeout: 30_000 });
    const after = await pids();
    for (const p of after) assert.ok(!before.has(p), `connection ${p} outlived the demotion`);
  } finally {
    server.close();
  }
});
