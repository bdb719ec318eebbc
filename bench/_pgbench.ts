// pgbench's pipelined ceiling for bench/pool_query_bench.ts: `select 1` from pgbench (C, libpq)
// with N connections, each sending pipelines of 16 statements in the extended protocol, so the
// client costs next to nothing and no statement waits for a round trip; what is left is what
// the server can do on this machine. pgbench comes with PostgreSQL's client package (Debian's
// postgresql-client, which the postgresql-15 that .ci/run installs depends on); when it is not
// there the ceiling is "—" with a note, and the bench goes on.
//
// Runs under Deno and, bundled by bench/run.ts, under Node 20: `node:` modules only.

import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { CpuMeter } from "./_server_cpu.ts";

/** Statements per pipeline (per pgbench transaction). */
export const PIPELINE = 16;

/** What pgbench managed. */
export interface Ceiling {
  /** `select 1` per second: pgbench's tps × 16; undefined when it could not run. */
  statementsPerSecond?: number;
  /** Server CPU per statement, µs, with a server meter. */
  serverCpuUs?: number;
  /** Why there is no figure, for under the table. */
  note?: string;
}

/** pgbench on PATH (/usr/bin/pgbench is Debian's wrapper), else in a PostgreSQL bindir. */
function findPgbench(): string | undefined {
  const candidates = [
    ...(process.env.PATH ?? "").split(":").filter((dir) => dir !== "").map((dir) =>
      join(dir, "pgbench")
    ),
    ...["17", "16", "15", "14"].map((v) => `/usr/lib/postgresql/${v}/bin/pgbench`),
  ];
  return candidates.find((path) => existsSync(path));
}

function run(
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { env: { ...process.env, ...env }, maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        resolve({ code, output: `${stdout}\n${stderr}` });
      },
    );
  });
}

/**
 * libpq's environment for `url`: host, port, user, database, sslmode; the password in
 * PGPASSWORD rather than on a command line. Only what libpq knows: edgepool's own URL options
 * would make it refuse the URL.
 */
function libpqEnv(url: string): Record<string, string> {
  const parsed = new URL(url);
  const env: Record<string, string> = {};
  const host = parsed.searchParams.get("host") ?? decodeURIComponent(parsed.hostname);
  if (host !== "") env.PGHOST = host.replace(/^\[|\]$/g, "");
  if (parsed.port !== "") env.PGPORT = parsed.port;
  if (parsed.username !== "") env.PGUSER = decodeURIComponent(parsed.username);
  if (parsed.password !== "") env.PGPASSWORD = decodeURIComponent(parsed.password);
  const database = decodeURIComponent(parsed.pathname.slice(1));
  if (database !== "") env.PGDATABASE = database;
  const sslmode = parsed.searchParams.get("sslmode");
  if (sslmode !== null) env.PGSSLMODE = sslmode;
  return env;
}

/**
 * Runs `pgbench -n -M extended -c <connections> -j 2 -T <seconds>` with pipelines of 16
 * `select 1`, and reads the server meter around it (pgbench's logins fall inside the window:
 * ten of them, against seconds of statements).
 */
export async function pgbenchCeiling(
  url: string,
  options: { connections: number; seconds: number; server?: CpuMeter },
): Promise<Ceiling> {
  const pgbench = findPgbench();
  if (pgbench === undefined) {
    return { note: "pgbench is not installed (Debian: postgresql-client): no ceiling." };
  }
  const dir = mkdtempSync(join(tmpdir(), "edgepool-pgbench-"));
  try {
    const script = join(dir, "pipeline.sql");
    writeFileSync(
      script,
      ["\\startpipeline", ...Array(PIPELINE).fill("select 1;"), "\\endpipeline", ""].join("\n"),
    );
    const { connections, seconds, server } = options;
    const args = ["-n", "-M", "extended", "-c", `${connections}`, "-j", "2"];
    args.push("-T", `${seconds}`, "-f", script);
    const before = server?.read();
    const { code, output } = await run(pgbench, args, libpqEnv(url));
    const serverUs = server === undefined ? undefined : server.read() - before!;
    const processed = /number of transactions actually processed: (\d+)/.exec(output);
    const tps = /tps = ([\d.]+)/.exec(output);
    if (code !== 0 || processed === null || tps === null) {
      const last = output.trim().split("\n").slice(-2).join(" ");
      return { note: `pgbench failed (exit ${code}): ${last}` };
    }
    const statements = Number(processed[1]) * PIPELINE;
    return {
      statementsPerSecond: Number(tps[1]) * PIPELINE,
      serverCpuUs: serverUs === undefined ? undefined : serverUs / statements,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
