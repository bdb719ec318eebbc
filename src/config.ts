/**
 * Connection settings: a `postgres://` URL, read by libpq's rules, plus {@link ConnectOptions},
 * resolved into a {@link ConnectionConfig} with every default applied.
 *
 * @module
 */
import type { SslMode, Transport } from "./transport.ts";
import type { PostgresNotice } from "./errors.ts";

/** Options for `connect(url, options)`. They override what the URL says. */
export interface ConnectOptions {
  /** Host name or IP address (an IPv6 address may be in brackets). Default `"localhost"`. */
  host?: string;
  /** TCP port. Default `5432`. */
  port?: number;
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
   * offers it, unverified.
   */
  sslmode?: SslMode;
  /** Trusted CA certificates in PEM, for `verify-full`. Default: the runtime's own roots. */
  ca?: string | string[];
  /**
   * Path of a PEM file of trusted CAs, read by the transport. `"system"` means the runtime's own
   * roots and implies `sslmode` `verify-full`, as in libpq. Default: none.
   */
  sslrootcert?: string;
  /** The `application_name` reported to the server. Default `"edgepool"`. */
  applicationName?: string;
  /** Time limit in ms for connecting (transport, TLS, login). Default `30000`; `0` = none. */
  connectTimeout?: number;
  /** The libpq `options` startup parameter, e.g. `"-c search_path=app"`. Default: none. */
  options?: string;
  /** Return `int8` values as `bigint` instead of `string`. Default `false`. */
  bigint?: boolean;
  /** Turn on TCP keepalive where the runtime allows it. Default `true`. */
  keepAlive?: boolean;
  /** Largest server message accepted, in bytes (at least 1024). Default 256 MiB. */
  maxMessageSize?: number;
  /** How to reach the server. Default: the transport picked for the runtime. */
  transport?: Transport;
  /** Aborts connecting. Default: none. */
  signal?: AbortSignal;
  /** Receives the server's NoticeResponse messages. Default: none (notices are dropped). */
  onNotice?: (notice: PostgresNotice) => void;
}

/** Fully resolved connection settings: {@link ConnectOptions} over the URL over the defaults. */
export interface ConnectionConfig {
  /** Host name or IP address, without brackets. */
  host: string;
  /** TCP port, 1 to 65535. */
  port: number;
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
  /** The `application_name` reported to the server. */
  applicationName: string;
  /** Time limit in ms for connecting; `0` = none. */
  connectTimeout: number;
  /** The libpq `options` startup parameter, or `undefined`. */
  options: string | undefined;
  /** Return `int8` values as `bigint`. */
  bigint: boolean;
  /** TCP keepalive. */
  keepAlive: boolean;
  /** Largest server message accepted, in bytes. */
  maxMessageSize: number;
  /** `pgbouncer=true` was in the URL: the server is a PgBouncer. */
  pgbouncer: boolean;
}

/** What a URL says, before options and defaults. */
interface UrlSettings {
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  sslmode?: SslMode;
  sslrootcert?: string;
  applicationName?: string;
  fallbackApplicationName?: string;
  connectTimeout?: number;
  options?: string;
  keepAlive?: boolean;
  pgbouncer?: boolean;
}

const DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024;
// Timers fire at once for longer delays, so longer time limits cannot be honoured.
const MAX_TIMEOUT = 2_147_483_647;
const URL_START = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

