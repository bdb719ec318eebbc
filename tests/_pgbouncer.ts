// A real PgBouncer (Debian's /usr/sbin/pgbouncer, 1.18 on CI) in front of the test server of
// tests/_server.ts, for the tests of edgepool behind a transaction- or session-mode pooler.
//
// startPgBouncer() writes pgbouncer.ini and userlist.txt into a temp dir, starts PgBouncer in
// the foreground on a free loopback port and resolves once it accepts connections. Clients log
// in to PgBouncer with SCRAM-SHA-256 (or MD5), and PgBouncer logs in to the server with the
// password from userlist.txt, by whatever method pg_hba.conf asks for. PgBouncer refuses to run
// as root, so under root it runs as the postgres OS user, as the server does.
//
// Only the startup parameters PgBouncer accepts out of the box are allowed
// (ignore_startup_parameters stays empty): a client that sends another one is refused, which is
// what the tests want to notice.
//
// Every PgBouncer this process started is stopped when it exits, and a detached watchdog stops
// it if the process is killed instead.
//
// This file runs under Deno and, bundled by tests/run.ts, under Node 20: `node:` modules only.

import { type ChildProcess, spawn } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { accepts, HOST } from "./_net.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { getServer, ids, passwordOf, TEST_DATABASE, TEST_USERS, type TestUser } from "./_server.ts";

/** PgBouncer's `pool_mode`: when a server connection goes back to its pool. */
export type PgBouncerPoolMode = "transaction" | "session";

/** Options of {@link startPgBouncer}. */
export interface PgBouncerOptions {
  /** Default `"transaction"`. */
  poolMode?: PgBouncerPoolMode;
  /** How clients log in to PgBouncer. Default `"scram-sha-256"`. */
  authType?: "scram-sha-256" | "md5";
  /**
   * What userlist.txt holds for the users whose server password is a SCRAM secret: `"plain"`
   * (the password) or `"scram"` (the server's own SCRAM secret, read from pg_authid). With a
   * secret PgBouncer can log in to the server only by SCRAM, reusing the keys the client
   * proved, so not as a user the server asks for a cleartext password ("password"). The
   * others always get their plain password. Default `"plain"`.
   */
  secrets?: "plain" | "scram";
  /** `default_pool_size`: server connections per database and user. Default 5. */
  poolSize?: number;
  /** `max_client_conn`. Default 200. */
  maxClientConn?: number;
}

