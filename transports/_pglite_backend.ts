// The PGlite side of the transport: the instance, and one Backend per instance that queues
// sessions and resets the database between them.

/** A session, as far as the backend's queue cares: only its identity. */
export type Session = object;

import {
  concat,
  cstring,
  dataRow,
  forEachMessage,
  frame,
  int16,
  int32,
  message,
  readInt32,
  textValue,
} from "./_pglite_wire.ts";

// ---------------------------------------------------------------------------------------------
// PGlite, as far as this file uses it.

export interface Pglite {
  readonly closed: boolean;
  readonly waitReady: Promise<void>;
  close(): Promise<void>;
  /** Runs `fn` holding the query lock (never two protocol exchanges at once). */
  runExclusive<T>(fn: () => Promise<T>): Promise<T>;
  /** Runs `fn` holding the lock PGlite's own query()/transaction() take first. */
  _runExclusiveTransaction?<T>(fn: () => Promise<T>): Promise<T>;
  /** Runs a buffer of frontend messages; the response bytes go to `onRawData` as produced. */
  execProtocolRawStream(
    message: Uint8Array,
    options: { onRawData: (data: Uint8Array) => void },
  ): Promise<void>;
}

export function isPglite(value: unknown): value is Pglite {
  const db = value as Partial<Pglite> | null;
  return typeof db === "object" && db !== null &&
    typeof db.execProtocolRawStream === "function" && typeof db.runExclusive === "function";
}

export async function open(dataDir: string | undefined, shared: unknown): Promise<Pglite> {
  if (shared !== undefined) {
    await (shared as Pglite).waitReady;
    return shared as Pglite;
  }
  const { PGlite } = await import("@electric-sql/pglite");
  return await PGlite.create(dataDir === "memory" ? undefined : dataDir);
}

// ---------------------------------------------------------------------------------------------
// One backend per PGlite instance: the session queue and the order of every exchange.

export const backends = new WeakMap<Pglite, Backend>();

export function backendOf(db: Pglite): Backend {
  let backend = backends.get(db);
  if (backend === undefined) backends.set(db, backend = new Backend(db));
  return backend;
}

/** The GUC_REPORT parameters a server announces at startup. */
export const REPORTED = [
  "application_name",
  "client_encoding",
  "DateStyle",
  "default_transaction_read_only",
  "in_hot_standby",
  "integer_datetimes",
  "IntervalStyle",
  "is_superuser",
  "scram_iterations",
  "search_path",
  "server_encoding",
  "server_version",
  "session_authorization",
  "standard_conforming_strings",
  "TimeZone",
];
// Single-user mode leaves session_authorization empty.
export const REPORT_SQL =
  `select name, case name when 'session_authorization' then session_user::text
  else current_setting(name, true) end from (values ${
    REPORTED.map((name) => `('${name}')`).join(", ")
  }) as reported(name)`;
export const ROLE_SQL = "select 'role', current_setting('role')";

/** What a new backend would not have: run after each session, each statement on its own. */
export const RESET_SQL = [
  "rollback",
  "close all",
  "reset session authorization",
  "reset all",
  "deallocate all",
  "unlisten *",
  "select pg_advisory_unlock_all()",
  "discard temp",
  "discard sequences",
  "discard plans",
];

export class Backend {
  readonly #db: Pglite;
  #holder: Session | null = null;
  readonly #waiters: { stream: Session; grant: (granted: boolean) => void }[] = [];
  /** Every exchange with PGlite, in order: a session's batches, its reset, the next startup. */
  #work: Promise<void> = Promise.resolve();
  /** Releases PGlite's transaction lock, held while a session is not idle. */
  #unlock: (() => void) | null = null;
  #broken: Error | null = null;
  #resetBytes: Uint8Array | null = null;
  #nextPid = 1;

  constructor(db: Pglite) {
    this.#db = db;
  }

