// transports/pglite.ts: edgepool's protocol client over an in-process PGlite database. One
// in-memory database serves the whole file (creating one takes seconds); the last test closes it.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Connection, ConnectionError, type ConnectOptions } from "../mod.ts";
import { pgliteTransport } from "../transports/pglite.ts";
import { assertConnectionError, assertPostgresError, delay, rejection, show } from "./_helpers.ts";

const T = { timeout: 60_000 };
const URL = "postgres://postgres@localhost/postgres";

const transport = pgliteTransport();
after(() => transport.close());

const open = (options: ConnectOptions = {}): Promise<Connection> =>
  connect(URL, { transport, ...options });

/** The parts of a PGlite instance these tests touch. */
interface Db {
  readonly closed: boolean;
  readonly waitReady: Promise<void>;
  query<R>(sql: string, params?: unknown[]): Promise<{ rows: R[] }>;
  execProtocolRawStream(message: Uint8Array, options: unknown): Promise<void>;
  runExclusive<R>(fn: () => Promise<R>): Promise<R>;
  _runExclusiveTransaction<R>(fn: () => Promise<R>): Promise<R>;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Whether `promise` is still pending after `ms`. */
async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  await delay(ms);
  return !settled;
}

// ---------------------------------------------------------------------------------------------
// Startup

test("pgliteTransport creates its database at the first connect and reports it", T, async () => {
  const start = performance.now();
  await using conn = await open({ applicationName: "pglite test" });
  console.log(`PGlite: database created and first session open in ${ms(start)} ms`);
  const p = conn.parameters;
  assert.match(p.server_version, /^\d+\.\d+/);
  assert.equal(p.server_encoding, "UTF8");
  assert.equal(p.client_encoding, "UTF8");
  assert.equal(p.DateStyle, "ISO, MDY");
  assert.equal(p.integer_datetimes, "on");
  assert.equal(p.standard_conforming_strings, "on");
  assert.equal(p.application_name, "pglite test");
  assert.equal(p.session_authorization, "postgres");
  const { rows } = await conn.query<Record<string, string>>(
    "select current_setting('TimeZone') as tz, current_setting('application_name') as app",
  );
  assert.deepEqual(rows, [{ tz: p.TimeZone, app: "pglite test" }]);
  assert.equal(conn.encrypted, false);
  assert.ok(conn.processId > 0);
  assert.equal(conn.transactionStatus, "idle");
  assert.equal(transport.name, "pglite");
});

test("pgliteTransport applies the startup options and refuses unknown settings", T, async () => {
  {
    const options = "-c statement_timeout=1234 --work-mem=2MB -c application_name=with\\ space";
    await using conn = await open({ options });
    const { rows } = await conn.query("show statement_timeout");
    assert.deepEqual(rows, [{ statement_timeout: "1234ms" }]);
    assert.deepEqual((await conn.query("show work_mem")).rows, [{ work_mem: "2MB" }]);
    assert.equal(conn.parameters.application_name, "with space");
  }
  const refused = open({ options: "-c statement_timeout=99 -c no_such_setting=1" });
  assertPostgresError(await rejection(refused), "42704");
  await using conn = await open();
  assert.deepEqual((await conn.query("show statement_timeout")).rows, [{ statement_timeout: "0" }]);
});

test("pgliteTransport ignores sslmode: require connects, unencrypted", T, async () => {
  await using conn = await connect(`${URL}?sslmode=require`, { transport });
  assert.equal(conn.encrypted, false);
  assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
});

// ---------------------------------------------------------------------------------------------
// Queries

