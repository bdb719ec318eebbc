// Where clients may send the gateway: `host:port` addresses and the allowlist that keeps the
// gateway from being an open proxy.

/** A TCP destination. `host` has no IPv6 brackets and is lower-cased. */
export interface Target {
  host: string;
  port: number;
}

/**
 * Reads `host:port` (`[::1]:5432` for IPv6). `minPort` is 0 for listen addresses (any free
 * port) and 1 for destinations. Throws a TypeError that names `what`.
 */
export function parseTarget(text: string, what: string, minPort = 1): Target {
  const value = String(text).trim();
  let host: string;
  let port: string;
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close < 0 || value[close + 1] !== ":") throw badTarget(value, what);
    host = value.slice(1, close);
    port = value.slice(close + 2);
  } else {
    const colon = value.lastIndexOf(":");
    if (colon < 0 || value.indexOf(":") !== colon) throw badTarget(value, what);
    host = value.slice(0, colon);
    port = value.slice(colon + 1);
  }
  const number = Number(port);
  if (
    host === "" || /[\s/?#@]/.test(host) || !/^\d{1,5}$/.test(port) || number < minPort ||
    number > 65535
  ) {
    throw badTarget(value, what);
  }
  return { host: host.toLowerCase(), port: number };
}

/** Most hosts an upstream list may have: more is a mistake, and each costs a connect. */
export const MAX_UPSTREAM_HOSTS = 16;

/**
 * Reads the upstream: one `host:port`, or several, comma-separated (`db1:5432,[::1]:5433`),
 * tried in that order. An empty entry, the same host twice, or more than
 * {@link MAX_UPSTREAM_HOSTS} hosts is refused with a TypeError that names `what`.
 */
export function parseTargets(text: string, what: string): Target[] {
  const value = String(text).trim();
  // A comma never occurs inside an entry, IPv6 brackets included.
  const entries = value.split(",");
  if (entries.length > MAX_UPSTREAM_HOSTS) {
    throw new TypeError(
      `${what} lists ${entries.length} hosts: at most ${MAX_UPSTREAM_HOSTS} are accepted`,
    );
  }
  const targets: Target[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    if (entry.trim() === "") {
      throw new TypeError(
        `${what} must be host:port or a comma-separated list of them ` +
          `(e.g. db1:5432,db2:5432), got "${value}"`,
      );
    }
    const target = parseTarget(entry, what);
    const key = formatTarget(target);
    if (seen.has(key)) throw new TypeError(`${what} lists ${key} twice`);
    seen.add(key);
    targets.push(target);
  }
  return targets;
}

/** `host:port`, with brackets around an IPv6 address. */
export function formatTarget(target: Target): string {
  const host = target.host.includes(":") ? `[${target.host}]` : target.host;
  return `${host}:${target.port}`;
}

/** Whether a host name or address is this machine (so plain HTTP cannot be sniffed). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Decides whether the gateway may connect to a target. */
export type Allowlist = (target: Target) => boolean;

/** Whether `target` is one of the upstream's hosts (matched as `host:port`, in full). */
export function isUpstream(upstream: Target | readonly Target[], target: Target): boolean {
  const text = formatTarget(target);
  return (Array.isArray(upstream) ? upstream : [upstream as Target]).some((u) =>
    formatTarget(u) === text
  );
}

/**
 * Every host of the configured upstream is always allowed; `allow`, when given, admits every
 * `host:port` it matches in full (it is anchored at both ends, so `db\.internal:5432` cannot
 * match `evil-db.internal:5432.example`). A Unix-domain socket (a host that starts with `/`)
 * never is.
 */
export function allowlist(
  upstream: Target | readonly Target[],
  allow: RegExp | undefined,
): Allowlist {
  const pattern = allow === undefined
    ? undefined
    : new RegExp(`^(?:${allow.source})$`, allow.flags.replace(/[gy]/g, ""));
  return (target) => {
    // Only TCP: a host that names a Unix-domain socket's directory is refused even when a
    // broad pattern (`.*`) would match it.
    if (target.host[0] === "/") return false;
    return isUpstream(upstream, target) ||
      (pattern !== undefined && pattern.test(formatTarget(target)));
  };
}

function badTarget(value: string, what: string): TypeError {
  return new TypeError(`${what} must be host:port (e.g. 127.0.0.1:5432), got "${value}"`);
}
