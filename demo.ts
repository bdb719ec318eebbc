/**
 * The edgepool demo: `deno task demo`. Many concurrent simulated requests move money between
 * accounts in transactions through a pool, some of them failing on purpose, with the pool's
 * stats and events live on the terminal and a summary (and a consistency check) at the end.
 *
 * It runs on the embedded database (PGlite in a StaticPool) with no setup at all;
 * `DATABASE_URL=postgres://...` runs it against a real server through a QueuePool instead.
 *
 * @module
 */

import { createPool, type PoolEvents, PostgresError } from "./mod.ts";

const REQUESTS = Number(Deno.env.get("DEMO_REQUESTS") ?? 400);
const CONCURRENCY = Number(Deno.env.get("DEMO_CONCURRENCY") ?? 50);
const ACCOUNTS = 20;
const url = Deno.env.get("DATABASE_URL");

const pool = createPool(url, { applicationName: "edgepool-demo", poolSize: 5, maxOverflow: 5 });
console.log(
  url
    ? `Using ${url.replace(/:[^:@/]*@/, ":***@")}`
    : "No DATABASE_URL: using the embedded database (PGlite, in memory)",
);
console.log(`Pool: ${pool.status()}\n`);

const events: Record<string, number> = {};
for (
  const name of [
    "connect",
    "checkout",
    "checkin",
    "reset",
    "invalidate",
    "close",
    "error",
  ] as (keyof PoolEvents<unknown>)[]
) {
  events[name] = 0;
  pool.on(name, () => events[name]++);
}

await pool.query("drop table if exists demo_ledger, demo_accounts");
await pool.query(
  "create table demo_accounts (id int primary key, balance bigint not null check (balance >= 0))",
);
await pool.query(
  "create table demo_ledger (id serial primary key, src int, dst int, amount bigint, at timestamptz default now())",
);
await pool.query(
  "insert into demo_accounts select i, 1000 from generate_series(1, $1::int) as i",
  [ACCOUNTS],
);

let retries = 0;
const outcome = {
  committed: 0,
  rolledBackOnPurpose: 0,
  abandoned: 0,
  rejectedByConstraint: 0,
  other: 0,
};
const live = setInterval(() => {
  const s = pool.stats();
  const done = Object.values(outcome).reduce((a, b) => a + b, 0);
  Deno.stdout.writeSync(
    new TextEncoder().encode(
      `\r${done}/${REQUESTS} requests | ${s.checkedOut} checked out, ${s.checkedIn} idle, ` +
        `${s.requestsWaiting} waiting | checkouts ${events.checkout}, resets ${events.reset}, ` +
        `connects ${events.connect}   `,
    ),
  );
}, 100);

/**
 * One simulated request: a transfer in a transaction. One in ten throws halfway (rolled back by
 * `transaction()`); one in seventeen forgets to commit and returns its connection mid-
 * transaction (rolled back by the pool on return: the next caller never sees it).
 */
async function request(n: number): Promise<void> {
  const src = 1 + (n * 7) % ACCOUNTS;
  const dst = 1 + (n * 13 + 5) % ACCOUNTS;
  const amount = 1 + (n * 37) % 400;
  if (n % 17 === 0) {
    await using conn = await pool.connect();
    await conn.query("begin");
    await conn.query("update demo_accounts set balance = balance - $1 where id = $2", [1, src]);
    outcome.abandoned++;
    return; // no commit: `await using` returns the connection inside the transaction
  }
  for (let attempt = 1;; attempt++) {
    try {
      await pool.transaction(async (conn) => {
        // Lock both rows in id order, so two opposite transfers cannot deadlock each other.
        await conn.query(
          "select id from demo_accounts where id in ($1, $2) order by id for update",
          [
            src,
            dst,
          ],
        );
        await conn.query("update demo_accounts set balance = balance - $1 where id = $2", [
          amount,
          src,
        ]);
        await new Promise((resolve) => setTimeout(resolve, n % 5)); // some "work"
        if (n % 10 === 3) throw new Error("simulated failure in the middle of a request");
        await conn.query("update demo_accounts set balance = balance + $1 where id = $2", [
          amount,
          dst,
        ]);
        await conn.query("insert into demo_ledger (src, dst, amount) values ($1, $2, $3)", [
          src,
          dst,
          amount,
        ]);
      });
      outcome.committed++;
      return;
    } catch (error) {
      const code = error instanceof PostgresError ? error.code : "";
      if ((code === "40P01" || code === "40001") && attempt < 5) {
        retries++; // deadlock or serialization failure: the transaction is safe to run again
        continue;
      }
      if (code === "23514") outcome.rejectedByConstraint++;
      else if (error instanceof Error && error.message.startsWith("simulated")) {
        outcome.rolledBackOnPurpose++;
      } else {
        outcome.other++;
        console.error("\nunexpected:", error);
      }
      return;
    }
  }
}

const started = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < REQUESTS) await request(next++);
  }),
);
const seconds = (performance.now() - started) / 1000;
clearInterval(live);

const { rows: [check] } = await pool.query<{ total: string; moves: string }>(
  "select (select sum(balance) from demo_accounts)::text as total, (select count(*) from demo_ledger)::text as moves",
);
const stats = pool.stats();
console.log("\n\nSummary");
console.log(
  `  ${REQUESTS} requests from ${CONCURRENCY} concurrent callers in ${seconds.toFixed(2)} s ` +
    `(${(REQUESTS / seconds).toFixed(0)} transactions/s)`,
);
console.log(
  `  committed ${outcome.committed}, rolled back on purpose ${outcome.rolledBackOnPurpose}, ` +
    `abandoned mid-transaction ${outcome.abandoned} (reset by the pool), refused by the ` +
    `balance check ${outcome.rejectedByConstraint}, unexpected ${outcome.other}; ` +
    `${retries} retried after a deadlock`,
);
const consistent = check.total === String(ACCOUNTS * 1000) &&
  Number(check.moves) === outcome.committed;
console.log(
  `  money is conserved: ${check.total === String(ACCOUNTS * 1000)} (total ${check.total}), ` +
    `ledger rows = commits: ${Number(check.moves) === outcome.committed}`,
);
console.log(
  `  pool: ${stats.connectionsNum} connections made, ${stats.requestsNum} checkouts ` +
    `(${stats.requestsQueued} waited, ${stats.requestsWaitMs} ms in total), ` +
    `${events.reset} resets, ${stats.returnsBad} bad returns, ${stats.requestsErrors} errors`,
);
console.log(`  ${pool.status()}`);
await pool.close();
if (!consistent || outcome.other > 0) Deno.exit(1);
