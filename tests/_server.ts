// A real PostgreSQL 15 server for the integration tests, shared by every test file of a run.
//
// getServer() picks, in this order:
// 1. TEST_DATABASE_URL: a server someone else runs. Every url() is that URL (the user argument
//    is ignored), there is no CA and no restart.
// 2. EDGEPOOL_TEST_SERVER: JSON (a ServerDescription) written by tests/run.ts for the server it
//    started; children reuse it and leave stopping it to the runner.
// 3. Otherwise it starts its own server, once per process, in a temp dir, and stops it and
//    removes the dir when the process exits (also on SIGINT/SIGTERM).
//
// The server certificate is for DNS:localhost only, with deliberately no IP SAN: TLS to
// 127.0.0.1 with `verify-full` fails host-name verification while `localhost` succeeds, and
// tests rely on that to check that verification really happens. The same CA signs a client
// certificate for CERT_USER, whom pg_hba.conf lets in by `cert` alone (see TlsFiles).
//
// This file runs under Deno and, bundled by tests/run.ts, under Node 20, so it uses only
// `node:` modules.

import { execFile, execFileSync, spawn } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { freePort, HOST } from "./_net.ts";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import process from "node:process";

/** The roles the harness creates; each logs in with `passwordOf(user)`. */
export type TestUser = "scram" | "md5" | "password" | "trust" | "ssl_only" | "postgres";

/** Every harness role, in pg_hba.conf order. */
export const TEST_USERS: readonly TestUser[] = [
  "postgres",
  "trust",
  "password",
  "md5",
  "ssl_only",
  "scram",
];

/** The role that logs in by client certificate only (`hostssl ... cert`), with no password. */
export const CERT_USER = "cert_user";

/** Passphrase of the harness's encrypted client key. */
export const CLIENT_KEY_PASSPHRASE = "client-key-passphrase";

/** PEM files the harness makes beside the server's, for client-side TLS tests. */
export interface TlsFiles {
  /** Client certificate for CERT_USER, signed by the harness CA. */
  certFile: string;
  /** Its private key, unencrypted. */
  keyFile: string;
  /** The same key encrypted with CLIENT_KEY_PASSPHRASE (PKCS#8, AES-256-CBC). */
  encryptedKeyFile: string;
  /** A CA that signed nothing the server presents (for "wrong CA" tests). */
  otherCaFile: string;
}

/** Database every harness URL points at. */
export const TEST_DATABASE = "edgepool_test";

export interface TestServer {
  /** "127.0.0.1" for the harness server. */
  host: string;
  port: number;
  /**
   * URL for one of the harness users (default "scram"), with `params` appended as the query
   * string, e.g. `url("md5", { sslmode: "disable" })`.
   */
  url(user?: TestUser, params?: Record<string, string>): string;
  /** PEM of the CA that signed the server certificate (undefined when TEST_DATABASE_URL is used). */
  caPem: string | undefined;
  /** Path of that PEM. */
  caFile: string | undefined;
  /**
   * The directory of the server's Unix-domain socket (`.s.PGSQL.<port>` in it), where every
   * harness user logs in as over TCP; undefined when TEST_DATABASE_URL is used.
   */
  socketDir: string | undefined;
  /** Client certificate, keys and a second CA (undefined when TEST_DATABASE_URL is used). */
  tls: TlsFiles | undefined;
  /** true when this harness owns the server (can restart/stop it), false for TEST_DATABASE_URL. */
  managed: boolean;
  /** Runs SQL as the superuser through psql and returns stdout, trimmed (unaligned, tuples only). */
  psql(sql: string): Promise<string>;
  /**
   * Managed only: `pg_ctl restart -m fast` (or `mode`), which drops every open connection.
   * `immediate` kills the server without a checkpoint, as a crash would.
   */
  restart(mode?: ShutdownMode): Promise<void>;
}

/** `pg_ctl stop -m`: `fast` ends sessions and checkpoints, `immediate` kills (a crash). */
export type ShutdownMode = "smart" | "fast" | "immediate";

