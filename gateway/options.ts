/**
 * The gateway's options, declared once: {@link GatewayOptions} is the library's type, and
 * {@link GATEWAY_OPTIONS} gives each of them its default, its command-line flag and its line
 * of `--help`. `startGateway` and the CLI both check what they are given with
 * {@link resolveOptions}, so the two refuse the same values with the same words.
 *
 * @module
 */

import type { PoolLogger } from "../src/pool/options.ts";
import type { SslMode } from "../src/transport.ts";
import { TARGET_SESSION_ATTRS, type TargetSessionAttrs } from "../src/url.ts";
import { parseTarget, parseTargets } from "./_target.ts";

/** Options of `startGateway`. The defaults are {@link GATEWAY_OPTIONS}' `default`s. */
export interface GatewayOptions {
  /** Address to listen on, `host:port`; port 0 picks a free one. E.g. `"127.0.0.1:4444"`. */
  listen: string;
  /**
   * The PostgreSQL server, `host:port`, or several, comma-separated (`"db1:5432,db2:5432"`,
   * `[::1]:5432` for IPv6): what a client that names no host (or any one host of the list)
   * is served by, trying the hosts in order for a server with `upstreamTargetSessionAttrs`.
   * Every host of it is always allowed.
   */
  upstream: string;
  /**
   * Which server of the upstream a session may stay with, as libpq's `target_session_attrs`:
   * `"any"`, `"read-write"`, `"read-only"`, `"primary"`, `"standby"`, `"prefer-standby"`.
   * Default: `"read-write"` when `upstream` lists more than one host (a list is given for
   * failover, and writes must not land on a standby), else `"any"`.
   */
  upstreamTargetSessionAttrs?: TargetSessionAttrs;
  /**
   * `"random"`: try the upstream's hosts in a random order for each new server connection
   * (libpq's `load_balance_hosts`). Default `"disable"`.
   */
  upstreamLoadBalance?: "disable" | "random";
  /**
   * More `host:port` targets clients may name (`?address=` or a connection string's host), matched
   * in full. Default: only `upstream`.
   */
  allow?: RegExp;
  /** WebSocket face: pass bytes through untouched instead of ending authentication. Default `false`. */
  relay?: boolean;
  /** Serve HTTPS and WSS with this PEM certificate and key. Default: plain HTTP and WS. */
  tls?: { cert: string; key: string };
  /** Where the gateway logs (`console` fits); never with a password. Default: nowhere. */
  logger?: PoolLogger;
  /** Server connections kept per connection string by the HTTP face. Default 10. */
  poolSize?: number;
  /** Connection strings the HTTP face serves at once (a pool each). Default 100. */
  maxPools?: number;
  /** TLS from the gateway to PostgreSQL (not in relay mode). Default `"prefer"`. */
  upstreamSslmode?: SslMode;
  /** Time limit in ms for connecting (and, on the WebSocket face, logging in) to PostgreSQL. Default 30000. */
  connectTimeout?: number;
  /**
   * WebSocket sessions and `/sql` requests served at once; beyond it a request or an upgrade
   * gets 503 with `Retry-After: 1`. Default 1000.
   */
  maxSessions?: number;
  /**
   * Time in ms a client has to send a request's complete head (request line and headers):
   * counted from the connection's start for its first request, from a head's first byte for
   * later ones on the same connection; then it is disconnected. `0` = no limit. Default 10000.
   */
  headerTimeout?: number;
}

/** {@link GatewayOptions} checked, with every default filled in. */
export interface ResolvedGatewayOptions {
  listen: string;
  upstream: string;
  upstreamTargetSessionAttrs: TargetSessionAttrs;
  upstreamLoadBalance: "disable" | "random";
  allow: RegExp | undefined;
  relay: boolean;
  tls: { cert: string; key: string } | undefined;
  logger: PoolLogger;
  poolSize: number;
  maxPools: number;
  upstreamSslmode: SslMode;
  connectTimeout: number;
  maxSessions: number;
  headerTimeout: number;
}

/** The values of `upstreamSslmode`. */
export const SSL_MODES: readonly SslMode[] = ["disable", "prefer", "require", "verify-full"];

/** How one option is checked, and how the CLI names and explains it. */
export type OptionSpec =
  & {
    /** The flag without `--`, and the placeholder of its value (none for a switch). */
    flag: string;
    /** Its line in `--help`, without the default (added from `default`). */
    help: string;
    /** Whether it must be given. */
    required?: boolean;
  }
  & (
    | { kind: "target"; minPort: 0 | 1 }
    | { kind: "targets" }
    | { kind: "whole"; min: number; default: number }
    | { kind: "boolean"; default: boolean }
    | { kind: "choice"; choices: readonly string[]; default: string }
    | { kind: "attrs"; choices: readonly string[] }
    | { kind: "regexp" | "tls" | "logger" }
  );

/**
 * Every option of {@link GatewayOptions} (the type checks that none is missing), with its
 * default and its command-line form. `tls` is two flags, `--tls-cert FILE --tls-key FILE`, and
 * `logger` the CLI's own stderr logger, more talkative with `--verbose`.
 */
