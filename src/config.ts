/**
 * Connection settings: a `postgres://` URL, read by libpq's rules, plus {@link ConnectOptions},
 * resolved into a {@link ConnectionConfig} with every default applied.
 *
 * @module
 */
import type { SslMode, Transport } from "./transport.ts";
import type { PostgresNotice } from "./errors.ts";
import type { TypeParser, TypeParsers } from "./result.ts";
import { checkSerializers, type Serializers, type SerializersOption } from "./_param_types.ts";
import {
  checkHost,
  MAX_TIMEOUT,
  or,
  parseUrl,
  redactUrl,
  sslMode,
  TARGET_SESSION_ATTRS,
  type TargetSessionAttrs,
  type UrlSettings,
} from "./url.ts";

/** Options for `connect(url, options)`. They override what the URL says. */
export interface ConnectOptions {
  /**
   * Host name or IP address (an IPv6 address may be in brackets), or several, comma-separated
   * (`"db1,db2"`), tried in order (see `targetSessionAttrs`); or, starting with `/`, the
   * directory of the server's Unix-domain socket, `.s.PGSQL.<port>` in it, as libpq reads it
   * (Deno, Node and Bun; no TLS there, whatever `sslmode` says). Default `"localhost"`.
   */
  host?: string;
  /** TCP port, for every host. Default `5432` (or each host's port from the URL). */
  port?: number;
  /**
   * Which server of the hosts a connection may stay with, as libpq's `target_session_attrs`:
   * `"any"` (default), `"read-write"`, `"read-only"`, `"primary"`, `"standby"`,
   * `"prefer-standby"`. Read from the `in_hot_standby` and `default_transaction_read_only`
   * settings the server reports (PostgreSQL 14 and later), else asked with a query.
   */
  targetSessionAttrs?: TargetSessionAttrs;
  /** `"random"`: try the hosts in a random order on each connect. Default `"disable"`. */
  loadBalanceHosts?: "disable" | "random";
  /** User name. Required, here or in the URL. */
  user?: string;
  /**
   * Password, or a function called on each connect that returns one (for rotating tokens).
   * Default: the URL's, else none.
   */
  password?: string | (() => string | Promise<string>);
  /** Database name. Default: the user name. */
  database?: string;
  /**
   * TLS mode, as libpq spells it. Default `"prefer"` (libpq's default): TLS when the server
   * offers it, unverified. `"verify-ca"` verifies the certificate chain against `ca` or
   * `sslrootcert` alone (one is required) but not the host name: through `node:tls` (Node, Bun,
   * and Deno, whose own TLS would add its built-in roots to the given CAs: the Deno transport
   * hands such a connection to `node:tls`); Workers refuse it when connecting (their TLS checks
   * every name). `"verify-full"` verifies the chain and the host name.
   */
  sslmode?: SslMode;
  /**
   * Trusted CA certificates in PEM, for `verify-ca` and `verify-full` (and `require`, which
   * then verifies the chain, as libpq's does). Default: the runtime's own roots. `node:tls`
   * trusts these alone; Deno's own TLS (its `verify-full` and `require`) adds them to its roots.
   */
  ca?: string | string[];
  /**
   * Path of a PEM file of trusted CAs, read by the transport. `"system"` means the runtime's own
   * roots and implies `sslmode` `verify-full`, as in libpq. Default: none.
   */
  sslrootcert?: string;
  /**
   * The client certificate in PEM (a chain may follow it), presented when the server asks for
   * one (`cert` authentication, `clientcert=verify-ca|verify-full` in pg_hba.conf). Needs
   * `key` or `sslkey`. Presented through `node:tls` (Node, Bun, and Deno, whose transport
   * hands such a connection to it); Workers and WebSocket cannot present one and refuse when
   * connecting. Default: none.
   *
   * @example
   * ```ts ignore
   * // The PEM texts, from wherever the application keeps secrets.
   * const conn = await connect("postgres://app@db.internal/app?sslmode=verify-full", {
   *   cert: secrets.clientCertificate,
   *   key: secrets.clientKey,
   *   ca: secrets.caCertificate,
   * });
   * ```
   */
  cert?: string;
  /** The client certificate's private key in PEM, possibly encrypted (`sslpassword`). */
  key?: string;
  /**
   * Path of the client certificate's PEM file, read by the transport (as libpq's `sslcert`).
   * Needs `key` or `sslkey`. Default: none (libpq's `~/.postgresql/postgresql.crt` is not read).
   */
  sslcert?: string;
  /** Path of the client certificate's private key in PEM, read by the transport. */
  sslkey?: string;
  /** Passphrase of an encrypted private key. Never shown in a message. Default: none. */
  sslpassword?: string;
  /**
   * The `application_name` reported to the server, which shows in `pg_stat_activity` and in
   * PgBouncer's logs. Default: the URL's `application_name`, else where the connection comes
   * from, set by `connect()` for the runtime (`edgepool:<program>@<runtime>`, e.g.
   * `edgepool:server.ts@deno`), else `"edgepool"`.
   */
  applicationName?: string;
  /**
   * The pooler between edgepool and PostgreSQL, if any. `"transaction"` (PgBouncer's
   * transaction mode, Supavisor's port 6543, Neon's `-pooler` hosts, Hyperdrive): each
   * transaction may run on another server session, so edgepool uses only unnamed statements,
   * sets no session state, and sends no startup parameter PgBouncer 1.18 rejects (`options`
   * other than Neon's `endpoint=` is refused with an error). `"session"` and `"none"`: the
   * session is yours; the prepared-statement cache may be used. `"auto"` (default) guesses
   * from the URL: `pgbouncer=true`, port 6543, a host with `-pooler.` in it, or
   * `*.pooler.supabase.com` mean a transaction pooler (port 5432 there: session); otherwise
   * `"none"`. A guess: name the pooler when you know it.
   */
  pooler?: Pooler | "auto";
  /**
   * Named prepared statements kept per connection (an LRU of this many), so a repeated
   * parameterised query, or a repeated single plannable statement without parameters (see
   * `Connection.query`), skips parsing and planning; its first run also learns its parameters'
   * types, and its later runs send only Bind, Execute and Sync, read some column types in
   * binary, and send in binary a `Uint8Array` (or ArrayBuffer, or other view) to a bytea
   * parameter, a `Date` of the years 1 to 9999 to a timestamptz one and a canonical uuid string
   * to a uuid one (others text; the server reads the same values). A statement the server no
   * longer knows (`prepared statement ... does not exist`) is sent again unprepared, once. Not
   * allowed with a transaction pooler. Default: `100`, or `0` (off: every query uses the
   * unnamed statement) with a transaction pooler. When the pooler is guessed (`pooler:
   * "auto"`, no sign of one in the URL) rather than given, the default cache stays out of
   * explicit transactions, and a connection turns it off for good at the first statement the
   * server does not have (the sign of a transaction pooler the URL did not show): that query is
   * sent again unprepared.
   */
  statementCache?: number;
  /** Time limit in ms for connecting (transport, TLS, login). Default `30000`; `0` = none. */
  connectTimeout?: number;
  /** The libpq `options` startup parameter, e.g. `"-c search_path=app"`. Default: none. */
  options?: string;
  /** Return `int8` values as `bigint` instead of `string`. Default `false`. */
  bigint?: boolean;
  /**
   * The parsers of column values for every query on the connection (a query's own `types`
   * wins). Either a map of type OID to parser, `{ [oid]: (text) => value }`, whose missing
   * OIDs keep edgepool's parsers (see `typeParsers`); a parser of an element type also reads
   * the built-in arrays of it (`{ 1700: Number }` makes `numeric[]` numbers too). Or pg's
   * `{ getTypeParser(oid, format) }`, asked about every column type. A parser that returns its
   * input (`String`) keeps the server's text: exact numerics, microseconds. Default: edgepool's
   * parsers.
   *
   * @example
   * ```ts
   * import { Oid } from "@edgepool/edgepool";
   * const types = { [Oid.numeric]: Number, [Oid.timestamptz]: String };
   * // const conn = await connect(url, { types });
   * console.assert(types[Oid.numeric]("1.5") === 1.5);
   * ```
   */
  types?:
    | TypeParsers
    | { readonly [oid: number]: TypeParser }
    | ReadonlyMap<number, TypeParser>;
  /**
   * The serializers of parameters for every query on the connection, by the type the server
   * gives each parameter: `{ [oid]: (value) => text }` (or a Map). A parameter of a type with a
   * serializer is sent as its text; one of a built-in array of such a type (`date[]` for
   * `Oid.date`) has it applied to each element; the rest go as edgepool sends them
   * (`serializeParam`). `null` and `undefined` stay NULL, the serializer not asked. A query's
   * own `serializers` win, entry by entry. A serializer that throws or returns anything but a
   * string fails its query with a TypeError naming the parameter (`$2`), nothing sent.
   *
   * The parameters' types are learned from the server once per connection and SQL text (a
   * Describe, in the first query's flight: that query waits one round trip; the 256 texts last
   * used are kept). Without serializers, nothing of this happens. Not over HTTP, which has no
   * Describe. Default: none.
   *
   * @example
   * ```ts
   * import { Oid } from "@edgepool/edgepool";
   * // A date parameter as the calendar day, whatever the time zone; jsonb as JSON, arrays too.
   * const serializers = {
   *   [Oid.date]: (d: Date) => d.toISOString().slice(0, 10),
   *   [Oid.jsonb]: JSON.stringify,
   * };
   * // const conn = await connect(url, { serializers });
   * // await conn.query("insert into t (day, doc) values ($1, $2)", [new Date(), [1, 2]]);
   * console.assert(serializers[Oid.date](new Date(Date.UTC(2024, 1, 29, 23))) === "2024-02-29");
   * ```
   */
  serializers?: SerializersOption;
  /**
   * Turn on TCP keepalive where the runtime allows it (Deno, Node, Bun), so that a connection
   * whose peer vanished without a word is found dead. Default `true`.
   */
  keepAlive?: boolean;
  /**
   * Idle time in ms before the first keepalive probe (`keepalives_idle` in the URL, in
   * seconds). Default `60000`. Node and Bun apply it; Deno's sockets keep the system's.
   */
  keepAliveInitialDelay?: number;
  /**
   * Time limit in ms for each query, from when it is issued until its last answer. Past it the
   * query rejects with `ConnectionError` `QUERY_TIMEOUT`, a CancelRequest goes to the server,
   * and the connection is closed: a query that does not answer may be on a connection that
   * never will (a network that drops packets without a word). Also per query (`QueryOptions`).
   * Default `0`: none.
   */
  queryTimeout?: number;
  /** Largest server message accepted, in bytes (at least 1024). Default 256 MiB. */
  maxMessageSize?: number;
  /** How to reach the server. Default: the transport picked for the runtime. */
  transport?: Transport;
  /**
   * What connecting sends without waiting for the server's answer; each saves round trips on a
   * cold connection. Default for `connect()`: the transport's (`"password"` for the WebSocket
   * transport), else `false`. Default for `createPool()`: `"query"` where the transport's is
   * `"password"`, else `"auth"`; its pool hands a connection whose login is still under way only
   * to a checkout whose first act is a query (`pool.query`, `transaction()`'s BEGIN, `batch()`),
   * which then fails with the login's own error (28P01, say) if the login fails.
   * `pool.connect()` and the pool's own connects wait for the login, and fail with its error, as
   * with `false`.
   *
   * `false`: wait for each request, and resolve `connect()` once the server is ready
   * (ReadyForQuery), so that a wrong password or an impostor rejects `connect()` itself.
   *
   * `"auth"`: the first query follows the client's last authentication message in the same
   * flight: SCRAM-SHA-256's client-final message, or the MD5 or cleartext password once the
   * server asked for it. `connect()` resolves as soon as that message is written. A cold query
   * over TCP then costs 3 round trips with SCRAM instead of 4, 2 with MD5 or a cleartext
   * password instead of 3 (TCP's and TLS's handshakes aside). The password goes only as the
   * server asks for it. A server that asks for no password gives no such point: `connect()`
   * resolves at ReadyForQuery, as with `false`.
   *
   * `"password"`: send the cleartext password right behind the StartupMessage, without waiting
   * for the server to ask, which saves a round trip when it asks for a cleartext password
   * (Neon's proxy and edgepool's gateway do, over WebSocket). When the server asks for SCRAM or
   * MD5 instead, that attempt is dropped and the connection is opened again the usual way.
   *
   * `"query"`: `"password"`, and the first query as early as each server allows: on a server
   * that took a password sent ahead before (from this transport), `connect()` resolves once
   * startup and password are written, so a cold query costs one round trip; on a server known
   * to ask for SCRAM or MD5 instead, as `"auth"` does. Pools use it well.
   *
   * With `"auth"` and `"query"` the login's outcome reaches the first query instead of
   * `connect()`: a wrong password rejects it with 28P01, a SCRAM server signature that does not
   * match rejects it (and every query behind it) with `AUTH_FAILED`, and no result reaches the
   * caller before the signature checked out. `processId` and `cancel()` work from the first
   * ReadyForQuery on, and the connect deadline and signal cover the login until then.
   *
   * Security: with `"auth"` and `"query"`, the first query's text and parameters leave before
   * the server has proven who it is. With SCRAM, the proof is the server signature, which
   * arrives a round trip later; MD5 and cleartext logins never have the server prove anything,
   * so waiting gains nothing there. A server that is not the real one (a wrong or spoofed
   * address, TLS that is not verified) gets that first query, though never the chance to
   * answer it; it could as well ask for the password in clear, which every mode (and libpq)
   * sends when asked. Where that matters, use `sslmode=verify-full`, which proves the server
   * before anything is sent (over WebSocket, a `wss:` URL proves the proxy), or set `false`.
   * With `"password"` and `"query"` the password itself goes in clear, protected only by the
   * channel (TLS, `wss:`), even to a server that would have used SCRAM: turn those on only for
   * servers that ask for a cleartext password anyway.
   */
  pipelineConnect?: "auth" | "password" | "query" | false;
  /** Aborts connecting. Default: none. */
  signal?: AbortSignal;
  /** Receives the server's NoticeResponse messages. Default: none (notices are dropped). */
  onNotice?: (notice: PostgresNotice) => void;
}

