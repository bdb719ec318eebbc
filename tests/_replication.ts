// A PostgreSQL 15 primary and a streaming standby for failover tests (issue 15), each a server
// of the test's own (tests/_server.ts startOwnServer / startOwnServerFrom): on free loopback
// ports, as the `postgres` OS user, in temp dirs, stopped and removed at stop() and when the
// process exits or dies.
//
// The standby is a `pg_basebackup -R` of the primary, streaming from a replication slot. The
// primary waits for it on every commit (`synchronous_standby_names` naming it, and
// `synchronous_commit = remote_apply`): a commit the primary acknowledged is already visible on
// the standby, so stopping the primary with `-m immediate` and promoting the standby loses none.
// The standby has no synchronous standby of its own, so once promoted it commits alone.
//
// Both servers have the harness's roles, passwords, database and pg_hba.conf (the standby's are
// the primary's, copied by the base backup) and its certificates (one CA verifies both).
//
// Every wait polls a condition and is bounded; a wait that runs out throws an error naming what
// it waited for, with the server's log tail.
//
// This file runs under Deno and, bundled by tests/run.ts, under Node 20: `node:` modules only.

import { HOST } from "./_net.ts";
import {
  type OwnServer,
  type ShutdownMode,
  startOwnServer,
  startOwnServerFrom,
  type TestUser,
} from "./_server.ts";

/** The standby's name: its `application_name` on the primary and its replication slot. */
export const STANDBY_NAME = "edgepool_standby";

/** What a server is now: read from `pg_is_in_recovery()`. */
export type NodeRole = "primary" | "standby";

/** One server of a {@link ReplicatedPair}. */
export interface ClusterNode {
  /** "127.0.0.1". */
  readonly host: string;
  readonly port: number;
  /** The temp dir of this server (data dir, log, certificates), removed by the pair's stop(). */
  readonly dir: string;
  /** The data dir (`pg_ctl -D`). */
  readonly dataDir: string;
  /** PEM of the CA that signed this server's certificate (the same for both servers). */
  readonly caPem: string;
  /** URL for a harness user (default "scram"), as tests/_server.ts's `url()`. */
  url(user?: TestUser, params?: Record<string, string>): string;
  /** "standby" while the server is in recovery, else "primary". */
  role(): Promise<NodeRole>;
  /** Runs SQL as the superuser through psql; stdout trimmed (unaligned, tuples only). */
  psql(sql: string): Promise<string>;
  /** `pg_ctl stop -m <mode>`: resolves once the postmaster has exited. */
  stop(mode: Exclude<ShutdownMode, "smart">): Promise<void>;
  /** `pg_ctl start`: resolves once the server accepts connections. */
  start(): Promise<void>;
  /**
   * `pg_ctl promote`: resolves once the server accepts writes (a transaction id is assigned and
   * committed), or throws after `timeoutMs` (default 60000).
   */
  promote(timeoutMs?: number): Promise<void>;
  /** The last lines of the server's log. */
  logTail(lines?: number): string;
}

/** A primary and its synchronous streaming standby (see {@link startReplicatedPair}). */
export interface ReplicatedPair {
  readonly primary: ClusterNode;
  readonly standby: ClusterNode;
  /** The standby's row of the primary's `pg_stat_replication`, or undefined if it has none. */
  replication(): Promise<{ state: string; syncState: string } | undefined>;
  /**
   * Resolves once the standby has replayed all WAL the primary has written now (also what no
   * commit waits for, such as a rolled-back transaction's), or throws after `timeoutMs`
   * (default 30000). The primary must be up.
   */
  waitForStandbyCaughtUp(timeoutMs?: number): Promise<void>;
  /**
   * Resolves once the primary reports the standby as its synchronous one, streaming (as after
   * `standby.stop()` and `standby.start()`), or throws after `timeoutMs` (default 60000). While
   * it is not, commits on the primary wait.
   */
  waitForSynchronousStandby(timeoutMs?: number): Promise<void>;
  /** Stops both servers at once and removes their dirs; idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startReplicatedPair}. */
export interface ReplicatedPairOptions {
  /** Lines appended to both servers' postgresql.conf (after the harness's). */
  config?: string;
}

const START_TIMEOUT_MS = 60_000;
const POLL_MS = 20;

// Later lines win over the harness's `synchronous_commit = off`. The primary does not name its
// synchronous standby yet: its own setup (roles, database) would wait for one that does not
// exist. startReplicatedPair names it once the standby streams.
const PRIMARY_CONFIG = `
synchronous_commit = remote_apply
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
`;

// Both over TCP on loopback, as a standby on another host would connect.
const REPLICATION_HBA = `host       replication  postgres  ${HOST}/32  trust
`;

// cluster_name is the walreceiver's application_name, which synchronous_standby_names matches.
// The base backup copies the primary's postgresql.conf; these lines come after and win.
const STANDBY_CONFIG = `
cluster_name = '${STANDBY_NAME}'
hot_standby = on
synchronous_standby_names = ''
`;

/**
 * Starts a primary and a streaming standby made from it with `pg_basebackup -R`, replicating
 * synchronously with `synchronous_commit = remote_apply`. Resolves once the primary reports the
 * standby as its synchronous one; throws (having stopped and removed both) if that does not
 * happen within a minute.
 *
 * @example
 * ```ts
 * const pair = await startReplicatedPair();
 * try {
 *   await pair.primary.psql("create table t (id int)");
 *   await pair.primary.stop("immediate");
 *   await pair.standby.promote();
 * } finally {
 *   await pair.stop();
 * }
 * ```
 */
export async function startReplicatedPair(
  options: ReplicatedPairOptions = {},
): Promise<ReplicatedPair> {
  const extra = options.config ?? "";
  const primary = await startOwnServer({
    config: PRIMARY_CONFIG + extra,
    hba: REPLICATION_HBA,
  });
  let standby: OwnServer | undefined;
  try {
    standby = await startOwnServerFrom({
      certificatesOf: primary,
      config: STANDBY_CONFIG + extra,
      makeDataDir: async (dataDir, run) => {
        await run("pg_basebackup", [
          ...["-h", HOST, "-p", String(primary.port), "-U", "postgres", "-D", dataDir],
          // -R: standby.signal and primary_conninfo; -C -S: a slot keeps the WAL it needs.
          ...["-R", "-X", "stream", "-C", "-S", STANDBY_NAME, "-c", "fast", "--no-sync"],
        ]);
      },
    });
    const pair = new Pair(new Node(primary), new Node(standby));
    await pair.waitForReplication("streaming", START_TIMEOUT_MS);
    await primary.psql(`alter system set synchronous_standby_names = '${STANDBY_NAME}'`);
    await primary.psql("select pg_reload_conf()");
    await pair.waitForSynchronousStandby(START_TIMEOUT_MS);
    return pair;
  } catch (e) {
    standby?.close();
    primary.close();
    throw e;
  }
}

class Node implements ClusterNode {
  readonly host: string = HOST;
  readonly port: number;
  readonly dir: string;
  readonly dataDir: string;
  readonly caPem: string;
  readonly server: OwnServer;

