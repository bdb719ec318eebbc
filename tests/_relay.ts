// A loopback TCP relay that counts network round trips, for tests/round_trips_test.ts and
// bench/round_trips_bench.ts. It listens on 127.0.0.1:0, forwards every accepted connection to
// one target, can hold each direction back by `delayMs`, and records, per connection, the
// flights the client sent.
//
// The rule, per connection, applied to bytes as they arrive at the relay:
//
// - A *flight* is a run of client→server bytes. The first client bytes open flight 1.
// - Later client bytes open a new flight when server→client bytes were *delivered* (written to
//   the client's socket, after the delay) since the current flight opened; otherwise they join
//   it. Bytes the client writes while nothing has come back yet are pipelined: they cost no
//   extra round trip, however many writes they take.
// - Each flight is one round trip (the wait for whatever the server answers to it), so
//   `roundTrips` is the number of flights. Read after the first row arrived and before the
//   client sends anything else (a Terminate is a flight too), it is the round trips it took to
//   get that row. Server bytes delivered before the first flight (a server that speaks first)
//   are `greetingBytes`.
//
// TCP's own handshake is not seen (the kernel completes it before the relay accepts) and adds
// one more round trip on a real network; so does a TLS handshake, which the relay would count.
//
// With `delayMs` > 0 each direction is a queue: what arrives from one side within one tick of
// the relay's event loop leaves as one write, `delayMs` later, in order, so bytes a side wrote
// together stay together (one flight) and the two directions cannot be interleaved within
// them. Bytes delivered but not yet read by the client when it sent more still open a new
// flight, so the count errs towards too many. It sees data only: a client whose TCP stack holds
// a small write back until the previous one is acknowledged (Nagle's algorithm) waits a round
// trip on a real network that no flight shows (the bench's times do).
//
// Runs under Deno and under Node 20 (bundled by tests/run.ts): `node:` modules only.

import { connect, createServer, type Server, type Socket } from "node:net";
import { setImmediate } from "node:timers";

/** Who sent the bytes: the client (towards the target) or the server (back to the client). */
export type Direction = "client" | "server";

/** One client flight and what the server delivered back before the next one. */
export interface Flight {
  /** Client→server bytes in the flight. */
  clientBytes: number;
  /** Server→client bytes delivered while this was the latest flight. */
  serverBytes: number;
  /** The first bytes of the flight (at most 32), to tell what it held: `GET /`, a StartupMessage... */
  head: Uint8Array;
  /** Every client byte of the flight, with `keepData` only. */
  data?: Uint8Array;
}

/** What the relay recorded for one connection since it opened or since `reset()`. */
export interface RelayConnection {
  /** 1 for the first connection the relay accepted, then 2, ... (not reset). */
  readonly id: number;
  /** The client's flights, in order. */
  readonly flights: readonly Flight[];
  /** Round trips: the number of flights. */
  readonly roundTrips: number;
  /** Server→client bytes delivered before the client's first flight. */
  readonly greetingBytes: number;
  /** Whether the connection has ended. */
  readonly closed: boolean;
}

/** Options of {@link startRelay}. */
export interface RelayOptions {
  /** Where to forward: `host:port`, or the two apart. */
  target: string | { host: string; port: number };
  /** Milliseconds each direction is held back. Default 0 (forwarded at once). */
  delayMs?: number;
  /**
   * Rewrites bytes as they arrive, before they are queued: a hostile network for tests. Gets
   * each chunk with its direction and the connection's id; returns the bytes to forward.
   */
  transform?: (chunk: Uint8Array, direction: Direction, id: number) => Uint8Array;
  /** Keep every client byte of each flight in {@link Flight.data}. Default `false`. */
  keepData?: boolean;
}