test("query round-trips parameters and types over PGlite", T, async () => {
  await using conn = await open();
  const echo = async (value: unknown, type: string): Promise<unknown> =>
    (await conn.query(`select $1::${type} as v`, [value])).rows[0].v;
  assert.equal(await echo(2147483647, "int4"), 2147483647);
  assert.equal(await echo(-9223372036854775808n, "int8"), "-9223372036854775808");
  const numeric = "-123456789012345678901234567890.000000000000000000001";
  assert.equal(await echo(numeric, "numeric"), numeric);
  const text = `it's "quoted" \\ 日本語 🎉 e\u0301 \t\r\n{,}`;
  assert.equal(await echo(text, "text"), text);
  assert.equal(await echo(true, "bool"), true);
  assert.equal(await echo(false, "bool"), false);
  const doc = { a: 1, b: [true, null, 'x"y\\z'], c: { d: "日本" } };
  assert.deepEqual(await echo(doc, "json"), doc);
  assert.deepEqual(await echo(doc, "jsonb"), doc);
  const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(await echo(allBytes, "bytea"), allBytes);
  const when = new Date("2024-02-29T12:34:56.789Z");
  assert.deepEqual(await echo(when, "timestamptz"), when);
  assert.equal(await echo("2024-02-29", "date"), "2024-02-29");
  assert.deepEqual(await echo([1, null, 3], "int4[]"), [1, null, 3]);
  assert.deepEqual(await echo(["a,b", 'c"d', null, ""], "text[]"), ["a,b", 'c"d', null, ""]);
  assert.equal(await echo(null, "int4"), null);
  assert.equal(await echo(undefined, "text"), null);
  const { rows } = await conn.query("select null::text as n, 1.5::float8 as f");
  assert.deepEqual(rows, [{ n: null, f: 1.5 }]);
});

test("query runs several statements in one simple query", T, async () => {
  await using conn = await open();
  const result = await conn.query(
    "create temp table simple (n int); insert into simple values (1), (2); " +
      "select n from simple order by n",
  );
  assert.deepEqual(result.results?.map((r) => r.command), ["CREATE", "INSERT", "SELECT"]);
  assert.deepEqual(result.rows, [{ n: 1 }, { n: 2 }]);
});

test("query pipelines 50 queries issued at once and answers them in order", T, async () => {
  await using conn = await open();
  const queries = Array.from(
    { length: 50 },
    (_, i) => i % 2 ? conn.query("select $1::int as i", [i]) : conn.query(`select ${i} as i`),
  );
  const results = await Promise.all(queries);
  assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: 50 }, (_, i) => i));
});

test("query error leaves the connection usable, in a pipeline too", T, async () => {
  await using conn = await open();
  assertPostgresError(await rejection(conn.query("select 1/0")), "22012");
  assert.deepEqual((await conn.query("select 2 as two")).rows, [{ two: 2 }]);
  const before = conn.query("select 1 as one");
  const failing = rejection(conn.query("select $1::int", ["x"]));
  const behind = conn.query("select 3 as three");
  assert.deepEqual((await before).rows, [{ one: 1 }]);
  assertPostgresError(await failing, "22P02");
  assert.deepEqual((await behind).rows, [{ three: 3 }]);
});

test("transactionStatus follows BEGIN, an error and ROLLBACK", T, async () => {
  await using conn = await open();
  assert.equal(conn.transactionStatus, "idle");
  await conn.query("begin");
  assert.equal(conn.transactionStatus, "transaction");
  await rejection(conn.query("select no_such_column"));
  assert.equal(conn.transactionStatus, "failed");
  assertPostgresError(await rejection(conn.query("select 1")), "25P02");
  await conn.query("rollback");
  assert.equal(conn.transactionStatus, "idle");
});

test("notification listeners receive NOTIFY in the same session", T, async () => {
  await using conn = await open();
  const received: unknown[] = [];
  conn.on("notification", (n) => received.push([n.channel, n.payload]));
  await conn.query("listen pglite_test");
  await conn.query("notify pglite_test, 'hello'");
  assert.deepEqual(received, [["pglite_test", "hello"]]);
});

test("query rejects COPY FROM STDIN and the connection goes on", T, async () => {
  await using conn = await open();
  await conn.query("create temp table copied (n int)");
  for (const params of [undefined, []]) {
    const error = await rejection(conn.query("copy copied from stdin", params));
    assert.ok(error instanceof ConnectionError, show(error));
    assert.equal(error.code, "UNSUPPORTED");
    assert.match(error.message, /not supported/);
    assertPostgresError(error.cause, "57014"); // the server's answer to the client's CopyFail
    assert.equal(conn.transactionStatus, "idle");
    assert.deepEqual((await conn.query("select count(*)::int as n from copied")).rows, [{ n: 0 }]);
  }
  // With a query behind it (held back until the COPY is over): both answered, in order.
  const copy = rejection(conn.query("copy copied from stdin"));
  const behind = conn.query("select 1 as one");
  assertConnectionError(await copy, "UNSUPPORTED");
  assert.deepEqual((await behind).rows, [{ one: 1 }]);
});