/**
 * A server of a test's own (see {@link startOwnServer}): not shared, so the test may stop and
 * start it when it likes.
 */
export interface OwnServer extends TestServer {
  /** `pg_ctl stop -m <mode>` (default `fast`): resolves once the postmaster has exited. */
  shutdown(mode?: ShutdownMode): Promise<void>;
  /** `pg_ctl start`: resolves once the server accepts connections. */
  start(): Promise<void>;
  /** Stops the server at once and removes its dir; idempotent. */
  close(): void;
  /** The temp dir that holds the data dir, the log and the certificates; removed by close(). */
  readonly dir: string;
  /** The data dir (`pg_ctl -D`), inside `dir`. */
  readonly dataDir: string;
  /** The last `lines` lines of the server's log, for error messages. */
  logTail(lines?: number): string;
  /** Runs a program of the PostgreSQL bindir as the server's OS user (`pg_ctl promote`). */
  runProgram(name: string, args: string[]): Promise<string>;
}

/** Options of {@link startOwnServer}. */
export interface OwnServerOptions {
  /**
   * Lines appended to postgresql.conf. The harness turns `synchronous_commit` off for speed,
   * which loses the last acknowledged commits in an `immediate` shutdown; a test of durability
   * turns it back on here.
   */
  config?: string;
  /**
   * Lines appended to pg_hba.conf, after the harness's (first match wins), e.g.
   * `host replication postgres 127.0.0.1/32 trust`.
   */
  hba?: string;
}

/** Runs a program of the PostgreSQL bindir (`pg_basebackup`) as the servers' OS user. */
export type RunProgram = (name: string, args: string[]) => Promise<string>;

/** Options of {@link startOwnServerFrom}. */
export interface OwnServerFromOptions {
  /** The server whose CA, certificate and key the new one uses: one CA verifies both. */
  certificatesOf: OwnServer;
  /**
   * Makes the data dir, e.g. `pg_basebackup -D dataDir -R` from another server. The harness then
   * appends its settings (port, socket dir, TLS files) and `config`, and starts the server.
   */
  makeDataDir(dataDir: string, run: RunProgram): Promise<void>;
  /** Lines appended to postgresql.conf after the harness's. */
  config?: string;
}

/** What tests/run.ts hands to its children in EDGEPOOL_TEST_SERVER (JSON). */
export interface ServerDescription {
  managed: boolean;
  host: string;
  port: number;
  database: string;
  /** Ready-made URL per user, for plain-JS consumers such as tests/workers_smoke.mjs. */
  urls: Record<TestUser, string>;
  caFile?: string;
  /** Managed only: where the server lives and how to drive it. */
  dir?: string;
  dataDir?: string;
  logFile?: string;
  bindir?: string;
  /** OS user the server runs as when the harness runs as root, else null. */
  runAs?: string | null;
}

/** Password of a harness user: its name + "_pw". */
export function passwordOf(user: TestUser): string {
  return `${user}_pw`;
}

let serverPromise: Promise<TestServer> | undefined;

/** The test server of this process, started on first call. */
export function getServer(): Promise<TestServer> {
  serverPromise ??= openServer();
  return serverPromise;
}

/** Describes a server for EDGEPOOL_TEST_SERVER. */
export function describeServer(server: TestServer): ServerDescription {
  if (server instanceof HarnessServer) return server.describe();
  const urls = Object.fromEntries(TEST_USERS.map((u) => [u, server.url(u)]));
  return {
    managed: false,
    host: server.host,
    port: server.port,
    database: TEST_DATABASE,
    urls: urls as Record<TestUser, string>,
  };
}

/**
 * Stops the server this process started and removes its dir, now rather than at exit. Does
 * nothing for a reused or external server, or when called again.
 */
export function stopServer(): void {
  const stop = stopOwned;
  stopOwned = undefined;
  stop?.();
}

const DIR_PREFIX = "edgepool-pg-";
const COMMAND_TIMEOUT_MS = 120_000;

interface Layout {
  dir: string;
  dataDir: string;
  logFile: string;
  caFile: string;
  bindir: string;
  runAs: string | null;
  port: number;
}

