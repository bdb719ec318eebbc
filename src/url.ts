// Reading libpq-style `postgres://` URLs, and hiding their passwords in messages.

import type { SslMode } from "./transport.ts";

/** Timers fire at once for longer delays, so longer time limits cannot be honoured. */
export const MAX_TIMEOUT = 2_147_483_647;
const URL_START = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

/** What a URL says, before options and defaults. */
export interface UrlSettings {
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
 * user-info part and any `password=` query parameter. Works on strings that are not valid URLs
 * too (a password with an unencoded `/`, `?` or `#`), erring towards hiding too much.
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

export function parseUrl(text: string): UrlSettings {
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
      case "keepalives_idle": {
        if (!/^\d+$/.test(value)) throw invalid("a whole number of seconds");
        if (Number(value) * 1000 > MAX_TIMEOUT) {
          throw invalid(`at most ${Math.floor(MAX_TIMEOUT / 1000)} seconds`);
        }
        settings.keepAliveInitialDelay = Number(value) * 1000;
        break;
      }
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
export function checkHost(host: string, where: string): string {
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

export function sslMode(value: string, where: string, fromUrl: boolean): SslMode {
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

function firstOf(text: string, characters: string): number {
  for (let i = 0; i < text.length; i++) if (characters.includes(text[i])) return i;
  return text.length;
}
