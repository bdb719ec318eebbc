// Reading libpq-style `postgres://` URLs, and hiding their passwords in messages.

import type { SslMode } from "./transport.ts";

/** Timers fire at once for longer delays, so longer time limits cannot be honoured. */
export const MAX_TIMEOUT = 2_147_483_647;
const URL_START = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const URL_FORM = "postgres://user:password@host:port/database";
/** Where the authority part ends: at the first '/' or '?', else at the end. */
const AUTHORITY_END = /[/?]|$/;

/** What a URL says, before options and defaults. */
export interface UrlSettings {
  /** The first host of the list, if any. */
  host?: string;
  /** The first port of the list, if any. */
  port?: number;
  /** Every host, in order (`h1,h2` in the authority or `host=h1,h2`); `""` for the default. */
  hosts?: string[];
  /** Every port, in order; one applies to every host; `undefined` for the default. */
  ports?: (number | undefined)[];
  targetSessionAttrs?: TargetSessionAttrs;
  loadBalanceHosts?: "disable" | "random";
  user?: string;
  password?: string;
  database?: string;
  sslmode?: SslMode;
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  sslpassword?: string;
  applicationName?: string;
  fallbackApplicationName?: string;
  connectTimeout?: number;
  options?: string;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  pgbouncer?: boolean;
}

/**
 * libpq's settings about the client's own socket, TLS and authentication handling: how a client
 * connects, never startup parameters of the server's. Over HTTP they do not apply (the TLS is
 * the endpoint's), and a gateway must not take them from its clients.
 */
export const CLIENT_SOCKET_SETTINGS: ReadonlySet<string> = new Set([
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "sslpassword",
  "sslcrl",
  "sslcrldir",
  "sslsni",
  "sslcertmode",
  "sslnegotiation",
  "sslcompression",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  "requiressl",
  "gssencmode",
  "gsslib",
  "gssdelegation",
  "krbsrvname",
  "channel_binding",
  "require_auth",
  "connect_timeout",
  "keepalives",
  "keepalives_idle",
  "keepalives_interval",
  "keepalives_count",
  "tcp_user_timeout",
]);

/**
 * The URL with its password replaced by `***`, for messages and logs: the password of the
 * user-info part, any `password=` or `sslpassword=` query parameter, and any query value holding
 * PEM text (`-----BEGIN`: a key where its file's path goes). Works on strings that are not
 * valid URLs too (a password with an unencoded `/`, `?` or `#`), erring towards hiding too much.
 *
 * @param url The connection URL, valid or not.
 * @returns The same text with passwords hidden. Never throws.
 *
 * @example
 * ```ts
 * import { redactUrl } from "./url.ts";
 * const shown = redactUrl("postgres://alice:hunter2@db/app?sslmode=require");
 * console.assert(shown === "postgres://alice:***@db/app?sslmode=require");
 * ```
 */
