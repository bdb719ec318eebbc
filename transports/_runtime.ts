/**
 * Telling the runtime apart, for `transports/auto.ts` (which re-exports all of it) and for the
 * Workers build's `transports/_workers_auto.ts`: detection only, no transport.
 *
 * @module
 */

import type { RuntimeInfo, RuntimeName, TcpRuntime } from "../src/runtime.ts";

/** The runtime this code runs on, as far as the TCP transport is concerned. */
export function detectTcpRuntime(): TcpRuntime {
  const global = globalThis as { Deno?: { version?: unknown }; navigator?: { userAgent?: string } };
  if (global.navigator?.userAgent === "Cloudflare-Workers") return "workers";
  if (typeof global.Deno?.version === "object") return "deno";
  // Node, Bun, and anything else with node:net.
  return "node";
}

/**
 * The runtime this code runs on, from well-known globals and environment variables:
 *
 * | runtime | sign |
 * | --- | --- |
 * | Cloudflare Workers | `navigator.userAgent === "Cloudflare-Workers"` |
 * | Vercel Edge | a string global `EdgeRuntime` |
 * | Netlify Edge | a global `Netlify` |
 * | Supabase Edge Functions | Deno with an object global `EdgeRuntime`, or `SB_EXECUTION_ID` |
 * | Deno Deploy | Deno with `DENO_DEPLOYMENT_ID` |
 * | Bun | a global `Bun` |
 * | Deno | a global `Deno` |
 * | Node | `process.versions.node` |
 * | browser | `window` and `document` |
 *
 * Environment variables are read only where that needs no permission prompt; without
 * permission they count as unset. A heuristic: pass `poolClass` and `transport` to
 * `createPool` to decide yourself.
 *
 * @param scope Where to look for the globals (for tests). Default `globalThis`.
 */
export function detectRuntime(scope: object = globalThis): RuntimeInfo {
  const g = scope as {
    EdgeRuntime?: unknown;
    Netlify?: unknown;
    Bun?: unknown;
    Deno?: { version?: unknown };
    process?: { versions?: { node?: unknown } };
    navigator?: { userAgent?: unknown };
    window?: unknown;
    document?: unknown;
  };
  if (g.navigator?.userAgent === "Cloudflare-Workers") {
    return info("workers", true, "workers", "navigator.userAgent is Cloudflare-Workers");
  }
  if (typeof g.EdgeRuntime === "string") {
    return info("vercel-edge", true, null, `EdgeRuntime is ${JSON.stringify(g.EdgeRuntime)}`);
  }
  if (g.Netlify !== undefined) return info("netlify-edge", true, "deno", "a Netlify global");
  if (g.Bun !== undefined) return info("bun", false, "node", "a Bun global");
  if (typeof g.Deno?.version === "object") {
    if (typeof g.EdgeRuntime === "object" && g.EdgeRuntime !== null) {
      return info("supabase-edge", true, "deno", "Deno with an EdgeRuntime global");
    }
    if (env(g, "SB_EXECUTION_ID") !== undefined) {
      return info("supabase-edge", true, "deno", "Deno with SB_EXECUTION_ID set");
    }
    if (env(g, "DENO_DEPLOYMENT_ID") !== undefined) {
      return info("deno-deploy", true, "deno", "Deno with DENO_DEPLOYMENT_ID set");
    }
    return info("deno", false, "deno", "a Deno global");
  }
  if (typeof g.process?.versions?.node === "string") {
    return info("node", false, "node", `Node ${g.process.versions.node}`);
  }
  if (g.window !== undefined && g.document !== undefined) {
    return info("browser", false, null, "window and document globals");
  }
  return info("unknown", false, null, "no known sign");
}

function info(
  name: RuntimeName,
  edge: boolean,
  tcp: TcpRuntime | null,
  sign: string,
): RuntimeInfo {
  return { name, edge, tcp, sign };
}

/** An environment variable, where reading it needs no permission; otherwise `undefined`. */
function env(scope: object, name: string): string | undefined {
  const deno = (scope as {
    Deno?: {
      env?: { get?(name: string): string | undefined };
      permissions?: { querySync?(d: { name: string; variable: string }): { state: string } };
    };
  }).Deno;
  try {
    const state = deno?.permissions?.querySync?.({ name: "env", variable: name }).state;
    if (state !== undefined && state !== "granted") return undefined;
    return deno?.env?.get?.(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether this runs on an edge runtime (see {@link detectRuntime}), where connections cannot
 * (or should not) outlive a request and an external pooler does the pooling.
 */
export function isEdgeRuntime(): boolean {
  return detectRuntime().edge;
}

let applicationName: string | undefined;

/**
 * The default `application_name`: where a connection comes from, so that it can be told apart
 * in `pg_stat_activity` behind a pooler: `edgepool:<program>@<runtime>`, e.g.
 * `edgepool:server.ts@deno` or `edgepool@workers` where there is no program file. At most 63
 * bytes (what PostgreSQL keeps).
 */
export function defaultApplicationName(): string {
  return applicationName ??= makeApplicationName();
}

function makeApplicationName(): string {
  const g = globalThis as {
    Deno?: { mainModule?: unknown };
    process?: { argv?: unknown[] };
  };
  let program: unknown;
  try {
    program = g.Deno?.mainModule ?? g.process?.argv?.[1];
  } catch {
    // Deno may need a read permission for mainModule: leave it out.
  }
  const base = typeof program === "string"
    ? program.replace(/[?#].*$/, "").replace(/\/+$/, "").split(/[\\/]/).pop() ?? ""
    : "";
  // Only printable ASCII: the server replaces anything else with '?'.
  const name = `edgepool${base === "" ? "" : ":" + base}@${detectRuntime().name}`
    .replace(/[^\x20-\x7e]/g, "?");
  return name.length <= 63 ? name : name.slice(0, 63);
}
