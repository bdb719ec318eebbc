// The TCP transports a test file can run over in this runtime: on Deno both Deno's own and the
// node:net one (Deno implements node:net), on Node only the node:net one.

import type { Transport } from "../mod.ts";
import { nodeTcp } from "../transports/node.ts";

/** Whether this runs on Deno. */
export const isDeno: boolean =
  typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === "object";

/** Deno's transport, loaded only where the Deno namespace exists. */
export const denoTcp: Transport | undefined = isDeno
  ? (await import("../transports/deno.ts")).denoTcp
  : undefined;

/** Every TCP transport available here. */
export const transports: Transport[] = denoTcp ? [denoTcp, nodeTcp] : [nodeTcp];

export { nodeTcp };