/** Defaults of {@link parseConfig} that depend on the runtime, below the URL's settings. */
export interface ConfigDefaults {
  /** The `application_name` when neither the options nor the URL give one. */
  applicationName?: string;
}

/** A pooler between the client and PostgreSQL: see {@link ConnectOptions.pooler}. */
export type Pooler = "none" | "transaction" | "session";

/** Fully resolved connection settings: {@link ConnectOptions} over the URL over the defaults. */
export interface ConnectionConfig {
  /** Host name or IP address, without brackets: the first of `hosts`, or the one connected to. */
  host: string;
  /** TCP port, 1 to 65535, of `host`. */
  port: number;
  /** Every host to try, in order, each with its port. */
  hosts: readonly { host: string; port: number }[];
  /** Which server a connection may stay with (libpq's `target_session_attrs`). */
  targetSessionAttrs: TargetSessionAttrs;
  /** Try the hosts in a random order. */
  loadBalanceHosts: boolean;
  /** User name. */
  user: string;
  /** Password, or a function that returns one when connecting; `undefined` when none. */
  password: string | (() => string | Promise<string>) | undefined;
  /** Database name. */
  database: string;
  /** TLS mode. */
  sslmode: SslMode;
  /** Trusted CA certificates in PEM, or `undefined` for the runtime's roots. */
  ca: string[] | undefined;
  /** Path of a PEM file of trusted CAs, or `undefined`. */
  sslrootcert: string | undefined;
  /** The client certificate in PEM, or `undefined`. */
  cert: string | undefined;
  /** The client certificate's private key in PEM, or `undefined`. */
  key: string | undefined;
  /** Path of the client certificate's PEM file, or `undefined`. */
  sslcert: string | undefined;
  /** Path of the client certificate's key file, or `undefined`. */
  sslkey: string | undefined;
  /** Passphrase of an encrypted private key, or `undefined`. */
  sslpassword: string | undefined;
  /** The `application_name` reported to the server. */
  applicationName: string;
  /** The pooler in front of the server, given or guessed. */
  pooler: Pooler;
  /** Why `pooler` has its value: `"options.pooler"`, or the sign `"auto"` went by. */
  poolerSign: string;
  /** Named prepared statements kept per connection; `0` = none. */
  statementCache: number;
  /**
   * The cache is on by default under a guessed pooler: kept out of explicit transactions, and
   * turned off on a connection at the first statement the server does not have.
   */
  statementCacheCautious: boolean;
  /** Time limit in ms for connecting; `0` = none. */
  connectTimeout: number;
  /** The libpq `options` startup parameter, or `undefined`. */
  options: string | undefined;
  /** Return `int8` values as `bigint`. */
  bigint: boolean;
  /** The connection's own parsers: pg's shape, a map by OID, or `undefined` for edgepool's. */
  types: TypeParsers | ReadonlyMap<number, TypeParser> | undefined;
  /** The connection's parameter serializers by OID, or `undefined` for none. */
  serializers: Serializers | undefined;
  /** TCP keepalive. */
  keepAlive: boolean;
  /** Idle ms before the first keepalive probe. */
  keepAliveInitialDelay: number;
  /** Time limit in ms for each query; `0` = none. */
  queryTimeout: number;
  /** Largest server message accepted, in bytes. */
  maxMessageSize: number;
  /** `pgbouncer=true` was in the URL: the server is a PgBouncer. */
  pgbouncer: boolean;
  /** Pipelined connect, or `undefined` to follow the transport's `pipelineConnect`. */
  pipelineConnect: "auth" | "password" | "query" | false | undefined;
}

