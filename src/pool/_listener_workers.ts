// _listener.ts as edgepool's Workers build has it (build/runtimes.ts puts it in its place): on
// Workers a socket belongs to the request that opened it, so no connection can stay open to
// LISTEN across requests; `pool.listen()` says so instead of listening until the request ends.

import type { Emitter } from "../_emitter.ts";
import type { Clock } from "./_clock.ts";
import type { PoolEvents } from "./events.ts";
import type { Creator, PoolLogger } from "./options.ts";

/** Called with each notification's payload (and its channel). */
export type NotificationListener = (payload: string, channel: string) => void;

/** `listen()` on Workers: a TypeError that says why. */
export class Listener<C> {
  constructor(
    _creator: Creator<C>,
    _settings: { clock: Clock; logger: PoolLogger; name: string },
    _events: Emitter<PoolEvents<C>>,
  ) {}

  listen(_channel: string, _fn: NotificationListener): Promise<() => Promise<void>> {
    return Promise.reject(
      new TypeError(
        "pool.listen() cannot work on Cloudflare Workers: a connection cannot outlive the " +
          "request that opened it, so none can stay open to LISTEN; receive notifications " +
          "in a long-lived process (a Durable Object's own connection, or a server)",
      ),
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
