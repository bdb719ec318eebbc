// edgepool behind a real PgBouncer (tests/_pgbouncer.ts) in front of the real PostgreSQL 15 of
// tests/_server.ts: in transaction mode, 200 callers through a NullPool of 50 share PgBouncer's
// 5 server connections; parameterised queries go as Parse/Bind/Execute/Sync on the unnamed
// statement, so no "prepared statement" error can come from a server connection changing hands;
// concurrent transactions keep their isolation (no lost update); failed ones roll back; a
// PgBouncer restart under load costs only the calls in flight, with connection errors, never a
// hang. Then session mode, `pooler: "auto"` with `pgbouncer=true`, the login methods, and the
// startup parameters PgBouncer 1.18 refuses.
//
// Nothing here measures speed: waits are bounded (`within`) only so that a hang fails the test
// instead of stalling the run, and loops are bounded by counts.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  ConnectionError,
  createPool,
  type Pool,
  PoolError,
  PostgresError,
} from "../mod.ts";
import { parseConfig } from "../src/config.ts";
import { getServer, type TestServer } from "./_server.ts";
import { type PgBouncer, startPgBouncer } from "./_pgbouncer.ts";
import {
  assertPostgresError,
  codeOf,
  delay,
  rejection,
  Resolved,
  show,
  uniqueName,
  within,
} from "./_helpers.ts";

const T = { timeout: 60_000 };

let server: TestServer;
let bouncer: PgBouncer;
/** Every error any test saw, checked for "prepared statement" errors at the end. */
const seen: unknown[] = [];

before(async () => {
  server = await getServer();
  bouncer = await startPgBouncer({ poolMode: "transaction", poolSize: 5 });
});