async function openServer(): Promise<TestServer> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) return externalServer(external);
  const described = process.env.EDGEPOOL_TEST_SERVER;
  if (described) {
    const d = JSON.parse(described) as ServerDescription;
    if (!d.managed) return externalServer(d.urls.scram);
    return new HarnessServer({
      dir: d.dir!,
      dataDir: d.dataDir!,
      logFile: d.logFile!,
      caFile: d.caFile!,
      bindir: d.bindir!,
      runAs: d.runAs ?? null,
      port: d.port,
    });
  }
  return await startServer();
}

function externalServer(url: string): TestServer {
  const parsed = new URL(url);
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    caPem: undefined,
    caFile: undefined,
    socketDir: undefined,
    tls: undefined,
    managed: false,
    url: (_user?: TestUser, params?: Record<string, string>) => withParams(url, params),
    psql: (sql: string) => runPsql(findBindir(), ["-d", url], sql),
    restart: () => Promise.reject(new Error("Cannot restart the server of TEST_DATABASE_URL")),
  };
}

function withParams(url: string, params: Record<string, string> = {}): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

class HarnessServer implements TestServer {
  readonly host = HOST;
  readonly port: number;
  readonly caPem: string;
  readonly caFile: string;
  readonly socketDir: string;
  readonly tls: TlsFiles;
  readonly managed = true;
  readonly #layout: Layout;

  constructor(layout: Layout) {
    this.#layout = layout;
    this.port = layout.port;
    this.caFile = layout.caFile;
    this.socketDir = layout.dir;
    this.caPem = readFileSync(layout.caFile, "utf8");
    this.tls = tlsFiles(layout.dir);
  }

  url(user: TestUser = "scram", params: Record<string, string> = {}): string {
    const auth = `${encodeURIComponent(user)}:${encodeURIComponent(passwordOf(user))}`;
    const query = new URLSearchParams(params).toString();
    return `postgresql://${auth}@${HOST}:${this.port}/${TEST_DATABASE}${query ? `?${query}` : ""}`;
  }

