/**
 * The HTTP transport: what `httpTransport()` returns and `createPool(url, { transport })` takes
 * to make an `HttpPool`. The transport makes its pool itself, so `createPool` names no HTTP
 * code: a program that never calls `httpTransport()` (a Worker over TCP) bundles none of it.
 *
 * @module
 */

import type { CreatePoolOptions } from "./create_pool.ts";
import {
  checkTransportOptions,
  type HttpTransportOptions,
  serializersOverHttp,
} from "./http_client.ts";
import { HttpPool } from "./pool/http_pool.ts";
import type { PoolOrigin } from "./runtime.ts";

/**
 * The key under which an {@link HttpTransport} from `httpTransport()` holds the function that
 * makes its pool, for `createPool` only (not part of the public type).
 */
export const MAKE_HTTP_POOL: unique symbol = Symbol("edgepool.makeHttpPool");

/** What an {@link HttpTransport} holds under {@link MAKE_HTTP_POOL}. */
export type MakeHttpPool = (
  transport: HttpTransport,
  url: string | URL | undefined,
  options: CreatePoolOptions,
  origin: PoolOrigin,
) => HttpPool;

/**
 * The HTTP transport: what `httpTransport()` returns, given to `createPool(url, { transport })`
 * to get an `HttpPool`. It only describes the endpoint: HTTP has no connection to open.
 */
export interface HttpTransport extends HttpTransportOptions {
  /** Tells it apart from a socket transport. */
  readonly kind: "http";
  /** Short name for messages and logs. */
  readonly name: "http";
}

/**
 * Makes the HTTP transport, for `createPool(url, { transport: httpTransport() })`.
 *
 * @example
 * ```ts
 * import { httpTransport } from "./http_transport.ts";
 * const transport = httpTransport({ endpoint: "http://127.0.0.1:4444/sql" });
 * console.assert(transport.kind === "http");
 * ```
 */
export function httpTransport(options?: HttpTransportOptions): HttpTransport {
  const o = options ?? {};
  if (typeof o !== "object") throw new TypeError("httpTransport options must be an object");
  checkTransportOptions(o);
  return Object.freeze({
    kind: "http",
    name: "http",
    endpoint: o.endpoint,
    fetch: o.fetch,
    [MAKE_HTTP_POOL]: makeHttpPool,
  }) as HttpTransport;
}

/** Whether `value` is an {@link HttpTransport}. */
export function isHttpTransport(value: unknown): value is HttpTransport {
  return typeof value === "object" && value !== null &&
    (value as { kind?: unknown }).kind === "http";
}

// Connect options that would change where or as whom the server is reached: over HTTP the URL
// goes as given in the Neon-Connection-String header, so these belong in it.
const URL_KEYS = ["host", "port", "user", "password", "database", "options", "applicationName"];

const makeHttpPool: MakeHttpPool = (transport, url, given, origin) => {
  if (url === undefined || /^pglite:/i.test(String(url))) {
    throw new TypeError("The HTTP transport needs a postgres:// URL");
  }
  if (given.poolClass !== undefined) {
    throw new TypeError(
      `poolClass ${given.poolClass} does not apply over HTTP: the HTTP transport makes an HttpPool`,
    );
  }
  if (given.types !== undefined) {
    // Not ignored: a pool whose types did nothing would hand back values of the wrong kind.
    throw new TypeError(
      "options.types does not apply over HTTP yet: pass types with each query " +
        "(query({ text, types }))",
    );
  }
  if (given.serializers !== undefined) throw serializersOverHttp("options.serializers");
  const misplaced = URL_KEYS.filter((key) => given[key as keyof CreatePoolOptions] !== undefined);
  if (misplaced.length > 0) {
    throw new TypeError(
      `Over HTTP the connection URL is sent as given: put ${misplaced.join(", ")} in the URL ` +
        "instead of the options",
    );
  }
  return new HttpPool(url, {
    endpoint: transport.endpoint,
    fetch: transport.fetch,
    bigint: given.bigint,
    name: given.name,
    logger: given.logger,
    origin,
  });
};