/**
 * Resolves a connection URL and options into complete settings. The URL follows libpq:
 * `postgres://user:password@host:port/database?param=value&...`, percent-encoded, with the
 * parameters `sslmode`, `sslrootcert`, `application_name`, `fallback_application_name`,
 * `connect_timeout` (seconds), `options`, `host`, `port`, `user`, `password`, `dbname`,
 * `client_encoding` (UTF8 only), `keepalives`, `channel_binding`, `pgbouncer` and
 * `sslnegotiation`. Options override the URL.
 *
 * @param url The connection URL, or `undefined` to take everything from `options`.
 * @param options Settings that override the URL.
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
): ConnectionConfig {
  const o: ConnectOptions = options ?? {};
  if (typeof o !== "object" || o === null) {
    throw new TypeError(`options must be an object, not ${typeName(o)}`);
  }
  let fromUrl: UrlSettings = {};
  let where = "";
  if (url instanceof URL || typeof url === "string") {
    const text = String(url).trim();
    fromUrl = parseUrl(text);
    where = ` in ${redactUrl(text)}`;
  } else if (url !== undefined) {
    throw new TypeError(`The connection URL must be a string or a URL, not ${typeName(url)}`);
  }

  const host = o.host === undefined ? fromUrl.host : checkHost(string(o.host, "host") ?? "", "");
  const user = string(o.user, "user") || fromUrl.user;
  if (!user) {
    throw new TypeError(
      `Cannot connect: no user name given${where}; put it in the URL (postgres://user@host/db) ` +
        "or in options.user",
    );
  }
  if (
    o.password !== undefined && typeof o.password !== "string" && typeof o.password !== "function"
  ) {
    throw new TypeError(
      `options.password must be a string or a function, not ${typeName(o.password)}`,
    );
  }
  const port = number(o.port, "port", 1, 65535, true);
  const connectTimeout = number(o.connectTimeout, "connectTimeout", 0, MAX_TIMEOUT, false);
  const maxMessageSize = number(o.maxMessageSize, "maxMessageSize", 1024, Infinity, true);
  checkObjects(o);

  let sslmode = o.sslmode === undefined
    ? fromUrl.sslmode
    : sslMode(string(o.sslmode, "sslmode") ?? "", " (options.sslmode)", false);
  let sslrootcert = string(o.sslrootcert, "sslrootcert") ?? fromUrl.sslrootcert;
  if (sslrootcert === "system") {
    // libpq: use the system's roots, and nothing weaker than verify-full.
    sslrootcert = undefined;
    sslmode ??= "verify-full";
    if (sslmode !== "verify-full") {
      throw new TypeError(
        `sslmode '${sslmode}' cannot be used with sslrootcert=system${where}: use verify-full`,
      );
    }
  }

  return {
    host: host ?? "localhost",
    port: port ?? fromUrl.port ?? 5432,
    user,
    password: o.password ?? fromUrl.password,
    database: string(o.database, "database") || fromUrl.database || user,
    sslmode: sslmode ?? "prefer",
    ca: caList(o.ca),
    sslrootcert,
    applicationName: string(o.applicationName, "applicationName") ?? fromUrl.applicationName ??
      fromUrl.fallbackApplicationName ?? "edgepool",
    connectTimeout: connectTimeout ?? fromUrl.connectTimeout ?? 30_000,
    options: string(o.options, "options") ?? fromUrl.options,
    bigint: boolean(o.bigint, "bigint") ?? false,
    keepAlive: boolean(o.keepAlive, "keepAlive") ?? fromUrl.keepAlive ?? true,
    maxMessageSize: maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
    pgbouncer: fromUrl.pgbouncer ?? false,
  };
}

/**
 * The URL with its password replaced by `***`, for messages and logs: the password of the
 * user-info part and any `password=` query parameter. Works on strings that are not valid URLs
 * too (a password with an unencoded `/`, `?` or `#`), erring towards hiding too much.
 *
 * @param url The connection URL, valid or not.
 * @returns The same text with passwords hidden. Never throws.
 *
 * @example
 * ```ts
 * import { redactUrl } from "./config.ts";
 * const shown = redactUrl("postgres://alice:hunter2@db/app?sslmode=require");
 * console.assert(shown === "postgres://alice:***@db/app?sslmode=require");
 * ```
 */
export function redactUrl(url: string): string {
  let text = String(url);
  const start = URL_START.exec(text)?.[0].length ?? 0;
  const rest = text.slice(start);
  const authorityEnd = firstOf(rest, "/?");
  const colon = rest.indexOf(":");
  let at = rest.lastIndexOf("@", authorityEnd - 1);
  if (at < 0 && colon >= 0 && colon < authorityEnd) {
    // No user info by the parsing rules, but a ':' in the host part: the URL may hold a password
    // with an unencoded '/' or '?' (`user:pa/ss@host`). If what follows ':' is no port, hide up to
    // the last '@'; if it is, hide up to an '@' in the path or in a query part with no '='.
    if (!/^\d*$/.test(rest.slice(colon + 1, authorityEnd))) at = rest.lastIndexOf("@");
    else {
      const query = rest.indexOf("?");
      const path = query < 0 ? rest : rest.slice(0, query);
      at = path.lastIndexOf("@");
      const queryAt = query < 0 ? -1 : rest.indexOf("@", query);
      if (at < 0 && queryAt >= 0 && !rest.slice(query, queryAt).includes("=")) at = queryAt;
    }
  }
  if (at >= 0 && colon >= 0 && colon + 1 < at) {
    text = text.slice(0, start + colon + 1) + "***" + text.slice(start + at);
  }
  text = text.replace(/([?&])([^&=]*)=([^&]*)/g, (piece, separator: string, key: string) => {
    let name = key;
    try {
      name = decodeURIComponent(key);
    } catch {
      // keep the raw key
    }
    return name.trim().toLowerCase() === "password" ? `${separator}${key}=***` : piece;
  });
  // key=value connection strings (not supported, but they end up in messages).
  return text.replace(/(^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)/gi, "$1$2***");
}

