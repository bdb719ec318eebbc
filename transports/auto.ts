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

/**
 * Whether this runs on an edge runtime, where connections cannot (or should not) outlive a
 * request and an external pooler does the pooling: Cloudflare Workers, Vercel Edge, Netlify
 * Edge, Deno Deploy. A heuristic on well-known globals and environment variables.
 */
export function isEdgeRuntime(): boolean {
  const global = globalThis as {
    EdgeRuntime?: unknown;
    Netlify?: unknown;
    Deno?: { env?: { get?(name: string): string | undefined } };
  };
  if (detectTcpRuntime() === "workers") return true;
  if (typeof global.EdgeRuntime === "string") return true; // Vercel Edge
  if (global.Netlify !== undefined) return true; // Netlify Edge
  try {
    // Deno Deploy sets DENO_DEPLOYMENT_ID; reading env may need a permission: then, no.
    if (global.Deno?.env?.get?.("DENO_DEPLOYMENT_ID")) return true;
  } catch {
    // No env permission: not something we can tell.
  }
  return false;
}
