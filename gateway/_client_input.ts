// What the gateway takes from a client before it is authenticated: the parts of a `/sql`
// connection string and of a WebSocket startup packet that the protocol needs, and nothing that
// could make the gateway read a file or connect anywhere its operator did not allow. Everything
// here is decided from the client's text alone, before a file or the network is touched, and a
// refusal names the parameter, never its value: the answer for `sslrootcert=/etc/passwd` and
// for `sslrootcert=/nonexistent` is the same, byte for byte.

import { errorMessage } from "../src/errors.ts";
import { CLIENT_SOCKET_SETTINGS, parseUrl, type TargetSessionAttrs } from "../src/url.ts";
import { RequestError } from "./_request_error.ts";
import { formatTarget, type Target } from "./_target.ts";

/** Longest connection string read; a real one is a few hundred bytes. */
const MAX_CONNECTION_STRING = 8 * 1024;
const URL_START = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
/** Neon's way of naming an endpoint where SNI cannot: `options=endpoint%3D<id>`. */
const NEON_ENDPOINT = /^\s*endpoint=[^\s]*\s*$/;

/**
 * Query parameters a connection string may carry. `options` only as Neon's `endpoint=` (which
 * the gateway reads past: its upstream is chosen by host and the allowlist).
 */
const CONNECTION_STRING_PARAMETERS = new Set(["application_name", "options"]);

/**
 * libpq's client-side settings: never startup parameters of PostgreSQL's, and the ones a
 * client-facing server must not take from a client (files, TLS, where to connect).
 */
const CLIENT_SIDE_PARAMETERS: ReadonlySet<string> = new Set([
  ...CLIENT_SOCKET_SETTINGS,
  "host",
  "hostaddr",
  "port",
  "password",
  "passfile",
  "service",
  "servicefile",
  "target_session_attrs",
  "load_balance_hosts",
]);

/** The gateway's upstream, as the `/sql` face connects to it. */
export interface UpstreamHosts {
  /** Its hosts, in the order to try them. */
  hosts: readonly Target[];
  /** Which of them a connection may stay with (libpq's `target_session_attrs`). */
  targetSessionAttrs: TargetSessionAttrs;
  /** Try them in a random order. */
  loadBalance: "disable" | "random";
}

/** What a `/sql` request's connection string asks for, checked. */
export interface ClientLogin {
  /** Where to connect (not yet checked against the allowlist). */
  target: Target;
  /**
   * Whether `target` is the upstream (no host given, or one of its hosts): the connection is
   * then made to the upstream's host list, with its session attributes.
   */
  upstream: boolean;
  user: string;
  password: string | undefined;
  database: string;
  applicationName: string | undefined;
  /**
   * The connection string the gateway opens its pool with, built from the fields above only:
   * no parameter of the client's reaches the connector.
   */
  key: string;
}

/**
 * Reads a `Neon-Connection-String`: user, password, host (port), database, `application_name`,
 * and Neon's `options=endpoint=...`. Any other parameter is refused with a 400 naming it. A
 * missing port means the upstream's (the port of the upstream host of that name, else of its
 * first host), as a missing host means the upstream itself (Neon's proxy does not read the port;
 * its clients often leave it out). A host of the upstream means the upstream, all of it.
 */