/** The options checked by their type alone, by type. */
const TYPED: Record<string, string> = {
  string:
    "host user database sslmode sslrootcert cert key sslcert sslkey sslpassword applicationName options",
  boolean: "bigint keepAlive",
  function: "onNotice",
};

const TIME_LIMIT: [number, number] = [0, MAX_TIMEOUT];

/** The number options: `[min, max, integer]`. */
const NUMBERS: Record<string, [number, number, 1?]> = {
  port: [1, 65535, 1],
  connectTimeout: TIME_LIMIT,
  queryTimeout: TIME_LIMIT,
  keepAliveInitialDelay: TIME_LIMIT,
  maxMessageSize: [1024, Infinity, 1],
  statementCache: [0, 10_000, 1],
};

/**
 * Resolves a connection URL and options into complete settings. The URL follows libpq:
 * `postgres://user:password@host:port/database?param=value&...`, percent-encoded, with the
 * parameters `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslpassword`, `application_name`,
 * `fallback_application_name`,
 * `connect_timeout` (seconds), `options`, `host`, `port`, `user`, `password`, `dbname`,
 * `client_encoding` (UTF8 only), `keepalives`, `channel_binding`, `pgbouncer` and
 * `sslnegotiation`. Options override the URL. A host that starts with `/` is the directory of
 * a Unix-domain socket, as in libpq. A `+` in the values of `application_name`,
 * `fallback_application_name` and `options` is a space, as `URLSearchParams` writes one
 * (a `+` itself is `%2B` there); elsewhere a `+` is a `+`, as in libpq.
 *
 * @param url The connection URL, or `undefined` to take everything from `options`.
 * @param options Settings that override the URL.
 * @param defaults Defaults that depend on the runtime, below the URL's settings.
 * @returns The settings with every default applied.
 * @throws {TypeError} If the URL is malformed or uses something edgepool does not support, an
 *   option has the wrong type, or no user name is given. Messages show the URL with its
 *   password replaced by `***`.
 * @throws {RangeError} If a port, time limit or size is out of range.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * const config = parseConfig("postgres://alice:s%40cret@db.example.com/app?sslmode=require", {
 *   connectTimeout: 5000,
 * });
 * console.assert(config.password === "s@cret" && config.port === 5432);
 * console.assert(config.sslmode === "require" && config.connectTimeout === 5000);
 * ```
 */
