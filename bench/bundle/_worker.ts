// What the peer Workers of this folder get from the runtime: their bindings and the context of
// the request (the few members they use of Cloudflare's `Env` and `ExecutionContext`), and
// the statement they all run, the one examples/cloudflare-worker runs.

/** The bindings: the connection string, `postgres://user:password@host:port/database`. */
export interface Env {
  DATABASE_URL: string;
}

/** The request's context: `waitUntil` keeps the Worker alive until the promise settles. */
export interface Context {
  waitUntil(promise: Promise<unknown>): void;
}

/** examples/cloudflare-worker's statement: `$1` is the request's `?id=` (default 1). */
export const SQL = "select $1::int as id, $1::int * $1::int as square";

/** The request's `?id=`, as examples/cloudflare-worker reads it. */
export function idOf(request: Request): number {
  return Number(new URL(request.url).searchParams.get("id") ?? "1");
}