  psql(sql: string): Promise<string> {
    const args = ["-h", HOST, "-p", String(this.port), "-U", "postgres", "-d", TEST_DATABASE];
    return runPsql(this.#layout.bindir, args, sql);
  }

  async restart(mode: ShutdownMode = "fast"): Promise<void> {
    const { bindir, dataDir, logFile } = this.#layout;
    const args = [...words(`restart -m ${mode} -w -t 60 -D`), dataDir, "-l", logFile];
    await runAsOwner(this.#layout, join(bindir, "pg_ctl"), args);
  }

  runProgram(name: string, args: string[]): Promise<string> {
    return runAsOwner(this.#layout, join(this.#layout.bindir, name), args);
  }

  async shutdown(mode: ShutdownMode = "fast"): Promise<void> {
    const { bindir, dataDir } = this.#layout;
    const args = [...words(`stop -m ${mode} -w -t 60 -D`), dataDir];
    await runAsOwner(this.#layout, join(bindir, "pg_ctl"), args);
  }

  async start(): Promise<void> {
    const { bindir, dataDir, logFile } = this.#layout;
    const args = [...words("start -w -t 60 -D"), dataDir, "-l", logFile];
    await runAsOwner(this.#layout, join(bindir, "pg_ctl"), args);
  }

  describe(): ServerDescription {
    const urls = Object.fromEntries(TEST_USERS.map((u) => [u, this.url(u)]));
    return {
      managed: true,
      host: HOST,
      port: this.port,
      database: TEST_DATABASE,
      urls: urls as Record<TestUser, string>,
      caFile: this.caFile,
      dir: this.#layout.dir,
      dataDir: this.#layout.dataDir,
      logFile: this.#layout.logFile,
      bindir: this.#layout.bindir,
      runAs: this.#layout.runAs,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping

let stopOwned: (() => void) | undefined;
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const stopAll = () => {
    stopServer();
    for (const stop of ownServers) stop();
    ownServers.clear();
  };
  process.on("exit", stopAll);
  // Deno.exit() skips process "exit" but dispatches "unload"; Node has no such event.
  if ("addEventListener" in globalThis) globalThis.addEventListener("unload", stopAll);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.on(signal, () => {
      stopAll();
      process.exit(code);
    });
  }
}

/**
 * Starts a server of the caller's own, beside the shared one (its own dir, port, roles and
 * database, as `getServer()`'s): for tests that stop or crash the server. Stopped and removed
 * when the process exits, if `close()` was not called before.
 */
export async function startOwnServer(options: OwnServerOptions = {}): Promise<OwnServer> {
  const own = { config: options.config ?? "", hba: options.hba ?? "" };
  return await startServer(own) as OwnHarnessServer;
}

/**
 * Starts a server of the caller's own, as {@link startOwnServer}, from a data dir that
 * `options.makeDataDir` makes instead of initdb, such as a standby's base backup (see
 * tests/_replication.ts). Its roles, database and pg_hba.conf are whatever that data dir holds.
 */
export async function startOwnServerFrom(options: OwnServerFromOptions): Promise<OwnServer> {
  return await startServer({ config: options.config ?? "", from: options }) as OwnHarnessServer;
}

/** The stop functions of every own server still running, for the exit handlers. */
const ownServers = new Set<() => void>();

class OwnHarnessServer extends HarnessServer implements OwnServer {
  #stop: (() => void) | undefined;
  readonly dir: string;
  readonly dataDir: string;
  readonly #logFile: string;

  constructor(layout: Layout, stop: () => void) {
    super(layout);
    this.#stop = stop;
    this.dir = layout.dir;
    this.dataDir = layout.dataDir;
    this.#logFile = layout.logFile;
  }

  logTail(lines?: number): string {
    return logTail(this.#logFile, lines);
  }

  close(): void {
    const stop = this.#stop;
    if (stop === undefined) return;
    this.#stop = undefined;
    ownServers.delete(stop);
    stop();
  }
}

/**
 * Starts the shared server, or with `own` one of the caller's own (see startOwnServer), made by
 * initdb or, with `own.from`, from a data dir of the caller's making (see startOwnServerFrom).
 */
async function startServer(
  own?: { config: string; hba?: string; from?: OwnServerFromOptions },
): Promise<HarnessServer> {
  const bindir = findBindir();
  const runAs = process.getuid?.() === 0 ? "postgres" : null;
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const layout: Layout = {
    dir,
    dataDir: join(dir, "data"),
    logFile: join(dir, "postgres.log"),
    caFile: join(dir, "ca.crt"),
    bindir,
    runAs,
    port: 0,
  };
  const stop = () => stopSync(layout);
  if (own) ownServers.add(stop);
  else stopOwned = stop;
  installExitHandlers();
  try {
    if (runAs) chownSync(dir, ...ids(runAs));
    startWatchdog(layout);
    const from = own?.from;
    if (from) {
      copyCertificates(from.certificatesOf.dir, layout);
      await from.makeDataDir(
        layout.dataDir,
        (name, args) => runAsOwner(layout, join(bindir, name), args),
      );
    } else {
      await allSettled([
        runAsOwner(layout, join(bindir, "initdb"), [
          ...words("-A trust --auth-host=scram-sha-256 -U postgres -E UTF8 --locale=C"),
          ...words("--no-sync --no-instructions -D"),
          layout.dataDir,
        ]),
        makeCertificates(layout),
      ]);
      writeFileSync(join(layout.dataDir, "pg_hba.conf"), HBA + (own?.hba ?? ""));
    }
    for (let attempt = 1;; attempt++) {
      layout.port = await freePort();
      appendFileSync(
        join(layout.dataDir, "postgresql.conf"),
        serverConfig(layout) + (own?.config ?? "") + "\n",
      );
      try {
        const args = [...words("start -w -t 60 -D"), layout.dataDir, "-l", layout.logFile];
        await runAsOwner(layout, join(bindir, "pg_ctl"), args);
        break;
      } catch (e) {
        const log = logTail(layout.logFile);
        // Another process may have taken the port between freePort() and the bind: try anew.
        if (attempt < 3 && /could not bind|address already in use/i.test(log)) continue;
        throw new Error(`Cannot start the test server: ${errorText(e)}\n--- log tail ---\n${log}`);
      }
    }
    // A copied data dir brings its roles and database along.
    if (from) return new OwnHarnessServer(layout, stop);
    // Over the unix socket, where postgres needs no password.
    const socket = ["-h", dir, "-p", String(layout.port), "-U", "postgres"];
    await runPsql(bindir, socket, "", SETUP);
    // PostgreSQL 15 no longer lets every role create in schema public; tests want to.
    await runPsql(
      bindir,
      [...socket, "-d", TEST_DATABASE],
      "GRANT CREATE ON SCHEMA public TO PUBLIC",
    );
  } catch (e) {
    if (own) {
      ownServers.delete(stop);
      stop();
    } else {
      stopServer();
    }
    throw e;
  }
  return own ? new OwnHarnessServer(layout, stop) : new HarnessServer(layout);
}

// Later settings win, so appending overrides initdb's defaults (and an earlier attempt's port).
function serverConfig(layout: Layout): string {
  return `
# edgepool test harness
listen_addresses = '${HOST}'
port = ${layout.port}
unix_socket_directories = '${layout.dir}'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
ssl = on
ssl_cert_file = '${join(layout.dir, "server.crt")}'
ssl_key_file = '${join(layout.dir, "server.key")}'
ssl_ca_file = '${join(layout.dir, "ca.crt")}'
`;
}

// First match wins. Names are quoted so that "trust", "password" and "md5" are never read as
// keywords. Over the Unix socket each user logs in as over TCP (no TLS there: ssl_only cannot).
const HBA = `# edgepool test harness
# TYPE     DATABASE  USER        ADDRESS       METHOD
local      all       postgres                  trust
hostssl    all       "${CERT_USER}"   127.0.0.1/32  cert
local      all       "trust"                   trust
local      all       "password"                password
local      all       "md5"                     md5
local      all       "scram"                   scram-sha-256
host       all       postgres    127.0.0.1/32  trust
host       all       "trust"     127.0.0.1/32  trust
host       all       "password"  127.0.0.1/32  password
host       all       "md5"       127.0.0.1/32  md5
hostssl    all       "ssl_only"  127.0.0.1/32  scram-sha-256
hostnossl  all       "ssl_only"  127.0.0.1/32  reject
host       all       "scram"     127.0.0.1/32  scram-sha-256
`;

// Each -c runs on its own, outside a transaction, as CREATE DATABASE requires.
const SETUP = [
  `ALTER ROLE postgres PASSWORD '${passwordOf("postgres")}'`,
  `CREATE ROLE "trust" LOGIN PASSWORD '${passwordOf("trust")}'`,
  `CREATE ROLE "password" LOGIN PASSWORD '${passwordOf("password")}'`,
  // md5 auth needs an md5-stored password; against a SCRAM one the server would do SCRAM.
  `SET password_encryption = 'md5'; CREATE ROLE "md5" LOGIN PASSWORD '${passwordOf("md5")}'; ` +
  `RESET password_encryption`,
  `CREATE ROLE "ssl_only" LOGIN PASSWORD '${passwordOf("ssl_only")}'`,
  `CREATE ROLE "scram" LOGIN PASSWORD '${passwordOf("scram")}'`,
  `CREATE ROLE "${CERT_USER}" LOGIN`,
  `CREATE DATABASE ${TEST_DATABASE} OWNER postgres`,
  `GRANT CONNECT ON DATABASE ${TEST_DATABASE} TO PUBLIC`,
];

function tlsFiles(dir: string): TlsFiles {
  return {
    certFile: join(dir, "client.crt"),
    keyFile: join(dir, "client.key"),
    encryptedKeyFile: join(dir, "client.enc.key"),
    otherCaFile: join(dir, "other-ca.crt"),
  };
}

/** The client certificate for CERT_USER, its keys, and a CA of no use to the server. */
async function makeClientFiles(
  layout: Layout,
  config: string[],
  common: string[],
): Promise<void> {
  const { dir } = layout;
  const file = (name: string) => join(dir, name);
  const files = tlsFiles(dir);
  // EC keys: made in milliseconds, where RSA takes a while on a busy machine.
  const ec = words("-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes");
  const options = { cwd: dir };
  await Promise.all([
    (async () => {
      await run("openssl", [
        "req",
        "-new",
        ...ec,
        ...config,
        ...["-subj", `/CN=${CERT_USER}`, "-keyout", files.keyFile, "-out", file("client.csr")],
      ], options);
      await run("openssl", [
        ...words("x509 -req -extensions v3_client"),
        ...common,
        ...["-extfile", file("openssl.cnf"), "-in", file("client.csr"), "-out", files.certFile],
        ...["-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-set_serial", String(Date.now())],
      ], options);
      await run("openssl", [
        ...words("pkcs8 -topk8 -v2 aes-256-cbc"),
        ...["-in", files.keyFile, "-out", files.encryptedKeyFile],
        ...["-passout", `pass:${CLIENT_KEY_PASSPHRASE}`],
      ], options);
    })(),
    run("openssl", [
      ...words("req -x509 -extensions v3_ca"),
      ...ec,
      ...config,
      ...common,
      ...["-subj", "/CN=edgepool other CA", "-keyout", file("other-ca.key")],
      ...["-out", files.otherCaFile],
    ], options),
  ]);
}

async function makeCertificates(layout: Layout): Promise<void> {
  const { dir } = layout;
  const file = (name: string) => join(dir, name);
  writeFileSync(file("openssl.cnf"), OPENSSL_CONFIG);
  const config = ["-config", file("openssl.cnf")];
  const common = words("-sha256 -days 3650");
  const options = { cwd: dir };
  await run("openssl", [
    ...words("req -x509 -extensions v3_ca -newkey rsa:2048 -nodes"),
    ...config,
    ...common,
    ...["-subj", "/CN=edgepool test CA", "-keyout", file("ca.key"), "-out", file("ca.crt")],
  ], options);
  await run("openssl", [
    ...words("req -new -newkey rsa:2048 -nodes -subj /CN=localhost"),
    ...config,
    ...["-keyout", file("server.key"), "-out", file("server.csr")],
  ], options);
  await run("openssl", [
    ...words("x509 -req -extensions v3_server"),
    ...common,
    ...["-extfile", file("openssl.cnf"), "-in", file("server.csr"), "-out", file("server.crt")],
    ...["-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-set_serial", String(Date.now())],
  ], options);
  await makeClientFiles(layout, config, common);
  chmodSync(file("server.key"), 0o600);
  chmodSync(file("ca.crt"), 0o644);
  if (layout.runAs) {
    for (const name of ["server.key", "server.crt", "ca.crt"]) {
      chownSync(file(name), ...ids(layout.runAs));
    }
  }
}

// Another own server's certificates, for a server made from its data dir (a standby), so that
// one CA verifies both.
function copyCertificates(sourceDir: string, layout: Layout): void {
  for (const name of ["ca.crt", "server.crt", "server.key"]) {
    const target = join(layout.dir, name);
    copyFileSync(join(sourceDir, name), target);
    if (layout.runAs) chownSync(target, ...ids(layout.runAs));
  }
  chmodSync(join(layout.dir, "server.key"), 0o600);
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = edgepool test
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;

// Synchronous, because it runs from the "exit" handler.
function stopSync(layout: Layout): void {
  const pidFile = join(layout.dataDir, "postmaster.pid");
  if (existsSync(pidFile)) {
    const stop = [...words("stop -m immediate -w -t 30 -D"), layout.dataDir];
    const [cmd, args] = ownerCommand(layout.runAs, join(layout.bindir, "pg_ctl"), stop);
    try {
      execFileSync(cmd, args, { cwd: layout.dir, stdio: "ignore", timeout: 40_000 });
    } catch {
      killPostmaster(pidFile);
    }
  }
  try {
    rmSync(layout.dir, { recursive: true, force: true, maxRetries: 5 });
  } catch {
    // Exit handlers must not throw; the watchdog tries again once this process is gone.
  }
}

// The exit handlers do not run when the process is killed or, on Deno, dies of an uncaught
// error. A detached shell waits for this process to end and then stops the server (when the
// handlers did run, it finds nothing left to do).
function startWatchdog(layout: Layout): void {
  const stop = ownerCommand(layout.runAs, join(layout.bindir, "pg_ctl"), [
    ...words("stop -m immediate -w -D"),
    layout.dataDir,
  ]).flat();
  const script = `owner="$1"; dir="$2"; shift 2; ` +
    `tail --pid="$owner" -f /dev/null 2>/dev/null || ` +
    `while kill -0 "$owner" 2>/dev/null; do sleep 1; done; ` +
    `if [ -f "$dir/data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi; rm -rf "$dir"`;
  const args = ["-c", script, "edgepool-watchdog", String(process.pid), layout.dir, ...stop];
  const child = spawn("sh", args, { cwd: "/", detached: true, stdio: "ignore" });
  child.unref();
}

function killPostmaster(pidFile: string): void {
  try {
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    if (pid > 0) process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

let bindirCache: string | undefined;

function findBindir(): string {
  if (bindirCache) return bindirCache;
  const candidates: string[] = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim());
  } catch {
    // No pg_config on PATH.
  }
  candidates.push("/usr/lib/postgresql/15/bin");
  const found = candidates.find((d) =>
    existsSync(join(d, "initdb")) || existsSync(join(d, "psql"))
  );
  if (!found) {
    throw new Error(`Cannot find the PostgreSQL binaries (tried ${candidates.join(", ")})`);
  }
  bindirCache = found;
  return found;
}

// Splits a fixed run of arguments (none with spaces) written as one string.
function words(text: string): string[] {
  return text.split(" ");
}

/** The uid and gid of OS user `user`. */
export function ids(user: string): [number, number] {
  const out = execFileSync("id", ["-u", user], { encoding: "utf8" }).trim();
  const group = execFileSync("id", ["-g", user], { encoding: "utf8" }).trim();
  return [Number(out), Number(group)];
}

function ownerCommand(runAs: string | null, cmd: string, args: string[]): [string, string[]] {
  return runAs ? ["runuser", ["-u", runAs, "--", cmd, ...args]] : [cmd, args];
}

function runAsOwner(layout: Layout, cmd: string, args: string[]): Promise<string> {
  const [c, a] = ownerCommand(layout.runAs, cmd, args);
  return run(c, a, { cwd: layout.dir });
}

function runPsql(
  bindir: string,
  connection: string[],
  sql: string,
  statements: string[] = [sql],
): Promise<string> {
  const args = ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", ...connection];
  for (const s of statements) args.push("-c", s);
  return run(join(bindir, "psql"), args).then((out) => out.trim());
}

// Libpq reads PG* variables; the harness wants only what it passes.
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("PG")) env[k] = v;
  }
  env.PGCONNECT_TIMEOUT = "10";
  return env;
}

function run(cmd: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, {
      cwd: options.cwd,
      env: cleanEnv(),
      encoding: "utf8",
      timeout: COMMAND_TIMEOUT_MS,
      maxBuffer: 64 * 1024 * 1024,
    }, (error, stdout, stderr) => {
      if (error) {
        const detail = String(stderr).trim() || String(stdout).trim() || error.message;
        const argv = cmd === "runuser" ? args.slice(args.indexOf("--") + 1) : [cmd, ...args];
        const name = basename(argv[0]);
        // "pg_ctl start", "openssl x509": the subcommand says which step failed.
        const sub = /^(pg_ctl|openssl)$/.test(name) ? ` ${argv[1]}` : "";
        reject(new Error(`${name}${sub} failed: ${detail}`));
      } else {
        resolve(String(stdout));
      }
    });
  });
}

function logTail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

// Like Promise.all, but settles only when every promise has, so that nothing still writes into
// the dir when a failure leads to removing it.
async function allSettled(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