function parseUrl(text: string): UrlSettings {
  const scheme = URL_START.exec(text);
  if (scheme === null) {
    if (text === "") throw new TypeError("The connection URL is empty");
    if (/^postgres(ql)?:/i.test(text)) {
      throw new TypeError(
        `Expected '//' after the scheme in ${redactUrl(text)}: postgres://user@host/database`,
      );
    }
    throw new TypeError(
      "The connection string is not a URL: expected postgres://user:password@host:port/database " +
        "(key=value connection strings are not supported)",
    );
  }
  const where = ` in ${redactUrl(text)}`;
  const name = scheme[1].toLowerCase();
  if (name !== "postgres" && name !== "postgresql") {
    throw new TypeError(
      `Unsupported URL scheme '${scheme[1]}:'${where}: use postgres:// or postgresql://`,
    );
  }
  const decode = (part: string): string => {
    let value: string;
    try {
      value = decodeURIComponent(part);
    } catch {
      throw new TypeError(`Invalid percent-encoding${where}`);
    }
    if (value.includes("\0")) throw new TypeError(`A NUL character (%00) is not allowed${where}`);
    return value;
  };

  const settings: UrlSettings = {};
  const rest = text.slice(scheme[0].length);
  const authorityEnd = firstOf(rest, "/?");
  const authority = rest.slice(0, authorityEnd);
  // The last '@' ends the user info, so an unencoded '@' in a password still works.
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    const userInfo = authority.slice(0, at);
    const colon = userInfo.indexOf(":");
    settings.user = decode(colon < 0 ? userInfo : userInfo.slice(0, colon)) || undefined;
    if (colon >= 0) settings.password = decode(userInfo.slice(colon + 1)) || undefined;
  }
  const hostPort = authority.slice(at + 1);
  let host = hostPort;
  let port: string | undefined;
  if (hostPort.includes(",")) {
    throw new TypeError(`Multiple hosts are not supported${where}: give a single host`);
  }
  if (hostPort.startsWith("[")) {
    const close = hostPort.indexOf("]");
    if (close < 0) throw new TypeError(`Missing ']' after the IPv6 address${where}`);
    host = hostPort.slice(1, close);
    if (host === "") throw new TypeError(`Empty IPv6 address${where}`);
    const after = hostPort.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) {
      throw new TypeError(`Unexpected text after ']'${where}`);
    }
    if (after !== "") port = after.slice(1);
  } else if (hostPort.includes(":")) {
    host = hostPort.slice(0, hostPort.indexOf(":"));
    port = hostPort.slice(hostPort.indexOf(":") + 1);
  }
  settings.host = checkHost(decode(host), where) || undefined;
  if (port) settings.port = portNumber(decode(port), where);

  const tail = rest.slice(authorityEnd);
  const queryStart = tail.indexOf("?");
  if (tail.startsWith("/")) {
    settings.database = decode(tail.slice(1, queryStart < 0 ? tail.length : queryStart)) ||
      undefined;
  }
  if (queryStart >= 0) applyParameters(settings, tail.slice(queryStart + 1), decode, where);
  return settings;
}

function applyParameters(
  settings: UrlSettings,
  query: string,
  decode: (part: string) => string,
  where: string,
): void {
  for (const piece of query.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    if (eq < 0) throw new TypeError(`A query parameter has no '=' and no value${where}`);
    const key = decode(piece.slice(0, eq));
    const value = decode(piece.slice(eq + 1));
    const invalid = (expected: string): TypeError =>
      new TypeError(`Invalid ${key} '${value}'${where}: expected ${expected}`);
    const unsupported = (instead: string): TypeError =>
      new TypeError(`${key}=${value} is not supported${where}: ${instead}`);
    switch (key) {
      case "host":
        settings.host = checkHost(value, where) || undefined;
        break;
      case "port":
        settings.port = value === "" ? undefined : portNumber(value, where);
        break;
      case "user":
      case "password":
        settings[key] = value || undefined;
        break;
      case "dbname":
        settings.database = value || undefined;
        break;
      case "sslmode":
        settings.sslmode = sslMode(value, where, true);
        break;
      case "sslrootcert":
        settings.sslrootcert = value || undefined;
        break;
      case "application_name":
        settings.applicationName = value;
        break;
      case "fallback_application_name":
        settings.fallbackApplicationName = value;
        break;
      case "options":
        settings.options = value;
        break;
      case "connect_timeout": {
        // libpq: whole seconds, 0 = no limit, and 1 is raised to 2.
        if (!/^\d+$/.test(value)) throw invalid("a whole number of seconds (0 = no limit)");
        const seconds = Number(value) === 1 ? 2 : Number(value);
        if (seconds * 1000 > MAX_TIMEOUT) {
          throw invalid(`at most ${Math.floor(MAX_TIMEOUT / 1000)} seconds`);
        }
        settings.connectTimeout = seconds * 1000;
        break;
      }
      case "client_encoding":
        if (!/^utf-?8$/i.test(value)) throw invalid("UTF8, the only encoding edgepool speaks");
        break;
      case "keepalives":
        if (value !== "0" && value !== "1") throw invalid("1 or 0");
        settings.keepAlive = value === "1";
        break;
      case "pgbouncer":
        if (value !== "true" && value !== "false") throw invalid("true or false");
        settings.pgbouncer = value === "true";
        break;
      case "channel_binding":
        if (value === "require") {
          throw unsupported("edgepool has no SCRAM-SHA-256-PLUS; use prefer");
        }
        if (value !== "disable" && value !== "prefer") throw invalid("disable or prefer");
        break;
      case "sslnegotiation":
        if (value === "direct") throw unsupported("use sslnegotiation=postgres");
        if (value !== "postgres") throw invalid("postgres");
        break;
      default:
        throw new TypeError(`Unknown connection parameter '${key}'${where}`);
    }
  }
}