/** A running PgBouncer. */
export interface PgBouncer {
  /** "127.0.0.1". */
  host: string;
  port: number;
  poolMode: PgBouncerPoolMode;
  /** PgBouncer's `default_pool_size`. */
  poolSize: number;
  /**
   * URL of the test database through PgBouncer for one of the harness users (default
   * "scram"), with `params` as the query string. With TEST_DATABASE_URL the user is that URL's.
   */
  url(user?: TestUser, params?: Record<string, string>): string;
  /** Stops PgBouncer (an immediate shutdown, which drops every client) and starts it again on
   * the same port; resolves once it accepts connections. `onDown` is called (and awaited) once
   * the old one has exited, before the new one starts. */
  restart(options?: { onDown?: () => void | Promise<void> }): Promise<void>;
  /** Stops it and removes its dir; idempotent. */
  stop(): Promise<void>;
  /** The last `lines` of its log. */
  logTail(lines?: number): string;
}

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
// Debian's package puts it in /usr/sbin, often not on a user's PATH.
const BIN = process.env.PGBOUNCER ??
  (existsSync("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : "pgbouncer");

interface Layout {
  dir: string;
  config: string;
  logFile: string;
  pidFile: string;
  runAs: string | null;
  port: number;
}

/** Every PgBouncer of this process, for the exit handler. */
const running = new Set<Instance>();
let exitHandlerInstalled = false;

/** Starts a PgBouncer in front of `getServer()`. */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const poolMode = options.poolMode ?? "transaction";
  const poolSize = options.poolSize ?? 5;
  const server = await getServer();
  const target = new URL(server.url());
  // With TEST_DATABASE_URL, every url() is that one URL, so there is one user to list.
  const users = server.managed
    ? TEST_USERS.map((user) => ({
      name: user as string,
      password: passwordOf(user),
    }))
    : [{
      name: decodeURIComponent(target.username),
      password: decodeURIComponent(target.password),
    }];
  if (options.secrets === "scram" && server.managed) {
    const out = await server.psql(
      "select rolname || ' ' || rolpassword from pg_authid " +
        "where rolcanlogin and rolpassword like 'SCRAM-SHA-256$%'",
    );
    const secrets = new Map(
      out.split("\n").filter(Boolean).map((line) => {
        const at = line.indexOf(" ");
        return [line.slice(0, at), line.slice(at + 1)];
      }),
    );
    for (const user of users) user.password = secrets.get(user.name) ?? user.password;
  }

  installExitHandler();
  const runAs = process.getuid?.() === 0 ? "postgres" : null;
  const dir = mkdtempSync(join(tmpdir(), "edgepool-pgbouncer-"));
  const layout: Layout = {
    dir,
    config: join(dir, "pgbouncer.ini"),
    logFile: join(dir, "pgbouncer.log"),
    pidFile: join(dir, "pgbouncer.pid"),
    runAs,
    port: 0,
  };
  const userlist = join(dir, "userlist.txt");
  writeFileSync(userlist, users.map((u) => `${quote(u.name)} ${quote(u.password)}\n`).join(""), {
    mode: 0o600,
  });
  if (runAs) {
    const [uid, gid] = ids(runAs);
    chownSync(dir, uid, gid);
    chownSync(userlist, uid, gid);
  }
  const instance = new Instance(layout);
  running.add(instance);
  startWatchdog(layout);
  try {
    for (let attempt = 1;; attempt++) {
      layout.port = await lowFreePort();
      writeFileSync(
        layout.config,
        config(layout, {
          serverHost: target.hostname,
          serverPort: Number(target.port || 5432),
          database: server.managed ? TEST_DATABASE : target.pathname.slice(1),
          poolMode,
          poolSize,
          authType: options.authType ?? "scram-sha-256",
          authFile: userlist,
          maxClientConn: options.maxClientConn ?? 200,
        }),
      );
      try {
        await instance.start();
        break;
      } catch (e) {
        // Another process may have taken the port between lowFreePort() and the bind.
        if (attempt < 3 && /in use/i.test(instance.logTail(3))) continue;
        throw e;
      }
    }
  } catch (e) {
    await instance.stop();
    throw e;
  }
  return {
    host: HOST,
    get port() {
      return layout.port;
    },
    poolMode,
    poolSize,
    url(user = "scram", params = {}) {
      // The server URL's user, password and database; none of its parameters (a
      // TEST_DATABASE_URL's sslmode=require would ask PgBouncer for TLS it does not offer).
      const { username, password, pathname } = new URL(server.url(user));
      const query = new URLSearchParams(params).toString();
      return `postgresql://${username}:${password}@${HOST}:${layout.port}${pathname}` +
        (query ? `?${query}` : "");
    },
    restart: (options?: { onDown?: () => void | Promise<void> }) =>
      instance.restart(options?.onDown),
    stop: () => instance.stop(),
    logTail: (lines?: number) => instance.logTail(lines),
  };
}

function config(layout: Layout, s: {
  serverHost: string;
  serverPort: number;
  database: string;
  poolMode: PgBouncerPoolMode;
  poolSize: number;
  authType: string;
  authFile: string;
  maxClientConn: number;
}): string {
  return `; edgepool test harness
[databases]
${s.database} = host=${s.serverHost} port=${s.serverPort} dbname=${s.database}

[pgbouncer]
listen_addr = ${HOST}
listen_port = ${layout.port}
unix_socket_dir =
pidfile = ${layout.pidFile}
logfile = ${layout.logFile}
auth_type = ${s.authType}
auth_file = ${s.authFile}
pool_mode = ${s.poolMode}
max_client_conn = ${s.maxClientConn}
default_pool_size = ${s.poolSize}
; TLS to the server when it offers it (a TEST_DATABASE_URL server may insist); none to clients.
server_tls_sslmode = prefer
; The default of 15 s would turn one failed server login into 15 s of refused clients.
server_login_retry = 1
; A client waiting for a server connection fails rather than hangs.
query_wait_timeout = 30
`;
}

class Instance {
  readonly #layout: Layout;
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #stderr = "";

  constructor(layout: Layout) {
    this.#layout = layout;
  }

  async start(): Promise<void> {
    const { config, runAs, port } = this.#layout;
    const [cmd, args] = runAs ? ["runuser", ["-u", runAs, "--", BIN, config]] : [BIN, [config]];
    this.#stderr = "";
    const child = spawn(cmd, args, { cwd: this.#layout.dir, stdio: ["ignore", "ignore", "pipe"] });
    this.#child = child;
    child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      this.#stderr = (this.#stderr + text).slice(-4000);
    });
    let gone = false;
    this.#exited = new Promise<void>((resolve) => {
      child.on("exit", () => resolve());
      child.on("error", (error) => {
        this.#stderr += `\n${error.message}`;
        resolve();
      });
    }).then(() => {
      gone = true;
      if (this.#child === child) this.#child = null;
    });
    // PgBouncer must not keep the test process alive.
    child.unref();
    (child.stderr as { unref?: () => void } | null)?.unref?.();
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!gone && Date.now() < deadline) {
      if (await accepts(port)) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    if (!gone) await this.#kill();
    throw new Error(
      `PgBouncer did not start on port ${port}:\n${this.#stderr.trim()}\n--- log tail ---\n` +
        this.logTail(),
    );
  }

  async restart(onDown?: () => void | Promise<void>): Promise<void> {
    await this.#kill();
    await onDown?.();
    for (let attempt = 1;; attempt++) {
      try {
        return await this.start();
      } catch (e) {
        // The port is taken for a moment (a connection still closing): try again.
        if (attempt < 5 && /in use/i.test(this.logTail(3))) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          continue;
        }
        throw e;
      }
    }
  }

  async stop(): Promise<void> {
    if (!running.delete(this)) return;
    await this.#kill();
    rmSync(this.#layout.dir, { recursive: true, force: true, maxRetries: 5 });
  }

  /** Synchronous, for the exit handler. */
  stopNow(): void {
    signal(this.#pid(), "SIGKILL");
    this.#child?.kill("SIGKILL");
    try {
      rmSync(this.#layout.dir, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // Exit handlers must not throw; the watchdog tries again once this process is gone.
    }
  }

  logTail(lines = 30): string {
    try {
      const text = readFileSync(this.#layout.logFile, "utf8");
      return text.trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return this.#stderr.trim() || "(no log)";
    }
  }

  /** SIGTERM (PgBouncer 1.18: immediate shutdown), then SIGKILL if it lingers. */
  async #kill(): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    // Waiting for an unref'd child would not keep the event loop alive.
    child.ref();
    // Under runuser, the PID in the pidfile is PgBouncer's; runuser ends with it.
    const pid = this.#pid();
    signal(pid, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
    });
    if (await Promise.race([this.#exited.then(() => false), late])) {
      signal(pid, "SIGKILL");
      child.kill("SIGKILL");
      await this.#exited;
    }
    clearTimeout(timer);
  }

  /** PgBouncer's own PID: from its pidfile, else (not yet written) the child's. */
  #pid(): number | undefined {
    try {
      const pid = Number(readFileSync(this.#layout.pidFile, "utf8").trim());
      if (pid > 0) return pid;
    } catch {
      // Not written yet, or removed at shutdown.
    }
    return this.#layout.runAs ? undefined : this.#child?.pid;
  }
}

function signal(pid: number | undefined, name: "SIGTERM" | "SIGKILL"): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  const stopAll = () => {
    for (const instance of running) instance.stopNow();
    running.clear();
  };
  process.on("exit", stopAll);
  // Deno.exit() skips process "exit" but dispatches "unload".
  if ("addEventListener" in globalThis) globalThis.addEventListener("unload", stopAll);
}

// The exit handler does not run when this process is killed or, on Deno, dies of an uncaught
// error. A detached shell waits for this process to end, then stops the PgBouncer named in the
// pidfile (whichever a restart left there) and removes the dir.
function startWatchdog(layout: Layout): void {
  const script = `owner="$1"; dir="$2"; ` +
    `tail --pid="$owner" -f /dev/null 2>/dev/null || ` +
    `while kill -0 "$owner" 2>/dev/null; do sleep 1; done; ` +
    `if [ -f "$dir/pgbouncer.pid" ]; then kill -9 "$(cat "$dir/pgbouncer.pid")" 2>/dev/null; fi; ` +
    `rm -rf "$dir"`;
  const args = ["-c", script, "edgepool-pgbouncer-watchdog", String(process.pid), layout.dir];
  const child = spawn("sh", args, { cwd: "/", detached: true, stdio: "ignore" });
  child.unref();
}

// userlist.txt: a field in double quotes, with a double quote written twice.
function quote(text: string): string {
  return `"${text.replaceAll('"', '""')}"`;
}

// A port below the kernel's ephemeral range, free now. Not an ephemeral one: while PgBouncer
// is down for a restart, a client connecting to its port could be given that very port as its
// own (TCP then connects the socket to itself) and keep PgBouncer from binding it again. And
// never 6543, which `pooler: "auto"` takes for a transaction pooler, whatever the mode.
async function lowFreePort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0]);
  } catch {
    // Not Linux: take the usual start of the range.
  }
  const first = Math.min(20_000, low - 1_000);
  for (let i = 0; i < 100; i++) {
    const port = first + Math.floor(Math.random() * (low - first));
    if (port !== 6543 && await bindable(port)) return port;
  }
  throw new Error(`No free port from ${first} to ${low - 1} on ${HOST}`);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}
