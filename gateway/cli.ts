// The gateway from the command line, on Deno or Node:
//
//   deno run -A gateway/cli.ts --listen 127.0.0.1:4444 --upstream 127.0.0.1:5432 \
//     [--allow REGEX] [--relay] [--tls-cert FILE --tls-key FILE] [--upstream-sslmode MODE] \
//     [--pool-size N] [--max-pools N] [--max-sessions N] [--header-timeout MS] [--verbose]
//
// One line on stdout once it listens; logs on stderr, never with a password. SIGINT/SIGTERM
// close it cleanly.

import { readFileSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import type { PoolLogger } from "../src/pool/options.ts";
import type { SslMode } from "../src/transport.ts";
import { startGateway } from "./mod.ts";

const USAGE = `usage: edgepool-gateway --listen HOST:PORT --upstream HOST:PORT [options]

  --listen HOST:PORT         where to listen, e.g. 127.0.0.1:4444 (port 0: any free port)
  --upstream HOST:PORT       the PostgreSQL server, e.g. 127.0.0.1:5432 (always allowed)
  --allow REGEX              more HOST:PORT targets clients may name (matched in full)
  --relay                    WebSocket: pass bytes through untouched (no password handling)
  --tls-cert FILE            serve HTTPS/WSS with this PEM certificate...
  --tls-key FILE             ...and this PEM key
  --upstream-sslmode MODE    TLS to PostgreSQL: disable, prefer (default), require, verify-full
  --pool-size N              server connections kept per connection string (default 10)
  --max-pools N              connection strings served at once, LRU idle ones closed (default 100)
  --max-sessions N           WebSocket sessions and /sql requests served at once; beyond it
                             503 with Retry-After (default 1000)
  --header-timeout MS        disconnect a client whose request headers are not complete
                             after MS milliseconds (default 10000; 0 = no limit)
  --verbose                  log every request and session
  --help                     show this`;

const SSL_MODES = ["disable", "prefer", "require", "verify-full"];

function fail(message: string): never {
  console.error(`edgepool-gateway: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: {
        listen: { type: "string" },
        upstream: { type: "string" },
        allow: { type: "string" },
        relay: { type: "boolean" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "upstream-sslmode": { type: "string" },
        "pool-size": { type: "string" },
        "max-pools": { type: "string" },
        "max-sessions": { type: "string" },
        "header-timeout": { type: "string" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    fail((error as Error).message);
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!parsed.listen) fail("--listen is required");
  if (!parsed.upstream) fail("--upstream is required");
  if (Boolean(parsed["tls-cert"]) !== Boolean(parsed["tls-key"])) {
    fail("--tls-cert and --tls-key go together");
  }
  let allow: RegExp | undefined;
  if (parsed.allow !== undefined) {
    try {
      allow = new RegExp(parsed.allow);
    } catch (error) {
      fail(`--allow is not a valid regular expression: ${(error as Error).message}`);
    }
  }
  const sslmode = parsed["upstream-sslmode"];
  if (sslmode !== undefined && !SSL_MODES.includes(sslmode)) {
    fail(`--upstream-sslmode must be one of ${SSL_MODES.join(", ")}`);
  }
  let poolSize: number | undefined;
  if (parsed["pool-size"] !== undefined) {
    poolSize = Number(parsed["pool-size"]);
    if (!Number.isInteger(poolSize) || poolSize < 1) {
      fail("--pool-size must be a whole number >= 1");
    }
  }
  const whole = (flag: string, min: number): number | undefined => {
    const text = (parsed as Record<string, unknown>)[flag];
    if (text === undefined) return undefined;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > 2 ** 31 - 1) {
      fail(`--${flag} must be a whole number >= ${min}`);
    }
    return value;
  };
  const maxPools = whole("max-pools", 1);
  const maxSessions = whole("max-sessions", 1);
  const headerTimeout = whole("header-timeout", 0);
  const read = (file: string) => {
    try {
      return readFileSync(file, "utf8");
    } catch (error) {
      fail(`cannot read ${file}: ${(error as Error).message}`);
    }
  };
  const tls = parsed["tls-cert"]
    ? { cert: read(parsed["tls-cert"]), key: read(parsed["tls-key"]!) }
    : undefined;
  return {
    listen: parsed.listen,
    upstream: parsed.upstream,
    allow,
    relay: parsed.relay ?? false,
    tls,
    upstreamSslmode: sslmode as SslMode | undefined,
    poolSize,
    maxPools,
    maxSessions,
    headerTimeout,
    verbose: parsed.verbose ?? false,
  };
}

function logger(verbose: boolean): PoolLogger {
  const line = (level: string) => (message: string) =>
    console.error(`${new Date().toISOString()} ${level} ${message}`);
  return {
    debug: verbose ? line("debug") : undefined,
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  };
}

async function main(): Promise<void> {
  const o = options();
  let gateway;
  try {
    gateway = await startGateway({ ...o, logger: logger(o.verbose) });
  } catch (error) {
    console.error(`edgepool-gateway: cannot start: ${(error as Error).message}`);
    process.exit(1);
  }
  console.log(
    `edgepool gateway listening on ${gateway.url} (SQL: ${gateway.url}/sql, WebSocket: ` +
      `${gateway.wsUrl}/v2), upstream ${o.upstream}` +
      (o.allow ? `, also allowing /${o.allow.source}/` : "") +
      (o.relay ? ", WebSocket relay-only mode" : ""),
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await gateway.close();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

await main();
