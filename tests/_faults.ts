// A fault-injecting TCP proxy for the fault tests: it listens on a loopback port, opens a link
// to the target (a PostgreSQL server, PgBouncer, the gateway) for every connection it accepts,
// and forwards bytes both ways until told otherwise.
//
// Faults, per link (`link.cut()`, ...) or for every open link (`proxy.cutAll()`, ...):
//
// - `cut`        both sides closed with a FIN, as a peer that closes its socket;
// - `rst`        both sides reset (a RST, `socket.resetAndDestroy()`, which Node ≥ 18.3 and
//                Deno's node:net both have), as a middlebox that drops state or a peer that
//                crashed;
// - `halfClose`  one direction ended with a FIN (the other still flows), as a peer that called
//                shutdown(SHUT_WR);
// - `blackhole`  nothing forwarded in either direction, bytes read and dropped, sockets kept
//                open, and a close from one side not passed on: a partitioned network;
// - `delay(ms)`  every chunk held `ms` before it is forwarded, in order;
// - `pass`       forward again (bytes dropped while blackholed stay lost).
//
// New links get `proxy.mode` (`pass`, `blackhole`, `delay`, or `cut`/`rst` at once), and
// `refuse()` stops listening altogether, so that connecting gets ECONNREFUSED, until
// `accept()` listens again on the same port. The port is below the kernel's ephemeral range,
// so that no client socket can be handed it as its own while nothing listens.
//
// `counts` lets tests assert on what went through. `close()` (or `await using`) destroys every
// link and stops listening; a test should close its proxy in `finally`.
//
// This file runs under Deno and, bundled by tests/run.ts, under Node 20: `node:` modules only.

import { createServer, type Server, type Socket } from "node:net";
import { connect } from "node:net";
import { readFileSync } from "node:fs";
import { HOST } from "./_net.ts";

/** What a link does with the bytes it reads. */
export type LinkMode = "pass" | "blackhole" | { delay: number };

/** What the proxy does with a new link: a {@link LinkMode}, or a close at once. */
export type NewLinkMode = LinkMode | "cut" | "rst";

/** A direction of a link: `toServer` carries what the client sends. */
export type Direction = "toServer" | "toClient";

/** What went through a proxy since it started. */
export interface ProxyCounts {
  /** Connections accepted (each one a link, whatever happened to it next). */
  accepted: number;
  /** Links whose target connection was made. */
  linked: number;
  /** Links whose target could not be reached (the client was reset). */
  targetFailed: number;
  /** Links closed at once because the new-link mode was `cut` or `rst`. */
  turnedAway: number;
  /** Links gone, by any cause. */
  closed: number;
  /** Bytes forwarded from clients to the target, and back. */
  bytesToServer: number;
  bytesToClient: number;
  /** Bytes read and dropped (blackholed, or after a half-close). */
  bytesDropped: number;
}

/** One accepted connection and its connection to the target. */
export class Link {
  /** 1, 2, 3... in the order the proxy accepted them. */
  readonly id: number;
  /** What this link does now. */
  mode: LinkMode;
  /** Bytes forwarded each way on this link. */
  bytesToServer = 0;
  bytesToClient = 0;
  /** Settles once both sockets are gone. */
  readonly closed: Promise<void>;
  readonly #client: Socket;
  #server: Socket | null = null;
  readonly #proxy: FaultProxy;
  readonly #pipes: Pipe[] = [];
  #gone = false;
  #clientEnded = false;
  #onGone!: () => void;

