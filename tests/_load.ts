// A bounded load for the fault tests and the soak: many callers, each running requests one
// after another through a pool until told to stop, every request recorded with when it started
// and ended, how it came out and its error. Writes go to a ledger table, one unique key per
// request, so that a test can tell afterwards which acknowledged commits are missing and which
// rolled-back writes are visible.
//
// Times are `performance.now()`: tests compare them with marks they take the same way (the
// moment the server was down, the moment it was back), never with fixed durations.

import {
  ConnectionError,
  PoolError,
  type PoolQueryOptions,
  PostgresError,
  type QueuePool,
} from "../mod.ts";
import type { Connection } from "../mod.ts";

/**
 * What a request did: `commit` and `rollback` insert a ledger key in a transaction, `read` runs
 * a select; `abort` runs a slow statement and aborts it (AbortSignal), `timeout` runs one past
 * its `queryTimeout`: those two are `ok` when they fail the way they should.
 */
export type RequestKind = "commit" | "rollback" | "read" | "abort" | "timeout";

/** One request and how it came out. */
export interface LoadRecord {
  caller: number;
  kind: RequestKind;
  /** The ledger key it inserts (commit and rollback), unique in the run. */
  key: string;
  startedAt: number;
  endedAt: number;
  /** `ok`: committed, or read the right row; `rolledBack`: rolled back on purpose. */
  outcome: "ok" | "rolledBack" | "failed";
  error?: unknown;
}

/** Thrown inside a transaction to roll it back on purpose. */
export class RollbackOnPurpose extends Error {
  constructor() {
    super("rolled back on purpose");
    this.name = "RollbackOnPurpose";
  }
}

/** Options of {@link Load}. */
export interface LoadOptions {
  pool: QueuePool<Connection>;
  /** Concurrent callers. */
  callers: number;
  /** Ledger table (see {@link ledgerTable}). */
  table: string;
  /** What request `n` of a caller is. Default: 5 in 10 commit, 2 roll back, 3 read. */
  kindOf?: (n: number) => RequestKind;
  /** A caller's pause after a failed request, so that nothing spins on a failing pool. Default 10 ms. */
  pauseAfterFailure?: number;
  /** A caller's pause after every request. Default 0. */
  pause?: number;
  /** Keep every request's record (for `records`); off for long runs. Default true. */
  keepRecords?: boolean;
  /** How long `abort` waits before aborting, and `timeout`'s queryTimeout, in ms. Default 50. */
  giveUpAfter?: number;
}

/** Totals of a run, kept whether or not records are. */
export interface LoadCounts {
  requests: number;
  ok: number;
  rolledBack: number;
  failed: number;
  /** Commits that resolved. */
  committed: number;
  /** Commits that failed (their key may or may not be in the ledger). */
  commitsFailed: number;
  /** Failures by code (see {@link codeOf}). */
  codes: Map<string, number>;
}

const defaultKind = (n: number): RequestKind => {
  const slot = n % 10;
  return slot < 5 ? "commit" : slot < 7 ? "rollback" : "read";
};

/** Callers running requests through a pool until {@link Load.stop}. */
export class Load {
  readonly records: LoadRecord[] = [];
  readonly counts: LoadCounts = {
    requests: 0,
    ok: 0,
    rolledBack: 0,
    failed: 0,
    committed: 0,
    commitsFailed: 0,
    codes: new Map(),
  };
  readonly #options: LoadOptions;
  #running: Promise<void>[] = [];
  #stopping = false;

  constructor(options: LoadOptions) {
    this.#options = options;
  }

  /** Starts the callers. */
  start(): this {
    this.#running = Array.from({ length: this.#options.callers }, (_, i) => this.#caller(i));
    return this;
  }

  /** Lets every caller finish the request it is on, and stop. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
  }

  /** Records of requests started at or after `time`. */
  since(time: number): LoadRecord[] {
    return this.records.filter((r) => r.startedAt >= time);
  }