export function parseConfig(
  url: string | URL | undefined,
  options?: ConnectOptions,
  defaults?: ConfigDefaults,
): ConnectionConfig {
  const o = (options ?? {}) as Record<string, unknown> & ConnectOptions;
  if (typeof o !== "object" || o === null) {
    throw new TypeError(`options must be an object, not ${typeName(o)}`);
  }
  let fromUrl: UrlSettings = {};
  let where = "";
  if (url instanceof URL || typeof url === "string") {
    const text = String(url).trim();
    where = ` in ${redactUrl(text)}`;
    fromUrl = parseUrl(text, where);
  } else if (url !== undefined) {
    throw new TypeError(`The connection URL must be a string or a URL, not ${typeName(url)}`);
  }

  for (const type in TYPED) {
    for (const name of TYPED[type].split(" ")) {
      if (o[name] !== undefined && typeof o[name] !== type) throw wrong(name, "a " + type);
    }
  }
  for (const [name, [min, max, integer]] of Object.entries(NUMBERS)) {
    const value = o[name] as number;
    if (value === undefined) continue;
    if (typeof value !== "number") throw wrong(name, "a number");
    if (!(value >= min && value <= max) || (integer && !Number.isInteger(value))) {
      throw new RangeError(
        `options.${name} must be ${integer ? "an integer" : "a number"} ${
          max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`
        }, got ${value}`,
      );
    }
  }
  if (!/^(string|function|undefined)$/.test(typeof o.password)) {
    throw wrong("password", "a string or a function");
  }
  const ca = typeof o.ca === "string" ? [o.ca] : o.ca;
  if (ca !== undefined && (!Array.isArray(ca) || ca.some((pem) => typeof pem !== "string"))) {
    throw wrong("ca", "a PEM string or an array of them");
  }
  if (o.transport !== undefined && typeof o.transport?.connect !== "function") {
    throw wrong("transport", "a Transport (an object with a connect method)");
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw wrong("signal", "an AbortSignal");
  }
  const given = <T>(name: string, allowed: T[]): T => {
    if (!allowed.includes(o[name] as T)) {
      throw wrong(name, or(allowed.slice(1).map((v) => JSON.stringify(v))), true);
    }
    return o[name] as T;
  };
  const pipelineConnect = given<ConnectionConfig["pipelineConnect"]>("pipelineConnect", [
    undefined,
    "auth",
    "password",
    "query",
    false,
  ]);
  const givenPooler = given<Pooler | "auto" | undefined>("pooler", [
    undefined,
    "none",
    "transaction",
    "session",
    "auto",
  ]);

  // The hosts, each with its port: one port for all, or one each (libpq).
  if (o.host !== undefined && o.host.trim() === "") {
    throw new TypeError("options.host must not be empty");
  }
  const hostList = o.host === undefined
    ? fromUrl.hosts ?? [""]
    : o.host.split(",").map((host) => checkHost(host.trim(), ""));
  const portList = o.port !== undefined ? [o.port] : fromUrl.ports ?? [];
  if (portList.length > 1 && portList.length !== hostList.length) {
    throw new TypeError(
      `${portList.length} ports do not match ${hostList.length} hosts${
        where || " (options.host)"
      }: give one port for all hosts, or one for each`,
    );
  }
  const hosts = hostList.map((host, i) => ({
    host: host || "localhost",
    port: (portList.length > 1 ? portList[i] : portList[0]) ?? 5432,
  }));
  const host = hosts[0].host;
  const targetSessionAttrs = o.targetSessionAttrs ?? fromUrl.targetSessionAttrs ?? "any";
  if (!TARGET_SESSION_ATTRS.includes(targetSessionAttrs)) {
    throw wrong("targetSessionAttrs", or(TARGET_SESSION_ATTRS.map((v) => JSON.stringify(v))), true);
  }
  const balance = o.loadBalanceHosts ?? fromUrl.loadBalanceHosts ?? "disable";
  if (balance !== "disable" && balance !== "random") {
    throw wrong("loadBalanceHosts", '"disable" or "random"', true);
  }
  const user = o.user || fromUrl.user;
  if (!user) {
    throw new TypeError(
      `Cannot connect: no user name given${where}; put it in the URL (postgres://user@host/db) ` +
        "or in options.user",
    );
  }
  let sslmode = o.sslmode === undefined
    ? fromUrl.sslmode
    : sslMode(o.sslmode, " (options.sslmode)", false);
  let sslrootcert = o.sslrootcert ?? fromUrl.sslrootcert;
  if (sslrootcert === "system") {
    // libpq: use the system's roots, and nothing weaker than verify-full.
    sslrootcert = undefined;
    sslmode ??= "verify-full";
    if (sslmode !== "verify-full") {
      throw new TypeError(
        `sslmode '${sslmode}' cannot be used with sslrootcert=system${where}: use verify-full`,
      );
    }
    if (ca?.length) {
      throw new TypeError(
        `sslrootcert=system${where} and options.ca cannot be used together: system means the ` +
          "runtime's own roots alone",
      );
    }
  } else if (sslmode === "verify-ca" && sslrootcert === undefined && !ca?.length) {
    // Any certificate a public CA issued, for any name, passes a chain check against the
    // runtime's roots: libpq refuses this too.
    throw new TypeError(
      `sslmode=verify-ca needs the CA to verify against${where}: give sslrootcert (a PEM ` +
        "file) or options.ca (PEM text), or use verify-full",
    );
  }
  const sslcert = filePath("sslcert", o.sslcert ?? fromUrl.sslcert);
  const sslkey = filePath("sslkey", o.sslkey ?? fromUrl.sslkey);
  filePath("sslrootcert", sslrootcert);
  const cert = o.cert || undefined;
  const key = o.key || undefined;
  if (cert !== undefined && sslcert !== undefined) {
    throw new TypeError(`options.cert and sslcert${where} cannot both be given: give one`);
  }
  if (key !== undefined && sslkey !== undefined) {
    throw new TypeError(`options.key and sslkey${where} cannot both be given: give one`);
  }
  if ((cert ?? sslcert) !== undefined && (key ?? sslkey) === undefined) {
    throw new TypeError(
      `A client certificate needs its private key${where}: give sslkey (a file) or options.key`,
    );
  }
  if ((key ?? sslkey) !== undefined && (cert ?? sslcert) === undefined) {
    throw new TypeError(
      `A private key needs its client certificate${where}: give sslcert (a file) or ` +
        "options.cert",
    );
  }
  if ((cert ?? sslcert) !== undefined && sslmode === "disable") {
    throw new TypeError(`A client certificate cannot be used with sslmode=disable${where}`);
  }

  const port = hosts[0].port;
  const guessed = givenPooler === undefined || givenPooler === "auto";
  const [pooler, poolerSign] = guessed
    ? guessPooler(host, port, fromUrl.pgbouncer)
    : [givenPooler, "options.pooler"];
  const startupOptions = o.options ?? fromUrl.options;
  const givenCache = o.statementCache;
  if (pooler === "transaction") {
    // A transaction pooler hands each transaction a session of its own choosing.
    const refuse = (what: string | false | undefined | 0, instead: string) => {
      if (what) {
        throw new TypeError(
          `${what} cannot go through a transaction pooler (${poolerSign})${where}: ${instead}`,
        );
      }
    };
    refuse(
      startupOptions !== undefined && !/^\s*endpoint=[^\s]*\s*$/.test(startupOptions) &&
        "The options startup parameter (PgBouncer 1.18 refuses it)",
      'use SET LOCAL inside transactions, or pooler "session" or "none" if it is not one',
    );
    refuse(
      givenCache && "statementCache (a session's prepared statements)",
      "leave it at 0, or set pooler",
    );
  }
  const statementCache = givenCache ?? (pooler === "transaction" ? 0 : 100);

  return {
    host,
    port,
    hosts,
    targetSessionAttrs,
    loadBalanceHosts: balance === "random",
    user,
    password: o.password ?? fromUrl.password,
    database: o.database || fromUrl.database || user,
    sslmode: sslmode ?? "prefer",
    ca: ca?.length ? [...ca] : undefined,
    sslrootcert,
    cert,
    key,
    sslcert,
    sslkey,
    sslpassword: o.sslpassword ?? fromUrl.sslpassword,
    applicationName: o.applicationName ?? fromUrl.applicationName ??
      fromUrl.fallbackApplicationName ?? defaults?.applicationName ?? "edgepool",
    connectTimeout: o.connectTimeout ?? fromUrl.connectTimeout ?? 30_000,
    options: startupOptions,
    bigint: o.bigint ?? false,
    types: checkTypes(o.types),
    serializers: checkSerializers(o.serializers, "options.serializers"),
    keepAlive: o.keepAlive ?? fromUrl.keepAlive ?? true,
    keepAliveInitialDelay: o.keepAliveInitialDelay ?? fromUrl.keepAliveInitialDelay ?? 60_000,
    queryTimeout: o.queryTimeout ?? 0,
    maxMessageSize: o.maxMessageSize ?? 2 ** 28, // 256 MiB
    pgbouncer: fromUrl.pgbouncer ?? false,
    pipelineConnect,
    pooler,
    poolerSign,
    statementCache,
    statementCacheCautious: givenCache === undefined && guessed && statementCache > 0,
  };

  /**
   * A file path, checked not to be PEM text put where a path goes: its text would end up in a
   * "no such file" message, and a key must never be in a message.
   */
  function filePath(name: string, path: string | undefined): string | undefined {
    if (path !== undefined && /-----BEGIN|[\r\n]/.test(path)) {
      const pem = name === "sslrootcert" ? "ca" : name.slice(3);
      throw new TypeError(
        `${name} takes the path of a PEM file, not PEM text${where}: give the text in ` +
          `options.${pem}`,
      );
    }
    return path || undefined;
  }

  function wrong(name: string, what: string, quote?: boolean): TypeError {
    const value = o[name];
    return new TypeError(
      `options.${name} must be ${what}, not ${
        quote && typeof value === "string" ? JSON.stringify(value) : typeName(value)
      }`,
    );
  }
}

/** Validates `options.types`, and turns a map of parsers by OID into a Map. */
function checkTypes(types: unknown): ConnectionConfig["types"] {
  if (types === undefined) return undefined;
  if (typeof types !== "object" || types === null || Array.isArray(types)) {
    throw new TypeError(
      "options.types must be an object: { getTypeParser(oid, format) } or a map of type OID " +
        `to parser function, not ${typeName(types)}`,
    );
  }
  if ("getTypeParser" in types) {
    if (typeof types.getTypeParser !== "function") {
      throw new TypeError(
        `options.types.getTypeParser must be a function, not ${typeName(types.getTypeParser)}`,
      );
    }
    return types as TypeParsers;
  }
  const map = new Map<number, TypeParser>();
  // A Map of OIDs serves as well as an object of them.
  const entries = types instanceof Map
    ? [...types].map(([key, parse]) => [String(key), parse])
    : Object.entries(types);
  for (const [key, parse] of entries) {
    const oid = Number(key);
    if (!/^[1-9][0-9]{0,9}$/.test(key) || oid > 0xffffffff) {
      throw new TypeError(
        `options.types has the key ${JSON.stringify(key)}, which is not a type OID (an ` +
          "integer from 1 to 4294967295)",
      );
    }
    if (typeof parse !== "function") {
      throw new TypeError(
        `options.types[${key}] must be a parser function (text) => value, not ${typeName(parse)}`,
      );
    }
    map.set(oid, parse as TypeParser);
  }
  return map.size === 0 ? undefined : map;
}

/** `pooler: "auto"`: the common signs of a pooler in the URL, and what they mean. */
function guessPooler(host: string, port: number, pgbouncer?: boolean): [Pooler, string] {
  const name = host.toLowerCase();
  return pgbouncer
    ? ["transaction", "pgbouncer=true in the URL"]
    : name.endsWith(".pooler.supabase.com")
    ? [port === 5432 ? "session" : "transaction", `a pooler.supabase.com host on port ${port}`]
    : name.includes("-pooler.")
    ? ["transaction", "a -pooler host name"]
    : port === 6543
    ? ["transaction", "port 6543"]
    : ["none", "no sign of a pooler in the URL"];
}

function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}