  constructor(proxy: FaultProxy, id: number, client: Socket, mode: LinkMode) {
    this.#proxy = proxy;
    this.id = id;
    this.#client = client;
    this.mode = mode;
    this.closed = new Promise((resolve) => this.#onGone = resolve);
    client.on("error", () => {});
    client.on("end", () => this.#clientEnded = true);
    client.on("close", () => this.#sideClosed("client"));
  }

  /** Whether both sockets are gone. */
  get gone(): boolean {
    return this.#gone;
  }

  /**
   * Whether the client has closed its connection (its FIN arrived, or it reset) or the proxy
   * closed the client's side. A blackhole holds the FIN back from the server, not from this.
   */
  get clientClosed(): boolean {
    return this.#clientEnded || this.#client.destroyed;
  }

  /** The client's own port (its socket's local port): what `ss` or /proc/net/tcp list it by. */
  get clientPort(): number | undefined {
    return this.#client.remotePort;
  }

  /** Whether the target's side is closed (never opened counts as closed). */
  get serverClosed(): boolean {
    return this.#server?.destroyed ?? true;
  }

  /** Closes both sides with a FIN (what was already forwarded is delivered first). */
  cut(): void {
    this.#dropAll();
    for (const socket of this.#sockets()) socket.end(() => socket.destroy());
  }

  /** Resets both sides: each peer sees ECONNRESET (or a read of 0 after a RST). */
  reset(): void {
    this.#dropAll();
    for (const socket of this.#sockets()) resetSocket(socket);
  }

  /** Ends one direction with a FIN; what is sent that way afterwards is dropped. */
  halfClose(direction: Direction): void {
    const pipe = this.#pipes.find((p) => p.direction === direction);
    if (pipe) pipe.end();
    else (direction === "toClient" ? this.#client : this.#server)?.end();
  }

  /** Stops forwarding both ways; sockets stay open, bytes are read and dropped. */
  blackhole(): void {
    this.mode = "blackhole";
  }

  /** Holds every chunk `ms` before forwarding it. */
  delay(ms: number): void {
    this.mode = { delay: ms };
  }

  /** Forwards again; a FIN or close held back by a blackhole goes through now. */
  pass(): void {
    this.mode = "pass";
    for (const pipe of this.#pipes) pipe.flush();
    for (const side of ["client", "server"] as const) {
      const socket = side === "client" ? this.#client : this.#server;
      if (socket?.destroyed) this.#sideClosed(side);
    }
  }

  /** Destroys both sockets. */
  destroy(): void {
    this.#dropAll();
    for (const socket of this.#sockets()) socket.destroy();
  }

  /** Called by the proxy once the target connection is up. */
  attach(server: Socket): void {
    this.#server = server;
    server.on("close", () => this.#sideClosed("server"));
    const counts = this.#proxy.counts;
    this.#pipes.push(
      new Pipe(this, this.#client, server, "toServer", (n) => {
        this.bytesToServer += n;
        counts.bytesToServer += n;
      }, (n) => counts.bytesDropped += n),
      new Pipe(this, server, this.#client, "toClient", (n) => {
        this.bytesToClient += n;
        counts.bytesToClient += n;
      }, (n) => counts.bytesDropped += n),
    );
  }

  #sockets(): Socket[] {
    return this.#server ? [this.#client, this.#server] : [this.#client];
  }

  #dropAll(): void {
    for (const pipe of this.#pipes) pipe.drop();
  }

  #sideClosed(side: "client" | "server"): void {
    const other = side === "client" ? this.#server : this.#client;
    // A partition hides a close from the other side; otherwise the peer learns of it, as it
    // would over a direct connection.
    if (this.mode !== "blackhole" && other && !other.destroyed) {
      const pipe = this.#pipes.find((p) => p.to === other);
      if (pipe) pipe.closeAfterQueued();
      else other.destroy();
    }
    if (this.#sockets().every((s) => s.destroyed) && !this.#gone) {
      this.#gone = true;
      this.#proxy.linkGone(this);
      this.#onGone();
    }
  }
}

/** One direction of a link: reads `from`, writes `to`, honouring the link's mode. */
class Pipe {
  readonly direction: Direction;
  readonly to: Socket;
  readonly #link: Link;
  readonly #from: Socket;
  readonly #forwarded: (n: number) => void;
  readonly #dropped: (n: number) => void;
  /** Chunks held back by a delay, each with when it may go; `null` is the sender's FIN. */
  readonly #queue: { due: number; chunk: Uint8Array | null }[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ended = false;
  #dropping = false;
  #destroyWhenFlushed = false;
  #finHeld = false;

  constructor(
    link: Link,
    from: Socket,
    to: Socket,
    direction: Direction,
    forwarded: (n: number) => void,
    dropped: (n: number) => void,
  ) {
    this.#link = link;
    this.#from = from;
    this.to = to;
    this.direction = direction;
    this.#forwarded = forwarded;
    this.#dropped = dropped;
    to.on("drain", () => from.resume());
    from.on("data", (chunk: Uint8Array) => this.#data(chunk));
    from.on("end", () => this.#fin());
  }

  /** Ends this direction now: a FIN to `to`, and nothing more forwarded. */
  end(): void {
    this.drop();
    if (!this.#ended) {
      this.#ended = true;
      this.to.end();
    }
  }

  /** Forwards nothing more (bytes read from now on are dropped). */
  drop(): void {
    this.#dropping = true;
    this.#queue.length = 0;
    clearTimeout(this.#timer);
    this.#from.resume();
  }

  /** `from` closed: close `to` once what is queued for it has gone. */
  closeAfterQueued(): void {
    this.#destroyWhenFlushed = true;
    this.flush();
  }

  /** Sends what is queued whose time has come (all of it when the link passes again). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const mode = this.#link.mode;
    if (mode === "blackhole" && !this.#destroyWhenFlushed) return;
    if (this.#finHeld) {
      this.#finHeld = false;
      this.#push(null);
    }
    const now = Date.now();
    while (this.#queue.length > 0) {
      const head = this.#queue[0];
      if (typeof mode === "object" && head.due > now) {
        this.#timer = setTimeout(() => this.flush(), head.due - now);
        return;
      }
      this.#queue.shift();
      this.#write(head.chunk);
    }
    if (this.#destroyWhenFlushed && !this.to.destroyed) {
      this.to.end(() => this.to.destroy());
    }
  }

  #data(chunk: Uint8Array): void {
    if (this.#dropping || this.#link.mode === "blackhole") {
      this.#dropped(chunk.length);
      return;
    }
    this.#push(chunk);
  }

  #fin(): void {
    // A partition holds a FIN back (TCP would retransmit it once the network heals).
    if (this.#link.mode === "blackhole") this.#finHeld = true;
    else this.#push(null);
  }

  #push(chunk: Uint8Array | null): void {
    if (this.#dropping) return;
    const mode = this.#link.mode;
    const delay = typeof mode === "object" ? mode.delay : 0;
    if (delay === 0 && this.#queue.length === 0) {
      this.#write(chunk);
      return;
    }
    this.#queue.push({ due: Date.now() + delay, chunk });
    if (this.#timer === undefined) this.flush();
  }

  #write(chunk: Uint8Array | null): void {
    if (this.to.destroyed || this.#ended) return;
    if (chunk === null) {
      this.#ended = true;
      this.to.end();
      return;
    }
    this.#forwarded(chunk.length);
    if (!this.to.write(chunk)) this.#from.pause();
  }
}

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Where links go; host defaults to 127.0.0.1. */
  target: { host?: string; port: number };
  /** Mode of new links. Default `"pass"`. */
  mode?: NewLinkMode;
}

/** A running proxy: see the top of this file. */
export class FaultProxy implements AsyncDisposable {
  /** "127.0.0.1". */
  readonly host = HOST;
  /** The port clients connect to (the same after `refuse()` and `accept()`). */
  readonly port: number;
  /** What happens to new links. */
  mode: NewLinkMode;
  /** Counts since the start. */
  readonly counts: ProxyCounts = {
    accepted: 0,
    linked: 0,
    targetFailed: 0,
    turnedAway: 0,
    closed: 0,
    bytesToServer: 0,
    bytesToClient: 0,
    bytesDropped: 0,
  };
  readonly #target: { host: string; port: number };
  readonly #links = new Set<Link>();
  #server: Server | null = null;
  #closed = false;
  #nextId = 1;

  /** Use {@link startFaultProxy}. */
  constructor(port: number, target: { host: string; port: number }, mode: NewLinkMode) {
    this.port = port;
    this.#target = target;
    this.mode = mode;
  }

  /** The links still open, oldest first. */
  get links(): Link[] {
    return [...this.#links];
  }

  /** Whether the proxy listens (not refusing, not closed). */
  get listening(): boolean {
    return this.#server !== null;
  }

  /**
   * `url` (a postgres:// URL, or ws:// and http:// ones) with its host and port replaced by the
   * proxy's.
   */
  url(url: string): string {
    const u = new URL(url);
    u.hostname = HOST;
    u.port = String(this.port);
    return u.toString();
  }

  /** Cuts every open link (FIN both ways). */
  cutAll(): void {
    for (const link of this.#links) link.cut();
  }

  /** Resets every open link. */
  resetAll(): void {
    for (const link of this.#links) link.reset();
  }

  /** Half-closes every open link in `direction`. */
  halfCloseAll(direction: Direction): void {
    for (const link of this.#links) link.halfClose(direction);
  }

  /** Blackholes every open link. */
  blackholeAll(): void {
    for (const link of this.#links) link.blackhole();
  }

  /** Delays every open link. */
  delayAll(ms: number): void {
    for (const link of this.#links) link.delay(ms);
  }

  /** Lets every open link pass again. */
  passAll(): void {
    for (const link of this.#links) link.pass();
  }

  /** Destroys every open link (no graceful FIN promised). */
  destroyAll(): void {
    for (const link of this.#links) link.destroy();
  }

  /**
   * Stops listening: connecting gets ECONNREFUSED until {@link accept}. Open links are left as
   * they are.
   */
  async refuse(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    // close() stops listening at once; its callback would wait for every accepted connection
    // to end as well, which is not what refusing means.
    server.close();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }

  /** Listens again on the same port. */
  async accept(): Promise<void> {
    if (this.#closed) throw new Error("The fault proxy is closed");
    if (this.#server !== null) return;
    this.#server = await listen(this.port, (socket) => this.handle(socket));
  }

  /** Destroys every link and stops listening; idempotent. Resolves once every link is gone. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.refuse();
    const links = this.links;
    for (const link of links) link.destroy();
    await Promise.all(links.map((l) => l.closed));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Called by a link once both its sockets are gone. */
  linkGone(link: Link): void {
    if (this.#links.delete(link)) this.counts.closed++;
  }

  /** Called on the first `listen`. */
  setServer(server: Server): void {
    this.#server = server;
  }

  /** Takes a connection the listener accepted (internal: called by the listener only). */
  handle(client: Socket): void {
    this.counts.accepted++;
    if (this.#closed) {
      client.destroy();
      return;
    }
    const mode = this.mode;
    const turnAway = mode === "cut" || mode === "rst";
    const link = new Link(this, this.#nextId++, client, turnAway ? "pass" : mode);
    this.#links.add(link);
    if (turnAway) {
      this.counts.turnedAway++;
      if (mode === "cut") link.cut();
      else link.reset();
      return;
    }
    client.setNoDelay(true);
    const server = connect({
      host: this.#target.host,
      port: this.#target.port,
      allowHalfOpen: true,
    });
    server.setNoDelay(true);
    let up = false;
    server.on("error", () => {
      if (up) return;
      this.counts.targetFailed++;
      // The client sees its connection fail as a reset, the nearest to the refusal the proxy
      // itself got.
      resetSocket(client);
    });
    // Until the target answers, what the client sends waits in its paused socket.
    server.once("connect", () => {
      up = true;
      if (client.destroyed) {
        server.destroy();
        return;
      }
      this.counts.linked++;
      link.attach(server);
      client.resume();
    });
  }
}

/** Starts a proxy in front of `options.target`. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = { host: options.target.host ?? HOST, port: options.target.port };
  for (let attempt = 1;; attempt++) {
    const port = candidatePort();
    try {
      const created = new FaultProxy(port, target, options.mode ?? "pass");
      created.setServer(await listen(port, (socket) => created.handle(socket)));
      return created;
    } catch (e) {
      if (attempt < 20 && (e as { code?: string }).code === "EADDRINUSE") continue;
      throw e;
    }
  }
}

function listen(port: number, onConnection: (socket: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, onConnection);
    server.once("error", reject);
    server.listen({ port, host: HOST, exclusive: true }, () => {
      server.off("error", reject);
      server.on("error", () => {});
      resolve(server);
    });
  });
}

function resetSocket(socket: Socket): void {
  const s = socket as Socket & { resetAndDestroy?: () => Socket };
  // Without SO_LINGER support (neither runtime here lacks it), a destroy is the nearest: the
  // kernel sends a RST only if unread bytes remain.
  if (typeof s.resetAndDestroy === "function" && !s.destroyed) s.resetAndDestroy();
  else socket.destroy();
}

// A random port below the kernel's ephemeral range: while the proxy refuses, a client's own
// socket could otherwise be given this very port and connect to itself.
function candidatePort(): number {
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0]);
  } catch {
    // Not Linux: take the usual start of the range.
  }
  const first = Math.min(20_000, low - 1_000);
  let port: number;
  do port = first + Math.floor(Math.random() * (low - first)); while (port === 6543);
  return port;
}