/** Strips IPv6 brackets; rejects Unix sockets and host lists. `""` stays `""` (the default). */
function checkHost(host: string, where: string): string {
  const context = where || " (options.host)";
  if (host.startsWith("/")) {
    throw new TypeError(
      `Unix-domain sockets are not supported${context}: edgepool connects over TCP; give a host`,
    );
  }
  if (host.includes(",")) {
    throw new TypeError(`Multiple hosts are not supported${context}: give a single host`);
  }
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (where === "" && host === "") throw new TypeError("options.host must not be empty");
  return host;
}

// Never shows the port text: in a malformed URL it may be part of a password.
function portNumber(text: string, where: string): number {
  if (!/^\d+$/.test(text)) {
    throw new TypeError(
      `The port is not a number${where} (percent-encode any '/', '?' or '#' in the password)`,
    );
  }
  const port = Number(text);
  if (port < 1 || port > 65535) throw new RangeError(`The port must be from 1 to 65535${where}`);
  return port;
}

function sslMode(value: string, where: string, fromUrl: boolean): SslMode {
  switch (value) {
    case "disable":
    case "prefer":
    case "require":
    case "verify-full":
      return value;
    case "allow":
      throw new TypeError(
        `sslmode 'allow' is not supported${where}: use 'prefer' (TLS when the server offers it) ` +
          "or 'disable'",
      );
    case "verify-ca":
      throw new TypeError(
        `sslmode 'verify-ca' is not supported${where}: use 'verify-full', which verifies the ` +
          "certificate chain and the host name",
      );
    case "no-verify":
      if (fromUrl) return "require";
  }
  throw new TypeError(
    `Invalid sslmode '${value}'${where}: expected disable, prefer, require or verify-full`,
  );
}

function string(value: unknown, name: string): string | undefined {
  if (value !== undefined && typeof value !== "string") {
    throw new TypeError(`options.${name} must be a string, not ${typeName(value)}`);
  }
  return value;
}

function number(
  value: unknown,
  name: string,
  min: number,
  max: number,
  integer: boolean,
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") {
    throw new TypeError(`options.${name} must be a number, not ${typeName(value)}`);
  }
  if (!(value >= min && value <= max) || (integer && !Number.isInteger(value))) {
    const range = max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new RangeError(
      `options.${name} must be ${integer ? "an integer" : "a number"} ${range}, got ${value}`,
    );
  }
  return value;
}

function boolean(value: unknown, name: string): boolean | undefined {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(`options.${name} must be a boolean, not ${typeName(value)}`);
  }
  return value;
}

function caList(ca: unknown): string[] | undefined {
  const list = typeof ca === "string" ? [ca] : ca;
  if (list === undefined) return undefined;
  if (!Array.isArray(list) || list.some((pem) => typeof pem !== "string")) {
    throw new TypeError(`options.ca must be a PEM string or an array of them, not ${typeName(ca)}`);
  }
  return list.length === 0 ? undefined : [...list];
}

function checkObjects(o: ConnectOptions): void {
  if (o.transport !== undefined && typeof o.transport?.connect !== "function") {
    throw new TypeError("options.transport must be a Transport (an object with a connect method)");
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new TypeError(`options.signal must be an AbortSignal, not ${typeName(o.signal)}`);
  }
  if (o.onNotice !== undefined && typeof o.onNotice !== "function") {
    throw new TypeError(`options.onNotice must be a function, not ${typeName(o.onNotice)}`);
  }
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

function firstOf(text: string, characters: string): number {
  for (let i = 0; i < text.length; i++) if (characters.includes(text[i])) return i;
  return text.length;
}
