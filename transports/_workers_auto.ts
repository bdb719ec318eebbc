/**
 * `transports/auto.ts` as edgepool's Workers build has it (build/runtimes.ts puts it in its
 * place): on Cloudflare Workers the TCP transport is `cloudflare:sockets`, known when the bundle
 * is built, so `connect()` takes it without detecting the runtime or loading it lazily, and a
 * Worker that only connects carries neither. The rest is auto.ts's own.
 *
 * @module
 */

import type { Transport } from "../src/transport.ts";
import { workersTcp } from "./workers.ts";

export { detectRuntime, detectTcpRuntime, isEdgeRuntime } from "./_runtime.ts";

/** The TCP transport: Cloudflare Workers'. */
export function autoTransport(): Promise<Transport> {
  return Promise.resolve(workersTcp);
}

/**
 * The default `application_name`, which auto.ts makes `edgepool@workers` on Workers: there is
 * no program file there (no `Deno.mainModule`; `process.argv`, with `nodejs_compat`, is
 * `["workerd"]`).
 */
export function defaultApplicationName(): string {
  return "edgepool@workers";
}