export const GATEWAY_OPTIONS: { readonly [K in keyof GatewayOptions]-?: OptionSpec } = {
  listen: {
    kind: "target",
    minPort: 0,
    required: true,
    flag: "listen HOST:PORT",
    help: "where to listen, e.g. 127.0.0.1:4444 (port 0: any free port)",
  },
  upstream: {
    kind: "targets",
    required: true,
    flag: "upstream HOST:PORT[,HOST:PORT...]",
    help: "the PostgreSQL server, e.g. 127.0.0.1:5432, or a list tried in order for one with " +
      "--upstream-target-session-attrs (every host always allowed)",
  },
  upstreamTargetSessionAttrs: {
    kind: "attrs",
    choices: TARGET_SESSION_ATTRS,
    flag: "upstream-target-session-attrs ATTRS",
    help: `which upstream server to use: ${TARGET_SESSION_ATTRS.join(", ")} ` +
      "(default read-write for a list, else any)",
  },
  upstreamLoadBalance: {
    kind: "choice",
    choices: ["disable", "random"],
    default: "disable",
    flag: "upstream-load-balance MODE",
    help: "random: try the upstream's hosts in a random order for each connection",
  },
  allow: {
    kind: "regexp",
    flag: "allow REGEX",
    help: "more HOST:PORT targets clients may name (matched in full)",
  },
  relay: {
    kind: "boolean",
    default: false,
    flag: "relay",
    help: "WebSocket: pass bytes through untouched (no password handling)",
  },
  tls: {
    kind: "tls",
    flag: "tls-cert FILE --tls-key FILE",
    help: "serve HTTPS/WSS with this PEM certificate and key",
  },
  logger: { kind: "logger", flag: "verbose", help: "log every request and session" },
  poolSize: {
    kind: "whole",
    min: 1,
    default: 10,
    flag: "pool-size N",
    help: "server connections kept per connection string",
  },
  maxPools: {
    kind: "whole",
    min: 1,
    default: 100,
    flag: "max-pools N",
    help: "connection strings served at once, LRU idle ones closed",
  },
  upstreamSslmode: {
    kind: "choice",
    choices: SSL_MODES,
    default: "prefer",
    flag: "upstream-sslmode MODE",
    help: `TLS to PostgreSQL: ${SSL_MODES.join(", ")}`,
  },
  connectTimeout: {
    kind: "whole",
    min: 1,
    default: 30_000,
    flag: "connect-timeout MS",
    help: "time limit for connecting (and logging in) to PostgreSQL",
  },
  maxSessions: {
    kind: "whole",
    min: 1,
    default: 1000,
    flag: "max-sessions N",
    help: "WebSocket sessions and /sql requests served at once; beyond it 503 with Retry-After",
  },
  headerTimeout: {
    kind: "whole",
    min: 0,
    default: 10_000,
    flag: "header-timeout MS",
    help: "disconnect a client whose request headers are not complete after MS milliseconds " +
      "(0 = no limit)",
  },
};

const MAX_WHOLE = 2 ** 31 - 1;

/**
 * Checks `options` and fills in the defaults. Throws a TypeError or RangeError that names the
 * option as `name(key)` says (the CLI names its flags).
 */
export function resolveOptions(
  options: GatewayOptions,
  name: (key: keyof GatewayOptions) => string = (key) => key,
): ResolvedGatewayOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("startGateway() needs an options object: { listen, upstream, ... }");
  }
  const given = options as unknown as Record<string, unknown>;
  const specs = Object.entries(GATEWAY_OPTIONS) as [keyof GatewayOptions, OptionSpec][];
  // What is missing first: it is the likelier mistake.
  for (const [key, spec] of specs) {
    if (spec.required && given[key] === undefined) throw new TypeError(`${name(key)} is required`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, spec] of specs) {
    const value = given[key];
    const what = name(key);
    if (value === undefined) {
      out[key] = "default" in spec ? spec.default : key === "logger" ? {} : undefined;
      continue;
    }
    switch (spec.kind) {
      case "target":
        parseTarget(value as string, what, spec.minPort);
        break;
      case "targets":
        parseTargets(value as string, what);
        break;
      case "whole":
        if (
          !(Number.isInteger(value) && (value as number) >= spec.min &&
            (value as number) <= MAX_WHOLE)
        ) {
          throw new RangeError(
            `${what} must be a whole number from ${spec.min} to ${MAX_WHOLE}, got ${String(value)}`,
          );
        }
        break;
      case "boolean":
        if (typeof value !== "boolean") throw new TypeError(`${what} must be true or false`);
        break;
      case "attrs":
      case "choice":
        if (!spec.choices.includes(value as string)) {
          throw new TypeError(`${what} must be one of ${spec.choices.join(", ")}`);
        }
        break;
      case "regexp":
        if (!(value instanceof RegExp)) throw new TypeError(`${what} must be a RegExp`);
        break;
      case "tls": {
        const tls = value as { cert?: unknown; key?: unknown };
        if (typeof tls.cert !== "string" || typeof tls.key !== "string") {
          throw new TypeError(`${what} must be { cert, key }, both PEM text`);
        }
        break;
      }
      case "logger":
        if (typeof value !== "object" || value === null) {
          throw new TypeError(`${what} must be an object with debug/info/warn/error methods`);
        }
    }
    out[key] = value;
  }
  const resolved = out as unknown as ResolvedGatewayOptions;
  const hosts = parseTargets(resolved.upstream, name("upstream")).length;
  resolved.upstreamTargetSessionAttrs ??= hosts > 1 ? "read-write" : "any";
  if (resolved.relay && resolved.upstreamTargetSessionAttrs !== "any") {
    // A relay passes bytes it does not read: it cannot see what the server is.
    throw new TypeError(
      `${name("relay")} cannot check ${name("upstreamTargetSessionAttrs")} ` +
        `(${resolved.upstreamTargetSessionAttrs}) on the WebSocket face: the gateway does not ` +
        `read the session it relays; set ${name("upstreamTargetSessionAttrs")} to any ` +
        "(the first host that takes the connection), or drop relay",
    );
  }
  return resolved;
}