export function readConnectionString(text: string, upstream: UpstreamHosts): ClientLogin {
  if (text.length > MAX_CONNECTION_STRING) {
    throw new RequestError(
      400,
      "54000",
      `The Neon-Connection-String header is longer than ${MAX_CONNECTION_STRING} characters`,
    );
  }
  const value = text.trim();
  checkParameters(value);
  let settings;
  try {
    settings = parseUrl(value);
  } catch (error) {
    throw new RequestError(400, "08P01", `Invalid Neon-Connection-String: ${errorMessage(error)}`);
  }
  if ((settings.hosts?.length ?? 0) > 1) {
    // A client names one server (which the allowlist then judges), never a list to try.
    throw new RequestError(
      400,
      "08P01",
      "Invalid Neon-Connection-String: a host list is not accepted; name one host",
    );
  }
  if (settings.host?.[0] === "/") {
    // A socket file on the gateway's machine (its own database's, say): never a client's to
    // name, whatever the allowlist admits. The path is not echoed.
    throw new RequestError(
      400,
      "42501",
      "The host of the connection string is not accepted by this gateway: a Unix-domain " +
        "socket (a host that starts with '/') is on the gateway's machine; give host:port",
    );
  }
  if (!settings.user) {
    throw new RequestError(
      400,
      "28000",
      "Invalid Neon-Connection-String: no user name (postgres://user:password@host/database)",
    );
  }
  const hosts = upstream.hosts;
  const host = (settings.host ?? hosts[0].host).toLowerCase();
  const target = {
    host,
    port: settings.port ?? (hosts.find((h) => h.host === host) ?? hosts[0]).port,
  };
  const home = hosts.some((h) => formatTarget(h) === formatTarget(target));
  const database = settings.database ?? settings.user;
  const applicationName = settings.applicationName;
  const e = encodeURIComponent;
  const query: string[] = [];
  if (applicationName !== undefined) query.push(`application_name=${e(applicationName)}`);
  // The upstream's list and attributes are the operator's, never the client's (refused above).
  if (home && upstream.targetSessionAttrs !== "any") {
    query.push(`target_session_attrs=${upstream.targetSessionAttrs}`);
  }
  if (home && upstream.loadBalance === "random") query.push("load_balance_hosts=random");
  const key = `postgres://${e(settings.user)}` +
    (settings.password === undefined ? "" : `:${e(settings.password)}`) +
    `@${home ? hosts.map(formatTarget).join(",") : formatTarget(target)}/${e(database)}` +
    (query.length === 0 ? "" : `?${query.join("&")}`);
  return {
    target,
    upstream: home,
    user: settings.user,
    password: settings.password,
    database,
    applicationName,
    key,
  };
}

/** Refuses every query parameter but the accepted ones, by name, before anything is parsed. */
function checkParameters(text: string): void {
  const scheme = URL_START.exec(text);
  if (scheme === null) return; // parseUrl explains what is wrong
  const rest = text.slice(scheme[0].length);
  // Where parseUrl finds the query part: after the authority, at the first '?'.
  let authorityEnd = rest.length;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "/" || rest[i] === "?") {
      authorityEnd = i;
      break;
    }
  }
  const tail = rest.slice(authorityEnd);
  const queryStart = tail.indexOf("?");
  if (queryStart < 0) return;
  for (const piece of tail.slice(queryStart + 1).split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const name = decode(eq < 0 ? piece : piece.slice(0, eq));
    if (!CONNECTION_STRING_PARAMETERS.has(name)) {
      throw refusedParameter(
        name,
        CLIENT_SIDE_PARAMETERS.has(name)
          ? "how the gateway connects (TLS, files, address) is its operator's setting"
          : "it is not a parameter this gateway accepts",
      );
    }
    if (name === "options" && !NEON_ENDPOINT.test(decode(eq < 0 ? "" : piece.slice(eq + 1)))) {
      throw refusedParameter(name, "only Neon's endpoint=<id> is accepted there");
    }
  }
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new RequestError(
      400,
      "08P01",
      "Invalid Neon-Connection-String: invalid percent-encoding in a parameter",
    );
  }
}

function refusedParameter(name: string, why: string): RequestError {
  return new RequestError(
    400,
    "42501",
    `The connection parameter ${shown(name)} is not accepted by this gateway: ${why}; ` +
      "accepted are user, password, host, port and database in the URL, application_name, " +
      "and options=endpoint=<id>",
  );
}

/**
 * Checks a WebSocket client's startup parameters, which go to PostgreSQL as they are (the
 * server judges its own settings): libpq's client-side settings are refused by name, and
 * Neon's `endpoint=` is taken out of `options`, since PostgreSQL would refuse it. Returns the
 * parameters to send, or the message of the refusal.
 */
export function startupParameters(
  params: Record<string, string>,
): { params: Record<string, string> } | { refused: string } {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(params)) {
    if (CLIENT_SIDE_PARAMETERS.has(name)) {
      return {
        refused: `the startup parameter ${shown(name)} is not accepted by this gateway: how ` +
          "it connects (TLS, files, address) is its operator's setting",
      };
    }
    if (name === "options") {
      const rest = value.replace(/(^|\s+)endpoint=(?:\\.|\S)*/g, "").trim();
      if (rest !== "") out.options = rest;
      continue;
    }
    out[name] = value;
  }
  return { params: out };
}

/** A client's name for a parameter, quoted and cut short, for a message. */
function shown(name: string): string {
  return JSON.stringify(name.length > 64 ? name.slice(0, 64) + "..." : name);
}
