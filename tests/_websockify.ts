// websockify (Debian's third-party WebSocket-to-TCP relay, /usr/bin/websockify) for the
// WebSocket transport's tests: it passes bytes through untouched, so PostgreSQL behind it asks
// for whatever pg_hba.conf says (SCRAM, MD5, cleartext).
//
// startWebsockify() runs one relay to a fixed target, or one that reads its targets from a
// token file (`?token=NAME`, see relayTarget()). Every relay this process started is stopped
// when it exits, and a detached watchdog stops it if the process is killed instead.
//
// This file runs under Deno and, bundled by tests/run.ts, under Node 20: `node:` modules only.

import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { accepts, freePort, HOST } from "./_net.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

const START_TIMEOUT_MS = 15_000;

/** A running websockify. */
export interface Websockify {
  /** The port it listens on (on 127.0.0.1). */
  port: number;
  /** `ws://127.0.0.1:port/`. */
  url: string;
  /** With a certificate: `wss://localhost:port/` (the same port serves both). */
  secureUrl: string | undefined;
  /** Stops it (SIGTERM to its process, which stops its per-connection children). */
  stop(): Promise<void>;
}

/** What a relay connects to: one `host:port`, or the targets named in a token file. */
export type RelayTarget = { address: string } | { tokenFile: string };

const running = new Set<ChildProcess>();
let exitHandlerInstalled = false;

function stopAllNow(): void {
  for (const child of running) child.kill("SIGTERM");
  running.clear();
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on("exit", stopAllNow);
  // Deno.exit() skips process "exit" but dispatches "unload".
  if ("addEventListener" in globalThis) globalThis.addEventListener("unload", stopAllNow);
}

/**
 * Starts websockify on a free port and resolves once it accepts connections. With `tls` (PEM
 * files of a certificate for `localhost` and its key) it also serves `wss:`.
 */
export async function startWebsockify(
  target: RelayTarget,
  tls?: { cert: string; key: string },
): Promise<Websockify> {
  installExitHandler();
  for (let attempt = 1;; attempt++) {
    const port = await freePort();
    const args = tls ? ["--cert", tls.cert, "--key", tls.key] : [];
    if ("address" in target) args.push(`${HOST}:${port}`, target.address);
    else {
      args.push("--token-plugin", "TokenFile", "--token-source", target.tokenFile);
      args.push(`${HOST}:${port}`);
    }
    const child = spawn("websockify", args, { stdio: ["ignore", "ignore", "pipe"] });
    running.add(child);
    let log = "";
    child.stderr!.setEncoding("utf8").on("data", (text: string) => log = (log + text).slice(-4000));
    const exited = new Promise<void>((resolve) => {
      child.on("exit", () => {
        running.delete(child);
        resolve();
      });
      child.on("error", (error) => {
        log += `\n${error.message}`;
        running.delete(child);
        resolve();
      });
    });
    watch(child);
    if (await listening(port, exited)) {
      // The relay must not keep the test process alive.
      child.unref();
      (child.stderr as { unref?: () => void } | null)?.unref?.();
      return {
        port,
        url: `ws://${HOST}:${port}/`,
        secureUrl: tls ? `wss://localhost:${port}/` : undefined,
        async stop() {
          if (!running.has(child)) return;
          // Waiting for an unref'd child would not keep the event loop alive.
          child.ref();
          child.kill("SIGTERM");
          await exited;
        },
      };
    }
    child.kill("SIGKILL");
    await exited;
    // Another process may have taken the port between freePort() and the bind.
    if (attempt < 3 && /in use/i.test(log)) continue;
    throw new Error(`websockify did not start on port ${port}:\n${log.trim()}`);
  }
}

/**
 * A token file for a relay started with `{ tokenFile }`, and the token of each target:
 * `token(host, port)` adds the target to the file (websockify reads it on every connection).
 */
export function tokenFile(): { path: string; token(host: string, port: number): string } {
  const dir = mkdtempSync(join(tmpdir(), "edgepool-websockify-"));
  const path = join(dir, "targets");
  writeFileSync(path, "");
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const known = new Set<string>();
  return {
    path,
    token(host, port) {
      const token = `${host.replace(/[^A-Za-z0-9]/g, "_")}_${port}`;
      if (!known.has(token)) {
        appendFileSync(path, `${token}: ${host}:${port}\n`);
        known.add(token);
      }
      return token;
    },
  };
}

/** Whether something accepts connections on `port` before `exited` settles or time runs out. */
async function listening(port: number, exited: Promise<void>): Promise<boolean> {
  let gone = false;
  exited.then(() => gone = true);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!gone && Date.now() < deadline) {
    if (await accepts(port)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

// The exit handler does not run when this process is killed: a detached shell waits for it or
// the relay to end and then stops the relay (by its process ID), if it still runs.
function watch(child: ChildProcess): void {
  if (child.pid === undefined) return;
  const script = `while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; ` +
    `if grep -q websockify "/proc/$2/cmdline" 2>/dev/null; then kill "$2"; fi; exit 0`;
  const args = [
    "-c",
    script,
    "edgepool-websockify-watchdog",
    String(process.pid),
    String(child.pid),
  ];
  const watchdog = spawn("sh", args, { cwd: "/", detached: true, stdio: "ignore" });
  watchdog.unref();
}