/** A running relay. */
export interface Relay extends AsyncDisposable {
  /** "127.0.0.1". */
  readonly host: string;
  /** The port it listens on. */
  readonly port: number;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** Connections accepted since the last `reset()`, and those still open from before it. */
  connections(): RelayConnection[];
  /** Round trips summed over `connections()`. */
  readonly roundTrips: number;
  /**
   * Forgets what was recorded: closed connections are dropped, open ones start over (their next
   * client bytes open flight 1).
   */
  reset(): void;
  /** Resolves once nothing is held back in any direction (the delay queues are empty). */
  settled(): Promise<void>;
  /** Resolves once every connection has ended (both of its sockets are closed). */
  drained(): Promise<void>;
  /** Stops listening and ends every connection at once; no socket or timer is left. */
  close(): Promise<void>;
}

const HEAD_BYTES = 32;

/** Starts a relay on 127.0.0.1 with a free port. */
export async function startRelay(options: RelayOptions): Promise<Relay> {
  const target = typeof options.target === "string" ? parseTarget(options.target) : options.target;
  const delayMs = options.delayMs ?? 0;
  if (!(delayMs >= 0)) throw new RangeError(`delayMs must be 0 or more, not ${delayMs}`);
  const transform = options.transform;
  const keepData = options.keepData ?? false;
  const pipes = new Set<Pipe>();
  let nextId = 1;
  let closing = false;
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    if (closing) {
      client.destroy();
      return;
    }
    pipes.add(new Pipe(nextId++, client, target, { delayMs, transform, keepData }, pipes));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;
  const listed = () => [...pipes].filter((p) => p.listed);
  const relay: Relay = {
    host: "127.0.0.1",
    port,
    address: `127.0.0.1:${port}`,
    connections: () => listed().map((p) => p.snapshot()),
    get roundTrips() {
      return listed().reduce((n, p) => n + p.flights.length, 0);
    },
    reset() {
      for (const pipe of pipes) pipe.reset();
    },
    async settled() {
      while ([...pipes].some((p) => p.busy)) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(1, delayMs)));
      }
    },
    async drained() {
      while ([...pipes].some((p) => !p.closed)) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(1, delayMs)));
      }
    },
    async close() {
      closing = true;
      for (const pipe of pipes) pipe.destroy();
      pipes.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    [Symbol.asyncDispose]: () => relay.close(),
  };
  return relay;
}

/** One direction's queue: batches of bytes, each due `delayMs` after it opened. */
interface Batch {
  chunks: Uint8Array[];
  /** The end of the stream from this side, to pass on after the bytes. */
  end: boolean;
}

class Pipe {
  flights: Flight[] = [];
  greetingBytes = 0;
  /** Server bytes were delivered since the latest flight opened. */
  answered = false;
  /** Both sockets are gone. */
  closed = false;
  /** Listed by `connections()`: open, or closed since the last reset. */
  listed = true;
  readonly #sockets: Record<Direction, Socket>;
  readonly #delayMs: number;
  readonly #transform: RelayOptions["transform"];
  readonly #keepData: boolean;
  readonly #pipes: Set<Pipe>;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  /** Per direction: the batch still taking bytes this tick. */
  readonly #open: Record<Direction, Batch | null> = { client: null, server: null };
  /** Per direction: batches waiting for their delay. */
  readonly #queued: Record<Direction, number> = { client: 0, server: 0 };
  /** Per direction: the side's end of stream was queued. */
  readonly #ended: Record<Direction, boolean> = { client: false, server: false };
  readonly #gone: Record<Direction, boolean> = { client: false, server: false };

