// The gateway's `/sql` gives each request a clean session, as Neon's does, although it runs
// requests on pooled server connections (gateway/_session_reset.ts). Against the real
// PostgreSQL 15 of tests/_server.ts, with `poolSize: 1`, so that consecutive requests run on
// the same server connection (each test checks that they did, by backend pid): one request
// leaves some session state behind, and the next must not see it.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type RunningGateway, startGateway } from "../gateway/mod.ts";
import { getServer, type TestServer, type TestUser } from "./_server.ts";
import { isDeno } from "./_transports.ts";

const T = { timeout: 60_000 };
const RUN = `${isDeno ? "deno" : "node"}_${Math.random().toString(36).slice(2, 8)}`;
const SEQUENCE = `gw_session_seq_${RUN}`;

let setup: Promise<{ server: TestServer; gateway: RunningGateway }> | undefined;

function env(): Promise<{ server: TestServer; gateway: RunningGateway }> {
  return setup ??= (async () => {
    const server = await getServer();
    await server.psql(
      `create sequence ${SEQUENCE}; grant usage, select on sequence ${SEQUENCE} to public`,
    );
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `127.0.0.1:${server.port}`,
      poolSize: 1,
    });
    return { server, gateway };
  })();
}

after(async () => {
  if (setup === undefined) return;
  const { server, gateway } = await setup;
  await gateway.close();
  await server.psql(`drop sequence if exists ${SEQUENCE}`);
});

/** One request's outcome: its last query's first row as text, or the error's SQLSTATE. */
type Outcome = { pid: string; value: string };

/**
 * Sends `queries` as one request (a batch when more than one) and reads the first column of
 * the last query's first row, together with the backend pid. Each query must return one row
 * whose first column is text; the pid is read in a query of its own, last.
 */
async function request(
  gateway: RunningGateway,
  url: string,
  queries: string[],
  params: unknown[] = [],
): Promise<Outcome> {
  const all = [...queries, "select pg_backend_pid()::text"];
  const response = await fetch(`${gateway.url}/sql`, {
    method: "POST",
    headers: { "Neon-Connection-String": url, "Neon-Array-Mode": "true" },
    body: JSON.stringify({
      queries: all.map((query, i) => ({ query, params: i === 0 ? params : [] })),
    }),
  });
  const body = await response.json();
  if (response.status !== 200) {
    // The batch failed, so the pid is read alone.
    assert.equal(response.status, 400, JSON.stringify(body));
    const { pid } = await request(gateway, url, []);
    return { pid, value: `error ${body.code}` };
  }
  const results = body.results as { rows: string[][] }[];
  const last = results.length > 1 ? results[results.length - 2].rows[0]?.[0] : undefined;
  return { pid: results[results.length - 1].rows[0][0], value: last ?? "" };
}

/** One kind of session state: what sets it, and what reads it. */
interface Case {
  name: string;
  set: string[];
  check: string;
  /** What `check` reads right after `set`, in the same request: not what it reads before. */
  setValue: string;
  user?: TestUser;
}

const CASES: Case[] = [
  {
    name: "SET application_name",
    set: ["set application_name = 'leak'"],
    check: "select current_setting('application_name')",
    setValue: "leak",
  },
  {
    name: "SET search_path",
    set: ["set search_path = pg_catalog"],
    check: "select current_setting('search_path')",
    setValue: "pg_catalog",
  },
  {
    name: "SET statement_timeout",
    set: ["set statement_timeout = 4321"],
    check: "select current_setting('statement_timeout')",
    setValue: "4321ms",
  },
  {
    name: "SET ROLE",
    set: ["set role scram"],
    check: "select current_setting('role')",
    setValue: "scram",
  },
  {
    name: "SET SESSION AUTHORIZATION (superuser)",
    set: ["set session authorization scram"],
    check: "select session_user::text || ' ' || current_user::text",
    setValue: "scram scram",
    user: "postgres",
  },
  {
    name: "set_config(..., false) in a SELECT",
    set: ["select set_config('work_mem', '1234kB', false)"],
    check: "select current_setting('work_mem')",
    setValue: "1234kB",
  },
  {
    name: "set_config in a DO block (a function that sets a setting)",
    set: ["do $$ begin perform set_config('datestyle', 'SQL, DMY', false); end $$"],
    check: "select current_setting('datestyle')",
    setValue: "SQL, DMY",
  },
  {
    name: "SET SESSION CHARACTERISTICS (default isolation)",
    set: ["set session characteristics as transaction isolation level serializable"],
    check: "select current_setting('default_transaction_isolation')",
    setValue: "serializable",
  },
  {
    name: "LISTEN",
    // LISTEN takes effect at commit: the batch's own COMMIT then finds no transaction.
    set: ["listen edgepool_leak", "commit"],
    check: "select coalesce(string_agg(c, ','), '') from pg_listening_channels() c",
    setValue: "edgepool_leak",
  },
  {
    name: "a temporary table",
    set: ["create temp table leak_t (x int)"],
    check: "select coalesce(to_regclass('leak_t')::text, '')",
    setValue: "leak_t",
  },
  {
    name: "a session advisory lock",
    set: ["select pg_advisory_lock(4242)::text"],
    check: "select count(*)::text from pg_locks " +
      "where locktype = 'advisory' and pid = pg_backend_pid()",
    setValue: "1",
  },
  {
    name: "PREPARE (names that need quoting too)",
    set: ["prepare leak_p as select 1", `prepare "leak ""q" as select 2`],
    check: "select coalesce(string_agg(name, ',' order by name), '') " +
      "from pg_prepared_statements where from_sql",
    setValue: 'leak "q,leak_p',
  },
  {
    name: "a cursor WITH HOLD",
    set: ["declare leak_c cursor with hold for select 1"],
    check: "select count(*)::text from pg_cursors where name = 'leak_c'",
    setValue: "1",
  },
  {
    name: "a sequence's lastval",
    set: [`select nextval('${SEQUENCE}')::text`],
    check: "select (lastval() > 0)::text",
    setValue: "true",
  },
];

