/**
 * Picks the TCP transport for the runtime this code runs on, loading only that one.
 *
 * @module
 */

import type { RuntimeInfo, RuntimeName, TcpRuntime } from "../src/runtime.ts";
import type { Transport } from "../src/transport.ts";
import { detectRuntime } from "./_runtime.ts";

export type { RuntimeInfo, RuntimeName, TcpRuntime };
export {
  defaultApplicationName,
  detectRuntime,
  detectTcpRuntime,
  isEdgeRuntime,
} from "./_runtime.ts";

let cached: Promise<Transport> | undefined;

/**
 * The TCP transport for the current runtime: Deno's, Node/Bun's, or Cloudflare Workers'.
 * Only the chosen module is loaded; a bundle for one runtime replaces the others (see `build/runtimes.ts`).
 */
export function autoTransport(): Promise<Transport> {
  return cached ??= load();
}

async function load(): Promise<Transport> {
  const found = detectRuntime();
  const runtime = found.tcp;
  if (runtime === null) {
    throw new TypeError(
      `edgepool: ${found.name} (${found.sign}) has no TCP sockets; pass a transport: ` +
        "websocketTransport({ proxy }) or httpTransport({ endpoint })",
    );
  }
  const transport = runtime === "workers"
    ? (await import("./workers.ts")).workersTcp
    : runtime === "deno"
    ? (await import("./deno.ts")).denoTcp
    : (await import("./node.ts")).nodeTcp;
  // A bundle built for one runtime (build/runtimes.ts) leaves the other transports out.
  if (transport === undefined) {
    throw new Error(
      `edgepool: this bundle has no TCP transport for ${runtime}; ` +
        "pass one with the `transport` option or use the bundle built for this runtime",
    );
  }
  return transport;
}