  constructor(
    readonly id: number,
    client: Socket,
    target: { host: string; port: number },
    options: { delayMs: number; transform: RelayOptions["transform"]; keepData: boolean },
    pipes: Set<Pipe>,
  ) {
    this.#delayMs = options.delayMs;
    this.#transform = options.transform;
    this.#keepData = options.keepData;
    this.#pipes = pipes;
    const server = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.#sockets = { client, server };
    for (const from of ["client", "server"] as const) {
      const socket = this.#sockets[from];
      socket.setNoDelay(true);
      socket.on("data", (chunk: Uint8Array) => this.#arrive(from, chunk));
      socket.on("end", () => this.#arriveEnd(from));
      // A reset or a failed connect: 'close' follows, and ends the other side.
      socket.on("error", () => {});
      socket.on("close", () => {
        this.#gone[from] = true;
        this.#arriveEnd(from);
        if (this.#gone.client && this.#gone.server) this.#finish();
      });
    }
  }

  /** Whether bytes are held back in either direction. */
  get busy(): boolean {
    return this.#queued.client + this.#queued.server > 0;
  }

  snapshot(): RelayConnection {
    const flights = this.flights.map((f) => ({ ...f }));
    return {
      id: this.id,
      flights,
      roundTrips: flights.length,
      greetingBytes: this.greetingBytes,
      closed: this.closed,
    };
  }

  reset(): void {
    this.flights = [];
    this.greetingBytes = 0;
    this.answered = false;
    if (this.closed) {
      this.listed = false;
      this.#pipes.delete(this);
    }
  }

  /** Ends both sockets at once, dropping whatever is held back. */
  destroy(): void {
    this.#sockets.client.destroy();
    this.#sockets.server.destroy();
    this.#finish();
  }

  #finish(): void {
    this.closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#queued.client = this.#queued.server = 0;
    this.#open.client = this.#open.server = null;
  }

  #arrive(from: Direction, data: Uint8Array): void {
    if (this.closed) return;
    let chunk: Uint8Array = new Uint8Array(data); // node:net may reuse its buffer
    if (this.#transform) chunk = this.#transform(chunk, from, this.id);
    if (chunk.length === 0) return;
    if (from === "client") this.#count(chunk);
    this.#enqueue(from, (batch) => batch.chunks.push(chunk));
  }

  #arriveEnd(from: Direction): void {
    if (this.closed || this.#ended[from]) return;
    this.#ended[from] = true;
    this.#enqueue(from, (batch) => batch.end = true);
  }

  /** Client bytes arrived: they open a new flight if the server answered since the last one. */
  #count(chunk: Uint8Array): void {
    let flight = this.flights.at(-1);
    if (flight === undefined || this.answered) {
      flight = { clientBytes: 0, serverBytes: 0, head: new Uint8Array(0) };
      if (this.#keepData) flight.data = new Uint8Array(0);
      this.flights.push(flight);
      this.answered = false;
    }
    if (flight.head.length < HEAD_BYTES) {
      const head = new Uint8Array(Math.min(HEAD_BYTES, flight.head.length + chunk.length));
      head.set(flight.head);
      head.set(chunk.subarray(0, head.length - flight.head.length), flight.head.length);
      flight.head = head;
    }
    flight.clientBytes += chunk.length;
    if (flight.data) flight.data = concat([flight.data, chunk]);
  }

  /** Server bytes reached the client. */
  #delivered(bytes: number): void {
    const flight = this.flights.at(-1);
    if (flight === undefined) this.greetingBytes += bytes;
    else {
      flight.serverBytes += bytes;
      this.answered = true;
    }
  }

  #enqueue(from: Direction, add: (batch: Batch) => void): void {
    if (this.#delayMs === 0) {
      const batch: Batch = { chunks: [], end: false };
      add(batch);
      return this.#write(from, batch);
    }
    const open = this.#open[from];
    if (open !== null) return add(open);
    const batch: Batch = { chunks: [], end: false };
    add(batch);
    this.#open[from] = batch;
    this.#queued[from]++;
    // The batch takes whatever else arrives from this side in the same tick.
    setImmediate(() => {
      if (this.#open[from] === batch) this.#open[from] = null;
    });
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#open[from] === batch) this.#open[from] = null;
      this.#queued[from]--;
      this.#write(from, batch);
    }, this.#delayMs);
    this.#timers.add(timer);
  }

  #write(from: Direction, batch: Batch): void {
    const to = this.#sockets[from === "client" ? "server" : "client"];
    if (to.destroyed) return;
    const bytes = concat(batch.chunks);
    if (bytes.length > 0) {
      to.write(bytes);
      if (from === "server") this.#delivered(bytes.length);
    }
    if (batch.end) to.end();
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function parseTarget(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(":");
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`The relay target must be host:port, not ${JSON.stringify(text)}`);
  }
  return { host: text.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port };
}
