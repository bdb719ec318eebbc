// The gateway from the command line, on Deno or Node (`--help` lists the flags; they are
// gateway/options.ts's GATEWAY_OPTIONS, one per option of startGateway):
//
//   deno run -A gateway/cli.ts --listen 127.0.0.1:4444 --upstream 127.0.0.1:5432 [options]
//   deno run -A gateway/cli.ts --listen 127.0.0.1:4444 --upstream db1:5432,db2:5432 \
//     --upstream-target-session-attrs read-write
//
// One line on stdout once it listens; logs on stderr, never with a password. SIGINT/SIGTERM
// close it cleanly.

import { readFileSync } from "node:fs";
import process from "node:process";
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { PoolLogger } from "../src/pool/options.ts";
import { startGateway } from "./mod.ts";
import {
  GATEWAY_OPTIONS,
  type GatewayOptions,
  type OptionSpec,
  type ResolvedGatewayOptions,
  resolveOptions,
} from "./options.ts";

const OPTIONS = Object.entries(GATEWAY_OPTIONS) as [keyof GatewayOptions, OptionSpec][];

/** A flag's name: the first word of its spec (`pool-size N` → `pool-size`). */
const flagName = (spec: OptionSpec) => spec.flag.split(" ")[0];

const USAGE = usage();

function usage(): string {
  const lines = [
    "usage: edgepool-gateway --listen HOST:PORT --upstream HOST:PORT[,...] [options]",
    "",
  ];
  const entries: [string, string][] = OPTIONS.map(([, spec]) => {
    const given = "default" in spec && spec.kind !== "boolean" ? ` (default ${spec.default})` : "";
    return [`--${spec.flag}`, spec.help + given];
  });
  entries.push(["--help", "show this"]);
  const width = Math.max(...entries.map(([flag]) => flag.length)) + 2;
  for (const [flag, help] of entries) {
    // Wrapped at 100 columns, continuation lines under the help's first.
    let line = `  ${flag.padEnd(width)} `;
    for (const word of help.split(" ")) {
      if (line.length + word.length > 99 && line.trim().length > flag.length) {
        lines.push(line.trimEnd());
        line = " ".repeat(width + 3);
      }
      line += word + " ";
    }
    lines.push(line.trimEnd());
  }
  return lines.join("\n");
}

function fail(message: string): never {
  console.error(`edgepool-gateway: ${message}\n\n${USAGE}`);
  process.exit(2);
}

/** The command line as startGateway's options, checked as startGateway checks them. */
function options(): ResolvedGatewayOptions & { verbose: boolean } {
  const config: ParseArgsConfig["options"] = { help: { type: "boolean", short: "h" } };
  for (const [, spec] of OPTIONS) {
    if (spec.kind === "tls") {
      config["tls-cert"] = { type: "string" };
      config["tls-key"] = { type: "string" };
    } else {
      const type = spec.kind === "boolean" || spec.kind === "logger" ? "boolean" : "string";
      config[flagName(spec)] = { type };
    }
  }
  let parsed: Record<string, string | boolean | undefined>;
  try {
    parsed = parseArgs({ args: process.argv.slice(2), options: config }).values as typeof parsed;
  } catch (error) {
    fail((error as Error).message);
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const given: Record<string, unknown> = {};
  for (const [key, spec] of OPTIONS) {
    const text = parsed[flagName(spec)];
    switch (spec.kind) {
      case "whole":
        // Digits only: `Number("")` and `Number("1e3")` are numbers too.
        if (text !== undefined) given[key] = /^\d+$/.test(text as string) ? Number(text) : text;
        break;
      case "regexp":
        if (text === undefined) break;
        try {
          given[key] = new RegExp(text as string);
        } catch (error) {
          fail(`--allow is not a valid regular expression: ${(error as Error).message}`);
        }
        break;
      case "tls": {
        const cert = parsed["tls-cert"] as string | undefined;
        const key = parsed["tls-key"] as string | undefined;
        if (Boolean(cert) !== Boolean(key)) fail("--tls-cert and --tls-key go together");
        if (cert) given.tls = { cert: read(cert), key: read(key!) };
        break;
      }
      case "logger":
        given.logger = logger(text === true);
        break;
      default:
        given[key] = text;
    }
  }
  try {
    const resolved = resolveOptions(given as unknown as GatewayOptions, (key) => {
      const spec = GATEWAY_OPTIONS[key];
      return spec.kind === "tls" ? "--tls-cert/--tls-key" : `--${flagName(spec)}`;
    });
    return { ...resolved, verbose: parsed.verbose === true };
  } catch (error) {
    fail((error as Error).message);
  }
}

function read(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    fail(`cannot read ${file}: ${(error as Error).message}`);
  }
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
    gateway = await startGateway(o);
  } catch (error) {
    console.error(`edgepool-gateway: cannot start: ${(error as Error).message}`);
    process.exit(1);
  }
  console.log(
    `edgepool gateway listening on ${gateway.url} (SQL: ${gateway.url}/sql, WebSocket: ` +
      `${gateway.wsUrl}/v2), upstream ${o.upstream}` +
      (o.upstreamTargetSessionAttrs === "any" ? "" : ` (${o.upstreamTargetSessionAttrs})`) +
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