test("cancel resolves without interrupting, and the connection stays usable", T, async () => {
  await using conn = await open();
  const sleeping = conn.query("select pg_sleep(0.2) as slept");
  await conn.cancel();
  // PGlite runs statements synchronously: there is never anything running to cancel.
  assert.deepEqual((await sleeping).rows, [{ slept: "" }]);
  // A timer cannot fire while PGlite sleeps; an abort before the answer sends a cancel.
  const controller = new AbortController();
  const aborted = rejection(conn.query("select pg_sleep(0.1)", [], { signal: controller.signal }));
  controller.abort(new Error("stop"));
  assert.equal((await aborted as Error).message, "stop");
  assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
});

// ---------------------------------------------------------------------------------------------
// Sessions

test("a second connect waits until the first session closes and sees its data", T, async () => {
  const first = await open();
  await first.query("create table shared_rows (n int)");
  await first.query("begin");
  await first.query("insert into shared_rows values (1)");
  const second = open();
  assert.ok(await pendingAfter(second, 150), "the second session started alongside the first");
  await first.query("commit");
  await first.close();
  await using conn = await second;
  assert.deepEqual((await conn.query("select n from shared_rows")).rows, [{ n: 1 }]);
  await conn.query("drop table shared_rows");
});

test("each session starts clean: no transaction, settings or temp tables", T, async () => {
  {
    const conn = await open();
    await conn.query("set search_path = pg_catalog");
    await conn.query("create temp table leftover (n int)");
    await conn.query("create table kept (n int)");
    await conn.query("prepare named as select 1");
    await conn.query("begin");
    await conn.query("insert into kept values (1)");
    await conn.query("create role visitor");
    await conn.query("set role visitor");
    await conn.close(); // inside the transaction
  }
  // This session prepares nothing of its own (no statement cache): any prepared statement it
  // sees is the last session's.
  await using conn = await open({ statementCache: 0 });
  assert.equal(conn.transactionStatus, "idle");
  assert.deepEqual((await conn.query("show search_path")).rows, [{ search_path: "public" }]);
  assert.deepEqual((await conn.query("select current_user as u")).rows, [{ u: "postgres" }]);
  assertPostgresError(await rejection(conn.query("select * from leftover")), "42P01");
  assert.deepEqual((await conn.query("select count(*)::int as n from kept")).rows, [{ n: 0 }]);
  assert.deepEqual(
    (await conn.query("select count(*)::int as n from pg_prepared_statements"))
      .rows,
    [{ n: 0 }],
  );
  await conn.query("drop table kept");
});

test(
  "a queued connect gives up on its signal or connectTimeout and leaves the queue",
  T,
  async () => {
    const first = await open();
    const controller = new AbortController();
    const aborted = rejection(open({ signal: controller.signal }));
    const timedOut = rejection(open({ connectTimeout: 100 }));
    const waiting = open();
    await delay(20);
    controller.abort(new Error("gave up"));
    assert.equal((await aborted as Error).message, "gave up");
    assertConnectionError(await timedOut, "CONNECT_TIMEOUT");
    assert.ok(await pendingAfter(waiting, 50));
    await first.close();
    await using conn = await waiting;
    assert.deepEqual((await conn.query("select 1 as one")).rows, [{ one: 1 }]);
  },
);

test("close lets issued queries finish, and a new connection works afterwards", T, async () => {
  const conn = await open();
  const issued = conn.query("select 1 as one");
  await conn.close();
  assert.deepEqual((await issued).rows, [{ one: 1 }]);
  assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_CLOSED");
  await using again = await open();
  assert.deepEqual((await again.query("select 2 as two")).rows, [{ two: 2 }]);
});

test("await using closes the session at the end of the block", T, async () => {
  let seen: Connection;
  {
    await using conn = await open();
    seen = conn;
    await conn.query("select 1");
  }
  assert.equal(seen.closed, true);
  // The session was handed back: a new one opens at once.
  await using conn = await open({ connectTimeout: 2000 });
  assert.equal(conn.closed, false);
});

