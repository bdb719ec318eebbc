// CPU time of other processes on this machine, from Linux's /proc: a local PostgreSQL server
// (the postmaster and all its children) or a proxy (the gateway, websockify, a bare relay, with
// their children), for the benches' "CPU per query" columns.
//
// A meter reads the CPU time a process tree has used so far; a bench reads it before and after
// a measured window. The tree's time is, over every live process of it, its own time plus what
// its reaped children used (`cutime` + `cstime`), so a child that exits during the window (a
// pgbench connection, a websockify worker) still counts, through its parent. A process's own
// time comes from /proc/<pid>/task/*/schedstat (nanoseconds, when the kernel keeps it) or else
// utime + stime of /proc/<pid>/stat (clock ticks, `getconf CLK_TCK`, usually 100 a second:
// 10 ms steps per process, too coarse for a window of a few hundred ms); reaped children's time
// exists in ticks only. Both files are world-readable, so this works as root or not, with the
// server running as `postgres`.
//
// Runs under Deno and, bundled by bench/run.ts, under Node 20: `node:` modules only.

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";

/** Reads the cumulative CPU time, in µs, of what it measures. */
export interface CpuMeter {
  /** CPU time used so far (user + system), µs; only differences between two reads mean anything. */
  read(): number;
}

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK`, once; 100 (Linux's value everywhere in practice) if getconf fails. */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
      ticksPerSecond = Number.isFinite(value) && value > 0 ? value : 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parens). */
interface Stat {
  comm: string;
  ppid: number;
  /** utime + stime, µs. */
  ownUs: number;
  /** cutime + cstime, µs. */
  childrenUs: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined; // gone, or no /proc
  }
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  // After ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
  // stime cutime cstime (fields 3 to 17 of proc(5)).
  const rest = text.slice(close + 2).split(" ");
  const us = 1e6 / clockTicks();
  return {
    comm: text.slice(open + 1, close),
    ppid: Number(rest[1]),
    ownUs: (Number(rest[11]) + Number(rest[12])) * us,
    childrenUs: (Number(rest[13]) + Number(rest[14])) * us,
  };
}

/**
 * Time on the CPU from schedstat, µs, summed over the process's threads (/proc/<pid>/schedstat
 * is the main thread's alone: a Deno or Node process also runs GC and I/O threads, a fifth of
 * its time or more); undefined where the kernel keeps none. A thread that exits during a window
 * takes its time with it: runtimes keep their threads for the process's life.
 */
function readSchedstat(pid: number): number | undefined {
  try {
    let ns = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // the thread exited
      }
    }
    return Number.isFinite(ns) ? ns / 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** Every process's parent, from one scan of /proc. */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat !== undefined) map.set(Number(name), stat.ppid);
  }
  return map;
}

/** The live processes of the tree under `root`, root included (if alive). */
function tree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parents()) {
    const list = children.get(ppid);
    if (list === undefined) children.set(ppid, [pid]);
    else list.push(pid);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    found.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return found;
}

/**
 * A meter of the CPU time of process `root` and all its descendants (children forked during a
 * window count from when they start; those that exit count through their parent). Undefined
 * when /proc cannot tell (not Linux, `root` not there).
 */
export function processTreeCpu(root: number): CpuMeter | undefined {
  if (readStat(root) === undefined) return undefined;
  // A schedstat of 0 for a process that has run means the kernel keeps none: ticks then.
  const precise = (readSchedstat(root) ?? 0) > 0;
  return {
    read() {
      let us = 0;
      for (const pid of tree(root)) {
        const stat = readStat(pid);
        if (stat === undefined) continue; // exited between the scan and now
        us += (precise ? readSchedstat(pid) ?? stat.ownUs : stat.ownUs) + stat.childrenUs;
      }
      return us;
    },
  };
}

/**
 * The pid of a live child of this process whose command line (`/proc/<pid>/cmdline`, split at
 * its NULs) `match` accepts: a program it spawned through a wrapper that keeps no pid.
 */
export function childProcess(match: (argv: string[]) => boolean): number | undefined {
  for (const [pid, ppid] of parents()) {
    if (ppid !== process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (match(argv)) return pid;
    } catch {
      // gone
    }
  }
  return undefined;
}

/** Whether `host` (a URL's hostname) is this machine: loopback, or a socket directory. */
function isLocal(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  return bare === "" || bare === "localhost" || bare === "::1" || bare.startsWith("127.") ||
    bare.startsWith("/") || bare.startsWith("%2F") || bare.startsWith("%2f");
}

/**
 * A meter of the CPU time of the PostgreSQL server that `url` reaches, given the pid of one of
 * its backends (`select pg_backend_pid()` on a connection to it): the backend's parent is the
 * postmaster, and the server is the postmaster with all its children (backends, checkpointer,
 * WAL writer, autovacuum...). Undefined when the server is not on this machine (the URL's host
 * is not loopback) or /proc does not show it as a PostgreSQL process (another machine that
 * happens to use the pid, a container with its own pid namespace, no /proc).
 */
export function serverCpu(url: string, backendPid: number): CpuMeter | undefined {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return undefined;
  }
  if (!isLocal(host)) return undefined;
  const backend = readStat(backendPid);
  if (backend === undefined || !backend.comm.startsWith("postgres")) return undefined;
  const postmaster = readStat(backend.ppid);
  if (postmaster === undefined || !postmaster.comm.startsWith("postgres")) return undefined;
  return processTreeCpu(backend.ppid);
}

/** µs per query of a meter's difference, for a table cell: "—" without a meter. */
export function perQuery(us: number | undefined, queries: number): string {
  if (us === undefined || queries === 0) return "—";
  const value = us / queries;
  return value.toFixed(value < 10 ? 1 : 0);
}
