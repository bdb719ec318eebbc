// A minimal typed event emitter: `on` returns the function that unsubscribes, and a listener
// that throws never breaks the emitter (its error is logged, not propagated).

// deno-lint-ignore no-explicit-any
type Listener = (arg: any) => void;

/** Typed listeners keyed by event name; `Events` maps each name to its argument type. */
export class Emitter<Events> {
  #listeners = new Map<keyof Events, Listener[]>();
  /** Listeners of every event together: `has` is on hot paths, mostly with none at all. */
  #count = 0;

  on<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): () => void {
    const list = this.#listeners.get(event);
    // Copy on write, so that emitting while (un)subscribing sees a stable list.
    this.#listeners.set(event, list ? [...list, listener] : [listener]);
    this.#count++;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.#count--;
      const current = this.#listeners.get(event);
      if (current) this.#listeners.set(event, current.filter((l) => l !== listener));
    };
  }

  has(event: keyof Events): boolean {
    if (this.#count === 0) return false;
    const list = this.#listeners.get(event);
    return list !== undefined && list.length > 0;
  }

  emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    const list = this.#listeners.get(event);
    if (list === undefined) return;
    for (const listener of list) {
      try {
        listener(arg);
      } catch (error) {
        // A listener's bug must not break the connection or the pool, nor crash the process.
        console.error(`edgepool: a '${String(event)}' listener threw:`, error);
      }
    }
  }
}
