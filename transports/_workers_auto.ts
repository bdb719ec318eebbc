/**
 * `transports/auto.ts` as edgepool's Workers build has it (build/runtimes.ts puts it in its
 * place): on Cloudflare Workers the TCP transport is `cloudflare:sockets`, known when the bundle
 * is built, so `connect()` takes it without detecting the runtime or loading it lazily, and a
 * Worker that only connects carries neither. The runtime is known too: the Workers build is
 * picked by the `workerd` export condition only, so what `detectRuntime()` would find is
 * answered without looking.
 *
 * @module
 */

import type { RuntimeInfo, TcpRuntime } from "../src/runtime.ts";
import type { Transport } from "../src/transport.ts";
import { workersTcp } from "./workers.ts";

/** The TCP transport: Cloudflare Workers'. */
export function autoTransport(): Promise<Transport> {
  return Promise.resolve(workersTcp);
}

/**
 * What auto.ts's `detectRuntime()` finds on Workers (with `globalThis`; a `scope` given for
 * tests is not looked at here, since this build runs nowhere else).
 */
export function detectRuntime(_scope?: object): RuntimeInfo {
  return {
    name: "workers",
    edge: true,
    tcp: "workers",
    sign: "navigator.userAgent is Cloudflare-Workers",
  };
}

/** The TCP transport's runtime: Workers. */
export function detectTcpRuntime(): TcpRuntime {
  return "workers";
}

/** Workers is an edge runtime. */
export function isEdgeRuntime(): boolean {
  return true;
}

/**
 * The default `application_name`, which auto.ts makes `edgepool@workers` on Workers: there is
 * no program file there (no `Deno.mainModule`; `process.argv`, with `nodejs_compat`, is
 * `["workerd"]`).
 */
export function defaultApplicationName(): string {
  return "edgepool@workers";
}