after(async () => {
  await bouncer?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** `within`, with pgbouncer's log tail in the failure. */
function withinLogged<R>(promise: Promise<R>, ms: number, what: string): Promise<R> {
  return within(promise, ms, what, () => bouncer.logTail(10));
}

/** A table name no other test or run uses. */
function tableName(label: string): string {
  return uniqueName(`pgb_${label}`);
}

/** A NullPool through `through` (default: the transaction-mode PgBouncer). */
function nullPool(
  max: number,
  options: { through?: PgBouncer; pooler?: "transaction" | "session"; statementCache?: number } =
    {},
): Pool<Connection> {
  const through = options.through ?? bouncer;
  const pool = createPool(through.url(), {
    poolClass: "NullPool",
    max,
    pooler: options.pooler ?? "transaction",
    statementCache: options.statementCache,
    timeout: 20_000,
  });
  assert.equal(pool.describe().pooler, options.pooler ?? "transaction", pool.status());
  return pool;
}

/** Runs `sql` on the server itself, not through PgBouncer. */
async function direct(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]> {
  const connection = await connect(server.url("scram", { sslmode: "disable" }));
  try {
    return (await connection.query(sql, params)).rows;
  } finally {
    await connection.close();
  }
}

/** A server connection changing hands under a named statement would give one of these. */
function isPreparedStatementError(error: unknown): boolean {
  const code = codeOf(error);
  return code === "26000" || code === "42P05" ||
    /prepared statement/i.test(error instanceof Error ? error.message : String(error));
}

/** Notes the error of every settled outcome in `seen`. */
function record(outcomes: unknown[]): void {
  for (const outcome of outcomes) if (!(outcome instanceof Resolved)) seen.push(outcome);
}

/** Asserts that every outcome resolved, and returns the values. */
function values<T>(outcomes: unknown[], what: string): T[] {
  record(outcomes);
  return outcomes.map((outcome, i) => {
    assert.ok(outcome instanceof Resolved, `${what} ${i}: ${show(outcome)}`);
    return outcome.value as T;
  });
}

// ---------------------------------------------------------------------------------------------
// Transaction mode

test("PgBouncer starts in transaction mode in front of the test server", T, async () => {
  const connection = await connect(bouncer.url());
  try {
    const { rows } = await connection.query<{ user: string }>("select current_user as user");
    assert.equal(rows.length, 1);
    if (server.managed) assert.equal(rows[0].user, "scram");
  } finally {
    await connection.close();
  }
});

test("200 callers through a NullPool of 50 share PgBouncer's 5 server connections", T, async () => {
  const pool = nullPool(50);
  try {
    let open = 0;
    let peakOpen = 0;
    pool.on("connect", () => peakOpen = Math.max(peakOpen, ++open));
    pool.on("close", () => open--);
    const outcomes = await withinLogged(
      Promise.all(
        Array.from(
          { length: 200 },
          (_, i) =>
            rejection(pool.query<{ n: number; text: string; pid: number }>(
              "select $1::int as n, $2::text as text, pg_backend_pid() as pid",
              [i, `caller ${i}`],
            )),
        ),
      ),
      30_000,
      "200 queries",
    );
    const results = values<{ rows: { n: number; text: string; pid: number }[] }>(
      outcomes,
      "query",
    );
    results.forEach((result, i) => {
      assert.equal(result.rows.length, 1);
      assert.equal(result.rows[0].n, i);
      assert.equal(result.rows[0].text, `caller ${i}`);
    });
    // 200 client connections, yet only PgBouncer's own server connections ran the queries.
    const pids = new Set(results.map((r) => r.rows[0].pid));
    assert.ok(pids.size <= bouncer.poolSize, `${pids.size} server backends: ${[...pids]}`);
    assert.ok(peakOpen <= 50, `${peakOpen} client connections open at once`);
    // (A NullPool hands a returned connection straight to a waiter, as psycopg's does: fewer
    // than 200 logins.)
    assert.ok(pool.stats().connectionsNum <= 200, pool.status());
    assert.equal(pool.stats().requestsNum, 200);
    assert.equal(pool.stats().requestsErrors, 0);
  } finally {
    await withinLogged(pool.close(), 10_000, "close");
  }
});

test("parameterised queries of every kind go through the unnamed statement", T, async () => {
  // The same texts over and over from many clients on few server connections: a named
  // statement prepared on one server connection and used on another would fail here.
  const pool = nullPool(20);
  const queries: [string, unknown[], unknown][] = [
    ["select $1::int + $2::int as v", [40, 2], 42],
    ["select $1::text || $2::text as v", ["edge", "pool"], "edgepool"],
    ["select $1::bigint as v", ["9007199254740993"], "9007199254740993"],
    ["select $1::numeric * 2 as v", ["1.25"], "2.50"],
    ["select $1::bool as v", [true], true],
    ["select $1::text is null as v", [null], true],
    ["select $1::int[] as v", [[1, 2, 3]], [1, 2, 3]],
    ["select ($1::jsonb)->>'k' as v", [JSON.stringify({ k: "value" })], "value"],
    ["select length($1::bytea) as v", [new Uint8Array([0, 1, 2, 255])], 4],
    ["select $1::text as v", ["naïve ☃ 'quoted' \"double\""], "naïve ☃ 'quoted' \"double\""],
  ];
  try {
    const outcomes = await withinLogged(
      Promise.all(Array.from({ length: 300 }, (_, i) => {
        const [sql, params] = queries[i % queries.length];
        return rejection(pool.query<{ v: unknown }>(sql, params));
      })),
      30_000,
      "300 queries",
    );
    const results = values<{ rows: { v: unknown }[] }>(outcomes, "query");
    results.forEach((result, i) => {
      const [sql, , expected] = queries[i % queries.length];
      assert.deepEqual(result.rows, [{ v: expected }], sql);
    });
    // No named statement of these is left on any server connection that ran them (other
    // tests' connections, with PgBouncer's URL but no pooler given, leave theirs).
    const named = values<{ rows: { n: number }[] }>(
      await withinLogged(
        Promise.all(Array.from({ length: 30 }, () =>
          rejection(pool.query<{ n: number }>(
            "select count(*)::int as n from pg_prepared_statements where statement = any($1)",
            [queries.map(([sql]) => sql)],
          )))),
        20_000,
        "counting prepared statements",
      ),
      "query",
    );
    for (const result of named) assert.deepEqual(result.rows, [{ n: 0 }]);
    // Several statements in one checkout, outside a transaction: each may run on another
    // server connection, and each is parsed anew.
    const checkedOut = await pool.connect();
    try {
      for (let i = 0; i < 20; i++) {
        const { rows } = await checkedOut.query<{ v: number }>("select $1::int as v", [i]);
        assert.deepEqual(rows, [{ v: i }]);
      }
    } finally {
      await checkedOut.release();
    }
  } finally {
    await withinLogged(pool.close(), 10_000, "close");
  }
});

test(
  "a transaction pooler the URL does not show: the default statement cache gets out of the way",
  T,
  async () => {
    // No sign of PgBouncer in its URL: pooler "auto" guesses "none", and connections start with
    // the (cautious) default statement cache. Few server connections under many clients: a
    // statement prepared on one server connection is soon missing on another.
    const pool = createPool(bouncer.url(), {
      poolClass: "QueuePool",
      poolSize: 10,
      timeout: 20_000,
    });
    assert.equal(pool.describe().pooler, "none");
    try {
      const queries = Array.from(
        { length: 400 },
        (_, i) => rejection(pool.query<{ v: number }>(`select $1::int + ${i % 8} as v`, [i])),
      );
      const transactions = Array.from(
        { length: 20 },
        (_, i) =>
          rejection(pool.transaction(async (tx) => {
            const a = await tx.query<{ v: number }>("select $1::int as v", [i]);
            const b = await tx.query<{ v: number }>("select $1::int + 1 as v", [a.rows[0].v]);
            return b.rows[0].v;
          })),
      );
      const results = values<{ rows: { v: number }[] }>(
        await withinLogged(Promise.all(queries), 30_000, "400 queries"),
        "query",
      );
      results.forEach((result, i) => assert.deepEqual(result.rows, [{ v: i + (i % 8) }]));
      const sums = values<number>(
        await withinLogged(Promise.all(transactions), 30_000, "20 transactions"),
        "transaction",
      );
      assert.deepEqual(sums, Array.from({ length: 20 }, (_, i) => i + 1));
    } finally {
      await withinLogged(pool.close(), 10_000, "close");
    }
  },
);

test("concurrent transactions keep their isolation: no lost update", T, async () => {
  const counters = tableName("counters");
  const log = tableName("log");
  const COUNTERS = 8;
  const TRANSACTIONS = 160;
  await direct(
    `create table ${counters} (id int primary key, n int not null); ` +
      `create table ${log} (tx int primary key, counter int not null, pid int not null)`,
  );
  await direct(
    `insert into ${counters} select g, 0 from generate_series(0, ${COUNTERS - 1}) as g`,
  );
  const pool = nullPool(40);
  try {
    const run = (tx: number) =>
      pool.transaction(async (c) => {
        const id = tx % COUNTERS;
        const first = await c.query<{ pid: number; xid: string }>(
          "select pg_backend_pid() as pid, txid_current()::text as xid",
        );
        // Read, let the others run, write back: correct only if the row lock and every
        // statement stay on one server connection until COMMIT.
        const read = await c.query<{ n: number }>(
          `select n from ${counters} where id = $1 for update`,
          [id],
        );
        await delay(tx % 3);
        await c.query(`update ${counters} set n = $2 where id = $1`, [id, read.rows[0].n + 1]);
        await c.query(`insert into ${log} values ($1, $2, pg_backend_pid())`, [tx, id]);
        const last = await c.query<{ pid: number; xid: string }>(
          "select pg_backend_pid() as pid, txid_current()::text as xid",
        );
        assert.deepEqual(last.rows, first.rows, `transaction ${tx} changed server connection`);
        return first.rows[0].pid;
      });
    const outcomes = await withinLogged(
      Promise.all(Array.from({ length: TRANSACTIONS }, (_, tx) => rejection(run(tx)))),
      40_000,
      `${TRANSACTIONS} transactions`,
    );
    const pids = new Set(values<number>(outcomes, "transaction"));
    assert.ok(pids.size <= bouncer.poolSize, `${pids.size} server backends`);

    const totals = await direct(
      `select c.id, c.n, (select count(*)::int from ${log} l where l.counter = c.id) as logged ` +
        `from ${counters} c order by c.id`,
    );
    assert.equal(totals.length, COUNTERS);
    for (const row of totals) {
      assert.equal(row.n, TRANSACTIONS / COUNTERS, `counter ${row.id}: ${JSON.stringify(row)}`);
      assert.equal(row.logged, row.n, `counter ${row.id}: ${JSON.stringify(row)}`);
    }
  } finally {
    await withinLogged(pool.close(), 10_000, "close");
    await direct(`drop table if exists ${counters}, ${log}`);
  }
});

test("failed transactions roll back and leave PgBouncer's connections clean", T, async () => {
  const table = tableName("rollback");
  await direct(`create table ${table} (id int primary key)`);
  const pool = nullPool(30);
  const kinds = ["commit", "sql error", "thrown", "caught sql error"] as const;
  const thrown = new Error("no thanks");
  try {
    const run = (id: number) =>
      pool.transaction(async (c) => {
        await c.query(`insert into ${table} values ($1)`, [id]);
        switch (kinds[id % kinds.length]) {
          case "sql error":
            await c.query("select 1 / $1::int", [0]);
            break;
          case "thrown":
            throw thrown;
          case "caught sql error":
            seen.push(await rejection(c.query(`insert into ${table} values ($1)`, [id])));
            break;
        }
        return id;
      });
    const outcomes = await withinLogged(
      Promise.all(Array.from({ length: 120 }, (_, id) => rejection(run(id)))),
      30_000,
      "120 transactions",
    );
    record(outcomes);
    outcomes.forEach((outcome, id) => {
      const kind = kinds[id % kinds.length];
      if (kind === "commit") assert.ok(outcome instanceof Resolved, `${id}: ${show(outcome)}`);
      else if (kind === "sql error") assertPostgresError(outcome, "22012");
      else if (kind === "thrown") assert.equal(outcome, thrown);
      else {
        assert.ok(outcome instanceof PoolError, `${id}: ${show(outcome)}`);
        assert.equal(outcome.code, "ROLLED_BACK");
      }
    });
    const rows = await direct(`select id from ${table} order by id`);
    const committed = Array.from({ length: 120 }, (_, id) => id).filter((id) => id % 4 === 0);
    assert.deepEqual(rows.map((r) => r.id), committed);

    // A server session left inside a transaction, or an aborted one, would show in the status
    // of the next query's ReadyForQuery, which PgBouncer passes on from the server.
    const statuses = values<string>(
      await withinLogged(
        Promise.all(
          Array.from({ length: 50 }, async () => {
            const c = await pool.connect();
            try {
              await c.query("select 1");
              return c.transactionStatus;
            } finally {
              await c.release();
            }
          }).map(rejection),
        ),
        20_000,
        "queries after the failures",
      ),
      "query",
    );
    assert.deepEqual(statuses, statuses.map(() => "idle"));
  } finally {
    await withinLogged(pool.close(), 10_000, "close");
    await direct(`drop table if exists ${table}`);
  }
});

// PgBouncer stops (an immediate shutdown: every client dropped) and starts again on the same
// port while workers run transactions. What was in flight fails with a connection error or
// PgBouncer's own error, each call settles, every transaction reported committed is in the
// table, and once PgBouncer is back everything succeeds.

const RESTART_ERRORS = new Set([
  "CONNECTION_LOST",
  "CONNECTION_CLOSED",
  "CONNECT_FAILED",
  // PgBouncer's own errors: 08P01 is its catch-all ("server conn crashed?", "pgbouncer cannot
  // connect to server"); 57P01, admin shutdown.
  "08P01",
  "57P01",
]);

interface Attempt {
  worker: number;
  i: number;
  error: unknown;
}

test("a NullPool survives a PgBouncer restart under load", { timeout: 90_000 }, async () => {
  const table = tableName("restart");
  await direct(`create table ${table} (worker int, i int, primary key (worker, i))`);
  const pool = nullPool(20);
  const WORKERS = 20;
  const BEFORE = 5; // transactions each worker commits before the restart
  const AFTER = 5; // and after it
  // Per worker: a bound, so that a broken pool cannot loop forever, and at 10 ms per failure
  // longer than the hang guard below.
  const MAX_ATTEMPTS = 10_000;
  let restarted = false;
  let warmedUp = 0;
  let markWarm!: () => void;
  const warm = new Promise<void>((resolve) => markWarm = resolve);
  const committed: Attempt[] = [];
  const failed: Attempt[] = [];

  const worker = async (id: number): Promise<number> => {
    let ok = 0;
    let okAfter = 0;
    for (let i = 0; i < MAX_ATTEMPTS && okAfter < AFTER; i++) {
      const started = restarted;
      try {
        await pool.transaction(async (c) => {
          await c.query(`insert into ${table} values ($1, $2)`, [id, i]);
          await c.query("select pg_sleep(0.002)");
        });
      } catch (error) {
        failed.push({ worker: id, i, error });
        seen.push(error);
        await delay(10);
        continue;
      }
      committed.push({ worker: id, i, error: undefined });
      if (++ok === BEFORE && ++warmedUp === WORKERS) markWarm();
      if (started) okAfter++;
    }
    return okAfter;
  };

  try {
    const running = Array.from({ length: WORKERS }, (_, id) => worker(id));
    await withinLogged(warm, 30_000, "the workers warming up");
    await withinLogged(bouncer.restart(), 30_000, "the restart");
    restarted = true;
    const okAfter = await withinLogged(Promise.all(running), 60_000, "the workers");
    assert.deepEqual(okAfter, okAfter.map(() => AFTER), "every worker committed after it");

    const codes = new Map<string, number>();
    for (const f of failed) {
      const code = codeOf(f.error) ?? "none";
      codes.set(code, (codes.get(code) ?? 0) + 1);
      assert.ok(
        (f.error instanceof ConnectionError || f.error instanceof PostgresError) &&
          RESTART_ERRORS.has(code),
        `worker ${f.worker} attempt ${f.i}: ${show(f.error)}`,
      );
    }
    console.log(`PgBouncer restart: ${failed.length} failed calls (${[...codes]})`);

    // No lost write and no phantom: every reported commit is there, and nothing else but
    // what failed in flight (its COMMIT may have reached the server before the connection
    // broke).
    const rows = await direct(`select worker, i from ${table}`);
    const present = new Set(rows.map((r) => `${r.worker}/${r.i}`));
    const key = (a: Attempt) => `${a.worker}/${a.i}`;
    for (const c of committed) assert.ok(present.has(key(c)), `${key(c)} was committed`);
    const attempted = new Set([...committed, ...failed].map(key));
    for (const k of present) assert.ok(attempted.has(k), `${k} is in the table, never tried`);

    // And once it is back, nothing fails.
    const outcomes = await withinLogged(
      Promise.all(
        Array.from(
          { length: 100 },
          (_, i) => rejection(pool.query<{ n: number }>("select $1::int as n", [i])),
        ),
      ),
      20_000,
      "queries after the restart",
    );
    values<{ rows: { n: number }[] }>(outcomes, "query").forEach((result, i) => {
      assert.deepEqual(result.rows, [{ n: i }]);
    });
    assert.equal(pool.stats().checkedOut, 0);
  } finally {
    restarted = true;
    await withinLogged(pool.close(), 10_000, "close");
    await direct(`drop table if exists ${table}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Session mode, `auto`, logins, startup parameters

test("session mode: a checkout keeps its server session and statements", T, async () => {
  const session = await startPgBouncer({ poolMode: "session", poolSize: 3 });
  const pool = nullPool(3, { through: session, pooler: "session", statementCache: 10 });
  try {
    const run = async (n: number) => {
      const c = await pool.connect();
      try {
        // Session state between statements, outside any transaction. (A NullPool may hand the
        // connection to the next caller as it is, hence a table per caller.)
        await c.query(`create temp table t_${n} (n int)`);
        await c.query(`insert into t_${n} values ($1)`, [n]);
        await c.query(`set application_name = 'pgb_session_${n}'`);
        // Named statements from the cache, on the server session that prepared them.
        for (let i = 0; i < 5; i++) {
          const { rows } = await c.query<{ v: number }>("select $1::int * 2 as v", [i]);
          assert.deepEqual(rows, [{ v: i * 2 }]);
        }
        const prepared = await c.query<{ n: number }>(
          "select count(*)::int as n from pg_prepared_statements where statement like $1",
          ["select $1::int * 2%"],
        );
        assert.deepEqual(prepared.rows, [{ n: 1 }]);
        const { rows } = await c.query<{ n: number; app: string }>(
          `select n, current_setting('application_name') as app from t_${n}`,
        );
        return rows;
      } finally {
        await c.release();
      }
    };
    const outcomes = await withinLogged(
      Promise.all(Array.from({ length: 30 }, (_, n) => rejection(run(n)))),
      30_000,
      "30 sessions",
    );
    values<unknown[]>(outcomes, "session").forEach((rows, n) => {
      assert.deepEqual(rows, [{ n, app: `pgb_session_${n}` }]);
    });
  } finally {
    await withinLogged(pool.close(), 10_000, "close");
    await session.stop();
  }
});

test('pooler "auto" takes pgbouncer=true in the URL for transaction mode', T, async () => {
  const url = bouncer.url("scram", { pgbouncer: "true" });
  assert.equal(parseConfig(url).pooler, "transaction");
  assert.equal(parseConfig(bouncer.url()).pooler, "none");
  // What a transaction pooler cannot carry is refused before connecting.
  assert.throws(
    () => createPool(url, { poolClass: "NullPool", options: "-c search_path=public" }),
    TypeError,
  );
  assert.throws(() => createPool(url, { poolClass: "NullPool", statementCache: 10 }), TypeError);
  const pool = createPool(url, { poolClass: "NullPool", max: 10, timeout: 20_000 });
  assert.equal(pool.describe().pooler, "transaction", pool.status());
  try {
    const outcomes = await withinLogged(
      Promise.all(Array.from({ length: 40 }, (_, i) =>
        rejection(pool.transaction(async (c) => {
          const { rows } = await c.query<{ n: number }>("select $1::int as n", [i]);
          return rows[0].n;
        })))),
      20_000,
      "40 transactions",
    );
    assert.deepEqual(values<number>(outcomes, "transaction"), outcomes.map((_, i) => i));
  } finally {
    await withinLogged(pool.close(), 10_000, "close");
  }
});

test("logins through PgBouncer: SCRAM and MD5 clients, plain and SCRAM secrets", T, async (t) => {
  if (!server.managed) {
    t.skip("needs the harness users");
    return;
  }
  const cases = [
    { authType: "scram-sha-256", secrets: "plain", users: ["scram", "md5", "password", "trust"] },
    // SCRAM pass-through: PgBouncer logs in to the server with the keys the client proved.
    { authType: "scram-sha-256", secrets: "scram", users: ["scram"] },
    // MD5 to PgBouncer; with a SCRAM secret PgBouncer asks for SCRAM instead.
    { authType: "md5", secrets: "plain", users: ["scram", "md5"] },
    { authType: "md5", secrets: "scram", users: ["scram"] },
  ] as const;
  for (const c of cases) {
    const b = await startPgBouncer({ authType: c.authType, secrets: c.secrets, poolSize: 2 });
    try {
      for (const user of c.users) {
        const what = `${user} via auth_type ${c.authType}, ${c.secrets} secrets`;
        const connection = await withinLogged(connect(b.url(user)), 10_000, what).catch((error) => {
          throw new Error(`${what}: ${show(error)}\n${b.logTail(10)}`);
        });
        try {
          const { rows } = await connection.query("select current_user as u, $1::int as n", [1]);
          assert.deepEqual(rows, [{ u: user, n: 1 }], what);
        } finally {
          await connection.close();
        }
      }
      const wrong = await rejection(connect(b.url("scram").replace("scram_pw", "wrong")));
      seen.push(wrong);
      assertPostgresError(wrong, "08P01");
      // "SASL authentication failed", or "password authentication failed" for MD5.
      assert.match((wrong as PostgresError).message, /authentication failed/);
    } finally {
      await b.stop();
    }
  }
});

test("PgBouncer 1.18 refuses the options startup parameter, with an error", T, async () => {
  // Told there is no pooler, edgepool sends it, and PgBouncer says no (the reason edgepool
  // refuses it up front for a transaction pooler).
  const error = await withinLogged(
    rejection(connect(bouncer.url(), { pooler: "none", options: "-c search_path=public" })),
    10_000,
    "connect with options",
  );
  assertPostgresError(error, "08P01");
  assert.match(error.message, /unsupported startup parameter: options/);
});

test("no call ever failed with a prepared statement error", () => {
  const bad = seen.filter(isPreparedStatementError);
  assert.deepEqual(bad.map((e) => show(e)), []);
});
