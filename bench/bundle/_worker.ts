// What the sample Workers of this folder get from the runtime: their bindings and the context
// of the request (the few members they use of Cloudflare's `Env` and `ExecutionContext`).

/** The bindings: the connection string, `postgres://user:password@host:port/database`. */
export interface Env {
  DATABASE_URL: string;
}

/** The request's context: `waitUntil` keeps the Worker alive until the promise settles. */
export interface Context {
  waitUntil(promise: Promise<unknown>): void;
}