  /**
   * Whether every caller has had at least `count` requests started at or after `time` succeed
   * (or roll back on purpose).
   */
  everyCallerDone(time: number, count: number): boolean {
    const done = new Array<number>(this.#options.callers).fill(0);
    for (const r of this.records) {
      if (r.startedAt >= time && r.outcome !== "failed") done[r.caller]++;
    }
    return done.every((n) => n >= count);
  }

  async #caller(caller: number): Promise<void> {
    const { pool, table } = this.#options;
    const kindOf = this.#options.kindOf ?? defaultKind;
    const pauseAfterFailure = this.#options.pauseAfterFailure ?? 10;
    for (let n = 0; !this.#stopping; n++) {
      const kind = kindOf(n);
      const key = `${caller}-${n}`;
      const startedAt = performance.now();
      let outcome: LoadRecord["outcome"] = "ok";
      let error: unknown;
      try {
        if (kind === "read") {
          const { rows } = await pool.query<{ n: number }>("select $1::int as n", [n]);
          if (rows[0]?.n !== n) throw new Error(`read ${JSON.stringify(rows)} for ${n}`);
        } else if (kind === "abort" || kind === "timeout") {
          await this.#giveUp(kind);
        } else {
          await pool.transaction(async (connection) => {
            await connection.query(`insert into ${table} (key) values ($1)`, [key]);
            if (kind === "rollback") throw new RollbackOnPurpose();
          });
        }
      } catch (e) {
        if (e instanceof RollbackOnPurpose) {
          outcome = "rolledBack";
        } else {
          outcome = "failed";
          error = e;
        }
      }
      this.#count(kind, outcome, error);
      if (this.#options.keepRecords !== false) {
        const endedAt = performance.now();
        this.records.push({ caller, kind, key, startedAt, endedAt, outcome, error });
      }
      const pause = outcome === "failed" ? pauseAfterFailure : this.#options.pause ?? 0;
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /** Runs a slow statement and gives up on it; resolves if it failed the way it should. */
  async #giveUp(kind: "abort" | "timeout"): Promise<void> {
    const after = this.#options.giveUpAfter ?? 50;
    const sql = "select pg_sleep(2)";
    let error: unknown;
    try {
      if (kind === "abort") {
        await this.#options.pool.query(sql, [], { signal: AbortSignal.timeout(after) });
      } else {
        // Typed apart: `queryTimeout` is not in PoolQueryOptions before the pool has it.
        const options: PoolQueryOptions & { queryTimeout?: number } = { queryTimeout: after };
        await this.#options.pool.query(sql, [], options);
      }
    } catch (e) {
      error = e;
    }
    const expected = kind === "abort"
      ? error instanceof DOMException && error.name === "TimeoutError"
      : codeOf(error) === "QUERY_TIMEOUT";
    if (!expected) {
      const got = error === undefined ? "a result" : codeOf(error);
      throw new GaveUpWrong(`${kind}: expected it to give up, got ${got}`, { cause: error });
    }
  }

  #count(kind: RequestKind, outcome: LoadRecord["outcome"], error: unknown): void {
    const c = this.counts;
    c.requests++;
    if (outcome === "ok") c.ok++;
    else if (outcome === "rolledBack") c.rolledBack++;
    else c.failed++;
    if (kind === "commit") {
      if (outcome === "ok") c.committed++;
      else c.commitsFailed++;
    }
    if (outcome === "failed") {
      const code = error instanceof GaveUpWrong
        ? `${kind} did not give up (${error.cause === undefined ? "result" : codeOf(error.cause)})`
        : codeOf(error);
      c.codes.set(code, (c.codes.get(code) ?? 0) + 1);
    }
  }
}

/** An `abort` or `timeout` request that did not fail the way it should. */
class GaveUpWrong extends Error {}

/** SQL that makes a ledger table named `table`. */
export function ledgerTable(table: string): string {
  return `create table ${table} (key text primary key, at timestamptz not null default now()); ` +
    `grant select, insert on ${table} to public`;
}

/** What the ledger says about a run. */
export interface LedgerCheck {
  /** Keys whose commit resolved but that are not in the table. */
  lost: string[];
  /** Keys rolled back on purpose that are in the table. */
  visibleRollbacks: string[];
}

/** Compares the records with the keys in the table (`keys`: every key in it). */
export function checkLedger(records: readonly LoadRecord[], keys: Iterable<string>): LedgerCheck {
  const present = new Set(keys);
  const lost: string[] = [];
  const visibleRollbacks: string[] = [];
  for (const r of records) {
    if (r.kind === "commit" && r.outcome === "ok" && !present.has(r.key)) lost.push(r.key);
    if (r.kind === "rollback" && present.has(r.key)) visibleRollbacks.push(r.key);
  }
  return { lost, visibleRollbacks };
}