test("transports over one shared PGlite instance share its session queue", T, async () => {
  const db = await transport.db as Db;
  const sharing = pgliteTransport({ pglite: db });
  const first = await open();
  const second = connect(URL, { transport: sharing });
  assert.ok(await pendingAfter(second, 100));
  await first.close();
  await using conn = await second;
  // The instance's own API waits while a session is inside a transaction.
  await conn.query("begin");
  const direct = db.query<{ n: number }>("select 7 as n");
  assert.ok(await pendingAfter(direct, 100));
  await conn.query("commit");
  assert.deepEqual((await direct).rows, [{ n: 7 }]);
  await sharing.close();
  assert.equal(conn.closed, true);
  assert.equal(db.closed, false, "a shared instance is not the transport's to close");
});

test(
  "a PGlite failure closes the session with CONNECTION_LOST and refuses new ones",
  T,
  async () => {
    const db = await transport.db as Db;
    let fail = false;
    const flaky = {
      closed: false,
      waitReady: db.waitReady,
      close: () => Promise.resolve(),
      runExclusive: <R>(fn: () => Promise<R>) => db.runExclusive(fn),
      _runExclusiveTransaction: <R>(fn: () => Promise<R>) => db._runExclusiveTransaction(fn),
      execProtocolRawStream: (message: Uint8Array, options: unknown) => {
        if (fail) throw new Error("simulated trap");
        return db.execProtocolRawStream(message, options);
      },
    };
    const broken = pgliteTransport({ pglite: flaky });
    const conn = await connect(URL, { transport: broken });
    fail = true;
    const pending = [rejection(conn.query("select 1")), rejection(conn.query("select 2"))];
    for (const error of await Promise.all(pending)) {
      assertConnectionError(error, "CONNECTION_LOST");
      assert.match((error as Error).message, /PGlite failed: simulated trap/);
    }
    fail = false; // PGlite is taken as broken for good anyway
    const refused = await rejection(connect(URL, { transport: broken }));
    assertConnectionError(refused, "CONNECTION_LOST");
    await broken.close();
  },
);

test("pgliteTransport keeps a dataDir database across transports", T, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "edgepool-pglite-"));
  try {
    const first = pgliteTransport({ dataDir });
    {
      await using conn = await connect(URL, { transport: first });
      await conn.query("create table kept_on_disk (s text); insert into kept_on_disk values ('x')");
    }
    await first.close();
    const second = pgliteTransport({ dataDir });
    {
      await using conn = await connect(URL, { transport: second });
      assert.deepEqual((await conn.query("select s from kept_on_disk")).rows, [{ s: "x" }]);
    }
    await second.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Throughput, printed for the record

test("throughput of select $1::int + 1, sequential and pipelined", T, async () => {
  await using conn = await open();
  const n = 500;
  let start = performance.now();
  for (let i = 0; i < n; i++) await conn.query("select $1::int + 1 as n", [i]);
  const sequential = n / (performance.now() - start) * 1000;
  start = performance.now();
  const rounds = 10;
  for (let round = 0; round < rounds; round++) {
    const batch = Array.from({ length: 100 }, (_, i) => conn.query("select $1::int + 1", [i]));
    await Promise.all(batch);
  }
  const pipelined = rounds * 100 / (performance.now() - start) * 1000;
  console.log(
    `PGlite: ${Math.round(sequential)} queries/s sequential, ` +
      `${Math.round(pipelined)} queries/s in pipelines of 100`,
  );
  assert.ok(sequential > 0 && pipelined > 0);
});

// ---------------------------------------------------------------------------------------------
// Closing the transport (last: it ends the shared database)

test("transport close ends open sessions, closes PGlite and refuses connects", T, async () => {
  const conn = await open();
  const queued = rejection(open());
  const closing = transport.close();
  assertConnectionError(await rejection(conn.query("select 1")), "CONNECTION_LOST");
  const error = await queued;
  assert.ok(error instanceof ConnectionError, show(error));
  await closing;
  assert.equal((await transport.db as Db).closed, true);
  assertConnectionError(await rejection(open()), "CONNECT_FAILED");
  await transport.close(); // idempotent
});

function ms(start: number): number {
  return Math.round(performance.now() - start);
}