export function redactUrl(url: string): string {
  let text = String(url);
  const start = URL_START.exec(text)?.[0].length ?? 0;
  const rest = text.slice(start);
  const authorityEnd = rest.search(AUTHORITY_END);
  const colon = rest.indexOf(":");
  let at = rest.lastIndexOf("@", authorityEnd - 1);
  if (at < 0 && colon >= 0 && colon < authorityEnd) {
    // No user info by the parsing rules, but a ':' in the host part: the URL may hold a password
    // with an unencoded '/' or '?' (`user:pa/ss@host`). If what follows ':' is no port, hide up to
    // the last '@'; if it is, hide up to an '@' in the path or in a query part with no '='.
    if (!/^\d*$/.test(rest.slice(colon + 1, authorityEnd))) at = rest.lastIndexOf("@");
    else {
      const query = rest.indexOf("?");
      at = (query < 0 ? rest : rest.slice(0, query)).lastIndexOf("@");
      const queryAt = query < 0 ? -1 : rest.indexOf("@", query);
      if (at < 0 && queryAt >= 0 && !rest.slice(query, queryAt).includes("=")) at = queryAt;
    }
  }
  if (at >= 0 && colon >= 0 && colon + 1 < at) {
    text = text.slice(0, start + colon + 1) + "***" + text.slice(start + at);
  }
  text = text.replace(
    /([?&])([^&=]*)=([^&]*)/g,
    (piece, separator: string, key: string, value: string) => {
      const name = safeDecode(key);
      // PEM text (a key put where its path goes) is no more for messages than a password.
      return /^(ssl)?password$/.test(name.trim().toLowerCase()) ||
          /-----BEGIN/i.test(safeDecode(value))
        ? `${separator}${key}=***`
        : piece;
    },
  );
  // key=value connection strings (not supported, but they end up in messages).
  return text.replace(/(^|\s)((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)/gi, "$1$2***");
}

/**
 * The query parameters whose values read `+` as a space, as `URLSearchParams` writes one
 * (`application/x-www-form-urlencoded`): free text, which holds spaces far more often than a
 * `+` (`options` always does: `-c name=value`). A literal `+` there is `%2B`, as
 * `URLSearchParams` writes it. Everywhere else `+` is a `+`, as libpq reads it: in a password,
 * a user name (`me+tag`), a path.
 */
const SPACE_AS_PLUS: ReadonlySet<string> = new Set([
  "application_name",
  "fallback_application_name",
  "options",
]);

/**
 * Reads a URL by libpq's rules. `where` (` in <the URL, redacted>`) goes into every message
 * that is about the URL.
 *
 * Percent-encoding is decoded everywhere. One departure from libpq, for URLs built with
 * `URLSearchParams`: in the values of `application_name`, `fallback_application_name` and
 * `options`, a `+` is a space (`?application_name=my+app` is `my app`; a `+` itself is
 * `%2B`). Everywhere else, the password and user name included, `+` stays a `+`. A host that
 * starts with `/` (`?host=/var/run/postgresql`, or `%2Fvar%2Frun%2Fpostgresql` in place of
 * the host) is the directory of the server's Unix-domain socket, as in libpq.
 *
 * @example
 * ```ts
 * import { parseUrl } from "./url.ts";
 * const query = new URLSearchParams({ application_name: "my app", options: "-c x.y=1+2" });
 * const settings = parseUrl(`postgres://u@%2Ftmp/db?${query}`);
 * console.assert(settings.applicationName === "my app" && settings.options === "-c x.y=1+2");
 * console.assert(settings.host === "/tmp");
 * ```
 */
export function parseUrl(text: string, where = ` in ${redactUrl(text)}`): UrlSettings {
  const scheme = URL_START.exec(text);
  const fail = (what: string, instead?: string): TypeError =>
    new TypeError(what + where + (instead ? ": " + instead : ""));
  if (scheme === null) {
    throw new TypeError(
      text === ""
        ? "The connection URL is empty"
        : /^postgres(ql)?:/i.test(text)
        ? `Expected '//' after the scheme${where}: ${URL_FORM}`
        : `The connection string is not a URL (key=value strings are not supported): ${URL_FORM}`,
    );
  }
  if (!/^postgres(ql)?$/i.test(scheme[1])) {
    throw fail(`Unsupported URL scheme '${scheme[1]}:'`, "use postgres:// or postgresql://");
  }
  const decode = (part: string): string => {
    let value: string;
    try {
      value = decodeURIComponent(part);
    } catch {
      throw fail("Invalid percent-encoding");
    }
    if (value.includes("\0")) throw fail("A NUL character (%00) is not allowed");
    return value;
  };

  const settings: UrlSettings = {};
  // The authority ends at the first '/' or '?', and its last '@' ends the user info, so an
  // unencoded '@' in a password still works. Then the path, then the query.
  const [, userInfo, hostPort, path, query = ""] = /^(?:([^/?]*)@)?([^/?]*)([^?]*)(?:\?([^]*))?$/
    .exec(text.slice(scheme[0].length))!;
  if (userInfo !== undefined) {
    const [user, ...password] = userInfo.split(":");
    settings.user = decode(user) || undefined;
    if (password.length) settings.password = decode(password.join(":")) || undefined;
  }
  // A host list, `h1:5432,[::1]:5433,h3`: each entry `[IPv6]:port` or `host:port`, each part
  // optional, each host with its own port.
  let hosts: string[] = [];
  let ports: (number | undefined)[] = [];
  if (hostPort !== "") {
    for (const entry of hostPort.split(",")) {
      const parts = /^(?:\[([^\]]+)\]|(?!\[)([^:]*))(?::([^]*))?$/.exec(entry);
      if (parts === null) {
        throw fail("Malformed IPv6 address", "expected [address] or [address]:port");
      }
      hosts.push(checkHost(decode(parts[1] ?? parts[2]), where));
      ports.push(parts[3] ? portNumber(decode(parts[3]), where) : undefined);
    }
  }
  if (path) settings.database = decode(path.slice(1)) || undefined;
  for (const piece of query.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    if (eq < 0) throw fail("A query parameter has no '=' and no value");
    const key = decode(piece.slice(0, eq));
    const raw = piece.slice(eq + 1);
    const value = decode(SPACE_AS_PLUS.has(key) ? raw.replaceAll("+", " ") : raw);
    const invalid = (expected: string): TypeError =>
      fail(`Invalid ${key} '${value}'`, "expected " + expected);
    const unsupported = (instead: string): TypeError =>
      fail(`${key}=${value} is not supported`, instead);
    /** One of `allowed`, the first of which means `true`. */
    const choice = (...allowed: string[]): boolean => {
      if (!allowed.includes(value)) throw invalid(or(allowed));
      return value === allowed[0];
    };
    switch (key) {
      case "host":
        hosts = value.split(",").map((host) => checkHost(host, where));
        break;
      case "port":
        ports = value.split(",").map((port) => port === "" ? undefined : portNumber(port, where));
        break;
      case "target_session_attrs":
        if (!(TARGET_SESSION_ATTRS as string[]).includes(value)) {
          throw invalid(or(TARGET_SESSION_ATTRS));
        }
        settings.targetSessionAttrs = value as TargetSessionAttrs;
        break;
      case "load_balance_hosts":
        settings.loadBalanceHosts = choice("random", "disable") ? "random" : "disable";
        break;
      case "user":
      case "password":
      case "sslrootcert":
      case "sslcert":
      case "sslkey":
      case "sslpassword":
        settings[key] = value || undefined;
        break;
      case "dbname":
        settings.database = value || undefined;
        break;
      case "sslmode":
        settings.sslmode = sslMode(value, where, true);
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
      case "connect_timeout":
      case "keepalives_idle": {
        // libpq: whole seconds; connect_timeout 0 is no limit, and 1 is raised to 2.
        if (!/^\d+$/.test(value) || +value > MAX_TIMEOUT / 1000) {
          throw invalid("whole seconds from 0 to 2147483");
        }
        if (key === "keepalives_idle") settings.keepAliveInitialDelay = +value * 1000;
        else settings.connectTimeout = (+value === 1 ? 2 : +value) * 1000;
        break;
      }
      case "client_encoding":
        if (!/^utf-?8$/i.test(value)) throw invalid("UTF8, the only encoding edgepool speaks");
        break;
      case "keepalives":
        settings.keepAlive = choice("1", "0");
        break;
      case "pgbouncer":
        settings.pgbouncer = choice("true", "false");
        break;
      case "channel_binding":
        if (value === "require") {
          throw unsupported("edgepool has no SCRAM-SHA-256-PLUS; use prefer");
        }
        choice("disable", "prefer");
        break;
      case "sslnegotiation":
        if (value === "direct") throw unsupported("use sslnegotiation=postgres");
        choice("postgres");
        break;
      default:
        throw fail(`Unknown connection parameter '${key}'`);
    }
  }
  if (ports.length > 1 && ports.length !== Math.max(hosts.length, 1)) {
    throw fail(
      `${ports.length} ports do not match ${hosts.length} hosts`,
      "give one port for all hosts, or one for each",
    );
  }
  if (hosts.length > 0) {
    settings.hosts = hosts;
    settings.host = hosts[0] || undefined;
  }
  if (ports.length > 0) {
    settings.ports = ports;
    settings.port = ports[0];
  }
  return settings;
}

/**
 * libpq's `target_session_attrs`: which server of a host list a connection may stay with.
 *
 * - `any`: the first that takes the connection;
 * - `read-write`: one that takes writes by default (not a hot standby, and
 *   `default_transaction_read_only` off); `read-only`: one that does not;
 * - `primary`: not a hot standby; `standby`: a hot standby;
 * - `prefer-standby`: a hot standby if any is reachable, else any.
 */
export type TargetSessionAttrs =
  | "any"
  | "read-write"
  | "read-only"
  | "primary"
  | "standby"
  | "prefer-standby";

/** Every `target_session_attrs`, the default first. */
export const TARGET_SESSION_ATTRS: TargetSessionAttrs[] = [
  "any",
  "read-write",
  "read-only",
  "primary",
  "standby",
  "prefer-standby",
];

/**
 * Checks one host of a list: strips IPv6 brackets; rejects abstract sockets. `""` stays `""`
 * (the default). A host that starts with `/` is the directory of a Unix-domain socket, as in
 * libpq, and stays as it is. `where` is `""` for `options.host`.
 */
export function checkHost(host: string, where: string): string {
  const context = where || " (options.host)";
  if (host[0] === "@") {
    // libpq on Linux: a socket in the abstract namespace. No runtime's API reaches those.
    throw new TypeError(
      `Abstract Unix-domain sockets ('@' hosts) are not supported${context}: give the ` +
        "directory of a socket file (/var/run/postgresql) or a TCP host name",
    );
  }
  if (host[0] === "[" && host.endsWith("]")) host = host.slice(1, -1);
  return host;
}

// Never shows the port text: in a malformed URL it may be part of a password.
function portNumber(text: string, where: string): number {
  if (!/^\d+$/.test(text)) {
    throw new TypeError(
      `The port is not a number${where} (percent-encode any '/', '?' or '#' in the password)`,
    );
  }
  if (+text < 1 || +text > 65535) throw new RangeError(`The port must be from 1 to 65535${where}`);
  return +text;
}

const SSL_MODES: SslMode[] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/** `sslmode` from the URL or (`fromUrl` false, which does not take libpq's `no-verify`) options. */
export function sslMode(value: string, where: string, fromUrl: boolean): SslMode {
  if (SSL_MODES.includes(value as SslMode)) return value as SslMode;
  if (fromUrl && value === "no-verify") return "require";
  const instead = value === "allow" ? "'prefer' (TLS when the server offers it) or 'disable'" : "";
  throw new TypeError(
    instead
      ? `sslmode '${value}' is not supported${where}: use ${instead}`
      : `Invalid sslmode '${value}'${where}: expected ${or(SSL_MODES)}`,
  );
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** `a, b or c`, for messages. */
export function or(items: string[]): string {
  return items.join(", ").replace(/, ([^,]*)$/, " or $1");
}