  constructor(server: OwnServer) {
    this.server = server;
    this.port = server.port;
    this.dir = server.dir;
    this.dataDir = server.dataDir;
    this.caPem = server.caPem ?? "";
  }

  url(user?: TestUser, params?: Record<string, string>): string {
    return this.server.url(user, params);
  }

  async role(): Promise<NodeRole> {
    return await this.psql("select pg_is_in_recovery()") === "t" ? "standby" : "primary";
  }

  psql(sql: string): Promise<string> {
    return this.server.psql(sql);
  }

  stop(mode: Exclude<ShutdownMode, "smart">): Promise<void> {
    return this.server.shutdown(mode);
  }

  start(): Promise<void> {
    return this.server.start();
  }

  async promote(timeoutMs = 60_000): Promise<void> {
    const seconds = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
    await this.server.runProgram("pg_ctl", ["promote", "-w", "-t", seconds, "-D", this.dataDir]);
    // pg_ctl returns once recovery has ended; a write that commits is what a client wants.
    // txid_current() assigns a transaction id, which a server in recovery refuses.
    await until(
      `the promoted server on port ${this.port} accepting writes`,
      () => this.psql("select txid_current()").then(() => true, () => false),
      timeoutMs,
      this,
    );
  }

  logTail(lines?: number): string {
    return this.server.logTail(lines);
  }
}

class Pair implements ReplicatedPair {
  readonly primary: Node;
  readonly standby: Node;
  #stopped = false;

  constructor(primary: Node, standby: Node) {
    this.primary = primary;
    this.standby = standby;
  }

  async replication(): Promise<{ state: string; syncState: string } | undefined> {
    const out = await this.primary.psql(
      "select state, sync_state from pg_stat_replication " +
        `where application_name = '${STANDBY_NAME}'`,
    );
    if (out === "") return undefined;
    const [state, syncState] = out.split("\n")[0].split("|");
    return { state, syncState };
  }

  /** Until the standby streams (`streaming`) or is the synchronous one (`sync`). */
  async waitForReplication(what: "streaming" | "sync", timeoutMs: number): Promise<void> {
    await until(
      `the standby ${what === "sync" ? "synchronous" : "streaming"}`,
      async () => {
        const row = await this.replication();
        return row?.state === "streaming" && (what === "streaming" || row.syncState === "sync");
      },
      timeoutMs,
      this.standby,
    );
  }

  waitForSynchronousStandby(timeoutMs = START_TIMEOUT_MS): Promise<void> {
    return this.waitForReplication("sync", timeoutMs);
  }

  async waitForStandbyCaughtUp(timeoutMs = 30_000): Promise<void> {
    const lsn = await this.primary.psql("select pg_current_wal_lsn()");
    await until(
      `the standby replaying up to ${lsn}`,
      async () =>
        await this.standby.psql(`select pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn`) === "t",
      timeoutMs,
      this.standby,
    );
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // The standby first, so that it does not spend its last moments reconnecting.
    for (const node of [this.standby, this.primary]) {
      await node.stop("immediate").catch(() => {
        // Already stopped (a failover test stops the primary); close() checks again.
      });
      node.server.close();
    }
  }
}

/** Polls `probe` until it holds; throws naming `what`, with `node`'s log tail, after `ms`. */
async function until(
  what: string,
  probe: () => Promise<boolean>,
  ms: number,
  node: { logTail(lines?: number): string },
): Promise<void> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await probe()) return;
    if (performance.now() > deadline) {
      throw new Error(`Waited ${ms} ms for ${what}, in vain\n--- log tail ---\n${node.logTail()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