for (const c of CASES) {
  test(`/sql does not show the next request ${c.name}, on the same connection`, T, async () => {
    const { server, gateway } = await env();
    const url = server.url(c.user ?? "scram", { application_name: `${RUN}_session` });
    const before = await request(gateway, url, [c.check]);
    const set = await request(gateway, url, [...c.set, c.check]);
    const next = await request(gateway, url, [c.check]);
    assert.equal(set.pid, before.pid, "the requests ran on one server connection");
    assert.equal(next.pid, before.pid, "the requests ran on one server connection");
    assert.equal(set.value, c.setValue, "the request set its state");
    assert.equal(next.value, before.value, "the next request sees a clean session");
  });
}

test("/sql gives the next request a session without a custom setting's value", T, async () => {
  const { server, gateway } = await env();
  const url = server.url("scram", { application_name: `${RUN}_session` });
  const check = "select coalesce(current_setting('edgepool.leak', true), '<none>')";
  const before = await request(gateway, url, [check]);
  const set = await request(gateway, url, [
    "select set_config('edgepool.leak', 'secret', false)",
    check,
  ]);
  const next = await request(gateway, url, [check]);
  assert.equal(next.pid, before.pid);
  assert.equal(set.value, "secret");
  // RESET ALL (as DISCARD ALL) leaves the placeholder it made, empty: the value is gone.
  assert.ok(next.value === "" || next.value === before.value, next.value);
});

test("/sql rolls back a transaction a request left open before the next request", T, async () => {
  const { server, gateway } = await env();
  const url = server.url("scram", { application_name: `${RUN}_session` });
  // Single queries, not batches: a batch's statements run in a transaction that began earlier.
  const single = async (query: string) => {
    const response = await fetch(`${gateway.url}/sql`, {
      method: "POST",
      headers: { "Neon-Connection-String": url, "Neon-Array-Mode": "true" },
      body: JSON.stringify({ query, params: [] }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    return (body.rows as string[][])[0]?.[0];
  };
  // Two requests inside one transaction would see one transaction id.
  const xact = "select pg_backend_pid() || ' ' || pg_current_xact_id()";
  const [pid] = (await single(xact))!.split(" ");
  await single("begin");
  const [pid1, xact1] = (await single(xact))!.split(" ");
  const [pid2, xact2] = (await single(xact))!.split(" ");
  assert.deepEqual([pid1, pid2], [pid, pid], "the requests ran on one server connection");
  assert.notEqual(xact2, xact1, "each request runs in a transaction of its own");
});

test("/sql runs statements unnamed: no request sees another's SQL", T, async () => {
  const { server, gateway } = await env();
  const url = server.url("scram", { application_name: `${RUN}_session` });
  const query = `select $1::int + 1 || ' ${RUN}' as v`;
  const first = await request(gateway, url, [query], [1]);
  const second = await request(gateway, url, [query], [2]);
  assert.deepEqual([first.value, second.value], [`2 ${RUN}`, `3 ${RUN}`]);
  const prepared = await request(gateway, url, [
    "select count(*)::text from pg_prepared_statements",
  ]);
  assert.equal(prepared.pid, first.pid);
  assert.equal(prepared.value, "0");
});