  /** Resolves `true` when `stream` owns the database, `false` if it left the queue first. */
  acquire(stream: Session): Promise<boolean> {
    if (this.#holder === null) {
      this.#holder = stream;
      return Promise.resolve(true);
    }
    return new Promise((grant) => this.#waiters.push({ stream, grant }));
  }

  /** `stream` ended: leave the queue, or reset the session and hand the database on. */
  leave(stream: Session): void {
    const at = this.#waiters.findIndex((waiter) => waiter.stream === stream);
    if (at >= 0) return this.#waiters.splice(at, 1)[0].grant(false);
    if (this.#holder !== stream) return;
    if (this.#resetBytes !== null) this.exec(this.#resetBytes, () => {}).catch(() => {});
    // The reset is queued in #work ahead of the next session's startup.
    const next = this.#waiters.shift();
    this.#holder = next?.stream ?? null;
    next?.grant(true);
  }

  /** Resolves once every queued exchange has run. */
  settled(): Promise<void> {
    return this.#work;
  }

  /**
   * Runs the startup of a session: applies the StartupMessage's settings, reads the reported
   * parameters, and returns the server's answer (ending in ReadyForQuery, or in an
   * ErrorResponse when a setting was refused).
   */
  async startSession(params: Map<string, string>): Promise<{ reply: Uint8Array; ok: boolean }> {
    const settings = startupSettings(params);
    // The role to restore after each session: the instance's, read before anyone changes it.
    const request = this.#resetBytes === null ? [frame(0x51, cstring(ROLE_SQL))] : [];
    if (settings.length > 0) {
      request.push(frame(0x50, cstring(""), cstring("select set_config($1, $2, false)"), int16(0)));
      for (const [name, value] of settings) {
        const values = [textValue(name), textValue(value)];
        request.push(
          frame(0x42, cstring(""), cstring(""), int16(0), int16(2), ...values, int16(0)),
        );
        request.push(frame(0x45, cstring(""), int32(0)));
      }
      request.push(frame(0x53));
    }
    request.push(frame(0x51, cstring(REPORT_SQL)));
    const chunks: Uint8Array[] = [];
    await this.exec(concat(request), (chunk) => chunks.push(chunk.slice()));
    const values = new Map<string, string>();
    let error: Uint8Array | null = null;
    forEachMessage(concat(chunks), (type, message) => {
      if (type === 0x45) error ??= message.slice();
      if (type === 0x44) {
        const row = dataRow(message); // set_config's rows have one column, the report's two
        if (row.length === 2 && row[1] !== null) values.set(row[0]!, row[1]);
      }
    });
    if (values.has("role")) this.#resetBytes ??= resetBytes(values.get("role")!);
    values.delete("role");
    if (error !== null) return { reply: error, ok: false };
    const reply: Uint8Array[] = [frame(0x52, int32(0))]; // AuthenticationOk
    for (const [name, value] of values) reply.push(frame(0x53, cstring(name), cstring(value)));
    const secret = crypto.getRandomValues(new Uint8Array(4));
    reply.push(frame(0x4b, int32(this.#nextPid++), secret), frame(0x5a, new Uint8Array([0x49])));
    return { reply: concat(reply), ok: true };
  }

  /** Runs a buffer of whole frontend messages, after everything queued before it. */
  exec(bytes: Uint8Array, onData: (chunk: Uint8Array) => void): Promise<void> {
    const run = this.#work.then(() => this.#run(bytes, onData));
    this.#work = run.catch(() => {});
    return run;
  }

  async #run(bytes: Uint8Array, onData: (chunk: Uint8Array) => void): Promise<void> {
    if (this.#broken !== null) throw this.#broken;
    const db = this.#db;
    if (this.#unlock === null && db._runExclusiveTransaction !== undefined) {
      // Keep PGlite's own query()/transaction() from running inside a session's transaction,
      // and the session's statements from running inside one of theirs.
      await new Promise<void>((locked) => {
        db._runExclusiveTransaction!(() =>
          new Promise<void>((unlock) => {
            this.#unlock = unlock;
            locked();
          })
        ).catch(() => {});
      });
    }
    const status = new StatusTracker();
    try {
      await db.runExclusive(() =>
        db.execProtocolRawStream(bytes, {
          onRawData: (chunk) => {
            status.push(chunk);
            onData(chunk);
          },
        })
      );
    } catch (error) {
      // PGlite exits on FATAL errors and is unusable afterwards; calling it again can spin.
      this.#broken = new Error(`PGlite failed: ${message(error)}`, { cause: error });
      status.idle = true;
      throw this.#broken;
    } finally {
      if (status.idle) {
        this.#unlock?.();
        this.#unlock = null;
      }
    }
  }
}

/** Settings from the StartupMessage that a server applies as GUCs (the `options` unpacked). */
export function startupSettings(params: Map<string, string>): [string, string][] {
  const settings: [string, string][] = [];
  for (const [name, value] of params) {
    if (name === "user" || name === "database" || name === "replication") continue;
    if (name === "options") settings.push(...commandLineOptions(value));
    else settings.push([name, value]);
  }
  return settings;
}

/** `-c name=value` and `--name=value` from libpq's `options` (backslash escapes a space). */
export function commandLineOptions(text: string): [string, string][] {
  const words = (text.match(/(?:\\.|\S)+/g) ?? []).map((word) => word.replace(/\\(.)/g, "$1"));
  const settings: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    let setting = words[i];
    if (setting === "-c" && i + 1 < words.length) setting = words[++i];
    else if (setting.startsWith("--")) setting = setting.slice(2).replaceAll("-", "_");
    else if (setting.startsWith("-c")) setting = setting.slice(2);
    const eq = setting.indexOf("=");
    // What a server would refuse, set_config refuses too, with the server's own message.
    settings.push(eq < 0 ? [setting, ""] : [setting.slice(0, eq), setting.slice(eq + 1)]);
  }
  return settings;
}

export function resetBytes(role: string): Uint8Array {
  const restoreRole = role === "none" ? "reset role" : `set role "${role.replaceAll('"', '""')}"`;
  return concat([
    frame(0x53),
    ...[...RESET_SQL, restoreRole].map((sql) => frame(0x51, cstring(sql))),
  ]);
}

/** Follows message boundaries across response chunks: is the last message ReadyForQuery 'I'? */
export class StatusTracker {
  idle = false;
  readonly #header = new Uint8Array(6);
  #have = 0;
  #skip = 0;

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        i += n;
        this.#skip -= n;
        continue;
      }
      this.#header[this.#have++] = chunk[i++];
      const isReady = this.#header[0] === 0x5a;
      if (this.#have === (isReady ? 6 : 5)) {
        const length = readInt32(this.#header, 1);
        this.idle = isReady && this.#header[5] === 0x49;
        this.#skip = length - this.#have + 1;
        this.#have = 0;
      }
    }
  }
}
