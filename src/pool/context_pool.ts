/**
 * `ContextPool`: SingletonThreadPool's role in JavaScript — one connection per async context.
 *
 * @module
 */

import type { Creator } from "./options.ts";
import type { CheckoutOptions } from "./pool.ts";
import type { PooledConnection } from "./pooled_connection.ts";
import { QueuePool, type QueuePoolOptions } from "./queue_pool.ts";

/**
 * Where a ContextPool keeps the current context's connection. `AsyncLocalStorage` (from
 * `node:async_hooks`, on Deno, Node, Bun and Workers with `nodejs_compat`) fits as it is.
 */
export interface AsyncContextStore<T> {
  /** Runs `fn` with `store` as the current value, for it and everything it awaits. */
  run<R>(store: T, fn: () => R): R;
  /** The current value, or `undefined` outside `run`. */
  getStore(): T | undefined;
}

/** Options of {@link ContextPool}: those of QueuePool, and the context store. */
export interface ContextPoolOptions<C> extends QueuePoolOptions<C> {
  /** The async-context store, e.g. `new AsyncLocalStorage()`. Required. */
  // deno-lint-ignore no-explicit-any
  store: AsyncContextStore<any>;
}

/** One per `run()`: the context's checkout from each ContextPool sharing the store. */
class Scope {
  readonly checkouts = new Map<ContextPool<unknown>, Promise<PooledConnection<unknown>>>();
  /**
   * `run()` settled and gave the connections back. A task that outlived it (started inside,
   * not awaited) still sees this scope, and must not get the returned connection.
   */
  ended = false;
}

/**
 * A QueuePool where every checkout inside one `pool.run(fn)` — however deeply nested, across
 * awaits — gets the same connection, returned to the pool when `fn` settles. Outside `run`, it
 * is a plain QueuePool.
 *
 * @example
 * ```ts ignore
 * import { connect, ContextPool } from "@edgepool/edgepool";
 * // AsyncLocalStorage: the one of node:async_hooks (Deno, Node, Bun, Workers with nodejs_compat).
 * const pool = new ContextPool(() => connect(url), { store: new AsyncLocalStorage() });
 * await pool.run(async () => {
 *   const a = await pool.connect();
 *   const b = await pool.connect(); // the same connection as `a`
 *   await a.release();
 *   await b.release();
 * }); // the connection goes back here
 * ```
 */
export class ContextPool<C> extends QueuePool<C> {
  readonly #store: AsyncContextStore<Scope>;

  /** Makes a pool that shares one connection per async context. */
  constructor(creator: Creator<C>, options: ContextPoolOptions<C>) {
    const store = options?.store;
    if (
      typeof store !== "object" || store === null || typeof store.run !== "function" ||
      typeof store.getStore !== "function"
    ) {
      throw new TypeError(
        "ContextPool needs options.store: an async-context store such as new AsyncLocalStorage()",
      );
    }
    // A context's statements share its connection already: no pipelining across contexts.
    super(creator, { ...options, name: options.name ?? "ContextPool", queryPipeline: 1 });
    this.#store = store;
  }

  /**
   * Runs `fn` in a context of its own: checkouts inside it share one connection, which goes
   * back to the pool when `fn` settles. Inside another `run`, it joins that context.
   */
  async run<R>(fn: () => R | Promise<R>): Promise<R> {
    if (typeof fn !== "function") throw new TypeError("run() needs a function");
    if (this.#store.getStore() !== undefined) return await fn();
    const scope = new Scope();
    try {
      return await this.#store.run(scope, fn);
    } finally {
      scope.ended = true;
      for (const checkout of scope.checkouts.values()) {
        const connection = await checkout.catch(() => undefined);
        if (connection !== undefined && !connection.released) await connection.release();
      }
    }
  }

  /**
   * Inside `run`, the context's connection (checked out on first use); outside, any connection.
   * Either way a logged-in one: the context's connection outlives the statement that asked.
   *
   * @internal
   */
  protected override async checkOut(
    options: CheckoutOptions | undefined,
  ): Promise<PooledConnection<C>> {
    const scope = this.#store.getStore();
    if (scope === undefined || scope.ended) return await super.checkOut(options);
    const self = this as unknown as ContextPool<unknown>;
    const checkouts = scope.checkouts;
    let checkout = checkouts.get(self) as Promise<PooledConnection<C>> | undefined;
    if (checkout === undefined) {
      checkout = super.checkOut(options);
      checkouts.set(self, checkout as Promise<PooledConnection<unknown>>);
      // A failed checkout is not the context's connection: the next connect() tries again.
      checkout.catch(() => checkouts.delete(self));
    }
    return this.share(await checkout);
  }

  /** A new, empty `ContextPool` with the same creator and options. */
  override recreate(): ContextPool<C> {
    return new ContextPool(this.creator, this.givenOptions as ContextPoolOptions<C>);
  }
}
