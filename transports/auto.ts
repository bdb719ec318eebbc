/**
 * Picks the TCP transport for the runtime this code runs on, loading only that one.
 *
 * @module
 */

import type { Transport } from "../src/transport.ts";

/** The runtimes edgepool tells apart for its TCP transport. */
export type TcpRuntime = "workers" | "deno" | "node";

/** The runtime this code runs on, as far as the TCP transport is concerned. */
export function detectTcpRuntime(): TcpRuntime {
  const global = globalThis as { Deno?: { version?: unknown }; navigator?: { userAgent?: string } };
  if (global.navigator?.userAgent === "Cloudflare-Workers") return "workers";
  if (typeof global.Deno?.version === "object") return "deno";
  // Node, Bun, and anything else with node:net.
  return "node";
}

let cached: Promise<Transport> | undefined;

/**
 * The TCP transport for the current runtime: Deno's, Node/Bun's, or Cloudflare Workers'.
 * Only the chosen module is loaded; bundlers for Workers replace the others (see `build.ts`).
 */
export function autoTransport(): Promise<Transport> {
  return cached ??= load();
}

async function load(): Promise<Transport> {
  const runtime = detectTcpRuntime();
  const transport = runtime === "workers"
    ? (await import("./workers.ts")).workersTcp
    : runtime === "deno"
    ? (await import("./deno.ts")).denoTcp
    : (await import("./node.ts")).nodeTcp;
  // A bundle built for one runtime (build.ts) leaves the other transports out.
  if (transport === undefined) {
    throw new Error(
      `edgepool: this bundle has no TCP transport for ${runtime}; ` +
        "pass one with the `transport` option or use the bundle built for this runtime",
    );
  }
  return transport;
}