/** The stable code of an error (ConnectionError, PoolError, SQLSTATE), else its name. */
export function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") return code;
  return error instanceof Error ? error.name : String(error);
}

// SQLSTATE classes 08 (connection exception) and 57P (operator intervention: 57P01 admin
// shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
const DISCONNECT_SQLSTATE = /^(08|57P0)/;

/**
 * Whether `error` says the connection went away under the request: a ConnectionError
 * CONNECTION_LOST or CONNECTION_CLOSED, the pool's CONNECTION_LOST, or a server error of class
 * 08 or 57P. A PoolError carrying one of those as its cause counts too.
 */
export function isDisconnect(error: unknown): boolean {
  if (error instanceof ConnectionError) {
    return error.code === "CONNECTION_LOST" || error.code === "CONNECTION_CLOSED";
  }
  if (error instanceof PostgresError) return DISCONNECT_SQLSTATE.test(error.code);
  if (error instanceof PoolError) {
    return error.code === "CONNECTION_LOST" ||
      (error.cause !== undefined && isDisconnect(error.cause));
  }
  return false;
}

/** Counts of `records`' failures by code, most frequent first: `CONNECTION_LOST×12 57P01×3`. */
export function failureCodes(records: readonly LoadRecord[]): string {
  const counts = new Map<string, number>();
  for (const r of records) {
    if (r.outcome !== "failed") continue;
    let code = codeOf(r.error);
    if (r.error instanceof PoolError && r.error.cause !== undefined) {
      code += `(${codeOf(r.error.cause)})`;
    }
    counts.set(code, (counts.get(code) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c}×${n}`).join(" ") || "-";
}

/** The marks of one outage: when it began, when the server was down, when it was back. */
export interface Outage {
  /** The stop (or kill) was issued. */
  stopAt: number;
  /** The server was down and every connection made before had seen it. */
  downAt: number;
  /** The server accepted connections again. */
  readyAt: number;
}

/** One row of the restart table. */
export interface OutageSummary {
  requests: number;
  failed: number;
  /** Failed requests that started before `downAt`. */
  failedInFlight: number;
  /** Failed requests that started at or after `downAt`: the target is none. */
  failedLater: LoadRecord[];
  /** In-flight failures whose error is not a disconnect error: the target is none. */
  untyped: LoadRecord[];
  /** From `readyAt` to the first request to succeed after `downAt`, in ms. */
  recoveryMs: number | undefined;
  /** How long the server was down (`downAt` to `readyAt`) and the stop took, in ms. */
  outageMs: number;
  stopMs: number;
}

/** Sorts a run's records against one outage. */
export function summarize(records: readonly LoadRecord[], outage: Outage): OutageSummary {
  const failed = records.filter((r) => r.outcome === "failed");
  const inFlight = failed.filter((r) => r.startedAt < outage.downAt);
  const firstOk = records
    .filter((r) => r.outcome !== "failed" && r.endedAt >= outage.downAt)
    .reduce((min, r) => Math.min(min, r.endedAt), Infinity);
  return {
    requests: records.length,
    failed: failed.length,
    failedInFlight: inFlight.length,
    failedLater: failed.filter((r) => r.startedAt >= outage.downAt),
    untyped: inFlight.filter((r) => !isDisconnect(r.error)),
    recoveryMs: firstOk === Infinity ? undefined : firstOk - outage.readyAt,
    outageMs: outage.readyAt - outage.downAt,
    stopMs: outage.downAt - outage.stopAt,
  };
}

/** The header of {@link tableRow}'s table. */
export const TABLE_HEADER =
  "| runtime | fault | prePing | requests | failed | of which in flight | " +
  "failed later | stop ms | down ms | recovery ms | lost writes | visible rollbacks | codes |\n" +
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/** A markdown row for the restart table. */
export function tableRow(
  cells: { runtime: string; fault: string; prePing: boolean },
  s: OutageSummary,
  ledger: LedgerCheck,
  codes: string,
): string {
  const ms = (v: number | undefined) => v === undefined ? "never" : String(Math.round(v));
  return `| ${cells.runtime} | ${cells.fault} | ${cells.prePing} | ${s.requests} | ${s.failed} | ` +
    `${s.failedInFlight} | ${s.failedLater.length} | ${ms(s.stopMs)} | ${ms(s.outageMs)} | ` +
    `${ms(s.recoveryMs)} | ${ledger.lost.length} | ${ledger.visibleRollbacks.length} | ${codes} |`;
}
